//! What differs between the IPv4 and IPv6 packet paths, as two traits the shared code
//! (`path`, `conntrack`, `new_flow`, `nat`, `forward`) is generic over, as Cilium's `lb4_*`
//! and `lb6_*` share theirs: [`Addr`] (the address: which maps hold its flows, services,
//! servers and rules) and [`IpHdr`] (the header: parsing, addresses, checksums, ICMP). Each
//! family gets its own copy of the generic code, so IPv4's is what it was before IPv6.
use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    btf_maps::lpm_trie::Key,
    programs::XdpContext,
};
use lb_common::{
    ACCESS_LOOKUP_BITS, ACCESS6_LOOKUP_BITS, Addr6, FlowEvent, FlowEvent6, FlowKeyOf, FlowOf,
    NextHop, Reason, ScratchOf, ServerInfoOf, ServiceKeyOf, ServiceValue,
    csum::Delta,
    maglev::{flow_hash, source_hash},
};

use crate::{
    conntrack::Table,
    flow_cache, icmp, icmp6, ipip,
    maps::{
        LB_ACCESS, LB_EVENTS, LB_FLOWS, LB_HALFOPEN, LB_SCRATCH, LB_SERVERS, LB_SERVICES,
        LB6_ACCESS, LB6_FLOWS, LB6_HALFOPEN, LB6_SCRATCH, LB6_SERVERS, LB6_SERVICES,
    },
    nat::TupleOf,
    parse::{self, IcmpError, Ipv4Hdr, PacketOf, ParsedOf},
    parse6::{self, Icmp6, Ipv6Hdr},
    stats, trace, verdict,
};

/// An address family's address, as the packet holds it, and the maps keyed by it.
pub trait Addr: Copy + PartialEq + 'static {
    fn table_get(t: Table, key: &FlowKeyOf<Self>) -> Option<*mut FlowOf<Self>>;
    fn table_insert(t: Table, key: &FlowKeyOf<Self>, f: &FlowOf<Self>, flags: u64) -> bool;
    fn table_remove(t: Table, key: &FlowKeyOf<Self>);
    /// This CPU's scratch entry.
    fn scratch() -> Option<*mut ScratchOf<Self>>;
    /// The server at `slot` (array slots are never freed).
    fn server(slot: u32) -> Option<*mut ServerInfoOf<Self>>;
    /// The service at a VIP:port/protocol, copied.
    fn service(key: &ServiceKeyOf<Self>) -> Option<ServiceValue>;
    /// The `tcp-request connection` verdict for `src` at `frontend`'s `dport`, if a rule has one.
    fn access(frontend: u32, dport: u16, src: Self) -> Option<u32>;
    /// The 32 bits the flow hashes (`lb_common::maglev`) start from: the address itself, or an
    /// IPv6 address's words folded (the same on every node).
    fn fold(self) -> u32;
    /// Tells the daemon about a new flow (`option tcplog`); dropped if the ring is full.
    fn report(key: &FlowKeyOf<Self>, server: u32, frontend: u32, flags: u8);
    /// Makes this CPU's copy of the entry `flow` at `key` (`flow_cache`; IPv4 only: IPv6's
    /// path has no cache in front).
    fn copy_flow(key: &FlowKeyOf<Self>, flow: *const FlowOf<Self>);
    /// Drops every CPU's copies of a flow's two entries, at `key` and `mirror`.
    fn forget_copies(key: &FlowKeyOf<Self>, mirror: &FlowKeyOf<Self>);

    /// Runs `f` with the flow key of a packet from `src:sport` to `dst:dport` wherever this
    /// family keeps it ([`ScratchOf::key`] or the stack); `XDP_PASS` if it has nowhere.
    fn with_key(
        src: Self,
        dst: Self,
        ports: (u16, u16),
        proto: u8,
        f: impl FnOnce(&FlowKeyOf<Self>) -> u32,
    ) -> u32;

    /// Runs `then` with the key of the other direction's entry of `f` (`FlowOf::mirror_key`),
    /// wherever this family keeps it ([`ScratchOf::mirror`] or the stack); `None` if it has
    /// nowhere.
    fn with_mirror<R>(
        f: &FlowOf<Self>,
        proto: u8,
        then: impl FnOnce(&FlowKeyOf<Self>) -> R,
    ) -> Option<R>;

    #[inline(always)]
    fn source_hash(self) -> u32 {
        source_hash(self.fold())
    }

    #[inline(always)]
    fn flow_hash(key: &FlowKeyOf<Self>) -> u32 {
        flow_hash(
            key.src.fold(),
            key.dst.fold(),
            key.sport,
            key.dport,
            key.proto,
        )
    }
}

