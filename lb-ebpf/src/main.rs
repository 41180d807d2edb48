//! lb's XDP data plane. Files by role: `parse`, `parse6` (headers), `maps` (state),
//! `flow_cache` (each CPU's copies of confirmed flows, served in the entry program), `path`
//! (the packet path, one copy per address family: `family` says what differs), `new_flow` (choosing a server for a new flow; `by_load` for the algorithms that
//! weigh active flows, `active` for those counts), `conntrack` (flow tables and their
//! lifecycle), `clock`, `nat` (rewrite + checksums), `ipip` (direct server return), `forward`
//! (next hop, path MTU, redirect),
//! `icmp`, `icmp6` (errors about flows, "fragmentation needed", "packet too big"), `verdict` (what the path's
//! subprograms return), `stats` (per-CPU counters), `trace` (`lb trace`), `bench`
//! (benchmark-only programs).
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

mod acl;
mod active;
mod atomic;
mod bench;
mod by_load;
mod clock;
mod conntrack;
mod family;
mod flow_cache;
mod forward;
mod icmp;
mod icmp6;
mod ipip;
mod maps;
mod nat;
mod new_flow;
mod observe;
mod parse;
mod parse6;
mod path;
mod stats;
mod trace;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use lb_common::{PROGS_LB4, PROGS_LB6};

use crate::{parse::Ipv4Hdr, parse6::Ipv6Hdr};

/// The load balancer's entry. IPv4 packets its flow cache serves (`flow_cache`: packets
/// with no news of confirmed flows, the bulk of the traffic) are forwarded here; the rest go
/// on in [`lb_xdp4`], IPv6 packets in [`lb_xdp6`], by tail calls (each program gets its own
/// stack and verification).
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    if parse6::is_ipv6(&ctx) {
        // SAFETY: a helper call; it returns only if `LB_PROGS` has no program there.
        unsafe { maps::LB_PROGS.tail_call(&ctx, PROGS_LB6) };
        return path::pass(lb_common::Reason::PassNotIpv4);
    }
    // A copy that traces IPv4 sends every packet down the whole path, where it is traced (a
    // constant: the untraced copy has no such branch).
    if !trace::on_for(true) {
        let action = flow_cache::serve(&ctx);
        if action != verdict::GO_ON {
            return action;
        }
    }
    // SAFETY: as above.
    unsafe { maps::LB_PROGS.tail_call(&ctx, PROGS_LB4) };
    path::pass(lb_common::Reason::PassNoPath)
}

/// IPv4's whole packet path, tail-called from [`lb_xdp`].
#[xdp]
pub fn lb_xdp4(ctx: XdpContext) -> u32 {
    let action = path::process::<Ipv4Hdr>(&ctx);
    // A constant of the loaded program: in the copy that runs untraced the verifier removes
    // this call (see `trace`).
    if trace::on_for(true) {
        trace::end(&ctx, action);
    }
    action
}

/// IPv6's packet path, tail-called from [`lb_xdp`]. It keeps no stack and calls [`lb6`], and
/// ICMPv6 errors go to `icmp6::translate` from here: each chain of frames has the verifier's
/// 512 bytes.
#[xdp]
pub fn lb_xdp6(ctx: XdpContext) -> u32 {
    // Decided before the path, not after it as in `lb_xdp4`: the verifier walks what follows
    // the path once per way out of it, so the copy that runs untraced must find there what
    // it always did.
    if likely(!trace::on_for(false)) {
        return path6(&ctx);
    }
    traced6(XdpContext { ctx: ctx.ctx })
}

#[inline(always)]
fn path6(ctx: &XdpContext) -> u32 {
    let action = lb6(XdpContext { ctx: ctx.ctx });
    if likely(action != verdict::ICMP6) {
        return action;
    }
    icmp6::translate(XdpContext { ctx: ctx.ctx }, clock::now())
}

