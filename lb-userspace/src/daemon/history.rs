//! What HAProxy remembers about each server and backend for `show stat` and the stats page:
//! when its state last changed, how long it has been down in total, how many checks failed
//! and how many times it went down. Kept by the serve loop, fed after every change.
use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Up/down bookkeeping shared by servers and backends: when the state last changed, the
/// time spent down (the current stretch included), how many times it went down.
#[derive(Clone, Debug)]
pub struct UpDown {
    pub last_change: Instant,
    down_since: Option<Instant>,
    downtime: Duration,
    /// UP -> DOWN transitions (`down_trans`; for a server, maintenance included).
    pub chkdown: u64,
}

impl UpDown {
    fn new(now: Instant, up: bool) -> UpDown {
        UpDown {
            last_change: now,
            down_since: (!up).then_some(now),
            downtime: Duration::ZERO,
            chkdown: 0,
        }
    }

    /// Total time down, the current stretch included.
    pub fn downtime(&self, now: Instant) -> Duration {
        self.downtime + self.down_since.map_or(Duration::ZERO, |s| now - s)
    }

    fn observe(&mut self, up: bool, now: Instant) {
        match (self.down_since, up) {
            (None, false) => {
                self.down_since = Some(now);
                self.last_change = now;
                self.chkdown += 1;
            }
            (Some(since), true) => {
                self.downtime += now - since;
                self.down_since = None;
                self.last_change = now;
            }
            _ => {}
        }
    }
}

/// One server's history: down is DOWN or in maintenance.
#[derive(Clone, Debug)]
pub struct ServerHistory {
    pub updown: UpDown,
    /// Failed checks that moved the health counter (HAProxy's `failed_checks`).
    pub chkfail: u64,
    /// In maintenance because the config said `disabled`, not left since.
    pub config_maint: bool,
    /// The health counter after the last event, to tell failures that counted.
    last_health: Option<u32>,
}

impl ServerHistory {
    fn new(now: Instant, up: bool, config_maint: bool) -> ServerHistory {
        ServerHistory {
            updown: UpDown::new(now, up),
            chkfail: 0,
            config_maint,
            last_health: None,
        }
    }
}

/// One backend's history: down is having no usable server.
pub type BackendHistory = UpDown;

/// Every server's and backend's history, numbered like the maps.
#[derive(Clone, Debug)]
pub struct History {
    pub started: Instant,
    pub start_unix: u64,
    pub servers: Vec<ServerHistory>,
    pub backends: Vec<BackendHistory>,
}

impl History {
    /// At start: `up[id]` says which servers are up, `config_maint[id]` which are
    /// `disabled`, `backends_up[pool]` which backends have a usable server.
    pub fn new(up: &[bool], config_maint: &[bool], backends_up: &[bool]) -> History {
        let now = Instant::now();
        History {
            started: now,
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            servers: up
                .iter()
                .zip(config_maint)
                .map(|(&u, &m)| ServerHistory::new(now, u, m))
                .collect(),
            backends: backends_up.iter().map(|&u| UpDown::new(now, u)).collect(),
        }
    }

    /// After a change: server `id` is now up (running, not in maintenance) or not.
    pub fn server(&mut self, id: u32, up: bool) {
        if let Some(s) = self.servers.get_mut(id as usize) {
            s.updown.observe(up, Instant::now());
        }
    }

    /// After a change: backend `pool` has a usable server or not.
    pub fn backend(&mut self, pool: u32, up: bool) {
        if let Some(b) = self.backends.get_mut(pool as usize) {
            b.observe(up, Instant::now());
        }
    }

    /// A check finished: a failure counts when the counter was above 0 before it (HAProxy
    /// counts the failures that move the counter). `health` is the counter after.
    pub fn check(&mut self, id: u32, passed: bool, health: u32) {
        if let Some(s) = self.servers.get_mut(id as usize) {
            if !passed && s.last_health.is_none_or(|h| h > 0) {
                s.chkfail += 1;
            }
            s.last_health = Some(health);
        }
    }

    /// The counter changed outside a check (maintenance, `set server ... health`).
    pub fn health(&mut self, id: u32, health: Option<u32>) {
        if let Some(s) = self.servers.get_mut(id as usize) {
            s.last_health = health;
        }
    }

    pub fn leave_config_maint(&mut self, id: u32) {
        if let Some(s) = self.servers.get_mut(id as usize) {
            s.config_maint = false;
        }
    }

    /// After a reload: servers and backends that stay (same names) keep their history,
    /// new ones start now (fresh from `fresh`).
    pub fn carry_over(
        &self,
        old_servers: &[(String, String)],
        old_backends: &[String],
        new_servers: &[(String, String)],
        new_backends: &[String],
        fresh: History,
    ) -> History {
        let so: HashMap<&(String, String), &ServerHistory> =
            old_servers.iter().zip(&self.servers).collect();
        let bo: HashMap<&String, &BackendHistory> =
            old_backends.iter().zip(&self.backends).collect();
        History {
            started: self.started,
            start_unix: self.start_unix,
            servers: new_servers
                .iter()
                .zip(fresh.servers)
                .map(|(k, f)| so.get(k).map_or(f, |h| (*h).clone()))
                .collect(),
            backends: new_backends
                .iter()
                .zip(fresh.backends)
                .map(|(k, f)| bo.get(k).map_or(f, |h| (*h).clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_transitions_failures_and_downtime() {
        let mut h = History::new(&[true, true], &[false, false], &[true]);
        h.check(0, false, 0);
        h.server(0, false);
        assert_eq!((h.servers[0].chkfail, h.servers[0].updown.chkdown), (1, 1));
        // Failures at 0 do not count again; the next success does not either.
        h.check(0, false, 0);
        h.check(0, true, 1);
        assert_eq!(h.servers[0].chkfail, 1);
        // A failure from 1 (DOWN, going up) counts.
        h.check(0, false, 0);
        assert_eq!(h.servers[0].chkfail, 2);
        std::thread::sleep(Duration::from_millis(20));
        h.server(0, true);
        assert!(h.servers[0].updown.downtime(Instant::now()) >= Duration::from_millis(20));
        assert_eq!(h.servers[0].updown.chkdown, 1);
        h.backend(0, false);
        h.backend(0, false);
        assert_eq!(h.backends[0].chkdown, 1);
        let names = vec![
            ("b".to_string(), "s0".to_string()),
            ("b".into(), "s1".into()),
        ];
        let carried = h.carry_over(
            &names,
            &["b".into()],
            &[
                ("b".into(), "s1".into()),
                ("b".into(), "s0".into()),
                ("b".into(), "new".into()),
            ],
            &["b".into()],
            History::new(&[true; 3], &[false; 3], &[true]),
        );
        assert_eq!(carried.servers[1].chkfail, 2);
        assert_eq!(carried.servers[2].chkfail, 0);
        assert_eq!(carried.backends[0].chkdown, 1);
    }
}
