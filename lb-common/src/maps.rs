//! Every map of the XDP object, declared once: the contract between the data plane and the
//! daemon.
//!
//! [`for_each_map!`] hands the whole table to a row macro of the caller's: lb-ebpf expands it
//! into the map definitions, lb-userspace into typed handles and the layout it checks pins
//! against, and this crate into [`MAPS`] and [`names`]. Adding a map or changing a key or
//! value type is one edit here, and both sides cannot disagree.
//!
//! Vocabulary (HAProxy's, so the config reads the same as the maps):
//! - a **service** is one listening VIP:port/protocol of a frontend (`bind`);
//! - a **pool** is a HAProxy `backend`: the servers a service balances over;
//! - a **server** is one real server of a pool; its **slot** is its index in the maps.
//!
//! Each row: `field NAME: Kind<Key, Value>[max entries] Keep version;`
//! - `Keep` says what losing the map's content costs, which decides what a daemon does when a
//!   pinned map does not match this build: `Config` maps are rebuilt from the config at every
//!   start (recreated silently), `Counters` restart from zero (recreated with a warning),
//!   `State` holds live connections (kept, or dropped only when the operator says so),
//!   `Private` maps are not pinned.
//! - `version` is bumped when a key or value keeps its size but changes meaning: it is part
//!   of the pin's file name, so a build never adopts a map it would misread.

/// Upper bounds of the fixed-size maps.
pub const MAX_SERVICES: u32 = 4096;
pub const MAX_FRONTENDS: u32 = 256;
pub const MAX_POOLS: u32 = 64;
pub const MAX_SERVERS: u32 = 4096;
/// `LB_ACTIVE`'s slot for the instance's total.
pub const ACTIVE_TOTAL: u32 = MAX_SERVERS;
/// Default connection-tracking capacity in flows; `LB_FLOWS` holds two entries per flow (one
/// per direction). The daemon sizes it (and the half-open table) from the config at load time.
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
/// Default half-open capacity, in flows: what a SYN flood can fill. Each half-open full-NAT
/// flow holds one of its server's source ports, so the table is kept well under a server's
/// port range (31,744 ports by default): however long a flood lasts, most ports stay free for
/// real clients, and the flood's own flows are evicted oldest first. Handshakes in flight at
/// 100k new connections/s and 50 ms RTT are 5,000.
pub const DEFAULT_HALFOPEN_ENTRIES: u32 = 8_192;
/// Bytes of the `option tcplog` event ring.
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// What a map's content is worth across restarts (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Config,
    Counters,
    State,
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Hash,
    LruHash,
    Array,
    PerCpuArray,
    RingBuf,
    /// Longest-prefix match; its key is a 32-bit prefix length then the row's key type.
    LpmTrie,
    /// Programs to tail-call, by index (values are program file descriptors).
    ProgArray,
}

/// One row of the table, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    /// As compiled; the daemon resizes the conntrack tables at load time.
    pub max_entries: u32,
    pub keep: Keep,
    pub version: u32,
}

