//! The algorithms that weigh servers against their active flows (`LB_ACTIVE`): `leastconn`,
//! `first`, `random`, and `maxconn`'s search for a server with room. Each walks the pool's
//! live table with `bpf_loop` (one callback, verified once, however long the table), and
//! returns a server slot, or [`NONE`] when no server has room. The weighing itself is pure
//! code in `lb_common::balance`.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_get_prandom_u32, bpf_loop};
use lb_common::{
    POOL_F_MAXCONN, TableDesc, TableEntry,
    balance::{draw_wins, has_room, leastconn_key, rr_slot},
    draws_of, table_index,
};

use crate::{
    active,
    atomic::fetch_add,
    maps::{LB_POOL_RR, LB_SERVERS, LB_TABLES},
};

/// No server with room.
pub const NONE: u32 = u32::MAX;

/// `rr_slot` for a length the compiler cannot prove non-zero (a division by zero would be a
/// panic path, which the verifier rejects).
#[inline(always)]
fn at(counter: u64, len: u32) -> u32 {
    if len == 0 { 0 } else { rr_slot(counter, len) }
}

/// A walk over a pool's table, on the caller's stack (the callbacks get a pointer to it).
#[repr(C)]
struct Walk {
    pool: u32,
    /// The live table, packed (`TableDesc`).
    table: u32,
    /// Where the walk starts in the table.
    start: u32,
    /// The server that refused this flow (a retry): taken only if no other has room.
    avoid: u32,
    /// Non-zero: servers have a `maxconn` to check.
    limited: u32,
    /// The best server so far ([`NONE`]), and what made it best.
    best: u32,
    best_weight: u32,
    /// Taken if nothing else is: the refusing server, when it has room.
    fallback: u32,
    best_key: u64,
}

impl Walk {
    #[inline(always)]
    fn new(pool: u32, table: u32, start: u32, avoid: u32, flags: u32) -> Walk {
        Walk {
            pool,
            table,
            start,
            avoid,
            limited: flags & POOL_F_MAXCONN,
            best: NONE,
            best_weight: 0,
            fallback: NONE,
            best_key: u64::MAX,
        }
    }

    /// The table's `i`-th entry from the start (wrapping), with its server's active flows;
    /// `None` for a slot out of range or a server without room.
    #[inline(always)]
    fn entry(&self, i: u32) -> Option<(TableEntry, u64)> {
        let t = TableDesc::unpack(self.table);
        let idx = at(self.start as u64 + i as u64, t.len);
        let e = TableEntry::unpack(*LB_TABLES.get(table_index(self.pool, t.slot, idx))?);
        let active = active::of(e.slot);
        if self.limited != 0 && !has_room(active, maxconn(e.slot)) {
            return None;
        }
        Some((e, active))
    }

    /// The best server, else the fallback.
    #[inline(always)]
    fn result(&self) -> u32 {
        if self.best != NONE {
            self.best
        } else {
            self.fallback
        }
    }

    /// Runs `step` over `n` entries.
    #[inline(always)]
    fn run(&mut self, n: u32, step: extern "C" fn(u32, *mut c_void) -> i64) {
        // SAFETY: `step` is a static function and `self` outlives the loop (bpf_loop calls
        // back synchronously).
        unsafe {
            bpf_loop(n, step as *mut c_void, self as *mut Walk as *mut c_void, 0);
        }
    }
}

/// The server's `maxconn` (0: none).
#[inline(always)]
fn maxconn(slot: u32) -> u32 {
    LB_SERVERS.get(slot).map_or(0, |s| s.maxconn)
}

/// Whether the server at `slot` may take another flow under its `maxconn`.
#[inline(always)]
pub fn room(slot: u32) -> bool {
    has_room(active::of(slot), maxconn(slot))
}

/// bpf_loop's verdicts.
const GO: i64 = 0;
const STOP: i64 = 1;

