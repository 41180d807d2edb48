//! Sending a rewritten packet on its way: FIB lookup for the next hop, then `XDP_TX` or a
//! redirect; when the kernel knows the route but not yet the neighbour, `XDP_PASS` lets it
//! resolve the MAC and forward this packet itself (the next ones take the fast path).
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::Reason;

use crate::{maps::LB_TX_PORTS, parse::Packet, stats};

const AF_INET: u8 = 2;

#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet) -> u32 {
    let ingress = ctx.ingress_ifindex() as u32;
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
    fib.ifindex = ingress;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            stats::reason(Reason::PassNoNeigh);
            return xdp_action::XDP_PASS;
        }
        _ => {
            stats::reason(Reason::PassFibOther);
            return xdp_action::XDP_PASS;
        }
    }
    // SAFETY: the Ethernet header was bounds-checked by `parse`.
    unsafe {
        (*pkt.eth).dst = fib.dmac;
        (*pkt.eth).src = fib.smac;
    }
    if fib.ifindex == ingress {
        stats::reason(Reason::Tx);
        return xdp_action::XDP_TX;
    }
    stats::reason(Reason::Redirect);
    match LB_TX_PORTS.redirect(fib.ifindex, 0) {
        Ok(action) => action,
        // Not one of ours (the daemon fills the map with every interface it attaches to):
        // the plain helper still gets it there.
        Err(_) => unsafe { bpf_redirect(fib.ifindex, 0) as u32 },
    }
}
