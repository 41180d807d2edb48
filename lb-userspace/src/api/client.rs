//! The client side of the stats socket, for `lb server ...`, `lb weight ...` and `lb api`:
//! what `echo CMD | socat stdio SOCKET` does, with bounded waits and clear errors.
use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::config::{ApiAddr, ApiLevel};

/// Where the socket is when neither `--socket` nor a config names it.
pub const DEFAULT_SOCKET: &str = "/run/lb/stats";

/// How long the daemon may take to answer.
const WAIT: Duration = Duration::from_secs(15);
/// Answers larger than this are cut (a `show stat` of thousands of servers fits).
const MAX_ANSWER: u64 = 64 << 20;

/// The socket to use: `--socket`, else the config's `stats_socket`, else [`DEFAULT_SOCKET`].
pub fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(c) = config {
        let loaded = crate::config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The first UNIX socket, preferring one of admin level (the changes need it).
        let sockets = &loaded.config.global.stats_sockets;
        let unix = |admin: bool| {
            sockets.iter().find_map(|s| match &s.addr {
                ApiAddr::Unix(p) if !admin || s.level == ApiLevel::Admin => Some(p.clone()),
                _ => None,
            })
        };
        return match unix(true).or_else(|| unix(false)) {
            Some(p) => Ok(p),
            None if !sockets.is_empty() => bail!(
                "{} has no UNIX stats socket; lb's commands use one (for a TCP one: echo CMD | socat stdio TCP:ADDRESS)",
                c.display()
            ),
            None => bail!(
                "{} has no stats socket ('stats socket' in haproxy.cfg, 'stats_socket' in TOML)",
                c.display()
            ),
        };
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

/// Sends one request (several with `;`) and returns the whole answer, trailing empty line
/// included, as HAProxy sends it.
pub fn request(socket: &Path, command: &str) -> Result<String> {
    request_within(socket, command, WAIT)
}

/// [`request`], for a command whose answer may take up to `wait` (`trace xdp on` answers
/// once the verifier accepted the tracing copy of the program).
pub fn request_within(socket: &Path, command: &str, wait: Duration) -> Result<String> {
    if command.contains('\n') {
        bail!("a command is one line");
    }
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the stats socket {} (is lb running with a stats socket there, and are you allowed to use it?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(wait))?;
    s.set_write_timeout(Some(WAIT))?;
    s.write_all(format!("{command}\n").as_bytes())
        .context("sending the command")?;
    let mut out = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut out)
        .context("reading the answer (the daemon did not answer in time?)")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// For commands that answer nothing when they succeed (`disable server`, `set weight`, ...):
/// `Ok` for HAProxy's empty answer, `Err` with the daemon's message otherwise.
pub fn change(socket: &Path, command: &str) -> Result<()> {
    change_within(socket, command, WAIT)
}

/// [`change`] with [`request_within`]'s wait.
pub fn change_within(socket: &Path, command: &str, wait: Duration) -> Result<()> {
    let answer = request_within(socket, command, wait)?;
    let text = answer.trim_end();
    if text.is_empty() {
        Ok(())
    } else {
        bail!("{text}")
    }
}
