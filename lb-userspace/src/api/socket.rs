//! The stats socket server: one tokio task per session, HAProxy's framing (see [`super::cli`]).
//!
//! Bounds, so that no client can hurt forwarding or the daemon:
//! - at most [`MAX_SESSIONS`] sessions at once; more clients wait in the listen backlog;
//! - a request is at most [`cli::MAX_REQUEST`] bytes (a longer one closes the session, as
//!   HAProxy does), and binary bytes are just unknown words;
//! - a session idle for [`IDLE`] (HAProxy's default `stats timeout`) or a client that does not
//!   read its answer within [`IDLE`] is closed;
//! - requests reach the serve loop through a bounded queue, with a timeout.
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::Semaphore,
};

use super::{
    Collector,
    cli::{self, Command, Next},
    stats,
};
use crate::config::ApiLevel;

pub const MAX_SESSIONS: usize = 256;
pub const IDLE: Duration = Duration::from_secs(10);

/// A runtime API listener, UNIX or TCP (`stats socket ipv4@127.0.0.1:9999`).
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts sessions until the task is aborted.
pub async fn run(listener: Listener, level: ApiLevel, collector: Arc<Collector>) {
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        };
        match accepted {
            Ok(stream) => {
                let c = collector.clone();
                tokio::spawn(async move {
                    match stream {
                        Stream::Unix(s) => session(s, level, c).await,
                        Stream::Tcp(s) => session(s, level, c).await,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                eprintln!("[WARNING] stats socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// What a session keeps between requests.
struct Session {
    /// The socket's level (decides what `show stat` reveals, as HAProxy's bind level does).
    bind_level: ApiLevel,
    /// The session's level (`operator`/`user` lower it).
    level: ApiLevel,
    interactive: bool,
}

/// After a request: keep going or close.
enum Then {
    Continue,
    /// `quit`.
    Close,
}

async fn session<S>(mut stream: S, level: ApiLevel, collector: Arc<Collector>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut s = Session {
        bind_level: level,
        level,
        interactive: false,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        // Answer every complete request received so far.
        loop {
            let (args, used) = match cli::next_request(&buf) {
                Next::Request(line, used) => (cli::words(line), used),
                Next::Partial => break,
                Next::TooLong => return,
            };
            buf.drain(..used);
            let (mut out, then, nolf) = execute(&mut s, &args, &collector).await;
            if matches!(then, Then::Close) {
                // `quit`: HAProxy ends the session there, without a prompt.
                return;
            }
            if s.interactive {
                out.push_str("\n> ");
            } else if !nolf {
                out.push('\n');
            }
            let written = tokio::time::timeout(IDLE, stream.write_all(out.as_bytes())).await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
            // Not interactive: the session ends when no request is left (HAProxy closes
            // once its request buffer is empty).
            if !s.interactive && buf.is_empty() {
                return;
            }
        }
        match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // EOF (a half request is dropped, as HAProxy does), error or idle.
            _ => return,
        }
    }
}

/// Runs one request: the answer, whether to close, and whether to skip the empty line.
async fn execute(s: &mut Session, args: &[String], col: &Collector) -> (String, Then, bool) {
    let reply = |t: String| (t, Then::Continue, false);
    match cli::parse(args, s.level) {
        Command::Help(a) => reply(cli::usage(&a)),
        Command::Prompt => {
            s.interactive = !s.interactive;
            reply(String::new())
        }
        Command::Quit => (String::new(), Then::Close, true),
        Command::SetLevel { level, quiet } => {
            s.level = level;
            (String::new(), Then::Continue, quiet)
        }
        Command::ShowCliLevel => reply(format!("{}\n", cli::level_name(s.level))),
        Command::ShowVersion => reply(format!("{}\n", env!("CARGO_PKG_VERSION"))),
        Command::Reply(t) => reply(t),
        Command::Admin(cmd) => match col.admin(cmd).await {
            Ok(()) => reply(String::new()),
            Err(e) => reply(e),
        },
        Command::Trace(cmd) => match col.trace(cmd).await {
            Ok(()) => reply(String::new()),
            Err(e) => reply(e),
        },
        read => {
            let st = match col.state().await {
                Ok(st) => st,
                Err(e) => return reply(e),
            };
            let text = match read {
                Command::ShowStat(opts) => {
                    let tr = col.traffic(&st).await;
                    stats::show_stat(&st, &tr, &opts, s.bind_level >= ApiLevel::Operator)
                        .unwrap_or_else(|e| e)
                }
                Command::ShowInfo => {
                    let tr = col.traffic(&st).await;
                    stats::show_info(&st, &tr, &hostname(), ulimit_nofile(), nbthread())
                }
                Command::ShowServersState(b) => {
                    stats::servers_state(&st, b.as_deref()).unwrap_or_else(|e| e)
                }
                Command::ShowBackend => stats::show_backend(&st),
                Command::GetWeight(b, srv) => {
                    stats::get_weight(&st, &b, &srv).unwrap_or_else(|e| e)
                }
                _ => String::new(),
            };
            reply(text)
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

pub fn ulimit_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        0
    }
}

pub fn nbthread() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
