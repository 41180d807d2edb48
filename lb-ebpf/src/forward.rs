//! Sending a rewritten packet on its way: to the cached next hop when there is one, else
//! through `bpf_fib_lookup` (whose result is then cached), then `XDP_TX` or a redirect. When
//! the kernel knows the route but not yet the neighbour, `XDP_PASS` lets it resolve the MAC
//! and forward this packet itself; the next ones take the fast path.
//!
//! The FIB lookup costs several times the rest of the packet path, hence the caches: in each
//! flow entry (new flows start with their server's), each trusted for `NEXT_HOP_TTL`. The
//! cache also holds the path's MTU, so a packet too big for it is caught before it is sent
//! (see `icmp`).
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibParams, xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::{NEXT_HOP_TTL, NextHop, Reason, clock::elapsed};

use crate::{family::IpHdr, maps::LB_SCRATCH, nat::TupleOf, parse::EthHdr, stats, verdict::GO_ON};

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
    let (ifindex, stamp) = unsafe { ((*nh).ifindex, (*nh).stamp) };
    if ifindex != 0 && elapsed(now, stamp) < NEXT_HOP_TTL {
        return GO_ON;
    }
    fib(ctx, f, to, now, nh)
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
