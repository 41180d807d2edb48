//! Scale: per-packet cost of conntrack hits as the number of backends and of tracked flows
//! grows, new flows into a table with room and into a full one, and memory.
//!
//! Hits on random existing flows, although BPF_PROG_TEST_RUN repeats on one buffer: the
//! conntrack is prefilled so that the flows form a *chain* in a random order. The forward
//! entry of flow k rewrites its packet into the packet of flow k+1 (source address and port of
//! the next flow, destination the server, which is the VIP itself as in `cost`), so run n of
//! a test hits flow n of the chain: every run is a hit on a different flow, in random memory
//! order, and `repeat >= flows` visits every flow. Each run is checked afterwards: the frame
//! the kernel hands back must be exactly the packet of the flow `repeat` steps down the chain
//! (built independently, checksums included), the servers' counters must have grown by
//! `repeat` hits and no new flow, and every server must have had packets.
//!
//! Each flow also has its reply entry, so the table holds two entries per flow as in real use.
//! Tables are sized as the daemon would be configured: the default (262144 flows) unless
//! more flows are wanted.
//!
//! Floors: the same chains and new flows run through the benchmark-only `bench_floor_hit`
//! (lb's parse, one `LB_FLOWS` lookup, lb's rewrite) and `bench_floor_new` (lb's parse, the
//! flow's two `LB_HALFOPEN` inserts) on the same tables: what any design keeping its flows in
//! the kernel's LRU hash tables pays at least, so the rows say how much of lb's cost is lb's.
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result, ensure};
use aya::maps::{IterableMap, MapInfo};
use lb::dataplane::{
    Dataplane, LoadOptions,
    ids::ServerSlot,
    testrun::{self, XDP_PASS, XDP_REDIRECT},
};
use lb_common::{
    DEFAULT_CONNTRACK_ENTRIES, DEFAULT_HALFOPEN_ENTRIES, Flow, FlowKey, PROTO_TCP,
    balance::snat_port,
    bench::{PROG_BENCH_FLOOR_HIT, PROG_BENCH_FLOOR_NEW},
    names,
};
use lb_testbed::{
    daemon::Daemon,
    packet::{ACK, Pkt, SYN},
    runnet::{MAC_DPB, RunNet},
    topo::{Routing, Topology},
};

use crate::{
    Args,
    balancer::lb_config,
    fixture::{SNAT_MAX, SNAT_MIN, VIP, be, established, install},
    report::{Report, Spread, Target},
    sys::{memlock, status_kb},
};

const MAC_VIP: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];

/// The `i`-th client endpoint: 60000 ports per address from 10.0.0.2 up.
fn endpoint(i: u32) -> SocketAddrV4 {
    let addr = u32::from(Ipv4Addr::new(10, 0, 0, 2)) + i / 60000;
    SocketAddrV4::new(Ipv4Addr::from(addr), 1024 + (i % 60000) as u16)
}

fn frame(src: SocketAddrV4, flags: u8) -> Vec<u8> {
    // MACs as the program writes them (see `cost`).
    Pkt::tcp(src, SocketAddrV4::new(VIP, 80))
        .flags(flags)
        .payload(&[0x61; 10])
        .macs(MAC_DPB, MAC_VIP)
        .build()
}

/// splitmix64: a fixed-seed random order, reproducible from run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn permutation(n: u32, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut rng = Rng(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn conntrack_for(flows: u32) -> u32 {
    DEFAULT_CONNTRACK_ENTRIES.max(flows + flows / 16 + 1024)
}

/// A data plane whose conntrack holds `flows` flows chained in random order.
struct Chain {
    name: String,
    backends: u32,
    flows: u32,
    dp: Dataplane,
    /// Flow ids in chain order.
    order: Vec<u32>,
    /// Hits on flows whose cached next hop is fresh (seen within `NEXT_HOP_TTL`).
    ns: Vec<f64>,
    /// Hits on flows idle longer than `NEXT_HOP_TTL`: each flow's next hop is stale (it takes
    /// its server's, which the first of them looks up again).
    stale_ns: Vec<f64>,
    /// The same chain through `bench_floor_hit`.
    floor_ns: Vec<f64>,
}

