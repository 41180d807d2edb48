//! Consistent hashing for several lb nodes: the flow hash both sides compute, and (host side)
//! the Maglev lookup table a pool's new flows are hashed into.
//!
//! Every node builds the same table from the same configuration: servers are ordered by
//! name, every hash is a fixed function of names and flow fields (no randomness, no map slot,
//! no platform-dependent arithmetic), so two nodes that agree on the servers and their states
//! pick the same server for a flow without talking to each other.
//!
//! The table is Maglev's (Eisenbud et al., NSDI 2016): each server walks its own permutation
//! of the `size` entries and the servers take turns claiming the next free entry on their
//! walk, as many turns per round as their weight allows. It is built over every configured
//! server (active ones, or backups when no active one is usable), up or not; an entry whose
//! server takes no new flows (DOWN, drain, maintenance) goes to the usable server of highest
//! random weight for that entry. So a server going DOWN moves exactly its own entries, spread
//! over the others, and no entry ever moves between two servers that stay up (Maglev alone
//! moves a few tenths of a percent between survivors when its server set changes; that still
//! happens when the configuration adds or removes a server).
//!
//! The table's `slots` are server slots, which is what the data plane needs; names only order
//! and seed the walks.

/// Entries of a table unless the configuration says otherwise (Katran's and the paper's).
pub const MAGLEV_DEFAULT_SIZE: u32 = 65537;
/// The largest table: what one `LB_MAGLEV` value holds.
pub const MAGLEV_MAX_SIZE: u32 = 65537;
/// `LB_MAGLEV` value length: the largest table, rounded up to whole 8-byte words.
pub const MAGLEV_CAP: usize = 65540;
/// Pools that may hash at once: each takes two `LB_MAGLEV` values (double buffer), its
/// "ring" number in its pool flags.
pub const MAGLEV_RINGS: u32 = 16;
/// A table entry no server holds (never published: an empty pool has an empty table).
pub const MAGLEV_NONE: u16 = u16::MAX;

/// One `LB_MAGLEV` value: a table of server slots, of which the pool's published length is
/// live.
pub type MaglevTable = [u16; MAGLEV_CAP];

/// Index into `LB_MAGLEV` of `slot` (0 or 1) of `ring`.
#[inline(always)]
pub const fn maglev_index(ring: u32, slot: u32) -> u32 {
    ring * 2 + (slot & 1)
}

/// murmur3's 32-bit finaliser: every input bit reaches every output bit.
#[inline(always)]
pub const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const FLOW_SEED: u32 = 0x6c62_2d31; // "lb-1"

/// The hash of a connection: its 5-tuple as the packet carries it (addresses and ports in
/// network byte order, as loaded from the packet). The same on every node for the same
/// packet, whichever node the router sends it to.
#[inline(always)]
pub const fn flow_hash(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = mix32(src ^ FLOW_SEED);
    h = mix32(h ^ dst);
    h = mix32(h ^ ((sport as u32) << 16 | dport as u32));
    mix32(h ^ proto as u32)
}

/// The hash of a client address alone (`balance source`): all its connections go to one
/// server.
#[inline(always)]
pub const fn source_hash(src: u32) -> u32 {
    mix32(mix32(src ^ FLOW_SEED))
}

/// The table entry of a flow hash in a table of `size` entries (non-zero).
#[inline(always)]
pub const fn maglev_entry(hash: u32, size: u32) -> u32 {
    hash % size
}