/// An IP header: what the packet path reads and writes in it, and what it does with what
/// only that family has (ICMP, direct server return, tracing).
pub trait IpHdr: Sized + 'static {
    type A: Addr;
    /// IPv4, whose path notes `lb trace`'s tuple itself (IPv6's is noted before its path,
    /// see `trace::begin6`).
    const V4: bool;
    /// This family's ICMP error, as its parser finds it.
    type Icmp;
    /// The whole frame, parsed (`parse`, `parse6`).
    fn parse(ctx: &XdpContext) -> Result<ParsedOf<Self, Self::Icmp>, Reason>;
    /// # Safety
    /// `ip` was bounds-checked by the parser, as for every function taking it below.
    unsafe fn src(ip: *const Self) -> Self::A;
    /// # Safety
    /// See [`IpHdr::src`].
    unsafe fn dst(ip: *const Self) -> Self::A;
    /// The IP packet's length (header included), host order.
    /// # Safety
    /// See [`IpHdr::src`].
    unsafe fn ip_len(ip: *const Self) -> u16;
    /// Writes new addresses, fixing the header's checksum if it has one; returns their change
    /// for the L4 checksum's pseudo-header.
    /// # Safety
    /// See [`IpHdr::src`].
    unsafe fn set_addrs(ip: *mut Self, src: *const Self::A, dst: *const Self::A) -> Delta;
    /// The family's part of a FIB lookup for a packet going out as `to`.
    /// # Safety
    /// See [`IpHdr::src`].
    unsafe fn fill_fib(fib: &mut FibParams, ip: *const Self, to: &TupleOf<Self::A>);
    /// An ICMP error about a packet: translated and forwarded if it is about a tracked flow.
    fn translate(ctx: &XdpContext, e: &Self::Icmp, now: u32) -> u32;
    /// Whether a packet too big for its path is answered here (else passed to the kernel to
    /// fragment).
    fn answers_too_big(pkt: &PacketOf<Self>) -> bool;
    /// Answers a packet too big for `mtu` (moves the packet's head: the caller returns this).
    fn too_big(ctx: &XdpContext, pkt: &PacketOf<Self>, mtu: u16) -> u32;
    /// Bytes direct server return's outer header adds.
    const ENCAP_OVERHEAD: u16;
    /// Direct server return's encapsulation from `src` to `dst` (moves the packet's head:
    /// the caller returns this).
    fn encap(
        ctx: &XdpContext,
        src: &Self::A,
        dst: &Self::A,
        nh: *const NextHop,
        routed: u32,
    ) -> u32;
    /// `lb trace` notes the packet's tuple as it arrived (IPv4).
    fn arrived(pkt: &PacketOf<Self>);
}

impl Addr for u32 {
    #[inline(always)]
    fn table_get(t: Table, key: &FlowKeyOf<u32>) -> Option<*mut FlowOf<u32>> {
        match t {
            Table::Flows => LB_FLOWS.get_ptr_mut(key),
            Table::HalfOpen => LB_HALFOPEN.get_ptr_mut(key),
        }
    }

    #[inline(always)]
    fn table_insert(t: Table, key: &FlowKeyOf<u32>, f: &FlowOf<u32>, flags: u64) -> bool {
        match t {
            Table::Flows => LB_FLOWS.insert(key, f, flags).is_ok(),
            Table::HalfOpen => LB_HALFOPEN.insert(key, f, flags).is_ok(),
        }
    }

    #[inline(always)]
    fn table_remove(t: Table, key: &FlowKeyOf<u32>) {
        let _ = match t {
            Table::Flows => LB_FLOWS.remove(key),
            Table::HalfOpen => LB_HALFOPEN.remove(key),
        };
    }

    #[inline(always)]
    fn scratch() -> Option<*mut ScratchOf<u32>> {
        LB_SCRATCH.get_ptr_mut(0)
    }

    #[inline(always)]
    fn server(slot: u32) -> Option<*mut ServerInfoOf<u32>> {
        LB_SERVERS.get_ptr_mut(slot)
    }

