//! Frames built from scratch for data-plane fixtures, with checksums computed straight from
//! RFC 791/793/768 and, for IPv6, RFC 8200/4443 (independently of lb's incremental helpers),
//! and checkers for frames the data plane produced.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const ICMP: u8 = 1;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Everything that varies between fixture frames. Build with [`Pkt::tcp`] / [`Pkt::udp`] and
/// the setters, then [`Pkt::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkt {
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// TCP options, padded by the caller to a multiple of 4 (see [`Pkt::timestamps`]).
    pub tcp_options: Vec<u8>,
    pub ttl: u8,
    pub id: u16,
    /// Raw flags + fragment offset field (host order), e.g. 0x4000 for DF.
    pub frag: u16,
    /// IPv4 options, padded by the caller to a multiple of 4.
    pub ip_options: Vec<u8>,
    pub payload: Vec<u8>,
    /// Send UDP with checksum 0 ("none").
    pub udp_no_checksum: bool,
}

impl Pkt {
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> Pkt {
        Pkt {
            smac: [0x02, 0, 0, 0, 0, 0x01],
            dmac: [0x02, 0, 0, 0, 0, 0x02],
            src: *src.ip(),
            dst: *dst.ip(),
            sport: src.port(),
            dport: dst.port(),
            proto: TCP,
            tcp_flags: ACK,
            seq: 1000,
            ack: 0,
            tcp_options: Vec::new(),
            ttl: 64,
            id: 0x1234,
            frag: 0x4000,
            ip_options: Vec::new(),
            payload: Vec::new(),
            udp_no_checksum: false,
        }
    }

    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Pkt {
        Pkt {
            proto: UDP,
            tcp_flags: 0,
            ..Pkt::tcp(src, dst)
        }
    }

    pub fn flags(mut self, f: u8) -> Pkt {
        self.tcp_flags = f;
        self
    }

    pub fn seq(mut self, seq: u32) -> Pkt {
        self.seq = seq;
        self
    }

    pub fn ack(mut self, ack: u32) -> Pkt {
        self.ack = ack;
        self
    }

    /// Options as Linux sends them on a SYN: MSS, SACK permitted, timestamps, window scale.
    pub fn timestamps(mut self, tsval: u32) -> Pkt {
        let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
        o.extend_from_slice(&tsval.to_be_bytes());
        o.extend_from_slice(&0u32.to_be_bytes());
        o.extend_from_slice(&[1, 3, 3, 7]);
        self.tcp_options = o;
        self
    }

    /// The options Linux sends after the handshake when timestamps were agreed: NOP, NOP,
    /// timestamps.
    pub fn timestamp(mut self, tsval: u32) -> Pkt {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&tsval.to_be_bytes());
        o.extend_from_slice(&0u32.to_be_bytes());
        self.tcp_options = o;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Pkt {
        self.payload = p.to_vec();
        self
    }

    pub fn macs(mut self, smac: [u8; 6], dmac: [u8; 6]) -> Pkt {
        self.smac = smac;
        self.dmac = dmac;
        self
    }

    /// Same packet with new addresses and ports (what NAT should produce).
    pub fn tuple(mut self, src: SocketAddrV4, dst: SocketAddrV4) -> Pkt {
        self.src = *src.ip();
        self.sport = src.port();
        self.dst = *dst.ip();
        self.dport = dst.port();
        self
    }

    pub fn ip_header_len(&self) -> usize {
        20 + self.ip_options.len()
    }

    pub fn l4_header_len(&self) -> usize {
        if self.proto == UDP {
            8
        } else {
            20 + self.tcp_options.len()
        }
    }

