//! HAProxy's log lines, pure: text and the syslog severity each is sent at.
//!
//! Sources (HAProxy 2.6): `set_server_check_status` in `src/check.c` (the health check line,
//! notice), `srv_append_status` and `srv_update_status` in `src/server.c` (server UP/DOWN,
//! maintenance and drain lines; DOWN and "going DOWN for maintenance" are alerts unless the
//! server was draining, the rest notices), `set_backend_down` in `src/backend.c` ("has no
//! server available!", emerg), `chunk_asciiencode` in `src/chunk.c` (how `info` is quoted).
//! `Proxy X started.` comes from HAProxy 1.x (`start_proxies`, notice), removed in 2.3.
use std::fmt::Write as _;

use crate::{
    config::{Config, Level},
    health::{CheckResult, CheckStatus, Outcome, Snapshot, Transition},
};

/// Which HAProxy the lines imitate where versions differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Flavor {
    /// HAProxy 1.x, as in the seed: a passed HTTP check prints the response's reason phrase
    /// (`code: 200, info: "OK"`), and every proxy logs `Proxy X started.` at start.
    #[default]
    Seed,
    /// HAProxy 2.6, as in the reference capture: no `info` on a passed check, no start line.
    Haproxy26,
}

impl Flavor {
    pub fn announces_proxy_start(self) -> bool {
        self == Flavor::Seed
    }
}

/// One line and the severity HAProxy sends it at. `text` has no trailing newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
}

impl LogLine {
    fn new(level: Level, text: String) -> LogLine {
        LogLine { level, text }
    }
}

/// A server as named in lines: `Backup ` / `backup ` prefixes for backup servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerName<'a> {
    pub backend: &'a str,
    pub server: &'a str,
    pub backup: bool,
}

impl ServerName<'_> {
    /// `Server b/s` or `Backup Server b/s`.
    fn server_word(&self) -> String {
        format!(
            "{}Server {}/{}",
            if self.backup { "Backup " } else { "" },
            self.backend,
            self.server
        )
    }
}

/// The backend's servers that take traffic (HAProxy's `srv_act`/`srv_bck`: UP, not in
/// maintenance or drain, weight above 0), counted after the change being logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    pub active: u32,
    pub backup: u32,
}

impl Counts {
    pub fn total(&self) -> u32 {
        self.active + self.backup
    }
}

/// HAProxy's session and queue figures. An L4 data plane has no queue and moves no session,
/// so these are 0 unless the daemon counts flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sessions {
    /// Sessions still on the server (`cur_sess`).
    pub active: u32,
    /// Sessions moved elsewhere (`xferred`).
    pub requeued: u32,
    /// Queue length.
    pub queued: u32,
}

/// What follows `Server b/s is UP|DOWN` (HAProxy's `op_st_chg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why<'a> {
    /// Nothing: with `option log-health-checks` the check was already logged.
    Nothing,
    /// The check that caused it (`option log-health-checks` off):
    /// `, reason: ..., info: "...", check duration: Nms`.
    Check(&'a CheckResult),
    /// A fixed reason: `, changed from CLI`.
    Text(&'a str),
}

/// The reason HAProxy gives for `set server ... health` changes.
pub const CHANGED_FROM_CLI: &str = "changed from CLI";

/// `chunk_asciiencode(.., '"')`: bytes outside printable ASCII, `<`, `>` and `"` become
/// `<XX>`.
fn ascii_encode(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if !(0x20..=0x7e).contains(&b) || matches!(b, b'<' | b'>' | b'"') {
            let _ = write!(out, "<{b:02X}>");
        } else {
            out.push(char::from(b));
        }
    }
}

/// The `info` a result prints under `flavor`.
fn info_of(r: &CheckResult, flavor: Flavor) -> &str {
    match (flavor, r.status, &r.reason) {
        (Flavor::Seed, CheckStatus::L7Ok, Some(reason)) => reason,
        _ => &r.info,
    }
}

/// `srv_append_status` for a check: `, reason: D[, code: N][, info: "I"][, check duration:
/// Nms]` (no duration for an `observe` verdict, which HAProxy times -1).
fn append_check(out: &mut String, r: &CheckResult, flavor: Flavor) {
    let _ = write!(out, ", reason: {}", r.status.description());
    if r.status.has_code() {
        let _ = write!(out, ", code: {}", r.code.unwrap_or(0));
    }
    let info = info_of(r, flavor);
    if !info.is_empty() {
        out.push_str(", info: \"");
        ascii_encode(out, info);
        out.push('"');
    }
    if r.status.timed() {
        let _ = write!(out, ", check duration: {}ms", r.duration_ms());
    }
}

fn append_why(out: &mut String, why: Why<'_>, flavor: Flavor) {
    match why {
        Why::Nothing => {}
        Why::Check(r) => append_check(out, r, flavor),
        Why::Text(t) if !t.is_empty() => {
            let _ = write!(out, ", {t}");
        }
        Why::Text(_) => {}
    }
}

