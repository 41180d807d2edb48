//! ICMP for tracked flows, both ways, so path-MTU discovery and error reporting work through
//! lb as they do through Linux's NAT:
//! - an ICMP error about a packet of a tracked flow (a router on the server's side says
//!   "fragmentation needed", a server says "port unreachable", a router towards the client
//!   says "time exceeded") is translated back to the flow's addresses on the other side and
//!   forwarded there (Katran does the same for the client side);
//! - a packet too big for its next hop with DF set is answered here with "fragmentation
//!   needed", from the address it was sent to, instead of vanishing in a redirect.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{FLOW_F_DSR, Reason, csum::Delta, csum::fold};

use crate::{
    conntrack,
    forward::{self, Frame},
    ipip,
    nat::Tuple,
    parse::{
        ETH_HLEN, EthHdr, ICMP, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_INNER_IP_OFF, ICMP_OFF,
        IcmpError, IcmpHdr, Ipv4Hdr, Packet,
    },
    stats,
    verdict::GO_ON,
};

// The quote is the original IPv4 header (no options) and 8 bytes, right after the ICMP header.
const _: () = assert!(ICMP_INNER_IP_OFF + QUOTE == ANSWER_LEN);

#[inline(always)]
fn pass(r: Reason) -> u32 {
    stats::reason(r);
    xdp_action::XDP_PASS
}

/// An ICMP error: translated and forwarded if it is about one of our flows, else passed.
/// A subprogram (see `path::process`).
#[inline(never)]
pub fn translate(ctx: &XdpContext, e: &IcmpError, now: u32) -> u32 {
    // SAFETY: every pointer in `e` was bounds-checked by `parse`.
    let (isrc, idst, [isport, idport]) =
        unsafe { ((*e.inner).src, (*e.inner).dst, *e.inner_ports) };
    // The quoted packet went the other way: its reverse is a packet of the flow as we track it.
    let key = lb_common::FlowKey::new(idst, isrc, idport, isport, e.inner_proto);
    let Some((entry, table)) = conntrack::lookup(&key) else {
        return pass(Reason::PassNotService);
    };
    // SAFETY: an LRU value, copied.
    let f = unsafe { *entry };
    if conntrack::expired(&f, &key, table, now) {
        return pass(Reason::PassNotService);
    }
    if f.flags & FLOW_F_DSR != 0 {
        // About a packet the server sent the client directly (from the VIP): the error is
        // the server's to hear (path MTU towards the client), as it is, through the tunnel.
        return to_dsr_server(ctx, e, &f, entry, now);
    }
    // The quoted packet becomes what the other side sent (the entry's rewrite, turned
    // around); the outer header goes to that side, and if it came from the peer itself it now
    // comes from the address that side talks to.
    let inner = Tuple {
        src: f.dst,
        sport: f.dport,
        dst: f.src,
        dport: f.sport,
    };
    // SAFETY: as above.
    unsafe {
        let (osrc, odst) = ((*e.ip).src, (*e.ip).dst);
        let new_osrc = if osrc == idst { f.src } else { osrc };
        let outer = Delta::ZERO.u32(osrc, new_osrc).u32(odst, f.dst);
        (*e.ip).check = outer.apply((*e.ip).check);
        (*e.ip).src = new_osrc;
        (*e.ip).dst = f.dst;

        let addrs = Delta::ZERO.u32(isrc, inner.src).u32(idst, inner.dst);
        let ports = Delta::ZERO
            .u16(isport, inner.sport)
            .u16(idport, inner.dport);
        let old_ic = (*e.inner).check;
        let new_ic = addrs.apply(old_ic);
        // The ICMP checksum covers every quoted byte that changes.
        let mut icmp = addrs.plus(ports).u16(old_ic, new_ic);
        if !e.inner_check.is_null() {
            let old = *e.inner_check;
            let new = if e.inner_proto == lb_common::PROTO_UDP {
                addrs.plus(ports).apply_udp(old)
            } else {
                addrs.plus(ports).apply(old)
            };
            icmp = icmp.u16(old, new);
            *e.inner_check = new;
        }
        (*e.icmp).check = icmp.apply((*e.icmp).check);
        (*e.inner).check = new_ic;
        (*e.inner).src = inner.src;
        (*e.inner).dst = inner.dst;
        *e.inner_ports = [inner.sport, inner.dport];
    }
    stats::reason(Reason::IcmpTranslated);
    let frame = Frame {
        eth: e.eth,
        ip: e.ip,
        proto: ICMP,
    };
    let to = Tuple {
        // SAFETY: as above.
        src: unsafe { (*e.ip).src },
        sport: 0,
        dst: f.dst,
        dport: 0,
    };
    // SAFETY: `entry` is a live map value.
    let nh = unsafe { &mut (*entry).nh };
    match forward::route(ctx, &frame, &to, nh, now) {
        GO_ON => forward::send(ctx, &frame, nh),
        routed => forward::unrouted(routed),
    }
}

