//! The IPv4 packet path.
//!
//! ```text
//! parse ─ a service's or server's port? ─ no ─ XDP_PASS, untouched
//!           │ yes
//!           ├─ tracked (LB_FLOWS, then LB_HALFOPEN), alive ─ state step ─┬─ NAT ─ forward
//!           │                                                           ├─ server refused the SYN: hold the RST back
//!           │                                                           └─ SYN on a closed tuple, refused SYN again ─┐
//!           ├─ VIP:port is a service ─┬─ UDP, or a TCP SYN ─── lb4_new: pick, track half-open ─ NAT ─ forward
//!           │                         └─ other TCP (no flow) ─ XDP_PASS: the host answers RST
//!           └─ anything else (expired flows included) ─ XDP_PASS, untouched
//! ```
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    EVENT_F_REDISPATCHED, FLOW_F_REFUSED, FLOW_F_RST, FLOW_F_TS, Flow, FlowEvent, FlowKey,
    POOL_F_DNAT, POOL_F_EMPTY_PASS, POOL_F_REDISPATCH, PROTO_TCP, Reason, SETTINGS_F_LOG_FLOWS,
    ServerInfo, ServiceKey, ServiceValue, State, TableDesc, Timeouts,
    balance::{refusal, rr_slot},
    conntrack::{Step, confirms, tcp_step, udp_step},
    ports::{PortSide, port_bit},
    table_index,
};

use crate::{
    atomic::fetch_add,
    clock,
    conntrack::{self, Table, Target},
    forward,
    maps::{
        LB_EVENTS, LB_POOL_RR, LB_POOLS, LB_PORTS, LB_SERVERS, LB_SERVICES, LB_SETTINGS, LB_TABLES,
    },
    nat::{self, Tuple},
    parse::{self, Packet},
    stats::{self, Dir, Event},
};

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    let pkt = match parse::parse(ctx) {
        Ok(pkt) => pkt,
        Err(reason) => return pass(reason),
    };
    if !may_be_tracked(&pkt) {
        return pass(Reason::PassNotService);
    }
    let key = conntrack::key_of(&pkt);
    let now = clock::now();
    if let Some((entry, table)) = conntrack::lookup(&key) {
        // SAFETY: an LRU value we copy from and update in place; a racing eviction at worst
        // loses an update.
        let flow = unsafe { *entry };
        if !conntrack::expired(&flow, table, pkt.proto, now) {
            return lb4_tracked(ctx, &pkt, &key, entry, table, &flow, now);
        }
        // Dead: its tuple is free again, and the packet is judged as if never seen.
        conntrack::forget(table, &key, &flow, pkt.proto);
    }
    lb4_untracked(ctx, &pkt, &key, now)
}

#[inline(always)]
fn pass(reason: Reason) -> u32 {
    stats::reason(reason);
    xdp_action::XDP_PASS
}

/// Whether a service or server uses the packet's ports at all (`LB_PORTS`): two array reads,
/// which the verifier inlines, spare the host's other traffic the hash lookups.
#[inline(always)]
fn may_be_tracked(pkt: &Packet) -> bool {
    let has = |side, port: u16| {
        let (word, bit) = port_bit(side, u16::from_be(port));
        LB_PORTS.get(word).is_some_and(|w| w & bit != 0)
    };
    has(PortSide::Service, pkt.dport()) || has(PortSide::Server, pkt.sport())
}

/// The service a packet is addressed to (wildcard binds are written per local address).
#[inline(always)]
fn service(pkt: &Packet) -> Option<ServiceValue> {
    let k = ServiceKey {
        addr: pkt.dst(),
        port: pkt.dport(),
        proto: pkt.proto,
        _pad: 0,
    };
    // SAFETY: copied out at once (hash map values may be replaced by the daemon).
    LB_SERVICES.get_ptr(k).map(|v| unsafe { *v })
}

/// A packet no live flow knows.
#[inline(always)]
fn lb4_untracked(ctx: &XdpContext, pkt: &Packet, key: &FlowKey, now: u32) -> u32 {
    let Some(svc) = service(pkt) else {
        return pass(Reason::PassNotService);
    };
    if !conntrack::starts_flow(pkt) {
        // Mid-stream TCP: no server has this connection, so balancing it would only earn an
        // RST from one. The host answers it, as it would without lb, and no state is made.
        return pass(Reason::PassNoFlow);
    }
    lb4_new(ctx, pkt, key, svc.pool, svc.frontend, Cause::Fresh, now)
}

#[inline(always)]
fn tuple(f: &Flow) -> Tuple {
    Tuple {
        src: f.src,
        sport: f.sport,
        dst: f.dst,
        dport: f.dport,
    }
}

#[inline(always)]
fn timeouts(pool: u32) -> Timeouts {
    LB_POOLS.get(pool).map(|p| p.timeouts).unwrap_or_default()
}

