//! Direct server return over IP-in-IP: the client's packet goes to its server unchanged,
//! inside an outer header from lb's address towards the server: IPv4 (protocol 4, RFC 2003)
//! for IPv4, IPv6 (next header 41, RFC 2473) for IPv6. The server's tunnel device (`tunl0`,
//! `ip6tnl0`) takes the outer header off, finds the VIP on its loopback and answers the
//! client directly: replies never come back through lb.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use lb_common::{Addr6, NextHop, Reason, csum::fold};

use crate::{
    family::swap6,
    forward::copy_mac,
    parse::{ETH_HLEN, EthHdr, Ipv4Hdr},
    parse6::{ETH_P_IPV6_BE, IPV6_HLEN, Ipv6Hdr},
    stats,
    verdict::GO_ON,
};

/// IPv4's protocol number for IPv4 inside (RFC 2003).
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6's next header for IPv6 inside (RFC 2473).
pub const IPPROTO_IPV6: u8 = 41;
/// Bytes the outer header adds: what a packet must leave under the path's MTU.
pub const OVERHEAD: u16 = 20;
/// The same for IPv6's outer header (no extension headers: no encapsulation limit option).
pub const OVERHEAD6: u16 = IPV6_HLEN as u16;

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
    send(ctx, nh, routed)
}

/// Sends an encapsulated packet on: to the kernel if `routed` is a reason, else through the
/// next hop at `nh` (a map value).
#[inline(always)]
fn send(ctx: &XdpContext, nh: *const NextHop, routed: u32) -> u32 {
    if routed != GO_ON {
        stats::reason(if routed == Reason::PassTooBig as u32 {
            Reason::PassTooBig
        } else if routed == Reason::PassNoNeigh as u32 {
            Reason::PassNoNeigh
        } else {
            Reason::PassFibOther
        });
        return xdp_action::XDP_PASS;
    }
    // SAFETY: `nh` points into a map value.
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

/// [`encap`] for IPv6: puts the packet inside an IPv6 header (next header 41) from `*src` to
/// `*dst` (map memory or the caller's stack, read after the head moved) and sends it as
/// [`encap`] does. The outer header copies the inner traffic class and flow label (routers
/// on the way hash the flow as they would the packet alone); hop limit 64.
///
/// A subprogram that moves the packet's head: the caller returns this action at once.
#[inline(never)]
pub fn encap6(
    ctx: &XdpContext,
    src: *const Addr6,
    dst: *const Addr6,
    nh: *const NextHop,
    routed: u32,
) -> u32 {
    // SAFETY: a helper call on our context; every pointer is derived and checked below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(OVERHEAD6 as i32)) } != 0 {
        return drop();
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 2 * IPV6_HLEN > end {
        return drop();
    }
    let eth = start as *mut EthHdr;
    let old_eth = (start + IPV6_HLEN) as *const EthHdr;
    let outer = (start + ETH_HLEN) as *mut Ipv6Hdr;
    let inner = (start + ETH_HLEN + IPV6_HLEN) as *const Ipv6Hdr;
    // SAFETY: within [start, start + 94), checked above; `nh`, `src`, `dst` point to map
    // values or the caller's stack. The old Ethernet header (bytes 40..54) is read before the
    // outer header (14..54) covers it.
    unsafe {
        if routed != GO_ON {
            // As it came: addressed to this host, for the kernel to route.
            copy_mac(&mut (*eth).dst, &(*old_eth).dst);
            copy_mac(&mut (*eth).src, &(*old_eth).src);
        } else {
            copy_mac(&mut (*eth).dst, &(*nh).dmac);
            copy_mac(&mut (*eth).src, &(*nh).smac);
        }
        (*eth).proto = ETH_P_IPV6_BE;
        (*outer).vtc_flow = (*inner).vtc_flow;
        (*outer).payload_len = u16::from_be((*inner).payload_len)
            .wrapping_add(OVERHEAD6)
            .to_be();
        (*outer).next = IPPROTO_IPV6;
        (*outer).hop_limit = 64;
        // No header checksum in IPv6: the change each swap reports is not needed.
        swap6(&raw mut (*outer).src, src, lb_common::csum::Delta::ZERO);
        swap6(&raw mut (*outer).dst, dst, lb_common::csum::Delta::ZERO);
    }
    send(ctx, nh, routed)
}

/// The server's side, for kernels without `ipip` (or `ip6_tunnel`): an IPIP packet (outer
/// header without options, not a fragment) or an IPv6-in-IPv6 one (no extension header in
/// the outer header) loses its outer header and goes up the stack as the packet inside,
/// with the frame's MAC addresses; anything else passes untouched.
#[inline(always)]
pub fn decap(ctx: &XdpContext) -> u32 {
    const FRAG_BE: u16 = 0x3fffu16.to_be();
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 + 20 > end {
        return xdp_action::XDP_PASS;
    }
    let (eth, ip) = (start as *const EthHdr, (start + ETH_HLEN) as *const Ipv4Hdr);
    // SAFETY: bounds-checked above.
    let (dmac, smac, proto) = unsafe { ((*eth).dst, (*eth).src, (*eth).proto) };
    let overhead = if proto == 0x0800u16.to_be() {
        // SAFETY: bounds-checked above.
        let ipip = unsafe {
            (*ip).version_ihl == 0x45
                && (*ip).proto == IPPROTO_IPIP
                && (*ip).frag_off & FRAG_BE == 0
        };
        if !ipip {
            return xdp_action::XDP_PASS;
        }
        OVERHEAD
    } else if proto == ETH_P_IPV6_BE {
        if start + ETH_HLEN + 2 * IPV6_HLEN > end {
            return xdp_action::XDP_PASS;
        }
        let ip6 = (start + ETH_HLEN) as *const Ipv6Hdr;
        // SAFETY: bounds-checked just above.
        if unsafe { (*ip6).next } != IPPROTO_IPV6 {
            return xdp_action::XDP_PASS;
        }
        OVERHEAD6
    } else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a helper call on our context; pointers are derived and checked again below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, overhead as i32) } != 0 {
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
        // The family inside is the family outside.
        (*eth).proto = proto;
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
