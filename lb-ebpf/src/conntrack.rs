//! Connection tracking: the forward entry (client 5-tuple -> server) and the reverse entry
//! (server-side 5-tuple of replies -> client and VIP), both in LRU maps.
use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};
use lb_common::{
    CtEntry, FlowKey, Reason, RevEntry, ServerInfo, Settings,
    flow::{SNAT_PROBES, endpoint_hash, snat_port},
};

use crate::{
    maps::{LB_CONNTRACK, LB_REVERSE},
    parse::Packet,
};

#[inline(always)]
pub fn key_of(pkt: &Packet) -> FlowKey {
    FlowKey {
        src: pkt.src(),
        dst: pkt.dst(),
        sport: pkt.sport(),
        dport: pkt.dport(),
        proto: pkt.proto,
        _pad: [0; 3],
    }
}

#[inline(always)]
pub fn lookup(key: &FlowKey) -> Option<*mut CtEntry> {
    LB_CONNTRACK.get_ptr_mut(key)
}

#[inline(always)]
pub fn lookup_reverse(key: &FlowKey) -> Option<RevEntry> {
    // SAFETY: copied out at once; a concurrent replacement yields the old or the new value.
    LB_REVERSE.get_ptr(key).map(|e| unsafe { *e })
}

#[inline(always)]
pub fn insert(key: &FlowKey, entry: CtEntry) -> Result<(), Reason> {
    LB_CONNTRACK
        .insert(key, entry, BPF_ANY as u64)
        .map_err(|_| Reason::DropConntrackFull)
}

/// Records how to translate the server's replies for a new flow and returns the source port the
/// server will see (network order).
///
/// DNAT: the server answers the client directly, so the reply tuple is server -> client and the
/// client's port is kept. Full-NAT: the server answers the LB's `snat_addr`; the source port is
/// chosen so that no other client's flow to the same server uses it (probing a few hashed
/// candidates; the same client re-binding its own port is fine).
#[inline(always)]
pub fn bind_reverse(
    pkt: &Packet,
    server: &ServerInfo,
    full_nat: bool,
    rev: RevEntry,
    settings: &Settings,
) -> Result<u16, Reason> {
    let mut key = FlowKey {
        src: server.addr,
        dst: pkt.src(),
        sport: server.port,
        dport: pkt.sport(),
        proto: pkt.proto,
        _pad: [0; 3],
    };
    if !full_nat {
        return LB_REVERSE
            .insert(key, rev, BPF_ANY as u64)
            .map(|()| pkt.sport())
            .map_err(|_| Reason::DropConntrackFull);
    }
    key.dst = server.snat_addr;
    let hash = endpoint_hash(rev.client_addr, rev.client_port);
    for attempt in 0..SNAT_PROBES {
        let port = snat_port(
            hash,
            attempt,
            settings.snat_port_min,
            settings.snat_port_max,
        )
        .to_be();
        key.dport = port;
        match LB_REVERSE.get_ptr(key) {
            // SAFETY: read once to compare; see `lookup_reverse`.
            Some(old) => {
                let old = unsafe { *old };
                if old.client_addr == rev.client_addr
                    && old.client_port == rev.client_port
                    && LB_REVERSE.insert(key, rev, BPF_ANY as u64).is_ok()
                {
                    return Ok(port);
                }
            }
            None => {
                // NOEXIST: another CPU may have taken this port since the lookup.
                if LB_REVERSE.insert(key, rev, BPF_NOEXIST as u64).is_ok() {
                    return Ok(port);
                }
            }
        }
    }
    Err(Reason::DropSnatExhausted)
}
