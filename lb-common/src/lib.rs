//! Shared between the XDP program (`lb-ebpf`) and the daemon (`lb-userspace`).
//!
//! Everything here is `no_std` and free of I/O so that the logic the data plane relies on
//! (checksums, the flow lifecycle, round-robin slot choice, source-port allocation) is
//! unit-tested on the host.
//!
//! Byte order: every address and port stored in a map is in **network byte order**, exactly as
//! it sits in the packet, so the data plane never swaps bytes on the fast path.
#![no_std]

pub mod access;
pub mod addr;
pub mod balance;
pub mod bench;
pub mod clock;
pub mod conntrack;
pub mod csum;
pub mod flow;
pub mod flow_cache;
pub mod maglev;
pub mod maps;
pub mod pool;
pub mod ports;
pub mod server;
pub mod service;
pub mod settings;
pub mod stats;
pub mod trace;

#[cfg(feature = "user")]
mod pod;

pub use access::*;
pub use addr::{Addr6, addr6_from_octets, addr6_octets};
pub use conntrack::{State, Timeouts};
pub use flow::*;
pub use flow_cache::{CachedFlow, FLOW_CACHE_SLOTS, FLOW_CACHE_TTL, FLOW_CACHE_TTL_MS};
pub use maglev::{MAGLEV_CAP, MAGLEV_RINGS, MaglevTable, maglev_index};
pub use maps::*;
pub use pool::*;
pub use ports::{PortFilter, PortSide};
pub use server::*;
pub use service::*;
pub use settings::*;
pub use stats::{Counters, Reason};
pub use trace::TraceRecord;
