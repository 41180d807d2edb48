//! Per-CPU counters the data plane keeps and the daemon sums.

/// Per server (`LB_SERVER_STATS`) and per frontend (`LB_FRONTEND_STATS`).
/// "in" is client -> server, "out" is server -> client, bytes are whole frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub new_flows: u64,
    /// Flows sent here after another server refused them (`option redispatch`).
    pub redispatched: u64,
    /// Connections this server refused (an RST to the SYN): HAProxy's `econ`.
    pub refused: u64,
}

impl Counters {
    #[must_use]
    pub const fn plus(self, o: Counters) -> Counters {
        Counters {
            packets_in: self.packets_in + o.packets_in,
            bytes_in: self.bytes_in + o.bytes_in,
            packets_out: self.packets_out + o.packets_out,
            bytes_out: self.bytes_out + o.bytes_out,
            new_flows: self.new_flows + o.new_flows,
            redispatched: self.redispatched + o.redispatched,
            refused: self.refused + o.refused,
        }
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a packet was passed, dropped or answered; index into `LB_REASON_STATS`.
        /// Forwarded packets are counted per server and frontend instead (`Counters`).
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason { $($(#[$doc])* $variant,)* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];
            pub const COUNT: u32 = Reason::ALL.len() as u32;

            pub const fn name(self) -> &'static str {
                match self { $(Reason::$variant => $name,)* }
            }
        }
    };
}

reasons! {
    /// Neither IPv4 nor IPv6 (ARP, ...), or IPv6 while no IPv6 program is installed: passed.
    PassNotIpv4 = "pass_not_ipv4",
    /// IP but neither TCP nor UDP (ICMP other than an error about a flow, IPv6 neighbour
    /// discovery, an unknown IPv6 next header, ...): passed.
    PassNotL4 = "pass_not_tcp_udp",
    /// An IPv4 fragment, or an IPv6 packet with a fragment header: passed, the data plane
    /// never reassembles.
    PassFragment = "pass_fragment",
    /// Truncated or malformed headers: passed untouched.
    PassMalformed = "pass_malformed",
    /// TCP/UDP not addressed to a service nor a reply of a tracked flow: passed.
    PassNotService = "pass_not_service",
    /// A TCP segment other than a SYN for a service, with no tracked flow (its flow expired
    /// or was never seen, or a flood of ACKs): passed, and the host answers with an RST as it
    /// would without lb. Only SYNs start flows, so such traffic creates no state.
    PassNoFlow = "pass_no_flow",
    /// A new flow after the daemon stopped (SIGTERM, no successor): passed to the host, while
    /// established flows go on.
    PassStopped = "pass_stopped",
    /// Rewritten, but the next hop's MAC is unknown: the kernel resolves and forwards it.
    PassNoNeigh = "pass_no_neigh",
    /// Rewritten, but the FIB gave no forwarding result (local, unreachable, ...): the kernel
    /// decides.
    PassFibOther = "pass_fib_other",
    /// The pool has no server available and is configured to pass such traffic.
    PassNoServer = "pass_no_server",
    /// The pool has no server available: dropped (the default).
    DropNoServer = "drop_no_server",
    /// Full-NAT found no free source port for the flow: dropped.
    DropSnatExhausted = "drop_snat_exhausted",
    /// Conntrack insert failed: dropped rather than forwarded without state.
    DropConntrackFull = "drop_conntrack_full",
    /// DNAT: the server-side tuple of a new flow belongs to another live flow (the same
    /// client address and port to another VIP on the same server): dropped.
    DropTupleInUse = "drop_tuple_in_use",
    /// A server refused a new connection (RST to its SYN): the RST was held back and the
    /// client's retransmitted SYN goes to another server (`option redispatch`, `retries`).
    DropServerRefused = "drop_server_refused",
    /// An ICMP error (destination unreachable, fragmentation needed) about a tracked flow:
    /// translated back to the flow's addresses and forwarded to its other side.
    IcmpTranslated = "icmp_translated",
    /// A packet too big for its next hop, with DF set: answered with ICMP "fragmentation
    /// needed" so the sender lowers its path MTU.
    TxFragNeeded = "tx_frag_needed",
    /// A packet too big for its next hop, without DF: rewritten and passed to the kernel,
    /// which fragments it.
    PassTooBig = "pass_too_big",
    /// A packet too big for its next hop, with DF set, that could not be answered (no room
    /// in the frame for the ICMP headers): dropped, as a router without an answer would.
    DropTooBig = "drop_too_big",
    /// A new flow a `tcp-request connection reject` rule refuses: dropped before any state
    /// is made.
    DropDenied = "drop_denied",
    /// A new flow found every server of its pool at its `maxconn`: dropped (lb has no queue;
    /// the client's SYN retransmission is the only wait).
    DropMaxconn = "drop_maxconn",
    /// A new flow while the instance has its global `maxconn` active flows: dropped, as
    /// HAProxy stops accepting (the client retries).
    DropGlobalMaxconn = "drop_global_maxconn",
    /// A packet of a direct-server-return flow that could not be given its IPIP header (no
    /// headroom in front of the frame): dropped.
    DropEncap = "drop_encap",
    /// An IPv4 packet for lb while the packet path (`lb_xdp4`) is not installed (a moment
    /// while a daemon loads): passed.
    PassNoPath = "pass_no_path",
    /// A TCP packet of a connection lb does not track, adopted by a direct-server-return
    /// pool that hashes: the connection began on another lb node (or before a restart) and
    /// goes on to the server the hash names.
    NewMidStream = "new_mid_stream",
    /// An IPv6 packet with more extension headers before TCP/UDP than the data plane walks
    /// (hop-by-hop, routing, destination options; 4 at most): passed untouched.
    PassExtHeaders = "pass_ipv6_ext_headers",
    /// An IPv6 packet too big for its next hop: answered with ICMPv6 "packet too big" (IPv6
    /// routers never fragment).
    TxPacketTooBig = "tx_packet_too_big",
}
