//! The runtime API (HAProxy's stats socket), the Prometheus metrics and the HTML stats page.
//!
//! - [`cli`]: the socket's text protocol and commands, pure;
//! - [`stats`]: `show stat`, `show servers state`, `show info`, pure;
//! - [`collect`]: where answers come from: the serve loop (states, checks) and the maps
//!   (counters, flows);
//! - [`socket`]: the UNIX socket server;
//! - [`http`]: `/metrics` and the stats page;
//! - [`client`]: the socket's client side, for `lb server`, `lb weight`, `lb api`.
//!
//! Wiring, in the daemon:
//! 1. after the data plane is loaded and BEFORE dropping privileges, [`bind`] creates the
//!    socket (mode and owner set, the path swapped in atomically), the HTTP listener and
//!    opens the pinned maps for reading;
//! 2. [`serve`] spawns the servers; they send [`Request`]s on an mpsc channel;
//! 3. the serve loop, which owns the `Runtime`, answers them (`Runtime::on_api`), so the
//!    maps are written from one place only; reads of counters never wait for it.
pub mod cli;
pub mod client;
pub mod collect;
pub mod http;
pub mod socket;
pub mod stats;

use std::{os::unix::fs::PermissionsExt as _, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

pub use cli::{Action, AdminCmd, AdminState};
pub use collect::Collector;
pub use stats::{State, Traffic};

use crate::{
    config::{ApiAddr, ApiLevel, Config, StatsHttp},
    dataplane::{Maps, pin_dir},
};

/// What the API servers ask the serve loop.
pub enum Request {
    /// The daemon's view of proxies and servers.
    State(oneshot::Sender<State>),
    /// A change; the answer is HAProxy's error text, if any.
    Admin(AdminCmd, oneshot::Sender<Result<(), String>>),
    /// `trace xdp on|off`; the answer is the error text, if any.
    Trace(cli::TraceCmd, oneshot::Sender<Result<(), String>>),
}

/// How many requests may wait for the serve loop.
pub const QUEUE: usize = 64;

/// The socket's mode when the config gives none: only root may connect.
pub const DEFAULT_MODE: u32 = 0o600;

/// A runtime API socket [`bind`] created.
pub struct BoundSocket {
    pub listener: BoundListener,
    pub level: ApiLevel,
}

pub enum BoundListener {
    /// With its path, removed when the daemon stops.
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
    Tcp(std::net::TcpListener),
}

/// Everything [`bind`] prepared while the daemon still had its privileges.
pub struct Bound {
    pub sockets: Vec<BoundSocket>,
    /// The stats page listeners, each with its settings.
    pub http: Vec<(std::net::TcpListener, Arc<StatsHttp>)>,
    /// The pinned maps, opened for reading counters.
    pub maps: Option<Maps>,
}

/// Creates the stats socket (`stats socket PATH mode M level L`) and the stats HTTP
/// listener, and opens the pinned maps for reading. Call it after the data plane is loaded
/// (the pins exist) and before dropping privileges.
///
/// The socket is created under a temporary name, given its mode, then renamed over `PATH`,
/// so no client ever sees it with looser permissions. A socket left by a dead process is
/// replaced; one a live process still answers on is an error.
pub fn bind(cfg: &Config) -> Result<Bound> {
    let mut sockets = Vec::new();
    for s in &cfg.global.stats_sockets {
        let listener = match &s.addr {
            ApiAddr::Unix(path) => BoundListener::Unix(
                bind_unix(path, s.mode.unwrap_or(DEFAULT_MODE))?,
                path.clone(),
            ),
            ApiAddr::Tcp(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("binding stats socket {}", s.addr))?;
                l.set_nonblocking(true)?;
                BoundListener::Tcp(l)
            }
        };
        sockets.push(BoundSocket {
            listener,
            level: s.level,
        });
    }
    let mut http = Vec::new();
    for h in &cfg.global.stats_http {
        let shared = Arc::new(h.clone());
        for addr in &h.binds {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding {} on {addr}", h.name))?;
            l.set_nonblocking(true)?;
            http.push((l, shared.clone()));
        }
    }
    let maps = if !sockets.is_empty() || !http.is_empty() {
        Some(Maps::from_pins(&pin_dir(&cfg.global.instance))?)
    } else {
        None
    };
    Ok(Bound {
        sockets,
        http,
        maps,
    })
}

fn bind_unix(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener> {
    use std::os::unix::{fs::FileTypeExt as _, net::UnixStream};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the stats socket", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "stats socket {}: the path exists and is not a socket",
                path.display()
            );
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "stats socket {}: another process is listening on it",
                path.display()
            );
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("binding stats socket {}", tmp.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("placing stats socket {}", path.display()));
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The running API servers. Dropping it stops them and removes the socket file.
pub struct Servers {
    tasks: Vec<JoinHandle<()>>,
    socket_paths: Vec<std::path::PathBuf>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for p in &self.socket_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts the servers [`bind`] prepared (needs a tokio runtime). Their requests arrive on
/// `tx`'s receiver, which the serve loop must drain.
pub fn serve(bound: Bound, tx: mpsc::Sender<Request>) -> Result<Servers> {
    let Some(maps) = bound.maps else {
        return Ok(Servers {
            tasks: Vec::new(),
            socket_paths: Vec::new(),
        });
    };
    let collector = Arc::new(Collector::new(tx, maps));
    let mut tasks = Vec::new();
    let mut socket_paths = Vec::new();
    for s in bound.sockets {
        let l = match s.listener {
            BoundListener::Unix(l, path) => {
                socket_paths.push(path);
                socket::Listener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
            BoundListener::Tcp(l) => socket::Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
        };
        tasks.push(tokio::spawn(socket::run(l, s.level, collector.clone())));
    }
    for (l, page) in bound.http {
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.push(tokio::spawn(http::run(l, collector.clone(), page)));
    }
    Ok(Servers {
        tasks,
        socket_paths,
    })
}