/// Calls `$row! { ... }` with every map of the object (see the module documentation).
#[macro_export]
macro_rules! for_each_map {
    ($row:ident) => {
        $row! {
            /// VIP:port/protocol -> pool and frontend.
            services LB_SERVICES: Hash<$crate::ServiceKey, $crate::ServiceValue>
                [$crate::MAX_SERVICES] Config 2;
            /// Per pool slot: published table, flags, timeouts.
            pools LB_POOLS: Array<u32, $crate::PoolInfo>[$crate::MAX_POOLS] Config 2;
            /// Per pool slot: round-robin cursor; only the data plane writes it (atomic add),
            /// so the daemon's rewrites of `LB_POOLS` never reset it.
            pool_rr LB_POOL_RR: Array<u32, u64>[$crate::MAX_POOLS] State 1;
            /// Two table slots of server slots per pool, see `pool::table_index`.
            tables LB_TABLES: Array<u32, u32>
                [$crate::MAX_POOLS * 2 * $crate::TABLE_SIZE] Config 1;
            /// Two Maglev tables (double buffer) per hashing pool's ring, see `maglev`.
            maglev LB_MAGLEV: Array<u32, $crate::MaglevTable>[$crate::MAGLEV_RINGS * 2] Config 1;
            /// Per server slot: address, full-NAT source, next hop.
            servers LB_SERVERS: Array<u32, $crate::ServerInfo>[$crate::MAX_SERVERS] Config 3;
            /// Per server slot: its active flows (`conntrack::counts_as_active`), and in the last
            /// slot ([`ACTIVE_TOTAL`]) the instance's. The data plane adds and subtracts as
            /// flows confirm and close; the daemon recounts from the tables and corrects what
            /// that misses (evictions, idle expiry).
            active LB_ACTIVE: Array<u32, u64>[$crate::MAX_SERVERS + 1] State 1;
            /// Per server slot: connections refused in a row (an RST to the SYN; a SYN-ACK
            /// clears it), for `observe layer4` (HAProxy's `consecutive_errors`).
            refusals LB_REFUSALS: Array<u32, u64>[$crate::MAX_SERVERS] State 1;
            /// Per server slot: full-NAT source-port cursor (`balance::snat_port`).
            snat_cursor LB_SNAT_CURSOR: Array<u32, u64>[$crate::MAX_SERVERS] State 1;
            /// Confirmed flows, both directions (`conntrack`).
            flows LB_FLOWS: LruHash<$crate::FlowKey, $crate::Flow>
                [2 * $crate::DEFAULT_CONNTRACK_ENTRIES] State 3;
            /// Half-open flows, both directions: what a SYN flood can churn (`conntrack`).
            halfopen LB_HALFOPEN: LruHash<$crate::FlowKey, $crate::Flow>
                [2 * $crate::DEFAULT_HALFOPEN_ENTRIES] State 2;
            /// Ports a tracked packet can carry (`ports`).
            ports LB_PORTS: Array<u32, u64>[$crate::ports::PORT_FILTER_WORDS] Config 1;
            /// `LB_SETTINGS[0]`.
            settings LB_SETTINGS: Array<u32, $crate::Settings>[1] Config 3;
            /// Per server slot, per CPU: traffic counters.
            server_stats LB_SERVER_STATS: PerCpuArray<u32, $crate::Counters>
                [$crate::MAX_SERVERS] Counters 1;
            /// Per frontend, per CPU: traffic counters.
            frontend_stats LB_FRONTEND_STATS: PerCpuArray<u32, $crate::Counters>
                [$crate::MAX_FRONTENDS] Counters 1;
            /// Per `Reason`, per CPU: why packets were passed or dropped.
            reason_stats LB_REASON_STATS: PerCpuArray<u32, u64>[$crate::Reason::COUNT] Counters 6;
            /// Per server slot: names and operator-facing state; never read by the program.
            meta LB_SERVER_META: Array<u32, $crate::ServerMeta>[$crate::MAX_SERVERS] State 1;
            /// Per CPU: working memory the stack cannot spare (a new flow's entries, the FIB
            /// lookup's parameters, the port search's state).
            scratch LB_SCRATCH: PerCpuArray<u32, $crate::Scratch>[1] Private 2;
            /// `tcp-request connection` rules: frontend, port and client prefix -> accept or
            /// reject (`access`).
            access LB_ACCESS: LpmTrie<$crate::AccessKey, u32>[$crate::MAX_ACCESS_ENTRIES] Config 1;
            /// IPv6 VIP:port/protocol -> pool (of IPv6 servers) and frontend.
            services6 LB6_SERVICES: Hash<$crate::ServiceKey6, $crate::ServiceValue>
                [$crate::MAX_SERVICES] Config 1;
            /// Per server slot of an IPv6 server: address, full-NAT source, next hop (an IPv4
            /// server's slot is in `LB_SERVERS`; slots are shared, a server is in one).
            servers6 LB6_SERVERS: Array<u32, $crate::ServerInfo6>[$crate::MAX_SERVERS] Config 1;
            /// Confirmed IPv6 flows, both directions (`conntrack`). The daemon sizes it (and
            /// `LB6_HALFOPEN`) to almost nothing when no service is IPv6.
            flows6 LB6_FLOWS: LruHash<$crate::FlowKey6, $crate::Flow6>
                [2 * $crate::DEFAULT_CONNTRACK_ENTRIES] State 1;
            /// Half-open IPv6 flows, both directions.
            halfopen6 LB6_HALFOPEN: LruHash<$crate::FlowKey6, $crate::Flow6>
                [2 * $crate::DEFAULT_HALFOPEN_ENTRIES] State 1;
            /// `tcp-request connection` rules for IPv6 clients (`access`).
            access6 LB6_ACCESS: LpmTrie<$crate::AccessKey6, u32>[$crate::MAX_ACCESS_ENTRIES]
                Config 1;
            /// Per CPU: `LB_SCRATCH` for IPv6 packets (a new flow's entries, the port search).
            scratch6 LB6_SCRATCH: PerCpuArray<u32, $crate::Scratch6>[1] Private 1;
            /// `lb_xdp` tail-calls IPv6 packets into `lb_xdp6` ([`PROG_LB6`], at
            /// [`PROGS_LB6`]) and IPv4 packets its flow cache does not serve into `lb_xdp4`
            /// ([`PROG_LB4`], at [`PROGS_LB4`]): programs of their own, each with its own stack
            /// and verification. Filled by whoever loads the object; pinned because the kernel
            /// empties a program table once no process or pin holds it, and the program
            /// outlives the daemon.
            progs LB_PROGS: ProgArray<u32, u32>[2] Config 2;
            /// Each CPU's copies of confirmed IPv4 flows in front of `LB_FLOWS`, one 64-byte
            /// slot per 5-tuple hash, a region per CPU (`flow_cache`; sized by the loader for
            /// the kernel's CPU numbers, `flow_cache_entries`; one CPU's as built). Pinned so that a restarted
            /// daemon's program and the one it replaces drop the same copies. Kept as
            /// configuration is: its copies are worth nothing across builds (`LB_FLOWS` makes
            /// them again within 100 ms), so another build's is replaced without asking.
            /// Version 2: copies are stamped in jiffies, not lb's clock ticks; 3: a plain
            /// array with a region per CPU, not a per-CPU array.
            flow_cache LB_FLOW_CACHE: Array<u32, $crate::CachedFlow>
                [$crate::FLOW_CACHE_SLOTS] Config 3;
            /// Per CPU: what the packet under way met, while tracing (`trace`).
            trace_rec LB_TRACE_REC: PerCpuArray<u32, $crate::TraceRecord>[1] Private 1;
            /// New flows for `option tcplog` (`SETTINGS_F_LOG_FLOWS`); belongs to the daemon
            /// reading it.
            events LB_EVENTS: RingBuf<u32, $crate::FlowEvent>[$crate::EVENTS_BYTES] Private 1;
        }
    };
}