/// `leastconn`: the lowest `leastconn_key` with room; the walk starts at the pool's cursor,
/// moved on, so servers of equal load take turns (HAProxy's round robin within a load).
/// (Tables are passed packed, `TableDesc::pack`: a subprogram takes five scalars at most.)
#[inline(never)]
pub fn least_conn(pool: u32, table: u32, flags: u32, avoid: u32) -> u32 {
    let Some(cursor) = LB_POOL_RR.get_ptr_mut(pool) else {
        return NONE;
    };
    let len = TableDesc::unpack(table).len;
    let start = at(fetch_add(cursor), len);
    let mut w = Walk::new(pool, table, start, avoid, flags);
    w.run(len, least_conn_step);
    w.result()
}

extern "C" fn least_conn_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Walk` (see `Walk::run`).
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let Some((e, active)) = w.entry(i) else {
        return GO;
    };
    if e.slot == w.avoid {
        w.fallback = e.slot;
        return GO;
    }
    let key = leastconn_key(active, e.weight);
    if key < w.best_key {
        w.best = e.slot;
        w.best_key = key;
    }
    // An idle server: none can do better.
    if key == 0 { STOP } else { GO }
}

/// `first`: the first server in the table's order (the config's) with room.
#[inline(never)]
pub fn first(pool: u32, table: u32, avoid: u32) -> u32 {
    let mut w = Walk::new(pool, table, 0, avoid, POOL_F_MAXCONN);
    w.run(TableDesc::unpack(table).len, first_step);
    w.result()
}

extern "C" fn first_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: as in `least_conn_step`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let Some((e, _)) = w.entry(i) else {
        return GO;
    };
    if e.slot == w.avoid {
        w.fallback = e.slot;
        return GO;
    }
    w.best = e.slot;
    STOP
}

/// `random(<draws>)`: `draws` entries drawn at random (the table repeats servers by
/// weight), the least loaded for its weight kept (HAProxy's `get_server_rnd`); if none had
/// room, the next server with room from a random place.
#[inline(never)]
pub fn random(pool: u32, table: u32, flags: u32, avoid: u32) -> u32 {
    // SAFETY: a helper without arguments.
    let start = at(
        unsafe { bpf_get_prandom_u32() } as u64,
        TableDesc::unpack(table).len,
    );
    let mut w = Walk::new(pool, table, start, avoid, flags);
    w.run(draws_of(flags), random_step);
    match w.best {
        NONE => with_room(pool, table, start, avoid),
        id => id,
    }
}

extern "C" fn random_step(_: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: as in `least_conn_step`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    // Each draw anywhere in the table: `entry` counts from `start`, so draw an offset.
    // SAFETY: a helper without arguments.
    let offset = unsafe { bpf_get_prandom_u32() };
    let Some((e, active)) = w.entry(offset) else {
        return GO;
    };
    if e.slot == w.avoid {
        return GO;
    }
    if w.best == NONE || draw_wins(active, e.weight, w.best_key, w.best_weight) {
        w.best = e.slot;
        w.best_key = active;
        w.best_weight = e.weight;
    }
    GO
}

/// `maxconn`: the first server with room from entry `start` of the table on (round robin's
/// cursor, so the search goes on in turn), the refusing server last; [`NONE`] if all are
/// full.
#[inline(never)]
pub fn with_room(pool: u32, table: u32, start: u32, avoid: u32) -> u32 {
    let mut w = Walk::new(pool, table, start, avoid, POOL_F_MAXCONN);
    w.run(TableDesc::unpack(table).len, first_step);
    w.result()
}

/// Round robin's choice `id` if it has room, else the next server in turn that has.
#[inline(always)]
pub fn rr_with_room(pool: u32, table: TableDesc, id: u32, avoid: u32) -> u32 {
    if room(id) {
        return id;
    }
    let Some(cursor) = LB_POOL_RR.get_ptr(pool) else {
        return NONE;
    };
    // SAFETY: an array slot, read once.
    let next = unsafe { core::ptr::read_volatile(cursor) };
    with_room(pool, table.pack(), rr_slot(next, table.len), avoid)
}
