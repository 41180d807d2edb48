//! The IPv4 packet path.
//!
//! ```text
//! parse ─ a service's or server's port? ─ no ─ XDP_PASS, untouched
//!           │ yes
//!           ├─ tracked (one LB_FLOWS lookup) ─┬─ reply ───────────────────────── NAT ─ forward
//!           │                                 ├─ forward, server alive ───────── NAT ─ forward
//!           │                                 └─ server gone / tuple reused ─┐
//!           ├─ VIP:port is a service (exact, then *:port) ─── lb4_new: pick, track ─ NAT ─ forward
//!           └─ anything else ─ XDP_PASS, untouched
//! ```
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    EVENT_F_REDISPATCHED, FLOW_ATTEMPTS_MASK, FLOW_F_CLOSING, FLOW_F_REFUSED, FLOW_F_SYN_SENT,
    Flow, FlowEvent, FlowKey, POOL_F_DNAT, POOL_F_EMPTY_PASS, POOL_F_REDISPATCH, PROTO_TCP, Reason,
    SERVER_ACTIVE, SETTINGS_F_LOG_FLOWS, SETTINGS_F_WILDCARD, ServiceKey, ServiceValue, Settings,
    TableDesc,
    flow::{refusal, rr_slot},
    ports::{PortSide, port_bit},
    table_index,
};

use crate::{
    atomic::fetch_add,
    flows::{self, Target},
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
    let settings = LB_SETTINGS.get(0).copied().unwrap_or_default();
    let key = flows::key_of(&pkt);
    if let Some(flow) = flows::lookup(&key) {
        return lb4_tracked(ctx, &pkt, &key, flow, &settings);
    }
    match service(&pkt, &settings) {
        Some(svc) => lb4_new(
            ctx,
            &pkt,
            &key,
            svc.pool,
            svc.frontend,
            Cause::Fresh,
            &settings,
        ),
        None => pass(Reason::PassNotService),
    }
}

#[inline(always)]
fn pass(reason: Reason) -> u32 {
    stats::reason(reason);
    xdp_action::XDP_PASS
}

/// Whether a service or server uses the packet's ports at all (`LB_PORTS`): two array reads,
/// which the verifier inlines, spare the host's other traffic two hash lookups.
#[inline(always)]
fn may_be_tracked(pkt: &Packet) -> bool {
    let has = |side, port: u16| {
        let (word, bit) = port_bit(side, u16::from_be(port));
        LB_PORTS.get(word).is_some_and(|w| w & bit != 0)
    };
    has(PortSide::Service, pkt.dport()) || has(PortSide::Server, pkt.sport())
}

