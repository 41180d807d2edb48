//! Packet rate across veth, with a generator written here: `bench_gen` run by
//! `BPF_PROG_TEST_RUN` in live-frames mode inside the client namespace sends TCP frames of
//! many flows (the source port varies) out of the client veth, i.e. into the LB's: 64-byte
//! IPv4 frames, or 84-byte IPv6 frames carrying the same segment.
//!
//! Frames are counted where they arrive by `bench_sink` (count per CPU, then `XDP_DROP`) on
//! the receiving veth: on the backends' veths for the forwarding cases, on the LB's veth for
//! `XDP_DROP`, on the client's veth for the `XDP_TX` bounce. An XDP counter rather than
//! interface counters because it counts exactly the frames that reached the receiver's
//! driver hook, costs the same few nanoseconds in every case, and an XDP program on the peer
//! is what veth needs anyway to accept `XDP_TX`/redirected frames; it also lets us check that
//! lb's frames arrive rewritten (counted by destination address).
//!
//! Steps: [`prepare`] the topology and the frames, [`measure`] each case (its [`setup`],
//! the frames, its [`teardown`]) in every repetition, interleaved, then [`report`].
//!
//! Cases:
//! - `XDP_DROP` on the LB's veth: the receive limit;
//! - `XDP_TX` bounce on the LB's veth: the practical forwarding limit of one veth hop;
//! - kernel IP forwarding in the LB namespace (no XDP there; GRO on its veth so that it takes
//!   frames from an XDP sender), frames addressed to the backends directly;
//! - lb (`lb run`, full-NAT round robin over the two backends), frames addressed to the VIP;
//! - lb one-armed: the same, with the servers reached through the client's link (routes and
//!   neighbours pointing there, the client's sink standing in for them), as on a VPS with one
//!   NIC: lb answers with `XDP_TX` on the veth it received on, exactly the bounce's path, so
//!   the two differ only by lb's packet work.
//!
//! The drop, the bounce and both lb cases run with IPv6 frames too (lb with an IPv6 VIP and
//! IPv6 servers), each IPv6 row's ratio taken against the IPv6 bounce: a frame 20 bytes
//! longer is a different floor.
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use lb_common::{
    FlowKeyOf, FlowOf, PROTO_TCP, ServerInfoOf,
    addr::addr6_from_octets,
    bench::{
        GEN_FRAME_LEN, GEN_FRAME_MAX, GEN_TEMPLATES, GEN6_FRAME_LEN, GenConfig, PROG_BENCH_SINK,
        PROG_BENCH_TX, SINK_SLOTS,
    },
};
use lb_testbed::{
    daemon::Daemon,
    packet::{ACK, Pkt, Pkt6},
    topo::{Backend, CLIENT, CLIENT6, Routing, Topology, VIP, VIP6, backend6},
};

use crate::{
    Args,
    balancer::{lb_config, lb_config6},
    fixture::{be, established},
    progs::{BenchProgs, Link},
    report::{Report, Spread, Target},
    sys::mac_of,
};

/// Source ports per destination: many flows, few enough that lb's conntrack holds them all
/// after the first pass (steady state: conntrack hits).
const FLOWS: u32 = 4096;
const SPORT_BASE: u16 = 20000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Drop,
    Tx,
    Kernel,
    Lb,
    LbOneArm,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Every row, each IPv6 one right after its IPv4 one (kernel forwarding: IPv4 only).
const CASES: [(Case, Family, &str); 9] = [
    (
        Case::Drop,
        Family::V4,
        "XDP_DROP on the LB veth (receive limit)",
    ),
    (Case::Drop, Family::V6, "XDP_DROP, IPv6"),
    (
        Case::Tx,
        Family::V4,
        "XDP_TX bounce on the LB veth (forwarding limit)",
    ),
    (Case::Tx, Family::V6, "XDP_TX bounce, IPv6"),
    (
        Case::Kernel,
        Family::V4,
        "kernel IP forwarding (no XDP on the LB)",
    ),
    (
        Case::Lb,
        Family::V4,
        "lb forwarding to the backends (full-NAT)",
    ),
    (Case::Lb, Family::V6, "lb full-NAT, IPv6"),
    (
        Case::LbOneArm,
        Family::V4,
        "lb one-armed: backends behind the client link (full-NAT, XDP_TX)",
    ),
    (Case::LbOneArm, Family::V6, "lb one-armed, IPv6"),
];

