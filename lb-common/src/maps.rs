//! Map keys, values, names and sizes: the contract between the data plane and the daemon.
//!
//! Vocabulary (HAProxy's, so the config reads the same as the maps):
//! - a **service** is one listening VIP:port/protocol of a frontend (`bind`);
//! - a **pool** is a HAProxy `backend`: the servers a service balances over;
//! - a **server** is one real server of a pool.
//!
//! Pool tables are double-buffered: each pool owns two slots of [`TABLE_SIZE`] server ids in
//! [`MAP_TABLES`]. The daemon fills the idle slot, then publishes it by rewriting the pool's
//! [`TableDesc`], a single aligned `u32`, so a packet sees either the old table or the new one,
//! never a mix.

/// Map names, as declared in the XDP object and pinned under the instance's bpffs directory.
pub const MAP_SERVICES: &str = "LB_SERVICES";
pub const MAP_POOLS: &str = "LB_POOLS";
pub const MAP_POOL_RR: &str = "LB_POOL_RR";
pub const MAP_TABLES: &str = "LB_TABLES";
pub const MAP_SERVERS: &str = "LB_SERVERS";
/// Per server: how many full-NAT source ports were handed out (see `flow::snat_port`).
pub const MAP_SNAT_CURSOR: &str = "LB_SNAT_CURSOR";
pub const MAP_FLOWS: &str = "LB_FLOWS";
pub const MAP_SETTINGS: &str = "LB_SETTINGS";
/// New-flow events for `option tcplog` (a ring buffer; not pinned: it belongs to the daemon
/// reading it).
pub const MAP_EVENTS: &str = "LB_EVENTS";
pub const MAP_SERVER_STATS: &str = "LB_SERVER_STATS";
pub const MAP_FRONTEND_STATS: &str = "LB_FRONTEND_STATS";
pub const MAP_REASON_STATS: &str = "LB_REASON_STATS";
/// See [`crate::ports`].
pub const MAP_PORTS: &str = "LB_PORTS";

/// Every map the daemon pins, in a stable order.
pub const PINNED_MAPS: [&str; 13] = [
    MAP_SERVICES,
    MAP_POOLS,
    MAP_POOL_RR,
    MAP_TABLES,
    MAP_SERVERS,
    MAP_SNAT_CURSOR,
    MAP_FLOWS,
    MAP_SETTINGS,
    MAP_SERVER_STATS,
    MAP_FRONTEND_STATS,
    MAP_REASON_STATS,
    MAP_SERVER_META,
    MAP_PORTS,
];

/// Program names in the XDP object.
pub const PROG_LB: &str = "lb_xdp";
/// An empty `XDP_PASS` program: the benchmark floor, and the program tests put on veth peers.
pub const PROG_PASS: &str = "xdp_pass";

pub const MAX_SERVICES: u32 = 1024;
pub const MAX_FRONTENDS: u32 = 256;
pub const MAX_POOLS: u32 = 64;
pub const MAX_SERVERS: u32 = 4096;
/// Entries per table slot: bounds the sum of (reduced) weights of one pool.
pub const TABLE_SIZE: u32 = 4096;
/// Default connection-tracking capacity in flows; `LB_FLOWS` holds two entries per flow (one
/// per direction). The daemon sizes it from the config at load time.
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `LB_SERVICES` key: a VIP, port and L4 protocol. `addr == 0` is a wildcard bind (`*:80`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Network byte order.
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// `LB_SERVICES` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Index into `LB_POOLS`, `LB_POOL_RR` and the pool's slots in `LB_TABLES`.
    pub pool: u32,
    /// Index into `LB_FRONTEND_STATS`.
    pub frontend: u32,
}

/// Pool flag: rewrite only the destination (backends route replies through the LB).
pub const POOL_F_DNAT: u32 = 1 << 0;
/// Pool flag: when no server is available, pass VIP traffic to the local stack instead of
/// dropping it.
pub const POOL_F_EMPTY_PASS: u32 = 1 << 1;
/// Pool flag: `option redispatch`. A server that refuses a new connection (RST to the SYN)
/// gets its RST held back, and the client's retransmitted SYN goes to another server, up to
/// the pool's `retries` times per connection (see `flow::refusal`).
pub const POOL_F_REDISPATCH: u32 = 1 << 2;
/// Bits 8..16 of the pool flags: `retries`, capped at 255.
pub const POOL_RETRIES_SHIFT: u32 = 8;

