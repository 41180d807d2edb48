//! Each CPU's copies of confirmed IPv4 flows (`LB_FLOW_CACHE`, rules in
//! `lb_common::flow_cache`): [`serve`] forwards a packet from its copy in `lb_xdp` itself,
//! [`fill`] makes the copy on the whole path (`lb_xdp4`), [`forget_everywhere`] drops every
//! CPU's copies of a tuple whose flow may change: a TCP FIN, RST or SYN-ACK (the flow ends,
//! closes or a server answers on a tuple anew; a client's SYN clears its own CPU's copy
//! only), a new UDP flow.
use aya_ebpf::{
    Global,
    cty::c_void,
    helpers::generated::{bpf_get_smp_processor_id, bpf_jiffies64, bpf_loop},
    programs::XdpContext,
};
use lb_common::{
    CachedFlow, FlowKey,
    conntrack::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    flow_cache::{FLOW_CACHE_MAX_CPUS, MIN_HZ, flow_cache_index, flow_cache_slot, flow_cache_ttl},
};

use crate::{
    forward,
    maps::{LB_FLOW_CACHE, LB_SCRATCH},
    nat::{self, Tuple},
    parse::{self, Parsed},
    path,
    stats::{self, Dir, Event},
    verdict::GO_ON,
};

/// A copy's lifetime in jiffies: a constant the daemon sets for the kernel's HZ when it loads
/// the program (the verifier folds it); as built, the least HZ's.
#[unsafe(no_mangle)]
static LB_FLOW_CACHE_TTL: Global<u32> = Global::new(flow_cache_ttl(MIN_HZ));

/// The copies' clock: `jiffies`, one load (the verifier inlines the helper).
#[inline(always)]
fn jiffies() -> u32 {
    // SAFETY: plain helper call.
    unsafe { bpf_jiffies64() as u32 }
}

/// The CPU running the program (the verifier inlines the helper as one load).
#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_smp_processor_id() }
}

/// CPU `cpu`'s slot for `key`: `None` past the CPUs the array was sized for.
#[inline(always)]
fn slot_of(cpu: u32, key: &FlowKey) -> Option<*mut CachedFlow> {
    LB_FLOW_CACHE.get_ptr_mut(flow_cache_index(cpu, flow_cache_slot(key)))
}

/// Forwards the packet from this CPU's copy of its flow: the action, or [`GO_ON`] for the
/// whole packet path (no fresh copy, news for the flow, ICMP, too big for the path). What
/// the whole path would pass untouched (not TCP/UDP, malformed, not lb's ports) is passed
/// here with the same reason.
#[inline(always)]
pub fn serve(ctx: &XdpContext) -> u32 {
    let pkt = match parse::parse(ctx) {
        Ok(Parsed::Flow(pkt)) => pkt,
        Ok(Parsed::Icmp(_)) => return GO_ON,
        Err(reason) => return path::pass(reason),
    };
    if !path::may_be_tracked(&pkt) {
        return path::pass(lb_common::Reason::PassNotService);
    }
    const NEWS: u8 = TCP_SYN | TCP_FIN | TCP_RST;
    let key = FlowKey::new(pkt.src(), pkt.dst(), pkt.sport(), pkt.dport(), pkt.proto);
    if pkt.is_tcp() && pkt.tcp_flags & NEWS != 0 {
        // The flow changes with this packet (or a new one takes the tuple): its copies, which
        // only know it established, must not serve its next packets on any CPU. The other
        // direction's copies go with that side's own FIN, RST or SYN-ACK; until then they
        // serve only packets that change nothing (`lb_common::flow_cache`). A client's SYN
        // clears this CPU's only: its tuple's last flow ended with a FIN or RST (which
        // cleared them all) or idle (copies long gone), unless a full table evicted it live.
        if pkt.tcp_flags & (NEWS | TCP_ACK) == TCP_SYN {
            forget_copy(&key, this_cpu());
        } else {
            forget_everywhere(&key, &key);
        }
        return GO_ON;
    }
    let Some(slot) = slot_of(this_cpu(), &key) else {
        return GO_ON;
    };
    // SAFETY: this CPU's slot: only this CPU writes copies there (the program runs to the end
    // on one CPU), other CPUs only ever mark it stale (`forget_everywhere`), which at worst
    // serves one more packet the way the flow went a moment ago.
    let c: &CachedFlow = unsafe { &*slot };
    let frame = pkt.frame();
    if !c.holds(&key)
        || !c.fresh(jiffies(), LB_FLOW_CACHE_TTL.load())
        || forward::too_big(&frame, &c.nh, 0)
    {
        return GO_ON;
    }
    let dir = if c.reply != 0 { Dir::Out } else { Dir::In };
    stats::account(
        c.server as u32,
        c.frontend as u32,
        dir,
        pkt.frame_len,
        Event::default(),
    );
    nat::rewrite(
        &pkt,
        &Tuple {
            src: c.src,
            dst: c.dst,
            sport: c.sport,
            dport: c.dport,
        },
    );
    forward::send(ctx, &frame, &c.nh)
}

