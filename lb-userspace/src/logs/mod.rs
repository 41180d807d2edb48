//! HAProxy-style log lines (pure formatting) and their transport (syslog, stderr).
pub mod format;

pub use format::{
    CheckEventLog, Counts, Flavor, LogLine, ServerName, Sessions, Why, check_event_lines,
};
