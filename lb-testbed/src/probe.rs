//! Clients that keep using an HTTP service in the background while something happens to it
//! (a flood, a server going down), and report what they saw: a kept-alive connection asking
//! at a fixed interval ([`KeepAlive`]), and a new connection at a fixed interval
//! ([`NewConns`]). Their threads live in the client's namespace.
use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};

use crate::{http::Conn, netns::Netns};

/// How long a new connection may take to connect: the first SYN and two retransmissions
/// (Linux sends them after 1 and 3 s).
pub const CONNECT_LIMIT: Duration = Duration::from_secs(4);

/// One kept-alive connection asking `GET path` every `every`; a failed request is counted
/// and the probe reconnects.
pub struct KeepAlive {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Result<KeepAliveReport>>>>,
}

#[derive(Clone, Debug, Default)]
pub struct KeepAliveReport {
    /// Requests answered with a 2xx or 3xx.
    pub ok: u64,
    /// Failed requests (errors, other statuses), with when (from the probe's start) and why.
    pub errors: Vec<(Duration, String)>,
    /// Connections opened after the first one (one per failure).
    pub reconnects: u64,
}

impl KeepAlive {
    /// Connects (failing at once if that fails) and starts asking.
    pub fn start(ns: &Netns, addr: SocketAddr, path: &str, every: Duration) -> Result<KeepAlive> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || -> Result<KeepAliveReport> {
            let origin = Instant::now();
            let conn = Conn::connect(addr);
            let _ = ready_tx.send(conn.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
            let mut conn = Some(conn?);
            let mut report = KeepAliveReport::default();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let c = match conn.take() {
                    Some(c) => Ok(c),
                    None => {
                        report.reconnects += 1;
                        Conn::connect(addr)
                    }
                };
                let outcome = c.and_then(|mut c| {
                    let r = c.request(&path, true)?;
                    Ok((c, r.status))
                });
                match outcome {
                    Ok((c, status)) if (200..400).contains(&status) => {
                        report.ok += 1;
                        conn = Some(c);
                    }
                    Ok((c, status)) => {
                        report
                            .errors
                            .push((origin.elapsed(), format!("status {status}")));
                        conn = Some(c);
                    }
                    Err(e) => report.errors.push((origin.elapsed(), format!("{e:#}"))),
                }
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(report)
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(KeepAlive {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(anyhow!("keep-alive probe could not connect to {addr}: {e}")),
            Err(_) => Err(anyhow!("keep-alive probe did not start")),
        }
    }

    /// Stops asking and returns what the probe saw.
    pub fn stop(mut self) -> Result<KeepAliveReport> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().context("already stopped")?;
        t.join()
            .map_err(|_| anyhow!("keep-alive probe panicked"))??
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One new connection's fate.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub started: Instant,
    /// Until the answer, or the failure.
    pub took: Duration,
    /// The HTTP status, or why there was none.
    pub outcome: Result<u16, String>,
}

impl Attempt {
    /// Served: answered with a 2xx or 3xx.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok(s) if (200..400).contains(&s))
    }
}

/// A new connection (`GET path`, `Connection: close`) every `every`, each on its own thread
/// so that a slow one does not delay the next.
pub struct NewConns {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Result<Vec<Attempt>>>>>,
}

impl NewConns {
    pub fn start(ns: &Netns, addr: SocketAddr, path: &str, every: Duration) -> Result<NewConns> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_string();
        // Threads spawned from a thread inside `ns` are inside it too.
        let thread = ns.spawn(move || {
            let mut pending = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let path = path.clone();
                pending.push(std::thread::spawn(move || attempt(addr, &path)));
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            pending
                .into_iter()
                .map(|t| {
                    t.join()
                        .map_err(|_| anyhow!("a connection attempt panicked"))
                })
                .collect::<Result<Vec<Attempt>>>()
        })?;
        Ok(NewConns {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops opening connections, waits for those under way, and returns every attempt in
    /// the order they started.
    pub fn stop(mut self) -> Result<Vec<Attempt>> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().context("already stopped")?;
        t.join()
            .map_err(|_| anyhow!("new-connection probe panicked"))??
    }
}

impl Drop for NewConns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn attempt(addr: SocketAddr, path: &str) -> Attempt {
    let started = Instant::now();
    let outcome = TcpStream::connect_timeout(&addr, CONNECT_LIMIT)
        .with_context(|| format!("connecting to {addr}"))
        .and_then(Conn::new)
        .and_then(|mut c| c.request(path, false))
        .map(|r| r.status)
        .map_err(|e| format!("{e:#}"));
    Attempt {
        started,
        took: started.elapsed(),
        outcome,
    }
}

/// Both probes at once, at the pace of a user who clicks around: a request on the kept-alive
/// connection every 100 ms, a new connection every 200 ms.
pub struct Probe {
    keep_alive: KeepAlive,
    new_conns: NewConns,
}

/// What a [`Probe`] saw.
#[derive(Debug)]
pub struct Seen {
    pub keep_alive: KeepAliveReport,
    pub new_conns: Vec<Attempt>,
}

impl Seen {
    /// New connections served.
    pub fn new_conns_ok(&self) -> usize {
        self.new_conns.iter().filter(|a| a.ok()).count()
    }

    /// New connections that failed, and why.
    pub fn new_conns_failed(&self) -> Vec<&Attempt> {
        self.new_conns.iter().filter(|a| !a.ok()).collect()
    }
}

impl Probe {
    /// Starts both from `ns` towards `addr` (an HTTP server answering `/`).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<Probe> {
        Ok(Probe {
            keep_alive: KeepAlive::start(ns, addr, "/", Duration::from_millis(100))?,
            new_conns: NewConns::start(ns, addr, "/", Duration::from_millis(200))?,
        })
    }

    /// Stops both and returns what they saw.
    pub fn finish(self) -> Result<Seen> {
        Ok(Seen {
            keep_alive: self.keep_alive.stop()?,
            new_conns: self.new_conns.stop()?,
        })
    }
}
