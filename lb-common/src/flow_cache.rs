//! Each CPU's flow cache (`LB_FLOW_CACHE`): copies of confirmed IPv4 flows, one 64-byte slot
//! each, direct-mapped by a hash of the 5-tuple, in front of `LB_FLOWS`. `lb_xdp` forwards a
//! packet with no news (TCP without SYN, FIN or RST; UDP) from its copy alone and tail-calls
//! the whole packet path (`lb_xdp4`) for everything else, which makes the copies.
//!
//! Why: on live traffic the caches are cold between two packets of a flow, and a lookup in
//! the LRU hash costs a bucket walk over lines spread across tens of MiB (cache and TLB
//! misses); a slot is one line of a small array whose lookup the verifier inlines.
//!
//! The array is a plain one with a region of [`FLOW_CACHE_SLOTS`] per CPU
//! ([`flow_cache_index`]), not a per-CPU array: a per-CPU array's lookup first reads the
//! slot's entry in a table of per-CPU pointers (64 KiB for 8,192 slots) and only then the
//! slot, two dependent reads that were both cold on live traffic (`perf` on `lb_xdp`: the
//! two loads held 57% of its samples); here the slot's address is computed from the CPU
//! number, which the verifier inlines too.
//!
//! Copies are timed by the kernel's `jiffies` (`bpf_jiffies64`, which the verifier inlines as
//! one load), not lb's clock: `bpf_ktime_get_coarse_ns` is a helper call, 10 of a hit's 57 ns
//! on BPF_PROG_TEST_RUN. Their lifetime in jiffies ([`flow_cache_ttl`]) depends on the
//! kernel's HZ, which the daemon finds when it loads the program.
//!
//! Why a copy stays right (the rules below are what the data plane and the tests rely on):
//! - it serves for [`FLOW_CACHE_TTL`] only, then the flow's entry is looked at again (its
//!   idle clock, LRU recency and next hop refreshed, expiry judged); so a copy is only made of
//!   a flow whose timeout is longer than twice that ([`may_cache`]);
//! - it is only made of an established TCP flow or an active UDP flow, and only serves packets
//!   without news, which change nothing in those states;
//! - a TCP FIN, RST or SYN-ACK drops every CPU's copy of its tuple before the whole path sees
//!   it (a flow that closes, or a server's first answer on a tuple an older flow may have
//!   had); a client's SYN drops this CPU's (the tuple's last flow ended with a FIN or RST,
//!   which dropped them all, or idle, when they are long gone); a new UDP flow drops every
//!   CPU's copies of both its tuples (UDP has no news);
//! - the daemon drops the copies itself when it ends flows (`shutdown-sessions`).
//!
//! What is left: another CPU's copy of the other direction serves that side's packets
//! without news (ACKs, data) for the rest of its life after one side closed, as the entry
//! would forward them, but without their last-seen time; and a flow evicted from a full table
//! while a copy of it lives is served the old way for up to [`FLOW_CACHE_TTL`].
use crate::{FLOW_F_DSR, FlowKey, NextHop, State, clock::ticks_from_ms, flow::Flow};

/// Slots per CPU, a power of two: 512 KiB per CPU, a core's L2 on this machine. (16,384 kept
/// 4,096 flows at line rate apart better, but a table of a million flows then paid a memory
/// read per packet for its misses: 600 instead of 450 ns.)
pub const FLOW_CACHE_BITS: u32 = 13;
pub const FLOW_CACHE_SLOTS: u32 = 1 << FLOW_CACHE_BITS;

/// How long a copy serves, at most, before the flow's entry is looked at again.
pub const FLOW_CACHE_TTL_MS: u64 = 100;

/// [`FLOW_CACHE_TTL_MS`] in lb's clock ticks (what flows' timeouts are compared with).
pub const FLOW_CACHE_TTL: u32 = ticks_from_ms(FLOW_CACHE_TTL_MS);

