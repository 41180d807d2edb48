//! Header parsing. Anything this module does not fully understand is reported as a
//! [`Reason`] and passed to the kernel untouched.
//!
//! Headers are read through `#[repr(C)]` views at their natural offsets, as in the kernel's
//! own XDP samples: packet data is only 2-byte aligned, which the verifier and JIT accept on
//! the architectures XDP runs on.
use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use lb_common::{PROTO_TCP, PROTO_UDP, Reason};

use crate::family::IpHdr;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
/// More-fragments flag and fragment offset, network order.
const IP_FRAG_MASK_BE: u16 = 0x3fffu16.to_be();
const IP_MIN_HLEN: usize = 20;
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

use lb_common::conntrack::{TCP_ACK, TCP_FIN, TCP_SYN};

/// TCP option kinds and the longest walk through a SYN's options (40 bytes at most).
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_TIMESTAMP: u8 = 8;
const TCPOLEN_TIMESTAMP: u8 = 10;
const TCPOPT_STEPS: usize = 12;
const TCPOPT_MAX: usize = 40;

/// [`Packet::timestamp`]'s answer when there is one: the TSval is in the low 32 bits.
pub const TS_PRESENT: u64 = 1 << 32;

/// Walks TCP options (`opts[..len]`) for a well-formed timestamp option: its TSval with
/// [`TS_PRESENT`], or 0.
#[inline(always)]
fn options_timestamp(opts: &[u8; TCPOPT_MAX], len: usize) -> u64 {
    let mut off = 0usize;
    for _ in 0..TCPOPT_STEPS {
        if off >= len || off >= TCPOPT_MAX - 1 {
            return 0;
        }
        let kind = opts[off];
        if kind == TCPOPT_EOL {
            return 0;
        }
        if kind == TCPOPT_NOP {
            off += 1;
            continue;
        }
        let olen = opts[off + 1];
        if kind == TCPOPT_TIMESTAMP {
            // Through memory again, so that the verifier sees the bound on the register
            // that indexes the buffer.
            // SAFETY: a local.
            let at = unsafe { core::ptr::read_volatile(&off) };
            if olen != TCPOLEN_TIMESTAMP
                || at + TCPOLEN_TIMESTAMP as usize > len
                || at > TCPOPT_MAX - TCPOLEN_TIMESTAMP as usize
            {
                return 0;
            }
            let v = [opts[at + 2], opts[at + 3], opts[at + 4], opts[at + 5]];
            return TS_PRESENT | u32::from_be_bytes(v) as u64;
        }
        if olen < 2 {
            return 0;
        }
        off += olen as usize;
    }
    0
}

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}

/// The first 16 bytes of TCP, enough for ports, data offset and flags.
#[repr(C)]
pub struct TcpHead {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub doff_res: u8,
    pub flags: u8,
    pub window: u16,
    pub check: u16,
    pub urg: u16,
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
    pub check: u16,
}

/// A parsed TCP or UDP packet whose headers are all inside the frame, over IPv4 ([`Packet`])
/// or IPv6 ([`crate::parse6::Packet6`]): everything but the IP header is the same.
pub struct PacketOf<H> {
    pub eth: *mut EthHdr,
    pub ip: *mut H,
    /// Source and destination ports: the first 4 bytes of the L4 header.
    pub ports: *mut [u16; 2],
    /// The L4 checksum field.
    pub l4_check: *mut u16,
    pub proto: u8,
    /// TCP flags, 0 for UDP.
    pub tcp_flags: u8,
    /// Offset of the L4 header in the frame.
    pub l4_off: usize,
    /// TCP header length (data offset), 0 for UDP.
    pub tcp_hlen: usize,
    /// TCP sequence and acknowledgment numbers (host order), read while parsing, where the
    /// verifier knows the header is there; 0 for UDP.
    pub seq: u32,
    pub ack_seq: u32,
    /// Whole frame, for byte counters.
    pub frame_len: u32,
}

pub type Packet = PacketOf<Ipv4Hdr>;

/// What `parse` (IPv4) or `parse6` (IPv6, `E` its ICMPv6 error) found.
pub enum ParsedOf<H, E> {
    /// TCP or UDP: a packet a flow may own.
    Flow(PacketOf<H>),
    /// An ICMP error about a TCP or UDP packet: maybe about one of our flows.
    Icmp(E),
}

pub type Parsed = ParsedOf<Ipv4Hdr, IcmpError>;

#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    /// Unused, or (fragmentation needed) the next-hop MTU in the low half.
    pub rest: u32,
}

