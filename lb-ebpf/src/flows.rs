//! Connection tracking: both directions of every flow in one LRU table (`LB_FLOWS`), each
//! entry holding the rewrite its packets need.
use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use lb_common::{
    FLOW_F_CLOSING, FLOW_F_REPLY, Flow, FlowKey, NextHop, Reason, SNAT_REUSE_SECS, ServerInfo,
    Settings,
    flow::{SNAT_PROBES, snat_port},
};

use crate::{
    atomic::fetch_add,
    maps::{LB_FLOWS, LB_SNAT_CURSOR},
    parse::Packet,
};

#[inline(always)]
pub fn key_of(pkt: &Packet) -> FlowKey {
    FlowKey::new(pkt.src(), pkt.dst(), pkt.sport(), pkt.dport(), pkt.proto)
}

#[inline(always)]
pub fn lookup(key: &FlowKey) -> Option<*mut Flow> {
    LB_FLOWS.get_ptr_mut(key)
}

/// Where a new flow of a pool goes, as decided by the caller.
pub struct Target {
    pub id: u32,
    pub server: ServerInfo,
    pub pool: u32,
    pub frontend: u32,
    pub full_nat: bool,
    /// Flags both entries start with (`FLOW_F_SYN_SENT`, attempts so far).
    pub flags: u16,
}

/// Tracks a new flow and returns its forward entry (the rewrite for this packet).
///
/// The reply entry comes first, since it is where full-NAT picks its source port: the server
/// will answer `snat_addr:port`, and that tuple must not already belong to another client's
/// flow to the same server (the same client re-binding its own tuple is fine). DNAT keeps the
/// client's address and port; the server answers the client directly.
#[inline(always)]
pub fn track(pkt: &Packet, key: &FlowKey, t: &Target, settings: &Settings) -> Result<Flow, Reason> {
    let (client, cport) = (pkt.src(), pkt.sport());
    let mut fwd = Flow {
        src: client,
        dst: t.server.addr,
        sport: cport,
        dport: t.server.port,
        flags: t.flags,
        server: t.id as u16,
        frontend: t.frontend as u16,
        pool: t.pool as u16,
        nh: NextHop::default(),
        closed_at: 0,
    };
    let reply = Flow {
        src: pkt.dst(),
        dst: client,
        sport: pkt.dport(),
        dport: cport,
        flags: FLOW_F_REPLY | t.flags,
        ..fwd
    };
    let mut rkey = FlowKey::new(t.server.addr, client, t.server.port, cport, pkt.proto);
    if t.full_nat {
        rkey.dst = t.server.snat_addr;
        fwd.src = t.server.snat_addr;
        fwd.sport = bind_snat_port(t.id, &mut rkey, &reply, settings)?;
    } else if LB_FLOWS.insert(rkey, reply, BPF_ANY as u64).is_err() {
        return Err(Reason::DropConntrackFull);
    }
    match LB_FLOWS.insert(*key, fwd, BPF_ANY as u64) {
        Ok(()) => Ok(fwd),
        Err(_) => Err(Reason::DropConntrackFull),
    }
}

/// Seconds of CLOCK_MONOTONIC (coarse: a cheap helper, ms precision is plenty here).
#[inline(always)]
pub fn now_secs() -> u32 {
    // SAFETY: plain helper call.
    (unsafe { bpf_ktime_get_coarse_ns() } / 1_000_000_000) as u32
}

/// Takes the server's next source ports in turn until one's reply tuple is free (or already
/// this client's, or left by a flow the server closed at least `SNAT_REUSE_SECS` ago) and
/// inserts the reply entry there. Returns the port, network order.
#[inline(always)]
fn bind_snat_port(
    server: u32,
    rkey: &mut FlowKey,
    reply: &Flow,
    settings: &Settings,
) -> Result<u16, Reason> {
    let Some(cursor) = LB_SNAT_CURSOR.get_ptr_mut(server) else {
        return Err(Reason::DropSnatExhausted);
    };
    for _ in 0..SNAT_PROBES {
        let port = snat_port(
            fetch_add(cursor),
            settings.snat_port_min,
            settings.snat_port_max,
        )
        .to_be();
        rkey.dport = port;
        // Insert first: a free port (the common case) then costs one map operation, not two.
        // NOEXIST also settles a race with another CPU binding the same port.
        if LB_FLOWS.insert(*rkey, *reply, BPF_NOEXIST as u64).is_ok() {
            return Ok(port);
        }
        let Some(old) = LB_FLOWS.get_ptr(*rkey) else {
            // Evicted since the insert failed: the next probe takes another port.
            continue;
        };
        // SAFETY: read once to decide; a racing replacement at worst hands the port over.
        let old = unsafe { *old };
        let rested = old.flags & FLOW_F_CLOSING != 0
            && now_secs().wrapping_sub(old.closed_at) >= SNAT_REUSE_SECS;
        let reusable = (old.dst == reply.dst && old.dport == reply.dport) || rested;
        if reusable && LB_FLOWS.insert(*rkey, *reply, BPF_ANY as u64).is_ok() {
            return Ok(port);
        }
    }
    Err(Reason::DropSnatExhausted)
}