/// A packet of a live tracked flow, either way.
#[inline(always)]
fn lb4_tracked(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    entry: *mut Flow,
    table: Table,
    flow: &Flow,
    now: u32,
) -> u32 {
    let from_server = flow.is_reply();
    let Some(state) = State::from_u8(flow.state) else {
        conntrack::forget(table, key, flow, pkt.proto);
        return lb4_untracked(ctx, pkt, key, now);
    };
    if !from_server && flow.flags & FLOW_F_REFUSED != 0 && pkt.is_syn() {
        // The client retransmits a SYN its server refused: another server, if there is one.
        let cause = Cause::Refused {
            server: flow.server as u32,
            attempts: flow.attempts,
        };
        conntrack::forget(table, key, flow, pkt.proto);
        return lb4_new(
            ctx,
            pkt,
            key,
            flow.pool as u32,
            flow.frontend as u32,
            cause,
            now,
        );
    }
    let mut entry = entry;
    let step = if pkt.is_tcp() {
        let ack_ok =
            state == State::SynRecv && !from_server && pkt.ack_seq == flow.isn.wrapping_add(1);
        tcp_step(state, flow.flags, from_server, pkt.tcp_flags, ack_ok)
    } else {
        udp_step(state, flow.flags, from_server)
    };
    let step = match step {
        Step::Restart => {
            // A new connection on a closed flow's tuple: balance it afresh.
            conntrack::forget(table, key, flow, pkt.proto);
            return lb4_new(
                ctx,
                pkt,
                key,
                flow.pool as u32,
                flow.frontend as u32,
                Cause::Fresh,
                now,
            );
        }
        Step::Refused if hold_back_refusal(flow, table) => {
            stats::reason(Reason::DropServerRefused);
            return xdp_action::XDP_DROP;
        }
        Step::Refused => Step::To {
            state: State::Closed,
            flags: flow.flags | FLOW_F_RST,
        },
        other => other,
    };
    if let Step::To { state: next, flags } = step {
        let isn = if next == State::SynRecv {
            Some(pkt.seq)
        } else {
            None
        };
        let t = timeouts(flow.pool as u32);
        let moved = conntrack::transition(
            table,
            key,
            entry,
            next,
            flags,
            isn,
            confirms(state, next),
            &t,
            pkt.proto,
            now,
        );
        if moved.is_none() {
            // Promoted and evicted at once (a full table racing): forward this packet with
            // a next hop of its own.
            let mut nh = flow.nh;
            return finish(ctx, pkt, flow, from_server, &mut nh, now);
        }
        entry = moved.unwrap_or(entry);
    } else if flow.last_seen != now {
        // SAFETY: an LRU value updated in place, see `process`.
        unsafe { (*entry).last_seen = now };
    }
    // SAFETY: `entry` is a live map value.
    finish(
        ctx,
        pkt,
        flow,
        from_server,
        unsafe { &mut (*entry).nh },
        now,
    )
}

/// Rewrites, counts and forwards a tracked flow's packet.
#[inline(always)]
fn finish(
    ctx: &XdpContext,
    pkt: &Packet,
    flow: &Flow,
    from_server: bool,
    nh: *mut lb_common::NextHop,
    now: u32,
) -> u32 {
    nat::rewrite(pkt, tuple(flow));
    let dir = if from_server { Dir::Out } else { Dir::In };
    stats::account(
        flow.server as u32,
        flow.frontend as u32,
        dir,
        pkt.frame_len,
        Event::default(),
    );
    forward::via(ctx, pkt, nh, now)
}

/// Why a packet starts a new flow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A new connection (or a new one on a closed flow's tuple).
    Fresh,
    /// The client retransmits a SYN that `server` refused, refused `attempts` times so far.
    Refused { server: u32, attempts: u8 },
}

/// Table entries a retry looks at to find another server than the one that refused.
const RETRY_STEPS: u32 = 4;

/// The reply entry's server refused its connection: marks the forward entry so the client's
/// retransmitted SYN is balanced afresh, if the pool redispatches and has retries left
/// (`lb_common::balance::refusal`). Returns whether to hold the RST back. A rare path: one
/// more lookup, for the forward entry.
#[inline(always)]
fn hold_back_refusal(reply: &Flow, table: Table) -> bool {
    let Some(info) = LB_POOLS.get_ptr(reply.pool as u32) else {
        return false;
    };
    // SAFETY: array slots are never freed.
    let pool_flags = unsafe { (*info).flags };
    if pool_flags & POOL_F_REDISPATCH == 0 {
        return false;
    }
    let Some(fwd) = table.get(&reply.mirror_key(PROTO_TCP)) else {
        return false;
    };
    // SAFETY: an LRU value updated in place, see `process`.
    unsafe {
        if (*fwd).server != reply.server {
            return false; // a late RST from a server the flow already left
        }
        match refusal((*fwd).flags, (*fwd).attempts, pool_flags) {
            Some((flags, attempts)) => {
                (*fwd).flags = flags;
                (*fwd).attempts = attempts;
                true
            }
            None => false,
        }
    }
}

