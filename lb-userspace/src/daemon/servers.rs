//! The daemon's table of servers (pure): one entry per server, by [`ServerId`], holding where
//! it is in the data plane, its state and its history, so everything about a server is one
//! lookup away. Entries are made from a [`Plan`] in its layout's order (the layout is the
//! only numbering) and carried over, by name, to the next plan on reload. Backends get one
//! entry each, by [`BackendId`], for their history.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};

use super::{
    history::{BackendHistory, ServerHistory},
    plan::Plan,
    slowstart::{self, Ramp},
};
use crate::{
    dataplane::{
        ids::{BackendId, ServerId},
        layout::ServerLayout,
    },
    logs::{Counts, ServerName},
};

/// A server's state as HAProxy has it: operational (health) and administrative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub up: bool,
    /// NOLB: UP, but its checks (`http-check disable-on-404`) keep new flows away.
    pub stopping: bool,
    pub admin: Admin,
    /// The user weight (HAProxy's `uweight`).
    pub weight: u32,
    /// When its slow start began (it came back UP with `slowstart` set): HAProxy's
    /// STARTING state, until the ramp ends.
    pub starting: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

impl ServerState {
    /// HAProxy's initial state: UP, or in maintenance when `disabled`.
    pub fn initial(s: &ServerLayout) -> ServerState {
        ServerState {
            up: true,
            stopping: false,
            admin: if s.disabled {
                Admin::Maint
            } else {
                Admin::Ready
            },
            weight: s.weight,
            starting: None,
        }
    }

    /// May take new flows.
    pub fn usable(self) -> bool {
        self.up && !self.stopping && self.admin == Admin::Ready
    }

    /// May keep its existing flows.
    pub fn active(self) -> bool {
        self.up && self.admin != Admin::Maint
    }

    /// Takes new flows and has some weight: what HAProxy counts as a usable server.
    fn counted(self) -> bool {
        self.usable() && self.weight > 0
    }
}

/// Everything the daemon knows about one server.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    /// Its ids, slot, address and config weight, as laid out.
    pub place: ServerLayout,
    /// Its backend's name.
    pub backend: String,
    /// The LB's source address towards it (full-NAT), of its family.
    pub snat: std::net::IpAddr,
    pub state: ServerState,
    pub history: ServerHistory,
    /// What the maps hold for it now.
    pub applied: Applied,
}

/// A server's effective weight and `maxconn` as last written to the maps (they move during
/// a slow start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// In sixteenths of the user weight (`lb_common::WEIGHT_SCALE`).
    pub eweight: u32,
    /// 0: no limit.
    pub maxconn: u32,
}

impl ServerEntry {
    pub fn id(&self) -> ServerId {
        self.place.id
    }

    /// Its slow start at `now`, if one is running.
    pub fn ramp(&self, now: Instant) -> Option<Ramp> {
        let since = self.state.starting?;
        Ramp::new(
            self.place.slowstart.unwrap_or(Duration::ZERO),
            now.saturating_duration_since(since),
        )
    }

    /// Its effective weight at `now` (`cur_eweight`, in sixteenths of the user weight) on a
    /// backend whose algorithm is `dynamic` or not.
    pub fn eweight(&self, now: Instant, dynamic: bool) -> u32 {
        slowstart::eweight(self.state.weight, self.ramp(now), dynamic)
    }

    /// Its `maxconn` at `now` (0: none), less during a slow start.
    pub fn maxconn(&self, now: Instant) -> u32 {
        match (self.place.maxconn, self.ramp(now)) {
            (0, _) => 0,
            (m, Some(r)) => r.maxconn(m),
            (m, None) => m,
        }
    }

