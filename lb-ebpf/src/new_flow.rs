//! A new flow, in three stages called in turn from `path::process` (each a subprogram, see
//! `verdict`): [`choose`] the server (the pool's algorithm), [`admit`] the
//! flow (track it half-open, binding a full-NAT source port), then [`send`] the packet. Fields
//! are read from the [`NewFlow`] where they are used: with four callee-saved registers, each
//! value held across a helper call costs a stack slot, and the stack is short.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    ACTIVE_TOTAL, Algorithm, EVENT_F_REDISPATCHED, FLOW_F_TS, FlowKeyOf, FlowOf, MAGLEV_CAP,
    POOL_F_DNAT, POOL_F_DSR, POOL_F_EMPTY_PASS, POOL_F_HASH_SOURCE, POOL_F_MAXCONN, Reason,
    SETTINGS_F_LOG_FLOWS, TableDesc,
    balance::{has_room, rr_slot},
    maglev::{MAGLEV_NONE, maglev_entry},
    maglev_index, pool_ring, table_index,
};

use crate::{
    active,
    atomic::fetch_add,
    by_load,
    conntrack::{self, Target},
    family::{Addr, IpHdr},
    forward,
    maps::{LB_MAGLEV, LB_POOL_RR, LB_POOLS, LB_SETTINGS, LB_TABLES},
    nat::TupleOf,
    parse::PacketOf,
    path::{Acct, deliver, pass, tuple},
    stats::{self, Dir, Event},
    verdict::GO_ON,
};

/// Why a packet starts a new flow.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A new connection (or a new one on a closed flow's tuple).
    Fresh,
    /// The client retransmits a SYN that `server` refused, refused `attempts` times so far.
    Refused { server: u32, attempts: u8 },
}

/// What a new flow starts from, and (from [`choose`]) where it goes.
#[derive(Clone, Copy)]
pub struct NewFlow {
    pub pool: u32,
    pub frontend: u32,
    pub cause: Cause,
    pub now: u32,
    /// The server slot, its refusals so far, and the pool's NAT mode.
    pub server: u32,
    pub attempts: u8,
    pub full_nat: bool,
    pub dsr: bool,
}

impl NewFlow {
    #[inline(always)]
    pub fn fresh(now: u32) -> NewFlow {
        NewFlow {
            pool: 0,
            frontend: 0,
            cause: Cause::Fresh,
            now,
            server: 0,
            attempts: 0,
            full_nat: false,
            dsr: false,
        }
    }

    /// A new flow on the tuple of `old` (same pool and frontend).
    #[inline(always)]
    pub fn again<A>(&mut self, old: &FlowOf<A>, cause: Cause) {
        self.pool = old.pool as u32;
        self.frontend = old.frontend as u32;
        self.cause = cause;
    }
}

/// The three stages; any of them may end the packet's way with an action.
#[inline(always)]
pub fn start<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    new: &mut NewFlow,
) -> u32 {
    match choose(ctx, pkt, key, new) {
        GO_ON => {}
        action => return action,
    }
    // Two subprograms: direct server return's one entry must not cost full-NAT's tracking
    // (which fills the stack to the verifier's limit) a byte.
    let admitted = if new.dsr {
        admit_dsr(pkt, key, new)
    } else {
        admit(ctx, pkt, key, new)
    };
    match admitted {
        GO_ON => {}
        action => return action,
    }
    send(ctx, pkt, key, new)
}

/// Table entries a retry looks at to find another server than the one that refused.
const RETRY_STEPS: u32 = 4;

