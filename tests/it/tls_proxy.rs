//! The control socket and enrollment over TLS (rustls, custom CA file) and
//! the control socket through an HTTP CONNECT proxy — real TLS, real proxy.

use otp::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testkit::daemon::*;
use testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use voltd_actors::api::CredentialOrigin;
use voltd_actors::config::{CloudUrl, ProxyUrl};
use voltd_actors::events::Event;

const SECS_10: Duration = Duration::from_secs(10);

/// A TLS-terminating TCP proxy (self-signed certificate for `localhost`)
/// in front of `backend`. Returns its port and the certificate PEM.
async fn tls_front(backend: std::net::SocketAddr) -> (u16, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, pem)
}

/// A minimal HTTP CONNECT proxy that records the requests it tunnels.
async fn connect_proxy() -> (u16, Arc<std::sync::Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tunnels = Arc::new(AtomicUsize::new(0));
    let (seen2, tunnels2) = (seen.clone(), tunnels.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let tunnels = tunnels2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                seen.lock().unwrap().push(head.clone());
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let Ok(mut up) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                tunnels.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
            });
        }
    });
    (port, seen, tunnels)
}

#[actix_rt::test]
async fn enrolls_and_registers_over_tls_with_a_custom_ca() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let (port, pem) = tls_front(plane.addr()).await;
    let state = tempfile::tempdir().unwrap();
    let ca = state.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();

    let mut s = settings(&plane.base_url(), &created, state.path());
    let url = CloudUrl::parse(&format!("https://localhost:{port}")).unwrap();
    s.cloud_url = url.clone();
    s.socket_url = url;
    s.socket.ca_file = Some(ca);
    let daemon = start_daemon(s);
    wait_event(
        &daemon,
        SECS_10,
        "enrolled over https",
        |e| matches!(e, Event::CredentialsReady { source, .. } if *source == CredentialOrigin::Enrolled),
    )
    .await;
    wait_connected(&plane, &id).await;
    eventually(SECS_10, "heartbeat over wss", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count >= 1)
    })
    .await;
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn an_untrusted_certificate_is_refused() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let (port, _pem) = tls_front(plane.addr()).await;
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    let url = CloudUrl::parse(&format!("https://localhost:{port}")).unwrap();
    s.cloud_url = url.clone();
    s.socket_url = url;
    let daemon = start_daemon(s);
    let r = wait_event(&daemon, SECS_10, "enrollment retry", |e| {
        matches!(e, Event::EnrollmentRetrying { .. })
    })
    .await;
    let Event::EnrollmentRetrying { error, .. } = &r.event else {
        unreachable!()
    };
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(
        !plane
            .cluster(&created.team_cluster.id)
            .unwrap()
            .enrollment_completed
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn the_control_socket_goes_through_an_http_connect_proxy() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let (proxy_port, seen, tunnels) = connect_proxy().await;
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    s.enrollment_token = None;
    s.daemon_password = Some(created.daemon_password.as_str().into());
    s.socket.proxy =
        Some(ProxyUrl::parse(&format!("http://user:pass@127.0.0.1:{proxy_port}")).unwrap());
    s.socket.no_proxy = vec!["example.invalid".into()];
    let daemon = start_daemon(s);
    wait_connected(&plane, &id).await;
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    let head = seen.lock().unwrap()[0].clone();
    let target = plane.addr().to_string();
    assert!(
        head.starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
        "{head}"
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}
