//! The runtime API (HAProxy's stats socket).
//!
//! - [`cli`]: the socket's text protocol and commands, pure;
//! - [`stats`]: `show stat`, `show servers state`, `show info`, pure.
pub mod cli;
pub mod stats;
