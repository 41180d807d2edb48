//! What connection tracking stores: a flow's key (the 5-tuple as it appears in the packet)
//! and its entries, one per direction, each holding everything a packet of that direction
//! needs (the rewrite, the next hop, the state and its clock), so a tracked packet costs one
//! lookup. The lifecycle rules (states, timeouts, port reuse) are in [`crate::conntrack`].

/// A 5-tuple as it appears in a packet: the key of `LB_FLOWS` and `LB_HALFOPEN` (IPv4,
/// [`FlowKey`]) and of `LB6_FLOWS` and `LB6_HALFOPEN` (IPv6, [`FlowKey6`]) for both
/// directions. `A` is the address as the packet holds it ([`crate::addr`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKeyOf<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    // Scalar padding: zeroing a byte array makes LLVM call a (slow) memset in BPF.
    pub _pad: u8,
    pub _pad2: u16,
}

/// An IPv4 flow's key.
pub type FlowKey = FlowKeyOf<u32>;
/// An IPv6 flow's key.
pub type FlowKey6 = FlowKeyOf<Addr6>;

impl<A> FlowKeyOf<A> {
    /// Addresses and ports in network byte order.
    #[inline(always)]
    pub const fn new(src: A, dst: A, sport: u16, dport: u16, proto: u8) -> FlowKeyOf<A> {
        FlowKeyOf {
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

use crate::addr::Addr6;

/// How long a cached next hop is trusted: routes and neighbours that change are picked up
/// within a second, without the daemon (the data plane may be running without one).
pub const NEXT_HOP_TTL: u32 = crate::clock::ticks_from_ms(1000);

/// Where to send a rewritten packet: egress interface and MACs, as `bpf_fib_lookup` found
/// them, and when (valid for [`NEXT_HOP_TTL`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// 0: nothing cached.
    pub ifindex: u32,
    /// Clock ticks ([`crate::clock`]) of the lookup.
    pub stamp: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// The path's MTU as the FIB reports it (0: unknown); bigger packets are not sent this
    /// way (see `lb-ebpf/src/icmp.rs`).
    pub mtu: u16,
    pub _pad: u16,
}

/// This entry is the server -> client direction of a flow.
pub const FLOW_F_REPLY: u8 = 1 << 0;
/// The client sent a FIN.
pub const FLOW_F_FIN_CLIENT: u8 = 1 << 1;
/// The server sent a FIN.
pub const FLOW_F_FIN_SERVER: u8 = 1 << 2;
/// The server sent its FIN before it had the client's (it came first, or the two crossed):
/// the server holds the tuple in TIME_WAIT once closed.
pub const FLOW_F_SERVER_CLOSED_FIRST: u8 = 1 << 3;
/// An RST ended the flow: neither side keeps a TIME_WAIT.
pub const FLOW_F_RST: u8 = 1 << 4;
/// The client sends TCP timestamps (RFC 7323): its SYN carried them and, once it closed, so
/// did its FIN, whose TSval is then in `tcp_ref` (see `conntrack::port_reusable`).
pub const FLOW_F_TS: u8 = 1 << 5;
/// Forward entry: the server refused this connection; the client's next SYN is balanced
/// afresh, away from that server (`option redispatch`, `balance::refusal`).
pub const FLOW_F_REFUSED: u8 = 1 << 6;
/// Direct server return: the flow's one entry (lb never sees the replies) sends its packets
/// unchanged inside an IPIP header from `src` (lb's address towards the server) to `dst` (the
/// server); `sport`/`dport` stay the client's and the VIP's.
pub const FLOW_F_DSR: u8 = 1 << 7;

/// An entry of `LB_FLOWS` or `LB_HALFOPEN`.
///
/// - forward entry (key: client -> VIP): rewrite to `src:sport` (full-NAT source, or the
///   client itself in DNAT) -> `dst:dport` (the server);
/// - reply entry (key: server -> LB or client): rewrite to VIP -> client.
///
/// Either entry names the other: its key is the rewrite turned around ([`Flow::mirror_key`]).
/// IPv4 flows are [`Flow`]s, IPv6 flows [`Flow6`]s: everything but the addresses is the same,
/// so the lifecycle rules ([`crate::conntrack`]) serve both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowOf<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    /// `conntrack::State` as a number.
    pub state: u8,
    /// `FLOW_F_*`.
    pub flags: u8,
    /// Times servers refused this connection so far (`retries`).
    pub attempts: u8,
    pub _pad: u8,
    /// Server slot (counters, `lb show`).
    pub server: u16,
    pub frontend: u16,
    pub pool: u16,
    pub _pad2: u16,
    /// Clock ticks of the last packet this way.
    pub last_seen: u32,
    /// Idle ticks after which this entry is dead, for its current state.
    pub timeout: u32,
    /// Once the client sent its FIN: the sequence number just after it, which the server's
    /// ACK covers once the server has it (see `conntrack::tcp_step`).
    pub client_fin: u32,
    /// A TCP number the state machine keeps, by state: in `SynRecv`, the server's initial
    /// sequence number (the client's ACK that completes the handshake must acknowledge it + 1,
    /// which a spoofed client cannot know); once the client closed with `FLOW_F_TS`, the
    /// TSval of its FIN, the last one the server saw (`conntrack::port_reusable`).
    pub tcp_ref: u32,
    /// Where this direction's packets go.
    pub nh: NextHop,
}

/// Per-CPU working memory of the data plane (`LB_SCRATCH` for IPv4, `LB6_SCRATCH` for IPv6):
/// what the program's 512-byte stack cannot spare. The program runs to completion on its CPU,
/// so nothing else writes it meanwhile.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScratchOf<A> {
    /// A new flow's two entries while they are built.
    pub fwd: FlowOf<A>,
    pub reply: FlowOf<A>,
    /// `bpf_fib_lookup`'s parameters (the kernel's `struct bpf_fib_lookup`, 64 bytes).
    pub fib: [u64; 8],
    /// Full-NAT's source-port search, shared with its `bpf_loop` callback.
    pub probe: PortProbeOf<A>,
    /// IPv6: the packet's flow key while the packet path works on it (40 bytes the stack
    /// cannot spare; IPv4's 16 stay on the stack).
    pub key: FlowKeyOf<A>,
    /// IPv6: the key of the other direction's entry, while it is looked up or removed.
    pub mirror: FlowKeyOf<A>,
    /// IPv6: where the L4 header starts, written and read back by the parser so that the
    /// verifier goes on from one state however many extension headers it walked.
    pub l4_off: u32,
    pub _pad: u32,
}