    #[inline(always)]
    fn service(key: &ServiceKeyOf<u32>) -> Option<ServiceValue> {
        // SAFETY: copied out at once (hash map values may be replaced by the daemon).
        LB_SERVICES.get_ptr(key).map(|v| unsafe { *v })
    }

    #[inline(always)]
    fn access(frontend: u32, dport: u16, src: u32) -> Option<u32> {
        let key = Key::new(
            ACCESS_LOOKUP_BITS,
            lb_common::AccessKey::new(frontend, dport, src),
        );
        LB_ACCESS.get(&key).copied()
    }

    #[inline(always)]
    fn fold(self) -> u32 {
        self
    }

    #[inline(always)]
    fn with_key(
        src: u32,
        dst: u32,
        (sport, dport): (u16, u16),
        proto: u8,
        f: impl FnOnce(&FlowKeyOf<u32>) -> u32,
    ) -> u32 {
        f(&FlowKeyOf::new(src, dst, sport, dport, proto))
    }

    #[inline(always)]
    fn with_mirror<R>(
        f: &FlowOf<u32>,
        proto: u8,
        then: impl FnOnce(&FlowKeyOf<u32>) -> R,
    ) -> Option<R> {
        Some(then(&f.mirror_key(proto)))
    }

    #[inline(always)]
    fn copy_flow(key: &FlowKeyOf<u32>, flow: *const FlowOf<u32>) {
        flow_cache::fill(key, flow);
    }

    #[inline(always)]
    fn forget_copies(key: &FlowKeyOf<u32>, mirror: &FlowKeyOf<u32>) {
        flow_cache::forget_everywhere(key, mirror);
    }

    #[inline(always)]
    fn report(key: &FlowKeyOf<u32>, server: u32, frontend: u32, flags: u8) {
        if let Some(mut slot) = LB_EVENTS.reserve(0) {
            slot.write(FlowEvent {
                client: key.src,
                vip: key.dst,
                client_port: key.sport,
                vip_port: key.dport,
                server: server as u16,
                frontend: frontend as u16,
                proto: key.proto,
                flags,
                _pad: 0,
            });
            slot.submit(0);
        }
    }
}

impl Addr for Addr6 {
    #[inline(always)]
    fn table_get(t: Table, key: &FlowKeyOf<Addr6>) -> Option<*mut FlowOf<Addr6>> {
        match t {
            Table::Flows => LB6_FLOWS.get_ptr_mut(key),
            Table::HalfOpen => LB6_HALFOPEN.get_ptr_mut(key),
        }
    }

    #[inline(always)]
    fn table_insert(t: Table, key: &FlowKeyOf<Addr6>, f: &FlowOf<Addr6>, flags: u64) -> bool {
        match t {
            Table::Flows => LB6_FLOWS.insert(key, f, flags).is_ok(),
            Table::HalfOpen => LB6_HALFOPEN.insert(key, f, flags).is_ok(),
        }
    }

    #[inline(always)]
    fn table_remove(t: Table, key: &FlowKeyOf<Addr6>) {
        let _ = match t {
            Table::Flows => LB6_FLOWS.remove(key),
            Table::HalfOpen => LB6_HALFOPEN.remove(key),
        };
    }

    #[inline(always)]
    fn scratch() -> Option<*mut ScratchOf<Addr6>> {
        LB6_SCRATCH.get_ptr_mut(0)
    }

    #[inline(always)]
    fn server(slot: u32) -> Option<*mut ServerInfoOf<Addr6>> {
        LB6_SERVERS.get_ptr_mut(slot)
    }

    #[inline(always)]
    fn service(key: &ServiceKeyOf<Addr6>) -> Option<ServiceValue> {
        // SAFETY: copied out at once (hash map values may be replaced by the daemon).
        LB6_SERVICES.get_ptr(key).map(|v| unsafe { *v })
    }

    #[inline(always)]
    fn access(frontend: u32, dport: u16, src: Addr6) -> Option<u32> {
        let key = Key::new(
            ACCESS6_LOOKUP_BITS,
            lb_common::AccessKey6::new(frontend, dport, src),
        );
        LB6_ACCESS.get(&key).copied()
    }

    #[inline(always)]
    fn fold(self) -> u32 {
        self[0] ^ self[1] ^ self[2] ^ self[3]
    }

