//! Active flows per server (`LB_ACTIVE`), for `leastconn`, `first`, `random` and `maxconn`:
//! the flow lifecycle adds one when a flow is confirmed and takes it back when the flow
//! closes (`lb_common::conntrack::active_delta`); the daemon's periodic recount corrects
//! what the data plane cannot see (LRU evictions, idle expiry).
use lb_common::{ACTIVE_TOTAL, balance::active_flows};

use crate::{atomic, maps::LB_ACTIVE};

/// Adds `delta` to the server's count and the instance's.
#[inline(always)]
pub fn add(server: u32, delta: i64) {
    if let Some(c) = LB_ACTIVE.get_ptr_mut(server) {
        atomic::add(c, delta as u64);
    }
    if let Some(c) = LB_ACTIVE.get_ptr_mut(ACTIVE_TOTAL) {
        atomic::add(c, delta as u64);
    }
}

/// The active flows of a server slot, or of the instance at `ACTIVE_TOTAL`.
#[inline(always)]
pub fn of(slot: u32) -> u64 {
    match LB_ACTIVE.get_ptr(slot) {
        // SAFETY: an array slot, read once.
        Some(c) => active_flows(unsafe { core::ptr::read_volatile(c) }),
        None => 0,
    }
}
