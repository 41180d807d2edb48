//! The packet path, one copy per address family (`family`): `lb_xdp4` runs
//! `process::<Ipv4Hdr>`, `lb_xdp6` `process::<Ipv6Hdr>`, each with its own tables; `lb_xdp`
//! tail-calls them for what its flow cache (`flow_cache`) does not serve.
//!
//! ```text
//! parse ─ ICMP error ─ about a tracked flow? ─ translate ─ forward (icmp)
//!   │ TCP/UDP
//!   a service's or server's port? ─ no ─ XDP_PASS, untouched
//!           │ yes
//!           ├─ tracked (LB_FLOWS, then LB_HALFOPEN), alive ─ state step ─┬─ NAT ─ forward
//!           │                                                           ├─ server refused the SYN: hold the RST back
//!           │                                                           └─ SYN on a closed tuple, refused SYN again ─┐
//!           ├─ VIP:port is a service ─┬─ UDP, or a TCP SYN ─── new_flow: choose, track half-open ─ NAT ─ forward
//!           │                         └─ other TCP (no flow) ─ XDP_PASS: the host answers RST
//!           └─ anything else (expired flows included) ─ XDP_PASS, untouched
//! ```
//!
//! "forward" checks the path's MTU first: a packet too big for it is answered with ICMP
//! "fragmentation needed" (DF) or left to the kernel to fragment; IPv6's always with ICMPv6
//! "packet too big".
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    Algorithm, FLOW_F_DSR, FLOW_F_FIN_CLIENT, FLOW_F_REFUSED, FLOW_F_RST, FLOW_F_TS, FlowKeyOf,
    FlowOf, NextHop, POOL_F_DSR, POOL_F_REDISPATCH, PROTO_TCP, Reason, ServiceKeyOf, ServiceValue,
    State,
    balance::refusal,
    clock::elapsed,
    conntrack::{
        Step, TCP_FIN, TCP_RST, TCP_SYN, confirms, dsr_step, idle_expired, tcp_step, udp_step,
    },
    ports::{PortSide, port_bit},
};

use crate::{
    acl, clock,
    conntrack::{self, Table},
    family::{Addr, IpHdr},
    forward,
    maps::{LB_POOLS, LB_PORTS},
    nat::{self, TupleOf},
    new_flow::{self, Cause, NewFlow},
    observe,
    parse::{PacketOf, ParsedOf},
    stats::{self, Dir, Event},
    trace,
    verdict::{GO_ON, NEW_FLOW},
};

/// The packet path's entry. A packet with no news of a confirmed flow is forwarded inline
/// ([`steady`]); the rest of the tracked path, the new-flow stages and ICMP are subprograms
/// called from here (see `verdict` for why): a tracked packet that turns out to start a new
/// flow comes back with [`NEW_FLOW`] and takes the new-flow path.
#[inline(always)]
pub fn process<H: IpHdr>(ctx: &XdpContext) -> u32 {
    // IPv6's path is traced from `lb_xdp6`, around it (`trace::begin6`).
    if H::V4 && trace::on_for(true) {
        trace::begin();
    }
    let pkt = match H::parse(ctx) {
        Ok(ParsedOf::Flow(pkt)) => pkt,
        Ok(ParsedOf::Icmp(e)) => return H::translate(ctx, &e, clock::now()),
        Err(reason) => return pass(reason),
    };
    if H::V4 && trace::on_for(true) {
        H::arrived(&pkt);
    }
    if !may_be_tracked(&pkt) {
        return pass(Reason::PassNotService);
    }
    let ports = (pkt.sport(), pkt.dport());
    H::A::with_key(pkt.src(), pkt.dst(), ports, pkt.proto, |key| {
        let mut new = NewFlow::fresh(clock::now());
        let action = match conntrack::lookup(key) {
            Some((entry, table)) => match steady_of(ctx, &pkt, key, entry, new.now) {
                GO_ON => tracked(ctx, &pkt, key, &Hit { entry, table }, &mut new),
                action => action,
            },
            None => untracked(&pkt, &mut new),
        };
        if action != NEW_FLOW {
            return action;
        }
        new_flow::start(ctx, &pkt, key, &mut new)
    })
}