    #[inline(always)]
    fn with_key(
        src: Addr6,
        dst: Addr6,
        (sport, dport): (u16, u16),
        proto: u8,
        f: impl FnOnce(&FlowKeyOf<Addr6>) -> u32,
    ) -> u32 {
        let Some(scratch) = Self::scratch() else {
            stats::reason(Reason::PassNotService);
            return xdp_action::XDP_PASS;
        };
        // SAFETY: this CPU's scratch entry (the program runs to completion on this CPU).
        let key = unsafe { &mut (*scratch).key };
        key.src = src;
        key.dst = dst;
        key.sport = sport;
        key.dport = dport;
        key.proto = proto;
        key._pad = 0;
        key._pad2 = 0;
        f(key)
    }

    #[inline(always)]
    fn with_mirror<R>(
        f: &FlowOf<Addr6>,
        proto: u8,
        then: impl FnOnce(&FlowKeyOf<Addr6>) -> R,
    ) -> Option<R> {
        let scratch = Self::scratch()?;
        // SAFETY: this CPU's scratch entry; the entry's addresses are copied a word at a time.
        let key = unsafe { &mut (*scratch).mirror };
        unsafe {
            swap6(&mut key.src, &f.dst, Delta::ZERO);
            swap6(&mut key.dst, &f.src, Delta::ZERO);
        }
        key.sport = f.dport;
        key.dport = f.sport;
        key.proto = proto;
        key._pad = 0;
        key._pad2 = 0;
        Some(then(key))
    }

    #[inline(always)]
    fn copy_flow(_: &FlowKeyOf<Addr6>, _: *const FlowOf<Addr6>) {}

    #[inline(always)]
    fn forget_copies(_: &FlowKeyOf<Addr6>, _: &FlowKeyOf<Addr6>) {}

    #[inline(always)]
    fn report(key: &FlowKeyOf<Addr6>, server: u32, frontend: u32, flags: u8) {
        // The ring holds both records; their size tells them apart.
        if let Some(mut slot) = LB_EVENTS.reserve_untyped::<FlowEvent6>(0) {
            slot.write(FlowEvent6 {
                client: key.src,
                vip: key.dst,
                client_port: key.sport,
                vip_port: key.dport,
                server: server as u16,
                frontend: frontend as u16,
                proto: key.proto,
                flags,
                _pad: 0,
            });
            slot.submit(0);
        }
    }
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

impl IpHdr for Ipv4Hdr {
    type A = u32;
    const V4: bool = true;
    type Icmp = IcmpError;

    #[inline(always)]
    fn parse(ctx: &XdpContext) -> Result<ParsedOf<Self, IcmpError>, Reason> {
        parse::parse(ctx)
    }

    #[inline(always)]
    unsafe fn src(ip: *const Self) -> u32 {
        unsafe { (*ip).src }
    }

    #[inline(always)]
    unsafe fn dst(ip: *const Self) -> u32 {
        unsafe { (*ip).dst }
    }

    #[inline(always)]
    unsafe fn ip_len(ip: *const Self) -> u16 {
        u16::from_be(unsafe { (*ip).tot_len })
    }

    #[inline(always)]
    unsafe fn set_addrs(ip: *mut Self, src: *const u32, dst: *const u32) -> Delta {
        unsafe {
            let (src, dst) = (*src, *dst);
            let addrs = Delta::ZERO.u32((*ip).src, src).u32((*ip).dst, dst);
            (*ip).check = addrs.apply((*ip).check);
            (*ip).src = src;
            (*ip).dst = dst;
            addrs
        }
    }

    #[inline(always)]
    unsafe fn fill_fib(fib: &mut FibParams, ip: *const Self, to: &TupleOf<u32>) {
        fib.family = AF_INET;
        fib.__bindgen_anon_2.tos = unsafe { (*ip).tos };
        fib.__bindgen_anon_3.ipv4_src = to.src;
        fib.__bindgen_anon_4.ipv4_dst = to.dst;
    }

    #[inline(always)]
    fn translate(ctx: &XdpContext, e: &IcmpError, now: u32) -> u32 {
        icmp::translate(ctx, e, now)
    }

    #[inline(always)]
    fn answers_too_big(pkt: &PacketOf<Self>) -> bool {
        icmp::answers_too_big(pkt)
    }

