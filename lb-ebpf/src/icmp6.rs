//! ICMPv6 for tracked IPv6 flows, as `icmp` does for IPv4:
//! - an ICMPv6 error (destination unreachable, packet too big, time exceeded) about a packet
//!   of a tracked flow is translated back to the flow's addresses on the other side and
//!   forwarded there; ICMPv6's checksum covers the pseudo-header, so the outer addresses'
//!   change goes into it too; one about a direct-server-return server's reply goes to that
//!   server unchanged, inside the tunnel;
//! - a packet too big for its next hop is answered here with "packet too big" (IPv6 routers
//!   never fragment, whatever the packet says).
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{
    Addr6, FLOW_F_DSR, Flow6, PROTO_UDP, Reason,
    csum::{Delta, fold, pseudo6},
};

use crate::{
    conntrack,
    family::{Addr, swap6},
    forward::{self, Frame},
    ipip,
    nat::TupleOf,
    parse::{ETH_HLEN, EthHdr, IcmpHdr},
    parse6::{
        ETH_P_IPV6_BE, ICMP6_INNER_IP_OFF, ICMP6_OFF, ICMPV6, ICMPV6_PACKET_TOO_BIG, IPV6_HLEN,
        Icmp6Error, Ipv6Hdr, Packet6, icmp6_error,
    },
    stats,
    verdict::GO_ON,
};

#[inline(always)]
fn pass(r: Reason) -> u32 {
    stats::reason(r);
    xdp_action::XDP_PASS
}

/// An ICMPv6 error: translated and forwarded if it is about one of our flows, else passed.
/// A subprogram called by `lb_xdp6` (the context by value, see `lb6`); its key is in this
/// CPU's scratch and the addresses are read where they are, the stack being short.
#[inline(never)]
pub fn translate(ctx: XdpContext, now: u32) -> u32 {
    let ctx = &ctx;
    let Some(e) = icmp6_error(ctx) else {
        return pass(Reason::PassNotL4);
    };
    let e = &e;
    // SAFETY: every pointer in `e` was bounds-checked by `icmp6_error`.
    let (inner, [isport, idport]) = unsafe { (&mut *e.inner, *e.inner_ports) };
    // The quoted packet went the other way: its reverse is a packet of the flow as we track it.
    let ports = (idport, isport);
    Addr6::with_key(inner.dst, inner.src, ports, e.inner_proto, |key| {
        let Some((entry, table)) = conntrack::lookup(key) else {
            return pass(Reason::PassNotService);
        };
        // SAFETY: an LRU value, read in place (a racing update at worst mixes two answers
        // for one error message).
        let f = unsafe { &*entry };
        if conntrack::expired(f, key, table, now) {
            return pass(Reason::PassNotService);
        }
        // About a direct-server-return server's reply (sent from the VIP, which routes here):
        // it goes to the server as it is, inside the tunnel, as IPv4's `icmp::to_dsr_server`.
        let dsr = f.flags & FLOW_F_DSR != 0;
        if !dsr {
            rewrite(e, f);
        }
        stats::reason(Reason::IcmpTranslated);
        let frame = Frame {
            eth: e.eth,
            ip: e.ip,
            proto: ICMPV6,
        };
        // The FIB's question (the outer addresses as rewritten, or the tunnel's ends; no
        // ports) in this CPU's scratch: 40 bytes the stack has not got. Its `fwd` entry is
        // free: no flow starts here.
        let Some(scratch) = Addr6::scratch() else {
            return pass(Reason::PassNotService);
        };
        // SAFETY: this CPU's scratch; `TupleOf` is laid out as a flow entry starts.
        let to = unsafe { &mut *(&raw mut (*scratch).fwd).cast::<TupleOf<Addr6>>() };
        // SAFETY: as above; `f` is a live map value.
        unsafe {
            if dsr {
                swap6(&mut to.src, &f.src, Delta::ZERO);
                swap6(&mut to.dst, &f.dst, Delta::ZERO);
            } else {
                swap6(&mut to.src, &(*e.ip).src, Delta::ZERO);
                swap6(&mut to.dst, &(*e.ip).dst, Delta::ZERO);
            }
        }
        to.sport = 0;
        to.dport = 0;
        // SAFETY: `entry` is a live map value.
        let nh = unsafe { &mut (*entry).nh };
        if dsr {
            let routed = forward::route(ctx, &frame, to, nh, now);
            // Moves the head: nothing reads the packet after it.
            return ipip::encap6(ctx, &f.src, &f.dst, nh, routed);
        }
        match forward::route(ctx, &frame, to, nh, now) {
            GO_ON => forward::send(ctx, &frame, nh),
            routed => forward::unrouted(routed),
        }
    })
}

