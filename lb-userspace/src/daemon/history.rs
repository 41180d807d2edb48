//! What HAProxy remembers about each server and backend for `show stat` and the stats page:
//! when its state last changed, how long it has been down in total, how many checks failed
//! and how many times it went down. Each server's and backend's lives in its entry of the
//! daemon's table ([`super::servers`]), fed after every change.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    pub fn new(now: Instant, up: bool) -> UpDown {
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

    /// After a change: up (for a server, running and not in maintenance) or not.
    pub fn observe(&mut self, up: bool, now: Instant) {
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
    /// Times `observe` found `error-limit` errors in a row (HAProxy's `failed_hana`).
    pub hanafail: u64,
    /// In maintenance because the config said `disabled`, not left since.
    pub config_maint: bool,
    /// The health counter after the last event, to tell failures that counted.
    last_health: Option<u32>,
}

impl ServerHistory {
    pub fn new(now: Instant, up: bool, config_maint: bool) -> ServerHistory {
        ServerHistory {
            updown: UpDown::new(now, up),
            chkfail: 0,
            hanafail: 0,
            config_maint,
            last_health: None,
        }
    }

    /// A check finished: a failure counts when the counter was above 0 before it (HAProxy
    /// counts the failures that move the counter). `health` is the counter after.
    pub fn check(&mut self, passed: bool, health: u32) {
        if !passed && self.last_health.is_none_or(|h| h > 0) {
            self.chkfail += 1;
        }
        self.last_health = Some(health);
    }

    /// The counter changed outside a check (maintenance, `set server ... health`).
    pub fn set_health(&mut self, health: Option<u32>) {
        self.last_health = health;
    }

    pub fn leave_config_maint(&mut self) {
        self.config_maint = false;
    }
}

/// One backend's history: down is having no usable server.
pub type BackendHistory = UpDown;

/// When the daemon started, for `show info`'s uptime. Reloads keep it.
#[derive(Clone, Copy, Debug)]
pub struct Started {
    pub at: Instant,
    pub unix: u64,
}

impl Started {
    pub fn now() -> Started {
        Started {
            at: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_transitions_failures_and_downtime() {
        let start = Instant::now();
        let mut h = ServerHistory::new(start, true, false);
        h.check(false, 0);
        h.updown.observe(false, Instant::now());
        assert_eq!((h.chkfail, h.updown.chkdown), (1, 1));
        // Failures at 0 do not count again; the next success does not either.
        h.check(false, 0);
        h.check(true, 1);
        assert_eq!(h.chkfail, 1);
        // A failure from 1 (DOWN, going up) counts.
        h.check(false, 0);
        assert_eq!(h.chkfail, 2);
        std::thread::sleep(Duration::from_millis(20));
        h.updown.observe(true, Instant::now());
        assert!(h.updown.downtime(Instant::now()) >= Duration::from_millis(20));
        assert_eq!(h.updown.chkdown, 1);
        // Maintenance moved the counter: the next failure counts from there.
        h.set_health(Some(0));
        h.check(false, 0);
        assert_eq!(h.chkfail, 2);
        let mut b = BackendHistory::new(start, true);
        b.observe(false, Instant::now());
        b.observe(false, Instant::now());
        assert_eq!(b.chkdown, 1);
    }
}
