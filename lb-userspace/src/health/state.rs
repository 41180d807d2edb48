//! HAProxy's health state machine, pure: no I/O, no clock. The checkers feed it results, the
//! daemon asks it what to log, whether the server went UP or DOWN, and when to check next.
//!
//! Mirrors HAProxy 2.6 `src/check.c` (`set_server_check_status`, `check_notify_failure`,
//! `check_notify_success`) and `src/server.c` (`srv_getinter`, maintenance in
//! `srv_update_status`, `set server ... health` in `cli_parse_set_server`):
//! - the counter `health` runs over `0..=rise+fall-1`; the server is UP while `health >= rise`;
//! - a failure decrements it (when above 0) and, once below `rise`, drops it to 0;
//! - a success increments it (when below the top) and, once it reaches `rise`, jumps to the top;
//! - a server starts UP with `health = rise` ("up, but will fall down at first failure");
//! - a line is logged (with `option log-health-checks`) when the counter moved or the check
//!   status differs from the previous one.
use std::{fmt, time::Duration};

use crate::config::{OnError, Server};

/// A finished check's status, with HAProxy's `show stat` code and log description
/// (`check_statuses[]` in `src/check.c`). `Ini` is the status before the first check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    /// "Initializing": no check has completed yet.
    Ini,
    /// A local error (socket creation, or an I/O error on an established connection).
    SockErr,
    L4Ok,
    L4Tout,
    L4Con,
    /// The TLS handshake succeeded (a TCP check with `check-ssl`).
    L6Ok,
    /// Connected, but the TLS handshake did not finish in time.
    L6Tout,
    /// The TLS handshake failed.
    L6Rsp,
    L7Tout,
    L7Rsp,
    L7Ok,
    /// Passed on condition: with `http-check disable-on-404`, an UP server answered 404 and
    /// goes to NOLB (HAProxy's L7OKCD).
    L7OkC,
    L7Sts,
    /// "Health analyze": `observe` saw `error-limit` errors in a row (no check ran).
    Hana,
}

impl CheckStatus {
    pub const ALL: [CheckStatus; 14] = [
        CheckStatus::Ini,
        CheckStatus::SockErr,
        CheckStatus::L4Ok,
        CheckStatus::L4Tout,
        CheckStatus::L4Con,
        CheckStatus::L6Ok,
        CheckStatus::L6Tout,
        CheckStatus::L6Rsp,
        CheckStatus::L7Tout,
        CheckStatus::L7Rsp,
        CheckStatus::L7Ok,
        CheckStatus::L7OkC,
        CheckStatus::L7Sts,
        CheckStatus::Hana,
    ];

    /// The short code of `show stat`'s `check_status` column.
    pub fn code(self) -> &'static str {
        match self {
            CheckStatus::Ini => "INI",
            CheckStatus::SockErr => "SOCKERR",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Tout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L6Ok => "L6OK",
            CheckStatus::L6Tout => "L6TOUT",
            CheckStatus::L6Rsp => "L6RSP",
            CheckStatus::L7Tout => "L7TOUT",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7OkC => "L7OKC",
            CheckStatus::L7Sts => "L7STS",
            CheckStatus::Hana => "HANA",
        }
    }

    /// The text logged after `reason: ` (and `show stat`'s `check_desc`).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Ini => "Initializing",
            CheckStatus::SockErr => "Socket error",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Tout => "Layer4 timeout",
            CheckStatus::L4Con => "Layer4 connection problem",
            CheckStatus::L6Ok => "Layer6 check passed",
            CheckStatus::L6Tout => "Layer6 timeout",
            CheckStatus::L6Rsp => "Layer6 invalid response",
            CheckStatus::L7Tout => "Layer7 timeout",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7OkC => "Layer7 check conditionally passed",
            CheckStatus::L7Sts => "Layer7 wrong status",
            CheckStatus::Hana => "Health analyze",
        }
    }

    /// The check counts as a success.
    pub fn passed(self) -> bool {
        matches!(
            self,
            CheckStatus::L4Ok | CheckStatus::L6Ok | CheckStatus::L7Ok | CheckStatus::L7OkC
        )
    }

    /// A completed check (anything but `Ini`).
    pub fn finished(self) -> bool {
        self != CheckStatus::Ini
    }

    /// A check ran and took time: HAProxy prints `check duration` (HANA has none).
    pub fn timed(self) -> bool {
        self.finished() && self != CheckStatus::Hana
    }

    /// Layer 5-7 data is available, so HAProxy prints `, code: N` (statuses after
    /// `HCHK_STATUS_L57DATA` in its enum: L7OK, L7OKC, L7STS).
    pub fn has_code(self) -> bool {
        matches!(
            self,
            CheckStatus::L7Ok | CheckStatus::L7OkC | CheckStatus::L7Sts
        )
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What one check found: HAProxy's `check->status`, `check->code`, `check->desc` and
/// `check->duration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The HTTP status code, when a status line was read.
    pub code: Option<u16>,
    /// HAProxy 2.6's `check->desc`: the OS error text for L4CON/SOCKERR ("Connection
    /// refused"), the response's reason phrase for L7STS ("Not Found"), empty otherwise.
    pub info: String,
    /// The reason phrase of the response's status line, when one was read. HAProxy 1.x (the
    /// seed) logged it as `info` on success too (`info: "OK"`).
    pub reason: Option<String>,
    /// From the start of the check (before connecting) to its verdict.
    pub duration: Duration,
    /// HAProxy 2.6 applies this result twice: its MySQL and LDAP parsers set it, then the
    /// end of the rules sets it again without `info`, which can move the counter twice.
    pub twice: bool,
}