impl Chain {
    fn new(backends: u32, flows: u32) -> Result<Chain> {
        let mut dp = Dataplane::load(&LoadOptions {
            conntrack_entries: conntrack_for(flows),
            ..LoadOptions::default()
        })?;
        install(&mut dp, backends, Ipv4Addr::new(10, 1, 0, 1))?;
        let order = permutation(flows, 0x1b_5eed ^ u64::from(flows));
        for (k, &id) in order.iter().enumerate() {
            let me = endpoint(id);
            let next = endpoint(order[(k + 1) % order.len()]);
            let (c, p) = (be(*me.ip()), me.port().to_be());
            let server = (id % backends) as u16;
            let (n, np) = (be(*next.ip()), next.port().to_be());
            let (v, vp) = (be(VIP), 80u16.to_be());
            dp.maps.flows.insert(
                FlowKey::new(c, v, p, vp, PROTO_TCP),
                established(n, v, np, vp, false, server),
                0,
            )?;
            dp.maps.flows.insert(
                FlowKey::new(v, c, vp, p, PROTO_TCP),
                established(v, c, vp, p, true, server),
                0,
            )?;
        }
        Ok(Chain {
            name: format!("{backends} backends, {} flows", count(flows)),
            backends,
            flows,
            dp,
            order,
            ns: Vec::new(),
            stale_ns: Vec::new(),
            floor_ns: Vec::new(),
        })
    }

    fn frame_at(&self, k: u64) -> Vec<u8> {
        let id = self.order[(k % u64::from(self.flows)) as usize];
        frame(endpoint(id), ACK)
    }

    /// (hits, new flows) summed over servers, and the fewest hits any server got.
    fn counters(&self) -> Result<(u64, u64, Vec<u64>)> {
        let (mut hits, mut new) = (0, 0);
        let mut per = Vec::new();
        for id in 0..self.backends {
            let c = self.dp.maps.server_counters(ServerSlot(id))?;
            hits += c.packets_in;
            new += c.new_flows;
            per.push(c.packets_in);
        }
        Ok((hits, new, per))
    }

    /// One run of `repeat` hits down the chain, checked; returns ns/packet.
    fn run(&mut self, dpc: u32, repeat: u32) -> Result<f64> {
        let (h0, n0, p0) = self.counters()?;
        let start = self.frame_at(0);
        let o = testrun::run(self.dp.lb_program()?, dpc, &start, repeat)?;
        let (h1, n1, p1) = self.counters()?;
        let name = &self.name;
        ensure!(o.action == XDP_REDIRECT, "{name}: action {}", o.action);
        ensure!(
            o.frame == self.frame_at(u64::from(repeat)),
            "{name}: after {repeat} runs the frame is not the chain's next packet"
        );
        ensure!(
            h1 - h0 == u64::from(repeat) && n1 == n0,
            "{name}: {} hits and {} new flows in {repeat} runs",
            h1 - h0,
            n1 - n0
        );
        if u64::from(repeat) >= u64::from(self.flows) {
            // Flow i belongs to server i % backends: the first min(flows, backends) have flows.
            let owners = self.flows.min(self.backends) as usize;
            let idle = p0
                .iter()
                .zip(&p1)
                .take(owners)
                .filter(|(a, b)| a == b)
                .count();
            ensure!(idle == 0, "{name}: {idle} servers got no packet");
        }
        Ok(o.per_run.as_nanos() as f64)
    }