    #[inline(always)]
    fn too_big(ctx: &XdpContext, pkt: &PacketOf<Self>, mtu: u16) -> u32 {
        icmp::too_big(ctx, pkt, mtu)
    }

    const ENCAP_OVERHEAD: u16 = ipip::OVERHEAD;

    #[inline(always)]
    fn encap(ctx: &XdpContext, src: &u32, dst: &u32, nh: *const NextHop, routed: u32) -> u32 {
        ipip::encap(ctx, *src, *dst, nh, routed)
    }

    #[inline(always)]
    fn arrived(pkt: &PacketOf<Self>) {
        trace::arrived(pkt);
    }
}

impl IpHdr for Ipv6Hdr {
    type A = Addr6;
    const V4: bool = false;
    type Icmp = Icmp6;

    #[inline(always)]
    fn parse(ctx: &XdpContext) -> Result<ParsedOf<Self, Icmp6>, Reason> {
        parse6::parse6(ctx)
    }

    #[inline(always)]
    unsafe fn src(ip: *const Self) -> Addr6 {
        unsafe { (*ip).src }
    }

    #[inline(always)]
    unsafe fn dst(ip: *const Self) -> Addr6 {
        unsafe { (*ip).dst }
    }

    #[inline(always)]
    unsafe fn ip_len(ip: *const Self) -> u16 {
        (parse6::IPV6_HLEN as u16).saturating_add(u16::from_be(unsafe { (*ip).payload_len }))
    }

    #[inline(always)]
    unsafe fn set_addrs(ip: *mut Self, src: *const Addr6, dst: *const Addr6) -> Delta {
        unsafe {
            let d = swap6(&raw mut (*ip).src, src, Delta::ZERO);
            swap6(&raw mut (*ip).dst, dst, d)
        }
    }

    #[inline(always)]
    unsafe fn fill_fib(fib: &mut FibParams, ip: *const Self, to: &TupleOf<Addr6>) {
        fib.family = AF_INET6;
        // Traffic class and flow label, as the kernel's own lookup takes them.
        fib.__bindgen_anon_2.flowinfo = unsafe { (*ip).vtc_flow } & 0x0fff_ffffu32.to_be();
        fib.__bindgen_anon_3.ipv6_src = to.src;
        fib.__bindgen_anon_4.ipv6_dst = to.dst;
    }

    #[inline(always)]
    fn translate(_: &XdpContext, _: &Icmp6, _: u32) -> u32 {
        verdict::ICMP6
    }

    #[inline(always)]
    fn answers_too_big(_pkt: &PacketOf<Self>) -> bool {
        // IPv6 routers never fragment: the sender must hear it.
        true
    }

    #[inline(always)]
    fn too_big(ctx: &XdpContext, pkt: &PacketOf<Self>, mtu: u16) -> u32 {
        icmp6::too_big(ctx, pkt, mtu)
    }

    const ENCAP_OVERHEAD: u16 = ipip::OVERHEAD6;

    #[inline(always)]
    fn encap(ctx: &XdpContext, src: &Addr6, dst: &Addr6, nh: *const NextHop, routed: u32) -> u32 {
        // By address: the subprogram reads them where they are, the stack being short.
        ipip::encap6(ctx, src, dst, nh, routed)
    }

    #[inline(always)]
    fn arrived(_pkt: &PacketOf<Self>) {
        // Never called: `lb_xdp6` notes the tuple before the path (`trace::begin6`), where
        // it costs the untraced copy's verification nothing.
    }
}

/// Writes the IPv6 address at `new` over the one at `field`, a word at a time, adding the
/// change to `d`: the address is never held whole (eight words at once would spill to a
/// stack that has no room for them).
///
/// # Safety
/// Both point to readable memory, `field` to writable memory (the packet, bounds-checked).
#[inline(always)]
pub unsafe fn swap6(field: *mut Addr6, new: *const Addr6, mut d: Delta) -> Delta {
    let (field, new) = (field.cast::<u32>(), new.cast::<u32>());
    for i in 0..4 {
        // SAFETY: 4 words each, as the caller promised; volatile keeps one word at a time.
        unsafe {
            let w = core::ptr::read_volatile(new.add(i));
            d = d.u32(*field.add(i), w);
            *field.add(i) = w;
        }
    }
    d
}