impl CheckResult {
    pub fn new(status: CheckStatus, duration: Duration) -> CheckResult {
        CheckResult {
            status,
            code: None,
            info: String::new(),
            reason: None,
            duration,
            twice: false,
        }
    }

    pub fn with_info(mut self, info: impl Into<String>) -> CheckResult {
        self.info = info.into();
        self
    }

    pub fn with_http(mut self, code: u16, reason: &str) -> CheckResult {
        self.code = Some(code);
        self.reason = Some(reason.to_string());
        self
    }

    /// HAProxy's `check duration: Nms`: whole milliseconds, truncated (`tv_ms_elapsed`).
    pub fn duration_ms(&self) -> u128 {
        self.duration.as_millis()
    }
}

/// How the server's operational state changes: UP (from DOWN, or from NOLB), DOWN, or NOLB
/// (`Stopping`: UP, but taking no new flows, after a 404 with `http-check disable-on-404`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
    Stopping,
}

/// A server's operational state as its checks see it (HAProxy's `SRV_ST_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Down,
    /// NOLB: UP, keeps its flows, takes no new ones.
    Stopping,
    Running,
}

impl Op {
    /// The transition from `self` to `after`, if any.
    pub fn to(self, after: Op) -> Option<Transition> {
        match (self, after) {
            (a, b) if a == b => None,
            (_, Op::Down) => Some(Transition::Down),
            (Op::Running, Op::Stopping) => Some(Transition::Stopping),
            _ => Some(Transition::Up),
        }
    }
}

/// The counter and its bounds, enough to print `status: 1/2 UP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub health: u32,
    pub rise: u32,
    pub fall: u32,
}

impl Snapshot {
    /// UP while `health >= rise`.
    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// Fully UP: the counter is at its top (`rise + fall - 1`).
    pub fn is_full(&self) -> bool {
        self.health == self.rise + self.fall - 1
    }

    /// HAProxy's printed status: `health-rise+1/fall UP` while UP (`DRAIN` instead of `UP`
    /// when the server's weight is 0), `health/rise DOWN` while DOWN.
    pub fn status_text(&self, weight: u32) -> String {
        if self.is_up() {
            let word = if weight == 0 { "DRAIN" } else { "UP" };
            format!("{}/{} {word}", self.health - self.rise + 1, self.fall)
        } else {
            format!("{}/{} DOWN", self.health, self.rise)
        }
    }
}

/// What the state machine made of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// With `option log-health-checks`, HAProxy logs a `Health check for server ...` line:
    /// the counter moved, or the check status differs from the previous check's.
    pub log: bool,
    /// The server went UP or DOWN with this result.
    pub transition: Option<Transition>,
    /// The counter after the result.
    pub health: Snapshot,
}

/// The check intervals of one server (`inter`, `fastinter`, `downinter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    pub inter: Duration,
    /// Transitional states; `inter` when unset.
    pub fastinter: Option<Duration>,
    /// Fully DOWN; `inter` when unset.
    pub downinter: Option<Duration>,
}

impl Intervals {
    pub fn of(s: &Server) -> Intervals {
        Intervals {
            inter: s.inter,
            fastinter: s.fastinter,
            downinter: s.downinter,
        }
    }
}

/// One server's health check state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    rise: u32,
    fall: u32,
    health: u32,
    status: CheckStatus,
    maint: bool,
    /// The last passing check was conditional (L7OKC): NOLB until one passes outright.
    stopping: bool,
}

impl Health {
    /// HAProxy's start: UP with `health = rise`, so the first failure takes it DOWN.
    pub fn new(rise: u32, fall: u32) -> Health {
        let rise = rise.max(1);
        Health {
            rise,
            fall: fall.max(1),
            health: rise,
            status: CheckStatus::Ini,
            maint: false,
            stopping: false,
        }
    }

