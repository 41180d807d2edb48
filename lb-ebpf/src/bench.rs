//! Benchmark-only programs (see `lb_common::bench`): a traffic generator for
//! `BPF_PROG_TEST_RUN` in live-frames mode, a counting sink and an `XDP_TX` bounce. Nothing
//! here is reachable from `lb_xdp`; the daemon never loads these programs.
use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    macros::btf_map,
    programs::XdpContext,
};
use lb_common::{
    bench::{
        GEN_FRAME_LEN, GEN_SPORT_OFF, GEN_TCP_CHECK_OFF, GEN_TEMPLATES, GenConfig, SINK_SLOTS,
    },
    csum::Delta,
};

use crate::parse::{ETH_HLEN, EthHdr, Ipv4Hdr};

#[btf_map]
pub static BENCH_GEN: Array<GenConfig, 1> = Array::new();

/// Frames generated so far on each CPU (the generator's only state).
#[btf_map]
pub static BENCH_SEQ: PerCpuArray<u64, 1> = PerCpuArray::new();

/// Frames the sink received, per CPU, by `dst & (SINK_SLOTS - 1)`.
#[btf_map]
pub static BENCH_COUNT: PerCpuArray<u64, { SINK_SLOTS as usize }> = PerCpuArray::new();

const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const PROTO_TCP: u8 = 6;

/// Writes the whole frame every time: in live-frames mode the kernel recycles pages, and
/// whatever the programs downstream wrote (NAT, MACs) would otherwise leak into later frames.
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + GEN_FRAME_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let (Some(cfg), Some(seq)) = (BENCH_GEN.get_ptr(0), BENCH_SEQ.get_ptr_mut(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: map values are valid for the program's run; the frame was bounds-checked above
    // (64 bytes), and every offset below is a constant inside it.
    unsafe {
        let n = *seq;
        *seq = n + 1;
        // 1..=GEN_TEMPLATES in a form LLVM sees is never zero (no division-by-zero panic
        // path, which the verifier would reject).
        let templates = ((*cfg).templates.wrapping_sub(1) as u64 & (GEN_TEMPLATES as u64 - 1)) + 1;
        let flows = (*cfg).flows.max(1) as u64;
        // The verifier does not bound `%`; LLVM knows the result is below 4 and would drop a
        // plain mask, so mask a value it cannot see through.
        let t = n % templates;
        let t = core::ptr::read_volatile(&t) as usize & (GEN_TEMPLATES - 1);
        let port = (*cfg)
            .sport_base
            .wrapping_add(((n / templates) % flows) as u16);
        // Frame data starts at the page's fixed headroom in live-frames mode: 8-byte
        // aligned, and the JIT does not care on the architectures XDP runs on anyway.
        let src = (*cfg).frames[t].as_ptr() as *const u64;
        let dst = data as *mut u64;
        for i in 0..GEN_FRAME_LEN / 8 {
            *dst.add(i) = *src.add(i);
        }
        let sport = (data + GEN_SPORT_OFF) as *mut u16;
        let check = (data + GEN_TCP_CHECK_OFF) as *mut u16;
        let new = port.to_be();
        *check = Delta::ZERO.u16(*sport, new).apply(*check);
        *sport = new;
    }
    xdp_action::XDP_TX
}

#[inline(always)]
pub fn sink(ctx: &XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN + core::mem::size_of::<Ipv4Hdr>() > end {
        return xdp_action::XDP_PASS;
    }
    let eth = data as *const EthHdr;
    let ip = (data + ETH_HLEN) as *const Ipv4Hdr;
    // SAFETY: bounds-checked above.
    let (proto, l4, dst) = unsafe { ((*eth).proto, (*ip).proto, (*ip).dst) };
    if proto != ETH_P_IP_BE || l4 != PROTO_TCP {
        return xdp_action::XDP_PASS;
    }
    // `from_be` gives the address as a number, whose low byte is its last octet.
    let slot = (u32::from_be(dst) & 0xff) % SINK_SLOTS;
    if let Some(c) = BENCH_COUNT.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
pub fn bounce(ctx: &XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN > end {
        return xdp_action::XDP_PASS;
    }
    let eth = data as *mut EthHdr;
    // SAFETY: bounds-checked above.
    unsafe { core::mem::swap(&mut (*eth).dst, &mut (*eth).src) };
    xdp_action::XDP_TX
}