/// The least HZ a Linux kernel ticks at: the one to assume when the kernel's is unknown, for
/// a lifetime in jiffies that is never longer than [`FLOW_CACHE_TTL_MS`] (only shorter).
pub const MIN_HZ: u32 = 100;

/// The program's global holding [`flow_cache_ttl`] for the kernel it runs on.
pub const GLOBAL_FLOW_CACHE_TTL: &str = "LB_FLOW_CACHE_TTL";

/// A copy's lifetime in jiffies on a kernel ticking at `hz`: rounded down, so never longer
/// than [`FLOW_CACHE_TTL_MS`]; at least one jiffy.
pub const fn flow_cache_ttl(hz: u32) -> u32 {
    let j = FLOW_CACHE_TTL_MS * hz as u64 / 1000;
    if j == 0 { 1 } else { j as u32 }
}

/// Bound of the walk over every CPU's slot when copies are dropped (the walk stops at the
/// first CPU the array has no region for), and so the most CPUs that get a region.
pub const FLOW_CACHE_MAX_CPUS: u32 = 4096;

/// `LB_FLOW_CACHE`'s entries for a kernel whose CPUs are numbered below `cpus`: a region each,
/// for the first [`FLOW_CACHE_MAX_CPUS`] of them only (a copy the walk could not reach could
/// not be dropped; CPUs without a region send every packet down the whole path).
pub const fn flow_cache_entries(cpus: u32) -> u32 {
    let cpus = if cpus > FLOW_CACHE_MAX_CPUS {
        FLOW_CACHE_MAX_CPUS
    } else {
        cpus
    };
    cpus * FLOW_CACHE_SLOTS
}

/// Where CPU `cpu`'s copy in `slot` ([`flow_cache_slot`]) is in `LB_FLOW_CACHE`: each CPU
/// has a region of its own (only that CPU writes copies there, so no line is shared).
#[inline(always)]
pub const fn flow_cache_index(cpu: u32, slot: u32) -> u32 {
    (cpu << FLOW_CACHE_BITS) | slot
}

/// One direction of a confirmed IPv4 flow as a packet with no news needs it, in one cache
/// line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedFlow {
    /// The packet's 5-tuple; a slot whose key differs holds another flow (or nothing: an
    /// all-zero key is no packet's, its protocol is 0).
    pub key: FlowKey,
    /// The rewrite (`Flow::src`..`dport`), in network byte order.
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// The next hop, fresh when copied.
    pub nh: NextHop,
    /// Counters' slots.
    pub server: u16,
    pub frontend: u16,
    /// When the copy was made (`jiffies`, low 32 bits); it serves for [`flow_cache_ttl`].
    pub stamp: u32,
    /// 1: the server -> client direction (its packets count as outgoing).
    pub reply: u8,
    pub _pad: [u8; 3],
}

/// A cache slot of a 5-tuple: a multiplicative hash of its fields.
#[inline(always)]
pub const fn flow_cache_slot(k: &FlowKey) -> u32 {
    let ports = ((k.sport as u32) << 16) | k.dport as u32;
    let h = k.src ^ k.dst.rotate_left(11) ^ ports.rotate_left(22) ^ k.proto as u32;
    h.wrapping_mul(0x9E37_79B1) >> (32 - FLOW_CACHE_BITS)
}

/// Whether a copy of `flow` may serve its packets: a confirmed flow that is not direct
/// server return (whose packets take an IPIP header, not a rewrite) and whose timeout leaves
/// room for a copy's lifetime, so that serving from the copy never outlives the flow.
#[inline(always)]
pub const fn may_cache(flow: &Flow) -> bool {
    copied_state(flow.state) && flow.flags & FLOW_F_DSR == 0 && flow.timeout > 2 * FLOW_CACHE_TTL
}

/// The states copies are made of.
#[inline(always)]
const fn copied_state(s: u8) -> bool {
    s == State::Established as u8 || s == State::UdpActive as u8
}