/// The row of `case` for `family`.
fn row(case: Case, family: Family) -> usize {
    CASES
        .iter()
        .position(|&(c, f, _)| c == case && f == family)
        .unwrap_or_else(|| panic!("no such row in CASES"))
}

struct Sample {
    mpps: f64,
    offered: f64,
    delivered: f64,
    /// lb only: the share of the frames its less loaded backend got (round robin: 50%).
    lb_share: Option<f64>,
}

/// The topology with sinks on the receivers, and what the generator sends.
struct Bed {
    topo: Topology,
    progs: BenchProgs,
    lb_bin: PathBuf,
    client_mac: [u8; 6],
    v4: Frames,
    v6: Frames,
    /// IPv4 frames of `FLOWS` flows to both backends (kernel forwarding).
    to_backends: GenConfig,
}

/// One family's frames and where they are counted.
struct Frames {
    /// Frames of `FLOWS` flows to the VIP.
    to_vip: GenConfig,
    /// Sink slots the frames are counted in: by destination, the VIP (the drop, the bounce)
    /// or each backend.
    vip_slot: usize,
    backend_slots: Vec<usize>,
}

impl Bed {
    fn frames(&self, family: Family) -> &Frames {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let (reps, frames_xdp, frames_kernel) = if args.quick {
        (3, 1_000_000, 500_000)
    } else {
        (5, 10_000_000, 3_000_000)
    };
    let mut bed = prepare(args)?;
    let mut samples: Vec<Vec<Sample>> = (0..CASES.len()).map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (ci, (case, family, name)) in CASES.iter().enumerate() {
            let frames = if *case == Case::Kernel {
                frames_kernel
            } else {
                frames_xdp
            };
            let s = measure(&mut bed, *case, *family, frames).with_context(|| name.to_string())?;
            samples[ci].push(s);
        }
    }
    report(&samples, reps, frames_xdp, frames_kernel, out);
    Ok(())
}

/// The topology, a sink on every receiving veth, the backends' MACs known to the LB, and the
/// generator's frames.
fn prepare(args: &Args) -> Result<Bed> {
    let lb_bin = args.lb()?;
    let topo = Topology::seed(Routing::Isolated)?;
    topo.add_ipv6()?;
    topo.lb.sysctl("net.ipv4.ip_forward", "1")?;
    let mut progs = BenchProgs::load()?;
    for b in &topo.backends {
        progs.attach(PROG_BENCH_SINK, &b.ns, &b.ifname)?;
        // The LB knows the backends' MACs before any measurement (no ARP or neighbour
        // discovery in the timed part).
        let mac = mac_of(&b.ns, &b.ifname)?;
        let mac = mac.map(|x| format!("{x:02x}")).join(":");
        for addr in [b.addr.to_string(), addr6(b).to_string()] {
            topo.lb.ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &mac,
                "dev",
                &b.lb_ifname,
                "nud",
                "permanent",
            ])?;
        }
    }
    progs.attach(PROG_BENCH_SINK, &topo.client, &topo.client_if)?;

    let client_mac = mac_of(&topo.client, &topo.client_if)?;
    let lb_mac = mac_of(&topo.lb, &topo.lb_client_if)?;
    let template = |f: Vec<u8>, len: usize| -> Result<[u8; GEN_FRAME_MAX]> {
        ensure!(f.len() == len, "a {}-byte template, not {len}", f.len());
        let mut a = [0u8; GEN_FRAME_MAX];
        a[..len].copy_from_slice(&f);
        Ok(a)
    };
    let frame = |dst: Ipv4Addr| {
        let f = Pkt::tcp(
            SocketAddrV4::new(CLIENT, SPORT_BASE),
            SocketAddrV4::new(dst, 80),
        )
        .flags(ACK)
        .payload(&[0x61; 10])
        .macs(client_mac, lb_mac)
        .build();
        template(f, GEN_FRAME_LEN)
    };
    let frame6 = |dst: Ipv6Addr| {
        let f = Pkt6::tcp(
            SocketAddrV6::new(CLIENT6, SPORT_BASE, 0, 0),
            SocketAddrV6::new(dst, 80, 0, 0),
        )
        .flags(ACK)
        .payload(&[0x61; 10])
        .macs(client_mac, lb_mac)
        .build();
        template(f, GEN6_FRAME_LEN)
    };
    let mut to_vip = GenConfig {
        templates: 1,
        flows: FLOWS,
        sport_base: SPORT_BASE,
        ..GenConfig::default()
    };
    to_vip.frames = [frame(VIP)?; GEN_TEMPLATES];
    let mut to_backends = to_vip;
    to_backends.templates = 2;
    to_backends.frames[0] = frame(topo.backends[0].addr)?;
    to_backends.frames[1] = frame(topo.backends[1].addr)?;
    let to_vip6 = GenConfig {
        frames: [frame6(VIP6)?; GEN_TEMPLATES],
        frame_len: GEN6_FRAME_LEN as u32,
        ..to_vip
    };

    let slot = |last: u8| (u32::from(last) % SINK_SLOTS) as usize;
    let v4 = Frames {
        to_vip,
        vip_slot: slot(VIP.octets()[3]),
        backend_slots: topo
            .backends
            .iter()
            .map(|b| slot(b.addr.octets()[3]))
            .collect(),
    };
    let v6 = Frames {
        to_vip: to_vip6,
        vip_slot: slot(VIP6.octets()[15]),
        backend_slots: topo
            .backends
            .iter()
            .map(|b| slot(addr6(b).octets()[15]))
            .collect(),
    };
    Ok(Bed {
        topo,
        progs,
        lb_bin,
        client_mac,
        v4,
        v6,
        to_backends,
    })
}

