//! Connection tracking: two LRU tables of flow entries, both directions of a flow always in
//! the same one. New flows start in `LB_HALFOPEN` and move to `LB_FLOWS` when confirmed (the
//! rules are pure code in `lb_common::conntrack`), so a flood of SYNs or spoofed UDP only
//! churns the half-open table.
use core::sync::atomic::{Ordering, compiler_fence};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, xdp_action},
    cty::c_void,
    helpers::generated::bpf_loop,
};
use lb_common::{
    FLOW_F_DSR, FLOW_F_REFUSED, FLOW_F_REPLY, FlowKeyOf, FlowOf, NextHop, PROTO_TCP, PROTO_UDP,
    PortProbeOf, Reason, ScratchOf, ServerInfoOf, Settings, State,
    balance::{SNAT_PROBES, snat_port},
    conntrack::{
        Claimant, active_delta, dead, expiry_asks_mirror, idle_expired, port_rested, port_reusable,
        server_may_hold,
    },
};

use crate::{
    active,
    atomic::fetch_add,
    family::{Addr, IpHdr},
    maps::{LB_POOLS, LB_SNAT_CURSOR},
    observe,
    parse::{PacketOf, TS_PRESENT},
    stats,
    verdict::GO_ON,
};

/// Which table an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Flows,
    HalfOpen,
}

impl Table {
    #[inline(always)]
    pub fn get<A: Addr>(self, key: &FlowKeyOf<A>) -> Option<*mut FlowOf<A>> {
        A::table_get(self, key)
    }

    #[inline(always)]
    fn remove<A: Addr>(self, key: &FlowKeyOf<A>) {
        A::table_remove(self, key)
    }

    #[inline(always)]
    fn insert<A: Addr>(self, key: &FlowKeyOf<A>, f: &FlowOf<A>, flags: u32) -> bool {
        A::table_insert(self, key, f, flags as u64)
    }
}

/// The entry for `key`: confirmed flows first, they are most of the traffic.
#[inline(always)]
pub fn lookup<A: Addr>(key: &FlowKeyOf<A>) -> Option<(*mut FlowOf<A>, Table)> {
    if let Some(e) = Table::Flows.get(key) {
        return Some((e, Table::Flows));
    }
    Table::HalfOpen.get(key).map(|e| (e, Table::HalfOpen))
}

/// Whether the entry `f`, found at `key` in `table`, is dead at `now`: idle beyond its
/// timeout, and (in states where one direction may be quiet) its other direction too, if
/// that is still this flow's.
#[inline(always)]
pub fn expired<A: Addr>(f: &FlowOf<A>, key: &FlowKeyOf<A>, table: Table, now: u32) -> bool {
    // The mirror is looked up only when this entry is idle (rare): `dead` asks first.
    if !idle_expired(f, now) {
        return false;
    }
    let mirror = if expiry_asks_mirror(f.state) && f.flags & FLOW_F_DSR == 0 {
        A::with_mirror(f, key.proto, |m| table.get(m)).flatten()
    } else {
        None
    };
    // SAFETY: read in place; a racing update at worst keeps the flow one packet longer.
    dead(f, key, mirror.map(|m| unsafe { &*m }), now)
}

/// Removes both entries of the flow whose entry `f` sits at `key` (the other one only if it
/// still points back: its tuple may have gone to another flow since).
#[inline(always)]
pub fn forget<A: Addr>(table: Table, key: &FlowKeyOf<A>, f: &FlowOf<A>, proto: u8) {
    A::with_mirror(f, proto, |mkey| {
        if let Some(m) = table.get(mkey)
            // SAFETY: read in place.
            && points_back(unsafe { &*m }, key)
        {
            table.remove(mkey);
        }
    });
    table.remove(key);
}

/// Whether the entry `m` names `key` as its other direction (`mirror_key`), compared field by
/// field rather than built.
#[inline(always)]
fn points_back<A: Addr>(m: &FlowOf<A>, key: &FlowKeyOf<A>) -> bool {
    m.dst == key.src && m.src == key.dst && m.dport == key.sport && m.sport == key.dport
}

