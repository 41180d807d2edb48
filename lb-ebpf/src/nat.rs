//! Address and port rewriting with incremental checksum updates (helpers in `lb_common::csum`).
use lb_common::PROTO_UDP;

use crate::{family::IpHdr, parse::PacketOf};

/// The four fields NAT may change, all in network byte order; `A` is the address
/// (`lb_common::addr`). Laid out as a flow entry starts (`FlowOf`), so an entry's rewrite can
/// be read where it is.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TupleOf<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
}

pub type Tuple = TupleOf<u32>;

const _: () = {
    use core::mem::offset_of;
    use lb_common::{Addr6, FlowOf};
    assert!(offset_of!(TupleOf<u32>, dport) == offset_of!(FlowOf<u32>, dport));
    assert!(offset_of!(TupleOf<Addr6>, dport) == offset_of!(FlowOf<Addr6>, dport));
    assert!(offset_of!(TupleOf<Addr6>, sport) == offset_of!(FlowOf<Addr6>, sport));
    assert!(offset_of!(TupleOf<Addr6>, dst) == offset_of!(FlowOf<Addr6>, dst));
};

/// Rewrites the packet's addresses and ports to `to`, fixing the IPv4 header checksum (IPv6
/// has none) and the TCP/UDP checksum (pseudo-header and ports). A UDP checksum of zero stays
/// zero (IPv4's "none"; IPv6 packets with one are not parsed as ours).
#[inline(always)]
pub fn rewrite<H: IpHdr>(pkt: &PacketOf<H>, to: &TupleOf<H::A>) {
    let ports = pkt.ports;
    // SAFETY: `parse` bounds-checked the IP header, the ports and the L4 checksum field.
    unsafe {
        let addrs = H::set_addrs(pkt.ip, &to.src, &to.dst);
        let l4 = addrs.u16((*ports)[0], to.sport).u16((*ports)[1], to.dport);
        let check = *pkt.l4_check;
        *pkt.l4_check = if pkt.proto == PROTO_UDP {
            l4.apply_udp(check)
        } else {
            l4.apply(check)
        };
        (*ports)[0] = to.sport;
        (*ports)[1] = to.dport;
    }
}
