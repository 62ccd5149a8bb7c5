//! The console in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver), a real volt-plane, the real voltd binary with
//! a real Redis it supervises. A person's journey: log in, create a
//! cluster, enroll voltd with the command the console shows, watch the
//! badge turn `connected` without reloading, see chart points, open a Redis
//! key in the explorer, run `echo hi` in the terminal, delete the cluster.
//! And the Files tab's file manager against an in-process voltd with a
//! writable and a read-only host-files root, checked on the filesystem.
//!
//! Screenshots of every page go to `target/console-screenshots/` (the path
//! is printed).

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use volt_plane::{AdminToken, PlaneConfig, PlaneHandle};

/// The console's admin token in these tests.
const TOKEN: &str = "browser-test-admin-token-0123456789";
/// How long a step may take: voltd starts Redis, the first heartbeat with
/// metrics follows, Chromium is not fast on two shared cores.
const STEP: Duration = Duration::from_secs(60);
/// The flags Chromium needs here (the machine doc's "known to work" set):
/// no sandbox as root, no GPU, and no background traffic to the internet.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// Where screenshots go: `<target>/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/it-… → target/
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// chromedriver + one Chromium session. Dropping kills chromedriver (and
/// with it the browser).
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = which("chromedriver").expect(
            "chromedriver not found: install Debian's chromium and chromium-driver (.ci/install-services does)",
        );
        let chromium = which("chromium").expect("chromium not found (.ci/install-services)");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "goog:chromeOptions": { "binary": chromium, "args": args }
        });
        let Value::Object(caps) = caps else {
            unreachable!("a literal object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        let shots = screenshot_dir();
        println!("console screenshots: {}", shots.display());
        Browser {
            client,
            driver,
            _profile: profile,
            shots,
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector}: {e}"))
    }

    /// Clicks the element `selector` finds. Live updates re-render lists
    /// (a status change, a new page of events): an element replaced between
    /// finding and clicking is found again.
    async fn click(&self, selector: &str) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match self.css(selector).await.click().await {
                Ok(_) => return,
                Err(e)
                    if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {
                }
                Err(e) => panic!("click {selector}: {e}"),
            }
        }
    }

    /// Polls a JavaScript expression until it is truthy; returns its value.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let v = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                self.shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what} (last value {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

async fn plane() -> PlaneHandle {
    volt_plane::start(PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(AdminToken::new(TOKEN).unwrap()),
        ..PlaneConfig::default()
    })
    .await
    .expect("plane starts")
}

fn voltd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voltd"));
    c.kill_on_drop(true);
    c
}

/// The value after `flag` in a shell command line the console showed.
fn arg_after(command: &str, flag: &str) -> String {
    let mut words = command.split_whitespace();
    words.find(|w| *w == flag);
    words
        .next()
        .unwrap_or_else(|| panic!("{flag} in {command}"))
        .trim_matches('\'')
        .to_owned()
}

