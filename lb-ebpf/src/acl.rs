//! `tcp-request connection accept|reject` rules: one longest-prefix lookup per new flow in
//! `LB_ACCESS` (IPv4 clients) or `LB6_ACCESS` (IPv6 clients; see `lb_common::access`), before
//! any state is made. A subprogram, so its key lives in its own frame and not in the packet
//! path's.
use aya_ebpf::bindings::xdp_action;
use lb_common::{ACCESS_REJECT, Reason};

use crate::{family::Addr, stats, verdict::GO_ON};

/// [`GO_ON`] if a new flow from `src` to `frontend`'s `dport` (both in network order) may
/// start, else `XDP_DROP` (counted as `drop_denied`).
#[inline(never)]
pub fn admits<A: Addr>(frontend: u32, dport: u16, src: A) -> u32 {
    match A::access(frontend, dport, src) {
        Some(ACCESS_REJECT) => {
            stats::reason(Reason::DropDenied);
            xdp_action::XDP_DROP
        }
        _ => GO_ON,
    }
}