fn running_on_backup(c: Counts) -> &'static str {
    if c.backup > 0 && c.active == 0 {
        " Running on backup."
    } else {
        ""
    }
}

/// `. N active and M backup servers left.[ Running on backup.] S sessions active, R requeued,
/// Q remaining in queue`
fn append_left(out: &mut String, c: Counts, s: Sessions) {
    let _ = write!(
        out,
        ". {} active and {} backup servers left.{} {} sessions active, {} requeued, {} remaining in queue",
        c.active,
        c.backup,
        running_on_backup(c),
        s.active,
        s.requeued,
        s.queued
    );
}

/// `. N active and M backup servers online.[ Running on backup.] R sessions requeued, Q total
/// in queue`
fn append_online(out: &mut String, c: Counts, s: Sessions) {
    let _ = write!(
        out,
        ". {} active and {} backup servers online.{} {} sessions requeued, {} total in queue",
        c.active,
        c.backup,
        running_on_backup(c),
        s.requeued,
        s.queued
    );
}

/// `Proxy main started.` (notice; HAProxy 1.x only).
pub fn proxy_started(name: &str) -> LogLine {
    LogLine::new(Level::Notice, format!("Proxy {name} started."))
}

/// `Proxy main stopped (cumulated conns: FE: 12, BE: 0).` (warning).
pub fn proxy_stopped(name: &str, fe_conns: u64, be_conns: u64) -> LogLine {
    LogLine::new(
        Level::Warning,
        format!("Proxy {name} stopped (cumulated conns: FE: {fe_conns}, BE: {be_conns})."),
    )
}

/// The start lines for `cfg`: `Proxy X started.` for every frontend then every backend, in
/// declaration order (the seed's order), when the flavor has them.
pub fn startup_lines(cfg: &Config, flavor: Flavor) -> Vec<LogLine> {
    if !flavor.announces_proxy_start() {
        return Vec::new();
    }
    cfg.frontends
        .iter()
        .map(|f| f.name.as_str())
        .chain(cfg.backends.iter().map(|b| b.name.as_str()))
        .map(proxy_started)
        .collect()
}

/// `Health check for [backup ]server b/s succeeded|failed, reason: ..., status: 1/2 UP.`
/// (notice). `health` is the counter after the result; `weight` the server's (0 prints
/// DRAIN).
pub fn health_check(
    srv: ServerName<'_>,
    result: &CheckResult,
    health: &Snapshot,
    weight: u32,
    flavor: Flavor,
) -> LogLine {
    check_line("Health", srv, result, health, weight, flavor)
}

/// `Agent check for [backup ]server b/s succeeded|failed, reason: ..., status: 1/1 UP.`
/// (notice): the same line for an agent check (`agent-check`), whose counter is the
/// agent's.
pub fn agent_check(
    srv: ServerName<'_>,
    result: &CheckResult,
    health: &Snapshot,
    weight: u32,
    flavor: Flavor,
) -> LogLine {
    check_line("Agent", srv, result, health, weight, flavor)
}

fn check_line(
    which: &str,
    srv: ServerName<'_>,
    result: &CheckResult,
    health: &Snapshot,
    weight: u32,
    flavor: Flavor,
) -> LogLine {
    let mut t = format!(
        "{which} check for {}server {}/{} {}",
        if srv.backup { "backup " } else { "" },
        srv.backend,
        srv.server,
        match result.status {
            CheckStatus::L7OkC => "conditionally succeeded",
            s if s.passed() => "succeeded",
            _ => "failed",
        }
    );
    append_check(&mut t, result, flavor);
    let _ = write!(t, ", status: {}.", health.status_text(weight));
    LogLine::new(Level::Notice, t)
}

/// `Server b/s is DOWN[, why]. N active and M backup servers left. ...` Alert, or notice when
/// the server was draining (HAProxy: "we don't send an alert if the server was previously
/// paused").
pub fn server_down(
    srv: ServerName<'_>,
    why: Why<'_>,
    counts: Counts,
    sessions: Sessions,
    was_draining: bool,
    flavor: Flavor,
) -> LogLine {
    let mut t = format!("{} is DOWN", srv.server_word());
    append_why(&mut t, why, flavor);
    append_left(&mut t, counts, sessions);
    t.push('.');
    let level = if was_draining {
        Level::Notice
    } else {
        Level::Alert
    };
    LogLine::new(level, t)
}

/// `Server b/s is UP[, why]. N active and M backup servers online. ...` (notice).
pub fn server_up(
    srv: ServerName<'_>,
    why: Why<'_>,
    counts: Counts,
    sessions: Sessions,
    flavor: Flavor,
) -> LogLine {
    server_is(srv, "UP", why, counts, sessions, flavor)
}