/// Picks the server for the new flow into `new` (the pool's algorithm; for a refused SYN
/// retried, another server than the one that refused): [`GO_ON`], or the action when there is
/// none.
#[inline(never)]
fn choose<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    new: &mut NewFlow,
) -> u32 {
    let Some(settings) = LB_SETTINGS.get_ptr(0) else {
        return pass(Reason::PassNotService);
    };
    // SAFETY: an array slot, never freed.
    let (stop_at, maxconn) = unsafe { ((*settings).stop_at, (*settings).maxconn) };
    if stop_at != 0 && new.now.wrapping_sub(stop_at) as i32 >= 0 {
        return pass(Reason::PassStopped);
    }
    if maxconn != 0 && !has_room(active::of(ACTIVE_TOTAL), maxconn) {
        stats::reason(Reason::DropGlobalMaxconn);
        return xdp_action::XDP_DROP;
    }
    let pool = new.pool;
    let Some(info) = LB_POOLS.get_ptr(pool) else {
        return pass(Reason::PassNotService);
    };
    // SAFETY: array slots are never freed; `table` is read with one load (see `TableDesc`).
    let (table, flags) = unsafe {
        (
            TableDesc::unpack(core::ptr::read_volatile(&(*info).table)),
            (*info).flags,
        )
    };
    if table.len == 0 {
        if flags & POOL_F_EMPTY_PASS != 0 {
            return pass(Reason::PassNoServer);
        }
        stats::reason(Reason::DropNoServer);
        return xdp_action::XDP_DROP;
    }
    let avoid = match new.cause {
        Cause::Refused { server, .. } => server,
        Cause::Fresh => by_load::NONE,
    };
    let limited = flags & POOL_F_MAXCONN != 0;
    let id = match Algorithm::of_flags(flags) {
        Algorithm::RoundRobin => match round_robin(pool, table, new.cause) {
            id if limited => by_load::rr_with_room(pool, table, id, avoid),
            id => id,
        },
        Algorithm::LeastConn => by_load::least_conn(pool, table.pack(), flags, avoid),
        Algorithm::First => by_load::first(pool, table.pack(), avoid),
        Algorithm::Random => by_load::random(pool, table.pack(), flags, avoid),
        Algorithm::Maglev => {
            let id = maglev(flags, table, key, new.cause);
            // A hashing pool's ring may change hands on a reload: a packet reading the old
            // one meanwhile must not reach another pool's server.
            // SAFETY: an array slot, never freed.
            if H::A::server(id).is_none_or(|s| unsafe { (*s).pool } != pool) {
                stats::reason(Reason::DropNoServer);
                return xdp_action::XDP_DROP;
            }
            id
        }
    };
    if id == by_load::NONE {
        stats::reason(Reason::DropMaxconn);
        return xdp_action::XDP_DROP;
    }
    new.server = id;
    new.attempts = match new.cause {
        Cause::Refused { attempts, .. } => attempts,
        Cause::Fresh => 0,
    };
    new.full_nat = flags & (POOL_F_DNAT | POOL_F_DSR) == 0;
    new.dsr = flags & POOL_F_DSR != 0;
    refresh_next_hop(ctx, pkt, new);
    GO_ON
}

/// The new flow's entries start with its server's next hop (see `forward`): refreshed here,
/// for the rewrite this flow will have (its full-NAT source port is not chosen yet; the FIB's
/// answer does not depend on it without port-based policy routing). When the kernel must
/// resolve the neighbour the entries start empty and the flow's own packets look it up.
/// (Here rather than in `admit`: the FIB lookup's frame must not stack on `track`'s.)
#[inline(always)]
fn refresh_next_hop<H: IpHdr>(ctx: &XdpContext, pkt: &PacketOf<H>, new: &NewFlow) {
    let Some(server) = H::A::server(new.server) else {
        return;
    };
    // SAFETY: array slots are never freed.
    let to = unsafe {
        TupleOf {
            // Direct server return: the outer header's source, as full-NAT's.
            src: if new.full_nat || new.dsr {
                (*server).snat_addr
            } else {
                pkt.src()
            },
            sport: pkt.sport(),
            dst: (*server).addr,
            dport: (*server).port,
        }
    };
    // SAFETY: as above.
    let _ = forward::route(
        ctx,
        &pkt.frame(),
        &to,
        unsafe { &mut (*server).nh },
        new.now,
    );
}

/// The server slot at entry `slot` of the pool's live `table` (`u32::MAX` if out of range).
#[inline(always)]
fn table_entry(pool: u32, table: TableDesc, slot: u32) -> u32 {
    LB_TABLES
        .get(table_index(pool, table.slot, slot))
        .copied()
        .unwrap_or(u32::MAX)
}

/// Round robin: the entry the pool's cursor points at, the cursor moved on.
#[inline(always)]
fn round_robin(pool: u32, table: TableDesc, cause: Cause) -> u32 {
    let Some(cursor) = LB_POOL_RR.get_ptr_mut(pool) else {
        return u32::MAX;
    };
    match cause {
        Cause::Fresh => table_entry(pool, table, rr_slot(fetch_add(cursor), table.len)),
        Cause::Refused { server, .. } => {
            // A retry takes the entry the cursor points at without moving it (moving it
            // would send the next new connection back to the server that refused this one),
            // or the next entries if that is the refusing server: with weights a server may
            // hold several entries in a row, a few steps are all a retry gets.
            // SAFETY: an array slot, read once.
            let slot = rr_slot(unsafe { core::ptr::read_volatile(cursor) }, table.len);
            let mut id = table_entry(pool, table, slot);
            for step in 1..RETRY_STEPS {
                if id != server {
                    break;
                }
                id = table_entry(pool, table, rr_slot(slot as u64 + step as u64, table.len));
            }
            id
        }
    }
}

