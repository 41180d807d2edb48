//! Servers: what a new flow needs to reach one (`LB_SERVERS`), and what only people read
//! (`LB_SERVER_META`: names and operator-facing state, pinned so `lb show` works without the
//! daemon and a restarted daemon finds every server where it was).
use crate::{addr::Addr6, flow::NextHop};

/// `LB_SERVERS` (IPv4 servers) and `LB6_SERVERS` (IPv6 servers) value, indexed by server
/// slot: a slot is one server, of one family, and only its family's map holds it. Read when a
/// new flow picks the server; a tracked flow carries its own rewrite and next hop, and reads
/// only `addr` and `nh` here, when its own hop went stale (see `lb-ebpf/src/forward.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerInfoOf<A> {
    /// Network byte order.
    pub addr: A,
    /// Full-NAT source: the LB's own address on the path to this server (network byte order).
    pub snat_addr: A,
    /// Network byte order.
    pub port: u16,
    pub _pad: u16,
    /// Pool slot.
    pub pool: u32,
    /// At most this many active flows (`LB_ACTIVE`), while a slow start ramps it less; 0: no
    /// limit. Read only in pools with `POOL_F_MAXCONN` and by `first`.
    pub maxconn: u32,
    pub _pad2: u32,
    /// Next hop towards the server, refreshed by the data plane; new flows start with it, and
    /// flows to `addr` whose own went stale take it again. The daemon writes it zeroed.
    pub nh: NextHop,
}

pub type ServerInfo = ServerInfoOf<u32>;
pub type ServerInfo6 = ServerInfoOf<Addr6>;

pub const NAME_LEN: usize = 32;

/// Operator-facing server state, as HAProxy names it.
pub const META_STATE_UNUSED: u8 = 0;
pub const META_STATE_UP: u8 = 1;
pub const META_STATE_DOWN: u8 = 2;
pub const META_STATE_DRAIN: u8 = 3;
pub const META_STATE_MAINT: u8 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerMeta {
    /// NUL-padded names.
    pub backend: [u8; NAME_LEN],
    pub server: [u8; NAME_LEN],
    /// `META_STATE_*`.
    pub state: u8,
    pub backup: u8,
    pub weight: u16,
    /// The daemon's pid, so readers can tell stale pins from a live instance.
    pub pid: u32,
    /// Seconds since the Unix epoch of the last state change.
    pub last_change: u64,
}

impl Default for ServerMeta {
    fn default() -> Self {
        ServerMeta {
            backend: [0; NAME_LEN],
            server: [0; NAME_LEN],
            state: META_STATE_UNUSED,
            backup: 0,
            weight: 0,
            pid: 0,
            last_change: 0,
        }
    }
}

/// Copies `s` into a NUL-padded name field, truncating on a character boundary.
pub fn name_field(s: &str) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let mut end = s.len().min(NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// The text of a NUL-padded name field.
pub fn name_str(field: &[u8; NAME_LEN]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    core::str::from_utf8(&field[..end]).unwrap_or("?")
}
