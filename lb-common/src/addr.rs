//! Addresses as the maps hold them: as they sit in the packet (network byte order), an IPv4
//! address in a `u32`, an IPv6 address in four (`Addr6`). The map types are generic over the
//! address (`FlowOf<A>`, `ServiceKeyOf<A>`, ...) so that the IPv4 and IPv6 paths share one
//! definition of everything else, as Cilium's `lb4_*`/`lb6_*` share theirs.

/// An IPv6 address as the packet holds it: its 16 bytes in order, read as four `u32`s
/// (each in network byte order, like an IPv4 address in a `u32`).
pub type Addr6 = [u32; 4];

/// The 16 bytes of an IPv6 address as an [`Addr6`].
pub const fn addr6_from_octets(o: [u8; 16]) -> Addr6 {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]]);
        i += 1;
    }
    out
}

/// The 16 bytes of an [`Addr6`].
pub const fn addr6_octets(a: Addr6) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = a[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octets_round_trip_in_packet_order() {
        let o = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        let a = addr6_from_octets(o);
        assert_eq!(addr6_octets(a), o);
        // Each word holds its bytes as the packet does, like an IPv4 address in a `u32`.
        assert_eq!(a[0], u32::from_be_bytes([0xfd, 0, 0, 0]).to_be());
        assert_eq!(a[3], u32::from_be_bytes([0, 0, 0x12, 0x34]).to_be());
    }
}