impl CachedFlow {
    /// The copy of `flow` (at `key`) going out through `nh`, made at `now` (jiffies).
    #[inline(always)]
    pub const fn of(key: &FlowKey, flow: &Flow, nh: &NextHop, now: u32) -> CachedFlow {
        CachedFlow {
            key: *key,
            src: flow.src,
            dst: flow.dst,
            sport: flow.sport,
            dport: flow.dport,
            nh: *nh,
            server: flow.server,
            frontend: flow.frontend,
            stamp: now,
            reply: flow.is_reply() as u8,
            _pad: [0; 3],
        }
    }

    /// Whether this is a copy of the flow at `key` (fresh or not, see [`CachedFlow::fresh`]).
    #[inline(always)]
    pub fn holds(&self, key: &FlowKey) -> bool {
        self.key.src == key.src
            && self.key.dst == key.dst
            && self.key.sport == key.sport
            && self.key.dport == key.dport
            && self.key.proto == key.proto
    }

    /// Whether the copy still serves at `now` (jiffies), living `ttl` jiffies. (Apart from
    /// [`CachedFlow::holds`]: a packet whose tuple has no copy never reads the clock.)
    #[inline(always)]
    pub const fn fresh(&self, now: u32, ttl: u32) -> bool {
        crate::clock::elapsed(now, self.stamp) < ttl
    }

    /// Whether a copy of the flow at `key` may take this slot at `now`: it is empty, this
    /// flow's own, or past its life. A live copy of another flow keeps it (for its lifetime
    /// at most): two busy flows sharing a slot would otherwise evict each other on every
    /// packet and neither be served from it.
    #[inline(always)]
    pub fn yields_to(&self, key: &FlowKey, now: u32, ttl: u32) -> bool {
        self.key.proto == 0 || self.holds(key) || !self.fresh(now, ttl)
    }