macro_rules! defs {
    ($( $(#[$doc:meta])* $field:ident $name:ident : $kind:ident < $k:ty, $v:ty >
        [$max:expr] $keep:ident $ver:literal; )*) => {
        /// The map table as data.
        pub const MAPS: &[MapDef] = &[$(MapDef {
            name: stringify!($name),
            kind: MapKind::$kind,
            key_size: (core::mem::size_of::<$k>()
                + if matches!(MapKind::$kind, MapKind::LpmTrie) { 4 } else { 0 }) as u32,
            value_size: core::mem::size_of::<$v>() as u32,
            max_entries: ($max) as u32,
            keep: Keep::$keep,
            version: $ver,
        },)*];

        /// Map names, as declared in the XDP object.
        pub mod names {
            $(pub const $name: &str = stringify!($name);)*
        }
    };
}
for_each_map!(defs);

/// The map called `name`.
pub fn map_def(name: &str) -> Option<&'static MapDef> {
    MAPS.iter().find(|d| d.name == name)
}

/// Program names in the XDP object.
pub const PROG_LB: &str = "lb_xdp";
/// The IPv6 packet path, reached from [`PROG_LB`] by a tail call (`LB_PROGS`).
pub const PROG_LB6: &str = "lb_xdp6";
/// IPv4's whole packet path, reached from [`PROG_LB`] by a tail call (`LB_PROGS`) for what
/// the flow cache does not serve.
pub const PROG_LB4: &str = "lb_xdp4";
/// `LB_PROGS` indices.
pub const PROGS_LB6: u32 = 0;
pub const PROGS_LB4: u32 = 1;
/// An empty `XDP_PASS` program: the benchmark floor, and the program tests put on veth peers.
pub const PROG_PASS: &str = "xdp_pass";
/// Takes IPIP headers off on a direct-server-return server whose kernel has no `ipip`.
pub const PROG_IPIP_DECAP: &str = "ipip_decap";
/// Parses each packet as `lb_xdp` does, then passes it: the live benchmark's floor.
pub const PROG_PARSE_ONLY: &str = "xdp_parse_only";

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_unique_as_the_kernel_truncates_them() {
        // The kernel keeps 15 bytes of a map's name (what `bpftool map` shows).
        let short = |n: &'static str| &n[..n.len().min(15)];
        for (i, d) in MAPS.iter().enumerate() {
            assert!(
                MAPS[..i].iter().all(|o| short(o.name) != short(d.name)),
                "{}",
                d.name
            );
        }
        let flows = map_def(names::LB_FLOWS).expect("LB_FLOWS");
        assert_eq!(flows.kind, MapKind::LruHash);
        assert_eq!(
            flows.key_size as usize,
            core::mem::size_of::<crate::FlowKey>()
        );
        assert_eq!(flows.keep, Keep::State);
    }
}