/// `Server b/s is stopping[, why]. N active and M backup servers online. ...` (notice): NOLB
/// after a 404 with `http-check disable-on-404` (HAProxy's `srv_set_stopping`).
pub fn server_stopping(
    srv: ServerName<'_>,
    why: Why<'_>,
    counts: Counts,
    sessions: Sessions,
    flavor: Flavor,
) -> LogLine {
    server_is(srv, "stopping", why, counts, sessions, flavor)
}

/// `Server b/s is STATE[, why]. N active and M backup servers online. ...` (notice).
fn server_is(
    srv: ServerName<'_>,
    state: &str,
    why: Why<'_>,
    counts: Counts,
    sessions: Sessions,
    flavor: Flavor,
) -> LogLine {
    let mut t = format!("{} is {state}", srv.server_word());
    append_why(&mut t, why, flavor);
    append_online(&mut t, counts, sessions);
    t.push('.');
    LogLine::new(Level::Notice, t)
}

/// `backend hoge has no server available!` (emerg), when a backend that had usable servers
/// has none left.
pub fn no_server_available(backend: &str) -> LogLine {
    LogLine::new(
        Level::Emerg,
        format!("backend {backend} has no server available!"),
    )
}

/// Maintenance starts (`disable server`, `set server b/s state maint`):
/// - the server was UP: `Server b/s is going DOWN for maintenance. N active and M backup
///   servers left. ...`, alert (notice if it was draining);
/// - it was DOWN: `Server b/s was DOWN and now enters maintenance.`, notice.
///
/// Follow with [`no_server_available`] when it was the backend's last usable server.
pub fn maintenance_enter(
    srv: ServerName<'_>,
    was_up: bool,
    was_draining: bool,
    counts: Counts,
    sessions: Sessions,
) -> LogLine {
    maintenance_enter_for(srv, None, was_up, was_draining, counts, sessions)
}

/// Maintenance starts for `cause` (`adm_st_chg_cause`), the server's name resolution
/// failing: `Server b/s is going DOWN for maintenance (DNS NX status). ...`, or `Server b/s
/// was DOWN and now enters maintenance (DNS NX status).`; otherwise as [`maintenance_enter`].
pub fn maintenance_enter_for(
    srv: ServerName<'_>,
    cause: Option<&str>,
    was_up: bool,
    was_draining: bool,
    counts: Counts,
    sessions: Sessions,
) -> LogLine {
    let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
    if !was_up {
        return LogLine::new(
            Level::Notice,
            format!(
                "{} was DOWN and now enters maintenance{cause}.",
                srv.server_word()
            ),
        );
    }
    let mut t = format!("{} is going DOWN for maintenance{cause}", srv.server_word());
    append_left(&mut t, counts, sessions);
    t.push('.');
    let level = if was_draining {
        Level::Notice
    } else {
        Level::Alert
    };
    LogLine::new(level, t)
}

/// A name resolution gave the server a new address (`srv_update_addr`, notice):
/// `b/s changed its IP from OLD to NEW by RESOLVERS/NAMESERVER.`; OLD is `(none)` when the
/// server had none.
pub fn address_changed(
    srv: ServerName<'_>,
    old: Option<std::net::Ipv4Addr>,
    new: std::net::Ipv4Addr,
    by: &str,
) -> LogLine {
    let old = old.map_or_else(|| "(none)".to_string(), |a| a.to_string());
    LogLine::new(
        Level::Notice,
        format!(
            "{}/{} changed its IP from {old} to {new} by {by}.",
            srv.backend, srv.server
        ),
    )
}

/// Resolution maintenance ends (`srv_update_status`, then `snr_update_srv_status`), two
/// notices: `Server b/s ('fqdn') is UP/READY (resolves again).` and `Server b/s
/// administratively READY thanks to valid DNS answer.`
pub fn resolves_again(srv: ServerName<'_>, fqdn: &str, up: bool, drain: bool) -> [LogLine; 2] {
    [
        LogLine::new(
            Level::Notice,
            format!(
                "{} ('{fqdn}') is {}/{} (resolves again).",
                srv.server_word(),
                if up { "UP" } else { "DOWN" },
                if drain { "DRAIN" } else { "READY" }
            ),
        ),
        LogLine::new(
            Level::Notice,
            format!(
                "Server {}/{} administratively READY thanks to valid DNS answer.",
                srv.backend, srv.server
            ),
        ),
    ]
}

/// A valid answer for a server an operator keeps in maintenance (`srv_update_status`, then
/// `snr_update_srv_status`): `Server b/s ('fqdn') resolves again but remains in
/// maintenance.` and `Server b/s administratively READY thanks to valid DNS answer.`
pub fn resolves_again_in_maintenance(srv: ServerName<'_>, fqdn: &str) -> [LogLine; 2] {
    let [_, ready] = resolves_again(srv, fqdn, false, false);
    [
        LogLine::new(
            Level::Notice,
            format!(
                "{} ('{fqdn}') resolves again but remains in maintenance.",
                srv.server_word()
            ),
        ),
        ready,
    ]
}

