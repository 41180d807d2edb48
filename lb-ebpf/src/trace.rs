//! `lb trace`: one line per packet through aya-log, saying what the program did with it and
//! why (see `lb_common::trace`).
//!
//! [`on`] reads a constant of the loaded program: in the copy that runs normally it is 0, the
//! verifier proves every `if trace::on()` false and drops what it guards, so the packet path
//! pays nothing for tracing. The daemon loads a copy with it set for `lb trace on`.
use aya_ebpf::{Global, bindings::xdp_md, programs::XdpContext};
use aya_log_ebpf::info;
use lb_common::{
    Addr6, FlowKey, FlowKey6, Reason, TraceRecord,
    trace::{
        REWRITE_IN, REWRITE_NEW, REWRITE_OUT, REWRITE_REDISPATCH, TRACE_V4, TRACE_V6, traced,
        traced6,
    },
};

use crate::{
    maps::LB_TRACE_REC,
    parse::{self, Packet, Parsed},
    parse6::{self, Ipv6Hdr, Parsed6},
    stats::{Dir, Event},
};

/// Which families trace (`TRACE_V4`, `TRACE_V6`), in the tracing copy only; see the module
/// documentation.
#[unsafe(no_mangle)]
static LB_TRACE: Global<u32> = Global::new(0);
/// The `--vip` filter, IPv4 (network order; 0: every VIP) ...
#[unsafe(no_mangle)]
static LB_TRACE_VIP: Global<u32> = Global::new(0);
/// ... IPv6 (packet order; `::`: every VIP).
#[unsafe(no_mangle)]
static LB_TRACE_VIP6: Global<Addr6> = Global::new([0; 4]);
/// The `--vip` filter's port (network order; 0: any).
#[unsafe(no_mangle)]
static LB_TRACE_PORT: Global<u32> = Global::new(0);

/// Whether this copy of the program traces (either family: what is noted along the shared
/// path goes to the record of whichever family's packet is under way).
#[inline(always)]
pub fn on() -> bool {
    LB_TRACE.load() != 0
}

/// Whether this copy traces IPv4's path (`v4`) or IPv6's.
#[inline(always)]
pub fn on_for(v4: bool) -> bool {
    LB_TRACE.load() & if v4 { TRACE_V4 } else { TRACE_V6 } != 0
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

/// An IPv6 packet starts (from `lb_xdp6`, before its path): [`begin`] and [`arrived`] in
/// one, reading the tuple with a parse of their own. Inside the path they would cost the
/// copy that runs untraced a check after every way through the parser.
#[inline(always)]
pub fn begin6(ctx: &XdpContext) {
    lb_trace_begin6(ctx.ctx);
}

/// [`begin6`], as a global BPF function (verified once, as [`lb_trace_end`]).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_trace_begin6(ctx: *mut xdp_md) -> u32 {
    let ctx = XdpContext::new(ctx);
    begin();
    if let Ok(Parsed6::Flow(p)) = parse6::parse6(&ctx) {
        arrived6(p.ip, p.ports, p.proto);
    }
    0
}

/// An IPv6 packet's tuple as it arrived, copied from the header a word at a time.
#[inline(always)]
fn arrived6(ip: *const Ipv6Hdr, ports: *const [u16; 2], proto: u8) {
    if let Some(r) = record() {
        // SAFETY: as in `begin`; `ip` and `ports` were bounds-checked by the parser.
        unsafe {
            copy6(&raw mut (*r).key6.src, &raw const (*ip).src);
            copy6(&raw mut (*r).key6.dst, &raw const (*ip).dst);
            (*r).key6.sport = (*ports)[0];
            (*r).key6.dport = (*ports)[1];
            (*r).key6.proto = proto;
        }
    }
}

/// # Safety
/// Both point to 16 readable bytes, `to` writable.
#[inline(always)]
unsafe fn copy6(to: *mut Addr6, from: *const Addr6) {
    let (to, from) = (to.cast::<u32>(), from.cast::<u32>());
    for i in 0..4 {
        // SAFETY: as the caller promised; volatile keeps one word at a time in a register.
        unsafe { *to.add(i) = core::ptr::read_volatile(from.add(i)) };
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

/// [`end`] for an IPv6 packet (from `lb_xdp6`).
#[inline(always)]
pub fn end6(ctx: &XdpContext, action: u32) {
    lb_trace_end6(ctx.ctx, action);
}

/// [`lb_trace_end`] for IPv6.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lb_trace_end6(ctx: *mut xdp_md, action: u32) -> u32 {
    let ctx = XdpContext::new(ctx);
    write_line6(&ctx, action);
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

/// [`write_line`] for IPv6: the same numbers, each address as its 4 words (packet order), 25
/// in all, which is how the daemon tells the families' records apart.
#[inline(always)]
fn write_line6(ctx: &XdpContext, action: u32) {
    let Some(r) = record() else {
        return;
    };
    // SAFETY: as in `begin`.
    let rec = unsafe { *r };
    let k = rec.key6;
    let out = match parse6::parse6(ctx) {
        Ok(Parsed6::Flow(p)) => FlowKey6::new(p.src(), p.dst(), p.sport(), p.dport(), p.proto),
        _ => k,
    };
    if !traced6(
        &LB_TRACE_VIP6.load(),
        LB_TRACE_PORT.load(),
        &k.dst,
        k.dport,
        &out.src,
        out.sport,
    ) {
        return;
    }
    let ([s0, s1, s2, s3], [d0, d1, d2, d3]) = (k.src, k.dst);
    let ([o0, o1, o2, o3], [t0, t1, t2, t3]) = (out.src, out.dst);
    info!(
        ctx,
        target: "lb::trace",
        "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        action,
        rec.reason,
        rec.rewrite,
        k.proto,
        s0,
        s1,
        s2,
        s3,
        k.sport,
        d0,
        d1,
        d2,
        d3,
        k.dport,
        o0,
        o1,
        o2,
        o3,
        out.sport,
        t0,
        t1,
        t2,
        t3,
        out.dport,
        rec.server
    );
}
