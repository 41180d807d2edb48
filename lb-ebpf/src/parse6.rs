//! IPv6 header parsing: the fixed header, then at most [`MAX_EXT`] extension headers
//! (hop-by-hop, routing with no segment left, destination options) before TCP or UDP. A
//! fragment header, any other next header, a truncated header at any boundary, more extension
//! headers than that: reported as a [`Reason`] and passed to the kernel untouched, as `parse`
//! does for IPv4. ICMPv6 is read only when it is an error quoting a TCP or UDP packet
//! (neighbour discovery and the rest belong to the kernel).
use aya_ebpf::programs::XdpContext;
use lb_common::{Addr6, PROTO_TCP, PROTO_UDP, Reason};

use crate::maps::LB6_SCRATCH;
use crate::parse::{ETH_HLEN, EthHdr, IcmpHdr, PacketOf, ParsedOf, TcpHead, UdpHdr, l4, ptr_at};

pub const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
pub const IPV6_HLEN: usize = 40;
const NEXT_HOPOPTS: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DSTOPTS: u8 = 60;
pub const ICMPV6: u8 = 58;
/// Extension headers walked before giving up (`pass_ipv6_ext_headers`).
const MAX_EXT: usize = 4;

pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// An ICMPv6 error is handled in its common shape only: no extension header outside or in
/// the quote, so every field sits at a fixed offset.
pub const ICMP6_OFF: usize = ETH_HLEN + IPV6_HLEN;
pub const ICMP6_INNER_IP_OFF: usize = ICMP6_OFF + 8;
pub const ICMP6_INNER_L4_OFF: usize = ICMP6_INNER_IP_OFF + IPV6_HLEN;

#[repr(C)]
pub struct Ipv6Hdr {
    /// Version, traffic class, flow label.
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub next: u8,
    pub hop_limit: u8,
    pub src: Addr6,
    pub dst: Addr6,
}

/// An extension header's first bytes: the next header and the length in 8-byte units past
/// the first 8; for a routing header, its type and the segments left.
#[repr(C)]
struct ExtHdr {
    next: u8,
    len: u8,
    routing_type: u8,
    segments_left: u8,
}

pub type Packet6 = PacketOf<Ipv6Hdr>;
pub type Parsed6 = ParsedOf<Ipv6Hdr, Icmp6>;

/// An ICMPv6 error quoting a TCP or UDP packet is in the frame: `icmp6::translate` reads it
/// again ([`icmp6_error`]; its offsets are fixed), so that its pointers stay off the packet
/// path's frame.
pub struct Icmp6;

/// An ICMPv6 destination-unreachable, packet-too-big or time-exceeded message quoting a TCP
/// or UDP packet: the quoted IPv6 header and at least its ports are in the frame.
pub struct Icmp6Error {
    pub eth: *mut EthHdr,
    pub ip: *mut Ipv6Hdr,
    pub icmp: *mut IcmpHdr,
    pub inner: *mut Ipv6Hdr,
    pub inner_ports: *mut [u16; 2],
    /// The quoted L4 checksum when the quote reaches it, else null.
    pub inner_check: *mut u16,
    pub inner_proto: u8,
}

/// Whether the frame's Ethernet type is IPv6 (a frame too short for a header is not).
#[inline(always)]
pub fn is_ipv6(ctx: &XdpContext) -> bool {
    // SAFETY: bounds-checked by `ptr_at`.
    ptr_at::<EthHdr>(ctx, 0).is_some_and(|eth| unsafe { (*eth).proto } == ETH_P_IPV6_BE)
}

