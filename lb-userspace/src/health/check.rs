//! The checkers: one task per health check and one per agent check, and the handle the
//! daemon steers them with.
//!
//! The first checks are spread over the smallest interval like HAProxy's `start_checks`;
//! each next health check is due one interval (from the state machine: `inter`,
//! `fastinter`, `downinter`) after the previous one ended, each next agent check one
//! `agent-inter` after. A health check's task applies its result to the server's [`Health`]
//! itself, so the interval it picks is always the one of the state the result led to, and
//! reports a [`CheckEvent`] on an mpsc channel. An agent check's reply may also change the
//! server's admin state and weight, which only the daemon can apply, and HAProxy applies
//! them before the health word: the task reports it unapplied, and the daemon applies it
//! with [`Checkers::apply_agent`] in between.
//!
//! A server is UP when it is not in maintenance, its health check (when configured and
//! enabled) is UP and its agent (when configured) is UP (HAProxy's `check_notify_success`);
//! an agent takes a server DOWN only by saying so (`down`, `stopped`, `fail`), never by being
//! unreachable. Maintenance pauses the health check (and abandons one under way); the agent
//! goes on, since its `ready` is one way out of maintenance.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
    time::{Instant, sleep_until},
};

use super::{
    agent::{AgentReport, run_agent},
    run::Prober,
    spec::{AgentSpec, CheckSpec, MAX_WAIT, after},
    state::{
        AgentHealth, AgentVerdict, CheckResult, CheckStatus, Health, Intervals, Op, Outcome,
        Transition,
    },
};
use crate::{
    config::{Backend, Config, OnError, Server, Verify},
    dataplane::{ids::ServerId, layout::Layout},
};

/// One server to check.
#[derive(Clone, Debug)]
pub struct CheckTarget {
    pub id: ServerId,
    /// The health check, for servers with `check`.
    pub spec: Option<CheckSpec>,
    pub intervals: Intervals,
    /// The initial state: UP at `health = rise`, or in maintenance for `disabled` servers.
    pub health: Health,
    /// The agent check, for servers with `agent-check`.
    pub agent: Option<AgentSpec>,
}

impl CheckTarget {
    /// `verify` is the global default (`ssl-server-verify`).
    pub fn new(id: ServerId, backend: &Backend, server: &Server, verify: Verify) -> CheckTarget {
        CheckTarget {
            id,
            spec: server
                .check
                .then(|| CheckSpec::new(backend, server, verify)),
            intervals: Intervals::of(server),
            health: Health::for_server(server),
            agent: AgentSpec::new(backend, server),
        }
    }
}

/// The servers of `cfg` that have `check` or `agent-check`, with the ids `layout` (made of
/// `cfg`) gave them. The others are never checked and stay UP.
pub fn targets(layout: &Layout, cfg: &Config) -> Vec<CheckTarget> {
    layout
        .servers()
        .filter_map(|(_, s)| {
            let (backend, server) = s.config(cfg)?;
            let t = CheckTarget::new(s.id, backend, server, cfg.global.ssl_server_verify);
            (t.spec.is_some() || t.agent.is_some()).then_some(t)
        })
        .collect()
}

/// What the checkers report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckEvent {
    /// A health check, already applied to the server's state machine.
    Health(HealthEvent),
    /// An agent check, to apply: its admin and weight words first, then
    /// [`Checkers::apply_agent`].
    Agent(AgentEvent),
}

impl CheckEvent {
    pub fn server(&self) -> ServerId {
        match self {
            CheckEvent::Health(e) => e.server,
            CheckEvent::Agent(e) => e.server,
        }
    }
}

/// One finished health check, applied to its server's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub server: ServerId,
    /// Status, code, info and duration.
    pub result: CheckResult,
    /// What the state machine made of it: whether to log it, the server's UP/DOWN
    /// transition, the counter to print.
    pub outcome: Outcome,
}

/// One finished agent check, not applied yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEvent {
    pub server: ServerId,
    pub report: AgentReport,
}

/// Shared between a server's tasks and the [`Checkers`] handle.
struct Shared {
    state: Mutex<CheckerState>,
    /// Bumped at every maintenance or enable change: the health task abandons a check under
    /// way, and a result of a check started before the change is dropped.
    control: watch::Sender<u64>,
    /// `observe` found errors: the next check comes after `fastinter` at the latest, if set
    /// (HAProxy's `__health_adjust` wakes the check task for every `on-error`).
    hurry: Notify,
}