    /// A `disabled` server: in maintenance, DOWN with `health = 0`, checks paused.
    pub fn new_in_maintenance(rise: u32, fall: u32) -> Health {
        let mut h = Health::new(rise, fall);
        h.health = 0;
        h.maint = true;
        h
    }

    pub fn for_server(s: &Server) -> Health {
        if s.disabled {
            Health::new_in_maintenance(s.rise, s.fall)
        } else {
            Health::new(s.rise, s.fall)
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            health: self.health,
            rise: self.rise,
            fall: self.fall,
        }
    }

    pub fn health(&self) -> u32 {
        self.health
    }

    pub fn rise(&self) -> u32 {
        self.rise
    }

    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// The server is UP as far as checks go (`health >= rise`).
    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// The last check's status (`Ini` before the first).
    pub fn status(&self) -> CheckStatus {
        self.status
    }

    pub fn in_maintenance(&self) -> bool {
        self.maint
    }

    /// UP, but in NOLB after a conditional pass (`http-check disable-on-404`).
    pub fn is_stopping(&self) -> bool {
        self.stopping && self.is_up()
    }

    /// See [`Snapshot::status_text`].
    pub fn status_text(&self, weight: u32) -> String {
        self.snapshot().status_text(weight)
    }

    /// Applies one check result. In maintenance checks are paused, so a result that was
    /// already under way changes nothing.
    pub fn on_result(&mut self, status: CheckStatus) -> Outcome {
        if self.maint || !status.finished() {
            return Outcome {
                log: false,
                transition: None,
                health: self.snapshot(),
            };
        }
        let was_up = self.is_up();
        let prev_status = self.status;
        self.status = status;
        let mut moved = false;
        if status.passed() {
            if self.health < self.rise + self.fall - 1 {
                moved = true;
                self.health += 1;
                if self.health >= self.rise {
                    self.health = self.rise + self.fall - 1;
                }
            }
        } else if self.health > 0 {
            moved = true;
            self.health -= 1;
            if self.health < self.rise {
                self.health = 0;
            }
        }
        let was_stopping = self.stopping && was_up;
        if !self.is_up() {
            self.stopping = false;
        } else if status == CheckStatus::L7OkC {
            self.stopping = true;
        } else if status.passed() {
            self.stopping = false;
        }
        let op = |up: bool, stopping: bool| match (up, stopping) {
            (false, _) => Op::Down,
            (true, true) => Op::Stopping,
            (true, false) => Op::Running,
        };
        let transition = op(was_up, was_stopping).to(op(self.is_up(), self.stopping));
        Outcome {
            log: moved || status != prev_status,
            transition,
            health: self.snapshot(),
        }
    }

    /// What `on-error` does once `observe` saw `error-limit` errors in a row (HAProxy's
    /// `__health_adjust`): `fail-check` counts as one failed check, `sudden-death` first
    /// leaves the counter one failure from DOWN, `mark-down` takes the server DOWN. `None`
    /// for `fastinter`, which only brings the next check forward (as every mode does).
    pub fn on_analyze(&mut self, on_error: OnError) -> Option<Outcome> {
        match on_error {
            OnError::FastInter => return None,
            OnError::SuddenDeath if self.health > self.rise => self.health = self.rise + 1,
            OnError::MarkDown => self.health = self.rise,
            OnError::SuddenDeath | OnError::FailCheck => {}
        }
        Some(self.on_result(CheckStatus::Hana))
    }

    /// The delay before the next check (`srv_getinter`): `inter` when fully UP, `downinter`
    /// when fully DOWN, `fastinter` in between (and before the first check); unset ones
    /// fall back to `inter`.
    pub fn next_interval(&self, iv: &Intervals) -> Duration {
        if self.snapshot().is_full() {
            iv.inter
        } else if self.health == 0 {
            iv.downinter.unwrap_or(iv.inter)
        } else {
            iv.fastinter.unwrap_or(iv.inter)
        }
    }

    /// Enters maintenance (`disable server`, `set server ... state maint`): checks pause and
    /// the counter drops to 0. Returns whether the server was UP, which decides between
    /// `is going DOWN for maintenance` and `was DOWN and now enters maintenance`. `None`
    /// when already in maintenance.
    pub fn enter_maintenance(&mut self) -> Option<bool> {
        if self.maint {
            return None;
        }
        let was_up = self.is_up();
        self.maint = true;
        self.health = 0;
        self.stopping = false;
        Some(was_up)
    }

