//! Health checks with HAProxy's semantics: the state machine (pure), what each check does
//! (pure), the checkers (I/O) and their scheduler.
//!
//! - [`state`]: HAProxy's health counter and check statuses, and the agent's state;
//! - [`spec`]: one check from the configuration: address, TLS, request, time budget;
//! - [`expect`]: `http-check expect`, the verdict on a response;
//! - [`run`]: how each check runs: [`http`] on reqwest for HTTP(S), [`raw`] on tokio sockets
//!   for connects and requests that must go out byte for byte, [`tls`] for rustls;
//! - [`agent`]: the agent protocol (`agent-check`);
//! - [`check`]: the tasks, and the [`Checkers`] handle.
//!
//! Wiring (see `tests/health_logs_wiring.rs` for a runnable version):
//! 1. at start, `spawn_checkers(check::targets(&layout, &cfg), tx)` with a bounded
//!    `mpsc::channel::<CheckEvent>`; events name servers by the layout's `ServerId`;
//!    servers without `check` or `agent-check` get no checker and stay UP;
//!    `disabled` servers start in maintenance, checks paused;
//! 2. for every [`CheckEvent::Health`]: count the backend's usable servers, apply
//!    `event.outcome.transition` to the server's state (UP/DOWN) and the maps, count again,
//!    and send each line of [`crate::logs::check_event_lines`] with `logger.log(&line)`;
//!    for every [`CheckEvent::Agent`]: apply its admin word and weight first, then
//!    [`Checkers::apply_agent`] gives the outcome to apply and log the same way;
//! 3. the CLI goes through [`Checkers`]: `enter_maintenance`/`leave_maintenance` (pause and
//!    resume checks, with the state machine's effect), `force` (`set server ... health`),
//!    `set_enabled` (`disable/enable health`); `health`/`last_result` feed `show stat`;
//! 4. at exit, `checkers.shutdown().await`.
pub mod agent;
pub mod check;
pub mod expect;
mod http;
mod raw;
pub mod run;
pub mod spec;
pub mod state;
mod tcp_check;
pub mod tcp_rules;
pub mod tls;

pub use agent::{AgentAdmin, AgentReport, run_agent};
pub use check::{
    AgentEvent, CheckEvent, CheckTarget, Checkers, HealthEvent, spawn_checkers, targets,
};
pub use run::{Prober, os_error_text, run_check};
pub use spec::{AgentSpec, Budget, CheckSpec, Phase, Probe, TlsSpec};
pub use state::{
    AgentHealth, AgentVerdict, CheckResult, CheckStatus, Health, Intervals, Outcome, Snapshot,
    Transition,
};