#[inline(always)]
pub fn parse6(ctx: &XdpContext) -> Result<Parsed6, Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Reason::PassMalformed)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, ETH_HLEN).ok_or(Reason::PassMalformed)?;
    // SAFETY: every dereference is of a pointer `ptr_at` bounds-checked against `data_end`.
    if unsafe { *ip.cast::<u8>() } >> 4 != 6 {
        return Err(Reason::PassMalformed);
    }
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    // The packet must fit in the frame (trailing Ethernet padding is fine); a jumbogram's
    // zero length is not handled.
    let payload = u16::from_be(unsafe { (*ip).payload_len }) as usize;
    if payload == 0 || ETH_HLEN + IPV6_HLEN + payload > frame_len as usize {
        return Err(Reason::PassMalformed);
    }
    let mut next = unsafe { (*ip).next };
    let mut off = ETH_HLEN + IPV6_HLEN;
    for _ in 0..MAX_EXT {
        match next {
            NEXT_HOPOPTS | NEXT_ROUTING | NEXT_DSTOPTS => {
                let ext: *mut ExtHdr = ptr_at(ctx, off).ok_or(Reason::PassMalformed)?;
                // A routing header with segments left sends the packet on to another node:
                // the kernel's business.
                if next == NEXT_ROUTING && unsafe { (*ext).segments_left } != 0 {
                    return Err(Reason::PassExtHeaders);
                }
                next = unsafe { (*ext).next };
                off += (unsafe { (*ext).len } as usize + 1) * 8;
            }
            _ => break,
        }
    }
    let off = settle(off).ok_or(Reason::PassExtHeaders)?;
    let l4_len = (ETH_HLEN + IPV6_HLEN + payload)
        .checked_sub(off)
        .ok_or(Reason::PassMalformed)?;
    match next {
        PROTO_TCP | PROTO_UDP => {
            let pkt = l4(ctx, eth, ip, next, off, l4_len, frame_len)?;
            // IPv6 has no checksum-less UDP (RFC 8200 8.1): such a packet is not ours to fix.
            // SAFETY: `l4` bounds-checked the checksum field.
            if next == PROTO_UDP && unsafe { *pkt.l4_check } == 0 {
                return Err(Reason::PassMalformed);
            }
            Ok(ParsedOf::Flow(pkt))
        }
        ICMPV6 if off == ETH_HLEN + IPV6_HLEN => match icmp6_error(ctx) {
            Some(_) => Ok(ParsedOf::Icmp(Icmp6)),
            None => Err(Reason::PassNotL4),
        },
        NEXT_FRAGMENT => Err(Reason::PassFragment),
        NEXT_HOPOPTS | NEXT_ROUTING | NEXT_DSTOPTS => Err(Reason::PassExtHeaders),
        _ => Err(Reason::PassNotL4),
    }
}

/// The furthest the walk reaches: every extension header at its longest.
const MAX_L4_OFF: usize = ETH_HLEN + IPV6_HLEN + MAX_EXT * 2048;

/// `off` as the verifier will see it from here on, whichever way the walk went: read back
/// from this CPU's scratch (an unknown number to the verifier), bounded. Without this, the
/// rest of the path is verified once per number of extension headers, past its budget.
#[inline(always)]
fn settle(off: usize) -> Option<usize> {
    let scratch = LB6_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch entry; volatile so that the value goes through it.
    let off = unsafe {
        core::ptr::write_volatile(&mut (*scratch).l4_off, off as u32);
        core::ptr::read_volatile(&(*scratch).l4_off)
    } as usize;
    (off <= MAX_L4_OFF).then_some(off)
}

/// An ICMPv6 error in the shape [`Icmp6Error`] handles; anything else (neighbour discovery,
/// echo, an error quoting something else) is the kernel's.
#[inline(always)]
pub fn icmp6_error(ctx: &XdpContext) -> Option<Icmp6Error> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, ETH_HLEN)?;
    let icmp: *mut IcmpHdr = ptr_at(ctx, ICMP6_OFF)?;
    // SAFETY: bounds-checked by `ptr_at`, as everything below.
    let kind = unsafe { (*icmp).kind };
    if unsafe { (*ip).next } != ICMPV6
        || !matches!(
            kind,
            ICMPV6_DEST_UNREACH | ICMPV6_PACKET_TOO_BIG | ICMPV6_TIME_EXCEEDED
        )
    {
        return None;
    }
    let inner: *mut Ipv6Hdr = ptr_at(ctx, ICMP6_INNER_IP_OFF)?;
    let inner_proto = unsafe { (*inner).next };
    let inner_ports: *mut [u16; 2] = ptr_at(ctx, ICMP6_INNER_L4_OFF)?;
    let inner_check = match inner_proto {
        PROTO_UDP => ptr_at::<UdpHdr>(ctx, ICMP6_INNER_L4_OFF)
            .map(|u| unsafe { core::ptr::addr_of_mut!((*u).check) })?,
        PROTO_TCP => ptr_at::<TcpHead>(ctx, ICMP6_INNER_L4_OFF)
            .map_or(core::ptr::null_mut(), |t| unsafe {
                core::ptr::addr_of_mut!((*t).check)
            }),
        _ => return None,
    };
    Some(Icmp6Error {
        eth,
        ip,
        icmp,
        inner,
        inner_ports,
        inner_check,
        inner_proto,
    })
}