/// A flow that ends while its tuple is in use again (the entry `f` at `key` expired, or its
/// client starts a new connection on it): forgotten, but when `f` is the forward entry of a
/// full-NAT TCP flow whose server may still hold the port (`server_may_hold`), the reply
/// entry stays, so the port's next user still meets `port_reusable` and `port_rested`. Its
/// mirror, the client tuple, may pass to another flow; `forget` and `expired` then leave
/// that alone.
#[inline(always)]
pub fn retire<A: Addr>(table: Table, key: &FlowKeyOf<A>, f: &FlowOf<A>, proto: u8) {
    let full_nat = !f.is_reply() && f.src != key.src;
    if full_nat && proto == PROTO_TCP && server_may_hold(f.state, f.flags) {
        table.remove(key);
    } else {
        forget(table, key, f, proto);
    }
}

/// What a packet changes in its flow, see [`transition`].
#[derive(Clone, Copy)]
pub struct Change {
    pub state: State,
    pub flags: u8,
    /// `Flow::tcp_ref` from now on: the server's ISN (its SYN-ACK), the client's last TSval
    /// (its FIN), or as it was. (Not an `Option`: LLVM stores a `None`'s payload from whatever
    /// register is at hand, which the verifier rejects when that holds a pointer.)
    pub tcp_ref: u32,
    /// `Flow::client_fin` from now on.
    pub client_fin: u32,
    /// The flow is confirmed: it moves to `LB_FLOWS`.
    pub promote: bool,
    pub proto: u8,
    pub now: u32,
}

/// The flow moves to `state` with `flags` (the flow-wide bits; each entry keeps its own
/// `REPLY` and `REFUSED`): both entries are updated in place, and a flow that `promote`s
/// moves from the half-open table to the confirmed one. Returns where the entry for `key` now
/// is. A subprogram: state changes are a few packets per flow.
#[inline(never)]
pub fn transition<A: Addr>(
    table: Table,
    key: &FlowKeyOf<A>,
    entry: *mut FlowOf<A>,
    c: &Change,
) -> Option<*mut FlowOf<A>> {
    const OWN: u8 = FLOW_F_REPLY | FLOW_F_REFUSED;
    // SAFETY: LRU values updated in place; a racing eviction at worst loses this update and
    // the flow restarts from the table's view.
    let (pool, server, before) = unsafe { ((*entry).pool, (*entry).server, (*entry).state) };
    let Some(info) = LB_POOLS.get_ptr(pool as u32) else {
        return Some(entry);
    };
    // The server's active flows follow the step (`leastconn`, `maxconn`), and a SYN-ACK
    // clears its refusals in a row (`observe layer4`).
    if let Some(from) = State::from_u8(before) {
        match active_delta(from, c.state) {
            0 => {}
            d => active::add(server as u32, d),
        }
        if from == State::SynSent && c.state == State::SynRecv {
            observe::accepted(server as u32);
        }
    }
    let update = |f: *mut FlowOf<A>| unsafe {
        let flags = ((*f).flags & OWN) | (c.flags & !OWN);
        (*f).tcp_ref = c.tcp_ref;
        (*f).client_fin = c.client_fin;
        (*f).timeout = (*info)
            .timeouts
            .of(c.state, flags, flags & FLOW_F_REPLY != 0);
        // State and flags last: another CPU may be deciding on this entry's port right now
        // (`port_reusable`), and must not see a closed state with the previous `tcp_ref`.
        compiler_fence(Ordering::Release);
        (*f).flags = flags;
        (*f).state = c.state as u8;
    };
    update(entry);
    unsafe { (*entry).last_seen = c.now };
    A::with_mirror(unsafe { &*entry }, c.proto, |mkey| {
        let mirror = table.get(mkey);
        if let Some(m) = mirror {
            update(m);
        }
        promote(table, key, entry, mkey, mirror, c.promote)
    })
    .unwrap_or(Some(entry))
}

