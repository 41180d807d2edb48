//! The IPv4 packet path: service lookup, conntrack, server choice, NAT, forwarding.
//!
//! ```text
//! parse ─┬─ VIP:port is a service ── lb4_forward: conntrack hit? ─ yes, server alive ─┐
//!        │                                          │ no / server gone / reused tuple  │
//!        │                                          └─ pick (round robin), track ──────┤
//!        ├─ tuple is a tracked reply ─ lb4_reply ─────────────────────────────────── NAT ─ forward
//!        ├─ wildcard service (*:port) ─ lb4_forward
//!        └─ anything else ─ XDP_PASS, untouched
//! ```
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    CT_F_CLOSING, CtEntry, FlowKey, POOL_F_DNAT, POOL_F_EMPTY_PASS, PoolInfo, Reason, RevEntry,
    SERVER_ACTIVE, SETTINGS_F_WILDCARD, ServerInfo, ServiceKey, ServiceValue, Settings, TableDesc,
    flow::rr_slot, table_index,
};

use crate::{
    conntrack, forward,
    maps::{LB_POOL_RR, LB_POOLS, LB_SERVERS, LB_SERVICES, LB_SETTINGS, LB_TABLES},
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
    let mut svc_key = ServiceKey {
        addr: pkt.dst(),
        port: pkt.dport(),
        proto: pkt.proto,
        _pad: 0,
    };
    if let Some(svc) = LB_SERVICES.get_ptr(svc_key) {
        // SAFETY: copied out at once (hash map values may be replaced by the daemon).
        return lb4_forward(ctx, &pkt, unsafe { *svc });
    }
    let key = conntrack::key_of(&pkt);
    if let Some(rev) = conntrack::lookup_reverse(&key) {
        return lb4_reply(ctx, &pkt, rev);
    }
    let settings = settings();
    if settings.flags & SETTINGS_F_WILDCARD != 0 {
        svc_key.addr = 0;
        if let Some(svc) = LB_SERVICES.get_ptr(svc_key) {
            return lb4_forward(ctx, &pkt, unsafe { *svc });
        }
    }
    pass(Reason::PassNotService)
}

