//! Pools (HAProxy backends): flags, timeouts and the double-buffered table of server slots
//! round robin walks.
//!
//! Each pool owns two slots of [`TABLE_SIZE`] server slots in `LB_TABLES`. The daemon fills
//! the idle one, then publishes it by rewriting the pool's [`TableDesc`], a single aligned
//! `u32`, so a packet sees either the old table or the new one, never a mix.
use crate::conntrack::Timeouts;

/// Entries per table slot: bounds the sum of (reduced) weights of one pool.
pub const TABLE_SIZE: u32 = 4096;

/// Pool flag: rewrite only the destination (backends route replies through the LB).
pub const POOL_F_DNAT: u32 = 1 << 0;
/// Pool flag: when no server is available, pass VIP traffic to the local stack instead of
/// dropping it.
pub const POOL_F_EMPTY_PASS: u32 = 1 << 1;
/// Pool flag: `option redispatch`. A server that refuses a new connection (RST to the SYN)
/// gets its RST held back, and the client's retransmitted SYN goes to another server, up to
/// the pool's `retries` times per connection (see `balance::refusal`).
pub const POOL_F_REDISPATCH: u32 = 1 << 2;
/// Pool flag: some server of the pool has a `maxconn`: a new flow checks its server's room
/// (`LB_ACTIVE` against `ServerInfo::maxconn`). Without it no count is read.
pub const POOL_F_MAXCONN: u32 = 1 << 3;
/// Pool flag: a hashing pool ([`Algorithm::Maglev`]) hashes the client address alone
/// (`balance source`) rather than the whole 5-tuple.
pub const POOL_F_HASH_SOURCE: u32 = 1 << 4;
/// Pool flag: direct server return over IPIP (`nat dsr-ipip`): packets go to the server
/// unchanged inside an IPIP header, the server answers the client itself.
pub const POOL_F_DSR: u32 = 1 << 5;
/// Bits 8..16 of the pool flags: `retries`, capped at 255.
pub const POOL_RETRIES_SHIFT: u32 = 8;
/// Bits 16..20 of the pool flags: how a new flow picks its server ([`Algorithm`]).
pub const POOL_ALGO_SHIFT: u32 = 16;
const POOL_ALGO_MASK: u32 = 0xf;
/// Bits 20..24 of the pool flags: a hashing pool's ring, its pair of `LB_MAGLEV` values
/// (`maglev::maglev_index`).
pub const POOL_RING_SHIFT: u32 = 20;
const POOL_RING_MASK: u32 = 0xf;
const _: () = assert!(crate::maglev::MAGLEV_RINGS == POOL_RING_MASK + 1);
/// Bits 24..28 of the pool flags: `balance random(<draws>)`, 1 to [`MAX_DRAWS`].
pub const POOL_DRAWS_SHIFT: u32 = 24;
const POOL_DRAWS_MASK: u32 = 0xf;
/// The most draws `balance random(<draws>)` takes (HAProxy's default is 2).
pub const MAX_DRAWS: u32 = 15;

/// The ring in pool flags.
#[inline(always)]
pub const fn pool_ring(flags: u32) -> u32 {
    (flags >> POOL_RING_SHIFT) & POOL_RING_MASK
}

/// Pool flags holding `ring`.
pub const fn ring_flags(ring: u32) -> u32 {
    (ring & POOL_RING_MASK) << POOL_RING_SHIFT
}

/// How a pool picks the server of a new flow (HAProxy's `balance`); the data plane has one
/// function per algorithm (`lb-ebpf/src/new_flow.rs`, `choose`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// The pool's table in turn (`roundrobin`, `static-rr`).
    #[default]
    RoundRobin = 0,
    /// The server with the fewest active flows for its weight (`leastconn`); the table holds
    /// each server once, with its weight ([`TableEntry`]).
    LeastConn = 1,
    /// The first server, in the table's order, with room under its `maxconn` (`first`).
    First = 2,
    /// The least loaded of a few servers drawn at random, weights respected (`random`): the
    /// table holds weighted repetitions, with weights.
    Random = 4,
    /// The flow's hash (5-tuple, or the source with `POOL_F_HASH_SOURCE`) into the pool's
    /// Maglev table (`hash-type consistent`, `balance source`): every lb node picks the same
    /// server for the same flow. The table's length is in the pool's `TableDesc`, the table
    /// in `LB_MAGLEV` (see `maglev`).
    Maglev = 8,
}

impl Algorithm {
    /// The algorithm in pool flags; round robin for a value this build does not know.
    #[inline(always)]
    pub const fn of_flags(flags: u32) -> Algorithm {
        // One arm per algorithm.
        match (flags >> POOL_ALGO_SHIFT) & POOL_ALGO_MASK {
            1 => Algorithm::LeastConn,
            2 => Algorithm::First,
            4 => Algorithm::Random,
            8 => Algorithm::Maglev,
            _ => Algorithm::RoundRobin,
        }
    }

    /// Its bits in pool flags.
    pub const fn flags(self) -> u32 {
        (self as u32 & POOL_ALGO_MASK) << POOL_ALGO_SHIFT
    }
}