/// The rest of [`transition`], with the other direction's key `mkey` and entry `mirror`.
#[inline(always)]
fn promote<A: Addr>(
    table: Table,
    key: &FlowKeyOf<A>,
    entry: *mut FlowOf<A>,
    mkey: &FlowKeyOf<A>,
    mirror: Option<*mut FlowOf<A>>,
    promote: bool,
) -> Option<*mut FlowOf<A>> {
    // A confirmed flow moves to the main table (inserted straight from its half-open entries).
    // Without room, or without its other half, it stays half-open in its new state. A
    // direct-server-return flow has one entry.
    if !promote || table != Table::HalfOpen {
        return Some(entry);
    }
    // SAFETY: live map values, inserted as they are.
    let moved = match mirror {
        Some(m) => {
            Table::Flows.insert(mkey, unsafe { &*m }, BPF_ANY)
                && Table::Flows.insert(key, unsafe { &*entry }, BPF_ANY)
        }
        None => {
            (unsafe { (*entry).flags } & FLOW_F_DSR) != 0
                && Table::Flows.insert(key, unsafe { &*entry }, BPF_ANY)
        }
    };
    if !moved {
        return Some(entry);
    }
    Table::HalfOpen.remove(mkey);
    Table::HalfOpen.remove(key);
    Table::Flows.get(key)
}

/// Where a new flow of a pool goes, as decided by the caller.
pub struct Target<A> {
    pub slot: u32,
    /// The server's entry (array slots are never freed), its next hop freshly looked up.
    pub server: *const ServerInfoOf<A>,
    pub pool: u32,
    pub frontend: u32,
    pub full_nat: bool,
    /// Flow-wide flags the flow starts with (`FLOW_F_TS`).
    pub flags: u8,
    /// Refusals so far (a retry after a refused SYN).
    pub attempts: u8,
    /// The SYN's timestamp (`parse::Packet::timestamp`), for full-NAT's port rule.
    pub ts: u64,
    /// `LB_SETTINGS[0]` (array slots are never freed).
    pub settings: *const Settings,
    pub now: u32,
}

/// Tracks a new flow in the half-open table: [`GO_ON`] with its forward entry (the rewrite for
/// this packet) in this CPU's `LB_SCRATCH`, or (the reason counted) `XDP_DROP`.
///
/// The reply entry comes first, since it is where full-NAT picks its source port: the server
/// will answer `snat_addr:port`, and that tuple must not belong to another live flow (see
/// [`claim`]). DNAT keeps the client's address and port; the server answers the client.
/// Inlined into `new_flow::admit`, a subprogram.
#[inline(always)]
pub fn track<H: IpHdr>(pkt: &PacketOf<H>, key: &FlowKeyOf<H::A>, t: &Target<H::A>) -> u32 {
    match track_in_scratch(pkt, key, t) {
        Ok(()) => GO_ON,
        Err(reason) => {
            stats::reason(reason);
            xdp_action::XDP_DROP
        }
    }
}

/// Tracks a new direct-server-return flow: its one entry (lb never sees the replies, so
/// there is no reply tuple to claim) in this CPU's scratch, then in the half-open table, or
/// straight in the main one for a connection that began on another node (a TCP packet other
/// than a SYN). [`GO_ON`], or (the reason counted) `XDP_DROP`. Inlined into
/// `new_flow::admit_dsr`, a subprogram.
#[inline(always)]
pub fn track_dsr<H: IpHdr>(pkt: &PacketOf<H>, key: &FlowKeyOf<H::A>, t: &Target<H::A>) -> u32 {
    let (Some(scratch), Some(pool)) = (scratch::<H::A>(), LB_POOLS.get_ptr(t.pool)) else {
        stats::reason(Reason::DropConntrackFull);
        return xdp_action::XDP_DROP;
    };
    let state = if pkt.is_tcp() && !pkt.is_syn() {
        State::Established
    } else {
        State::initial(pkt.proto)
    };
    // SAFETY: this CPU's scratch and array slots that are never freed (see `track`).
    let (fwd, server) = unsafe { (&mut (*scratch).fwd, &*t.server) };
    *fwd = FlowOf {
        src: server.snat_addr,
        dst: server.addr,
        sport: pkt.sport(),
        dport: pkt.dport(),
        state: state as u8,
        flags: FLOW_F_DSR,
        attempts: 0,
        _pad: 0,
        server: t.slot as u16,
        frontend: t.frontend as u16,
        pool: t.pool as u16,
        _pad2: 0,
        last_seen: t.now,
        // SAFETY: as above.
        timeout: unsafe { (*pool).timeouts.of(state, 0, false) },
        client_fin: 0,
        tcp_ref: 0,
        nh: server.nh,
    };
    let table = if state.half_open() {
        Table::HalfOpen
    } else {
        Table::Flows
    };
    if table.insert(key, fwd, BPF_ANY) {
        // One entry, one tuple (see `track_in_scratch`).
        if pkt.proto == PROTO_UDP {
            H::A::forget_copies(key, key);
        }
        GO_ON
    } else {
        stats::reason(Reason::DropConntrackFull);
        xdp_action::XDP_DROP
    }
}

