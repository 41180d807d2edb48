//! What a user notices while something happens to the balancer (a restart, an upgrade, a
//! flood): one kept-alive connection doing a request every 100 ms, and a new connection every
//! 200 ms, each failure counted. Bounded: the threads stop when told, or after `limit`.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};

use crate::{http::Conn, netns::Netns};

/// Requests that worked and those that did not (with why, the first few).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub errors: Vec<String>,
}

impl Tally {
    fn note(&mut self, r: Result<()>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                if self.errors.len() < 5 {
                    self.errors.push(format!("{e:#}"));
                }
            }
        }
    }
}

/// What the probe saw: on the kept-alive connection, and on new connections.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub keep_alive: Tally,
    pub new_conns: Tally,
}

pub struct Probe {
    stop: Arc<AtomicBool>,
    keep_alive: JoinHandle<Result<Tally>>,
    new_conns: JoinHandle<Result<Tally>>,
}

fn ok_status(r: crate::http::Response) -> Result<()> {
    if r.status == 200 {
        Ok(())
    } else {
        Err(anyhow!("HTTP {}", r.status))
    }
}

impl Probe {
    /// Starts both loops from `ns` towards `addr` (an HTTP server answering `/`), for at most
    /// `limit`.
    pub fn start(ns: &Netns, addr: SocketAddr, limit: Duration) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + limit;
        let s = stop.clone();
        let keep_alive = ns.spawn(move || {
            let mut t = Tally::default();
            let mut conn: Option<Conn> = None;
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                let r = (|| {
                    if conn.is_none() {
                        conn = Some(Conn::connect(addr)?);
                    }
                    let c = conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
                    ok_status(c.request("/", true)?)
                })();
                if r.is_err() {
                    // A broken connection is counted once; the next request reconnects.
                    conn = None;
                }
                t.note(r);
                std::thread::sleep(Duration::from_millis(100));
            }
            t
        })?;
        let s = stop.clone();
        let new_conns = ns.spawn(move || {
            let mut t = Tally::default();
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                t.note((|| ok_status(Conn::connect(addr)?.request("/", false)?))());
                std::thread::sleep(Duration::from_millis(200));
            }
            t
        })?;
        Ok(Probe {
            stop,
            keep_alive,
            new_conns,
        })
    }

    /// Stops both loops and returns what they saw.
    pub fn finish(self) -> Result<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let join = |h: JoinHandle<Result<Tally>>| {
            h.join()
                .map_err(|_| anyhow!("probe thread panicked"))?
                .map_err(|e| anyhow!("probe thread: {e:#}"))
        };
        Ok(Seen {
            keep_alive: join(self.keep_alive)?,
            new_conns: join(self.new_conns)?,
        })
    }
}