    /// One run of `repeat` steps down the chain through the hit's floor, checked from the
    /// frame (the floor counts nothing); returns ns/packet.
    fn run_floor(&mut self, dpc: u32, repeat: u32) -> Result<f64> {
        let start = self.frame_at(0);
        let o = testrun::run(
            self.dp.bench_program(PROG_BENCH_FLOOR_HIT)?,
            dpc,
            &start,
            repeat,
        )?;
        let name = &self.name;
        ensure!(o.action == XDP_PASS, "{name}, floor: action {}", o.action);
        ensure!(
            o.frame == self.frame_at(u64::from(repeat)),
            "{name}, floor: after {repeat} runs the frame is not the chain's next packet"
        );
        Ok(o.per_run.as_nanos() as f64)
    }
}

/// Longer than `NEXT_HOP_TTL` (1 s): every cached next hop is stale after it.
const STALE_WAIT: std::time::Duration = std::time::Duration::from_millis(1100);

fn count(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// New flows, each run of the test a new one: the full-NAT rewrite turns the SYN into a SYN
/// from the server's next source port (ports go in turn, see `lb_common::flow::snat_port`), so
/// a run of up to the port range's size never repeats a tuple; every run starts from a fresh
/// client address, so no tuple is ever seen twice.
struct NewFlows {
    name: &'static str,
    dp: Dataplane,
    next_client: u32,
    ns: Vec<f64>,
    /// The same through `bench_floor_new`.
    floor_ns: Vec<f64>,
}

impl NewFlows {
    /// `full`: fill the conntrack (default size) with other flows first, so that every new
    /// flow evicts (LRU) as it would on a busy balancer.
    fn new(name: &'static str, full: bool) -> Result<NewFlows> {
        let mut dp = Dataplane::load(&LoadOptions::default())?;
        install(&mut dp, 1, Ipv4Addr::new(10, 0, 1, 1))?;
        if full {
            // New flows start half-open: that is the table every insert must evict from.
            let entries = 2 * DEFAULT_HALFOPEN_ENTRIES;
            for i in 0..entries {
                let e = endpoint(i);
                dp.maps.halfopen.insert(
                    FlowKey::new(
                        be(*e.ip()),
                        be(VIP),
                        e.port().to_be(),
                        81u16.to_be(),
                        PROTO_TCP,
                    ),
                    Flow::default(),
                    0,
                )?;
            }
        }
        Ok(NewFlows {
            name,
            dp,
            next_client: u32::from(Ipv4Addr::new(10, 0, 100, 1)),
            ns: Vec::new(),
            floor_ns: Vec::new(),
        })
    }

    fn run(&mut self, dpc: u32, repeat: u32) -> Result<f64> {
        let span = u32::from(SNAT_MAX - SNAT_MIN) + 1;
        ensure!(
            repeat <= span,
            "{}: {repeat} runs would reuse source ports",
            self.name
        );
        let client = Ipv4Addr::from(self.next_client);
        self.next_client += 1;
        // The rewrite's source is the server's full-NAT address: make it this client.
        let mut s = self.dp.maps.servers.get(&0, 0)?;
        s.snat_addr = be(client);
        self.dp.maps.write_server(ServerSlot(0), s)?;
        let cursor = self.dp.maps.snat_cursor.get(&0, 0)?;
        let before = self.new_flows()?;
        let syn = frame(SocketAddrV4::new(client, 40_000), SYN);
        let o = testrun::run(self.dp.lb_program()?, dpc, &syn, repeat)?;
        let new = self.new_flows()? - before;
        ensure!(
            o.action == XDP_REDIRECT && new == u64::from(repeat),
            "{}: {new} new flows in {repeat} runs (action {})",
            self.name,
            o.action
        );
        // The last run's packet came from the server's last port handed out (the first one
        // came from port 40000, outside the full-NAT range, so the walk never meets it).
        let p = snat_port(cursor + u64::from(repeat) - 1, SNAT_MIN, SNAT_MAX);
        ensure!(
            o.frame == frame(SocketAddrV4::new(client, p), SYN),
            "{}: the frame is not the walk's next SYN",
            self.name
        );
        Ok(o.per_run.as_nanos() as f64)
    }

    /// `repeat` new flows through the floor, each from the next source port of a fresh
    /// client (the floor counts nothing: checked from the frame's last port and the table,
    /// which must hold the last flow's two entries).
    fn run_floor(&mut self, dpc: u32, repeat: u32) -> Result<f64> {
        const FIRST: u16 = 1024;
        ensure!(
            u32::from(FIRST) + repeat <= u32::from(u16::MAX),
            "{}, floor: {repeat} runs would reuse source ports",
            self.name
        );
        let client = Ipv4Addr::from(self.next_client);
        self.next_client += 1;
        let syn = frame(SocketAddrV4::new(client, FIRST), SYN);
        let o = testrun::run(
            self.dp.bench_program(PROG_BENCH_FLOOR_NEW)?,
            dpc,
            &syn,
            repeat,
        )?;
        let name = self.name;
        ensure!(o.action == XDP_PASS, "{name}, floor: action {}", o.action);
        let last = FIRST + (repeat - 1) as u16;
        ensure!(
            o.frame.get(34..36) == Some(&(last + 1).to_be_bytes()[..]),
            "{name}, floor: the frame's source port is not the {repeat}th after {FIRST}"
        );
        let (c, v) = (be(client), be(VIP));
        let (p, vp) = (last.to_be(), 80u16.to_be());
        for key in [
            FlowKey::new(c, v, p, vp, PROTO_TCP),
            FlowKey::new(v, c, vp, p, PROTO_TCP),
        ] {
            ensure!(
                self.dp.maps.halfopen.get(&key, 0).is_ok(),
                "{name}, floor: the last flow is not in the half-open table"
            );
        }
        Ok(o.per_run.as_nanos() as f64)
    }

    fn new_flows(&self) -> Result<u64> {
        Ok(self.dp.maps.server_counters(ServerSlot(0))?.new_flows
            + self.dp.maps.server_counters(ServerSlot(1))?.new_flows)
    }
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let lb_bin = args.lb()?;
    let net = RunNet::new()?;
    net.neighbour(VIP, MAC_VIP)?;
    let quick = args.quick;
    let ns = net.ns.handle();
    let m = ns.run(move || measure(&net, quick))??;

    let base = Spread::of(&m.chains[0].ns).median;
    let floor = Spread::of(&m.floor).median;
    let mut rows = vec![vec![
        "empty XDP_PASS (floor)".to_string(),
        Spread::of(&m.floor).fmt(1),
        format!("{:.2}x", floor / base),
        "1.00x".to_string(),
        "-".to_string(),
    ]];
    let mut bars = vec![("empty XDP_PASS (floor)".to_string(), Spread::of(&m.floor))];
    // One row and its chart bar (labelled `bar`: the chart drops the table's "conntrack").
    let mut add = |bar: String, name: String, ns: &[f64], map_mib: f64| {
        let s = Spread::of(ns);
        bars.push((bar, s));
        rows.push(vec![
            name,
            s.fmt(1),
            format!("{:.2}x", s.median / base),
            format!("{:.2}x", s.median / floor),
            format!("{map_mib:.1} MiB"),
        ]);
    };
    for c in &m.chains {
        let hit = |what: &str| (format!("hit, {what}"), format!("conntrack hit, {what}"));
        let (bar, name) = hit(&c.name);
        add(bar, name, &c.ns, c.map_mib);
        if !c.floor_ns.is_empty() {
            let name = format!("floor (parse, LB_FLOWS lookup, rewrite), {}", c.name);
            add(name.clone(), name, &c.floor_ns, c.map_mib);
        }
        if !c.stale_ns.is_empty() {
            let (bar, name) = hit(&format!("{}, each idle > 1 s (next hop stale)", c.name));
            add(bar, name, &c.stale_ns, c.map_mib);
        }
    }
    for n in &m.new {
        add(n.name.to_string(), n.name.to_string(), &n.ns, n.map_mib);
        let name = format!("floor (parse, two LB_HALFOPEN inserts), {}", n.name);
        add(name.clone(), name, &n.floor_ns, n.map_mib);
    }
    out.table(
        "Scale: backends and flows in conntrack (BPF_PROG_TEST_RUN)",
        &format!(
            "Hits on random existing flows (a prefilled chain, see lb-bench/src/scale.rs), each \
             run checked from the frame and the counters; {} runs per row of max(flows, {}) \
             packets, interleaved, each after an unmeasured pass over the same flows (their next hops \
             fresh, as for flows with traffic; the 'idle > 1 s' row measures the same flows \
             after 1.1 s without packets, when each flow's next hop is stale: it takes its \
             server's, which one FIB lookup per server refreshes); ns/packet \
             min / median / max. Ratios against the 2-backend, \
             1k-flow row and the floor. Map: LB_FLOWS memory (fdinfo memlock) for the table \
             size used ({DEFAULT_CONNTRACK_ENTRIES} flows, or flows + 1/16 + 1024 above that; \
             two entries per flow). New flows: each run a new SYN (full-NAT, counted), into the \
             default-size table with room, or filled to capacity so every insert evicts. Floor \
             rows: the same packets and tables through a benchmark-only program doing only what \
             any balancer keeping flows in kernel LRU hash tables must (parse, lookup, rewrite; \
             or parse and a flow's two inserts), checked from the frame and the table.",
            m.reps, m.repeat
        ),
        &["case", "ns/packet", "x 2 backends, 1k", "x floor", "map"],
        rows,
    );
    let last = m
        .chains
        .last()
        .map(|c| Spread::of(&c.ns).median)
        .unwrap_or(f64::NAN);
    out.target(
        "1024 backends and 1M flows within 1.25x of 2 backends, 1k flows",
        last / base,
        Target::AtMost(1.25),
    );
    out.chart("scale.svg", "Scale: ns/packet", "ns/packet", bars);

    // The daemon with a 1M-flow conntrack: its own memory, and the map's.
    let topo = Topology::seed(Routing::Isolated)?;
    let instance = format!("bsc{}", topo.tag);
    let mut d = Daemon::start(
        &lb_bin,
        &topo.lb,
        &instance,
        &lb_config(&instance, 1_048_576, "full-nat"),
        "toml",
    )?;
    d.wait_ready()?;
    let pid = d.pid().context("lb is not running")?;
    let (rss, hwm) = (status_kb(pid, "VmRSS")?, status_kb(pid, "VmHWM")?);
    let info = MapInfo::from_pin(lb::dataplane::maps::pin_path(
        &d.pin_dir(),
        names::LB_FLOWS,
    )?)?;
    let fd = info.fd()?;
    let map = memlock(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(
        &fd,
    )))?;
    d.stop()?;
    out.table(
        "Memory of a running lb (conntrack_entries = 1048576)",
        "`lb run` in the LB namespace, idle, two servers. Conntrack is preallocated: the map's \
         memory does not grow with traffic. RSS does not include BPF maps (kernel memory).",
        &["what", "value"],
        vec![
            vec![
                "LB_FLOWS (2 x 1048576 entries), fdinfo memlock".into(),
                format!("{:.1} MiB", map as f64 / (1024.0 * 1024.0)),
            ],
            vec![
                "daemon VmRSS / VmHWM".into(),
                format!(
                    "{:.1} / {:.1} MiB",
                    rss as f64 / 1024.0,
                    hwm as f64 / 1024.0
                ),
            ],
            vec![
                "conntrack map entries, key + value bytes".into(),
                format!(
                    "{} x ({} + {})",
                    info.max_entries(),
                    info.key_size(),
                    info.value_size()
                ),
            ],
        ],
    );
    Ok(())
}

