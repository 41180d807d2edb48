//! Sending a rewritten packet on its way: to the cached next hop when there is one, else
//! through `bpf_fib_lookup` (whose result is then cached), then `XDP_TX` or a redirect. When
//! the kernel knows the route but not yet the neighbour, `XDP_PASS` lets it resolve the MAC
//! and forward this packet itself; the next ones take the fast path.
//!
//! The FIB lookup costs several times the rest of the packet path, hence the caches: per
//! server for client -> server packets, per flow for replies, both invalidated when the daemon
//! bumps `Settings::fib_epoch`.
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::{NextHop, Reason};

use crate::{parse::Packet, stats};

const AF_INET: u8 = 2;

/// Forwards `pkt` using (and maintaining) the next-hop cache at `nh`.
#[inline(always)]
pub fn via(ctx: &XdpContext, pkt: &Packet, nh: *mut NextHop, epoch: u32) -> u32 {
    // SAFETY: `nh` points into a map value (server or flow entry); see `NextHop` for why a
    // concurrent refresh is harmless.
    let cached = unsafe { *nh };
    let hop = if cached.ifindex != 0 && cached.epoch == epoch {
        cached
    } else {
        match fib(ctx, pkt, epoch) {
            Ok(hop) => {
                unsafe { *nh = hop };
                hop
            }
            Err(action) => return action,
        }
    };
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
fn fib(ctx: &XdpContext, pkt: &Packet, epoch: u32) -> Result<NextHop, u32> {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid input; the header reads were
    // bounds-checked by `parse`.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    unsafe {
        fib.family = AF_INET;
        fib.l4_protocol = pkt.proto;
        fib.sport = pkt.sport();
        fib.dport = pkt.dport();
        fib.__bindgen_anon_1.tot_len = u16::from_be((*pkt.ip).tot_len);
        fib.__bindgen_anon_2.tos = (*pkt.ip).tos;
        fib.__bindgen_anon_3.ipv4_src = pkt.src();
        fib.__bindgen_anon_4.ipv4_dst = pkt.dst();
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
            epoch,
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