/// This CPU's scratch entries (where [`track`] built the new flow).
#[inline(always)]
pub fn scratch<A: Addr>() -> Option<*mut ScratchOf<A>> {
    A::scratch()
}

#[inline(always)]
fn track_in_scratch<H: IpHdr>(
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    t: &Target<H::A>,
) -> Result<(), Reason> {
    // SAFETY: an array slot, never freed.
    let (settings, now) = (unsafe { &*t.settings }, t.now);
    let Some(scratch) = scratch::<H::A>() else {
        return Err(Reason::DropConntrackFull);
    };
    let Some(pool) = LB_POOLS.get_ptr(t.pool) else {
        return Err(Reason::DropConntrackFull);
    };
    let (client, cport) = (pkt.src(), pkt.sport());
    let state = State::initial(pkt.proto);
    // SAFETY: this CPU's scratch entry and array slots that are never freed; the program
    // runs to completion on one CPU, so nothing else writes the scratch meanwhile.
    let (fwd, reply, server) = unsafe { (&mut (*scratch).fwd, &mut (*scratch).reply, &*t.server) };
    // A server without a port takes the client's destination port (HAProxy's rule).
    let sport = if server.port == 0 {
        pkt.dport()
    } else {
        server.port
    };
    *fwd = FlowOf {
        src: client,
        dst: server.addr,
        sport: cport,
        dport: sport,
        state: state as u8,
        flags: t.flags,
        attempts: t.attempts,
        _pad: 0,
        server: t.slot as u16,
        frontend: t.frontend as u16,
        pool: t.pool as u16,
        _pad2: 0,
        last_seen: now,
        // SAFETY: as above.
        timeout: unsafe { (*pool).timeouts.of(state, 0, false) },
        client_fin: 0,
        tcp_ref: 0,
        nh: server.nh,
    };
    *reply = FlowOf {
        src: pkt.dst(),
        dst: client,
        sport: pkt.dport(),
        dport: cport,
        flags: FLOW_F_REPLY | t.flags,
        attempts: 0,
        nh: NextHop::default(),
        ..*fwd
    };
    let mut rkey = FlowKeyOf::new(server.addr, client, sport, cport, pkt.proto);
    if t.full_nat {
        rkey.dst = server.snat_addr;
        fwd.src = server.snat_addr;
        fwd.sport = bind_snat_port(scratch, t.slot, &mut rkey, t.ts, settings, now)?;
    } else if !claim(&rkey, reply, Claimant::Dnat, now) {
        return Err(Reason::DropTupleInUse);
    }
    if Table::HalfOpen.insert(key, fwd, BPF_ANY) {
        // Its tuples may have been an older flow's a moment ago (evicted from a full table):
        // no CPU serves them the old way any more. (For a TCP flow `lb_xdp` does this: the
        // server's SYN-ACK on every CPU, the client's SYN on its own.)
        if pkt.proto == PROTO_UDP {
            H::A::forget_copies(key, &rkey);
        }
        Ok(())
    } else {
        Table::HalfOpen.remove(&rkey);
        Err(Reason::DropConntrackFull)
    }
}

/// Takes the reply tuple `rkey` for the new flow whose reply entry is `reply`: free in both
/// tables, or held by a flow that lets go of it ([`takes_over`]).
#[inline(always)]
fn claim<A: Addr>(rkey: &FlowKeyOf<A>, reply: &FlowOf<A>, claimant: Claimant, now: u32) -> bool {
    let asker = Asker {
        reply,
        claimant,
        now,
    };
    if !takes_over(rkey, &asker, Table::Flows) {
        return false;
    }
    // Insert first: a free tuple (the common case) then costs one map operation, and NOEXIST
    // settles a race with another CPU taking the same tuple.
    if Table::HalfOpen.insert(rkey, reply, BPF_NOEXIST) {
        return true;
    }
    takes_over(rkey, &asker, Table::HalfOpen) && Table::HalfOpen.insert(rkey, reply, BPF_ANY)
}