/// `LB_POOLS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolInfo {
    /// The published table, see [`TableDesc`]. Written by the daemon as one aligned store.
    pub table: u32,
    /// `POOL_F_*`.
    pub flags: u32,
}

/// Which table slot of a pool is live and how many entries it holds, packed in one `u32` so
/// that publishing a new table is a single atomic store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableDesc {
    pub slot: u32,
    pub len: u32,
}

impl TableDesc {
    const SLOT_BIT: u32 = 1 << 31;

    #[inline(always)]
    pub const fn pack(self) -> u32 {
        ((self.slot & 1) * Self::SLOT_BIT) | (self.len & !Self::SLOT_BIT)
    }

    #[inline(always)]
    pub const fn unpack(raw: u32) -> TableDesc {
        TableDesc {
            slot: raw >> 31,
            len: raw & !Self::SLOT_BIT,
        }
    }
}

/// Index into `LB_TABLES` of entry `i` of `slot` of `pool`.
#[inline(always)]
pub const fn table_index(pool: u32, slot: u32, i: u32) -> u32 {
    (pool * 2 + (slot & 1)) * TABLE_SIZE + i
}

/// Server state as the data plane sees it.
pub const SERVER_GONE: u8 = 0;
/// Existing flows keep going to the server (UP, or draining). Whether it takes *new* flows is
/// decided by its presence in the pool's table, not by this flag.
pub const SERVER_ACTIVE: u8 = 1;

/// Where to send a rewritten packet: egress interface and MACs, as `bpf_fib_lookup` found
/// them. Cached by the data plane so the FIB is consulted once per server (forward direction)
/// or once per flow (replies) per epoch, not per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// 0: nothing cached.
    pub ifindex: u32,
    /// Valid while equal to `Settings::fib_epoch`; the daemon bumps the epoch periodically
    /// and on route or neighbour changes.
    pub epoch: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

/// `LB_SERVERS` value, indexed by server id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Network byte order.
    pub addr: u32,
    /// Full-NAT source: the LB's own address on the path to this server (network byte order).
    pub snat_addr: u32,
    /// Network byte order.
    pub port: u16,
    /// `SERVER_GONE` or `SERVER_ACTIVE`.
    pub state: u8,
    pub _pad: u8,
    pub pool: u32,
    /// Next hop towards the server; written by the data plane, reset by every daemon write.
    pub nh: NextHop,
}

/// A 5-tuple as it appears in a packet: the key of `LB_FLOWS` for both directions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    // Scalar padding: zeroing a byte array makes LLVM call a (slow) memset in BPF.
    pub _pad: u8,
    pub _pad2: u16,
}

impl FlowKey {
    /// Addresses and ports in network byte order.
    #[inline(always)]
    pub const fn new(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }
}

/// This entry is the server -> client direction of a flow.
pub const FLOW_F_REPLY: u16 = 1 << 0;
/// A FIN or RST went by: on a forward entry (from the client), the next SYN on this tuple
/// starts a new flow; on a reply entry (from the server), full-NAT may give its source port to
/// another client once `SNAT_REUSE_SECS` have passed.
pub const FLOW_F_CLOSING: u16 = 1 << 1;
/// The flow began with a SYN and the server has not accepted it yet (no SYN-ACK seen on the
/// reply entry): an RST from the server now means the connection was refused.
pub const FLOW_F_SYN_SENT: u16 = 1 << 2;
/// Forward entry: the server refused this connection; the client's next SYN is balanced
/// afresh, away from that server.
pub const FLOW_F_REFUSED: u16 = 1 << 3;
/// Bits 8..16 of a flow's flags: how many times servers refused this connection so far.
pub const FLOW_ATTEMPTS_SHIFT: u16 = 8;
pub const FLOW_ATTEMPTS_MASK: u16 = 0xff << FLOW_ATTEMPTS_SHIFT;

