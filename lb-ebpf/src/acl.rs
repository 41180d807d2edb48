//! `tcp-request connection accept|reject` rules: one longest-prefix lookup per new flow in
//! `LB_ACCESS` (see `lb_common::access`), before any state is made. A subprogram, so its key
//! lives in its own frame and not in the packet path's.
use aya_ebpf::{bindings::xdp_action, btf_maps::lpm_trie::Key};
use lb_common::{ACCESS_LOOKUP_BITS, ACCESS_REJECT, AccessKey, Reason};

use crate::{maps::LB_ACCESS, stats, verdict::GO_ON};

/// [`GO_ON`] if a new flow from `src` to `frontend`'s `dport` (both in network order) may
/// start, else `XDP_DROP` (counted as `drop_denied`).
#[inline(never)]
pub fn admits(frontend: u32, dport: u16, src: u32) -> u32 {
    let key = Key::new(ACCESS_LOOKUP_BITS, AccessKey::new(frontend, dport, src));
    match LB_ACCESS.get(&key) {
        Some(&ACCESS_REJECT) => {
            stats::reason(Reason::DropDenied);
            xdp_action::XDP_DROP
        }
        _ => GO_ON,
    }
}