    /// Leaves maintenance: checks resume with `health = rise`, so the server is UP again and
    /// the next failure takes it DOWN ("start OK but check immediately"). Returns whether it
    /// was in maintenance.
    pub fn leave_maintenance(&mut self) -> bool {
        if !self.maint {
            return false;
        }
        self.maint = false;
        self.health = self.rise;
        self.stopping = false;
        true
    }

    /// `set server B/S health up|down`: the counter goes to its top or to 0. Returns the
    /// transition, if the server changed state (none in maintenance, where HAProxy only
    /// moves the counter).
    pub fn force(&mut self, up: bool) -> Option<Transition> {
        let was_up = self.is_up();
        let was_stopping = self.is_stopping();
        self.health = if up { self.rise + self.fall - 1 } else { 0 };
        self.stopping = false;
        if self.maint {
            return None;
        }
        match (was_up, up) {
            (true, false) => Some(Transition::Down),
            (false, true) => Some(Transition::Up),
            (true, true) if was_stopping => Some(Transition::Up),
            _ => None,
        }
    }
}

/// What one agent check does to the agent's state (`tcpcheck_agent_expect_reply` and
/// `set_server_check_status` for a check with `CHK_ST_AGENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentVerdict {
    /// `up`: the agent's counter goes to its top; status L7OK.
    Up,
    /// `down`, `stopped` or `fail`: the counter drops to 0; status L7STS. The only agent
    /// result that can take a server DOWN.
    Down,
    /// A reply without a health word (`drain`, `75%`, an unknown word): HAProxy's status
    /// CHECKED, which changes nothing and logs nothing.
    Neutral,
    /// No usable reply (connection refused, timeout, empty answer...): the status changes, the
    /// counter does not; an agent that cannot be reached never marks a server DOWN.
    Failed(CheckStatus),
    /// A reply line without its end (HAProxy ignores it and keeps the previous status).
    Ignored,
}

/// The agent's side of a server: HAProxy's `agent` check, with `rise = fall = 1` (2.6 has no
/// keyword to change them), so its counter is 1 (UP) or 0 (DOWN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentHealth {
    up: bool,
    /// The last status; `None` is HAProxy's CHECKED, left by a neutral reply.
    status: Option<CheckStatus>,
}

impl Default for AgentHealth {
    fn default() -> Self {
        AgentHealth::new()
    }
}

impl AgentHealth {
    /// An agent starts UP (its counter at `rise`, which is its top).
    pub fn new() -> AgentHealth {
        AgentHealth {
            up: true,
            status: Some(CheckStatus::Ini),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The counter, printed `1/1 UP` or `0/1 DOWN` in agent lines.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            health: u32::from(self.up),
            rise: 1,
            fall: 1,
        }
    }

