//! lb's control plane, as a library so tests and benchmarks drive the same code as the `lb`
//! binary. Where to look:
//! - [`config`]: the model and its two front ends (native TOML, haproxy.cfg), validation;
//! - [`dataplane`]: loading, pinning and attaching the XDP program, the map writer, the pool
//!   table builder;
//! - [`health`]: health checks, HAProxy's state machine kept pure;
//! - [`logs`]: HAProxy-style log lines and syslog transport;
//! - [`daemon`]: `lb run`, wiring config, data plane, health checks and logs together;
//! - [`show`]: `lb show`, reading the pinned maps directly;
//! - [`net`]: routes, addresses and sysctls from the host;
//! - [`api`]: the runtime API on the stats socket, metrics and the stats page;
//! - [`rlimit`]: the open-file limit the config needs;
//! - [`addr_text`]: addresses of either family as HAProxy prints them.
pub mod addr_text;
pub mod api;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod fuzzy;
pub mod health;
pub mod logs;
pub mod net;
pub mod rlimit;
pub mod show;
pub mod stop;