#[inline(always)]
pub fn pass(reason: Reason) -> u32 {
    stats::reason(reason);
    xdp_action::XDP_PASS
}

/// Whether a service or server uses the packet's ports at all (`LB_PORTS`): two array reads,
/// which the verifier inlines, spare the host's other traffic the hash lookups.
#[inline(always)]
pub fn may_be_tracked<H: IpHdr>(pkt: &PacketOf<H>) -> bool {
    let has = |side, port: u16| {
        let (word, bit) = port_bit(side, u16::from_be(port));
        LB_PORTS.get(word).is_some_and(|w| w & bit != 0)
    };
    has(PortSide::Service, pkt.dport()) || has(PortSide::Server, pkt.sport())
}

/// The service a packet is addressed to (wildcard binds are written per local address).
#[inline(always)]
fn service<H: IpHdr>(pkt: &PacketOf<H>) -> Option<ServiceValue> {
    H::A::service(&ServiceKeyOf {
        addr: pkt.dst(),
        port: pkt.dport(),
        proto: pkt.proto,
        _pad: 0,
    })
}

/// A packet no live flow knows: [`NEW_FLOW`] if it starts one (described in `new`), else
/// the action.
#[inline(always)]
fn untracked<H: IpHdr>(pkt: &PacketOf<H>, new: &mut NewFlow) -> u32 {
    let Some(svc) = service(pkt) else {
        return pass(Reason::PassNotService);
    };
    if !conntrack::starts_flow(pkt) {
        // Mid-stream TCP: no server has this connection, so balancing it would only earn an
        // RST from one. The host answers it, as it would without lb, and no state is made.
        // Unless the pool returns directly and hashes: then the connection began on another
        // lb node (the router moved it here) and the hash names its server on every node.
        if !adopts_mid_stream(svc.pool) {
            return pass(Reason::PassNoFlow);
        }
        // A fresh flow to the chooser: the hash alone decides, wherever it began (a cause
        // of its own would cost the verifier every new-flow path once more).
        stats::reason(Reason::NewMidStream);
    }
    // `tcp-request connection` rules judge TCP connections only, before any state exists.
    if pkt.proto == PROTO_TCP {
        let action = acl::admits(svc.frontend, pkt.dport(), pkt.src());
        if action != GO_ON {
            return action;
        }
    }
    new.pool = svc.pool;
    new.frontend = svc.frontend;
    NEW_FLOW
}

/// Whether a pool takes over connections it never saw begin: direct server return (the
/// server's replies never needed lb) and a hash (every node picks the same server).
#[inline(always)]
fn adopts_mid_stream(pool: u32) -> bool {
    // SAFETY: an array slot, never freed.
    LB_POOLS.get_ptr(pool).is_some_and(|p| {
        let flags = unsafe { (*p).flags };
        flags & POOL_F_DSR != 0 && Algorithm::of_flags(flags) == Algorithm::Maglev
    })
}

/// [`steady`], inline for IPv4 (its common case, one call less); a subprogram for IPv6,
/// whose addresses would otherwise crowd the entry's frame, which every chain of calls
/// starts with.
#[inline(always)]
fn steady_of<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    entry: *mut FlowOf<H::A>,
    now: u32,
) -> u32 {
    if H::V4 {
        steady(ctx, pkt, key, entry, now)
    } else {
        steady_apart(ctx, pkt, key, entry, now)
    }
}

#[inline(never)]
fn steady_apart<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    entry: *mut FlowOf<H::A>,
    now: u32,
) -> u32 {
    steady(ctx, pkt, key, entry, now)
}