    /// The frame, with correct IPv4 and L4 checksums.
    pub fn build(&self) -> Vec<u8> {
        assert!(self.ip_options.len().is_multiple_of(4) && self.ip_options.len() <= 40);
        assert!(self.tcp_options.len().is_multiple_of(4) && self.tcp_options.len() <= 40);
        let ihl = self.ip_header_len();
        let l4_len = self.l4_header_len() + self.payload.len();
        let mut f = Vec::with_capacity(14 + ihl + l4_len);
        f.extend_from_slice(&self.dmac);
        f.extend_from_slice(&self.smac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ip_start = f.len();
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&self.id.to_be_bytes());
        f.extend_from_slice(&self.frag.to_be_bytes());
        f.push(self.ttl);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&self.ip_options);
        let ip_csum = checksum(&f[ip_start..ip_start + ihl]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_csum.to_be_bytes());
        let l4_start = f.len();
        f.extend_from_slice(&self.sport.to_be_bytes());
        f.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == UDP {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&self.ack.to_be_bytes());
            f.push(((self.l4_header_len() / 4) as u8) << 4);
            f.push(self.tcp_flags);
            f.extend_from_slice(&0xfaf0u16.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(&self.tcp_options);
        }
        f.extend_from_slice(&self.payload);
        if !(self.proto == UDP && self.udp_no_checksum) {
            let mut c = l4_checksum(self.src, self.dst, self.proto, &f[l4_start..]);
            if self.proto == UDP && c == 0 {
                c = 0xffff;
            }
            let at = l4_start + if self.proto == UDP { 6 } else { 16 };
            f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }
}

/// An ICMP error (RFC 792) as a router or host sends it: from `src` to `dst`, quoting the IP
/// header and first 8 L4 bytes of `about` (a frame built by [`Pkt::build`]). `rest` is the
/// header's second word (the next-hop MTU for "fragmentation needed"). Ethernet addresses are
/// `macs` (source, destination); id 0, no DF, TTL 64, as Linux sends errors.
pub fn icmp_error(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (kind, code): (u8, u8),
    rest: u32,
    about: &[u8],
) -> Vec<u8> {
    let ihl = usize::from(about[14] & 0x0f) * 4;
    let quote = &about[14..14 + ihl + 8];
    let mut f = Vec::with_capacity(14 + 28 + quote.len());
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((28 + quote.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, ICMP, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let ip_csum = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&ip_csum.to_be_bytes());
    f.extend_from_slice(&[kind, code, 0, 0]);
    f.extend_from_slice(&rest.to_be_bytes());
    f.extend_from_slice(quote);
    let icmp_csum = checksum(&f[34..]);
    f[36..38].copy_from_slice(&icmp_csum.to_be_bytes());
    f
}

/// `inner` (a frame built by [`Pkt::build`]) as direct server return sends it: its IP packet
/// unchanged inside an outer IPv4 header (RFC 2003: protocol 4) from `src` to `dst`, with
/// the inner TOS, id and DF bit, TTL 64; Ethernet addresses `macs` (source, destination).
pub fn ipip(macs: ([u8; 6], [u8; 6]), src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let ip = &inner[14..];
    let mut f = Vec::with_capacity(34 + ip.len());
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, ip[1]]);
    f.extend_from_slice(&((20 + ip.len()) as u16).to_be_bytes());
    f.extend_from_slice(&ip[4..6]);
    f.extend_from_slice(&[ip[6] & 0x40, 0, 64, 4, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let c = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// What lb's IPv6 direct server return sends: the IPv6 packet of the Ethernet frame `inner`
/// inside an IPv6 header (next header 41, RFC 2473) from `src` to `dst`, with the inner
/// traffic class and flow label, hop limit 64, in a frame from `macs.0` to `macs.1`.
pub fn ip6ip6(macs: ([u8; 6], [u8; 6]), src: Ipv6Addr, dst: Ipv6Addr, inner: &[u8]) -> Vec<u8> {
    let ip = &inner[14..];
    let mut f = Vec::with_capacity(54 + ip.len());
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&ip[..4]);
    f.extend_from_slice(&(ip.len() as u16).to_be_bytes());
    f.extend_from_slice(&[41, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(ip);
    f
}

/// RFC 1071 Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// TCP/UDP checksum over the pseudo-header and `segment` (whose checksum field must be zero
/// for computing, or as received for verifying: then a valid segment gives 0).
pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += u32::from(proto);
    acc += segment.len() as u32;
    !fold(sum(segment, acc))
}

/// Verifies the IPv4 header checksum and the TCP/UDP checksum of a frame from scratch.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    // IPIP: the outer header's checksum, then the packet inside.
    if frame.len() >= 34 && frame[14] == 0x45 && frame[23] == 4 {
        if checksum(&frame[14..34]) != 0 {
            return Err("outer IPv4 header checksum".into());
        }
        let mut inner = frame[..14].to_vec();
        inner.extend_from_slice(&frame[34..]);
        return verify_checksums(&inner);
    }
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return Err("not an IPv4 frame".into());
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let ip = &frame[14..14 + ihl];
    if checksum(ip) != 0 {
        return Err(format!(
            "bad IPv4 header checksum {:#06x}",
            u16::from_be_bytes([ip[10], ip[11]])
        ));
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let seg = &frame[14 + ihl..14 + tot];
    let proto = ip[9];
    if proto == ICMP {
        if checksum(seg) != 0 {
            return Err("bad ICMP checksum".into());
        }
        // An error's quote starts with an IPv4 header, whose checksum still holds.
        let quoted = seg.get(8..).filter(|q| q.len() >= 20 && q[0] >> 4 == 4);
        if let Some(q) = quoted
            && matches!(seg[0], ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED)
            && checksum(&q[..usize::from(q[0] & 0x0f) * 4]) != 0
        {
            return Err("bad checksum in the quoted IPv4 header".into());
        }
        return Ok(());
    }
    if proto == UDP && seg[6..8] == [0, 0] {
        return Ok(()); // no checksum
    }
    if l4_checksum(src, dst, proto, seg) != 0 {
        return Err(format!("bad L4 checksum (proto {proto})"));
    }
    Ok(())
}

/// `(src, dst)` endpoints of a TCP/UDP frame without IP options.
pub fn endpoints(frame: &[u8]) -> (SocketAddrV4, SocketAddrV4) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    (
        SocketAddrV4::new(ip(26), port(l4)),
        SocketAddrV4::new(ip(30), port(l4 + 2)),
    )
}

/// Human-readable diff of two frames, for assertion messages.
pub fn diff(got: &[u8], want: &[u8]) -> String {
    let mut out = format!("lengths: got {} want {}\n", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            out.push_str(&format!("  byte {i:3}: got {g:#04x} want {w:#04x}\n"));
        }
    }
    out
}