/// Sends an ICMP error about a direct-server-return flow to its server, inside IPIP (as
/// `ipip::encap` returns: the caller returns at once).
#[inline(always)]
fn to_dsr_server(
    ctx: &XdpContext,
    e: &IcmpError,
    f: &lb_common::Flow,
    entry: *mut lb_common::Flow,
    now: u32,
) -> u32 {
    let frame = Frame {
        eth: e.eth,
        ip: e.ip,
        proto: ICMP,
    };
    let to = Tuple {
        src: f.src,
        sport: 0,
        dst: f.dst,
        dport: 0,
    };
    // SAFETY: `entry` is a live map value.
    let nh = unsafe { &mut (*entry).nh };
    let routed = forward::route(ctx, &frame, &to, nh, now);
    stats::reason(Reason::IcmpTranslated);
    ipip::encap(ctx, f.src, f.dst, nh, routed)
}

/// Bytes of the answer: Ethernet, IPv4, ICMP, and the quoted IPv4 header with 8 bytes of
/// its payload (RFC 792).
const QUOTE: usize = 20 + 8;
const ANSWER_IP_LEN: usize = 20 + 8 + QUOTE;
const ANSWER_LEN: usize = ETH_HLEN + ANSWER_IP_LEN;

/// Whether a packet too big for its path is answered here ([`too_big`]): DF set and no IP
/// options (with options the quote would not sit at a fixed offset). Otherwise the caller
/// rewrites it and lets the kernel fragment it, or answer.
#[inline(always)]
pub fn answers_too_big(pkt: &Packet) -> bool {
    const DF_BE: u16 = 0x4000u16.to_be();
    // SAFETY: the IPv4 header was bounds-checked by `parse`.
    unsafe { (*pkt.ip).frag_off & DF_BE != 0 && (*pkt.ip).version_ihl & 0x0f == 5 }
}

/// Answers `pkt` (not rewritten, [`answers_too_big`]), too big for its next hop's `mtu`,
/// with "fragmentation needed" back out of the interface it came in on: the action. A
/// subprogram: rare, and it moves the packet's head, so the verifier forgets every packet
/// pointer the caller holds: the caller must return its action.
#[inline(never)]
pub fn too_big(ctx: &XdpContext, pkt: &Packet, mtu: u16) -> u32 {
    // SAFETY: the headers were bounds-checked by `parse`.
    let (src, dst, smac, dmac) =
        unsafe { ((*pkt.ip).src, (*pkt.ip).dst, (*pkt.eth).src, (*pkt.eth).dst) };
    let old_len = ctx.data_end() - ctx.data();
    // Room in front for the new IPv4 and ICMP headers; the original headers stay where they
    // are and become the quote.
    // SAFETY: helper calls on our context; every pointer is re-derived and checked after.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -(28i32)) != 0 {
            return drop_too_big();
        }
        let shrink = (old_len + 28) as i32 - ANSWER_LEN as i32;
        if shrink > 0 && bpf_xdp_adjust_tail(ctx.ctx, -shrink) != 0 {
            return drop_too_big();
        }
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ANSWER_LEN > end {
        return drop_too_big();
    }
    let eth = start as *mut EthHdr;
    let ip = (start + ETH_HLEN) as *mut Ipv4Hdr;
    let icmp = (start + ICMP_OFF) as *mut IcmpHdr;
    // SAFETY: all within [start, start + ANSWER_LEN), checked above.
    unsafe {
        forward::copy_mac(&mut (*eth).dst, &smac);
        forward::copy_mac(&mut (*eth).src, &dmac);
        (*eth).proto = 0x0800u16.to_be();
        *ip = Ipv4Hdr {
            version_ihl: 0x45,
            tos: 0,
            tot_len: (ANSWER_IP_LEN as u16).to_be(),
            id: 0,
            frag_off: 0,
            ttl: 64,
            proto: ICMP,
            check: 0,
            src: dst,
            dst: src,
        };
        (*ip).check = !fold(csum(ip.cast(), 20));
        *icmp = IcmpHdr {
            kind: ICMP_DEST_UNREACH,
            code: ICMP_FRAG_NEEDED,
            check: 0,
            rest: (mtu as u32).to_be(),
        };
        (*icmp).check = !fold(csum(icmp.cast(), 8 + QUOTE));
    }
    stats::reason(Reason::TxFragNeeded);
    xdp_action::XDP_TX
}

#[inline(always)]
fn drop_too_big() -> u32 {
    stats::reason(Reason::DropTooBig);
    xdp_action::XDP_DROP
}

/// The one's-complement sum of `len` bytes (a multiple of 4) at `p`.
#[inline(always)]
fn csum(p: *mut u32, len: usize) -> u64 {
    // SAFETY: the caller checked `p..p + len` is inside the packet.
    unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p, len as u32, 0) as u32 as u64 }
}