/// The common case inline, without a subprogram call: a packet with no news (TCP without
/// SYN, FIN or RST; UDP) of a confirmed, live flow whose next hop is fresh and takes it. Its
/// action, or [`GO_ON`] for the tracked path (`tracked`) to judge the packet. Only
/// scalars live here, so it costs the entry's frame almost no stack. A direct-server-return
/// flow's packet goes in its IPIP header instead of being rewritten. An IPv4 flow's next
/// packets on this CPU are then served from a copy (`flow_cache`), made here.
#[inline(always)]
fn steady<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    entry: *mut FlowOf<H::A>,
    now: u32,
) -> u32 {
    const NEWS: u8 = TCP_SYN | TCP_FIN | TCP_RST;
    // SAFETY: an LRU value read and updated in place, see `tracked`.
    let flow: &FlowOf<H::A> = unsafe { &*entry };
    let confirmed = if pkt.is_tcp() {
        flow.state == State::Established as u8 && pkt.tcp_flags & NEWS == 0
    } else {
        flow.state == State::UdpActive as u8
    };
    if !confirmed || idle_expired(flow, now) {
        return GO_ON;
    }
    // SAFETY: as above.
    let nh = unsafe { &mut (*entry).nh };
    let frame = pkt.frame();
    let dsr = flow.flags & FLOW_F_DSR != 0;
    let overhead = if dsr { H::ENCAP_OVERHEAD } else { 0 };
    if !forward::fresh(nh, now) || forward::too_big(&frame, nh, overhead) {
        return GO_ON;
    }
    // A flow busy enough to have had a packet this way within the last clock tick or two
    // (1-2 ms): its next packets here are served from a copy. A copy of a flow heard from
    // less often would rarely serve before it expires, and would hold a shared slot (a live
    // copy keeps it) that a busier flow could use.
    if elapsed(now, flow.last_seen) <= 1 {
        H::A::copy_flow(key, entry);
    }
    if flow.last_seen != now {
        // SAFETY: as above.
        unsafe { (*entry).last_seen = now };
    }
    let dir = if flow.is_reply() { Dir::Out } else { Dir::In };
    stats::account(
        flow.server as u32,
        flow.frontend as u32,
        dir,
        pkt.frame_len,
        Event::default(),
    );
    if dsr {
        return H::encap(ctx, &flow.src, &flow.dst, nh, GO_ON);
    }
    // SAFETY: a live map value; its rewrite read where it is (an IPv6 one is 40 bytes).
    nat::rewrite(pkt, unsafe { &*entry.cast::<TupleOf<H::A>>() });
    forward::send(ctx, &frame, nh)
}

/// An entry the lookup found, and where.
struct Hit<A> {
    entry: *mut FlowOf<A>,
    table: Table,
}

#[inline(always)]
pub fn tuple<A: Copy>(f: &FlowOf<A>) -> TupleOf<A> {
    TupleOf {
        src: f.src,
        sport: f.sport,
        dst: f.dst,
        dport: f.dport,
    }
}

/// Whose counters a forwarded packet goes to.
pub struct Acct {
    pub server: u32,
    pub frontend: u32,
    pub dir: Dir,
    pub event: Event,
}