pub const ICMP: u8 = 1;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;
/// An ICMP error is handled only in its common shape: no IP options outside or inside, so
/// every field sits at a fixed offset the verifier can follow.
pub const ICMP_OFF: usize = ETH_HLEN + IP_MIN_HLEN;
pub const ICMP_INNER_IP_OFF: usize = ICMP_OFF + 8;
pub const ICMP_INNER_L4_OFF: usize = ICMP_INNER_IP_OFF + IP_MIN_HLEN;

/// An ICMP destination-unreachable or time-exceeded message quoting a TCP or UDP packet:
/// the quoted IP header and at least its ports are in the frame.
pub struct IcmpError {
    pub eth: *mut EthHdr,
    pub ip: *mut Ipv4Hdr,
    pub icmp: *mut IcmpHdr,
    pub inner: *mut Ipv4Hdr,
    pub inner_ports: *mut [u16; 2],
    /// The quoted L4 checksum, when the quote reaches it (always for UDP; for TCP when the
    /// router quoted the whole header, as Linux does); null otherwise.
    pub inner_check: *mut u16,
    pub inner_proto: u8,
}

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Reason::PassMalformed)?;
    // SAFETY: every dereference below is of a pointer `ptr_at` bounds-checked against
    // `data_end`, which is also what the verifier requires.
    if unsafe { (*eth).proto } != ETH_P_IP_BE {
        return Err(Reason::PassNotIpv4);
    }
    let ip: *mut Ipv4Hdr = ptr_at(ctx, ETH_HLEN).ok_or(Reason::PassMalformed)?;
    let version_ihl = unsafe { (*ip).version_ihl };
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IP_MIN_HLEN {
        return Err(Reason::PassMalformed);
    }
    let frame_len = (ctx.data_end() - ctx.data()) as u32;
    // The IP packet must fit in the frame (trailing Ethernet padding is fine).
    let tot_len = u16::from_be(unsafe { (*ip).tot_len }) as usize;
    if tot_len < ihl || ETH_HLEN + tot_len > frame_len as usize {
        return Err(Reason::PassMalformed);
    }
    if unsafe { (*ip).frag_off } & IP_FRAG_MASK_BE != 0 {
        return Err(Reason::PassFragment);
    }
    let proto = unsafe { (*ip).proto };
    let l4_off = ETH_HLEN + ihl;
    let l4_len = tot_len - ihl;
    match proto {
        PROTO_TCP | PROTO_UDP => {
            l4(ctx, eth, ip, proto, l4_off, l4_len, frame_len).map(Parsed::Flow)
        }
        ICMP if ihl == IP_MIN_HLEN => icmp_error(ctx, eth, ip).ok_or(Reason::PassNotL4),
        _ => Err(Reason::PassNotL4),
    }
}

/// The TCP or UDP header at `l4` (`l4_len` bytes of IP payload from there), either family.
#[inline(always)]
pub fn l4<H>(
    ctx: &XdpContext,
    eth: *mut EthHdr,
    ip: *mut H,
    proto: u8,
    l4: usize,
    l4_len: usize,
    frame_len: u32,
) -> Result<PacketOf<H>, Reason> {
    // SAFETY: every dereference is of a pointer `ptr_at` bounds-checked.
    if proto == PROTO_TCP {
        let tcp: *mut TcpHead = ptr_at(ctx, l4).ok_or(Reason::PassMalformed)?;
        let doff = ((unsafe { (*tcp).doff_res } >> 4) as usize) * 4;
        if l4_len < TCP_MIN_HLEN || doff < TCP_MIN_HLEN || doff > l4_len {
            return Err(Reason::PassMalformed);
        }
        return Ok(PacketOf {
            eth,
            ip,
            ports: tcp.cast(),
            l4_check: unsafe { core::ptr::addr_of_mut!((*tcp).check) },
            proto,
            tcp_flags: unsafe { (*tcp).flags },
            l4_off: l4,
            tcp_hlen: doff,
            seq: u32::from_be(unsafe { (*tcp).seq }),
            ack_seq: u32::from_be(unsafe { (*tcp).ack }),
            frame_len,
        });
    }
    let udp: *mut UdpHdr = ptr_at(ctx, l4).ok_or(Reason::PassMalformed)?;
    let udp_len = u16::from_be(unsafe { (*udp).len }) as usize;
    if udp_len < UDP_HLEN || udp_len > l4_len {
        return Err(Reason::PassMalformed);
    }
    Ok(PacketOf {
        eth,
        ip,
        ports: udp.cast(),
        l4_check: unsafe { core::ptr::addr_of_mut!((*udp).check) },
        proto,
        tcp_flags: 0,
        l4_off: l4,
        tcp_hlen: 0,
        seq: 0,
        ack_seq: 0,
        frame_len,
    })
}

