//! Direct server return over IPIP: the client's packet goes to its server unchanged, inside
//! an outer IPv4 header (protocol 4) from lb's address towards the server. The server's
//! `ipip` interface takes the outer header off, finds the VIP on its loopback and answers the
//! client directly: replies never come back through lb.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use lb_common::{NextHop, Reason, csum::fold};

use crate::{
    forward::copy_mac,
    parse::{ETH_HLEN, EthHdr, Ipv4Hdr},
    stats,
    verdict::GO_ON,
};

/// IPv4's protocol number for IPv4 inside (RFC 2003).
pub const IPPROTO_IPIP: u8 = 4;
/// Bytes the outer header adds: what a packet must leave under the path's MTU.
pub const OVERHEAD: u16 = 20;

const DF_BE: u16 = 0x4000u16.to_be();

/// Puts the packet inside an IPIP header from `src` to `dst` (network order) and sends it:
/// through the next hop at `nh` if `routed` is [`GO_ON`], else (`routed` is the reason) to
/// the kernel, which routes (resolving the neighbour) or fragments it. The outer header
/// copies the inner DF bit and TOS. Returns the action.
///
/// A subprogram that moves the packet's head: the verifier forgets every packet pointer
/// the caller holds, so the caller returns this action at once.
#[inline(never)]
pub fn encap(ctx: &XdpContext, src: u32, dst: u32, nh: *const NextHop, routed: u32) -> u32 {
    // Nothing is read before the head moves: the old headers are still there, 20 bytes
    // further on, and values held across the helper call would cost stack.
    // SAFETY: a helper call on our context; every pointer is derived and checked below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(OVERHEAD as i32)) } != 0 {
        return drop();
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 2 * 20 > end {
        return drop();
    }
    let eth = start as *mut EthHdr;
    let old_eth = (start + OVERHEAD as usize) as *const EthHdr;
    let outer = (start + ETH_HLEN) as *mut Ipv4Hdr;
    let inner = (start + ETH_HLEN + 20) as *const Ipv4Hdr;
    let to_kernel = routed != GO_ON;
    // SAFETY: within [start, start + 54), checked above; `nh` points into a map value. The
    // old Ethernet header (bytes 20..34) is read before the outer header (14..34) covers it.
    unsafe {
        if to_kernel {
            // As it came: addressed to this host, for the kernel to route.
            copy_mac(&mut (*eth).dst, &(*old_eth).dst);
            copy_mac(&mut (*eth).src, &(*old_eth).src);
        } else {
            copy_mac(&mut (*eth).dst, &(*nh).dmac);
            copy_mac(&mut (*eth).src, &(*nh).smac);
        }
        (*eth).proto = 0x0800u16.to_be();
        *outer = Ipv4Hdr {
            version_ihl: 0x45,
            tos: (*inner).tos,
            tot_len: u16::from_be((*inner).tot_len)
                .wrapping_add(OVERHEAD)
                .to_be(),
            id: (*inner).id,
            frag_off: (*inner).frag_off & DF_BE,
            ttl: 64,
            proto: IPPROTO_IPIP,
            check: 0,
            src,
            dst,
        };
        (*outer).check = !fold(header_sum(outer));
    }
    if to_kernel {
        stats::reason(if routed == Reason::PassTooBig as u32 {
            Reason::PassTooBig
        } else if routed == Reason::PassNoNeigh as u32 {
            Reason::PassNoNeigh
        } else {
            Reason::PassFibOther
        });
        return xdp_action::XDP_PASS;
    }
    // SAFETY: as above.
    let ifindex = unsafe { (*nh).ifindex };
    if ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    // SAFETY: plain helper call.
    let rc = unsafe { bpf_redirect(ifindex, 0) };
    // A known action: callers' packet pointers died with the head move, and the verifier
    // must see that no path that returns here goes on to read them (`verdict`'s values).
    if rc == xdp_action::XDP_REDIRECT as i64 {
        xdp_action::XDP_REDIRECT
    } else {
        xdp_action::XDP_ABORTED
    }
}

/// The server's side, for kernels without `ipip`: an IPIP packet (outer header without
/// options, not a fragment) loses its outer header and goes up the stack as the packet
/// inside, with the frame's MAC addresses; anything else passes untouched.
#[inline(always)]
pub fn decap(ctx: &XdpContext) -> u32 {
    const FRAG_BE: u16 = 0x3fffu16.to_be();
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 + 20 > end {
        return xdp_action::XDP_PASS;
    }
    let (eth, ip) = (start as *const EthHdr, (start + ETH_HLEN) as *const Ipv4Hdr);
    // SAFETY: bounds-checked above.
    let (dmac, smac, ok) = unsafe {
        (
            (*eth).dst,
            (*eth).src,
            (*eth).proto == 0x0800u16.to_be()
                && (*ip).version_ihl == 0x45
                && (*ip).proto == IPPROTO_IPIP
                && (*ip).frag_off & FRAG_BE == 0,
        )
    };
    if !ok {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: a helper call on our context; pointers are derived and checked again below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, OVERHEAD as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN > end {
        return xdp_action::XDP_DROP;
    }
    let eth = start as *mut EthHdr;
    // SAFETY: bounds-checked above.
    unsafe {
        copy_mac(&mut (*eth).dst, &dmac);
        copy_mac(&mut (*eth).src, &smac);
        (*eth).proto = 0x0800u16.to_be();
    }
    xdp_action::XDP_PASS
}

/// The one's-complement sum of a 20-byte IPv4 header, as 16-bit words in memory order.
#[inline(always)]
fn header_sum(ip: *const Ipv4Hdr) -> u64 {
    let words = ip as *const u16;
    let mut sum = 0u64;
    for i in 0..10 {
        // SAFETY: the caller checked the 20 bytes are in the packet.
        sum += unsafe { *words.add(i) } as u64;
    }
    sum
}

#[inline(always)]
fn drop() -> u32 {
    stats::reason(Reason::DropEncap);
    xdp_action::XDP_DROP
}