    /// Applies one agent check; returns whether HAProxy logs an `Agent check` line (with
    /// `option log-health-checks`): the status changed. An agent's counter never moves by
    /// steps (it is set outright), so a change of status is the only trigger.
    pub fn on_result(&mut self, v: AgentVerdict) -> bool {
        let status = match v {
            AgentVerdict::Up => {
                self.up = true;
                Some(CheckStatus::L7Ok)
            }
            AgentVerdict::Down => {
                self.up = false;
                Some(CheckStatus::L7Sts)
            }
            AgentVerdict::Neutral => {
                self.status = None;
                return false;
            }
            AgentVerdict::Failed(s) => Some(s),
            AgentVerdict::Ignored => return false,
        };
        std::mem::replace(&mut self.status, status) != status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use CheckStatus::*;

    const DESCRIPTIONS: [(CheckStatus, &str, &str); 14] = [
        (Ini, "INI", "Initializing"),
        (SockErr, "SOCKERR", "Socket error"),
        (L4Ok, "L4OK", "Layer4 check passed"),
        (L4Tout, "L4TOUT", "Layer4 timeout"),
        (L4Con, "L4CON", "Layer4 connection problem"),
        (L6Ok, "L6OK", "Layer6 check passed"),
        (L6Tout, "L6TOUT", "Layer6 timeout"),
        (L6Rsp, "L6RSP", "Layer6 invalid response"),
        (L7Tout, "L7TOUT", "Layer7 timeout"),
        (L7Rsp, "L7RSP", "Layer7 invalid response"),
        (L7Ok, "L7OK", "Layer7 check passed"),
        (L7OkC, "L7OKC", "Layer7 check conditionally passed"),
        (L7Sts, "L7STS", "Layer7 wrong status"),
        (Hana, "HANA", "Health analyze"),
    ];

    #[test]
    fn status_codes_and_descriptions_are_haproxys() {
        for (s, code, desc) in DESCRIPTIONS {
            assert_eq!((s.code(), s.description()), (code, desc));
        }
        let passed: Vec<_> = CheckStatus::ALL
            .into_iter()
            .filter(|s| s.passed())
            .collect();
        assert_eq!(passed, [L4Ok, L6Ok, L7Ok, L7OkC]);
        let coded: Vec<_> = CheckStatus::ALL
            .into_iter()
            .filter(|s| s.has_code())
            .collect();
        assert_eq!(coded, [L7Ok, L7OkC, L7Sts]);
    }

    /// One step of a table: the result fed, then what must come out.
    struct Step {
        status: CheckStatus,
        printed: &'static str,
        log: bool,
        transition: Option<Transition>,
    }

    const fn step(
        status: CheckStatus,
        printed: &'static str,
        log: bool,
        transition: Option<Transition>,
    ) -> Step {
        Step {
            status,
            printed,
            log,
            transition,
        }
    }

    const UP: Option<Transition> = Some(Transition::Up);
    const DOWN: Option<Transition> = Some(Transition::Down);

    fn run(rise: u32, fall: u32, initial: &str, steps: &[Step]) {
        let mut h = Health::new(rise, fall);
        assert_eq!(
            h.status_text(1),
            initial,
            "rise {rise} fall {fall}: initial"
        );
        for (i, s) in steps.iter().enumerate() {
            let out = h.on_result(s.status);
            let ctx = format!("rise {rise} fall {fall}, step {i} ({})", s.status);
            assert_eq!(out.health.status_text(1), s.printed, "{ctx}: printed");
            assert_eq!(out.log, s.log, "{ctx}: log");
            assert_eq!(out.transition, s.transition, "{ctx}: transition");
            assert_eq!(h.status(), s.status, "{ctx}: status kept");
            assert!(h.health() < rise + fall, "{ctx}: counter in range");
        }
    }

    /// `http-check disable-on-404` against HAProxy 2.6 (captured with a server answering
    /// 200, 404, 404, 200, 404, 503, 200): a 404 puts the UP server in NOLB, a pass takes it
    /// out, a failure counts down as usual without leaving NOLB.
    #[test]
    fn conditional_passes_stop_the_server() {
        const STOPPING: Option<Transition> = Some(Transition::Stopping);
        let mut h = Health::new(2, 2);
        let steps = [
            (L7Ok, "2/2 UP", true, None, false),
            (L7OkC, "2/2 UP", true, STOPPING, true),
            (L7OkC, "2/2 UP", false, None, true),
            (L7Ok, "2/2 UP", true, UP, false),
            (L7OkC, "2/2 UP", true, STOPPING, true),
            (L7Sts, "1/2 UP", true, None, true),
            (L7Ok, "2/2 UP", true, UP, false),
            (L7OkC, "2/2 UP", true, STOPPING, true),
            (L7Sts, "1/2 UP", true, None, true),
            (L7Sts, "0/2 DOWN", true, DOWN, false),
        ];
        for (i, (status, printed, log, transition, stopping)) in steps.into_iter().enumerate() {
            let out = h.on_result(status);
            let got = (out.health.status_text(1), out.log, out.transition);
            assert_eq!(got, (printed.to_string(), log, transition), "step {i}");
            assert_eq!(h.is_stopping(), stopping, "step {i}");
        }
        h.force(true);
        assert!(!h.is_stopping());
    }

    /// The seed's setting and the capture (`haproxy-2.6-logs.txt`): web11 stopped (two L4CON),
    /// restarted (two L7OK), web10's page removed (two L7STS 404) and restored.
    #[test]
    fn rise2_fall2_matches_the_capture() {
        // The seed's setting and the capture (`haproxy-2.6-logs.txt`): web11 stopped (two
        // L4CON), restarted (two L7OK), web10's page removed (two L7STS 404) and restored.
        run(
            2,
            2,
            "1/2 UP",
            &[
                step(L7Ok, "2/2 UP", true, None),
                step(L7Ok, "2/2 UP", false, None),
                step(L4Con, "1/2 UP", true, None),
                step(L4Con, "0/2 DOWN", true, DOWN),
                step(L4Con, "0/2 DOWN", false, None),
                step(L7Ok, "1/2 DOWN", true, None),
                step(L7Ok, "2/2 UP", true, UP),
                step(L7Ok, "2/2 UP", false, None),
                step(L7Sts, "1/2 UP", true, None),
                step(L7Sts, "0/2 DOWN", true, DOWN),
                step(L7Sts, "0/2 DOWN", false, None),
                // Same counter, another status: still a line.
                step(L4Con, "0/2 DOWN", true, None),
                step(L7Ok, "1/2 DOWN", true, None),
                // A failure while rising drops straight back to 0.
                step(L7Sts, "0/2 DOWN", true, None),
                step(L7Ok, "1/2 DOWN", true, None),
                step(L7Ok, "2/2 UP", true, UP),
                // Another passing status at the top: a line, no transition.
                step(L4Ok, "2/2 UP", true, None),
            ],
        );
    }

    /// `on-error` after `error-limit` errors in a row (HAProxy's `__health_adjust`), from a
    /// server fully UP with rise 2, fall 3 (counter 4 of 0..=4).
    #[test]
    fn on_error_modes_act_as_haproxys() {
        let full = || {
            let mut h = Health::new(2, 3);
            h.force(true);
            h
        };
        let mut h = full();
        assert_eq!(
            h.on_analyze(OnError::FastInter),
            None,
            "only brings checks forward"
        );
        assert_eq!(h.status_text(1), "3/3 UP");
        let mut h = full();
        let o = h.on_analyze(OnError::FailCheck).expect("a failed check");
        assert_eq!(
            (h.status_text(1), o.transition, o.log),
            ("2/3 UP".into(), None, true)
        );
        assert_eq!(h.status(), Hana);
        let mut h = full();
        h.on_analyze(OnError::SuddenDeath)
            .expect("a pre-fatal failed check");
        assert_eq!(h.status_text(1), "1/3 UP", "one failure from DOWN");
        assert_eq!(h.on_result(L7Sts).transition, DOWN);
        let mut h = full();
        let o = h.on_analyze(OnError::MarkDown).expect("DOWN");
        assert_eq!((h.status_text(1), o.transition), ("0/2 DOWN".into(), DOWN));
    }

    #[test]
    fn first_failure_takes_a_fresh_server_down() {
        run(2, 2, "1/2 UP", &[step(L4Con, "0/2 DOWN", true, DOWN)]);
        run(3, 3, "1/3 UP", &[step(L4Tout, "0/3 DOWN", true, DOWN)]);
        run(1, 3, "1/3 UP", &[step(L7Tout, "0/1 DOWN", true, DOWN)]);
        run(2, 3, "1/3 UP", &[step(SockErr, "0/2 DOWN", true, DOWN)]);
    }

    #[test]
    fn rise1_fall1() {
        run(
            1,
            1,
            "1/1 UP",
            &[
                // Already at the top (rise + fall - 1 = 1): the first success only changes
                // the status from INI.
                step(L4Ok, "1/1 UP", true, None),
                step(L4Ok, "1/1 UP", false, None),
                step(L4Con, "0/1 DOWN", true, DOWN),
                step(L4Con, "0/1 DOWN", false, None),
                step(L4Tout, "0/1 DOWN", true, None),
                step(L4Ok, "1/1 UP", true, UP),
            ],
        );
    }

    #[test]
    fn rise1_fall2() {
        run(
            1,
            2,
            "1/2 UP",
            &[
                step(L7Ok, "2/2 UP", true, None),
                step(L7Rsp, "1/2 UP", true, None),
                step(L7Rsp, "0/1 DOWN", true, DOWN),
                step(L7Rsp, "0/1 DOWN", false, None),
                step(L7Ok, "2/2 UP", true, UP),
            ],
        );
    }

    #[test]
    fn rise2_fall1() {
        run(
            2,
            1,
            "1/1 UP",
            &[
                step(L7Ok, "1/1 UP", true, None),
                step(L7Ok, "1/1 UP", false, None),
                step(L7Sts, "0/2 DOWN", true, DOWN),
                step(L7Ok, "1/2 DOWN", true, None),
                step(L7Ok, "1/1 UP", true, UP),
            ],
        );
    }

    #[test]
    fn rise2_fall3_haproxy_defaults() {
        run(
            2,
            3,
            "1/3 UP",
            &[
                step(L4Ok, "3/3 UP", true, None),
                step(SockErr, "2/3 UP", true, None),
                step(SockErr, "1/3 UP", true, None),
                step(L4Ok, "3/3 UP", true, None),
                step(L4Con, "2/3 UP", true, None),
                step(L4Con, "1/3 UP", true, None),
                step(L4Con, "0/2 DOWN", true, DOWN),
                step(L4Con, "0/2 DOWN", false, None),
                step(L4Ok, "1/2 DOWN", true, None),
                step(L4Ok, "3/3 UP", true, UP),
                step(L4Ok, "3/3 UP", false, None),
            ],
        );
    }

    #[test]
    fn rise3_fall2() {
        run(
            3,
            2,
            "1/2 UP",
            &[
                step(L7Ok, "2/2 UP", true, None),
                step(L7Tout, "1/2 UP", true, None),
                step(L7Tout, "0/3 DOWN", true, DOWN),
                step(L7Ok, "1/3 DOWN", true, None),
                step(L7Ok, "2/3 DOWN", true, None),
                step(L7Ok, "2/2 UP", true, UP),
            ],
        );
    }

    #[test]
    fn rise3_fall3() {
        run(
            3,
            3,
            "1/3 UP",
            &[
                step(L7Ok, "3/3 UP", true, None),
                step(L7Sts, "2/3 UP", true, None),
                step(L7Ok, "3/3 UP", true, None),
                step(L7Sts, "2/3 UP", true, None),
                step(L7Sts, "1/3 UP", true, None),
                step(L7Sts, "0/3 DOWN", true, DOWN),
                step(L7Ok, "1/3 DOWN", true, None),
                step(L7Ok, "2/3 DOWN", true, None),
                step(L7Rsp, "0/3 DOWN", true, None),
                step(L7Rsp, "0/3 DOWN", false, None),
                step(L7Ok, "1/3 DOWN", true, None),
                step(L7Ok, "2/3 DOWN", true, None),
                step(L7Ok, "3/3 UP", true, UP),
                step(L7Ok, "3/3 UP", false, None),
            ],
        );
    }

    #[test]
    fn rise1_fall3_and_rise3_fall1() {
        run(
            1,
            3,
            "1/3 UP",
            &[
                step(L4Ok, "3/3 UP", true, None),
                step(L4Con, "2/3 UP", true, None),
                step(L4Con, "1/3 UP", true, None),
                step(L4Con, "0/1 DOWN", true, DOWN),
                step(L4Ok, "3/3 UP", true, UP),
            ],
        );
        run(
            3,
            1,
            "1/1 UP",
            &[
                step(L4Con, "0/3 DOWN", true, DOWN),
                step(L4Ok, "1/3 DOWN", true, None),
                step(L4Ok, "2/3 DOWN", true, None),
                step(L4Ok, "1/1 UP", true, UP),
            ],
        );
    }

    #[test]
    fn a_steady_server_logs_nothing() {
        for (rise, fall) in [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3)] {
            let mut h = Health::new(rise, fall);
            assert!(h.on_result(L7Ok).log);
            for _ in 0..5 {
                let out = h.on_result(L7Ok);
                assert_eq!((out.log, out.transition), (false, None));
            }
            h.force(false);
            // At 0 a failure moves nothing: only the status change from L7OK logs.
            assert!(h.on_result(L4Con).log);
            for _ in 0..5 {
                let out = h.on_result(L4Con);
                assert_eq!((out.log, out.transition), (false, None));
            }
        }
    }