struct Measured {
    floor: Vec<f64>,
    chains: Vec<ChainResult>,
    new: Vec<NewResult>,
    reps: usize,
    repeat: u32,
}

struct ChainResult {
    name: String,
    ns: Vec<f64>,
    stale_ns: Vec<f64>,
    floor_ns: Vec<f64>,
    map_mib: f64,
}

struct NewResult {
    name: &'static str,
    ns: Vec<f64>,
    floor_ns: Vec<f64>,
    map_mib: f64,
}

fn map_mib(dp: &Dataplane) -> Result<f64> {
    let fd = dp.maps.flows.map().fd();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(fd));
    Ok(memlock(raw)? as f64 / (1024.0 * 1024.0))
}

fn measure(net: &RunNet, quick: bool) -> Result<Measured> {
    let (dpc, _) = net.enter()?;
    let (reps, repeat, new_repeat) = if quick {
        (3, 200_000u32, 5_000u32)
    } else {
        (5, 1_000_000u32, 20_000u32)
    };
    let combos: [(u32, u32); 6] = [
        (2, 1000),
        (64, 1000),
        (1024, 1000),
        (2, 100_000),
        (2, 1_000_000),
        (1024, 1_000_000),
    ];
    let mut chains = Vec::new();
    for (b, f) in combos {
        let t = std::time::Instant::now();
        let mut c = Chain::new(b, f)?;
        // Warm-up (not measured): next hops cached, every flow visited once.
        c.run(dpc, f.max(repeat.min(f)))?;
        eprintln!(
            "[lb-bench] scale: {} ready in {:.1} s",
            c.name,
            t.elapsed().as_secs_f64()
        );
        chains.push(c);
    }
    let mut new = [
        NewFlows::new("new flow, conntrack with room", false)?,
        NewFlows::new("new flow, conntrack full (LRU evicts)", true)?,
    ];
    let mut floor = Vec::new();
    let hit = chains[0].frame_at(0);
    for _ in 0..reps {
        let o = testrun::run(chains[0].dp.pass_program()?, dpc, &hit, repeat)?;
        floor.push(o.per_run.as_nanos() as f64);
        for c in chains.iter_mut() {
            // Every flow visited once just before, as a flow with traffic is: its next hop is
            // fresh. Without this, the big chains' flows wait for the other rows longer than
            // the next hop's TTL and each hit measures a FIB lookup too (the stale row).
            c.run(dpc, c.flows)?;
            let r = repeat.max(c.flows);
            let ns = c.run(dpc, r)?;
            c.ns.push(ns);
            if c.backends == 2 && (c.flows == 1000 || c.flows == 1_000_000) {
                // The floor on the same table, after the same unmeasured pass.
                c.run_floor(dpc, c.flows)?;
                let ns = c.run_floor(dpc, r)?;
                c.floor_ns.push(ns);
            }
            if c.flows == 1_000_000 {
                // The same flows once idle past the TTL: what a flow's first packet after a
                // quiet second costs (its server's next hop, looked up again by the first
                // of its flows: with 2 backends nearly never, with 1024 one hit in ~1000).
                std::thread::sleep(STALE_WAIT);
                let ns = c.run(dpc, c.flows)?;
                c.stale_ns.push(ns);
            }
        }
        for n in new.iter_mut() {
            let ns = n.run(dpc, new_repeat)?;
            n.ns.push(ns);
            let ns = n.run_floor(dpc, new_repeat)?;
            n.floor_ns.push(ns);
        }
    }
    let chains = chains
        .iter()
        .map(|c| {
            Ok(ChainResult {
                name: c.name.clone(),
                ns: c.ns.clone(),
                stale_ns: c.stale_ns.clone(),
                floor_ns: c.floor_ns.clone(),
                map_mib: map_mib(&c.dp)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let new = new
        .iter()
        .map(|n| {
            Ok(NewResult {
                name: n.name,
                ns: n.ns.clone(),
                floor_ns: n.floor_ns.clone(),
                map_mib: map_mib(&n.dp)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Measured {
        floor,
        chains,
        new,
        reps,
        repeat,
    })
}
