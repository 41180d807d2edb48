//! Sending a rewritten packet on its way: to the cached next hop when there is one, else
//! through `bpf_fib_lookup` (whose result is then cached), then `XDP_TX` or a redirect. When
//! the kernel knows the route but not yet the neighbour, `XDP_PASS` lets it resolve the MAC
//! and forward this packet itself; the next ones take the fast path.
//!
//! The FIB lookup costs several times the rest of the packet path, hence the caches: in each
//! server entry and each flow entry (new flows start with their server's), each trusted for
//! `NEXT_HOP_TTL`. A forward entry whose hop went stale (its flow idled for a second, the
//! common case of keep-alive traffic) takes its server's again ([`route_flow`]), so a
//! server's flows share one lookup a second. The cache also holds the path's MTU, so a
//! packet too big for it is caught before it is sent (see `icmp`).
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibParams, xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::{FlowOf, NEXT_HOP_TTL, NextHop, Reason, ServerInfoOf, clock::elapsed};

use crate::{
    family::{Addr, IpHdr},
    maps::LB_SCRATCH,
    nat::TupleOf,
    parse::EthHdr,
    stats,
    verdict::GO_ON,
};

// `Scratch::fib` holds the parameters.
const _: () = assert!(core::mem::size_of::<FibParams>() == 64);

/// The headers the forwarding decision reads and the MACs it writes.
pub struct Frame<H> {
    pub eth: *mut EthHdr,
    pub ip: *mut H,
    pub proto: u8,
}

impl<H> Clone for Frame<H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H> Copy for Frame<H> {}

impl<H: IpHdr> Frame<H> {
    /// The IP packet's length, host order.
    #[inline(always)]
    pub fn tot_len(&self) -> u16 {
        // SAFETY: the IP header was bounds-checked by `parse`.
        unsafe { H::ip_len(self.ip) }
    }
}

/// Makes sure `nh` holds a fresh next hop for a packet going out as `to` (the cached one, or
/// the FIB's answer): [`GO_ON`], or (as a `Reason`) why the kernel must route the packet,
/// which the caller counts with [`unrouted`] if it hands it over.
#[inline(always)]
pub fn route<H: IpHdr>(
    ctx: &XdpContext,
    f: &Frame<H>,
    to: &TupleOf<H::A>,
    nh: *mut NextHop,
    now: u32,
) -> u32 {
    // SAFETY: `nh` points into a map value (server or flow entry) or the caller's stack; a
    // concurrent refresh writes the same answer.
    if fresh(nh, now) {
        return GO_ON;
    }
    fib(ctx, f, to, now, nh)
}

/// [`route`] for the next hop of the flow entry at `entry`.
#[inline(always)]
pub fn route_flow<H: IpHdr>(
    ctx: &XdpContext,
    f: &Frame<H>,
    to: &TupleOf<H::A>,
    entry: *mut FlowOf<H::A>,
    now: u32,
) -> u32 {
    // SAFETY: a live map value (see `route`).
    if fresh(unsafe { &raw const (*entry).nh }, now) {
        return GO_ON;
    }
    fib_flow(ctx, f, to, entry, now)
}

/// Whether `nh` (see `route`) holds a next hop looked up less than `NEXT_HOP_TTL` ago.
#[inline(always)]
pub fn fresh(nh: *const NextHop, now: u32) -> bool {
    // SAFETY: see `route`.
    let (ifindex, stamp) = unsafe { ((*nh).ifindex, (*nh).stamp) };
    ifindex != 0 && elapsed(now, stamp) < NEXT_HOP_TTL
}

/// Refreshes the stale next hop of the flow entry at `entry`: as [`fib`] answers (the
/// caller's `route`). An entry whose packets go to its server (a forward entry: DNAT,
/// full-NAT, or direct server return's outer header) shares its server's next hop: it takes
/// the server's when that is fresh, else the FIB's answer goes to both (one lookup per
/// server a second, not per flow). Only while the server's entry still holds the flow's
/// address: a server that moved (`set server addr`, DNS) or a slot given to another server
/// keeps its hop for its new address, and the flow looks its own up. A reply entry (towards
/// a client) looks its own up too. A subprogram between the caller and `fib` whose 8-byte
/// frame (the server slot's key, `now`) makes the tracked path's chain of calls (lb_xdp4,
/// tracked, this, fib) exactly the verifier's 512 bytes.
#[inline(never)]
fn fib_flow<H: IpHdr>(
    ctx: &XdpContext,
    f: &Frame<H>,
    to: &TupleOf<H::A>,
    entry: *mut FlowOf<H::A>,
    now: u32,
) -> u32 {
    // SAFETY: a live map value (see `route`).
    let nh = unsafe { &raw mut (*entry).nh };
    let Some(server) = serving::<H::A>(entry) else {
        return fib(ctx, f, to, now, nh);
    };
    // SAFETY: an array slot, never freed.
    let shared = unsafe { &raw mut (*server).nh };
    if !fresh(shared, now) {
        let routed = fib(ctx, f, to, now, shared);
        if routed != GO_ON {
            return routed;
        }
    }
    copy_hop(nh, shared);
    GO_ON
}

/// The server entry a forward flow entry's packets go to, if it still has the flow's address.
#[inline(always)]
fn serving<A: Addr>(entry: *const FlowOf<A>) -> Option<*mut ServerInfoOf<A>> {
    // SAFETY: a live map value; the server's, an array slot never freed.
    unsafe {
        if (*entry).is_reply() {
            return None;
        }
        A::server((*entry).server as u32).filter(|&s| (*s).addr == (*entry).dst)
    }
}

