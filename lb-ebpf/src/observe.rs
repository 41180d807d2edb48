//! What traffic says about a server's health (`observe layer4`): the connections it refuses
//! (an RST to the SYN), counted in a row in `LB_REFUSALS` until one it accepts (a SYN-ACK)
//! clears them, as HAProxy's `consecutive_errors`. The daemon reads the count and acts
//! (`on-error`, `error-limit`); every refusal also counts in the server's `refused` (`econ`).
use crate::{
    atomic,
    maps::{LB_REFUSALS, LB_SERVER_STATS},
};

/// The server at `slot` refused a connection.
#[inline(always)]
pub fn refused(slot: u32) {
    if let Some(c) = LB_SERVER_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, only this CPU writes it while the program runs.
        unsafe { (*c).refused += 1 };
    }
    if let Some(n) = LB_REFUSALS.get_ptr_mut(slot) {
        atomic::add(n, 1);
    }
}

/// The server at `slot` accepted a connection.
#[inline(always)]
pub fn accepted(slot: u32) {
    if let Some(n) = LB_REFUSALS.get_ptr_mut(slot) {
        // SAFETY: an array slot; read first so a healthy server's cache line stays shared.
        unsafe {
            if core::ptr::read_volatile(n) != 0 {
                core::ptr::write_volatile(n, 0);
            }
        }
    }
}