/// Maglev: the flow's hash into the pool's table (`lb_common::maglev`), the same server on
/// every lb node. A retry takes the next entries, as round robin does.
#[inline(always)]
fn maglev<A: Addr>(flags: u32, table: TableDesc, key: &FlowKeyOf<A>, cause: Cause) -> u32 {
    let hash = if flags & POOL_F_HASH_SOURCE != 0 {
        key.src.source_hash()
    } else {
        A::flow_hash(key)
    };
    let Some(t) = LB_MAGLEV.get_ptr(maglev_index(pool_ring(flags), table.slot)) else {
        return u32::MAX;
    };
    let entry = |i: u32| -> u32 {
        // The mask gives the verifier 64-bit bounds (a 32-bit remainder has none).
        let i = (maglev_entry(i, table.len) & 0x1_ffff) as usize;
        if i >= MAGLEV_CAP {
            return u32::MAX;
        }
        // SAFETY: an array slot, never freed; `i` is in bounds.
        match unsafe { (*t)[i] } {
            MAGLEV_NONE => u32::MAX,
            slot => slot as u32,
        }
    };
    let mut id = entry(hash);
    if let Cause::Refused { server, .. } = cause {
        for step in 1..RETRY_STEPS {
            if id != server {
                break;
            }
            id = entry(maglev_entry(hash, table.len).wrapping_add(step));
        }
    }
    id
}

/// Tracks the flow to the chosen server (`conntrack::track`, inlined): [`GO_ON`] with its
/// entries in this CPU's scratch, or the action.
#[inline(never)]
fn admit<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    new: &NewFlow,
) -> u32 {
    let Some(settings) = LB_SETTINGS.get_ptr(0) else {
        return pass(Reason::PassNotService);
    };
    let Some(server) = H::A::server(new.server) else {
        stats::reason(Reason::DropNoServer);
        return xdp_action::XDP_DROP;
    };
    // Timestamps only matter to full-NAT's port reuse rule; the options walk is skipped
    // otherwise.
    let ts = if new.full_nat && pkt.is_tcp() {
        pkt.timestamp(ctx)
    } else {
        0
    };
    let target = Target {
        slot: new.server,
        server,
        pool: new.pool,
        frontend: new.frontend,
        full_nat: new.full_nat,
        flags: if ts != 0 { FLOW_F_TS } else { 0 },
        attempts: new.attempts,
        ts,
        settings,
        now: new.now,
    };
    conntrack::track(pkt, key, &target)
}

/// [`admit`] for a direct-server-return pool (`conntrack::track_dsr`, inlined).
#[inline(never)]
fn admit_dsr<H: IpHdr>(pkt: &PacketOf<H>, key: &FlowKeyOf<H::A>, new: &NewFlow) -> u32 {
    let (Some(settings), Some(server)) = (LB_SETTINGS.get_ptr(0), H::A::server(new.server)) else {
        stats::reason(Reason::DropNoServer);
        return xdp_action::XDP_DROP;
    };
    let target = Target {
        slot: new.server,
        server: server.cast_const(),
        pool: new.pool,
        frontend: new.frontend,
        full_nat: false,
        flags: 0,
        attempts: 0,
        ts: 0,
        settings,
        now: new.now,
    };
    conntrack::track_dsr(pkt, key, &target)
}

/// Reports the flow (`option tcplog`), then rewrites and forwards the packet as its new
/// forward entry says, through the server's cached next hop (which the entry started with).
#[inline(never)]
fn send<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    new: &NewFlow,
) -> u32 {
    let (Some(scratch), Some(settings), Some(server)) = (
        conntrack::scratch::<H::A>(),
        LB_SETTINGS.get_ptr(0),
        H::A::server(new.server),
    ) else {
        return pass(Reason::PassNotService);
    };
    let event = Event {
        new_flow: true,
        redispatched: new.cause != Cause::Fresh,
    };
    // SAFETY: an array slot, never freed.
    if unsafe { (*settings).flags } & SETTINGS_F_LOG_FLOWS != 0 {
        report(key, new, event);
    }
    // SAFETY: this CPU's scratch, which `admit` just filled.
    let to = tuple(unsafe { &(*scratch).fwd });
    let acct = Acct {
        server: new.server,
        frontend: new.frontend,
        dir: Dir::In,
        event,
    };
    // SAFETY: array slots are never freed.
    let nh = unsafe { &raw mut (*server).nh };
    let routed = forward::route(ctx, &pkt.frame(), &to, nh, new.now);
    // SAFETY: this CPU's scratch as above.
    unsafe { deliver(ctx, pkt, &to, &acct, nh, routed, &(*scratch).fwd.flags) }
}

/// Tells the daemon about a new flow (`option tcplog`); dropped if the ring is full.
#[inline(always)]
fn report<A: Addr>(key: &FlowKeyOf<A>, new: &NewFlow, ev: Event) {
    let flags = if ev.redispatched {
        EVENT_F_REDISPATCHED
    } else {
        0
    };
    A::report(key, new.server, new.frontend, flags);
}
