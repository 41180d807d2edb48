//! This host's addresses as they come and go: a netlink socket subscribed to IPv4 and IPv6
//! address events (no polling), so wildcard binds (`*:80`, `:::80`) follow the host's
//! addresses as HAProxy's INADDR_ANY and in6addr_any do. An IPv6 address that finishes
//! duplicate address detection is announced again (its flags change), which re-reads too.
use anyhow::{Context, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::sync::mpsc;

/// RTMGRP_IPV4_IFADDR: new and deleted IPv4 addresses.
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// RTMGRP_IPV6_IFADDR: new, changed and deleted IPv6 addresses.
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Starts a thread that sends `()` on every address change (the receiver re-reads the
/// addresses; bursts collapse into one pending message).
pub fn watch() -> Result<mpsc::Receiver<()>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket
        .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        .context("subscribing to address events")?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("lb-addrwatch".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match socket.recv(&mut &mut buf[..], 0) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // Events were lost: still a reason to look again.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => {
                        eprintln!(
                            "[WARNING] address events: {e}; wildcard binds stop following them"
                        );
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                let _ = tx.try_send(());
            }
        })
        .context("starting the address watcher")?;
    Ok(rx)
}