#[inline(always)]
fn pass(reason: Reason) -> u32 {
    stats::reason(reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn settings() -> Settings {
    LB_SETTINGS.get(0).copied().unwrap_or_default()
}

/// Client -> VIP.
#[inline(always)]
fn lb4_forward(ctx: &XdpContext, pkt: &Packet, svc: ServiceValue) -> u32 {
    let Some(pool) = LB_POOLS.get_ptr(svc.pool) else {
        return pass(Reason::PassNotService);
    };
    // SAFETY: array slots are never freed; `table` is read with one load (see `TableDesc`).
    let pool = unsafe {
        PoolInfo {
            table: core::ptr::read_volatile(&(*pool).table),
            flags: (*pool).flags,
        }
    };
    let key = conntrack::key_of(pkt);
    let mut ev = Event::default();
    let mut tracked = None;
    if let Some(ct) = conntrack::lookup(&key) {
        // SAFETY: an LRU value we copy from and flag; a racing eviction at worst loses a flag.
        let entry = unsafe { *ct };
        if pkt.is_syn() && entry.flags & CT_F_CLOSING != 0 {
            // The tuple is being reused for a new connection: balance it afresh.
        } else {
            match server(entry.server) {
                Some(srv) => {
                    if pkt.is_closing() && entry.flags & CT_F_CLOSING == 0 {
                        unsafe { (*ct).flags |= CT_F_CLOSING };
                    }
                    tracked = Some((entry.server, srv, entry.snat_port));
                }
                // Its server left the rotation (DOWN, removed): `option redispatch`.
                None => ev.redispatched = true,
            }
        }
    }
    let (id, srv, snat_port) = match tracked {
        Some(t) => t,
        None => match new_flow(pkt, &key, svc, pool) {
            Ok(t) => {
                ev.new_flow = true;
                t
            }
            Err(action) => return action,
        },
    };
    let to = if pool.flags & POOL_F_DNAT != 0 {
        Tuple {
            src: pkt.src(),
            sport: pkt.sport(),
            dst: srv.addr,
            dport: srv.port,
        }
    } else {
        Tuple {
            src: srv.snat_addr,
            sport: snat_port,
            dst: srv.addr,
            dport: srv.port,
        }
    };
    nat::rewrite(pkt, to);
    stats::account(id, svc.frontend, Dir::In, pkt.frame_len, ev);
    forward::forward(ctx, pkt)
}

/// A server that may receive packets of existing flows.
#[inline(always)]
fn server(id: u32) -> Option<ServerInfo> {
    LB_SERVERS
        .get(id)
        .copied()
        .filter(|s| s.state == SERVER_ACTIVE)
}

/// Picks the next server of the pool's live table and tracks the flow. On failure returns the
/// XDP action to take.
#[inline(always)]
fn new_flow(
    pkt: &Packet,
    key: &FlowKey,
    svc: ServiceValue,
    pool: PoolInfo,
) -> Result<(u32, ServerInfo, u16), u32> {
    let table = TableDesc::unpack(pool.table);
    if table.len == 0 {
        return Err(if pool.flags & POOL_F_EMPTY_PASS != 0 {
            pass(Reason::PassNoServer)
        } else {
            stats::reason(Reason::DropNoServer);
            xdp_action::XDP_DROP
        });
    }
    let Some(cursor) = LB_POOL_RR.get_ptr_mut(svc.pool) else {
        return Err(pass(Reason::PassNotService));
    };
    let slot = rr_slot(fetch_add(cursor), table.len);
    let id = LB_TABLES
        .get(table_index(svc.pool, table.slot, slot))
        .copied()
        .unwrap_or(u32::MAX);
    let Some(srv) = LB_SERVERS.get(id).copied() else {
        stats::reason(Reason::DropNoServer);
        return Err(xdp_action::XDP_DROP);
    };
    let rev = RevEntry {
        client_addr: pkt.src(),
        vip: pkt.dst(),
        client_port: pkt.sport(),
        vip_port: pkt.dport(),
        server: id as u16,
        frontend: svc.frontend as u16,
    };
    let full_nat = pool.flags & POOL_F_DNAT == 0;
    let reason = match conntrack::bind_reverse(pkt, &srv, full_nat, rev, &settings()) {
        Ok(snat_port) => {
            let entry = CtEntry {
                server: id,
                snat_port: if full_nat { snat_port } else { 0 },
                flags: 0,
            };
            match conntrack::insert(key, entry) {
                Ok(()) => return Ok((id, srv, entry.snat_port)),
                Err(reason) => reason,
            }
        }
        Err(reason) => reason,
    };
    stats::reason(reason);
    Err(xdp_action::XDP_DROP)
}

/// Server -> client: restore the VIP as source and the client as destination.
#[inline(always)]
fn lb4_reply(ctx: &XdpContext, pkt: &Packet, rev: RevEntry) -> u32 {
    nat::rewrite(
        pkt,
        Tuple {
            src: rev.vip,
            sport: rev.vip_port,
            dst: rev.client_addr,
            dport: rev.client_port,
        },
    );
    stats::account(
        rev.server as u32,
        rev.frontend as u32,
        Dir::Out,
        pkt.frame_len,
        Event::default(),
    );
    forward::forward(ctx, pkt)
}

/// Atomically increments the round-robin cursor and returns its previous value, so that CPUs
/// handling new flows at the same time still take consecutive turns.
#[inline(always)]
fn fetch_add(cursor: *mut u64) -> u64 {
    // The BPF target does not expose `AtomicU64::fetch_add` (no CAS), but the v3 ISA has
    // BPF_ATOMIC | BPF_FETCH add, which this intrinsic lowers to. It must be SeqCst: LLVM 22
    // lowers a *relaxed* atomicrmw add to the legacy non-fetching XADD and then reads the
    // addend back as if it were the old value (every flow got the same slot).
    #[cfg(target_arch = "bpf")]
    // SAFETY: `cursor` points into an array map value, 8-byte aligned.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
            cursor, 1,
        )
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above; host builds only type-check this crate.
    unsafe {
        core::sync::atomic::AtomicU64::from_ptr(cursor)
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed)
    }
}
