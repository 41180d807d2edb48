//! Where the API's answers come from: the serve loop for what the daemon knows (states,
//! checks, history; changes go there too), the pinned maps for what the data plane counts.
//! Reading the maps never waits for the serve loop, and a busy or stuck serve loop makes
//! requests fail after a bound instead of piling up.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    AdminCmd, Request,
    stats::{Flows, State, Traffic},
};
use crate::dataplane::{
    Maps,
    ids::{ServerId, ServerSlot},
};

/// How long a request may wait for the serve loop.
const SERVE_LOOP_WAIT: Duration = Duration::from_secs(5);
/// How long loading a tracing copy of the program may take (the verifier, on a busy host).
const TRACE_LOAD_WAIT: Duration = Duration::from_secs(120);

/// Largest flow counts seen, by (backend, server) and by frontend name.
type MaxSeen = (HashMap<(String, String), u64>, HashMap<String, u64>);

pub struct Collector {
    tx: mpsc::Sender<Request>,
    maps: Arc<Maps>,
    /// The last read and when it started.
    cache: tokio::sync::Mutex<Option<(Instant, Arc<Traffic>)>>,
    max_seen: Mutex<MaxSeen>,
}

impl Collector {
    pub fn new(tx: mpsc::Sender<Request>, maps: Maps) -> Collector {
        Collector {
            tx,
            maps: Arc::new(maps),
            cache: tokio::sync::Mutex::new(None),
            max_seen: Mutex::new(Default::default()),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, String> {
        self.ask_within(SERVE_LOOP_WAIT, make).await
    }

    /// [`Collector::ask`] for an answer that takes up to `wait` once the request is taken.
    async fn ask_within<T>(
        &self,
        wait: Duration,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(SERVE_LOOP_WAIT, self.tx.send(make(tx))).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("lb: the daemon is shutting down.\n".into()),
            Err(_) => return Err("lb: the daemon is busy, try again.\n".into()),
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err("lb: the daemon dropped the request.\n".into()),
            Err(_) => Err("lb: the daemon did not answer in time.\n".into()),
        }
    }

    /// The daemon's view, from the serve loop.
    pub async fn state(&self) -> Result<State, String> {
        self.ask(Request::State).await
    }

    /// Applies a change in the serve loop; `Err` is the text to answer.
    pub async fn admin(&self, cmd: AdminCmd) -> Result<(), String> {
        self.ask(|tx| Request::Admin(cmd, tx)).await?
    }

    /// Turns data-plane tracing on or off in the serve loop; `Err` is the text to answer.
    /// `on` answers once the tracing copy of the program is verified and running.
    pub async fn trace(&self, cmd: super::cli::TraceCmd) -> Result<(), String> {
        self.ask_within(TRACE_LOAD_WAIT, |tx| Request::Trace(cmd, tx))
            .await?
    }

    /// The data plane's counters for `state`'s servers and frontends, read after this call
    /// started. Concurrent callers share a read: one that started after they asked is fresh
    /// enough for them, so a thousand clients asking `show stat` at once cost two scans of
    /// the flow table, not a thousand, and nobody sees counters older than its question.
    pub async fn traffic(&self, state: &State) -> Traffic {
        let asked = Instant::now();
        let raw = {
            let mut cache = self.cache.lock().await;
            match cache.as_ref() {
                Some((started, t)) if *started >= asked => t.clone(),
                _ => {
                    let started = Instant::now();
                    let maps = self.maps.clone();
                    let frontends = state.frontends.len();
                    let ids: Vec<(ServerId, ServerSlot)> = state
                        .backends
                        .iter()
                        .flat_map(|b| b.servers.iter().map(|s| (s.id, s.slot)))
                        .collect();
                    let t =
                        tokio::task::spawn_blocking(move || read_traffic(&maps, &ids, frontends))
                            .await
                            .unwrap_or_default();
                    let t = Arc::new(t);
                    *cache = Some((started, t.clone()));
                    t
                }
            }
        };
        let mut t = (*raw).clone();
        self.note_max(state, &mut t);
        t
    }

    /// Keeps the largest flow counts seen and writes them into `max`.
    fn note_max(&self, state: &State, t: &mut Traffic) {
        let mut seen = self.max_seen.lock().unwrap_or_else(|p| p.into_inner());
        for b in &state.backends {
            for s in &b.servers {
                if let Some(f) = t.servers.get_mut(s.id.index()) {
                    let m = seen.0.entry((b.name.clone(), s.name.clone())).or_default();
                    *m = (*m).max(f.current);
                    f.max = *m;
                }
            }
        }
        for fe in &state.frontends {
            if let Some(f) = t.frontends.get_mut(fe.id as usize) {
                let m = seen.1.entry(fe.name.clone()).or_default();
                *m = (*m).max(f.current);
                f.max = *m;
            }
        }
    }
}

/// One pass over the flow table, and the counters of servers `ids` (where the data plane
/// keeps each) and of `frontends`. The result is indexed by server id.
pub fn read_traffic(maps: &Maps, ids: &[(ServerId, ServerSlot)], frontends: usize) -> Traffic {
    let n = ids.iter().map(|&(id, _)| id.index() + 1).max().unwrap_or(0);
    let open = maps.open_flows(frontends, crate::dataplane::clock::now());
    let mut servers = vec![Flows::default(); n];
    for &(id, slot) in ids {
        if let Some(fl) = servers.get_mut(id.index()) {
            fl.current = open.per_server.get(slot.index()).copied().unwrap_or(0);
            if let Ok(c) = maps.server_counters(slot) {
                fl.counters = c;
            }
        }
    }
    let mut fronts: Vec<Flows> = open
        .per_frontend
        .iter()
        .map(|&current| Flows {
            current,
            ..Flows::default()
        })
        .collect();
    for (id, fl) in fronts.iter_mut().enumerate() {
        if let Ok(c) = maps.frontend_counters(id as u32) {
            fl.counters = c;
        }
    }
    Traffic {
        servers,
        frontends: fronts,
        total_flows: open.total,
        reasons: maps
            .reasons()
            .map(|rs| {
                rs.into_iter()
                    .map(|(r, n)| (r.name().to_string(), n))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