async fn log_in(b: &Browser, base: &str, token: &str) {
    b.client.goto(&format!("{base}/")).await.unwrap();
    let input = b.css("#login-token").await;
    b.shot("01-login").await;
    input.send_keys(token).await.unwrap();
    b.click("#login-submit").await;
    b.css("#cluster-table").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_a_cluster_from_the_console() {
    let plane = plane().await;
    let base = plane.base_url();
    let b = Browser::start().await;

    // Log in; a wrong token first.
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.css("#login-token")
        .await
        .send_keys("not-the-admin-token")
        .await
        .unwrap();
    b.click("#login-submit").await;
    b.until(
        "the refusal",
        "return document.getElementById('login-error').textContent",
    )
    .await;
    b.css("#login-token").await.clear().await.unwrap();
    b.css("#login-token").await.send_keys(TOKEN).await.unwrap();
    b.click("#login-submit").await;
    b.css("#cluster-table").await;
    b.shot("02-empty-list").await;

    // Create a cluster and read its one-liners.
    b.click("#create-open").await;
    b.css("#create-name")
        .await
        .send_keys("browser-lab")
        .await
        .unwrap();
    b.click("#create-submit").await;
    let install = b.css("#install-command").await.text().await.unwrap();
    let enroll = b.css("#voltd-command").await.text().await.unwrap();
    b.shot("03-created").await;
    assert!(install.starts_with("curl -fsSL"), "{install}");
    let id = arg_after(&enroll, "--cluster-id");
    let token = arg_after(&enroll, "--token");
    assert_eq!(arg_after(&enroll, "--cloud-url"), base);
    b.click("#install-done").await;
    let row = format!("tr[data-cluster-id='{id}'] .badge");
    b.until(
        "the new row",
        &format!(
            "return document.querySelector(\"{row}\")?.dataset.status === 'waiting-for-connection'"
        ),
    )
    .await;

    // A real voltd enrolls with the console's command and runs, with Redis.
    let dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let redis_pw = "browser-test-redis-password";
    let config = dir.path().join("voltd.toml");
    // The terminal's shells run as the tests' terminal account (root) or,
    // allowed explicitly, as this user.
    let term = testkit::daemon::test_terminal("/bin/sh");
    std::fs::write(
        &config,
        format!(
            "cloud_url = \"{base}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{state}\"\nheartbeat_interval_ms = 1000\n\n[install]\ninstall_root = \"{root}\"\n\n[terminal]\nshell = \"/bin/sh\"\nuser = \"{user}\"\nallow_daemon_user = {allow}\nhelper_socket = \"{helper}\"\n\n[services.redis]\nport = {redis_port}\nuser = \"browser\"\npassword = \"{redis_pw}\"\n",
            state = dir.path().join("state").display(),
            root = dir.path().join("install").display(),
            user = term.user.as_str(),
            allow = term.allow_daemon_user,
            helper = term.helper_socket.display(),
        ),
    )
    .unwrap();
    let out = voltd()
        .arg("--config")
        .arg(&config)
        .args(["enroll", "--token", &token])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "voltd enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = voltd()
        .arg("--config")
        .arg(&config)
        .args(["run", "--services", "redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The badge turns `connected` live, without a reload.
    b.until(
        "the connected badge",
        &format!("return document.querySelector(\"{row}\")?.dataset.status === 'connected'"),
    )
    .await;
    b.shot("04-list-connected").await;

    // The cluster page: charts fill from the heartbeats.
    b.click(&format!("tr[data-cluster-id='{id}'] a")).await;
    b.until(
        "chart points",
        "return Number(document.querySelector('svg[data-chart=cpu]')?.getAttribute('data-points') ?? 0) >= 1",
    )
    .await;
    b.until(
        "a line on the chart",
        "return document.querySelectorAll('svg[data-chart=cpu] polyline').length",
    )
    .await;
    b.shot("05-monitoring").await;

    // Services tab: Redis is supervised and healthy.
    b.click("#tab-services").await;
    b.until(
        "a healthy redis",
        "return document.querySelector('[data-service=redis] .badge')?.textContent === 'healthy'",
    )
    .await;
    let card = b.css("[data-service=redis]").await.text().await.unwrap();
    assert!(
        card.contains("Connected clients")
            && card.contains("Memory used")
            && !card.contains("[object"),
        "{card}"
    );
    b.shot("06-services").await;

    // A key in Redis, opened in the explorer.
    let redis = redis::Client::open(format!(
        "redis://browser:{redis_pw}@127.0.0.1:{redis_port}/0"
    ))
    .unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("journey:greeting")
        .arg("hello from redis")
        .query_async(&mut con)
        .await
        .unwrap();
    b.click("#tab-explorer").await;
    b.click("button[data-path='db/0']").await;
    b.click("button[data-path='db/0/key/journey%3Agreeting']")
        .await;
    b.until(
        "the key's value",
        "return document.getElementById('node-content')?.textContent.includes('hello from redis')",
    )
    .await;
    let href = b.css("#node-download").await.attr("href").await.unwrap();
    assert!(
        href.unwrap()
            .contains("/explorer/redis-data/download?path=")
    );
    b.shot("07-explorer").await;

    // Files: this voltd has no [host_files] roots, so nothing to change.
    b.click("#tab-files").await;
    let upload = b.css("button[data-op=upload]").await;
    assert!(!upload.is_enabled().await.unwrap());
    assert_eq!(
        upload.attr("title").await.unwrap().as_deref(),
        Some("open a root to change files in it")
    );
    b.shot("08-files").await;

    // The terminal: `echo hi`, read `hi` — on a line of its own, or after
    // the prompt when the shell printed its prompt after the echoed input.
    b.click("#tab-terminal").await;
    b.until(
        "the terminal connection",
        "return document.getElementById('terminal-state')?.textContent === 'connected'",
    )
    .await;
    b.css(".xterm-helper-textarea")
        .await
        .send_keys("echo hi\u{E007}")
        .await
        .unwrap();
    b.until(
        "hi on the screen",
        "const t = window.voltTerminal; if (!t) return false; const buf = t.buffer.active; \
         for (let i = 0; i < buf.length; i++) { const l = buf.getLine(i)?.translateToString(true).trim(); \
         if (l === 'hi' || /^[^ ]*[$#>] hi$/.test(l)) return true; } return false;",
    )
    .await;
    // Resizing the window resizes the terminal (and the PTY behind it).
    let cols_before = b
        .client
        .execute("return window.voltTerminal.cols", vec![])
        .await
        .unwrap();
    b.client.set_window_size(1100, 900).await.unwrap();
    b.until(
        "a narrower terminal",
        &format!("return window.voltTerminal && window.voltTerminal.cols < {cols_before}"),
    )
    .await;
    b.shot("09-terminal").await;

    // The plane's log.
    b.client.goto(&format!("{base}/#/log")).await.unwrap();
    b.until(
        "log entries",
        "return document.querySelectorAll('#plane-log li').length >= 3",
    )
    .await;
    b.shot("10-plane-log").await;

    // Delete, confirmed; the status transitions show.
    b.client
        .goto(&format!("{base}/#/clusters/{id}/history"))
        .await
        .unwrap();
    b.css("#cluster-status").await;
    b.client
        .execute(
            "window.seen = []; const el = document.getElementById('cluster-status'); \
             new MutationObserver(() => window.seen.push(el.textContent)).observe(el, {childList: true, characterData: true, subtree: true, attributes: true});",
            vec![],
        )
        .await
        .unwrap();
    b.click("#delete-cluster").await;
    b.css("#confirm-dialog").await;
    b.shot("11-delete-confirm").await;
    b.click("#confirm-yes").await;
    b.css("#cluster-deleted").await;
    let seen = b
        .client
        .execute("return window.seen", vec![])
        .await
        .unwrap();
    assert!(
        seen.as_array().unwrap().iter().any(|s| s == "deleting"),
        "the badge showed deleting: {seen}"
    );
    b.shot("12-deleted").await;
    let status = tokio::time::timeout(STEP, daemon.wait())
        .await
        .expect("voltd exits after the uninstall")
        .unwrap();
    assert!(status.success(), "voltd exit: {status}");
    assert!(plane.cluster(&id).is_none());

    b.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_through_many_clusters_and_logs_out() {
    let plane = plane().await;
    let base = plane.base_url();
    for i in 0..120 {
        plane
            .create_cluster(volt_plane::CreateClusterRequest {
                name: Some(format!("{}-{i:03}", if i % 4 == 0 { "gpu" } else { "cpu" })),
                install_root: None,
            })
            .await
            .unwrap();
    }
    let b = Browser::start().await;
    log_in(&b, &base, TOKEN).await;
    b.until(
        "the first page",
        "return document.getElementById('list-summary')?.textContent === '1–50 of 120'",
    )
    .await;
    b.click("#page-next").await;
    b.until(
        "the second page",
        "return document.getElementById('list-summary').textContent === '51–100 of 120'",
    )
    .await;
    b.css("#filter-name").await.send_keys("gpu").await.unwrap();
    b.until(
        "the filtered list",
        "return document.getElementById('list-summary').textContent === '1–30 of 120'.replace('120', '30')",
    )
    .await;
    b.shot("20-list-filtered").await;
    b.click("#logout").await;
    b.css("#login-token").await;
    let r = reqwest::get(format!("{base}/api/clusters")).await.unwrap();
    assert_eq!(r.status(), 401);
    b.stop().await;
    plane.shutdown().await;
}

/// Whether the file manager's `op` button is disabled, and its title.
async fn file_button(b: &Browser, op: &str) -> (bool, String) {
    let v = b
        .client
        .execute(
            "const el = document.querySelector(`button[data-op=${arguments[0]}]`); return [el.disabled, el.title];",
            vec![json!(op)],
        )
        .await
        .unwrap();
    (
        v[0].as_bool().unwrap(),
        v[1].as_str().unwrap_or_default().to_owned(),
    )
}

/// Answers the one-line dialog with `text`.
async fn answer_dialog(b: &Browser, text: &str) {
    let input = b.css("#ask-dialog #ask-input").await;
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    b.click("#ask-yes").await;
}

/// Waits for the file manager's announcement to contain `text`.
async fn announced(b: &Browser, text: &str) {
    b.until(
        &format!("the announcement {text}"),
        &format!(
            "return document.getElementById('files-status')?.textContent.includes({})",
            json!(text)
        ),
    )
    .await;
}

#[actix_rt::test]
async fn the_files_tab_changes_a_writable_root_and_explains_a_read_only_one() {
    use testkit::eventually;
    let files = tempfile::tempdir().unwrap();
    let top = files.path().canonicalize().unwrap();
    let (rw, ro) = (top.join("rw"), top.join("ro"));
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("keep.txt"), "keep").unwrap();
    std::fs::write(rw.join("taken.bin"), "the old taken.bin").unwrap();
    let roots = voltd_actors::config::HostFilesSettings::try_new_with_access(vec![
        ("rw".into(), rw.clone(), false),
        ("ro".into(), ro.clone(), true),
    ])
    .unwrap();
    let f = testkit::daemon::Fixture::start_with(|s| s.host_files = roots).await;
    let base = f.plane.base_url();
    let b = Browser::start().await;
    log_in(&b, &base, testkit::plane::TEST_ADMIN_TOKEN).await;
    b.client
        .goto(&format!("{base}/#/clusters/{}/files", f.id))
        .await
        .unwrap();

    // The list of roots: nothing can be changed there.
    b.css("button[data-path='ro']").await;
    assert_eq!(
        file_button(&b, "mkdir").await,
        (true, "open a root to change files in it".into())
    );

    // The read-only root: every button disabled, saying why, and the note.
    b.click("button[data-path='ro']").await;
    b.until(
        "the read-only verdict",
        "return document.querySelector('button[data-op=upload]').title.startsWith('root ro is read-only')",
    )
    .await;
    for op in ["upload", "mkdir", "rename", "delete"] {
        assert_eq!(
            file_button(&b, op).await,
            (
                true,
                "root ro is read-only (read_only = false in [host_files] roots)".into()
            ),
            "{op}"
        );
    }
    let note = b.css("#files-readonly").await;
    assert!(note.is_displayed().await.unwrap());
    assert!(note.text().await.unwrap().contains("read_only = false"));
    b.shot("30-files-read-only").await;

    // The writable root: the buttons light up, the note goes.
    b.click("nav.crumbs button").await;
    b.click("button[data-path='rw']").await;
    b.until(
        "the writable verdict",
        "return !document.querySelector('button[data-op=upload]').disabled",
    )
    .await;
    assert!(!b.css("#files-readonly").await.is_displayed().await.unwrap());

    // New folder.
    b.click("button[data-op=mkdir]").await;
    answer_dialog(&b, "made-here").await;
    eventually(STEP, "rw/made-here on disk", async || {
        rw.join("made-here").is_dir()
    })
    .await;
    announced(&b, "Created the folder rw/made-here").await;
    b.css("button[data-path='rw/made-here']").await;

    // A change the daemon refuses shows in the page: the folder exists.
    b.click("button[data-op=mkdir]").await;
    answer_dialog(&b, "made-here").await;
    let refusal = b
        .until(
            "the refusal in the error box",
            "return document.querySelector('#files-error [role=alert]')?.textContent",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .contains("rw/made-here already exists"),
        "{refusal}"
    );
    b.shot("31-files-refused").await;

    // Upload: several chunks' worth, byte-identical on disk, nothing else
    // left behind.
    let payload: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("blob.bin");
    std::fs::write(&source, &payload).unwrap();
    b.css("#files-upload-input")
        .await
        .send_keys(source.to_str().unwrap())
        .await
        .unwrap();
    let stored = eventually(STEP, "rw/blob.bin on disk", async || {
        std::fs::read(rw.join("blob.bin")).ok()
    })
    .await;
    assert!(stored == payload, "the uploaded bytes differ");
    announced(&b, "Uploaded rw/blob.bin").await;
    b.until(
        "no error",
        "return document.getElementById('files-error').childElementCount === 0",
    )
    .await;
    let mut names: Vec<String> = std::fs::read_dir(&rw)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blob.bin", "made-here", "taken.bin"]);

    // Rename onto an existing name: replaced only after the confirm.
    b.click("button[data-path='rw/blob.bin']").await;
    b.until(
        "the selection",
        "return document.getElementById('files-selection').textContent === 'Selected: rw/blob.bin'",
    )
    .await;
    b.click("button[data-op=rename]").await;
    answer_dialog(&b, "taken.bin").await;
    let confirm = b.css("#confirm-dialog").await.text().await.unwrap();
    assert!(confirm.contains("rw/taken.bin already exists"), "{confirm}");
    assert_eq!(
        std::fs::read(rw.join("taken.bin")).unwrap(),
        b"the old taken.bin"
    );
    b.shot("32-files-rename-confirm").await;
    b.click("#confirm-yes").await;
    eventually(STEP, "blob.bin renamed onto taken.bin", async || {
        !rw.join("blob.bin").exists()
    })
    .await;
    assert!(std::fs::read(rw.join("taken.bin")).unwrap() == payload);
    announced(&b, "Renamed rw/blob.bin to rw/taken.bin").await;

    // Delete a file, after a confirm naming it.
    b.click("button[data-path='rw/taken.bin']").await;
    b.click("button[data-op=delete]").await;
    let confirm = b.css("#confirm-dialog").await.text().await.unwrap();
    assert!(confirm.contains("Delete rw/taken.bin?"), "{confirm}");
    b.click("#confirm-yes").await;
    eventually(STEP, "rw/taken.bin deleted", async || {
        !rw.join("taken.bin").exists()
    })
    .await;
    announced(&b, "Deleted rw/taken.bin").await;

    // Delete a folder with contents: recursively, after a confirm that
    // names it and says so.
    std::fs::create_dir_all(rw.join("made-here/inner")).unwrap();
    std::fs::write(rw.join("made-here/inner/deep.txt"), "deep").unwrap();
    b.click("button[data-path='rw/made-here']").await;
    b.until(
        "the open folder selected",
        "return document.getElementById('files-selection').textContent === 'Selected: rw/made-here (the open folder)' && !document.querySelector('button[data-op=delete]').disabled",
    )
    .await;
    b.click("button[data-op=delete]").await;
    let confirm = b.css("#confirm-dialog").await.text().await.unwrap();
    assert!(
        confirm.contains("Delete the folder rw/made-here?") && confirm.contains("recursively"),
        "{confirm}"
    );
    b.shot("33-files-delete-folder").await;
    b.click("#confirm-yes").await;
    eventually(STEP, "rw/made-here deleted", async || {
        !rw.join("made-here").exists()
    })
    .await;
    announced(&b, "Deleted rw/made-here (3 entries)").await;
    b.until(
        "back in rw, emptied",
        "return document.querySelector('#explorer-entries')?.textContent === 'Empty.'",
    )
    .await;
    assert_eq!(std::fs::read(ro.join("keep.txt")).unwrap(), b"keep");
    b.shot("34-files-done").await;

    b.stop().await;
    f.stop().await;
}

/// A daemon without the file manager (the reference daemon, or a voltd
/// from before it) answers `remote.explorer.stat` with the protocol's 404
/// for an unknown command: the Files tab offers reading only and says so.
/// The daemon is the kit's scripted one (real socket.io wire): an older
/// daemon cannot be built here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_tab_offers_nothing_a_daemon_without_stat_does_not_offer() {
    use testkit::sio::{ScriptedDaemon, success_for};
    let plane = testkit::plane::plane().await;
    let base = plane.base_url();
    let (created, pw) = testkit::plane::enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let daemon = ScriptedDaemon::start(&base, &id, &pw, |cmd| {
        let answer = match (cmd["command"].as_str(), cmd["payload"]["path"].as_str()) {
            (Some("remote.explorer.list"), Some("")) => success_for(
                cmd,
                json!([{"id": "data", "name": "data", "path": "data", "type": "directory", "description": "/srv/data"}]),
            ),
            (Some("remote.explorer.list"), _) => success_for(cmd, json!([])),
            (name, _) => json!({
                "type": "response", "requestId": cmd["requestId"], "ok": false, "status": 404,
                "message": format!("Unknown daemon command: {}", name.unwrap_or_default()),
            }),
        };
        vec![answer]
    })
    .await;
    let b = Browser::start().await;
    log_in(&b, &base, testkit::plane::TEST_ADMIN_TOKEN).await;
    b.client
        .goto(&format!("{base}/#/clusters/{id}/files"))
        .await
        .unwrap();
    b.click("button[data-path='data']").await;
    b.until(
        "the verdict",
        "return document.querySelector('button[data-op=mkdir]').title === 'not offered by this daemon'",
    )
    .await;
    for op in ["upload", "mkdir", "rename", "delete"] {
        assert_eq!(
            file_button(&b, op).await,
            (true, "not offered by this daemon".into()),
            "{op}"
        );
    }
    let note = b.css("#files-readonly").await;
    assert!(note.is_displayed().await.unwrap());
    assert!(
        note.text().await.unwrap().contains("read-only host files"),
        "{}",
        note.text().await.unwrap()
    );
    b.shot("35-files-not-offered").await;
    let asked: Vec<Value> = daemon
        .received()
        .iter()
        .map(|c| c["command"].clone())
        .collect();
    assert!(asked.contains(&json!("remote.explorer.stat")), "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|c| c == "remote.explorer.list" || c == "remote.explorer.stat"),
        "only list and stat were asked: {asked:?}"
    );
    b.stop().await;
    daemon.stop().await;
    plane.shutdown().await;
}