/// A packet of a tracked flow, either way: its action, or [`NEW_FLOW`] if it starts a new
/// one (its flow expired, a SYN on a closed tuple, a refused SYN retried), described in
/// `new`. A subprogram, see `verdict`.
#[inline(never)]
fn tracked<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    key: &FlowKeyOf<H::A>,
    hit: &Hit<H::A>,
    new: &mut NewFlow,
) -> u32 {
    let (mut entry, table, now) = (hit.entry, hit.table, new.now);
    // SAFETY: an LRU value, read and updated in place (a copy would cost stack the verifier
    // does not give); a racing eviction at worst loses an update. What the packet needs after
    // a state change (which may move the entries) is taken first.
    let flow: &FlowOf<H::A> = unsafe { &*entry };
    let state = match State::from_u8(flow.state) {
        Some(state) if !conntrack::expired(flow, key, table, now) => state,
        // Dead: its tuple is free again, and the packet is judged as if never seen.
        _ => {
            conntrack::retire(table, key, flow, pkt.proto);
            return untracked(pkt, new);
        }
    };
    let from_server = flow.is_reply();
    if !from_server && flow.flags & FLOW_F_REFUSED != 0 && pkt.is_syn() {
        // The client retransmits a SYN its server refused: another server, if there is one.
        new.again(
            flow,
            Cause::Refused {
                server: flow.server as u32,
                attempts: flow.attempts,
            },
        );
        conntrack::forget(table, key, flow, pkt.proto);
        return NEW_FLOW;
    }
    let step = if is_dsr(&flow.flags) {
        dsr_step(state, flow.flags, pkt.proto, pkt.tcp_flags)
    } else if pkt.is_tcp() {
        let ack_ok = acks_awaited(pkt, flow, state, from_server);
        tcp_step(state, flow.flags, from_server, pkt.tcp_flags, ack_ok)
    } else {
        udp_step(state, flow.flags, from_server)
    };
    if step == Step::Refused {
        observe::refused(flow.server as u32);
    }
    let step = match step {
        Step::Restart => {
            // A new connection on a closed flow's tuple: balance it afresh.
            new.again(flow, Cause::Fresh);
            conntrack::retire(table, key, flow, pkt.proto);
            return NEW_FLOW;
        }
        Step::Refused if hold_back_refusal(flow, table) => {
            stats::reason(Reason::DropServerRefused);
            return xdp_action::XDP_DROP;
        }
        Step::Refused => Step::To {
            state: State::Closed,
            flags: flow.flags | FLOW_F_RST,
        },
        Step::Same
            if state == State::Closed
                && !from_server
                && pkt.is_tcp()
                && flow.flags & FLOW_F_TS != 0 =>
        {
            // The client's packets after both FINs (the ACK of a FIN that crossed its own):
            // the server takes their timestamps too, see below.
            Step::To {
                state,
                flags: flow.flags,
            }
        }
        other => other,
    };
    let to = tuple(flow);
    let acct = Acct {
        server: flow.server as u32,
        frontend: flow.frontend as u32,
        dir: if from_server { Dir::Out } else { Dir::In },
        event: Event::default(),
    };
    if let Step::To {
        state: next,
        mut flags,
    } = step
    {
        let (mut tcp_ref, mut client_fin) = (flow.tcp_ref, flow.client_fin);
        if next == State::SynRecv {
            tcp_ref = pkt.seq;
        } else if !from_server && next.is_closing() {
            if flags & FLOW_F_FIN_CLIENT != 0 && flow.flags & FLOW_F_FIN_CLIENT == 0 {
                client_fin = pkt.seq_end();
            }
            // The client closes: its TSval is the last the server sees, which a SYN taking
            // this tuple over must beat (`lb_common::conntrack::port_reusable`).
            if flags & FLOW_F_TS != 0 {
                match pkt.timestamp(ctx) {
                    0 => flags &= !FLOW_F_TS,
                    ts => tcp_ref = ts as u32,
                }
            }
        }
        let change = conntrack::Change {
            state: next,
            flags,
            tcp_ref,
            client_fin,
            promote: confirms(state, next),
            proto: pkt.proto,
            now,
        };
        match conntrack::transition(table, key, entry, &change) {
            Some(e) => entry = e,
            None => {
                // Promoted and evicted at once (a full table racing): forward this packet
                // through a next hop looked up afresh, in this CPU's scratch (not the frame:
                // the stack is short).
                let Some(scratch) = conntrack::scratch::<H::A>() else {
                    return pass(Reason::PassNotService);
                };
                // SAFETY: this CPU's scratch, see `conntrack::track`.
                let (nh, fl) = unsafe { (&mut (*scratch).fwd.nh, &mut (*scratch).fwd.flags) };
                nh.ifindex = 0;
                *fl = flags;
                let routed = forward::route(ctx, &pkt.frame(), &to, nh, now);
                return deliver(ctx, pkt, &to, &acct, nh, routed, fl);
            }
        }
    } else if flow.last_seen != now {
        // SAFETY: an LRU value updated in place, see above.
        unsafe { (*entry).last_seen = now };
    }
    let routed = forward::route_flow(ctx, &pkt.frame(), &to, entry, now);
    // SAFETY: `entry` is a live map value.
    unsafe {
        deliver(
            ctx,
            pkt,
            &to,
            &acct,
            &mut (*entry).nh,
            routed,
            &(*entry).flags,
        )
    }
}

