//! Health checks with HAProxy's semantics: the state machine (pure) and the checkers (I/O).
//!
//! Wiring (see `tests/health_logs_wiring.rs` for a runnable version):
//! 1. at start, `spawn_checkers(check::targets(&layout, &cfg), tx)` with a bounded
//!    `mpsc::channel::<CheckEvent>`; events name servers by the layout's `ServerId`;
//!    servers without `check` get no checker and stay UP;
//!    `disabled` servers start in maintenance, checks paused;
//! 2. for every [`CheckEvent`]: count the backend's usable servers, apply
//!    `event.outcome.transition` to the server's state (UP/DOWN) and the maps, count again,
//!    and send each line of [`crate::logs::check_event_lines`] with `logger.log(&line)`;
//! 3. the CLI goes through [`Checkers`]: `enter_maintenance`/`leave_maintenance` (pause and
//!    resume checks, with the state machine's effect), `force` (`set server ... health`),
//!    `set_enabled` (`disable/enable health`); `health`/`last_result` feed `show stat`;
//! 4. at exit, `checkers.shutdown().await`.
pub mod check;
pub mod state;

pub use check::{
    CheckEvent, CheckSpec, CheckTarget, Checkers, Probe, run_check, spawn_checkers, targets,
};
pub use state::{CheckResult, CheckStatus, Health, Intervals, Outcome, Snapshot, Transition};
