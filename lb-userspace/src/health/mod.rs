//! Health checks with HAProxy's semantics: the state machine (pure) and the checkers (I/O).
pub mod state;

pub use state::{CheckResult, CheckStatus, Health, Intervals, Outcome, Snapshot, Transition};