    /// As the log lines name it.
    pub fn name(&self) -> ServerName<'_> {
        ServerName {
            backend: &self.backend,
            server: &self.place.name,
            backup: self.place.backup,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BackendEntry {
    pub name: String,
    pub history: BackendHistory,
}

/// Every server and backend of a plan.
#[derive(Clone, Debug)]
pub struct Servers {
    /// By [`ServerId`].
    servers: Vec<ServerEntry>,
    /// By [`BackendId`].
    backends: Vec<BackendEntry>,
}

impl Servers {
    /// As the balancer starts: servers in their initial state, histories from now.
    pub fn new(plan: &Plan) -> Result<Servers> {
        Servers::make(plan, None)
    }

    /// The entries of the next plan (`lb` reload). Servers that stay (same backend and name)
    /// keep their health (one in maintenance comes back UP, as its new checker restarts from
    /// `rise`) and their history; their admin state and weight are the new config's.
    /// Backends that stay keep their history.
    pub fn carried_into(&self, plan: &Plan) -> Result<Servers> {
        Servers::make(plan, Some(self))
    }

    fn make(plan: &Plan, old: Option<&Servers>) -> Result<Servers> {
        let now = Instant::now();
        let old_servers: HashMap<(&str, &str), &ServerEntry> = old
            .iter()
            .flat_map(|o| &o.servers)
            .map(|e| ((e.backend.as_str(), e.place.name.as_str()), e))
            .collect();
        let old_backends: HashMap<&str, &BackendEntry> = old
            .iter()
            .flat_map(|o| &o.backends)
            .map(|b| (b.name.as_str(), b))
            .collect();
        let mut servers = Vec::new();
        for (p, s) in plan.layout.servers() {
            let snat = plan.snat.get(s.id.index()).copied().ok_or_else(|| {
                anyhow!(
                    "server {}/{}: no full-NAT source address planned",
                    p.name,
                    s.name
                )
            })?;
            let kept = old_servers.get(&(p.name.as_str(), s.name.as_str()));
            let mut state = ServerState::initial(s);
            if let Some(k) = kept {
                state.up = k.state.up || k.state.admin == Admin::Maint;
                // A slow start under way goes on (it restarts if the server was held in
                // maintenance, which the new config releases).
                state.starting = k.state.starting.filter(|_| k.state.admin != Admin::Maint);
            }
            let history = match kept {
                Some(k) => k.history.clone(),
                None => ServerHistory::new(now, state.active(), s.disabled),
            };
            servers.push(ServerEntry {
                place: s.clone(),
                backend: p.name.clone(),
                snat,
                state,
                history,
                applied: Applied::default(),
            });
        }
        let mut t = Servers {
            servers,
            backends: Vec::new(),
        };
        // Backends start up or down from their servers' states, carried ones included.
        let backends = plan
            .layout
            .pools
            .iter()
            .map(|p| BackendEntry {
                name: p.name.clone(),
                history: match old_backends.get(p.name.as_str()) {
                    Some(b) => b.history.clone(),
                    None => BackendHistory::new(now, t.counts(p.id).total() > 0),
                },
            })
            .collect();
        t.backends = backends;
        Ok(t)
    }

    pub fn get(&self, id: ServerId) -> Option<&ServerEntry> {
        self.servers.get(id.index())
    }

    pub fn get_mut(&mut self, id: ServerId) -> Option<&mut ServerEntry> {
        self.servers.get_mut(id.index())
    }

    /// Every server, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &ServerEntry> {
        self.servers.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ServerEntry> {
        self.servers.iter_mut()
    }

    /// A backend's servers, in config order.
    pub fn of_backend(&self, b: BackendId) -> impl Iterator<Item = &ServerEntry> {
        self.servers.iter().filter(move |e| e.place.backend == b)
    }

    /// `backend/server` by name (`cli_find_server`).
    pub fn find(&self, backend: &str, server: &str) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|e| e.backend == backend && e.place.name == server)
            .map(ServerEntry::id)
    }

    pub fn backend(&self, b: BackendId) -> Option<&BackendEntry> {
        self.backends.get(b.index())
    }

    /// The backend's servers that take traffic, as HAProxy counts them for its log lines.
    pub fn counts(&self, b: BackendId) -> Counts {
        let mut c = Counts::default();
        for e in self.of_backend(b).filter(|e| e.state.counted()) {
            if e.place.backup {
                c.backup += 1;
            } else {
                c.active += 1;
            }
        }
        c
    }

