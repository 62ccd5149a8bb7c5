//! "The network may be back": a stream of the kernel's rtnetlink
//! notifications, reduced to the ones that can end an outage — a link
//! that is up and running, an address added, a route added.
//!
//! The control socket uses it to cut a reconnect backoff short: after a
//! partition of a minute the backoff waits up to 30 s between attempts, but
//! when the host itself sees its link or route come back, the next attempt
//! starts at once (README "Wire behaviour worth knowing"). An outage the host
//! cannot see (a router further away) still ends with the next backoff
//! attempt.
//!
//! Written on `nix`'s netlink socket and a parser of the two fixed headers
//! it needs (`nlmsghdr`, `ifinfomsg`) instead of `rtnetlink`: that crate is
//! a full route-management client with its own connection task; we read
//! three integers from notifications. Only a process with `CAP_NET_ADMIN`
//! in the host's network namespace can cause these notifications, so they
//! are not an input the VOLT server or a local user controls.

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::sync::mpsc;

/// Multicast groups: links, IPv4/IPv6 addresses and routes
/// (`RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE |
/// RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE` of `linux/rtnetlink.h`).
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;

/// `nlmsghdr.nlmsg_type` values of `linux/rtnetlink.h`.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
/// `ifinfomsg.ifi_flags` bits of `linux/if.h`.
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
/// `sizeof(struct nlmsghdr)`; messages are aligned to 4 bytes.
const NLMSG_HDRLEN: usize = 16;
/// Netlink datagrams are at most a page or two; 16 KiB never truncates.
const RECV_BUFFER: usize = 16 * 1024;
/// How often the reading thread checks that someone still listens.
const POLL_SECS: i64 = 1;

/// Whether a netlink datagram (one or more messages) announces something
/// that may end an outage. Pure; malformed input is simply "no".
pub fn announces_network_up(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return false;
        }
        let body = &rest[NLMSG_HDRLEN..len];
        let up = match kind {
            // ifinfomsg: family u8, pad u8, type u16, index i32, flags u32.
            RTM_NEWLINK => body.get(8..12).is_some_and(|f| {
                let flags = u32::from_ne_bytes([f[0], f[1], f[2], f[3]]);
                flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING
            }),
            RTM_NEWADDR | RTM_NEWROUTE => true,
            _ => false,
        };
        if up {
            return true;
        }
        let aligned = (len + 3) & !3;
        rest = rest.get(aligned..).unwrap_or_default();
    }
    false
}

/// A subscription to the host's network changes. The netlink socket is
/// read by a small thread of its own (blocking reads with a 1 s timeout,
/// so it ends within a second of the subscription being dropped): tokio's
/// `AsyncFd` would need `unsafe` to register a raw socket, and a thread
/// that sleeps in `recv` costs nothing.
pub struct NetWatch {
    rx: mpsc::Receiver<()>,
}

impl NetWatch {
    /// Subscribes. Fails where netlink is unavailable (not Linux, a
    /// sandbox without `AF_NETLINK`).
    pub fn open() -> std::io::Result<NetWatch> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS))?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(POLL_SECS, 0))?;
        // One pending "changed" is enough: a burst collapses into it.
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("voltd-netwatch".into())
            .spawn(move || read_changes(fd, tx))?;
        Ok(NetWatch { rx })
    }

    /// Waits for the next notification that may end an outage (a burst
    /// of them is one); an error once the watch has ended.
    pub async fn next_up(&mut self) -> std::io::Result<()> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| std::io::Error::other("the network watch ended"))
    }
}

fn read_changes(fd: OwnedFd, tx: mpsc::Sender<()>) {
    use nix::errno::Errno;
    let mut buf = vec![0u8; RECV_BUFFER];
    while !tx.is_closed() {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                if announces_network_up(&buf[..n]) {
                    let _ = tx.try_send(());
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // The kernel dropped notifications because we were slow:
            // something changed; say so.
            Err(Errno::ENOBUFS) => {
                let _ = tx.try_send(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "Reading network changes failed; the watch ends.");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn link(flags: u32) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&[0; 4]); // change
        msg(RTM_NEWLINK, &body)
    }

    #[test]
    fn a_link_up_and_running_an_address_or_a_route_means_up() {
        assert!(announces_network_up(&link(IFF_UP | IFF_RUNNING | 0x1000)));
        assert!(announces_network_up(&msg(RTM_NEWADDR, &[0; 8])));
        assert!(announces_network_up(&msg(RTM_NEWROUTE, &[0; 12])));
    }

    #[test]
    fn links_going_down_and_deletions_do_not() {
        assert!(!announces_network_up(&link(IFF_UP))); // no carrier
        assert!(!announces_network_up(&link(0)));
        assert!(!announces_network_up(&msg(17, &[0; 16]))); // RTM_DELLINK
        assert!(!announces_network_up(&msg(21, &[0; 8]))); // RTM_DELADDR
        assert!(!announces_network_up(&msg(25, &[0; 12]))); // RTM_DELROUTE
    }

    #[test]
    fn the_second_message_of_a_datagram_counts() {
        let mut d = msg(25, &[0; 12]);
        d.extend(link(IFF_UP | IFF_RUNNING));
        assert!(announces_network_up(&d));
    }

    #[test]
    fn malformed_datagrams_are_no_and_never_panic() {
        assert!(!announces_network_up(&[]));
        assert!(!announces_network_up(&[0; 15]));
        let mut lying = msg(RTM_NEWADDR, &[0; 4]);
        lying[0] = 200; // longer than the datagram
        assert!(!announces_network_up(&lying));
        let mut short = msg(RTM_NEWADDR, &[]);
        short[0] = 4; // shorter than a header
        assert!(!announces_network_up(&short));
        // A link message without its flags.
        assert!(!announces_network_up(&msg(RTM_NEWLINK, &[0; 4])));
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let _ = announces_network_up(&junk);
        }
    }
}