    #[test]
    fn printed_status_every_counter_value() {
        // (rise, fall, health, weight) -> text, for every value of the counter.
        let table: &[(u32, u32, u32, u32, &str)] = &[
            (1, 1, 0, 1, "0/1 DOWN"),
            (1, 1, 1, 1, "1/1 UP"),
            (1, 1, 1, 0, "1/1 DRAIN"),
            (2, 2, 0, 1, "0/2 DOWN"),
            (2, 2, 1, 1, "1/2 DOWN"),
            (2, 2, 2, 1, "1/2 UP"),
            (2, 2, 3, 1, "2/2 UP"),
            (2, 2, 1, 0, "1/2 DOWN"),
            (2, 2, 2, 0, "1/2 DRAIN"),
            (2, 2, 3, 0, "2/2 DRAIN"),
            (3, 2, 2, 1, "2/3 DOWN"),
            (3, 2, 3, 1, "1/2 UP"),
            (3, 2, 4, 256, "2/2 UP"),
            (2, 3, 4, 1, "3/3 UP"),
            (2, 3, 4, 0, "3/3 DRAIN"),
        ];
        for &(rise, fall, health, weight, text) in table {
            let s = Snapshot { health, rise, fall };
            assert_eq!(
                s.status_text(weight),
                text,
                "{rise}/{fall}/{health}/{weight}"
            );
        }
    }