/// An ICMP error in the shape [`IcmpError`] handles; `None` for anything else.
#[inline(always)]
fn icmp_error(ctx: &XdpContext, eth: *mut EthHdr, ip: *mut Ipv4Hdr) -> Option<Parsed> {
    let icmp: *mut IcmpHdr = ptr_at(ctx, ICMP_OFF)?;
    // SAFETY: bounds-checked by `ptr_at`, as everything below.
    let kind = unsafe { (*icmp).kind };
    if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner: *mut Ipv4Hdr = ptr_at(ctx, ICMP_INNER_IP_OFF)?;
    if unsafe { (*inner).version_ihl } != 0x45 {
        return None;
    }
    let inner_proto = unsafe { (*inner).proto };
    let inner_ports: *mut [u16; 2] = ptr_at(ctx, ICMP_INNER_L4_OFF)?;
    let inner_check = match inner_proto {
        PROTO_UDP => ptr_at::<UdpHdr>(ctx, ICMP_INNER_L4_OFF)
            .map(|u| unsafe { core::ptr::addr_of_mut!((*u).check) })?,
        PROTO_TCP => ptr_at::<TcpHead>(ctx, ICMP_INNER_L4_OFF)
            .map_or(core::ptr::null_mut(), |t| unsafe {
                core::ptr::addr_of_mut!((*t).check)
            }),
        _ => return None,
    };
    Some(Parsed::Icmp(IcmpError {
        eth,
        ip,
        icmp,
        inner,
        inner_ports,
        inner_check,
        inner_proto,
    }))
}

impl<H: IpHdr> PacketOf<H> {
    /// The headers forwarding reads and writes.
    #[inline(always)]
    pub fn frame(&self) -> crate::forward::Frame<H> {
        crate::forward::Frame {
            eth: self.eth,
            ip: self.ip,
            proto: self.proto,
        }
    }

    #[inline(always)]
    pub fn src(&self) -> H::A {
        // SAFETY: `parse` bounds-checked the IP header.
        unsafe { H::src(self.ip) }
    }

    #[inline(always)]
    pub fn dst(&self) -> H::A {
        // SAFETY: as above.
        unsafe { H::dst(self.ip) }
    }

    #[inline(always)]
    pub fn sport(&self) -> u16 {
        unsafe { (*self.ports)[0] }
    }

    #[inline(always)]
    pub fn dport(&self) -> u16 {
        unsafe { (*self.ports)[1] }
    }

    #[inline(always)]
    pub fn is_tcp(&self) -> bool {
        self.proto == PROTO_TCP
    }

    /// TCP: the sequence number just after this segment (its data, and its FIN).
    #[inline(always)]
    pub fn seq_end(&self) -> u32 {
        // SAFETY: the IP header was bounds-checked by `parse`, which also checked that its
        // length covers the headers.
        let tot = unsafe { H::ip_len(self.ip) } as usize;
        let data = (ETH_HLEN + tot).saturating_sub(self.l4_off + self.tcp_hlen);
        let fin = (self.tcp_flags & TCP_FIN != 0) as u32;
        self.seq.wrapping_add(data as u32).wrapping_add(fin)
    }

    /// A SYN without ACK: the first packet of a TCP connection (or its retransmission).
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.is_tcp() && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// TCP only: the timestamp option's TSval (RFC 7323) with [`TS_PRESENT`], or 0 (one
    /// scalar: a subprogram returns no aggregate). The options (40 bytes at most) are copied
    /// to the stack first: walking them in the packet would need a bounds check per variable
    /// offset, which the verifier cannot follow once LLVM rewrites it. Anything malformed
    /// reads as "none". A subprogram: SYNs and closes only, and its buffer stays off the
    /// packet path's frame.
    #[inline(never)]
    pub fn timestamp(&self, ctx: &XdpContext) -> u64 {
        let len = self.tcp_hlen.saturating_sub(TCP_MIN_HLEN) as u32;
        // Read back through memory so the range check below applies to the very register
        // the helper gets (LLVM would otherwise check the header length and subtract after).
        // SAFETY: a local.
        let len = unsafe { core::ptr::read_volatile(&len) };
        if len == 0 || len > TCPOPT_MAX as u32 {
            return 0;
        }
        let mut opts = [0u8; TCPOPT_MAX];
        // SAFETY: the helper copies `len` (1..=40) bytes into our 40-byte buffer and fails
        // rather than read past the packet.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                ctx.ctx,
                (self.l4_off + TCP_MIN_HLEN) as u32,
                opts.as_mut_ptr().cast(),
                len,
            )
        };
        if rc != 0 {
            return 0;
        }
        options_timestamp(&opts, len as usize)
    }
}