/// A backend's IPv6 address (`Topology::add_ipv6`): server `10.200.n.n` is `fd00:200:n::n`.
fn addr6(b: &Backend) -> Ipv6Addr {
    backend6(b.addr.octets()[3]).0
}

/// What a case put in place, undone by [`teardown`].
struct Setup {
    daemon: Option<Daemon>,
    link: Option<Link>,
    cfg: GenConfig,
    /// Where the frames must arrive.
    slots: Vec<usize>,
}

fn setup(bed: &mut Bed, case: Case, family: Family) -> Result<Setup> {
    let topo = &bed.topo;
    let frames = bed.frames(family);
    let mut s = Setup {
        daemon: None,
        link: None,
        cfg: frames.to_vip,
        slots: vec![frames.vip_slot],
    };
    match case {
        Case::Drop => {
            s.link = Some(
                bed.progs
                    .attach(PROG_BENCH_SINK, &topo.lb, &topo.lb_client_if)?,
            );
        }
        Case::Tx => {
            s.link = Some(
                bed.progs
                    .attach(PROG_BENCH_TX, &topo.lb, &topo.lb_client_if)?,
            );
        }
        Case::Kernel => {
            topo.lb
                .exec("ethtool", &["-K", &topo.lb_client_if, "gro", "on"])?;
            s.cfg = bed.to_backends;
            s.slots = bed.v4.backend_slots.clone();
        }
        Case::Lb | Case::LbOneArm => {
            if case == Case::LbOneArm {
                one_arm(topo, &bed.client_mac, family, true)?;
            }
            let instance = format!("bpr{}", topo.tag);
            let config = match family {
                Family::V4 => lb_config(&instance, 65536, "full-nat"),
                Family::V6 => lb_config6(&instance, 65536, "full-nat"),
            };
            let mut d = Daemon::start(&bed.lb_bin, &topo.lb, &instance, &config, "toml")?;
            d.wait_ready()?;
            match family {
                Family::V4 => establish_flows(&d)?,
                Family::V6 => establish_flows6(&d)?,
            }
            s.daemon = Some(d);
            s.slots = frames.backend_slots.clone();
        }
    }
    Ok(s)
}

/// First full-NAT source port of the flows [`establish_flows`] makes.
const SNAT_BASE: u16 = 20000;

/// Gives lb a confirmed flow for each of the generator's flows, through its pinned maps, as
/// handshakes would have left them (alternating servers, full-NAT): the generator's frames
/// are mid-stream segments, which lb passes to the host when no flow knows them.
fn establish_flows(d: &Daemon) -> Result<()> {
    let mut maps = lb::dataplane::Maps::from_pins(&d.pin_dir())?;
    let mut servers = Vec::new();
    for row in lb::show::backend_rows(&maps)? {
        servers.push((row.slot, maps.servers.get(&row.slot.0, 0)?));
    }
    flow_pairs(&servers, be(CLIENT), be(VIP), |k, f| {
        maps.flows.insert(k, f, 0).context("inserting a flow")
    })
}