/// Lays the usual way out of a branch first (the verifier walks what follows `lb6` once per
/// way out of it: one instruction there costs hundreds).
#[inline(always)]
fn likely(b: bool) -> bool {
    #[cfg(target_arch = "bpf")]
    return core::intrinsics::likely(b);
    #[cfg(not(target_arch = "bpf"))]
    b
}

/// [`lb_xdp6`] in the tracing copy: the IPv6 path between `lb trace`'s first and last word.
/// Inline: a frame of its own would make the path's chain of calls one too many (8 at most).
#[inline(always)]
fn traced6(ctx: XdpContext) -> u32 {
    trace::begin6(&ctx);
    let action = path6(&ctx);
    trace::end6(&ctx, action);
    action
}

/// The IPv6 path proper. (The context goes by value: a reference would put it on the
/// entry's stack, where every chain of frames starts.)
#[inline(never)]
fn lb6(ctx: XdpContext) -> u32 {
    path::process::<Ipv6Hdr>(&ctx)
}

/// Does nothing: the benchmark floor, and what tests attach to veth peers so that frames
/// redirected or bounced to them are picked up (see the testbed notes in the README).
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Parses the packet as `lb_xdp` does (counting why it would pass one it cannot use) and
/// passes it: the floor lb-bench's live-traffic row compares `lb_xdp` with, so the ratio is
/// what lb adds to reading the headers. IPv6 frames as `lb_xdp` and `lb_xdp6` together do:
/// the family check, then IPv6's parse (no tail call, which is lb's).
#[xdp]
pub fn xdp_parse_only(ctx: XdpContext) -> u32 {
    if parse6::is_ipv6(&ctx) {
        match parse6::parse6(&ctx) {
            // SAFETY: `parse6` bounds-checked it.
            Ok(parse::ParsedOf::Flow(p)) => unsafe {
                core::ptr::read_volatile(p.ports);
            },
            // The error is read again later by `icmp6::translate`: nothing more located.
            Ok(parse::ParsedOf::Icmp(_)) => {}
            Err(reason) => stats::reason(reason),
        }
        return xdp_action::XDP_PASS;
    }
    match parse::parse(&ctx) {
        // One volatile read of what the parse located, so that none of it is optimised away.
        // SAFETY: `parse` bounds-checked both.
        Ok(parse::Parsed::Flow(p)) => unsafe {
            core::ptr::read_volatile(p.ports);
        },
        Ok(parse::Parsed::Icmp(e)) => unsafe {
            core::ptr::read_volatile(e.inner_ports);
        },
        Err(reason) => stats::reason(reason),
    }
    xdp_action::XDP_PASS
}

/// For servers of `nat dsr-ipip` whose kernel has no `ipip` module: takes the outer IPIP
/// header off packets to this host and passes the packet inside to the stack, as `tunl0`
/// would (`scripts/dsr-server.sh --no-ipip`, see `ipip::decap`).
#[xdp]
pub fn ipip_decap(ctx: XdpContext) -> u32 {
    ipip::decap(&ctx)
}

/// Benchmark traffic generator (lb-bench, live-frames `BPF_PROG_TEST_RUN`); see `bench`.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    bench::generate(&ctx)
}

/// Benchmark receiver: counts and drops TCP frames; see `bench`.
#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    bench::sink(&ctx)
}

/// Benchmark `XDP_TX` bounce, the veth forwarding limit; see `bench`.
#[xdp]
pub fn bench_tx(ctx: XdpContext) -> u32 {
    bench::bounce(&ctx)
}

/// Benchmark floor of a conntrack hit (lookup and rewrite only); see `bench`.
#[xdp]
pub fn bench_floor_hit(ctx: XdpContext) -> u32 {
    bench::floor_hit(&ctx)
}

/// Benchmark floor of a new flow (its two half-open inserts only); see `bench`.
#[xdp]
pub fn bench_floor_new(ctx: XdpContext) -> u32 {
    bench::floor_new(&ctx)
}

// Host builds (clippy) link std through lb-common's `user` feature, which brings its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