/// Whether `n` is a prime lb accepts as a table size: Maglev's walks visit every entry only
/// when the size is prime.
pub const fn valid_size(n: u32) -> bool {
    if n < 2 || n > MAGLEV_MAX_SIZE {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(any(test, feature = "user"))]
pub use build::{Candidate, build};

#[cfg(any(test, feature = "user"))]
mod build {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::{MAGLEV_NONE, valid_size};

    /// FNV-1a, 64 bits, over `bytes`, from `seed`: names to numbers, the same on every platform.
    const fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        h
    }

    /// splitmix64's finaliser.
    const fn mix64(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A server as the table sees it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Candidate<'a> {
        /// Unique within the pool; orders the servers and seeds their walks.
        pub name: &'a str,
        /// What the table holds for it (its server slot).
        pub slot: u16,
        /// Its share of the table while everyone is up (0 counts as 1: a server with no
        /// weight takes no new flows, but keeps its entries for when it gets one back).
        pub weight: u32,
        /// May take new flows (UP, not drained, not in maintenance, weight above 0).
        pub usable: bool,
    }

    /// The lookup table of `size` entries (a prime, see [`valid_size`]) over `servers`:
    /// empty when none of them is usable (or the size is not valid).
    pub fn build(servers: &[Candidate], size: u32) -> Vec<u16> {
        if !valid_size(size) || !servers.iter().any(|s| s.usable) {
            return Vec::new();
        }
        let mut order: Vec<&Candidate> = servers.iter().collect();
        order.sort_by(|a, b| a.name.cmp(b.name));
        order.dedup_by(|a, b| a.name == b.name);
        let owners = populate(&order, size);
        let usable: Vec<(u64, u16)> = order
            .iter()
            .filter(|s| s.usable)
            .map(|s| (fnv1a(s.name.as_bytes(), HRW_SEED), s.slot))
            .collect();
        owners
            .iter()
            .enumerate()
            .map(|(entry, &i)| {
                let s = order[i as usize];
                if s.usable {
                    s.slot
                } else {
                    highest_random_weight(&usable, entry as u64)
                }
            })
            .collect()
    }

    const OFFSET_SEED: u64 = 0x6f66_6673_6574; // "offset"
    const SKIP_SEED: u64 = 0x736b_6970; // "skip"
    const HRW_SEED: u64 = 0x0068_7277; // "hrw"

    /// Maglev's population: for each entry, the index in `order` of the server that claims it.
    fn populate(order: &[&Candidate], size: u32) -> Vec<u32> {
        let m = u64::from(size);
        let walks: Vec<(u64, u64)> = order
            .iter()
            .map(|s| {
                let name = s.name.as_bytes();
                let offset = mix64(fnv1a(name, OFFSET_SEED)) % m;
                let skip = mix64(fnv1a(name, SKIP_SEED)) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = order.iter().map(|s| u64::from(s.weight.max(1))).collect();
        let top = weights.iter().copied().max().unwrap_or(1);
        let mut next = alloc::vec![0u64; order.len()];
        let mut credit = alloc::vec![0u64; order.len()];
        let mut owners = alloc::vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        // Each round every server earns its weight and claims one entry per `top` earned:
        // shares follow weights, and the heaviest server claims one entry every round.
        while filled < m {
            for (i, &(offset, skip)) in walks.iter().enumerate() {
                credit[i] += weights[i];
                if credit[i] < top {
                    continue;
                }
                credit[i] -= top;
                // A walk visits every entry within `size` steps (the size is prime), so a
                // free one is always found while the table is not full.
                loop {
                    let e = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if owners[e] == u32::MAX {
                        owners[e] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        owners
    }

    /// Of `usable` servers (name hash, slot), the one whose hash with `entry` is highest: what
    /// an entry of a server that takes no new flows falls back to. It depends only on the
    /// usable set, so survivors never trade entries.
    fn highest_random_weight(usable: &[(u64, u16)], entry: u64) -> u16 {
        usable
            .iter()
            .max_by_key(|(h, _)| (mix64(h ^ mix64(entry)), *h))
            .map_or(MAGLEV_NONE, |&(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeMap, format, string::String, vec::Vec};

    use super::*;

    fn servers(names: &[String], weights: &[u32]) -> Vec<Candidate<'static>> {
        names
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (n, &w))| Candidate {
                name: std::boxed::Box::leak(n.clone().into_boxed_str()),
                slot: i as u16,
                weight: w,
                usable: true,
            })
            .collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web{i}")).collect()
    }

    fn shares(t: &[u16]) -> BTreeMap<u16, f64> {
        let mut m = BTreeMap::new();
        for &s in t {
            *m.entry(s).or_insert(0.0) += 1.0 / t.len() as f64;
        }
        m
    }

    #[test]
    fn sizes_must_be_prime_and_fit() {
        assert!(valid_size(65537) && valid_size(251) && valid_size(2));
        assert!(!valid_size(65536) && !valid_size(1) && !valid_size(0));
        assert!(!valid_size(65539), "prime, but above the maximum");
        assert!(build(&servers(&names(2), &[1, 1]), 65536).is_empty());
    }

    #[test]
    fn shares_follow_weights() {
        for weights in [[1u32, 1, 1], [3, 1, 1], [1, 2, 5], [256, 1, 17]] {
            let t = build(&servers(&names(3), &weights), MAGLEV_DEFAULT_SIZE);
            assert_eq!(t.len(), MAGLEV_DEFAULT_SIZE as usize);
            let total: u32 = weights.iter().sum();
            for (slot, share) in shares(&t) {
                let want = f64::from(weights[slot as usize]) / f64::from(total);
                // "Within a few percent of its weight": relative to the server's own share.
                assert!(
                    (share - want).abs() <= 0.03 * want,
                    "weights {weights:?}: server {slot} has {share:.4}, wants {want:.4}"
                );
            }
        }
        // Many servers: Maglev's own guarantee, near-perfect balance.
        let t = build(&servers(&names(100), &[1; 100]), MAGLEV_DEFAULT_SIZE);
        for (slot, share) in shares(&t) {
            assert!((share - 0.01).abs() < 0.0005, "server {slot}: {share}");
        }
    }

    #[test]
    fn a_server_going_down_moves_its_own_entries_only() {
        for n in [2usize, 3, 5, 10] {
            let all = servers(&names(n), &std::vec![1; n]);
            let before = build(&all, MAGLEV_DEFAULT_SIZE);
            for gone in 0..n {
                let mut down = all.clone();
                down[gone].usable = false;
                let after = build(&down, MAGLEV_DEFAULT_SIZE);
                let mut moved = 0usize;
                for (b, a) in before.iter().zip(&after) {
                    if b != a {
                        moved += 1;
                        assert_eq!(*b as usize, gone, "an entry moved between survivors");
                    }
                    assert_ne!(*a as usize, gone);
                }
                let frac = moved as f64 / before.len() as f64;
                let want = 1.0 / n as f64;
                assert!((frac - want).abs() < 0.03 * want, "n={n}: moved {frac}");
                // ... and spread over the survivors evenly.
                let got = shares(&after);
                for (slot, share) in got {
                    let want = 1.0 / (n - 1) as f64;
                    assert!((share - want).abs() < 0.03 * want, "n={n} {slot}: {share}");
                }
            }
        }
    }

    #[test]
    fn it_comes_back_to_the_same_entries() {
        let all = servers(&names(4), &[1, 1, 1, 1]);
        let mut down = all.clone();
        down[2].usable = false;
        down[0].usable = false;
        assert_ne!(
            build(&down, MAGLEV_DEFAULT_SIZE),
            build(&all, MAGLEV_DEFAULT_SIZE)
        );
        down[2].usable = true;
        let mut one_down = all.clone();
        one_down[0].usable = false;
        assert_eq!(
            build(&down, MAGLEV_DEFAULT_SIZE),
            build(&one_down, MAGLEV_DEFAULT_SIZE)
        );
    }

    #[test]
    fn removing_a_server_from_the_configuration_moves_about_its_share() {
        // Maglev proper: the configured set changes, so the walks' turns change; a few
        // tenths of a percent of the entries move between survivors too.
        for n in [3usize, 5, 10] {
            let all = servers(&names(n), &std::vec![1; n]);
            let before = build(&all, MAGLEV_DEFAULT_SIZE);
            let after = build(&all[..n - 1], MAGLEV_DEFAULT_SIZE);
            let (mut moved, mut between) = (0usize, 0usize);
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    moved += 1;
                    between += usize::from(*b as usize != n - 1);
                }
            }
            let m = before.len() as f64;
            assert!((moved as f64 / m - 1.0 / n as f64).abs() < 0.01, "n={n}");
            assert!(
                (between as f64 / m) < 0.005,
                "n={n}: {between} between survivors"
            );
        }
    }

    #[test]
    fn two_builds_are_identical_whatever_the_order_and_slots() {
        let a = servers(&names(7), &[1, 2, 3, 1, 1, 4, 1]);
        let mut b = a.clone();
        b.reverse();
        let t1 = build(&a, 4093);
        let t2 = build(&b, 4093);
        assert_eq!(t1, t2);
        // Other slots, same names: the same servers in the same entries.
        let mut c = a.clone();
        for s in &mut c {
            s.slot += 100;
        }
        let t3 = build(&c, 4093);
        assert!(t1.iter().zip(&t3).all(|(x, y)| x + 100 == *y));
        // And a frozen fingerprint: a change of any hash shows here (every node must agree,
        // across versions too when nodes are upgraded one at a time).
        let fp = t1
            .iter()
            .fold(0u64, |h, &s| h.wrapping_mul(31).wrapping_add(u64::from(s)));
        assert_eq!(
            fp, FINGERPRINT,
            "the table changed: nodes of two versions would disagree"
        );
    }

    const FINGERPRINT: u64 = 355_897_941_399_125_694;

    #[test]
    fn nothing_usable_is_empty() {
        let mut s = servers(&names(2), &[1, 1]);
        s[0].usable = false;
        s[1].usable = false;
        assert!(build(&s, 251).is_empty());
        assert!(build(&[], 251).is_empty());
    }

    #[test]
    fn flow_hashes_spread_and_differ_by_every_field() {
        let base = flow_hash(0x0200_000a, 0x0100_000a, 40000, 80, 6);
        assert_ne!(base, flow_hash(0x0300_000a, 0x0100_000a, 40000, 80, 6));
        assert_ne!(base, flow_hash(0x0200_000a, 0x0200_000a, 40000, 80, 6));
        assert_ne!(base, flow_hash(0x0200_000a, 0x0100_000a, 40001, 80, 6));
        assert_ne!(base, flow_hash(0x0200_000a, 0x0100_000a, 40000, 81, 6));
        assert_ne!(base, flow_hash(0x0200_000a, 0x0100_000a, 40000, 80, 17));
        // Consecutive client ports land evenly over a small table.
        let mut hits = [0u32; 7];
        for port in 0..70_000u32 {
            let h = flow_hash(0x0200_000a, 0x0100_000a, port as u16, 80, 6);
            hits[maglev_entry(h, 7) as usize] += 1;
        }
        for h in hits {
            assert!((h as f64 - 10_000.0).abs() < 300.0, "{hits:?}");
        }
        assert_eq!(source_hash(1), source_hash(1));
        assert_ne!(source_hash(1), source_hash(2));
    }
}