    /// Whether this copy serves a packet of `key` at `now`, living `ttl` jiffies.
    #[inline(always)]
    pub fn serves(&self, key: &FlowKey, now: u32, ttl: u32) -> bool {
        self.holds(key) && self.fresh(now, ttl)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_cpu_the_walk_reaches_has_a_region_and_no_other() {
        assert_eq!(flow_cache_entries(2), 2 * FLOW_CACHE_SLOTS);
        assert_eq!(
            flow_cache_entries(FLOW_CACHE_MAX_CPUS + 1),
            FLOW_CACHE_MAX_CPUS * FLOW_CACHE_SLOTS
        );
        // Regions never overlap, and the last one ends where the array does.
        assert_eq!(
            flow_cache_index(1, 0),
            flow_cache_index(0, FLOW_CACHE_SLOTS - 1) + 1
        );
        assert_eq!(
            flow_cache_index(FLOW_CACHE_MAX_CPUS - 1, FLOW_CACHE_SLOTS - 1) + 1,
            flow_cache_entries(FLOW_CACHE_MAX_CPUS)
        );
    }

    extern crate std;

    use super::*;
    use crate::{FLOW_F_REPLY, PROTO_TCP, PROTO_UDP, clock::ticks_from_ms};

    #[test]
    fn a_copy_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<CachedFlow>(), 64);
    }

    /// Distinct slots taken by `keys`.
    fn slots_used(keys: impl Iterator<Item = FlowKey>) -> usize {
        let mut used = [false; FLOW_CACHE_SLOTS as usize];
        for k in keys {
            used[flow_cache_slot(&k) as usize] = true;
        }
        used.iter().filter(|u| **u).count()
    }

    #[test]
    fn neighbouring_tuples_spread_over_the_slots() {
        // 1,000 flows of one client to one VIP, ports in a row (a busy client), then 1,000
        // clients in a row on one port: few share a slot (uniform hashing gives ~790).
        let (client, vip, http) = (
            0x0a00_0002u32.to_be(),
            0x0a00_0001u32.to_be(),
            80u16.to_be(),
        );
        let ports = (0..1000u16).map(|p| FlowKey::new(client, vip, (40000 + p).to_be(), http, 6));
        assert!(slots_used(ports) > 700);
        let clients = (0..1000u32)
            .map(|c| FlowKey::new((0x0a00_0100 + c).to_be(), vip, 40000u16.to_be(), http, 6));
        assert!(slots_used(clients) > 700);
    }

    fn flow(state: State, flags: u8, timeout_ms: u64) -> Flow {
        Flow {
            src: 1,
            dst: 2,
            sport: 3,
            dport: 4,
            state: state as u8,
            flags,
            server: 7,
            frontend: 2,
            timeout: ticks_from_ms(timeout_ms),
            ..Flow::default()
        }
    }

    #[test]
    fn only_confirmed_flows_with_room_for_a_copy_are_copied() {
        assert!(may_cache(&flow(State::Established, 0, 30_000)));
        assert!(may_cache(&flow(State::UdpActive, FLOW_F_REPLY, 30_000)));
        for s in [
            State::SynSent,
            State::SynRecv,
            State::FinWait,
            State::Closed,
            State::UdpNew,
            State::UdpReplied,
        ] {
            assert!(!may_cache(&flow(s, 0, 30_000)), "{s:?}");
        }
        assert!(!may_cache(&flow(State::Established, FLOW_F_DSR, 30_000)));
        // A timeout a copy's lifetime could outlive.
        assert!(!may_cache(&flow(State::Established, 0, 200)));
        assert!(may_cache(&flow(State::Established, 0, 300)));
    }

    #[test]
    fn a_copy_serves_its_own_tuple_for_its_lifetime() {
        let key = FlowKey::new(10, 20, 30, 40, PROTO_TCP);
        let c = CachedFlow::of(
            &key,
            &flow(State::Established, FLOW_F_REPLY, 30_000),
            &NextHop::default(),
            1000,
        );
        assert_eq!(
            (
                c.src, c.dst, c.sport, c.dport, c.server, c.frontend, c.reply
            ),
            (1, 2, 3, 4, 7, 2, 1)
        );
        let ttl = flow_cache_ttl(250);
        assert!(c.serves(&key, 1000, ttl));
        assert!(c.serves(&key, 1000 + ttl - 1, ttl));
        assert!(!c.serves(&key, 1000 + ttl, ttl));
        // Across the clock's wrap (jiffies start 5 minutes before theirs does).
        let w = CachedFlow {
            stamp: u32::MAX,
            ..c
        };
        assert!(w.serves(&key, 5, ttl));
        for other in [
            FlowKey::new(11, 20, 30, 40, PROTO_TCP),
            FlowKey::new(10, 21, 30, 40, PROTO_TCP),
            FlowKey::new(10, 20, 31, 40, PROTO_TCP),
            FlowKey::new(10, 20, 30, 41, PROTO_TCP),
            FlowKey::new(10, 20, 30, 40, PROTO_UDP),
        ] {
            assert!(!c.serves(&other, 1000, ttl), "{other:?}");
        }
        // An empty slot serves no packet (a packet's protocol is never 0).
        assert!(!CachedFlow::default().serves(&key, 0, ttl));
    }

    #[test]
    fn a_copy_never_lives_longer_than_its_time_whatever_the_kernel_ticks_at() {
        // HZ Linux offers, one that rounds down, one too slow for a whole jiffy.
        for (hz, jiffies) in [
            (100, 10),
            (250, 25),
            (300, 30),
            (1000, 100),
            (24, 2),
            (5, 1),
        ] {
            assert_eq!(flow_cache_ttl(hz), jiffies, "HZ {hz}");
        }
        for hz in [100, 250, 300, 1000, 24] {
            let lifetime_ms = u64::from(flow_cache_ttl(hz)) * 1000 / u64::from(hz);
            assert!(
                lifetime_ms <= FLOW_CACHE_TTL_MS,
                "HZ {hz}: {lifetime_ms} ms"
            );
        }
        // The least HZ assumed on a faster kernel only shortens it: 10 jiffies, 10 ms at
        // 1000 Hz.
        assert_eq!(flow_cache_ttl(MIN_HZ), 10);
    }

    #[test]
    fn a_live_copy_keeps_its_slot_from_another_busy_flow() {
        let ttl = flow_cache_ttl(250);
        let (key, other) = (
            FlowKey::new(10, 20, 30, 40, PROTO_TCP),
            FlowKey::new(11, 20, 30, 40, PROTO_TCP),
        );
        let c = CachedFlow::of(
            &key,
            &flow(State::Established, 0, 30_000),
            &NextHop::default(),
            1000,
        );
        assert!(
            CachedFlow::default().yields_to(&other, 1000, ttl),
            "an empty slot"
        );
        assert!(c.yields_to(&key, 1001, ttl), "its own flow, refreshed");
        assert!(
            !c.yields_to(&other, 1000 + ttl - 1, ttl),
            "another flow, while it lives"
        );
        assert!(
            c.yields_to(&other, 1000 + ttl, ttl),
            "another flow, once it is past its life"
        );
    }

    /// Packets of busy flows at `keys` in turn, several rounds, each miss copying its flow
    /// where the slot lets it (`keep`: [`CachedFlow::yields_to`]; else always): the share of
    /// the last round's packets served from a copy.
    fn served_share(keys: &[FlowKey], keep: bool) -> f64 {
        let mut slots = std::vec![CachedFlow::default(); FLOW_CACHE_SLOTS as usize];
        let (ttl, now, entry) = (
            flow_cache_ttl(250),
            1000,
            flow(State::Established, 0, 30_000),
        );
        let mut served = 0;
        for round in 0..3 {
            for k in keys {
                let slot = &mut slots[flow_cache_slot(k) as usize];
                if slot.serves(k, now, ttl) {
                    served += usize::from(round == 2);
                } else if !keep || slot.yields_to(k, now, ttl) {
                    *slot = CachedFlow::of(k, &entry, &NextHop::default(), now);
                }
            }
        }
        served as f64 / keys.len() as f64
    }

    #[test]
    fn busy_flows_sharing_slots_are_served_more_when_live_copies_keep_theirs() {
        let (client, vip, http) = (
            0x0a00_0002u32.to_be(),
            0x0a00_0001u32.to_be(),
            80u16.to_be(),
        );
        // The forwarding benchmark's 4,096 line-rate flows, source ports in a row.
        let bench: std::vec::Vec<FlowKey> = (0..4096u16)
            .map(|i| FlowKey::new(client, vip, (1024 + i).to_be(), http, PROTO_TCP))
            .collect();
        // 4,096 flows of clients and ports all over (a fixed pseudo-random sequence).
        let mut x = 0x2545_f491u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let spread: std::vec::Vec<FlowKey> = (0..4096)
            .map(|_| FlowKey::new(next(), vip, next() as u16, http, PROTO_TCP))
            .collect();
        // A flow alone in its slot is served either way; with live copies keeping their
        // slots, one flow of each shared slot is too, not none of them.
        let shares = |keys: &[FlowKey]| (served_share(keys, false), served_share(keys, true));
        let (evicting, keeping) = shares(&bench);
        assert!(evicting < 0.86 && keeping > 0.91, "{evicting} -> {keeping}");
        // Uniform hashing: e^-0.5 = 61% alone, 8192 (1 - e^-0.5) / 4096 = 79% slots taken.
        let (evicting, keeping) = shares(&spread);
        assert!(evicting > 0.57 && evicting < 0.65, "{evicting}");
        assert!(keeping > 0.76 && keeping < 0.82, "{keeping}");
    }
}