pub type Scratch = ScratchOf<u32>;
pub type Scratch6 = ScratchOf<Addr6>;

/// What each source-port probe of a new full-NAT flow needs, and what it found. The probes
/// run as a `bpf_loop` callback, verified once instead of once per probe, which takes two
/// thirds of the verifier's work (and of the load time) away; callbacks get no stack
/// pointers from here, so this lives in the scratch entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortProbeOf<A> {
    /// The reply tuple asked for; its `dport` is the port being probed.
    pub rkey: FlowKeyOf<A>,
    /// The SYN's timestamp as `parse::Packet::timestamp` gives it.
    pub ts: u64,
    /// The server's slot (its `LB_SNAT_CURSOR`).
    pub slot: u32,
    pub now: u32,
    pub port_min: u16,
    pub port_max: u16,
    /// 1 when `rkey.dport` was claimed.
    pub found: u32,
}

pub type PortProbe = PortProbeOf<u32>;
pub type PortProbe6 = PortProbeOf<Addr6>;

/// An IPv4 flow's entry.
pub type Flow = FlowOf<u32>;
/// An IPv6 flow's entry.
pub type Flow6 = FlowOf<Addr6>;

impl<A: Copy> FlowOf<A> {
    #[inline(always)]
    pub const fn is_reply(&self) -> bool {
        self.flags & FLOW_F_REPLY != 0
    }

    /// The key of the other direction's entry: this entry's rewrite, turned around.
    #[inline(always)]
    pub const fn mirror_key(&self, proto: u8) -> FlowKeyOf<A> {
        FlowKeyOf::new(self.dst, self.src, self.dport, self.sport, proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PROTO_TCP;

    #[test]
    fn each_entry_names_the_other() {
        // Client 10.0.0.2:40000 -> VIP 10.0.0.1:80, full-NAT via 10.1.0.1:1024 to 10.1.0.10:80.
        let ip = |a, b, c, d| u32::from_be_bytes([a, b, c, d]).to_be();
        let (client, vip, snat, server) = (
            ip(10, 0, 0, 2),
            ip(10, 0, 0, 1),
            ip(10, 1, 0, 1),
            ip(10, 1, 0, 10),
        );
        let (cport, vport, nport, sport) = (
            40000u16.to_be(),
            80u16.to_be(),
            1024u16.to_be(),
            80u16.to_be(),
        );
        let fwd = Flow {
            src: snat,
            dst: server,
            sport: nport,
            dport: sport,
            ..Flow::default()
        };
        let reply = Flow {
            src: vip,
            dst: client,
            sport: vport,
            dport: cport,
            flags: FLOW_F_REPLY,
            ..Flow::default()
        };
        let fwd_key = FlowKey::new(client, vip, cport, vport, PROTO_TCP);
        let reply_key = FlowKey::new(server, snat, sport, nport, PROTO_TCP);
        assert_eq!(fwd.mirror_key(PROTO_TCP), reply_key);
        assert_eq!(reply.mirror_key(PROTO_TCP), fwd_key);
    }
}