    /// Brings the history of backend `b` (its servers and itself) up to date with their
    /// states, after a change.
    pub fn note(&mut self, b: BackendId) {
        let now = Instant::now();
        for e in self.servers.iter_mut().filter(|e| e.place.backend == b) {
            e.history.updown.observe(e.state.active(), now);
        }
        let up = self.counts(b).total() > 0;
        if let Some(be) = self.backends.get_mut(b.index()) {
            be.history.observe(up, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::native, dataplane::layout::Layout};

    fn plan(toml: &str) -> Plan {
        let layout = Layout::new(&native::parse("t.toml", toml).expect("parses"));
        Plan {
            snat: vec![std::net::Ipv4Addr::LOCALHOST.into(); layout.server_count() as usize],
            layout,
            interfaces: Vec::new(),
            local: Default::default(),
        }
    }

    const BEFORE: &str = r#"
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "web"
[backend.web]
server = [
  { name = "w1", address = "10.0.1.1:80" },
  { name = "w2", address = "10.0.1.2:80", disabled = true },
  { name = "b1", address = "10.0.1.3:80", backup = true },
]
[backend.dns]
server = [{ name = "d1", address = "10.0.2.1:53" }]
"#;

    #[test]
    fn entries_follow_the_layout() {
        let s = Servers::new(&plan(BEFORE)).expect("servers");
        let ids: Vec<_> = s
            .iter()
            .map(|e| (e.id().0, e.place.name.as_str()))
            .collect();
        assert_eq!(ids, [(0, "w1"), (1, "w2"), (2, "b1"), (3, "d1")]);
        let w2 = s.get(ServerId(1)).expect("w2");
        assert_eq!(w2.state.admin, Admin::Maint);
        assert!(w2.history.config_maint && w2.history.updown.chkdown == 0);
        assert_eq!(s.find("web", "b1"), Some(ServerId(2)));
        assert_eq!(s.find("dns", "w1"), None);
        let c = s.counts(BackendId(0));
        assert_eq!((c.active, c.backup), (1, 1));
        assert_eq!(s.of_backend(BackendId(1)).count(), 1);
        assert_eq!(s.get(ServerId(3)).map(|e| e.name().backend), Some("dns"));
    }

    #[test]
    fn a_plan_without_a_source_for_a_server_is_refused() {
        let mut p = plan(BEFORE);
        p.snat.pop();
        assert!(Servers::new(&p).is_err());
    }

    #[test]
    fn servers_that_stay_keep_health_and_history() {
        let mut s = Servers::new(&plan(BEFORE)).expect("servers");
        let w1 = s.get_mut(ServerId(0)).expect("w1");
        w1.state.up = false;
        w1.state.weight = 7;
        w1.history.check(false, 0);
        s.note(BackendId(0));
        assert_eq!(s.backend(BackendId(0)).map(|b| b.history.chkdown), Some(0));
        // w2 was in maintenance; dns goes away, api comes, a server before w1.
        let after = s
            .carried_into(&plan(
                r#"
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "web"
[backend.api]
server = [{ name = "a1", address = "10.0.3.1:80" }]
[backend.web]
server = [
  { name = "w0", address = "10.0.1.9:80" },
  { name = "w1", address = "10.0.1.1:80" },
  { name = "w2", address = "10.0.1.2:80" },
]
"#,
            ))
            .expect("servers");
        let w1 = after.get(ServerId(2)).expect("w1");
        assert_eq!(w1.place.name, "w1");
        assert!(!w1.state.up, "health carried");
        assert_eq!(w1.state.weight, 1, "weight from the new config");
        assert_eq!((w1.history.chkfail, w1.history.updown.chkdown), (1, 1));
        let w2 = after.get(ServerId(3)).expect("w2");
        assert_eq!((w2.state.up, w2.state.admin), (true, Admin::Ready));
        assert!(w2.history.config_maint, "history carried as it was");
        let w0 = after.get(ServerId(1)).expect("w0");
        assert_eq!((w0.history.chkfail, w0.history.updown.chkdown), (0, 0));
        assert_eq!(
            after.backend(BackendId(1)).map(|b| b.name.as_str()),
            Some("web")
        );
        assert!(after.backend(BackendId(2)).is_none(), "dns is gone");
    }
}
