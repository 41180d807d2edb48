//! Sending a rewritten packet on its way: to the cached next hop when there is one, else
//! through `bpf_fib_lookup` (whose result is then cached), then `XDP_TX` or a redirect. When
//! the kernel knows the route but not yet the neighbour, `XDP_PASS` lets it resolve the MAC
//! and forward this packet itself; the next ones take the fast path.
//!
//! The FIB lookup costs several times the rest of the packet path, hence the caches: in each
//! flow entry (new flows start with their server's), each trusted for `NEXT_HOP_TTL`.
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::{NEXT_HOP_TTL, NextHop, Reason, clock::elapsed};

use crate::{nat, parse::Packet, stats};

const AF_INET: u8 = 2;

/// Forwards `pkt` (already rewritten) using, and maintaining, the next-hop cache at `nh`.
#[inline(always)]
pub fn via(ctx: &XdpContext, pkt: &Packet, nh: *mut NextHop, now: u32) -> u32 {
    let to = nat::Tuple {
        src: pkt.src(),
        sport: pkt.sport(),
        dst: pkt.dst(),
        dport: pkt.dport(),
    };
    match next_hop(ctx, pkt, &to, nh, now) {
        Ok(hop) => send(ctx, pkt, &hop),
        Err(action) => action,
    }
}

/// The next hop for a packet going out as `to`: the cached one at `nh` while fresh, else the
/// FIB's answer (then cached). `Err` is the action when the kernel must handle the packet.
#[inline(always)]
pub fn next_hop(
    ctx: &XdpContext,
    pkt: &Packet,
    to: &nat::Tuple,
    nh: *mut NextHop,
    now: u32,
) -> Result<NextHop, u32> {
    // SAFETY: `nh` points into a map value (server or flow entry); a concurrent refresh writes
    // the same answer.
    let cached = unsafe { *nh };
    if cached.ifindex != 0 && elapsed(now, cached.stamp) < NEXT_HOP_TTL {
        return Ok(cached);
    }
    let hop = fib(ctx, pkt, to, now)?;
    unsafe { *nh = hop };
    Ok(hop)
}

/// Sends a rewritten packet to `hop`.
#[inline(always)]
pub fn send(ctx: &XdpContext, pkt: &Packet, hop: &NextHop) -> u32 {
    // SAFETY: the Ethernet header was bounds-checked by `parse`.
    unsafe {
        (*pkt.eth).dst = hop.dmac;
        (*pkt.eth).src = hop.smac;
    }
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(hop.ifindex, 0) as u32 }
}

#[inline(always)]
fn fib(ctx: &XdpContext, pkt: &Packet, to: &nat::Tuple, now: u32) -> Result<NextHop, u32> {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid input; the header reads were
    // bounds-checked by `parse`.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    unsafe {
        fib.family = AF_INET;
        fib.l4_protocol = pkt.proto;
        fib.sport = to.sport;
        fib.dport = to.dport;
        fib.__bindgen_anon_1.tot_len = u16::from_be((*pkt.ip).tot_len);
        fib.__bindgen_anon_2.tos = (*pkt.ip).tos;
        fib.__bindgen_anon_3.ipv4_src = to.src;
        fib.__bindgen_anon_4.ipv4_dst = to.dst;
    }
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(NextHop {
            ifindex: fib.ifindex,
            stamp: now,
            dmac: fib.dmac,
            smac: fib.smac,
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            stats::reason(Reason::PassNoNeigh);
            Err(xdp_action::XDP_PASS)
        }
        _ => {
            stats::reason(Reason::PassFibOther);
            Err(xdp_action::XDP_PASS)
        }
    }
}
