//! The open-file limit (`RLIMIT_NOFILE`) the config needs, raised at start as HAProxy raises
//! it from `maxconn`.
//!
//! HAProxy needs two descriptors per connection (`maxconn * 2`); lb's flows live in the data
//! plane and hold none, so `maxconn` does not count here. What does is the daemon's own
//! sockets: one per health check in flight (each checked server has at most one), one per
//! syslog target, the stats listeners and the most clients each of them keeps open. When
//! those run out, checks fail with `SOCKERR` and servers go DOWN, so the limit must cover
//! them all at once.
use crate::{
    api::{http::listener, socket},
    config::{Config, LogDest},
};

/// What the daemon holds besides, with room to spare: stdio, the data plane's maps (about
/// 30) and programs, per interface an XDP link and the sysctl files it restores on exit, the
/// runtime's epoll and wake-up descriptors, netlink sockets, the pid file: about 55 in the
/// seed's setup (two interfaces).
pub const BASE: u64 = 128;

/// Descriptors the daemon may hold at once with `cfg`.
pub fn needed(cfg: &Config) -> u64 {
    let checks = cfg
        .backends
        .iter()
        .flat_map(|b| &b.servers)
        .filter(|s| s.check)
        .count();
    let syslog = cfg
        .global
        .logs
        .iter()
        .filter(|t| matches!(t.dest, LogDest::Udp(_) | LogDest::Unix(_)))
        .count();
    // The listener, its sessions; the stats socket leaves more in the backlog.
    let stats_socket = cfg.global.stats_sockets.len() * (1 + socket::MAX_SESSIONS);
    // The listener, its connections, and the one accepted over the cap before it is closed.
    let stats_http = cfg
        .global
        .stats_http
        .iter()
        .map(|h| h.binds.len() * (1 + listener::LIMITS.connections + 1))
        .sum::<usize>();
    BASE + (checks + syslog + stats_socket + stats_http) as u64
}

/// The soft limit to set for `need` given the current soft and hard limits: `need` when the
/// soft limit is lower, the hard limit when even that is lower; `None` when the soft limit
/// already suffices (it is never lowered).
pub fn raised_soft(need: u64, soft: u64, hard: u64) -> Option<u64> {
    (soft < need && soft < hard).then(|| need.min(hard))
}

/// Raises the soft `RLIMIT_NOFILE` to what `cfg` needs, up to the hard limit; warns, as
/// HAProxy does, when the hard limit is lower than that.
pub fn raise_nofile(cfg: &Config) {
    let need = needed(cfg);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if let Some(soft) = raised_soft(need, lim.rlim_cur, lim.rlim_max) {
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = soft;
        }
    }
    if lim.rlim_cur < need {
        eprintln!(
            "[WARNING] FD limit ({}) too low for what the config needs ({need}: health \
             checks, log targets, the stats socket and stats_http). Please raise 'ulimit-n' \
             to {need} or more to avoid any trouble.",
            lim.rlim_cur
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::native::parse("t.toml", text).expect("config")
    }

    #[test]
    fn counts_checks_syslog_targets_and_stats_listeners() {
        let bare = config(
            "[frontend.f]\nbind = [\"10.0.0.1:80\"]\ndefault_backend = \"b\"\n\
             [backend.b]\nserver = [{ name = \"a\", address = \"10.0.2.1:80\" }]\n",
        );
        assert_eq!(needed(&bare), BASE);
        let full = config(
            r#"
[global]
log = [{ target = "127.0.0.1", facility = "local0" }, { target = "stderr", facility = "local0" }]
stats_socket = { path = "/run/lb.sock" }
stats_http = "8404"
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b"
[backend.b]
server = [
  { name = "a", address = "10.0.2.1:80", check = true },
  { name = "b", address = "10.0.2.2:80", check = true },
  { name = "c", address = "10.0.2.3:80" },
]
"#,
        );
        // 2 checks, 1 syslog target (stderr is inherited), the socket and the listener.
        let listeners = (1 + socket::MAX_SESSIONS + 1 + listener::LIMITS.connections + 1) as u64;
        assert_eq!(needed(&full), BASE + 2 + 1 + listeners);
    }

    #[test]
    fn soft_limit_goes_up_to_the_need_never_past_the_hard_limit_never_down() {
        assert_eq!(raised_soft(500, 256, 4096), Some(500));
        assert_eq!(raised_soft(500, 256, 300), Some(300));
        assert_eq!(raised_soft(500, 1024, 4096), None);
        assert_eq!(raised_soft(500, 500, 4096), None);
        assert_eq!(raised_soft(500, 300, 300), None);
        assert_eq!(raised_soft(500, 256, libc::RLIM_INFINITY), Some(500));
    }
}