/// Maintenance ends (`enable server`, `set server b/s state ready|drain`):
/// `Server b/s is UP/READY (leaving forced maintenance).` (notice). `up` is the state it
/// comes back in (UP for a checked server, whose counter restarts at `rise`), `drain` whether
/// it stays in drain.
pub fn maintenance_leave(srv: ServerName<'_>, up: bool, drain: bool) -> LogLine {
    LogLine::new(
        Level::Notice,
        format!(
            "{} is {}/{} (leaving forced maintenance).",
            srv.server_word(),
            if up { "UP" } else { "DOWN" },
            if drain { "DRAIN" } else { "READY" }
        ),
    )
}

/// Drain starts (`set server b/s state drain`): `Server b/s enters drain state. N active and
/// M backup servers online. R sessions requeued, Q total in queue.` (notice; the `left`
/// variant when the server is DOWN).
pub fn drain_enter(srv: ServerName<'_>, up: bool, counts: Counts, sessions: Sessions) -> LogLine {
    let mut t = format!("{} enters drain state", srv.server_word());
    if up {
        append_online(&mut t, counts, sessions);
    } else {
        append_left(&mut t, counts, sessions);
    }
    t.push('.');
    LogLine::new(Level::Notice, t)
}

/// Drain ends (`set server b/s state ready`): `Server b/s is UP (leaving forced drain).`
/// (notice).
pub fn drain_leave(srv: ServerName<'_>, up: bool) -> LogLine {
    LogLine::new(
        Level::Notice,
        format!(
            "{} is {} (leaving forced drain).",
            srv.server_word(),
            if up { "UP" } else { "DOWN" }
        ),
    )
}

/// Everything needed to log one check event the way HAProxy does.
#[derive(Clone, Copy, Debug)]
pub struct CheckEventLog<'a> {
    pub server: ServerName<'a>,
    /// The check is the server's agent (`Agent check for ...`).
    pub agent: bool,
    pub result: &'a CheckResult,
    pub outcome: &'a Outcome,
    /// The server's weight now (0 prints DRAIN in the status).
    pub weight: u32,
    /// The backend has `option log-health-checks`.
    pub log_health_checks: bool,
    /// The server is in drain or NOLB (DOWN is then a notice, not an alert).
    pub was_draining: bool,
    /// The backend's usable servers before the transition was applied...
    pub before: Counts,
    /// ...and after.
    pub after: Counts,
    pub sessions: Sessions,
    pub flavor: Flavor,
}

