//! Benchmark-only programs (see `lb_common::bench`): a traffic generator for
//! `BPF_PROG_TEST_RUN` in live-frames mode, a counting sink, an `XDP_TX` bounce, and the
//! floors of a tracked packet (the least any balancer that keeps flows in kernel hash tables
//! must do, on lb's own tables). Nothing here is reachable from `lb_xdp`; the daemon never
//! loads these programs.
use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    macros::btf_map,
    programs::XdpContext,
};
use lb_common::{
    Flow, FlowKey,
    bench::{
        GEN_FRAME_LEN, GEN_SPORT_OFF, GEN_TCP_CHECK_OFF, GEN_TEMPLATES, GEN6_FRAME_LEN,
        GEN6_SPORT_OFF, GEN6_TCP_CHECK_OFF, GenConfig, SINK_SLOTS,
    },
    csum::Delta,
};

use crate::{
    maps::{LB_FLOWS, LB_HALFOPEN},
    nat::{self, Tuple},
    parse::{self, ETH_HLEN, EthHdr, Ipv4Hdr, Parsed},
    parse6::{ETH_P_IPV6_BE, Ipv6Hdr},
};

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
/// IPv4 frames take the same instructions as before IPv6 frames existed but one comparison,
/// so IPv4 numbers stay comparable with earlier runs.
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
    // (64 bytes, or 84 for the IPv6 part), and every offset below is a constant inside it.
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
        if (*cfg).frame_len as usize == GEN6_FRAME_LEN {
            if data + GEN6_FRAME_LEN > end {
                return xdp_action::XDP_ABORTED;
            }
            // The 20 bytes past the IPv4 frame's 64: two u64s and a u32.
            const _: () = assert!(GEN6_FRAME_LEN == GEN_FRAME_LEN + 20);
            let i = GEN_FRAME_LEN / 8;
            *dst.add(i) = *src.add(i);
            *dst.add(i + 1) = *src.add(i + 1);
            *(dst.add(i + 2) as *mut u32) = *(src.add(i + 2) as *const u32);
            set_sport(data, GEN6_SPORT_OFF, GEN6_TCP_CHECK_OFF, port);
        } else {
            set_sport(data, GEN_SPORT_OFF, GEN_TCP_CHECK_OFF, port);
        }
    }
    xdp_action::XDP_TX
}

/// Writes TCP source port `port` (host order) at `data + sport_off`, fixing the checksum at
/// `data + check_off` up (the pseudo-header of either family does not hold the ports).
///
/// # Safety
/// Both offsets + 2 must be inside the bounds-checked frame.
#[inline(always)]
unsafe fn set_sport(data: usize, sport_off: usize, check_off: usize, port: u16) {
    let sport = (data + sport_off) as *mut u16;
    let check = (data + check_off) as *mut u16;
    let new = port.to_be();
    // SAFETY: the caller's.
    unsafe {
        *check = Delta::ZERO.u16(*sport, new).apply(*check);
        *sport = new;
    }
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
    let last = if proto == ETH_P_IP_BE && l4 == PROTO_TCP {
        // `from_be` gives the address as a number, whose low byte is its last octet.
        u32::from_be(dst) & 0xff
    } else if proto == ETH_P_IPV6_BE {
        if data + ETH_HLEN + core::mem::size_of::<Ipv6Hdr>() > end {
            return xdp_action::XDP_PASS;
        }
        let ip = (data + ETH_HLEN) as *const Ipv6Hdr;
        // SAFETY: bounds-checked above. Only TCP right behind the fixed header is counted,
        // which is what the generator sends and lb forwards.
        let (next, dst) = unsafe { ((*ip).next, (*ip).dst) };
        if next != PROTO_TCP {
            return xdp_action::XDP_PASS;
        }
        u32::from_be(dst[3]) & 0xff
    } else {
        return xdp_action::XDP_PASS;
    };
    let slot = last % SINK_SLOTS;
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

/// The floor of a conntrack hit: lb's parse, one `LB_FLOWS` lookup, lb's rewrite to what the
/// entry says; then `XDP_PASS` (no flow cache, counters, state step or next hop). A frame of
/// no flow is `XDP_DROP`ped, one that does not parse `XDP_ABORTED`, so a run is checkable.
#[inline(always)]
pub fn floor_hit(ctx: &XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let key = FlowKey::new(pkt.src(), pkt.dst(), pkt.sport(), pkt.dport(), pkt.proto);
    let Some(f) = LB_FLOWS.get_ptr(key) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: a live map value; its rewrite read where it is, as lb's own hit reads it.
    nat::rewrite(&pkt, unsafe { &*f.cast::<Tuple>() });
    xdp_action::XDP_PASS
}

/// The floor of a new flow: lb's parse and the flow's two entries (this direction's and the
/// reply's) inserted into `LB_HALFOPEN`, where lb tracks a new flow; then the frame's source
/// port goes up by one (checksum not fixed: nothing reads it), so each run of
/// `BPF_PROG_TEST_RUN` is a new flow. `XDP_PASS`, or `XDP_ABORTED` if an insert fails.
#[inline(always)]
pub fn floor_new(ctx: &XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let (src, dst, sport, dport) = (pkt.src(), pkt.dst(), pkt.sport(), pkt.dport());
    let key = FlowKey::new(src, dst, sport, dport, pkt.proto);
    let rkey = FlowKey::new(dst, src, dport, sport, pkt.proto);
    let fwd = Flow {
        src,
        dst,
        sport,
        dport,
        ..Flow::default()
    };
    let reply = Flow {
        src: dst,
        dst: src,
        sport: dport,
        dport: sport,
        ..Flow::default()
    };
    if LB_HALFOPEN.insert(rkey, reply, 0).is_err() || LB_HALFOPEN.insert(key, fwd, 0).is_err() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: `parse` bounds-checked the ports.
    unsafe { (*pkt.ports)[0] = u16::from_be(sport).wrapping_add(1).to_be() };
    xdp_action::XDP_PASS
}