pub const ICMPV6: u8 = 58;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PORT_UNREACH: u8 = 4;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// Extension header types (RFC 8200).
pub const EXT_HOPOPTS: u8 = 0;
pub const EXT_ROUTING: u8 = 43;
pub const EXT_FRAGMENT: u8 = 44;
pub const EXT_DSTOPTS: u8 = 60;

/// An IPv6 TCP or UDP frame, as [`Pkt`] is for IPv4. Build with [`Pkt6::tcp`] /
/// [`Pkt6::udp`] and the setters, then [`Pkt6::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkt6 {
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub hop_limit: u8,
    /// Traffic class and flow label: the header's first word without the version.
    pub class_flow: u32,
    /// Extension headers in order: their type and the bytes after the next-header and length
    /// octets (6 + 8n of them; see [`Pkt6::ext`]).
    pub ext: Vec<(u8, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Pkt6 {
    pub fn tcp(src: SocketAddrV6, dst: SocketAddrV6) -> Pkt6 {
        Pkt6 {
            smac: [0x02, 0, 0, 0, 0, 0x01],
            dmac: [0x02, 0, 0, 0, 0, 0x02],
            src: *src.ip(),
            dst: *dst.ip(),
            sport: src.port(),
            dport: dst.port(),
            proto: TCP,
            tcp_flags: ACK,
            seq: 1000,
            ack: 0,
            hop_limit: 64,
            class_flow: 0x0001_2345,
            ext: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn udp(src: SocketAddrV6, dst: SocketAddrV6) -> Pkt6 {
        Pkt6 {
            proto: UDP,
            tcp_flags: 0,
            ..Pkt6::tcp(src, dst)
        }
    }

    pub fn flags(mut self, f: u8) -> Pkt6 {
        self.tcp_flags = f;
        self
    }

    pub fn seq(mut self, seq: u32) -> Pkt6 {
        self.seq = seq;
        self
    }

    pub fn ack(mut self, ack: u32) -> Pkt6 {
        self.ack = ack;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Pkt6 {
        self.payload = p.to_vec();
        self
    }

    pub fn macs(mut self, smac: [u8; 6], dmac: [u8; 6]) -> Pkt6 {
        self.smac = smac;
        self.dmac = dmac;
        self
    }

    /// Adds an extension header of `kind` whose body (after next header and length) is
    /// `body`, padded here with PadN-like zeros to a multiple of 8 with its two octets.
    pub fn ext(mut self, kind: u8, body: &[u8]) -> Pkt6 {
        let mut b = body.to_vec();
        while !(b.len() + 2).is_multiple_of(8) {
            b.push(0);
        }
        self.ext.push((kind, b));
        self
    }

    /// Same packet with new addresses and ports (what NAT should produce).
    pub fn tuple(mut self, src: SocketAddrV6, dst: SocketAddrV6) -> Pkt6 {
        self.src = *src.ip();
        self.sport = src.port();
        self.dst = *dst.ip();
        self.dport = dst.port();
        self
    }

    pub fn l4_header_len(&self) -> usize {
        if self.proto == UDP { 8 } else { 20 }
    }

    /// The frame, its L4 checksum over the IPv6 pseudo-header.
    pub fn build(&self) -> Vec<u8> {
        let mut exts = Vec::new();
        for (i, (_, body)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto, |(k, _)| *k);
            exts.push(next);
            exts.push(((body.len() + 2) / 8 - 1) as u8);
            exts.extend_from_slice(body);
        }
        let l4_len = self.l4_header_len() + self.payload.len();
        let mut f = Vec::with_capacity(54 + exts.len() + l4_len);
        f.extend_from_slice(&self.dmac);
        f.extend_from_slice(&self.smac);
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&(0x6000_0000 | (self.class_flow & 0x0fff_ffff)).to_be_bytes());
        f.extend_from_slice(&((exts.len() + l4_len) as u16).to_be_bytes());
        f.push(self.ext.first().map_or(self.proto, |(k, _)| *k));
        f.push(self.hop_limit);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&exts);
        let l4_start = f.len();
        f.extend_from_slice(&self.sport.to_be_bytes());
        f.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == UDP {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&self.ack.to_be_bytes());
            f.push(5 << 4);
            f.push(self.tcp_flags);
            f.extend_from_slice(&0xfaf0u16.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
        }
        f.extend_from_slice(&self.payload);
        let mut c = l4_checksum6(self.src, self.dst, self.proto, &f[l4_start..]);
        if self.proto == UDP && c == 0 {
            c = 0xffff;
        }
        let at = l4_start + if self.proto == UDP { 6 } else { 16 };
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }
}

/// TCP/UDP/ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 8.1) and `data` (checksum
/// field zero for computing, or as received for verifying: a valid one then gives 0).
pub fn l4_checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, data: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc = sum(&(data.len() as u32).to_be_bytes(), acc);
    acc += u32::from(next);
    !fold(sum(data, acc))
}