/// Picks the next server of the pool's live table, tracks the flow and forwards the packet.
#[inline(always)]
fn lb4_new(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    pool: u32,
    frontend: u32,
    cause: Cause,
    now: u32,
) -> u32 {
    let settings = LB_SETTINGS.get(0).copied().unwrap_or_default();
    if settings.stop_at != 0 && now.wrapping_sub(settings.stop_at) as i32 >= 0 {
        return pass(Reason::PassStopped);
    }
    let Some(info) = LB_POOLS.get_ptr(pool) else {
        return pass(Reason::PassNotService);
    };
    // SAFETY: array slots are never freed; `table` is read with one load (see `TableDesc`).
    let (table, flags, timeouts) = unsafe {
        (
            TableDesc::unpack(core::ptr::read_volatile(&(*info).table)),
            (*info).flags,
            (*info).timeouts,
        )
    };
    if table.len == 0 {
        if flags & POOL_F_EMPTY_PASS != 0 {
            return pass(Reason::PassNoServer);
        }
        stats::reason(Reason::DropNoServer);
        return xdp_action::XDP_DROP;
    }
    let Some(cursor) = LB_POOL_RR.get_ptr_mut(pool) else {
        return pass(Reason::PassNotService);
    };
    let at = |slot: u32| {
        LB_TABLES
            .get(table_index(pool, table.slot, slot))
            .copied()
            .unwrap_or(u32::MAX)
    };
    let (id, attempts) = if let Cause::Refused { server, attempts } = cause {
        // A retry takes the entry the cursor points at without moving it (moving it would
        // send the next new connection back to the server that refused this one), or the
        // next entries if that is the refusing server: with weights a server may hold
        // several entries in a row, a few steps are all a retry gets.
        // SAFETY: an array slot, read once.
        let slot = rr_slot(unsafe { core::ptr::read_volatile(cursor) }, table.len);
        let mut id = at(slot);
        for step in 1..RETRY_STEPS {
            if id != server {
                break;
            }
            id = at(rr_slot(slot as u64 + step as u64, table.len));
        }
        (id, attempts)
    } else {
        (at(rr_slot(fetch_add(cursor), table.len)), 0)
    };
    let Some(server) = LB_SERVERS.get_ptr_mut(id) else {
        stats::reason(Reason::DropNoServer);
        return xdp_action::XDP_DROP;
    };
    let full_nat = flags & POOL_F_DNAT == 0;
    // SAFETY: array slots are never freed.
    let info = unsafe { *server };
    // The way to the server first, so the new flow's entry starts with a fresh next hop.
    let to_server = Tuple {
        src: if full_nat { info.snat_addr } else { pkt.src() },
        sport: pkt.sport(),
        dst: info.addr,
        dport: info.port,
    };
    let hop = forward::next_hop(ctx, pkt, &to_server, unsafe { &mut (*server).nh }, now);
    // Timestamps only matter to full-NAT's port reuse rule; the options walk is skipped
    // otherwise.
    let flow_flags = if full_nat && pkt.is_tcp() && pkt.has_timestamps(ctx) {
        FLOW_F_TS
    } else {
        0
    };
    let target = Target {
        slot: id,
        server: ServerInfo {
            nh: hop.unwrap_or_default(),
            ..info
        },
        pool,
        frontend,
        full_nat,
        flags: flow_flags,
        attempts,
        timeouts,
    };
    let fwd = match conntrack::track(pkt, key, &target, &settings, now) {
        Ok(f) => f,
        Err(reason) => {
            stats::reason(reason);
            return xdp_action::XDP_DROP;
        }
    };
    let ev = Event {
        new_flow: true,
        redispatched: cause != Cause::Fresh,
    };
    if settings.flags & SETTINGS_F_LOG_FLOWS != 0 {
        report(pkt, id, frontend, ev);
    }
    nat::rewrite(pkt, tuple(&fwd));
    stats::account(id, frontend, Dir::In, pkt.frame_len, ev);
    match hop {
        Ok(hop) => forward::send(ctx, pkt, &hop),
        // Rewritten, for the kernel to route (it resolves the neighbour meanwhile).
        Err(action) => action,
    }
}

/// Tells the daemon about a new flow (`option tcplog`); dropped if the ring is full.
#[inline(always)]
fn report(pkt: &Packet, server: u32, frontend: u32, ev: Event) {
    if let Some(mut slot) = LB_EVENTS.reserve(0) {
        slot.write(FlowEvent {
            client: pkt.src(),
            vip: pkt.dst(),
            client_port: pkt.sport(),
            vip_port: pkt.dport(),
            server: server as u16,
            frontend: frontend as u16,
            proto: pkt.proto,
            flags: if ev.redispatched {
                EVENT_F_REDISPATCHED
            } else {
                0
            },
            _pad: 0,
        });
        slot.submit(0);
    }
}