/// Who asks for a reply tuple, see [`takes_over`].
struct Asker<A> {
    /// The new flow's reply entry.
    reply: *const FlowOf<A>,
    claimant: Claimant,
    now: u32,
}

/// Whether `rkey` is free in `table` for `asker`: no entry there, or one whose flow lets go of
/// the tuple (`port_reusable`, or dead and, for full-NAT TCP, rested: `port_rested`), which is
/// then forgotten. A subprogram: the port probes call it in a loop, and inlined its branches
/// would multiply the verifier's states by the probes.
#[inline(never)]
fn takes_over<A: Addr>(rkey: &FlowKeyOf<A>, asker: &Asker<A>, table: Table) -> bool {
    let Some(old) = table.get(rkey) else {
        return true;
    };
    // SAFETY: read in place to decide (a racing update at worst hands the tuple over); the
    // asker's entry is this CPU's scratch.
    let (old, reply) = unsafe { (&*old, &*asker.reply) };
    let (claimant, now) = (asker.claimant, asker.now);
    let full_nat_tcp = rkey.proto == PROTO_TCP && claimant != Claimant::Dnat;
    let lets_go = port_reusable(old, reply.dst, reply.dport, reply.src, claimant)
        || (expired(old, rkey, table, now) && (!full_nat_tcp || port_rested(old, now)));
    if lets_go {
        forget(table, rkey, old, rkey.proto);
    }
    lets_go
}

/// Source ports tried per new flow (the `variant` build tries more, see Cargo.toml).
#[cfg(not(feature = "variant"))]
const PROBES: u32 = SNAT_PROBES;
#[cfg(feature = "variant")]
const PROBES: u32 = SNAT_PROBES + 1;

/// Takes the server's next source ports in turn until [`claim`] gets one, at most [`PROBES`]
/// of them. Returns the port, network order.
#[inline(always)]
fn bind_snat_port<A: Addr>(
    scratch: *mut ScratchOf<A>,
    slot: u32,
    rkey: &mut FlowKeyOf<A>,
    ts: u64,
    settings: &Settings,
    now: u32,
) -> Result<u16, Reason> {
    // SAFETY: this CPU's scratch entry, see `track_in_scratch`.
    let probe = unsafe { &mut (*scratch).probe };
    *probe = PortProbeOf {
        rkey: *rkey,
        ts,
        slot,
        now,
        port_min: settings.snat_port_min,
        port_max: settings.snat_port_max,
        found: 0,
    };
    // SAFETY: a helper call; the callback is a static function of this program.
    unsafe {
        bpf_loop(
            PROBES,
            probe_port::<A> as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: as above.
    let probe = unsafe { &(*scratch).probe };
    if probe.found == 0 {
        return Err(Reason::DropSnatExhausted);
    }
    *rkey = probe.rkey;
    Ok(rkey.dport)
}

/// One probe of [`bind_snat_port`], the `bpf_loop` callback: 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn probe_port<A: Addr>(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = scratch::<A>() else {
        return 1;
    };
    // SAFETY: this CPU's scratch entry, filled by `bind_snat_port` (the program is still
    // running on this CPU, inside the helper).
    let (probe, reply) = unsafe { (&mut (*scratch).probe, &(*scratch).reply) };
    let Some(cursor) = LB_SNAT_CURSOR.get_ptr_mut(probe.slot) else {
        return 1;
    };
    probe.rkey.dport = snat_port(fetch_add(cursor), probe.port_min, probe.port_max).to_be();
    let claimant = Claimant::FullNat {
        ts: (probe.ts & TS_PRESENT != 0).then_some(probe.ts as u32),
    };
    if claim(&probe.rkey, reply, claimant, probe.now) {
        probe.found = 1;
        return 1;
    }
    0
}

/// Whether a TCP flow's packet is a client's SYN (only those start TCP flows).
#[inline(always)]
pub fn starts_flow<H: IpHdr>(pkt: &PacketOf<H>) -> bool {
    pkt.proto != PROTO_TCP || pkt.is_syn()
}