    #[test]
    fn weight_zero_prints_drain_in_outcomes() {
        let mut h = Health::new(2, 2);
        assert_eq!(h.status_text(0), "1/2 DRAIN");
        assert_eq!(h.on_result(L7Ok).health.status_text(0), "2/2 DRAIN");
        assert_eq!(h.on_result(L7Sts).health.status_text(0), "1/2 DRAIN");
        assert_eq!(h.on_result(L7Sts).health.status_text(0), "0/2 DOWN");
    }

    #[test]
    fn intervals_follow_the_state() {
        let ms = Duration::from_millis;
        let all = Intervals {
            inter: ms(3000),
            fastinter: Some(ms(500)),
            downinter: Some(ms(10000)),
        };
        let plain = Intervals {
            inter: ms(3000),
            fastinter: None,
            downinter: None,
        };
        let mut h = Health::new(2, 2);
        // Not yet checked: transitional.
        assert_eq!(h.next_interval(&all), ms(500));
        assert_eq!(h.next_interval(&plain), ms(3000));
        h.on_result(L7Ok); // 2/2 UP, full
        assert_eq!(h.next_interval(&all), ms(3000));
        h.on_result(L7Sts); // 1/2 UP, going down
        assert_eq!(h.next_interval(&all), ms(500));
        h.on_result(L7Sts); // 0/2 DOWN, fully down
        assert_eq!(h.next_interval(&all), ms(10000));
        assert_eq!(h.next_interval(&plain), ms(3000));
        h.on_result(L7Ok); // 1/2 DOWN, going up
        assert_eq!(h.next_interval(&all), ms(500));
        h.on_result(L7Ok);
        assert_eq!(h.next_interval(&all), ms(3000));
        // rise 1 fall 1: only full or fully down.
        let mut h = Health::new(1, 1);
        assert_eq!(h.next_interval(&all), ms(3000));
        h.on_result(L4Con);
        assert_eq!(h.next_interval(&all), ms(10000));
    }

