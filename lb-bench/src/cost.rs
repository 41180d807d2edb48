//! Per-packet cost through BPF_PROG_TEST_RUN, against the empty XDP_PASS program.
//!
//! The kernel runs the program `repeat` times on the *same* buffer, so whatever the program
//! rewrites is the next run's input. Each case is therefore set up as a fixed point, so every
//! run takes the same path as a real packet would:
//! - conntrack hit / reply: the server (or client) is set up so that the rewrite maps the
//!   frame onto itself (the arithmetic still runs, with deltas that cancel), and the FIB
//!   still resolves a real next hop on the other interface (XDP_REDIRECT);
//! - new flow: the full-NAT rewrite turns the frame into a SYN from another source port of
//!   the same client to the same VIP, so every run is a new flow as long as the walk over
//!   source ports does not come back to a tracked tuple. Two tables make sure it does not:
//!   one with room for every run (fresh for each repetition, fewer runs than source ports:
//!   the normal case), and one of 4 flows that has forgotten the tuple long before (a full
//!   conntrack, where every insert evicts the oldest entry: the worst case).
//!
//! Each case checks afterwards, from the counters, that it measured what it claims.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use anyhow::{Result, ensure};
use lb::dataplane::{
    Dataplane, LoadOptions,
    ids::ServerSlot,
    testrun::{self, XDP_PASS, XDP_REDIRECT, action_name},
};
use lb_common::{
    Addr6, Flow6, FlowKey, FlowKey6, FlowOf, NextHop, PROTO_TCP, ServerInfo6, ServiceKey6,
    ServiceValue, State, addr6_from_octets, clock::ticks_from_ms,
};
use lb_testbed::{
    packet::{ACK, Pkt, Pkt6, SYN},
    runnet::{MAC_DPB, MAC_DPC, RunNet},
};

use crate::{
    Args,
    fixture::{SNAT_MAX, SNAT_MIN, VIP, be, established, install},
    report::{Report, Spread, Target},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MAC_VIP: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc2];
const CPORT: u16 = 40000;
/// The client port of the flow that is never copied (its timeout is too short for a copy).
const CPORT2: u16 = 40001;
/// New flows per run on a table with room: fewer than the fixture's source ports, so the
/// walk never comes back to a tracked tuple.
const NEW_FLOW_RUNS: u32 = 16_384;
const _: () = assert!(NEW_FLOW_RUNS < (SNAT_MAX - SNAT_MIN) as u32);

/// A 64-byte TCP frame (14 + 20 + 20 + 10 bytes of payload).
fn frame(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    let f = Pkt::tcp(src, dst)
        .flags(flags)
        .payload(&[0x61; 10])
        .macs(smac, dmac)
        .build();
    debug_assert_eq!(f.len(), 64);
    f
}

/// The IPv6 cases' VIP (also the server: the rewrite is a fixed point, as IPv4's) and client.
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

fn a6(a: Ipv6Addr) -> Addr6 {
    addr6_from_octets(a.octets())
}

/// The IPv6 twin of [`frame`]: 84 bytes (14 + 40 + 20 + 10 bytes of payload).
fn frame6(flags: u8, smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    Pkt6::tcp(
        SocketAddrV6::new(CLIENT6, CPORT, 0, 0),
        SocketAddrV6::new(VIP6, 80, 0, 0),
    )
    .flags(flags)
    .payload(&[0x61; 10])
    .macs(smac, dmac)
    .build()
}

/// The fixture's service and server at their IPv6 addresses (pool 0, server slot 0), the
/// full-NAT source the client itself (so a SYN becomes one from another port).
fn install6(dp: &mut Dataplane) -> Result<()> {
    let key = ServiceKey6 {
        addr: a6(VIP6),
        port: 80u16.to_be(),
        proto: PROTO_TCP,
        _pad: 0,
    };
    let value = ServiceValue {
        pool: 0,
        frontend: 0,
    };
    dp.maps.services6.insert(key, value, 0)?;
    let server = ServerInfo6 {
        addr: a6(VIP6),
        snat_addr: a6(CLIENT6),
        port: 80u16.to_be(),
        _pad: 0,
        pool: 0,
        maxconn: 0,
        _pad2: 0,
        nh: NextHop::default(),
    };
    dp.maps.servers6.set(0, server, 0)?;
    Ok(())
}

