//! Address and port rewriting with incremental checksum updates (helpers in `lb_common::csum`).
use lb_common::{PROTO_UDP, csum::Delta};

use crate::parse::Packet;

/// The four fields NAT may change, all in network byte order.
#[derive(Clone, Copy)]
pub struct Tuple {
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
}

/// Rewrites the packet's addresses and ports to `to`, fixing the IPv4 header checksum and the
/// TCP/UDP checksum (pseudo-header and ports). A UDP checksum of zero stays zero.
#[inline(always)]
pub fn rewrite(pkt: &Packet, to: Tuple) {
    let ip = pkt.ip;
    let ports = pkt.ports;
    // SAFETY: `parse` bounds-checked the IPv4 header, the ports and the L4 checksum field.
    unsafe {
        let addrs = Delta::ZERO.u32((*ip).src, to.src).u32((*ip).dst, to.dst);
        let l4 = addrs.u16((*ports)[0], to.sport).u16((*ports)[1], to.dport);
        (*ip).check = addrs.apply((*ip).check);
        let check = *pkt.l4_check;
        *pkt.l4_check = if pkt.proto == PROTO_UDP {
            l4.apply_udp(check)
        } else {
            l4.apply(check)
        };
        (*ip).src = to.src;
        (*ip).dst = to.dst;
        (*ports)[0] = to.sport;
        (*ports)[1] = to.dport;
    }
}
