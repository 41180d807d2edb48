//! Per-CPU counters: plain increments, no atomics needed.
use lb_common::{Counters, Reason};

use crate::{
    maps::{LB_FRONTEND_STATS, LB_REASON_STATS, LB_SERVER_STATS},
    trace,
};

#[inline(always)]
pub fn reason(r: Reason) {
    if trace::on() {
        trace::reason(r);
    }
    if let Some(c) = LB_REASON_STATS.get_ptr_mut(r as u32) {
        // SAFETY: a per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *c += 1 };
    }
}

/// Which way a packet travels relative to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client -> server.
    In,
    /// Server -> client.
    Out,
}

#[derive(Clone, Copy, Default)]
pub struct Event {
    pub new_flow: bool,
    pub redispatched: bool,
}

#[inline(always)]
pub fn account(server: u32, frontend: u32, dir: Dir, bytes: u32, ev: Event) {
    if trace::on() {
        trace::rewritten(server, dir, ev);
    }
    // Two separate lookups and branches: folding them into a loop lets LLVM merge the two
    // nullable pointers with arithmetic the verifier rejects.
    if let Some(c) = LB_SERVER_STATS.get_ptr_mut(server) {
        bump(c, dir, bytes, ev);
    }
    if let Some(c) = LB_FRONTEND_STATS.get_ptr_mut(frontend) {
        bump(c, dir, bytes, ev);
    }
}

#[inline(always)]
fn bump(c: *mut Counters, dir: Dir, bytes: u32, ev: Event) {
    // SAFETY: a per-CPU slot, see `reason`.
    unsafe {
        match dir {
            Dir::In => {
                (*c).packets_in += 1;
                (*c).bytes_in += bytes as u64;
            }
            Dir::Out => {
                (*c).packets_out += 1;
                (*c).bytes_out += bytes as u64;
            }
        }
        if ev.new_flow {
            (*c).new_flows += 1;
        }
        if ev.redispatched {
            (*c).redispatched += 1;
        }
    }
}