/// `fixture::established` for IPv6.
fn established6(src: Addr6, dst: Addr6, reply: bool) -> Flow6 {
    Flow6 {
        src,
        dst,
        sport: if reply { 80 } else { CPORT }.to_be(),
        dport: if reply { CPORT } else { 80 }.to_be(),
        state: State::Established as u8,
        flags: if reply { lb_common::FLOW_F_REPLY } else { 0 },
        last_seen: lb::dataplane::clock::now(),
        timeout: ticks_from_ms(3_600_000),
        ..Flow6::default()
    }
}

struct Case {
    name: &'static str,
    ns: Vec<f64>,
    action: u32,
}

impl Case {
    fn record(&mut self, o: testrun::Outcome) {
        self.ns.push(o.per_run.as_nanos() as f64);
        self.action = o.action;
    }
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let net = RunNet::new()?;
    net.neighbour(VIP, MAC_VIP)?;
    net.neighbour(CLIENT, MAC_CLIENT)?;
    net.neighbour6(VIP6, MAC_VIP)?;
    net.neighbour6(CLIENT6, MAC_CLIENT)?;
    let (reps, repeat) = if args.quick {
        (3, 1_000_000)
    } else {
        (5, 5_000_000)
    };
    let ns = net.ns.handle();
    let cases = ns.run(move || measure(&net, reps, repeat))??;

    let floor = Spread::of(&cases[0].ns).median;
    let ratio = |i: usize| Spread::of(&cases[i].ns).median / floor;
    out.target(
        "conntrack hit <= 2.5x the empty program",
        ratio(1),
        Target::AtMost(2.5),
    );
    out.target(
        "new flow <= 4x the empty program",
        ratio(2),
        Target::AtMost(4.0),
    );
    out.chart(
        "cost.svg",
        "Per-packet cost (BPF_PROG_TEST_RUN)",
        "ns/packet",
        cases
            .iter()
            .map(|c| (c.name.to_string(), Spread::of(&c.ns)))
            .collect(),
    );
    let targets = ["", "<= 2.5x", "<= 4x", "", "", "", "", "", ""];
    let rows = cases
        .iter()
        .zip(targets)
        .map(|(c, target)| {
            let s = Spread::of(&c.ns);
            vec![
                c.name.to_string(),
                s.fmt(1),
                format!("{:.2}x", s.median / floor),
                target.to_string(),
                action_name(c.action).to_string(),
            ]
        })
        .collect();
    out.table(
        "Per-packet cost (BPF_PROG_TEST_RUN)",
        &format!(
            "64-byte TCP frames (IPv6: 84 bytes, the same payload), repeat {repeat} per run, {reps} runs; ns/packet min / median / max; \
             ratio of medians to the empty XDP_PASS program measured in the same invocation."
        ),
        &["case", "ns/packet", "x floor", "target", "action"],
        rows,
    );
    Ok(())
}

