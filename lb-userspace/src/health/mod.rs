//! Health checks with HAProxy's semantics: the state machine (pure) and the checkers (I/O).
pub mod check;
pub mod state;

pub use check::{CheckEvent, CheckSpec, CheckTarget, Checkers, Probe, run_check, spawn_checkers};
pub use state::{CheckResult, CheckStatus, Health, Intervals, Outcome, Snapshot, Transition};