/// Whether the flow flags at `flags` (map memory) are a direct-server-return flow's, read
/// afresh where they decide: a yes/no held from one decision to the next would make the
/// verifier walk everything in between twice, once per answer.
#[inline(always)]
pub fn is_dsr(flags: *const u8) -> bool {
    // SAFETY: the caller's pointer into a live map value.
    let flags = unsafe { core::ptr::read_volatile(flags) };
    flags & FLOW_F_DSR != 0
}

/// Whether a TCP packet's ACK covers what its flow waits for (`tcp_step`'s `ack_ok`): the
/// server's ISN in the handshake, the client's FIN once it sent one.
#[inline(always)]
fn acks_awaited<H: IpHdr>(
    pkt: &PacketOf<H>,
    flow: &FlowOf<H::A>,
    state: State,
    from_server: bool,
) -> bool {
    if from_server {
        flow.flags & FLOW_F_FIN_CLIENT != 0 && pkt.ack_seq.wrapping_sub(flow.client_fin) as i32 >= 0
    } else {
        state == State::SynRecv && pkt.ack_seq == flow.tcp_ref.wrapping_add(1)
    }
}

/// Rewrites `pkt` to `to` (or, for a direct-server-return flow (its `flags`, in map memory),
/// puts it in an IPIP header from `to.src` to `to.dst`),
/// counts it and sends it on through the next hop at `nh`, which the caller's
/// `forward::route` (or `route_flow`) refreshed: `routed` is its answer. A packet too big for
/// the path is answered with ICMP (DF), or rewritten and left to the kernel to fragment.
#[inline(always)]
pub fn deliver<H: IpHdr>(
    ctx: &XdpContext,
    pkt: &PacketOf<H>,
    to: &TupleOf<H::A>,
    acct: &Acct,
    nh: *mut NextHop,
    routed: u32,
    flags: *const u8,
) -> u32 {
    let frame = pkt.frame();
    let dsr = is_dsr(flags);
    let overhead = if dsr { H::ENCAP_OVERHEAD } else { 0 };
    let too_big = routed == GO_ON && forward::too_big(&frame, nh, overhead);
    if too_big && H::answers_too_big(pkt) {
        // The client lowers its packets to what fits once encapsulated.
        // SAFETY: routed: `nh` holds a fresh next hop.
        return H::too_big(ctx, pkt, unsafe { (*nh).mtu }.saturating_sub(overhead));
    }
    stats::account(
        acct.server,
        acct.frontend,
        acct.dir,
        pkt.frame_len,
        acct.event,
    );
    if dsr {
        let routed = if too_big {
            Reason::PassTooBig as u32
        } else {
            routed
        };
        return H::encap(ctx, &to.src, &to.dst, nh, routed);
    }
    nat::rewrite(pkt, to);
    if routed != GO_ON {
        // Rewritten, for the kernel to route (it resolves the neighbour meanwhile).
        return forward::unrouted(routed);
    }
    if too_big {
        // Rewritten, for the kernel to fragment.
        return pass(Reason::PassTooBig);
    }
    forward::send(ctx, &frame, nh)
}

/// The reply entry's server refused its connection: marks the forward entry so the client's
/// retransmitted SYN is balanced afresh, if the pool redispatches and has retries left
/// (`lb_common::balance::refusal`). Returns whether to hold the RST back. A rare path: one
/// more lookup, for the forward entry.
#[inline(always)]
fn hold_back_refusal<A: Addr>(reply: &FlowOf<A>, table: Table) -> bool {
    let Some(info) = LB_POOLS.get_ptr(reply.pool as u32) else {
        return false;
    };
    // SAFETY: array slots are never freed.
    let pool_flags = unsafe { (*info).flags };
    if pool_flags & POOL_F_REDISPATCH == 0 {
        return false;
    }
    let Some(fwd) = A::with_mirror(reply, PROTO_TCP, |k| table.get(k)).flatten() else {
        return false;
    };
    // SAFETY: an LRU value updated in place, see `tracked`.
    unsafe {
        if (*fwd).server != reply.server {
            return false; // a late RST from a server the flow already left
        }
        match refusal((*fwd).flags, (*fwd).attempts, pool_flags) {
            Some((flags, attempts)) => {
                (*fwd).flags = flags;
                (*fwd).attempts = attempts;
                true
            }
            None => false,
        }
    }
}