    #[test]
    fn maintenance_pauses_and_restarts_at_rise() {
        let mut h = Health::new(2, 2);
        h.on_result(L7Ok);
        assert_eq!(h.enter_maintenance(), Some(true));
        assert_eq!(h.enter_maintenance(), None);
        assert!(h.in_maintenance() && !h.is_up());
        let out = h.on_result(L4Con);
        assert_eq!((out.log, out.transition), (false, None));
        assert_eq!(h.status(), L7Ok, "results during maintenance are dropped");
        assert!(h.leave_maintenance());
        assert!(!h.leave_maintenance());
        assert_eq!(h.status_text(1), "1/2 UP");
        // Same status as before maintenance: the counter moving is what logs.
        let out = h.on_result(L7Ok);
        assert_eq!((out.log, out.transition), (true, None));
        assert_eq!(out.health.status_text(1), "2/2 UP");

        let mut down = Health::new(2, 2);
        down.on_result(L4Con);
        assert_eq!(down.enter_maintenance(), Some(false));

        let mut disabled = Health::new_in_maintenance(2, 2);
        assert!(disabled.in_maintenance());
        assert_eq!(disabled.status_text(1), "0/2 DOWN");
        assert!(disabled.leave_maintenance());
        assert!(disabled.is_up());
    }

    #[test]
    fn forced_health_from_the_cli() {
        let mut h = Health::new(2, 3);
        assert_eq!(h.force(false), Some(Transition::Down));
        assert_eq!(h.status_text(1), "0/2 DOWN");
        assert_eq!(h.force(false), None);
        assert_eq!(h.force(true), Some(Transition::Up));
        assert_eq!(h.status_text(1), "3/3 UP");
        assert_eq!(h.force(true), None);
        h.enter_maintenance();
        assert_eq!(h.force(true), None);
    }

    #[test]
    fn zero_rise_or_fall_is_clamped() {
        let mut h = Health::new(0, 0);
        assert_eq!(h.status_text(1), "1/1 UP");
        assert_eq!(h.on_result(L4Con).transition, Some(Transition::Down));
    }

    /// The agent sequence captured from HAProxy 2.6 (`agent-check`, replies `up`, `75%`,
    /// `drain`, `ready`, `down # disk full`, `up 100%`, `maint`, `ready up`, `fail`,
    /// `stopped`, `up`, `bogus`, `50% bogus`, nothing, `up`, then refused): which ones log.
    #[test]
    fn agent_lines_follow_the_capture() {
        use AgentVerdict::*;
        let mut a = AgentHealth::new();
        assert_eq!(a.snapshot().status_text(1), "1/1 UP");
        let steps: &[(AgentVerdict, bool, &str)] = &[
            (Up, true, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Down, true, "0/1 DOWN"),
            (Up, true, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Up, true, "1/1 UP"),
            (Down, true, "0/1 DOWN"),
            (Down, false, "0/1 DOWN"),
            (Up, true, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Neutral, false, "1/1 UP"),
            (Failed(L7Rsp), true, "1/1 UP"),
            (Up, true, "1/1 UP"),
            (Failed(L4Con), true, "1/1 UP"),
            (Failed(L4Con), false, "1/1 UP"),
            (Ignored, false, "1/1 UP"),
        ];
        for (i, (v, log, text)) in steps.iter().enumerate() {
            assert_eq!(a.on_result(*v), *log, "step {i}: {v:?}");
            assert_eq!(a.snapshot().status_text(1), *text, "step {i}");
        }
        // An unreachable agent never takes the server down.
        let mut a = AgentHealth::new();
        a.on_result(Failed(L4Tout));
        assert!(a.is_up());
    }
}