/// Makes this CPU's copy of the flow entry `flow` (at `key`, its next hop fresh), if the
/// rules allow one (`lb_common::flow_cache::may_cache`). A subprogram: inline, its copying
/// would cost the packet path's frame stack its deepest chain of calls needs.
#[inline(never)]
pub fn fill(key: &FlowKey, flow: *const lb_common::Flow) {
    // SAFETY: a live map value, read in place (a racing update at worst copies the moment
    // before it, for the copy's short life).
    let flow = unsafe { &*flow };
    if !lb_common::flow_cache::may_cache(flow) {
        return;
    }
    let Some(c) = slot_of(this_cpu(), key) else {
        return;
    };
    let now = jiffies();
    // SAFETY: this CPU's slot, see `serve`.
    if unsafe { !(*c).yields_to(key, now, LB_FLOW_CACHE_TTL.load()) } {
        return;
    }
    // Field by field into the slot: `CachedFlow::of` would build it on the stack first.
    // SAFETY: this CPU's slot, see `serve`.
    unsafe {
        (*c).key = *key;
        (*c).src = flow.src;
        (*c).dst = flow.dst;
        (*c).sport = flow.sport;
        (*c).dport = flow.dport;
        (*c).nh = flow.nh;
        (*c).server = flow.server;
        (*c).frontend = flow.frontend;
        (*c).stamp = now;
        (*c).reply = flow.is_reply() as u8;
    }
}

/// Drops every CPU's copies of `key` and `mirror` (a flow's two directions, or one tuple
/// twice). A `bpf_loop` over the CPUs (verified once); the keys go to its callback through
/// this CPU's scratch, whose `key` and `mirror` IPv4 does not use.
#[inline(always)]
pub fn forget_everywhere(key: &FlowKey, mirror: &FlowKey) {
    let Some(scratch) = LB_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch; the program runs to completion on one CPU.
    unsafe {
        (*scratch).key = *key;
        (*scratch).mirror = *mirror;
        bpf_loop(
            FLOW_CACHE_MAX_CPUS,
            forget_on_cpu as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
}

/// One CPU of [`forget_everywhere`], the `bpf_loop` callback: 0 to go on, 1 to stop (past
/// the last CPU the array has room for, where the lookup finds nothing).
#[inline(never)]
extern "C" fn forget_on_cpu(cpu: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = LB_SCRATCH.get_ptr(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch, filled by `forget_everywhere` (still running, inside the
    // helper).
    let (key, mirror) = unsafe { (&(*scratch).key, &(*scratch).mirror) };
    if !forget_copy(key, cpu as u32) {
        return 1;
    }
    if mirror != key {
        forget_copy(mirror, cpu as u32);
    }
    0
}

/// Marks `cpu`'s copy of `key` stale, if it holds one. False if the array has no region for
/// that CPU.
#[inline(always)]
fn forget_copy(key: &FlowKey, cpu: u32) -> bool {
    let Some(slot) = slot_of(cpu, key) else {
        return false;
    };
    // SAFETY: a live slot of that CPU's region. Racing its owner's `fill` at worst leaves
    // one copy that expires within the cache's lifetime.
    unsafe {
        if (*slot).key == *key {
            (*slot).key.proto = 0;
        }
    }
    true
}