/// [`establish_flows`] for lb's IPv6 service and servers (`LB6_FLOWS`).
fn establish_flows6(d: &Daemon) -> Result<()> {
    let mut maps = lb::dataplane::Maps::from_pins(&d.pin_dir())?;
    let mut servers = Vec::new();
    for row in lb::show::backend_rows(&maps)? {
        servers.push((row.slot, maps.servers6.get(&row.slot.0, 0)?));
    }
    let (client, vip) = (
        addr6_from_octets(CLIENT6.octets()),
        addr6_from_octets(VIP6.octets()),
    );
    flow_pairs(&servers, client, vip, |k, f| {
        maps.flows6.insert(k, f, 0).context("inserting a flow")
    })
}

/// Both entries of each generator flow from `client` to `vip`:80, over `servers` in turn,
/// handed to `insert` (key, entry).
fn flow_pairs<A: Copy + Default>(
    servers: &[(lb::dataplane::ids::ServerSlot, ServerInfoOf<A>)],
    client: A,
    vip: A,
    mut insert: impl FnMut(FlowKeyOf<A>, FlowOf<A>) -> Result<()>,
) -> Result<()> {
    ensure!(!servers.is_empty(), "lb has no server");
    let http = 80u16.to_be();
    for i in 0..FLOWS {
        let (slot, s) = servers[i as usize % servers.len()];
        let server = u16::try_from(slot.0)?;
        let cport = (SPORT_BASE + i as u16).to_be();
        let lport = (SNAT_BASE + i as u16).to_be();
        let fwd = established(s.snat_addr, s.addr, lport, s.port, false, server);
        let reply = established(vip, client, http, cport, true, server);
        insert(fwd.mirror_key(PROTO_TCP), reply)?;
        insert(reply.mirror_key(PROTO_TCP), fwd)?;
    }
    Ok(())
}

fn teardown(bed: &mut Bed, case: Case, family: Family, s: Setup) -> Result<()> {
    if let Some(l) = s.link {
        bed.progs.detach(l)?;
    }
    if case == Case::Kernel {
        bed.topo
            .lb
            .exec("ethtool", &["-K", &bed.topo.lb_client_if, "gro", "off"])?;
    }
    if let Some(mut d) = s.daemon {
        d.stop()?;
    }
    if case == Case::LbOneArm {
        one_arm(&bed.topo, &bed.client_mac, family, false)?;
    }
    Ok(())
}

/// One case: set up, send `frames`, count where they arrived, undo.
fn measure(bed: &mut Bed, case: Case, family: Family, frames: u32) -> Result<Sample> {
    let s = setup(bed, case, family)?;
    bed.progs.set_generator(&s.cfg)?;
    let before = bed.progs.counts()?;
    let wall = bed.progs.generate(
        &bed.topo.client,
        &bed.topo.client_if,
        s.cfg.frame_len as usize,
        frames,
    );
    // Let the last frames in the veth queues arrive (not timed: at most a ring's worth).
    std::thread::sleep(Duration::from_millis(100));
    let after = bed.progs.counts();
    let slots = s.slots.clone();
    teardown(bed, case, family, s)?;
    let (wall, before, after) = (wall?, before, after?);
    let got: Vec<u64> = slots.iter().map(|&i| after[i] - before[i]).collect();
    let received: u64 = got.iter().sum();
    let all: u64 = after.iter().sum::<u64>() - before.iter().sum::<u64>();
    ensure!(
        received <= u64::from(frames) && all == received,
        "{all} frames counted, {received} where expected, {frames} sent"
    );
    ensure!(
        received * 10 >= u64::from(frames),
        "only {received} of {frames} frames arrived"
    );
    let secs = wall.as_secs_f64();
    let lb = matches!(case, Case::Lb | Case::LbOneArm);
    Ok(Sample {
        mpps: received as f64 / secs / 1e6,
        offered: f64::from(frames) / secs / 1e6,
        delivered: received as f64 / f64::from(frames),
        lb_share: lb.then(|| got.iter().copied().min().unwrap_or(0) as f64 / received as f64),
    })
}