fn measure(net: &RunNet, reps: usize, repeat: u32) -> Result<Vec<Case>> {
    let (dpc, dpb) = net.enter()?;
    let client = SocketAddrV4::new(CLIENT, CPORT);
    let vip = SocketAddrV4::new(VIP, 80);

    let mut dp = Dataplane::load(&LoadOptions {
        ipv6: true,
        ..LoadOptions::default()
    })?;
    install(&mut dp, 1, CLIENT)?;
    install6(&mut dp)?;
    let (c6, v6) = (a6(CLIENT6), a6(VIP6));
    let fwd6 = FlowKey6::new(c6, v6, CPORT.to_be(), 80u16.to_be(), PROTO_TCP);
    dp.maps
        .flows6
        .insert(fwd6, established6(c6, v6, false), 0)?;
    let reply6 = FlowKey6::new(v6, c6, 80u16.to_be(), CPORT.to_be(), PROTO_TCP);
    dp.maps
        .flows6
        .insert(reply6, established6(v6, c6, true), 0)?;
    let (c, v, cp, vp) = (be(CLIENT), be(VIP), CPORT.to_be(), 80u16.to_be());
    dp.maps.flows.insert(
        FlowKey::new(c, v, cp, vp, PROTO_TCP),
        established(c, v, cp, vp, false, 0),
        0,
    )?;
    dp.maps.flows.insert(
        FlowKey::new(v, c, vp, cp, PROTO_TCP),
        established(v, c, vp, cp, true, 0),
        0,
    )?;
    // New flows in a full conntrack get their own instance, small enough to forget every flow.
    let mut full = Dataplane::load(&LoadOptions {
        conntrack_entries: 4,
        halfopen_entries: 4,
        ..LoadOptions::default()
    })?;
    install(&mut full, 1, CLIENT)?;

    // MACs as the program writes them, so that even the first run is a fixed point.
    let hit = frame(client, vip, ACK, MAC_DPB, MAC_VIP);
    let uncached = frame(
        SocketAddrV4::new(CLIENT, CPORT2),
        vip,
        ACK,
        MAC_DPB,
        MAC_VIP,
    );
    let syn = frame(client, vip, SYN, MAC_DPB, MAC_VIP);
    let reply = frame(vip, client, ACK, MAC_DPC, MAC_CLIENT);
    let hit6 = frame6(ACK, MAC_DPB, MAC_VIP);
    let syn6 = frame6(SYN, MAC_DPB, MAC_VIP);
    let other = frame(
        client,
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 22),
        ACK,
        MAC_CLIENT,
        MAC_DPC,
    );

    let mut cases = vec![
        Case {
            name: "empty XDP_PASS (floor)",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "conntrack hit",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "new flow",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "new flow, conntrack full",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "reply (server -> client)",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "non-VIP traffic",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "IPv6 conntrack hit",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "IPv6 new flow",
            ns: vec![],
            action: 0,
        },
        Case {
            name: "conntrack hit, not in the CPU's flow cache (LB_FLOWS lookup)",
            ns: vec![],
            action: 0,
        },
    ];
    // Interleave the cases within each repetition so drift hits them all alike.
    for _ in 0..reps {
        let o = testrun::run(dp.pass_program()?, dpc, &hit, repeat)?;
        cases[0].ns.push(o.per_run.as_nanos() as f64);
        cases[0].action = o.action;

        cases[1].record(hits(&mut dp, dpc, &hit, repeat, "conntrack hit")?);

        cases[2].record(new_flows(dpc, &syn, false, "new flow")?);

        let before = full.maps.server_counters(ServerSlot(0))?;
        let o = testrun::run(full.lb_program()?, dpc, &syn, repeat)?;
        let after = full.maps.server_counters(ServerSlot(0))?;
        let new = after.new_flows - before.new_flows;
        ensure!(
            new * 100 >= u64::from(repeat) * 99,
            "new flow, conntrack full: only {new} of {repeat} runs were new flows"
        );
        cases[3].ns.push(o.per_run.as_nanos() as f64);
        cases[3].action = o.action;

        let before = dp.maps.server_counters(ServerSlot(0))?;
        let o = testrun::run(dp.lb_program()?, dpb, &reply, repeat)?;
        let after = dp.maps.server_counters(ServerSlot(0))?;
        ensure!(
            after.packets_out - before.packets_out == u64::from(repeat),
            "reply: not every run was a tracked reply"
        );
        cases[4].ns.push(o.per_run.as_nanos() as f64);
        cases[4].action = o.action;

        let o = testrun::run(dp.lb_program()?, dpc, &other, repeat)?;
        ensure!(o.frame == other, "non-VIP traffic was modified");
        cases[5].ns.push(o.per_run.as_nanos() as f64);
        cases[5].action = o.action;

        cases[6].record(hits(&mut dp, dpc, &hit6, repeat, "IPv6 conntrack hit")?);

        cases[7].record(new_flows(dpc, &syn6, true, "IPv6 new flow")?);

        // A flow whose timeout a copy could outlive is never copied (`flow_cache::may_cache`):
        // each of its packets goes through lb_xdp's miss, the tail call and LB_FLOWS, as a
        // flow's first packet on a CPU, or every packet once the cache is outgrown, does.
        // (Written afresh each time: 150 ms idle between repetitions would expire it.)
        let (cp2, short) = (CPORT2.to_be(), ticks_from_ms(150));
        dp.maps.flows.insert(
            FlowKey::new(c, v, cp2, vp, PROTO_TCP),
            FlowOf {
                timeout: short,
                ..established(c, v, cp2, vp, false, 0)
            },
            0,
        )?;
        dp.maps.flows.insert(
            FlowKey::new(v, c, vp, cp2, PROTO_TCP),
            FlowOf {
                timeout: short,
                ..established(v, c, vp, cp2, true, 0)
            },
            0,
        )?;
        cases[8].record(hits(
            &mut dp,
            dpc,
            &uncached,
            repeat,
            "conntrack hit, no copy",
        )?);
    }
    for (c, want) in cases.iter().zip([
        XDP_PASS,
        XDP_REDIRECT,
        XDP_REDIRECT,
        XDP_REDIRECT,
        XDP_REDIRECT,
        XDP_PASS,
        XDP_REDIRECT,
        XDP_REDIRECT,
        XDP_REDIRECT,
    ]) {
        ensure!(
            c.action == want,
            "{}: {} instead of {}",
            c.name,
            action_name(c.action),
            action_name(want)
        );
    }
    Ok(cases)
}