/// The service a packet is addressed to: its exact VIP, else a wildcard bind on its port.
#[inline(always)]
fn service(pkt: &Packet, settings: &Settings) -> Option<ServiceValue> {
    let mut k = ServiceKey {
        addr: pkt.dst(),
        port: pkt.dport(),
        proto: pkt.proto,
        _pad: 0,
    };
    // SAFETY: copied out at once (hash map values may be replaced by the daemon).
    if let Some(v) = LB_SERVICES.get_ptr(k) {
        return Some(unsafe { *v });
    }
    if settings.flags & SETTINGS_F_WILDCARD == 0 {
        return None;
    }
    k.addr = 0;
    LB_SERVICES.get_ptr(k).map(|v| unsafe { *v })
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

/// A packet of a tracked flow, either way.
#[inline(always)]
fn lb4_tracked(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    entry: *mut Flow,
    settings: &Settings,
) -> u32 {
    // SAFETY: an LRU value we copy from and update in place; a racing eviction at worst loses
    // a flag or a cached next hop.
    let flow = unsafe { *entry };
    if flow.is_reply() {
        if flow.flags & FLOW_F_SYN_SENT != 0 {
            if pkt.is_rst() && hold_back_refusal(&flow) {
                stats::reason(Reason::DropServerRefused);
                return xdp_action::XDP_DROP;
            }
            if pkt.is_syn_ack() {
                // Accepted: from now on an RST is the server's to send.
                unsafe { (*entry).flags &= !FLOW_F_SYN_SENT };
            }
        }
        if pkt.is_closing() && flow.flags & FLOW_F_CLOSING == 0 {
            // The server is closing: its full-NAT port may go to another client later.
            unsafe {
                (*entry).closed_at = flows::now_secs();
                (*entry).flags |= FLOW_F_CLOSING;
            }
        }
        nat::rewrite(pkt, tuple(&flow));
        stats::account(
            flow.server as u32,
            flow.frontend as u32,
            Dir::Out,
            pkt.frame_len,
            Event::default(),
        );
        return forward::via(ctx, pkt, unsafe { &mut (*entry).nh }, settings.fib_epoch);
    }
    let (pool, frontend) = (flow.pool as u32, flow.frontend as u32);
    if pkt.is_syn() && flow.flags & FLOW_F_REFUSED != 0 {
        // The client retransmits a SYN its server refused: another server, if there is one.
        let cause = Cause::Refused {
            server: flow.server as u32,
            attempts: flow.flags & FLOW_ATTEMPTS_MASK,
        };
        return lb4_new(ctx, pkt, key, pool, frontend, cause, settings);
    }
    if pkt.is_syn() && flow.flags & FLOW_F_CLOSING != 0 {
        // The tuple is being reused for a new connection: balance it afresh.
        return lb4_new(ctx, pkt, key, pool, frontend, Cause::Fresh, settings);
    }
    let server = LB_SERVERS.get_ptr_mut(flow.server as u32);
    let alive = match server {
        // SAFETY: array slots are never freed.
        Some(s) => unsafe {
            (*s).state == SERVER_ACTIVE && (*s).addr == flow.dst && (*s).port == flow.dport
        },
        None => false,
    };
    let Some(server) = server.filter(|_| alive) else {
        // Its server left the rotation (DOWN, removed): `option redispatch`.
        return lb4_new(ctx, pkt, key, pool, frontend, Cause::ServerGone, settings);
    };
    if pkt.is_closing() && flow.flags & FLOW_F_CLOSING == 0 {
        unsafe { (*entry).flags |= FLOW_F_CLOSING };
    }
    nat::rewrite(pkt, tuple(&flow));
    stats::account(
        flow.server as u32,
        frontend,
        Dir::In,
        pkt.frame_len,
        Event::default(),
    );
    forward::via(ctx, pkt, unsafe { &mut (*server).nh }, settings.fib_epoch)
}

/// Why a packet starts a new flow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A new connection (or a new one on a closed flow's tuple).
    Fresh,
    /// Its server left the rotation: `option redispatch`.
    ServerGone,
    /// The client retransmits a SYN that `server` refused, refused `attempts` times so far
    /// (`FLOW_ATTEMPTS_MASK` bits).
    Refused { server: u32, attempts: u16 },
}

/// Table entries a retry looks at to find another server than the one that refused.
const RETRY_STEPS: u32 = 4;

/// The reply entry's server refused its connection: marks the forward entry so the client's
/// retransmitted SYN is balanced afresh, if the pool redispatches and has retries left
/// (`lb_common::flow::refusal`). Returns whether to hold the RST back. A rare path: one more
/// lookup, for the forward entry.
#[inline(always)]
fn hold_back_refusal(reply: &Flow) -> bool {
    let Some(info) = LB_POOLS.get_ptr(reply.pool as u32) else {
        return false;
    };
    // SAFETY: array slots are never freed.
    let pool_flags = unsafe { (*info).flags };
    if pool_flags & POOL_F_REDISPATCH == 0 {
        return false;
    }
    let Some(fwd) = flows::lookup(&reply.forward_key(PROTO_TCP)) else {
        return false;
    };
    // SAFETY: an LRU value updated in place, see `lb4_tracked`.
    unsafe {
        if (*fwd).server != reply.server {
            return false; // a late RST from a server the flow already left
        }
        match refusal((*fwd).flags, pool_flags) {
            Some(flags) => {
                (*fwd).flags = flags;
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
    settings: &Settings,
) -> u32 {
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
    let target = Target {
        id,
        // SAFETY: array slots are never freed.
        server: unsafe { *server },
        pool,
        frontend,
        full_nat: flags & POOL_F_DNAT == 0,
        flags: if pkt.is_syn() {
            FLOW_F_SYN_SENT | attempts
        } else {
            0
        },
    };
    let fwd = match flows::track(pkt, key, &target, settings) {
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
    forward::via(ctx, pkt, unsafe { &mut (*server).nh }, settings.fib_epoch)
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