fn report(
    samples: &[Vec<Sample>],
    reps: usize,
    frames_xdp: u32,
    frames_kernel: u32,
    out: &mut Report,
) {
    let med = |ci: usize| Spread::of(&samples[ci].iter().map(|s| s.mpps).collect::<Vec<_>>());
    let at = |case, family| med(row(case, family)).median;
    let kernel = at(Case::Kernel, Family::V4);
    let mut bars = Vec::new();
    let rows = CASES
        .iter()
        .enumerate()
        .map(|(ci, (_, family, name))| {
            let s = med(ci);
            bars.push((name.to_string(), s));
            let offered = Spread::of(&samples[ci].iter().map(|s| s.offered).collect::<Vec<_>>());
            let delivered =
                Spread::of(&samples[ci].iter().map(|s| s.delivered).collect::<Vec<_>>());
            // Each family against its own bounce; kernel forwarding was measured with IPv4
            // frames only.
            let kernel = match family {
                Family::V4 => format!("{:.2}x", s.median / kernel),
                Family::V6 => "-".to_string(),
            };
            vec![
                name.to_string(),
                s.fmt(2),
                format!("{:.2}x", s.median / at(Case::Tx, *family)),
                kernel,
                format!("{:.2}", offered.median),
                format!("{:.0}%", delivered.median * 100.0),
            ]
        })
        .collect();
    let share: Vec<f64> = samples
        .iter()
        .flatten()
        .filter_map(|s| s.lb_share)
        .collect();
    out.table(
        "Packet rate across veth (live-frames generator)",
        &format!(
            "TCP frames of {FLOWS} flows per destination from `bench_gen` (BPF_PROG_TEST_RUN \
             live frames, batch 64) in the client namespace: {GEN_FRAME_LEN}-byte IPv4 frames, \
             {GEN6_FRAME_LEN}-byte IPv6 frames (the same TCP segment) in the IPv6 rows, whose \
             x XDP_TX is against the bounce of IPv6 frames; Mpps counted by `bench_sink` on the \
             receiving veth (the backends', or the LB's for XDP_DROP, the client's for the \
             bounce) over the generator's wall time; {reps} runs of {frames_xdp} frames \
             ({frames_kernel} for kernel forwarding, IPv4 only), min / median / max. Everything \
             shares the machine's 2 vCPUs. lb's smaller backend got {:.0}% of the frames \
             (median over both families; round robin over 2 servers).",
            Spread::of(&share).median * 100.0
        ),
        &[
            "case",
            "Mpps received",
            "x XDP_TX",
            "x kernel fwd",
            "offered Mpps",
            "delivered",
        ],
        rows,
    );
    let (tx, tx6) = (at(Case::Tx, Family::V4), at(Case::Tx, Family::V6));
    let (lb, lb6) = (at(Case::Lb, Family::V4), at(Case::Lb, Family::V6));
    let (one_arm, one_arm6) = (
        at(Case::LbOneArm, Family::V4),
        at(Case::LbOneArm, Family::V6),
    );
    out.target(
        "lb forwarding >= 0.85x the XDP_TX bounce",
        lb / tx,
        Target::AtLeast(0.85),
    );
    out.target(
        "lb one-armed (XDP_TX, the bounce's path) >= 0.85x the XDP_TX bounce",
        one_arm / tx,
        Target::AtLeast(0.85),
    );
    out.target(
        "lb forwarding >= 2.5x kernel forwarding",
        lb / kernel,
        Target::AtLeast(2.5),
    );
    out.target(
        "lb IPv6 forwarding >= 0.85x the XDP_TX bounce of IPv6 frames",
        lb6 / tx6,
        Target::AtLeast(0.85),
    );
    out.target(
        "lb IPv6 one-armed >= 0.85x the XDP_TX bounce of IPv6 frames",
        one_arm6 / tx6,
        Target::AtLeast(0.85),
    );
    out.chart("pktrate.svg", "Packet rate across veth", "Mpps", bars);
}

/// Routes the LB's traffic for the backends' `family` addresses out of its client-side veth,
/// to the client's MAC (`add`), or back to the backends' own links.
fn one_arm(topo: &Topology, client_mac: &[u8; 6], family: Family, add: bool) -> Result<()> {
    let mac = client_mac.map(|x| format!("{x:02x}")).join(":");
    let dev = topo.lb_client_if.as_str();
    for b in &topo.backends {
        let (host, addr) = match family {
            Family::V4 => (format!("{}/32", b.addr), b.addr.to_string()),
            Family::V6 => (format!("{}/128", addr6(b)), addr6(b).to_string()),
        };
        let (route, neigh): (Vec<&str>, Vec<&str>) = if add {
            (
                vec!["route", "replace", &host, "dev", dev],
                vec![
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    &mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )
        } else {
            (
                vec!["route", "del", &host, "dev", dev],
                vec!["neigh", "del", &addr, "dev", dev],
            )
        };
        topo.lb.ip(&route)?;
        topo.lb.ip(&neigh)?;
    }
    Ok(())
}
