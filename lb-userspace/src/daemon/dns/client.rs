//! The DNS client: one task per `resolvers` section that servers use. It asks every name
//! server of the section over one UDP socket, on the schedule [`Resolution`] keeps, and
//! reports each finished resolution to the serve loop, which moves the servers.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle, time::Instant};

use super::{
    resolution::{Finished, Resolution, Step, query_types},
    wire,
};
use crate::config::{Config, Family, Resolvers};

/// A finished resolution of `name` by section `resolvers`.
#[derive(Clone, Debug)]
pub struct DnsEvent {
    pub resolvers: String,
    pub name: String,
    pub finished: Finished,
    /// The `nameserver` id that answered, for the log line.
    pub nameserver: Option<String>,
}

/// The running DNS tasks. Dropping it stops them.
#[derive(Default)]
pub struct DnsClients {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsClients {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The names each section resolves (those of the servers that name it), with the family
/// the first of their servers prefers.
fn names_of(cfg: &Config, section: &str) -> BTreeMap<String, Family> {
    let mut names = BTreeMap::new();
    for s in cfg.backends.iter().flat_map(|b| &b.servers) {
        if s.dns.resolvers.as_deref() == Some(section)
            && let Some(n) = &s.fqdn
        {
            names.entry(n.clone()).or_insert(s.dns.prefer);
        }
    }
    names
}

/// Starts a task for every section some server uses (needs a tokio runtime).
pub fn spawn(cfg: &Config, events: mpsc::Sender<DnsEvent>) -> DnsClients {
    let mut tasks = Vec::new();
    for r in &cfg.global.resolvers {
        let names = names_of(cfg, &r.name);
        if names.is_empty() || r.nameservers.is_empty() {
            continue;
        }
        tasks.push(tokio::spawn(run(
            Arc::new(r.clone()),
            names.into_iter().collect(),
            events.clone(),
        )));
    }
    DnsClients { tasks }
}

/// A query id nobody can guess (answers are only believed with the id asked).
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 2 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos() as u16;
    }
    u16::from_ne_bytes(b)
}

async fn run(r: Arc<Resolvers>, names: Vec<(String, Family)>, events: mpsc::Sender<DnsEvent>) {
    let sock = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "[ALERT] resolvers '{}': can't create socket for its name servers: {e}",
                r.name
            );
            return;
        }
    };
    let servers: Vec<SocketAddr> = r
        .nameservers
        .iter()
        .map(|n| SocketAddr::V4(n.addr))
        .collect();
    let start = Instant::now().into_std();
    let mut res: Vec<(Resolution, Family)> = names
        .iter()
        .map(|(n, f)| (Resolution::new(n, start), *f))
        .collect();
    let mut id = random_id;
    let mut buf = vec![0u8; usize::from(r.accepted_payload_size.max(512))];
    let report = |name: &str, f: Finished| DnsEvent {
        resolvers: r.name.clone(),
        name: name.to_string(),
        nameserver: f
            .nameserver
            .and_then(|i| r.nameservers.get(i))
            .map(|n| n.id.clone()),
        finished: f,
    };
    loop {
        let now = Instant::now().into_std();
        let mut wake = now + r.timeout_resolve;
        for (one, prefer) in &mut res {
            loop {
                match one.poll(&r, now, &mut id) {
                    Step::Send(qid) => {
                        for &qt in query_types(*prefer) {
                            let Some(q) = wire::query(qid, &one.name, qt, r.accepted_payload_size)
                            else {
                                continue;
                            };
                            for s in &servers {
                                // A lost query is a timeout like any other.
                                let _ = sock.send_to(&q, s).await;
                            }
                        }
                    }
                    Step::Wait(t) => {
                        wake = wake.min(t);
                        break;
                    }
                    Step::Done(f) => {
                        if events.send(report(&one.name, f)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(Instant::from_std(wake)) => {}
            got = sock.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                // Only the name servers asked are listened to.
                let Some(ns) = servers.iter().position(|s| *s == from) else { continue };
                let msg = &buf[..len];
                let Some(qid) = msg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
                    continue;
                };
                // The resolution awaiting this id whose question it answers.
                let Some((one, a)) = res.iter_mut().find_map(|(x, _)| {
                    let a = wire::parse(msg, &x.name, wire::QType::A).filter(|_| x.awaits(qid))?;
                    Some((x, a))
                }) else {
                    continue;
                };
                let now = Instant::now().into_std();
                if let Some(f) = one.on_answer(&r, now, ns, servers.len(), &a)
                    && events.send(report(&one.name, f)).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