/// An ICMPv6 error (RFC 4443) from `src` to `dst` quoting the first `quote` bytes of the IPv6
/// packet in `about` (a frame built by [`Pkt6::build`]); `rest` is the header's second word
/// (the MTU for "packet too big"). Ethernet addresses are `macs` (source, destination);
/// hop limit 64, no traffic class or flow label, as Linux sends errors.
pub fn icmp6_error(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    (kind, code): (u8, u8),
    rest: u32,
    about: &[u8],
    quote: usize,
) -> Vec<u8> {
    let quoted = &about[14..(14 + quote).min(about.len())];
    let mut f = Vec::with_capacity(62 + quoted.len());
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&((8 + quoted.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[kind, code, 0, 0]);
    f.extend_from_slice(&rest.to_be_bytes());
    f.extend_from_slice(quoted);
    let c = l4_checksum6(src, dst, ICMPV6, &f[54..]);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f
}

/// Verifies an IPv6 frame's TCP, UDP or ICMPv6 checksum from scratch, walking its extension
/// headers (hop-by-hop, routing, destination options). UDP's zero is invalid in IPv6.
pub fn verify_checksums6(frame: &[u8]) -> Result<(), String> {
    if frame.len() < 54 || frame[12..14] != [0x86, 0xdd] || frame[14] >> 4 != 6 {
        return Err("not an IPv6 frame".into());
    }
    let end = 54 + usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let octets = |at: usize| -> [u8; 16] { frame[at..at + 16].try_into().unwrap_or([0; 16]) };
    let (src, dst) = (Ipv6Addr::from(octets(22)), Ipv6Addr::from(octets(38)));
    let (mut next, mut at) = (frame[20], 54);
    while matches!(next, EXT_HOPOPTS | EXT_ROUTING | EXT_DSTOPTS) {
        next = frame[at];
        at += (usize::from(frame[at + 1]) + 1) * 8;
    }
    let seg = frame.get(at..end).ok_or("truncated")?;
    if next == UDP && seg[6..8] == [0, 0] {
        return Err("UDP checksum 0 over IPv6".into());
    }
    if !matches!(next, TCP | UDP | ICMPV6) {
        return Err(format!("next header {next}"));
    }
    match l4_checksum6(src, dst, next, seg) {
        0 => Ok(()),
        _ => Err(format!("bad checksum (next header {next})")),
    }
}

/// `(src, dst)` endpoints of an IPv6 TCP/UDP frame without extension headers.
pub fn endpoints6(frame: &[u8]) -> (SocketAddrV6, SocketAddrV6) {
    let ip =
        |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&frame[at..at + 16]).unwrap_or([0; 16]));
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    (
        SocketAddrV6::new(ip(22), port(54), 0, 0),
        SocketAddrV6::new(ip(38), port(56), 0, 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_verify() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000);
        let b = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
        for p in [
            Pkt::tcp(a, b).flags(SYN),
            Pkt::tcp(a, b).payload(b"hello world"),
            Pkt::udp(a, b).payload(b"odd"),
        ] {
            let f = p.build();
            assert_eq!(verify_checksums(&f), Ok(()));
            assert_eq!(endpoints(&f), (a, b));
        }
        let about = Pkt::tcp(a, b).payload(b"hello").build();
        let err = icmp_error(
            ([2; 6], [4; 6]),
            *b.ip(),
            *a.ip(),
            (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED),
            1400,
            &about,
        );
        assert_eq!(err.len(), 14 + 20 + 8 + 28);
        assert_eq!(verify_checksums(&err), Ok(()));
        assert_eq!(&err[42..], &about[14..42], "quote");
        let mut bad = err.clone();
        bad[42 + 12] ^= 1; // the quoted source address, checksums left alone
        assert!(verify_checksums(&bad).is_err());
        let mut bad = Pkt::tcp(a, b).build();
        bad[40] ^= 1;
        assert!(verify_checksums(&bad).is_err());
    }

    #[test]
    fn built_ipv6_frames_verify() {
        let a = SocketAddrV6::new("fd00::2".parse().unwrap(), 40000, 0, 0);
        let b = SocketAddrV6::new("fd00::1".parse().unwrap(), 80, 0, 0);
        for p in [
            Pkt6::tcp(a, b).flags(SYN),
            Pkt6::udp(a, b).payload(b"odd"),
            Pkt6::tcp(a, b)
                .ext(EXT_HOPOPTS, &[1, 4, 0, 0, 0, 0])
                .ext(EXT_DSTOPTS, &[1, 12])
                .payload(b"hello"),
        ] {
            let f = p.build();
            assert_eq!(verify_checksums6(&f), Ok(()));
            let mut bad = f.clone();
            *bad.last_mut().unwrap() ^= 1;
            if p.payload.is_empty() {
                bad[22] ^= 1; // the source address: the pseudo-header
            }
            assert!(verify_checksums6(&bad).is_err());
        }
        let f = Pkt6::tcp(a, b).build();
        assert_eq!(endpoints6(&f), (a, b));
        assert_eq!(f.len(), 14 + 40 + 20);
        // RFC 4443: the error's checksum covers its pseudo-header and the quote.
        let err = icmp6_error(([2; 6], [4; 6]), *b.ip(), *a.ip(), (1, 4), 0, &f, 48);
        assert_eq!(err.len(), 14 + 40 + 8 + 48);
        assert_eq!(&err[62..], &f[14..62]);
        assert_eq!(verify_checksums6(&err), Ok(()));
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Wikipedia's IPv4 header checksum example.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }
}
