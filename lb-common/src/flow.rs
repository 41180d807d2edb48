//! Pure decisions the data plane makes per new flow: the round-robin slot and the full-NAT
//! source port. Kept here so they are tested on the host.

/// Table entry for the `counter`-th new flow of a pool whose live table holds `len` entries.
/// `len` must be non-zero.
#[inline(always)]
pub const fn rr_slot(counter: u64, len: u32) -> u32 {
    (counter % len as u64) as u32
}

/// A cheap, well-mixed 32-bit hash of a client address (murmur3's finaliser): each client
/// gets its own offset into the full-NAT source-port range.
#[inline(always)]
pub const fn addr_hash(addr: u32) -> u32 {
    let mut h = addr;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// How many source ports full-NAT tries before giving up on a flow.
pub const SNAT_PROBES: u32 = 8;

/// The `attempt`-th candidate full-NAT source port (host order) in `min..=max` for client
/// port `port` (host order) of a client whose address hashes to `hash`.
///
/// A client's own ports map one-to-one onto source ports (offset by its hash), so its
/// connections never compete with each other; different clients start at unrelated offsets.
/// Successive attempts step by a large odd stride so they land far apart.
#[inline(always)]
pub const fn snat_port(hash: u32, port: u16, attempt: u32, min: u16, max: u16) -> u16 {
    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
    let span = (hi - lo) as u32 + 1;
    let step = attempt.wrapping_mul(0x9e37_79b1 | 1);
    let start = (hash % span) + port as u32;
    lo + ((start + step % span) % span) as u16
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rr_cycles_through_every_entry_in_order() {
        let picks: std::vec::Vec<u32> = (0..6).map(|c| rr_slot(c, 3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rr_survives_counter_wrap() {
        assert_eq!(rr_slot(u64::MAX, 2), 1);
        assert_eq!(rr_slot(u64::MAX.wrapping_add(1), 2), 0);
    }

    #[test]
    fn snat_ports_stay_in_range() {
        for hash in [0, 1, 0xffff_ffff, 0x1234_5678] {
            for port in [0, 1, 40000, u16::MAX] {
                for attempt in 0..SNAT_PROBES {
                    let p = snat_port(hash, port, attempt, 20000, 20010);
                    assert!((20000..=20010).contains(&p), "{p}");
                    assert_eq!(snat_port(hash, port, attempt, 7, 7), 7);
                }
            }
        }
    }

    #[test]
    fn snat_probes_are_distinct_for_a_wide_range() {
        let ports: HashSet<u16> = (0..SNAT_PROBES)
            .map(|a| snat_port(42, 50000, a, 10000, 32767))
            .collect();
        assert_eq!(ports.len(), SNAT_PROBES as usize);
    }

    #[test]
    fn one_clients_ports_never_collide() {
        // A client's 22768 consecutive ports get 22768 distinct first-choice source ports.
        let h = addr_hash(0x0a00_0002);
        let ports: HashSet<u16> = (30000u16..52768)
            .map(|p| snat_port(h, p, 0, 10000, 32767))
            .collect();
        assert_eq!(ports.len(), 22768);
    }

    #[test]
    fn clients_start_at_unrelated_offsets() {
        // 1000 clients using the same source port start on many different ports.
        let starts: HashSet<u16> = (0u32..1000)
            .map(|i| snat_port(addr_hash(0x0a00_0000 + i), 40000, 0, 10000, 32767))
            .collect();
        assert!(
            starts.len() > 950,
            "only {} distinct starting ports",
            starts.len()
        );
    }
}