/// The lines of one check event, in HAProxy's order: the health check line (under
/// `option log-health-checks`, when the state machine says so), then `Server ... is DOWN/UP`
/// on a transition (with the check as reason when log-health-checks is off: HAProxy passes
/// the check to `srv_set_stopped`/`srv_set_running` only then), then `backend ... has no
/// server available!` when the backend just lost its last usable server.
pub fn check_event_lines(e: &CheckEventLog<'_>) -> Vec<LogLine> {
    let mut lines = Vec::new();
    if e.log_health_checks && e.outcome.log {
        let line = if e.agent { agent_check } else { health_check };
        lines.push(line(
            e.server,
            e.result,
            &e.outcome.health,
            e.weight,
            e.flavor,
        ));
    }
    let why = if e.log_health_checks {
        Why::Nothing
    } else {
        Why::Check(e.result)
    };
    match e.outcome.transition {
        Some(Transition::Down) => {
            lines.push(server_down(
                e.server,
                why,
                e.after,
                e.sessions,
                e.was_draining,
                e.flavor,
            ));
            if e.before.total() > 0 && e.after.total() == 0 {
                lines.push(no_server_available(e.server.backend));
            }
        }
        Some(Transition::Up) => {
            lines.push(server_up(e.server, why, e.after, e.sessions, e.flavor));
        }
        Some(Transition::Stopping) => {
            lines.push(server_stopping(
                e.server, why, e.after, e.sessions, e.flavor,
            ));
            if e.before.total() > 0 && e.after.total() == 0 {
                lines.push(no_server_available(e.server.backend));
            }
        }
        None => {}
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, time::Duration};

    use super::*;
    use crate::health::Health;

    const WEB10: ServerName<'static> = ServerName {
        backend: "hoge",
        server: "web10",
        backup: false,
    };
    const WEB11: ServerName<'static> = ServerName {
        backend: "hoge",
        server: "web11",
        backup: false,
    };
    const SPARE: ServerName<'static> = ServerName {
        backend: "hoge",
        server: "spare",
        backup: true,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok200(d: u64) -> CheckResult {
        CheckResult::new(CheckStatus::L7Ok, ms(d)).with_http(200, "OK")
    }

    fn refused(d: u64) -> CheckResult {
        CheckResult::new(CheckStatus::L4Con, ms(d)).with_info("Connection refused")
    }

    fn not_found(d: u64) -> CheckResult {
        CheckResult::new(CheckStatus::L7Sts, ms(d))
            .with_http(404, "Not Found")
            .with_info("Not Found")
    }

    fn snap(health: u32) -> Snapshot {
        Snapshot {
            health,
            rise: 2,
            fall: 2,
        }
    }

    fn line(level: Level, text: &str) -> LogLine {
        LogLine {
            level,
            text: text.into(),
        }
    }

    /// `http-check disable-on-404`, as HAProxy 2.6 logged it (see
    /// `health::state::tests::conditional_passes_stop_the_server`).
    #[test]
    fn nolb_lines_are_haproxys() {
        let f = Flavor::Haproxy26;
        let r = CheckResult::new(CheckStatus::L7OkC, ms(0)).with_http(404, "Not Found");
        let name = ServerName {
            backend: "b",
            server: "s1",
            backup: false,
        };
        let e = CheckEventLog {
            server: name,
            agent: false,
            result: &r,
            outcome: &Outcome {
                log: true,
                transition: Some(Transition::Stopping),
                health: snap(3),
            },
            weight: 1,
            log_health_checks: true,
            was_draining: false,
            before: Counts {
                active: 1,
                backup: 0,
            },
            after: Counts::default(),
            sessions: Sessions::default(),
            flavor: f,
        };
        assert_eq!(
            check_event_lines(&e),
            [
                line(
                    Level::Notice,
                    "Health check for server b/s1 conditionally succeeded, reason: Layer7 check conditionally passed, code: 404, check duration: 0ms, status: 2/2 UP."
                ),
                line(
                    Level::Notice,
                    "Server b/s1 is stopping. 0 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
                ),
                line(Level::Emerg, "backend b has no server available!"),
            ]
        );
    }

    /// HAProxy 2.6 with `observe layer4 error-limit 2 on-error mark-down` on a server that
    /// refused two connections (captured): no check ran, so no duration.
    #[test]
    fn an_observe_verdict_is_logged_as_haproxy_logs_it() {
        let r = CheckResult::new(CheckStatus::Hana, Duration::ZERO)
            .with_info("Detected 2 consecutive errors, last one was: L4 unsuccessful connection");
        let l = health_check(WEB11, &r, &snap(0), 1, Flavor::Haproxy26);
        assert_eq!(
            l.text,
            "Health check for server hoge/web11 failed, reason: Health analyze, info: \"Detected 2 consecutive errors, last one was: L4 unsuccessful connection\", status: 0/2 DOWN."
        );
    }

    /// The seed's log (`shared/seed/000_*.txt`, HAProxy 1.x), line for line.
    #[test]
    fn golden_seed() {
        let s = Flavor::Seed;
        let mut cfg = crate::config::native::parse(
            "lb.toml",
            "[frontend.main]\nbind = [\"*:80\"]\ndefault_backend = \"hoge\"\n[backend.hoge]\nserver = [{ name = \"web10\", address = \"192.168.33.10:80\" }]\n",
        )
        .expect("parses");
        assert_eq!(
            startup_lines(&cfg, s),
            [
                line(Level::Notice, "Proxy main started."),
                line(Level::Notice, "Proxy hoge started.")
            ]
        );
        cfg.frontends.clear();
        assert_eq!(startup_lines(&cfg, Flavor::Haproxy26), []);
        let cases = [
            (
                health_check(WEB10, &ok200(33), &snap(3), 1, s),
                "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 33ms, status: 2/2 UP.",
            ),
            (
                health_check(WEB11, &ok200(12), &snap(3), 1, s),
                "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 12ms, status: 2/2 UP.",
            ),
            (
                health_check(WEB11, &not_found(13), &snap(2), 1, s),
                "Health check for server hoge/web11 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: 13ms, status: 1/2 UP.",
            ),
            (
                health_check(WEB11, &not_found(8), &snap(0), 1, s),
                "Health check for server hoge/web11 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: 8ms, status: 0/2 DOWN.",
            ),
            (
                health_check(WEB11, &ok200(8), &snap(1), 1, s),
                "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 8ms, status: 1/2 DOWN.",
            ),
            (
                health_check(WEB11, &ok200(6), &snap(3), 1, s),
                "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 6ms, status: 2/2 UP.",
            ),
            (
                server_up(
                    WEB11,
                    Why::Nothing,
                    Counts {
                        active: 2,
                        backup: 0,
                    },
                    Sessions::default(),
                    s,
                ),
                "Server hoge/web11 is UP. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.text, want);
            assert_eq!(got.level, Level::Notice);
        }
    }

    /// `shared/reference/haproxy-2.6-logs.txt`, the syslog lines of both runs.
    #[test]
    fn golden_haproxy26_capture() {
        let f = Flavor::Haproxy26;
        let one_left = Counts {
            active: 1,
            backup: 0,
        };
        let two = Counts {
            active: 2,
            backup: 0,
        };
        let z = Sessions::default();
        let cases = [
            (
                health_check(WEB10, &ok200(2), &snap(3), 1, f),
                Level::Notice,
                "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, check duration: 2ms, status: 2/2 UP.",
            ),
            (
                health_check(WEB11, &refused(0), &snap(2), 1, f),
                Level::Notice,
                "Health check for server hoge/web11 failed, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms, status: 1/2 UP.",
            ),
            (
                health_check(WEB11, &refused(0), &snap(0), 1, f),
                Level::Notice,
                "Health check for server hoge/web11 failed, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms, status: 0/2 DOWN.",
            ),
            (
                server_down(WEB11, Why::Nothing, one_left, z, false, f),
                Level::Alert,
                "Server hoge/web11 is DOWN. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
            ),
            (
                health_check(WEB11, &ok200(0), &snap(1), 1, f),
                Level::Notice,
                "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 1/2 DOWN.",
            ),
            (
                health_check(WEB11, &ok200(0), &snap(3), 1, f),
                Level::Notice,
                "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, check duration: 0ms, status: 2/2 UP.",
            ),
            (
                server_up(WEB11, Why::Nothing, two, z, f),
                Level::Notice,
                "Server hoge/web11 is UP. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
            ),
            (
                health_check(WEB10, &not_found(0), &snap(2), 1, f),
                Level::Notice,
                "Health check for server hoge/web10 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: 0ms, status: 1/2 UP.",
            ),
            (
                health_check(WEB10, &not_found(0), &snap(0), 1, f),
                Level::Notice,
                "Health check for server hoge/web10 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: 0ms, status: 0/2 DOWN.",
            ),
            (
                server_down(WEB10, Why::Nothing, one_left, z, false, f),
                Level::Alert,
                "Server hoge/web10 is DOWN. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
            ),
            (
                no_server_available("hoge"),
                Level::Emerg,
                "backend hoge has no server available!",
            ),
        ];
        for (got, level, want) in cases {
            assert_eq!((got.level, got.text.as_str()), (level, want));
        }
    }

    /// The capture's run replayed through the state machine and `check_event_lines`: the
    /// same lines in the same order.
    #[test]
    fn capture_replayed_through_the_state_machine() {
        let f = Flavor::Haproxy26;
        let mut web11 = Health::new(2, 2);
        let mut got = Vec::new();
        let mut up = true;
        for r in [ok200(2), refused(0), refused(0), ok200(0), ok200(0)] {
            let outcome = web11.on_result(r.status);
            let before = Counts {
                active: 1 + u32::from(up),
                backup: 0,
            };
            up = outcome.health.is_up();
            let after = Counts {
                active: 1 + u32::from(up),
                backup: 0,
            };
            let lines = check_event_lines(&CheckEventLog {
                server: WEB11,
                agent: false,
                result: &r,
                outcome: &outcome,
                weight: 1,
                log_health_checks: true,
                was_draining: false,
                before,
                after,
                sessions: Sessions::default(),
                flavor: f,
            });
            got.extend(lines.into_iter().map(|l| (l.level.code() + 22 * 8, l.text)));
        }
        // The raw datagrams of the capture's mode http run, verbatim.
        let capture = include_str!("testdata/haproxy-2.6-http-datagrams.txt");
        let want: Vec<(u8, String)> = capture
            .lines()
            .filter(|l| l.contains("web11") && !l.contains(" http-in "))
            .filter_map(|l| {
                let (pri, rest) = l.strip_prefix('<')?.split_once('>')?;
                let (_, msg) = rest.split_once("]: ")?;
                Some((pri.parse().ok()?, msg.to_string()))
            })
            .collect();
        assert_eq!(want.len(), 7, "capture lines found: {want:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn down_and_up_with_the_check_as_reason() {
        // `option log-health-checks` off: the reason rides on the DOWN/UP line.
        let f = Flavor::Haproxy26;
        let one = Counts {
            active: 1,
            backup: 0,
        };
        let z = Sessions::default();
        assert_eq!(
            server_down(WEB11, Why::Check(&refused(0)), one, z, false, f).text,
            "Server hoge/web11 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        assert_eq!(
            server_down(WEB11, Why::Check(&not_found(3)), one, z, false, f).text,
            "Server hoge/web11 is DOWN, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: 3ms. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        let two = Counts {
            active: 2,
            backup: 0,
        };
        assert_eq!(
            server_up(WEB11, Why::Check(&ok200(1)), two, z, f).text,
            "Server hoge/web11 is UP, reason: Layer7 check passed, code: 200, check duration: 1ms. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
        );
        assert_eq!(
            server_up(WEB11, Why::Check(&ok200(1)), two, z, Flavor::Seed).text,
            "Server hoge/web11 is UP, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 1ms. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
        );
        let tout = CheckResult::new(CheckStatus::L4Tout, ms(2001));
        assert_eq!(
            server_down(WEB11, Why::Check(&tout), one, z, false, f).text,
            "Server hoge/web11 is DOWN, reason: Layer4 timeout, check duration: 2001ms. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        // And the event helper picks the reason only then.
        let mut h = Health::new(2, 2);
        let r = refused(0);
        let outcome = h.on_result(r.status);
        let ev = CheckEventLog {
            server: WEB11,
            agent: false,
            result: &r,
            outcome: &outcome,
            weight: 1,
            log_health_checks: false,
            was_draining: false,
            before: two,
            after: one,
            sessions: z,
            flavor: f,
        };
        let lines = check_event_lines(&ev);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .text
                .starts_with("Server hoge/web11 is DOWN, reason: Layer4")
        );
        assert_eq!(lines[0].level, Level::Alert);
    }

    #[test]
    fn changed_from_cli() {
        let f = Flavor::Haproxy26;
        let z = Sessions::default();
        assert_eq!(
            server_down(
                WEB11,
                Why::Text(CHANGED_FROM_CLI),
                Counts {
                    active: 1,
                    backup: 0
                },
                z,
                false,
                f
            )
            .text,
            "Server hoge/web11 is DOWN, changed from CLI. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        assert_eq!(
            server_up(
                WEB11,
                Why::Text(CHANGED_FROM_CLI),
                Counts {
                    active: 2,
                    backup: 0
                },
                z,
                f
            )
            .text,
            "Server hoge/web11 is UP, changed from CLI. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
        );
    }

    #[test]
    fn backup_servers_and_running_on_backup() {
        let f = Flavor::Haproxy26;
        let z = Sessions::default();
        let backup_only = Counts {
            active: 0,
            backup: 1,
        };
        assert_eq!(
            server_down(WEB10, Why::Nothing, backup_only, z, false, f).text,
            "Server hoge/web10 is DOWN. 0 active and 1 backup servers left. Running on backup. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        assert_eq!(
            server_up(SPARE, Why::Nothing, backup_only, z, f).text,
            "Backup Server hoge/spare is UP. 0 active and 1 backup servers online. Running on backup. 0 sessions requeued, 0 total in queue."
        );
        assert_eq!(
            server_down(SPARE, Why::Nothing, Counts::default(), z, false, f).text,
            "Backup Server hoge/spare is DOWN. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        assert_eq!(
            health_check(SPARE, &refused(0), &snap(0), 1, f).text,
            "Health check for backup server hoge/spare failed, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms, status: 0/2 DOWN."
        );
        assert_eq!(
            maintenance_enter(SPARE, true, false, Counts::default(), z).text,
            "Backup Server hoge/spare is going DOWN for maintenance. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
    }

    #[test]
    fn no_server_available_only_when_the_last_one_goes() {
        let f = Flavor::Haproxy26;
        let r = refused(0);
        let mut h = Health::new(2, 2);
        let outcome = h.on_result(r.status);
        let mut ev = CheckEventLog {
            server: WEB10,
            agent: false,
            result: &r,
            outcome: &outcome,
            weight: 1,
            log_health_checks: true,
            was_draining: false,
            before: Counts {
                active: 1,
                backup: 0,
            },
            after: Counts::default(),
            sessions: Sessions::default(),
            flavor: f,
        };
        let levels: Vec<Level> = check_event_lines(&ev).iter().map(|l| l.level).collect();
        assert_eq!(levels, [Level::Notice, Level::Alert, Level::Emerg]);
        assert_eq!(
            check_event_lines(&ev)[2].text,
            "backend hoge has no server available!"
        );
        // Already empty before: no repeat.
        ev.before = Counts::default();
        assert_eq!(check_event_lines(&ev).len(), 2);
        // Draining server: DOWN is a notice.
        ev.was_draining = true;
        assert_eq!(check_event_lines(&ev)[1].level, Level::Notice);
    }

    #[test]
    fn admin_changes() {
        let z = Sessions::default();
        let one = Counts {
            active: 1,
            backup: 0,
        };
        let m = maintenance_enter(WEB11, true, false, one, z);
        assert_eq!(
            (m.level, m.text.as_str()),
            (
                Level::Alert,
                "Server hoge/web11 is going DOWN for maintenance. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
            )
        );
        assert_eq!(
            maintenance_enter(WEB11, true, true, one, z).level,
            Level::Notice
        );
        let m = maintenance_enter(WEB11, false, false, one, z);
        assert_eq!(
            (m.level, m.text.as_str()),
            (
                Level::Notice,
                "Server hoge/web11 was DOWN and now enters maintenance."
            )
        );
        let l = maintenance_leave(WEB11, true, false);
        assert_eq!(
            (l.level, l.text.as_str()),
            (
                Level::Notice,
                "Server hoge/web11 is UP/READY (leaving forced maintenance)."
            )
        );
        assert_eq!(
            maintenance_leave(WEB11, false, true).text,
            "Server hoge/web11 is DOWN/DRAIN (leaving forced maintenance)."
        );
        assert_eq!(
            drain_enter(WEB11, true, one, z).text,
            "Server hoge/web11 enters drain state. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
        );
        assert_eq!(
            drain_enter(WEB11, false, one, z).text,
            "Server hoge/web11 enters drain state. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
        );
        assert_eq!(
            drain_leave(WEB11, true).text,
            "Server hoge/web11 is UP (leaving forced drain)."
        );
        assert_eq!(
            proxy_stopped("main", 12, 0),
            line(
                Level::Warning,
                "Proxy main stopped (cumulated conns: FE: 12, BE: 0)."
            )
        );
    }

    /// HAProxy 2.6's resolution lines (src/server.c: `srv_update_addr`,
    /// `snr_update_srv_status`, `srv_update_status`).
    #[test]
    fn name_resolution_lines() {
        let z = Sessions::default();
        let none = Counts::default();
        let l = address_changed(
            WEB11,
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            Ipv4Addr::new(10, 0, 0, 2),
            "dns/ns1",
        );
        assert_eq!(
            (l.level, l.text.as_str()),
            (
                Level::Notice,
                "hoge/web11 changed its IP from 10.0.0.1 to 10.0.0.2 by dns/ns1."
            )
        );
        assert_eq!(
            address_changed(WEB11, None, Ipv4Addr::new(10, 0, 0, 2), "dns/ns1").text,
            "hoge/web11 changed its IP from (none) to 10.0.0.2 by dns/ns1."
        );
        let m = maintenance_enter_for(WEB11, Some("DNS NX status"), true, false, none, z);
        assert_eq!(
            (m.level, m.text.as_str()),
            (
                Level::Alert,
                "Server hoge/web11 is going DOWN for maintenance (DNS NX status). 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
            )
        );
        assert_eq!(
            maintenance_enter_for(WEB11, Some("No IP for server "), false, false, none, z).text,
            "Server hoge/web11 was DOWN and now enters maintenance (No IP for server )."
        );
        let [again, ready] = resolves_again(WEB11, "app.example", true, false);
        assert_eq!(
            again.text,
            "Server hoge/web11 ('app.example') is UP/READY (resolves again)."
        );
        assert_eq!(
            ready.text,
            "Server hoge/web11 administratively READY thanks to valid DNS answer."
        );
        let [kept, ready] = resolves_again_in_maintenance(WEB11, "app.example");
        assert_eq!(
            kept.text,
            "Server hoge/web11 ('app.example') resolves again but remains in maintenance."
        );
        assert_eq!(ready.level, Level::Notice);
    }

    #[test]
    fn weight_zero_and_other_statuses() {
        let f = Flavor::Haproxy26;
        assert_eq!(
            health_check(WEB10, &ok200(1), &snap(3), 0, f).text,
            "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, check duration: 1ms, status: 2/2 DRAIN."
        );
        let cases = [
            (
                CheckResult::new(CheckStatus::L4Ok, ms(0)),
                "succeeded, reason: Layer4 check passed, check duration: 0ms",
            ),
            (
                CheckResult::new(CheckStatus::L4Tout, ms(2000)),
                "failed, reason: Layer4 timeout, check duration: 2000ms",
            ),
            (
                CheckResult::new(CheckStatus::L7Tout, ms(3000)),
                "failed, reason: Layer7 timeout, check duration: 3000ms",
            ),
            (
                CheckResult::new(CheckStatus::L7Rsp, ms(1)),
                "failed, reason: Layer7 invalid response, check duration: 1ms",
            ),
            (
                CheckResult::new(CheckStatus::SockErr, ms(1)).with_info("Connection reset by peer"),
                "failed, reason: Socket error, info: \"Connection reset by peer\", check duration: 1ms",
            ),
            (
                // A status line without a phrase: no info at all.
                CheckResult::new(CheckStatus::L7Sts, ms(4)).with_http(503, ""),
                "failed, reason: Layer7 wrong status, code: 503, check duration: 4ms",
            ),
            (
                // Durations are truncated to whole milliseconds.
                CheckResult::new(CheckStatus::L4Ok, Duration::from_micros(1999)),
                "succeeded, reason: Layer4 check passed, check duration: 1ms",
            ),
        ];
        for (r, want) in cases {
            let text = health_check(WEB10, &r, &snap(3), 1, f).text;
            assert_eq!(
                text,
                format!("Health check for server hoge/web10 {want}, status: 2/2 UP.")
            );
            // Only L7OK differs between flavors.
            assert_eq!(
                text,
                health_check(WEB10, &r, &snap(3), 1, Flavor::Seed).text
            );
        }
    }

    #[test]
    fn info_is_ascii_encoded() {
        let r = CheckResult::new(CheckStatus::L7Sts, ms(0))
            .with_http(500, "")
            .with_info("Bad \"gateway\" <x>\té");
        let text = health_check(WEB10, &r, &snap(0), 1, Flavor::Haproxy26).text;
        assert!(
            text.contains("info: \"Bad <22>gateway<22> <3C>x<3E><09><C3><A9>\""),
            "{text}"
        );
    }
}