/// How long a full-NAT source port rests after its flow closed before it goes to another
/// client. The server keeps the tuple in TIME_WAIT for 60 s, and a new SYN on it from a
/// client with other TCP timestamps or sequence numbers would be refused; Linux's own NAT
/// (conntrack) waits 120 s for the same reason.
pub const SNAT_REUSE_SECS: u32 = 60;

/// `LB_FLOWS` value. One LRU table holds both directions of every flow so that any tracked
/// packet, whichever way it goes, costs one lookup; the entry says what to rewrite the packet
/// to, so the hot path needs no other lookup to do it.
///
/// - forward entry (key: client -> VIP): rewrite to `src:sport` (full-NAT source, or the
///   client itself in DNAT) -> `dst:dport` (the server);
/// - reply entry (key: server -> LB or client): rewrite to VIP -> client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// `FLOW_F_*`.
    pub flags: u16,
    pub server: u16,
    pub frontend: u16,
    pub pool: u16,
    /// Replies only: next hop towards the client (forward packets use the server's).
    pub nh: NextHop,
    /// Reply entries: when the server closed the flow (CLOCK_MONOTONIC seconds), for the
    /// full-NAT port reuse guard.
    pub closed_at: u32,
}

impl Flow {
    #[inline(always)]
    pub const fn is_reply(&self) -> bool {
        self.flags & FLOW_F_REPLY != 0
    }

    /// For a reply entry (which rewrites to VIP -> client): the key of its forward entry.
    #[inline(always)]
    pub const fn forward_key(&self, proto: u8) -> FlowKey {
        FlowKey::new(self.dst, self.src, self.dport, self.sport, proto)
    }
}

/// Global settings, `LB_SETTINGS[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Full-NAT source ports are taken from `snat_port_min..=snat_port_max` (host order).
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// `SETTINGS_F_*`.
    pub flags: u32,
    /// Cached next hops are valid while their epoch equals this.
    pub fib_epoch: u32,
}

/// Some service binds `*`: look up the wildcard key when the exact VIP misses.
pub const SETTINGS_F_WILDCARD: u32 = 1 << 0;
/// Some frontend has `option tcplog`: report new flows in `LB_EVENTS`. Off, it costs one
/// branch on a value already loaded.
pub const SETTINGS_F_LOG_FLOWS: u32 = 1 << 1;

/// The flow was moved from a server that left (`option redispatch`).
pub const EVENT_F_REDISPATCHED: u8 = 1 << 0;

/// `LB_EVENTS` record: a new flow and where it went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// Network byte order.
    pub client: u32,
    pub vip: u32,
    pub client_port: u16,
    pub vip_port: u16,
    pub server: u16,
    pub frontend: u16,
    pub proto: u8,
    /// `EVENT_F_*`.
    pub flags: u8,
    pub _pad: u16,
}

/// `LB_SERVER_META`: what only people read. The data plane never touches it; it lives in the
/// object so it is pinned with the rest and `lb show` works without the daemon.
pub const MAP_SERVER_META: &str = "LB_SERVER_META";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_entry_names_its_forward_entry() {
        // Client 10.0.0.2:40000 -> VIP 10.0.0.1:80; the reply entry rewrites to VIP -> client.
        let (client, vip) = (
            u32::from_be_bytes([10, 0, 0, 2]),
            u32::from_be_bytes([10, 0, 0, 1]),
        );
        let reply = Flow {
            src: vip.to_be(),
            dst: client.to_be(),
            sport: 80u16.to_be(),
            dport: 40000u16.to_be(),
            flags: FLOW_F_REPLY,
            ..Flow::default()
        };
        assert_eq!(
            reply.forward_key(PROTO_TCP),
            FlowKey::new(
                client.to_be(),
                vip.to_be(),
                40000u16.to_be(),
                80u16.to_be(),
                PROTO_TCP
            )
        );
    }
}