/// `repeat` runs of `frame`, a packet of an established flow that the rewrite leaves as it
/// was (a fixed point), each checked to be a hit.
fn hits(
    dp: &mut Dataplane,
    dpc: u32,
    frame: &[u8],
    repeat: u32,
    name: &str,
) -> Result<testrun::Outcome> {
    let before = dp.maps.server_counters(ServerSlot(0))?;
    let o = testrun::run(dp.lb_program()?, dpc, frame, repeat)?;
    let after = dp.maps.server_counters(ServerSlot(0))?;
    ensure!(
        o.frame == frame,
        "{name}: the frame changed, not a fixed point"
    );
    ensure!(
        after.packets_in - before.packets_in == u64::from(repeat)
            && after.new_flows == before.new_flows,
        "{name}: not every run was a hit ({before:?} -> {after:?})"
    );
    Ok(o)
}

/// [`NEW_FLOW_RUNS`] runs of `syn` into a fresh data plane with room for them all (`ipv6`:
/// with the IPv6 services and servers), each checked to be a new flow.
fn new_flows(dpc: u32, syn: &[u8], ipv6: bool, name: &str) -> Result<testrun::Outcome> {
    let mut roomy = Dataplane::load(&LoadOptions {
        conntrack_entries: 2 * NEW_FLOW_RUNS,
        halfopen_entries: 2 * NEW_FLOW_RUNS,
        ipv6,
        ..LoadOptions::default()
    })?;
    install(&mut roomy, 1, CLIENT)?;
    if ipv6 {
        install6(&mut roomy)?;
    }
    let o = testrun::run(roomy.lb_program()?, dpc, syn, NEW_FLOW_RUNS)?;
    let new = roomy.maps.server_counters(ServerSlot(0))?.new_flows;
    ensure!(
        new == u64::from(NEW_FLOW_RUNS),
        "{name}: only {new} of {NEW_FLOW_RUNS} runs were new flows"
    );
    Ok(o)
}
