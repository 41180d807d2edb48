//! `lb trace`: one line per packet through aya-log, saying what the program did with it and
//! why (see `lb_common::trace`).
//!
//! [`on`] reads a constant of the loaded program: in the copy that runs normally it is 0, the
//! verifier proves every `if trace::on()` false and drops what it guards, so the packet path
//! pays nothing for tracing. The daemon loads a copy with it set for `lb trace on`.
use aya_ebpf::{Global, bindings::xdp_md, programs::XdpContext};
use aya_log_ebpf::info;
use lb_common::{
    FlowKey, Reason, TraceRecord,
    trace::{REWRITE_IN, REWRITE_NEW, REWRITE_OUT, REWRITE_REDISPATCH, traced},
};

use crate::{
    maps::LB_TRACE_REC,
    parse::{self, Packet, Parsed},
    stats::{Dir, Event},
};

/// Set (1) in the tracing copy only; see the module documentation.
#[unsafe(no_mangle)]
static LB_TRACE: Global<u32> = Global::new(0);
/// The `--vip` filter (network order; 0: every VIP).
#[unsafe(no_mangle)]
static LB_TRACE_VIP: Global<u32> = Global::new(0);
/// The `--vip` filter's port (network order; 0: any).
#[unsafe(no_mangle)]
static LB_TRACE_PORT: Global<u32> = Global::new(0);

/// Whether this copy of the program traces.
#[inline(always)]
pub fn on() -> bool {
    LB_TRACE.load() != 0
}

#[inline(always)]
fn record() -> Option<*mut TraceRecord> {
    LB_TRACE_REC.get_ptr_mut(0)
}

/// A packet starts: nothing noted yet.
#[inline(always)]
pub fn begin() {
    if let Some(r) = record() {
        // SAFETY: this CPU's slot; the program runs to completion on one CPU.
        unsafe { *r = TraceRecord::empty() };
    }
}

/// The packet's tuple as it arrived (written field by field: a `FlowKey` built on the
/// entry's stack would cost it the bytes the deepest call chain needs).
#[inline(always)]
pub fn arrived(pkt: &Packet) {
    if let Some(r) = record() {
        // SAFETY: as in `begin`.
        unsafe {
            (*r).key.src = pkt.src();
            (*r).key.dst = pkt.dst();
            (*r).key.sport = pkt.sport();
            (*r).key.dport = pkt.dport();
            (*r).key.proto = pkt.proto;
        }
    }
}

/// The reason counted for the packet.
#[inline(always)]
pub fn reason(reason: Reason) {
    if let Some(r) = record() {
        // SAFETY: as in `begin`.
        unsafe { (*r).reason = reason as u32 };
    }
}

/// The packet was rewritten for `server`'s flow.
#[inline(always)]
pub fn rewritten(server: u32, dir: Dir, ev: Event) {
    if let Some(r) = record() {
        let rewrite = match (dir, ev.new_flow, ev.redispatched) {
            (_, _, true) => REWRITE_REDISPATCH,
            (_, true, false) => REWRITE_NEW,
            (Dir::In, false, false) => REWRITE_IN,
            (Dir::Out, false, false) => REWRITE_OUT,
        };
        // SAFETY: as in `begin`.
        unsafe {
            (*r).rewrite = rewrite;
            (*r).server = server;
        }
    }
}

/// The packet leaves with `action`: one line, if it is one of the traced VIP's. Called last
/// from the program's entry.
#[inline(always)]
pub fn end(ctx: &XdpContext, action: u32) {
    lb_trace_end(ctx.ctx, action);
}

/// [`end`], as a *global* BPF function: the verifier checks it once on its own, instead of
/// once for every state the packet path can end in (which, with aya-log's branches, runs past
/// the million instructions it allows).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_trace_end(ctx: *mut xdp_md, action: u32) -> u32 {
    let ctx = XdpContext::new(ctx);
    write_line(&ctx, action);
    0
}

#[inline(always)]
fn write_line(ctx: &XdpContext, action: u32) {
    let Some(r) = record() else {
        return;
    };
    // SAFETY: as in `begin`; copied, the line below reads it field by field.
    let rec = unsafe { *r };
    // The tuple the packet leaves with (rewritten or not), read again from the frame.
    let out = match parse::parse(ctx) {
        Ok(Parsed::Flow(p)) => FlowKey::new(p.src(), p.dst(), p.sport(), p.dport(), p.proto),
        _ => rec.key,
    };
    let k = rec.key;
    if !traced(
        LB_TRACE_VIP.load(),
        LB_TRACE_PORT.load(),
        k.dst,
        k.dport,
        out.src,
        out.sport,
    ) {
        return;
    }
    // Numbers only, so every record has the same size: with strings of several lengths the
    // verifier would follow aya-log's copy loops once per combination. The daemon writes
    // the line (`lb-userspace/src/daemon/tracing.rs`).
    info!(
        ctx,
        target: "lb::trace",
        "{} {} {} {} {} {} {} {} {} {} {} {} {}",
        action,
        rec.reason,
        rec.rewrite,
        k.proto,
        k.src,
        k.sport,
        k.dst,
        k.dport,
        out.src,
        out.sport,
        out.dst,
        out.dport,
        rec.server
    );
}