/// `balance random(<draws>)` in pool flags, clamped to 1..=[`MAX_DRAWS`].
pub const fn draws_flags(draws: u32) -> u32 {
    let d = if draws == 0 {
        1
    } else if draws > MAX_DRAWS {
        MAX_DRAWS
    } else {
        draws
    };
    d << POOL_DRAWS_SHIFT
}

/// The draws of a `random` pool; 2 (HAProxy's default) when the flags hold none.
#[inline(always)]
pub const fn draws_of(flags: u32) -> u32 {
    match (flags >> POOL_DRAWS_SHIFT) & POOL_DRAWS_MASK {
        0 => 2,
        d => d,
    }
}

/// An entry of a pool's table: a server slot, and for the algorithms that weigh servers
/// against their load (`leastconn`, `random`) its effective weight. Round-robin tables hold
/// bare slots (weight 0), which read back the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableEntry {
    pub slot: u32,
    /// HAProxy's effective weight (`cur_eweight`): the user weight (0-256) times
    /// [`WEIGHT_SCALE`], less while a slow start ramps it.
    pub weight: u32,
}

/// HAProxy's `BE_WEIGHT_SCALE`: effective weights are user weights times this, so a slow
/// start ramps in steps of 1/16.
pub const WEIGHT_SCALE: u32 = 16;

impl TableEntry {
    #[inline(always)]
    pub const fn pack(self) -> u32 {
        (self.slot & 0xffff) | (self.weight << 16)
    }

    #[inline(always)]
    pub const fn unpack(raw: u32) -> TableEntry {
        TableEntry {
            slot: raw & 0xffff,
            weight: raw >> 16,
        }
    }
}

/// `LB_POOLS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolInfo {
    /// The published table, see [`TableDesc`]. Written by the daemon as one aligned store.
    pub table: u32,
    /// `POOL_F_*`.
    pub flags: u32,
    /// How long flows of this pool may idle in each state.
    pub timeouts: Timeouts,
}

/// Which table slot of a pool is live and how many entries it holds, packed in one `u32` so
/// that publishing a new table is a single atomic store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableDesc {
    pub slot: u32,
    pub len: u32,
}

impl TableDesc {
    const SLOT_BIT: u32 = 1 << 31;

    #[inline(always)]
    pub const fn pack(self) -> u32 {
        ((self.slot & 1) * Self::SLOT_BIT) | (self.len & !Self::SLOT_BIT)
    }

    #[inline(always)]
    pub const fn unpack(raw: u32) -> TableDesc {
        TableDesc {
            slot: raw >> 31,
            len: raw & !Self::SLOT_BIT,
        }
    }
}

/// Index into `LB_TABLES` of entry `i` of `slot` of `pool`.
#[inline(always)]
pub const fn table_index(pool: u32, slot: u32, i: u32) -> u32 {
    (pool * 2 + (slot & 1)) * TABLE_SIZE + i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_round_trip_through_pool_flags() {
        let flags = POOL_F_DNAT | POOL_F_MAXCONN | (3 << POOL_RETRIES_SHIFT) | draws_flags(3);
        for a in [
            Algorithm::RoundRobin,
            Algorithm::LeastConn,
            Algorithm::First,
            Algorithm::Random,
            Algorithm::Maglev,
        ] {
            assert_eq!(Algorithm::of_flags(flags | a.flags()), a);
        }
        assert_eq!(
            Algorithm::of_flags(15 << POOL_ALGO_SHIFT),
            Algorithm::RoundRobin
        );
        let f = Algorithm::Maglev.flags() | ring_flags(15) | POOL_F_HASH_SOURCE;
        assert_eq!(
            (Algorithm::of_flags(f), pool_ring(f)),
            (Algorithm::Maglev, 15)
        );
        assert_eq!(pool_ring(flags), 0);
    }

    #[test]
    fn draws_default_to_two_and_stay_in_range() {
        assert_eq!(draws_of(0), 2);
        assert_eq!(draws_of(draws_flags(3) | Algorithm::Random.flags()), 3);
        assert_eq!(draws_of(draws_flags(0)), 1);
        assert_eq!(draws_of(draws_flags(99)), MAX_DRAWS);
        assert_eq!(draws_flags(5) & Algorithm::LeastConn.flags(), 0);
    }

    #[test]
    fn table_entries_carry_slot_and_weight() {
        let e = TableEntry {
            slot: 4095,
            weight: 256 * WEIGHT_SCALE,
        };
        assert_eq!(TableEntry::unpack(e.pack()), e);
        // A round-robin table's bare slot reads back with weight 0.
        assert_eq!(TableEntry::unpack(7), TableEntry { slot: 7, weight: 0 });
    }

    #[test]
    fn descriptors_pack_into_one_word() {
        for d in [
            TableDesc { slot: 0, len: 0 },
            TableDesc { slot: 1, len: 7 },
            TableDesc {
                slot: 1,
                len: TABLE_SIZE,
            },
        ] {
            assert_eq!(TableDesc::unpack(d.pack()), d);
        }
        assert_eq!(table_index(1, 1, 3), 3 * TABLE_SIZE + 3);
    }
}