/// Turns the error around for the flow's other side: the quoted packet becomes what that
/// side sent (the entry `f`'s rewrite, turned around), the outer header goes to that side,
/// and if it came from the peer itself it now comes from the address that side talks to.
#[inline(always)]
fn rewrite(e: &Icmp6Error, f: &Flow6) {
    // SAFETY: every pointer in `e` was bounds-checked by `parse6`; `f` is a live map value.
    unsafe {
        let (ip, inner) = (e.ip, e.inner);
        let from_peer = (*ip).src == (*inner).dst;
        let mut icmp = swap6(&raw mut (*ip).dst, &f.dst, Delta::ZERO);
        if from_peer {
            icmp = swap6(&raw mut (*ip).src, &f.src, icmp);
        }
        let [isport, idport] = *e.inner_ports;
        let quote = swap6(&raw mut (*inner).src, &f.dst, Delta::ZERO);
        let quote = swap6(&raw mut (*inner).dst, &f.src, quote)
            .u16(isport, f.dport)
            .u16(idport, f.sport);
        *e.inner_ports = [f.dport, f.sport];
        // The ICMPv6 checksum covers the pseudo-header and every quoted byte that changes.
        icmp = icmp.plus(quote);
        if !e.inner_check.is_null() {
            let old = *e.inner_check;
            let new = if e.inner_proto == PROTO_UDP {
                quote.apply_udp(old)
            } else {
                quote.apply(old)
            };
            icmp = icmp.u16(old, new);
            *e.inner_check = new;
        }
        (*e.icmp).check = icmp.apply((*e.icmp).check);
    }
}

/// What "packet too big" quotes: the IPv6 header and the first 8 bytes after it (the ports,
/// without extension headers), what the sender needs to find its connection. RFC 4443 lets
/// it quote more; a fixed size keeps every offset known to the verifier.
const QUOTE: usize = IPV6_HLEN + 8;
const ANSWER_PAYLOAD: usize = 8 + QUOTE;
const ANSWER_LEN: usize = ETH_HLEN + IPV6_HLEN + ANSWER_PAYLOAD;
const _: () = assert!(ICMP6_INNER_IP_OFF + QUOTE == ANSWER_LEN);

/// Answers `pkt` (not rewritten), too big for its next hop's `mtu`, with ICMPv6 "packet too
/// big" back out of the interface it came in on, from the address it was sent to: the
/// action. A subprogram: rare, and it moves the packet's head, so the verifier forgets every
/// packet pointer the caller holds: the caller must return its action.
#[inline(never)]
pub fn too_big(ctx: &XdpContext, _pkt: &Packet6, mtu: u16) -> u32 {
    let old_len = ctx.data_end() - ctx.data();
    // Room in front for the new IPv6 and ICMPv6 headers; the original headers stay where they
    // are and become the quote.
    const ROOM: i32 = (IPV6_HLEN + 8) as i32;
    // SAFETY: helper calls on our context; every pointer is re-derived and checked after.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -ROOM) != 0 {
            return drop_too_big();
        }
        let shrink = (old_len as i32 + ROOM) - ANSWER_LEN as i32;
        if shrink > 0 && bpf_xdp_adjust_tail(ctx.ctx, -shrink) != 0 {
            return drop_too_big();
        }
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ANSWER_LEN > end {
        return drop_too_big();
    }
    let eth = start as *mut EthHdr;
    let ip = (start + ETH_HLEN) as *mut Ipv6Hdr;
    let icmp = (start + ICMP6_OFF) as *mut IcmpHdr;
    // The packet's own headers, where they now are: read from there rather than kept across
    // the helper calls (the stack has no room for two addresses).
    let old_eth = (start + ROOM as usize) as *const EthHdr;
    let quote = (start + ICMP6_INNER_IP_OFF) as *const Ipv6Hdr;
    // SAFETY: all within [start, start + ANSWER_LEN), checked above.
    unsafe {
        forward::copy_mac(&mut (*eth).dst, &(*old_eth).src);
        forward::copy_mac(&mut (*eth).src, &(*old_eth).dst);
        (*eth).proto = ETH_P_IPV6_BE;
        // Field by field: a whole header built first would cost the frame its 40 bytes.
        (*ip).vtc_flow = 0x6000_0000u32.to_be();
        (*ip).payload_len = (ANSWER_PAYLOAD as u16).to_be();
        (*ip).next = ICMPV6;
        (*ip).hop_limit = 64;
        swap6(&mut (*ip).src, &(*quote).dst, Delta::ZERO);
        swap6(&mut (*ip).dst, &(*quote).src, Delta::ZERO);
        *icmp = IcmpHdr {
            kind: ICMPV6_PACKET_TOO_BIG,
            code: 0,
            check: 0,
            rest: (mtu as u32).to_be(),
        };
        let body = bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            icmp.cast(),
            ANSWER_PAYLOAD as u32,
            0,
        ) as u32 as u64;
        let pseudo = pseudo6((*ip).src, (*ip).dst, ANSWER_PAYLOAD as u32, ICMPV6);
        (*icmp).check = !fold(pseudo + body);
    }
    stats::reason(Reason::TxPacketTooBig);
    xdp_action::XDP_TX
}

#[inline(always)]
fn drop_too_big() -> u32 {
    stats::reason(Reason::DropTooBig);
    xdp_action::XDP_DROP
}
