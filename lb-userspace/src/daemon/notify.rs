//! systemd's notify protocol (`Type=notify`): `READY=1` once attached and serving,
//! `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` on the way out. A datagram to
//! `$NOTIFY_SOCKET`; nothing when that is not set.
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=VALUE`s) to the service manager, if any.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    let sent = addr.and_then(|a| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &a)
    });
    if let Err(e) = sent {
        eprintln!("[WARNING] could not notify the service manager at {path}: {e}");
    }
}

/// `READY=1` with the daemon's pid (which `daemon` mode changed).
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}
