//! Incremental Internet checksum updates (RFC 1071 arithmetic, RFC 1624 eqn. 3).
//!
//! All values are taken *as they sit in memory*: a checksum or port loaded from the packet
//! with a native-endian load, an address likewise. One's-complement addition commutes with
//! byte swapping, so no conversion is needed as long as every operand was loaded the same way
//! and every 32-bit operand starts on a 16-bit boundary of the checksummed data (true for IPv4
//! addresses, TCP/UDP ports and the pseudo-header).
//!
//! The usual pattern is to accumulate one [`Delta`] per rewrite and apply it once per checksum:
//! the address changes go into both the IPv4 header checksum and the L4 checksum (pseudo-header),
//! the port changes only into the L4 checksum.

/// A one's-complement accumulator of `(~old + new)` terms, not yet folded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    pub const ZERO: Delta = Delta(0);

    /// Records that a 32-bit field changed from `old` to `new`.
    #[inline(always)]
    #[must_use]
    pub const fn u32(self, old: u32, new: u32) -> Delta {
        let not_old = !old;
        Delta(
            self.0
                + (not_old >> 16) as u64
                + (not_old & 0xffff) as u64
                + (new >> 16) as u64
                + (new & 0xffff) as u64,
        )
    }

    /// Records that a 16-bit field changed from `old` to `new`.
    #[inline(always)]
    #[must_use]
    pub const fn u16(self, old: u16, new: u16) -> Delta {
        Delta(self.0 + (!old) as u64 + new as u64)
    }

    /// Records that an IPv6 address changed (its four words as the packet holds them, see
    /// [`crate::Addr6`]). IPv6 has no header checksum: this goes into the TCP/UDP/ICMPv6
    /// checksum only, through the pseudo-header (RFC 8200 section 8.1).
    #[inline(always)]
    #[must_use]
    pub const fn addr6(self, old: crate::Addr6, new: crate::Addr6) -> Delta {
        self.u32(old[0], new[0])
            .u32(old[1], new[1])
            .u32(old[2], new[2])
            .u32(old[3], new[3])
    }

    /// Combines two accumulators.
    #[inline(always)]
    #[must_use]
    pub const fn plus(self, other: Delta) -> Delta {
        Delta(self.0 + other.0)
    }

    /// Applies the accumulated change to a checksum field (IPv4 header, TCP).
    #[inline(always)]
    #[must_use]
    pub const fn apply(self, check: u16) -> u16 {
        !fold((!check) as u64 + self.0)
    }

    /// Applies the change to a UDP checksum: zero means "no checksum" and stays zero, and a
    /// computed zero is sent as all ones (RFC 768).
    #[inline(always)]
    #[must_use]
    pub const fn apply_udp(self, check: u16) -> u16 {
        if check == 0 {
            return 0;
        }
        match self.apply(check) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// The one's-complement sum (not folded) of the IPv6 pseudo-header (RFC 8200 section 8.1):
/// the addresses as the packet holds them, the upper-layer length (host order) and the next
/// header, for a checksum computed whole (an ICMPv6 message lb writes). Loaded the way the
/// packet's other words are, so it adds to a `bpf_csum_diff` sum of the message.
#[inline(always)]
pub const fn pseudo6(src: crate::Addr6, dst: crate::Addr6, len: u32, next: u8) -> u64 {
    let words = [
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
        len.to_be(),
        (next as u32).to_be(),
    ];
    let mut sum = 0u64;
    let mut i = 0;
    while i < words.len() {
        sum += words[i] as u64;
        i += 1;
    }
    sum
}

/// Folds a wide one's-complement sum to 16 bits (end-around carry).
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(test)]
mod tests {
    //! Every incremental update is checked against a checksum recomputed from scratch over
    //! the rewritten bytes, written here independently of the code under test.
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// RFC 1071, straight from the definition: big-endian 16-bit words, odd byte padded.
    fn scratch_sum(data: &[u8]) -> u32 {
        let mut sum = 0u32;
        for chunk in data.chunks(2) {
            let word = if chunk.len() == 2 {
                u16::from_be_bytes([chunk[0], chunk[1]])
            } else {
                u16::from_be_bytes([chunk[0], 0])
            };
            sum += u32::from(word);
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum
    }

    fn scratch_checksum(data: &[u8]) -> u16 {
        !(scratch_sum(data) as u16)
    }

    /// A 20-byte IPv4 header followed by a TCP or UDP header and payload.
    fn packet(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        udp: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_len = if udp { 8 } else { 20 } + payload.len();
        let mut p = Vec::new();
        p.extend_from_slice(&[
            0x45,
            0,
            0,
            0,
            0x12,
            0x34,
            0x40,
            0,
            64,
            if udp { 17 } else { 6 },
            0,
            0,
        ]);
        let tot = (20 + l4_len) as u16;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        if udp {
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        } else {
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        p.extend_from_slice(payload);
        set_checksums(&mut p, udp);
        p
    }

    fn l4_checksum(p: &[u8], udp: bool) -> u16 {
        let l4 = &p[20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, if udp { 17 } else { 6 }]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(l4);
        let csum_at = if udp { 6 } else { 16 };
        pseudo[12 + csum_at] = 0;
        pseudo[12 + csum_at + 1] = 0;
        scratch_checksum(&pseudo)
    }

    fn set_checksums(p: &mut [u8], udp: bool) {
        p[10] = 0;
        p[11] = 0;
        let ip = scratch_checksum(&p[..20]);
        p[10..12].copy_from_slice(&ip.to_be_bytes());
        let mut l4 = l4_checksum(p, udp);
        if udp && l4 == 0 {
            l4 = 0xffff;
        }
        let at = if udp { 26 } else { 36 };
        p[at..at + 2].copy_from_slice(&l4.to_be_bytes());
    }

    fn ne16(p: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([p[at], p[at + 1]])
    }

    fn ne32(p: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
    }

    /// Rewrites addresses and ports the way the data plane does: native loads, one delta.
    fn rewrite(p: &mut [u8], udp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) {
        let new_src = u32::from_ne_bytes(src);
        let new_dst = u32::from_ne_bytes(dst);
        let new_sport = sport.to_be();
        let new_dport = dport.to_be();
        let addrs = Delta::ZERO
            .u32(ne32(p, 12), new_src)
            .u32(ne32(p, 16), new_dst);
        let ports = Delta::ZERO
            .u16(ne16(p, 20), new_sport)
            .u16(ne16(p, 22), new_dport);
        let ip = addrs.apply(ne16(p, 10));
        p[10..12].copy_from_slice(&ip.to_ne_bytes());
        let at = if udp { 26 } else { 36 };
        let old = ne16(p, at);
        let l4 = if udp {
            addrs.plus(ports).apply_udp(old)
        } else {
            addrs.plus(ports).apply(old)
        };
        p[at..at + 2].copy_from_slice(&l4.to_ne_bytes());
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
    }

    fn assert_valid(p: &[u8], udp: bool) {
        assert_eq!(scratch_sum(&p[..20]), 0xffff, "IPv4 header checksum");
        let at = if udp { 26 } else { 36 };
        let stored = u16::from_be_bytes([p[at], p[at + 1]]);
        let mut expected = l4_checksum(p, udp);
        if udp && expected == 0 {
            expected = 0xffff;
        }
        assert_eq!(stored, expected, "L4 checksum");
    }

    /// IPv6 header (40 bytes) + TCP or UDP header + payload, checksum set from scratch.
    fn packet6(src: [u8; 16], dst: [u8; 16], udp: bool, payload: &[u8]) -> Vec<u8> {
        let l4_len = if udp { 8 } else { 20 } + payload.len();
        let mut p: Vec<u8> = std::vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4_len as u16).to_be_bytes());
        p.extend_from_slice(&[if udp { 17 } else { 6 }, 64]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x9c, 0x40, 0, 80]);
        if udp {
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        } else {
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        p.extend_from_slice(payload);
        let c = l4_checksum6(&p, udp);
        let at = if udp { 46 } else { 56 };
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// RFC 8200 8.1 from the definition; UDP's zero is sent as all ones.
    fn l4_checksum6(p: &[u8], udp: bool) -> u16 {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[8..40]);
        pseudo.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, p[6]]);
        let at = pseudo.len() + if udp { 6 } else { 16 };
        pseudo.extend_from_slice(&p[40..]);
        pseudo[at] = 0;
        pseudo[at + 1] = 0;
        match scratch_checksum(&pseudo) {
            0 if udp => 0xffff,
            c => c,
        }
    }

    fn addr6(o: [u8; 16]) -> crate::Addr6 {
        crate::addr6_from_octets(o)
    }

    #[test]
    fn ipv6_pseudo_header_sum_matches_scratch() {
        let (src, dst) = (
            [0xfdu8; 16],
            [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        let body = [0x80u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&8u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&body);
        let want = scratch_checksum(&pseudo);
        // The body as the data plane sums it: native 16-bit loads.
        let body_sum: u64 = body
            .chunks(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]) as u64)
            .sum();
        let got = !fold(pseudo6(addr6(src), addr6(dst), 8, 58) + body_sum);
        assert_eq!(u16::from_be(got), want);
    }

    proptest! {
        #[test]
        fn ipv6_rewrite_matches_scratch(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
            nsrc in any::<[u8; 16]>(), ndst in any::<[u8; 16]>(),
            nsport in any::<u16>(), ndport in any::<u16>(),
            udp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut p = packet6(src, dst, udp, &payload);
            let at = if udp { 46 } else { 56 };
            let addrs = Delta::ZERO
                .addr6(addr6(src), addr6(nsrc))
                .addr6(addr6(dst), addr6(ndst));
            let ports = Delta::ZERO
                .u16(ne16(&p, 40), nsport.to_be())
                .u16(ne16(&p, 42), ndport.to_be());
            let old = ne16(&p, at);
            let new = if udp {
                addrs.plus(ports).apply_udp(old)
            } else {
                addrs.plus(ports).apply(old)
            };
            p[at..at + 2].copy_from_slice(&new.to_ne_bytes());
            p[8..24].copy_from_slice(&nsrc);
            p[24..40].copy_from_slice(&ndst);
            p[40..42].copy_from_slice(&nsport.to_be_bytes());
            p[42..44].copy_from_slice(&ndport.to_be_bytes());
            let stored = u16::from_be_bytes([p[at], p[at + 1]]);
            let want = l4_checksum6(&p, udp);
            // One's complement has two zeros; only UDP must not send 0x0000 (RFC 8200 8.1).
            prop_assert!(stored == want || (!udp && stored ^ want == 0xffff && want & stored == 0));
            prop_assert!(!(udp && stored == 0));
        }
    }

    #[test]
    fn fold_carries_twice() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x2_0000), 2);
        assert_eq!(fold(0), 0);
    }

    #[test]
    fn no_change_keeps_checksum() {
        // Unchanged fields add one's-complement zeros: the value is the same, only 0x0000 and
        // 0xffff (the two zeros) may swap.
        let d = Delta::ZERO.u32(0xdead_beef, 0xdead_beef).u16(80, 80);
        for check in [0x0001u16, 0x1234, 0xfffe] {
            assert_eq!(d.apply(check), check);
        }
        for check in [0x0000u16, 0xffff] {
            assert!(matches!(d.apply(check), 0x0000 | 0xffff));
        }
    }

    #[test]
    fn udp_zero_checksum_is_left_alone() {
        let d = Delta::ZERO.u32(1, 2);
        assert_eq!(d.apply_udp(0), 0);
    }

    #[test]
    fn udp_computed_zero_becomes_all_ones() {
        // Find an old checksum whose update folds to zero and check it is sent as 0xffff.
        let d = Delta::ZERO.u16(0x0001, 0x0002);
        let check = (0..=u16::MAX)
            .find(|&c| c != 0 && d.apply(c) == 0)
            .expect("a zero result exists");
        assert_eq!(d.apply_udp(check), 0xffff);
    }

    #[test]
    fn known_vector_rfc1624() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(Delta::ZERO.u16(0x5555, 0x3285).apply(0xdd2f), 0x0000);
    }

    proptest! {
        #[test]
        fn full_nat_rewrite_matches_scratch(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(),
            nsport in any::<u16>(), ndport in any::<u16>(),
            udp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut p = packet(src, dst, sport, dport, udp, &payload);
            assert_valid(&p, udp);
            rewrite(&mut p, udp, nsrc, ndst, nsport, ndport);
            assert_valid(&p, udp);
        }

        #[test]
        fn dnat_rewrite_then_reverse_restores_original(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            ndst in any::<[u8; 4]>(), ndport in any::<u16>(),
            udp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let original = packet(src, dst, sport, dport, udp, &payload);
            let mut p = original.clone();
            rewrite(&mut p, udp, src, ndst, sport, ndport);
            assert_valid(&p, udp);
            rewrite(&mut p, udp, src, dst, sport, dport);
            assert_valid(&p, udp);
            // Checksums may differ only by the 0x0000/0xffff representation of zero.
            let at = if udp { 26 } else { 36 };
            prop_assert_eq!(&p[..at], &original[..at]);
            prop_assert_eq!(&p[at + 2..], &original[at + 2..]);
        }
    }
}