/// Copies a fresh next hop, its stamp last (see `fib` on racing readers).
#[inline(always)]
fn copy_hop(dst: *mut NextHop, src: *const NextHop) {
    // SAFETY: both in map values (see `route`).
    unsafe {
        (*dst).ifindex = (*src).ifindex;
        copy_mac(&mut (*dst).dmac, &(*src).dmac);
        copy_mac(&mut (*dst).smac, &(*src).smac);
        (*dst).mtu = (*src).mtu;
        (*dst).stamp = (*src).stamp;
    }
}

/// Whether the packet, with `overhead` bytes of encapsulation, is bigger than the path's MTU
/// at `nh` (a routed next hop).
#[inline(always)]
pub fn too_big<H: IpHdr>(f: &Frame<H>, nh: *const NextHop, overhead: u16) -> bool {
    // SAFETY: as in `route`.
    let mtu = unsafe { (*nh).mtu };
    mtu != 0 && f.tot_len().saturating_add(overhead) > mtu
}

/// Hands a packet `route` could not route to the kernel, counting why.
#[inline(always)]
pub fn unrouted(routed: u32) -> u32 {
    stats::reason(if routed == Reason::PassNoNeigh as u32 {
        Reason::PassNoNeigh
    } else {
        Reason::PassFibOther
    });
    xdp_action::XDP_PASS
}

/// Sends a rewritten packet to the next hop at `nh` (routed).
#[inline(always)]
pub fn send<H>(ctx: &XdpContext, f: &Frame<H>, nh: *const NextHop) -> u32 {
    // SAFETY: the Ethernet header was bounds-checked by `parse`; `nh` as in `route`.
    let ifindex = unsafe {
        copy_mac(&mut (*f.eth).dst, &(*nh).dmac);
        copy_mac(&mut (*f.eth).src, &(*nh).smac);
        (*nh).ifindex
    };
    if ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// Copies a MAC address as three 16-bit words. A plain `[u8; 6]` assignment between packet
/// and map memory becomes a call to a `memmove` subprogram (LLVM cannot rule out overlap),
/// twice per packet. Both sides are 2-byte aligned: the Ethernet header starts the frame,
/// `NextHop`'s MACs sit at offsets 8 and 14.
#[inline(always)]
pub fn copy_mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    let (d, s) = (dst.as_mut_ptr().cast::<u16>(), src.as_ptr().cast::<u16>());
    // SAFETY: 6 bytes each, 2-byte aligned (see above).
    unsafe {
        for i in 0..3 {
            d.add(i).write(s.add(i).read());
        }
    }
}

/// Fills `fib` for a packet going out as `to` and asks the FIB; the kernel's answer code.
#[inline(always)]
fn lookup<H: IpHdr>(
    ctx: &XdpContext,
    f: &Frame<H>,
    to: &TupleOf<H::A>,
    tot_len: u16,
    fib: &mut FibParams,
) -> u32 {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid input; the header reads were
    // bounds-checked by `parse`.
    unsafe {
        *fib = core::mem::zeroed();
        fib.l4_protocol = f.proto;
        fib.sport = to.sport;
        fib.dport = to.dport;
        fib.__bindgen_anon_1.tot_len = tot_len;
        H::fill_fib(fib, f.ip, to);
    }
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    rc as u32
}

/// Asks the FIB, and caches the answer at `nh`: [`GO_ON`], or why not (see `route`). A subprogram: once
/// a second per entry, and its lookup parameters stay off the packet path's frame.
#[inline(never)]
fn fib<H: IpHdr>(
    ctx: &XdpContext,
    f: &Frame<H>,
    to: &TupleOf<H::A>,
    now: u32,
    nh: *mut NextHop,
) -> u32 {
    // One parameter block for both lookups, in this CPU's scratch: the stack is tight.
    let Some(scratch) = LB_SCRATCH.get_ptr_mut(0) else {
        return Reason::PassFibOther as u32;
    };
    // SAFETY: 64 bytes of this CPU's scratch, the size and alignment of `bpf_fib_lookup`;
    // `lookup` zeroes it first.
    let fib: &mut FibParams = unsafe { &mut *(&raw mut (*scratch).fib).cast::<FibParams>() };
    match lookup(ctx, f, to, 0, fib) {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // Written field by field straight into the cache: a whole `NextHop` built first
            // would cost the frame its size. A reader racing this refresh takes the fast path
            // only once `ifindex` and `stamp` say so, and a half-written hop is at worst the
            // previous answer's MACs for one packet.
            // SAFETY: see `route`.
            unsafe {
                (*nh).ifindex = fib.ifindex;
                (*nh).dmac = fib.dmac;
                (*nh).smac = fib.smac;
                (*nh).mtu = u16::MAX;
            }
            // The path's MTU: the FIB reports it only to a packet that exceeds it. One more
            // lookup per refresh (once a second per entry) keeps the per-packet check a compare.
            if lookup(ctx, f, to, u16::MAX, fib) == BPF_FIB_LKUP_RET_FRAG_NEEDED {
                // SAFETY: a union field the kernel filled for FRAG_NEEDED; `nh` as above.
                unsafe { (*nh).mtu = fib.__bindgen_anon_1.mtu_result };
            }
            // SAFETY: see `route`.
            unsafe { (*nh).stamp = now };
            GO_ON
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => Reason::PassNoNeigh as u32,
        _ => Reason::PassFibOther as u32,
    }
}
