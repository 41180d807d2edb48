//! HAProxy-style log lines (pure formatting) and their transport (syslog, stderr).
