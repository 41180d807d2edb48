//! HAProxy-style log lines (pure formatting) and their transport (syslog, stderr).
pub mod format;
pub mod syslog;
pub mod tcplog;
pub mod time;

pub use format::{
    CheckEventLog, Counts, Flavor, LogLine, ServerName, Sessions, Why, check_event_lines,
};
pub use syslog::Logger;
pub use time::LogTime;