struct CheckerState {
    /// The health check's counter, and maintenance.
    health: Health,
    /// A health check is configured (`check`).
    checked: bool,
    last: Option<CheckResult>,
    /// `enable health`/`disable health` (HAProxy's CHK_ST_ENABLED).
    enabled: bool,
    agent: Option<AgentState>,
}

struct AgentState {
    health: AgentHealth,
    last: Option<CheckResult>,
}

impl CheckerState {
    fn paused(&self) -> bool {
        self.health.in_maintenance() || !self.enabled
    }

    /// The server is UP as far as its checks go.
    fn server_up(&self) -> bool {
        !self.health.in_maintenance()
            && (!self.checked || !self.enabled || self.health.is_up())
            && self.agent.as_ref().is_none_or(|a| a.health.is_up())
    }

    /// The server's operational state as its checks see it.
    fn server_op(&self) -> Op {
        if !self.server_up() {
            Op::Down
        } else if self.checked && self.enabled && self.health.is_stopping() {
            Op::Stopping
        } else {
            Op::Running
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CheckerState> {
        // The critical sections cannot panic halfway; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.control.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// The running checkers. Dropping it stops them.
pub struct Checkers {
    by_server: BTreeMap<ServerId, Arc<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the checker tasks of the targets (needs a tokio runtime). Results arrive on
/// `events`; when its receiver is gone the tasks end.
///
/// First checks are spread like HAProxy's `start_checks`: the n-th of N checks (health and
/// agent checks, in order) starts after `max(mininter, its interval) * n / N`, `mininter`
/// being the smallest initial interval of at least one second among them.
pub fn spawn_checkers(targets: Vec<CheckTarget>, events: mpsc::Sender<CheckEvent>) -> Checkers {
    const INTER_THRESHOLD: Duration = Duration::from_millis(1000);
    let first_intervals: Vec<Duration> = targets
        .iter()
        .flat_map(|t| {
            let check = t
                .spec
                .as_ref()
                .map(|_| t.health.next_interval(&t.intervals));
            let agent = t.agent.as_ref().map(|a| a.budget.inter);
            check.into_iter().chain(agent)
        })
        .collect();
    let count = first_intervals.len() as u32;
    let mininter = first_intervals
        .iter()
        .copied()
        .filter(|&i| i >= INTER_THRESHOLD)
        .min()
        .unwrap_or_default();
    let mut starts = first_intervals
        .into_iter()
        .enumerate()
        .map(|(pos, own)| mininter.max(own).min(MAX_WAIT) * pos as u32 / count.max(1));
    let mut by_server = BTreeMap::new();
    let mut tasks = Vec::new();
    for t in targets {
        let (control, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            hurry: Notify::new(),
            state: Mutex::new(CheckerState {
                health: t.health,
                checked: t.spec.is_some(),
                last: None,
                enabled: true,
                agent: t.agent.as_ref().map(|_| AgentState {
                    health: AgentHealth::new(),
                    last: None,
                }),
            }),
            control,
        });
        by_server.insert(t.id, shared.clone());
        if let Some(spec) = t.spec {
            let first = starts.next().unwrap_or_default();
            tasks.push(tokio::spawn(check_loop(
                t.id,
                shared,
                Prober::new(&spec),
                t.intervals,
                first,
                events.clone(),
            )));
        }
        if let Some(agent) = t.agent {
            let first = starts.next().unwrap_or_default();
            tasks.push(tokio::spawn(agent_loop(t.id, agent, first, events.clone())));
        }
    }
    Checkers { by_server, tasks }
}

async fn check_loop(
    id: ServerId,
    shared: Arc<Shared>,
    prober: Prober,
    intervals: Intervals,
    first: Duration,
    events: mpsc::Sender<CheckEvent>,
) {
    let mut control = shared.control.subscribe();
    let mut next = after(Instant::now(), first);
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shared.hurry.notified() => {
                // As HAProxy, which wakes the check only when `fastinter` is set (without
                // it the transitional interval is `inter`, the one already running).
                if let Some(fast) = intervals.fastinter {
                    next = next.min(after(Instant::now(), fast));
                }
                continue;
            }
        }
        let generation = *control.borrow_and_update();
        let (paused, up) = {
            let st = shared.lock();
            (st.paused(), st.server_op() != Op::Down)
        };
        if paused {
            // HAProxy keeps a paused check's task ticking every `inter`; the first check
            // after maintenance comes at the next tick.
            next = after(next, intervals.inter);
            continue;
        }
        let result = tokio::select! {
            r = prober.run(up) => r,
            _ = control.changed() => {
                // Maintenance or disable while checking: abandon this check.
                next = Instant::now();
                continue;
            }
        };
        let (reported, interval) = {
            let mut st = shared.lock();
            let mut reported = Vec::new();
            if !st.paused() && *shared.control.borrow() == generation {
                let mut apply = |result: CheckResult| {
                    let before = st.server_op();
                    let mut outcome = st.health.on_result(result.status);
                    outcome.transition = before.to(st.server_op());
                    st.last = Some(result.clone());
                    reported.push(CheckEvent::Health(HealthEvent {
                        server: id,
                        result,
                        outcome,
                    }));
                };
                let again = result.twice.then(|| CheckResult {
                    info: String::new(),
                    twice: false,
                    ..result.clone()
                });
                apply(result);
                if let Some(r) = again {
                    apply(r);
                }
            }
            (reported, st.health.next_interval(&intervals))
        };
        for ev in reported {
            if events.send(ev).await.is_err() {
                return;
            }
        }
        next = after(Instant::now(), interval);
    }
}

async fn agent_loop(
    id: ServerId,
    spec: AgentSpec,
    first: Duration,
    events: mpsc::Sender<CheckEvent>,
) {
    let mut next = after(Instant::now(), first);
    loop {
        sleep_until(next).await;
        let report = run_agent(&spec).await;
        let ev = CheckEvent::Agent(AgentEvent { server: id, report });
        if events.send(ev).await.is_err() {
            return;
        }
        next = after(Instant::now(), spec.budget.inter);
    }
}

impl Checkers {
    /// The server has a health check (`check`).
    pub fn is_checked(&self, id: ServerId) -> bool {
        self.by_server.get(&id).is_some_and(|s| s.lock().checked)
    }

    /// The server has an agent check (`agent-check`).
    pub fn has_agent(&self, id: ServerId) -> bool {
        self.by_server
            .get(&id)
            .is_some_and(|s| s.lock().agent.is_some())
    }

    /// A copy of the health check's state machine (for `show stat`: counter, status).
    pub fn health(&self, id: ServerId) -> Option<Health> {
        let st = self.by_server.get(&id)?.lock();
        st.checked.then(|| st.health.clone())
    }

    /// The last health check's result (`show stat`'s check_status, check_code,
    /// check_duration, check_desc).
    pub fn last_result(&self, id: ServerId) -> Option<CheckResult> {
        self.by_server.get(&id).and_then(|s| s.lock().last.clone())
    }

    /// The last agent check's result.
    pub fn last_agent_result(&self, id: ServerId) -> Option<CheckResult> {
        let st = self.by_server.get(&id)?.lock();
        st.agent.as_ref()?.last.clone()
    }

    /// Whether the checks want the server UP (`None` for a server without checks, which is
    /// UP unless in maintenance).
    pub fn server_up(&self, id: ServerId) -> Option<bool> {
        Some(self.by_server.get(&id)?.lock().server_up())
    }

    /// Whether the checks hold the server in NOLB (`http-check disable-on-404`).
    pub fn server_stopping(&self, id: ServerId) -> bool {
        self.by_server
            .get(&id)
            .is_some_and(|s| s.lock().server_op() == Op::Stopping)
    }

    /// Maintenance starts (`disable server`, `set server ... state maint`, an agent's
    /// `maint`): health checks pause, one under way is abandoned, the counter drops to 0.
    /// Returns whether the server was UP; `None` for an unchecked server or one already in
    /// maintenance.
    pub fn enter_maintenance(&self, id: ServerId) -> Option<bool> {
        let shared = self.by_server.get(&id)?;
        let was_up = {
            let mut st = shared.lock();
            let up = st.server_up();
            st.health.enter_maintenance().map(|_| up)
        };
        if was_up.is_some() {
            shared.bump();
        }
        was_up
    }

    /// Maintenance ends: health checks resume at the task's next tick, with the counter at
    /// `rise` (so the server is UP again, unless its agent says DOWN). Returns whether it was
    /// in maintenance.
    pub fn leave_maintenance(&self, id: ServerId) -> bool {
        let Some(shared) = self.by_server.get(&id) else {
            return false;
        };
        let left = shared.lock().health.leave_maintenance();
        if left {
            shared.bump();
        }
        left
    }

    /// `set server B/S health up|down`. A check under way still counts afterwards, as in
    /// HAProxy.
    pub fn force(&self, id: ServerId, up: bool) -> Option<Transition> {
        let mut st = self.by_server.get(&id)?.lock();
        if !st.checked {
            return None;
        }
        st.health.force(up)
    }

    /// Health checks are not `disable health`d (HAProxy's CHK_ST_ENABLED); false when
    /// unchecked.
    pub fn is_enabled(&self, id: ServerId) -> bool {
        self.by_server.get(&id).is_some_and(|s| {
            let st = s.lock();
            st.checked && st.enabled
        })
    }

    /// `enable health`/`disable health`: pauses or resumes the health checks without
    /// touching the server's state.
    pub fn set_enabled(&self, id: ServerId, enabled: bool) {
        if let Some(shared) = self.by_server.get(&id) {
            let changed = std::mem::replace(&mut shared.lock().enabled, enabled) != enabled;
            if changed {
                shared.bump();
            }
        }
    }

    /// `observe layer4` saw `error-limit` refusals in a row (`info` says how many): applies
    /// the server's `on-error` to its health checks as HAProxy's `__health_adjust` does, and
    /// brings its next check forward. Returns the verdict to log and apply, as a check's
    /// (`None`: not checked, paused, or `on-error fastinter`).
    pub fn analyze(
        &self,
        id: ServerId,
        on_error: OnError,
        info: String,
    ) -> Option<(CheckResult, Outcome)> {
        let shared = self.by_server.get(&id)?;
        let mut st = shared.lock();
        if !st.checked || st.paused() {
            return None;
        }
        shared.hurry.notify_one();
        let before = st.server_op();
        let mut outcome = st.health.on_analyze(on_error)?;
        outcome.transition = before.to(st.server_op());
        let result = CheckResult::new(CheckStatus::Hana, Duration::ZERO).with_info(info);
        st.last = Some(result.clone());
        Some((result, outcome))
    }

    /// Applies an agent check's verdict (once its admin and weight words were applied):
    /// whether to log its `Agent check` line, the server's UP/DOWN transition, and the
    /// agent's counter to print. `None` for a server without an agent.
    pub fn apply_agent(&self, id: ServerId, report: &AgentReport) -> Option<Outcome> {
        let mut st = self.by_server.get(&id)?.lock();
        let before = st.server_op();
        let agent = st.agent.as_mut()?;
        let log = agent.health.on_result(report.verdict);
        if report.verdict != AgentVerdict::Ignored {
            agent.last = Some(report.result.clone());
        }
        let health = agent.health.snapshot();
        Some(Outcome {
            log,
            transition: before.to(st.server_op()),
            health,
        })
    }

    /// Stops every checker and waits for them to end.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{agent::AgentAdmin, state::CheckStatus};

    #[test]
    fn targets_are_the_checked_servers_with_their_layout_ids() {
        let c = crate::config::native::parse(
            "t.toml",
            r#"
[defaults]
timeout = { connect = "5s", check = "2s" }
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b2"
[backend.b1]
server = [{ name = "a", address = "10.0.2.1:53" }]
[backend.b2]
http_check = { method = "GET", uri = "/h", version = "HTTP/1.0" }
server = [
  { name = "w1", address = "10.0.1.1:80", check = true, inter = "3000", fastinter = "1s" },
  { name = "w2", address = "10.0.1.2:80", check = true, port = 8080, disabled = true },
  { name = "w3", address = "10.0.1.3:80", agent_check = true, agent_port = 9001 },
]
"#,
        )
        .expect("parses");
        let layout = Layout::new(&c);
        let t = targets(&layout, &c);
        let ids: Vec<ServerId> = t.iter().map(|t| t.id).collect();
        assert_eq!(ids, [ServerId(1), ServerId(2), ServerId(3)]);
        let names: Vec<_> = ids
            .iter()
            .filter_map(|&id| layout.server(id))
            .map(|(_, s)| s.name.as_str())
            .collect();
        assert_eq!(names, ["w1", "w2", "w3"]);
        let s0 = t[0].spec.as_ref().expect("checked");
        assert_eq!(s0.addr, "10.0.1.1:80".parse().expect("addr"));
        assert_eq!(s0.budget.timeout_check, Some(Duration::from_secs(2)));
        assert_eq!(t[0].intervals.fastinter, Some(Duration::from_secs(1)));
        assert!(t[1].health.in_maintenance());
        assert!(t[2].spec.is_none() && t[2].agent.is_some());
    }

    fn report(verdict: AgentVerdict, status: CheckStatus) -> AgentReport {
        AgentReport {
            admin: None::<AgentAdmin>,
            weight: None,
            verdict,
            result: CheckResult::new(status, Duration::ZERO),
        }
    }

    #[tokio::test]
    async fn agent_and_health_check_both_decide() {
        let c = crate::config::native::parse(
            "t.toml",
            r#"
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b"
[backend.b]
# The agent-only server first: its agent check runs at once (its result is reported, not
# applied); w's checks come a third and two thirds of an hour later, after this test.
server = [
  { name = "a", address = "127.0.0.1:1", inter = "1h", agent_check = true, agent_port = 1 },
  { name = "w", address = "127.0.0.1:1", check = true, inter = "1h", agent_check = true, agent_port = 1, agent_inter = "1h" },
]
"#,
        )
        .expect("parses");
        let layout = Layout::new(&c);
        let (tx, _rx) = mpsc::channel(16);
        let checkers = spawn_checkers(targets(&layout, &c), tx);
        let (a, w) = (ServerId(0), ServerId(1));
        assert!(checkers.is_checked(w) && checkers.has_agent(w));
        assert!(!checkers.is_checked(a) && checkers.has_agent(a));
        assert_eq!(checkers.health(a), None);
        assert_eq!(checkers.force(a, false), None);

        // An unreachable agent logs, and never takes the server down.
        let out = checkers
            .apply_agent(
                w,
                &report(AgentVerdict::Failed(CheckStatus::L4Con), CheckStatus::L4Con),
            )
            .expect("agent");
        assert_eq!((out.log, out.transition), (true, None));
        assert_eq!(out.health.status_text(1), "1/1 UP");
        // `down` does.
        let out = checkers
            .apply_agent(w, &report(AgentVerdict::Down, CheckStatus::L7Sts))
            .expect("agent");
        assert_eq!((out.log, out.transition), (true, Some(Transition::Down)));
        assert_eq!(out.health.status_text(1), "0/1 DOWN");
        assert_eq!(checkers.server_up(w), Some(false));
        // Leaving maintenance does not bring it back while the agent says DOWN...
        assert_eq!(checkers.enter_maintenance(w), Some(false));
        assert!(checkers.leave_maintenance(w));
        assert_eq!(checkers.server_up(w), Some(false));
        // ...its `up` does, the health check being UP.
        let out = checkers
            .apply_agent(w, &report(AgentVerdict::Up, CheckStatus::L7Ok))
            .expect("agent");
        assert_eq!(out.transition, Some(Transition::Up));
        // A neutral reply changes and logs nothing.
        let out = checkers
            .apply_agent(w, &report(AgentVerdict::Neutral, CheckStatus::L7Ok))
            .expect("agent");
        assert_eq!((out.log, out.transition), (false, None));
        // A forced DOWN health check holds the server down whatever the agent says.
        assert_eq!(checkers.force(w, false), Some(Transition::Down));
        assert_eq!(checkers.server_up(w), Some(false));
        let out = checkers
            .apply_agent(w, &report(AgentVerdict::Up, CheckStatus::L7Ok))
            .expect("agent");
        assert_eq!(out.transition, None);
        // An agent-only server follows its agent.
        let out = checkers
            .apply_agent(a, &report(AgentVerdict::Down, CheckStatus::L7Sts))
            .expect("agent");
        assert_eq!(out.transition, Some(Transition::Down));
        assert_eq!(checkers.server_up(ServerId(7)), None);
        checkers.shutdown().await;
    }
}
