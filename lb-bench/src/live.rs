//! lb's cost per packet on live traffic, from `kernel.bpf_stats_enabled` (run time / run
//! count of the attached `lb_xdp`), next to a floor measured on the same packets in the same
//! runs: `xdp_parse_only` (lb's header parsing, nothing looked up) attached where lb's packets
//! arrive next (the servers' veths for requests, the client's for answers), so both programs
//! see each packet once, with the kernel's per-run overhead of the statistics themselves in
//! both.
//!
//! IPv6 rows: the same over the topology's IPv6 addresses (lb with an IPv6 VIP and servers,
//! nginx listening on the servers' IPv6 addresses). `lb_xdp` tail-calls `lb_xdp6` for them;
//! the kernel counts a run, and its time, for the program the hook entered only (a tail call
//! jumps into the next program without the accounting), so `lb_xdp`'s statistics hold the
//! whole IPv6 path and `lb_xdp6`'s stay at zero.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, ensure};
use lb_common::PROG_PARSE_ONLY;
use lb_testbed::{
    daemon::Daemon,
    servers::WebServer,
    topo::{VIP, VIP6, backend6},
    wrk::Wrk,
};

use crate::{
    Args,
    balancer::{Balancer, ProgStats, Via, lb_config6, lb_prog_stats},
    http::{CONNECTIONS, MODES},
    progs::BenchProgs,
    report::{Report, Spread},
    sys::BpfStats,
    web::WebBed,
};

const NATS: [&str; 2] = ["dnat", "full-nat"];
/// (name, IPv6)
const FAMILIES: [(&str, bool); 2] = [("IPv4", false), ("IPv6", true)];

/// One run: what lb's program and the floor did.
struct Sample {
    lb: ProgStats,
    floor: ProgStats,
}

/// lb for one family: IPv4 as the HTTP sections start it, IPv6 with its own config.
enum Running {
    V4(Balancer),
    V6(Daemon),
}

impl Running {
    fn start(bed: &WebBed, lb_bin: &Path, v6: bool, nat: &'static str) -> Result<Self> {
        if !v6 {
            return Ok(Running::V4(bed.start(Via::Lb(nat))?));
        }
        let instance = format!("bl6{}{}", &nat[..1], bed.topo.tag);
        let mut d = Daemon::start(
            lb_bin,
            &bed.topo.lb,
            &instance,
            &lb_config6(&instance, 262_144, nat),
            "toml",
        )?;
        d.wait_ready()?;
        Ok(Running::V6(d))
    }

    fn pins(&self) -> Result<PathBuf> {
        Ok(match self {
            Running::V4(b) => b.lb().context("lb is not running")?.pin_dir(),
            Running::V6(d) => d.pin_dir(),
        })
    }

    fn target(&self) -> IpAddr {
        match self {
            Running::V4(_) => VIP.into(),
            Running::V6(_) => VIP6.into(),
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Running::V4(b) => b.stop(),
            Running::V6(mut d) => d.stop().map(|_| ()),
        }
    }
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let (reps, secs) = if args.quick { (2, 1) } else { (3, 5) };
    let lb_bin = args.lb()?;
    let bed = WebBed::new(args)?;
    let _web6 = serve_ipv6(&bed)?;
    let stats = BpfStats::enable()?;
    let mut progs = BenchProgs::load()?;
    progs.attach(PROG_PARSE_ONLY, &bed.topo.client, &bed.topo.client_if)?;
    for b in &bed.topo.backends {
        progs.attach(PROG_PARSE_ONLY, &b.ns, &b.ifname)?;
    }
    // samples[family][nat][mode]
    let mut samples: Vec<Vec<Vec<Vec<Sample>>>> = FAMILIES
        .iter()
        .map(|_| {
            NATS.iter()
                .map(|_| MODES.iter().map(|_| Vec::new()).collect())
                .collect()
        })
        .collect();
    for _ in 0..reps {
        for (fi, (family, v6)) in FAMILIES.iter().enumerate() {
            for (ni, nat) in NATS.iter().enumerate() {
                let lb = Running::start(&bed, &lb_bin, *v6, nat)?;
                let pins = lb.pins()?;
                for (mi, (close, mode)) in MODES.iter().enumerate() {
                    let (lb0, floor0) = (lb_prog_stats(&pins)?, progs.stats(PROG_PARSE_ONLY)?);
                    Wrk {
                        connections: CONNECTIONS,
                        secs,
                        close: *close,
                    }
                    .run(bed.client(), lb.target())
                    .with_context(|| format!("wrk via lb {nat} {family}, {mode}"))?;
                    samples[fi][ni][mi].push(Sample {
                        lb: lb_prog_stats(&pins)?.since(lb0),
                        floor: progs.stats(PROG_PARSE_ONLY)?.since(floor0),
                    });
                }
                lb.stop()?;
            }
        }
    }
    drop(progs);
    drop(stats);
    report(&samples, reps, secs, out);
    Ok(())
}

/// The topology's IPv6 addresses, nginx on each server's, and the neighbour tables warm (one
/// unmeasured run straight to a server).
fn serve_ipv6(bed: &WebBed) -> Result<Vec<WebServer>> {
    bed.topo.add_ipv6()?;
    let mut web = Vec::new();
    for b in &bed.topo.backends {
        let addr = backend6(b.addr.octets()[3]).0;
        web.push(WebServer::nginx(
            &b.ns,
            &format!("{}-v6", b.name),
            addr,
            80,
        )?);
    }
    let direct = backend6(bed.direct().octets()[3]).0;
    let warm = Wrk {
        connections: 50,
        secs: 1,
        close: false,
    }
    .run(bed.client(), direct)?;
    ensure!(warm.requests > 0, "no answer from {direct} over IPv6");
    Ok(web)
}

fn report(samples: &[Vec<Vec<Vec<Sample>>>], reps: usize, secs: u32, out: &mut Report) {
    let mut rows = Vec::new();
    for (fi, (family, v6)) in FAMILIES.iter().enumerate() {
        for (ni, nat) in NATS.iter().enumerate() {
            for (mi, (_, mode)) in MODES.iter().enumerate() {
                let ss = &samples[fi][ni][mi];
                let spread =
                    |f: &dyn Fn(&Sample) -> f64| Spread::of(&ss.iter().map(f).collect::<Vec<_>>());
                let lb = spread(&|s| s.lb.ns_per_run());
                let floor = spread(&|s| s.floor.ns_per_run());
                let ratio = spread(&|s| s.lb.ns_per_run() / s.floor.ns_per_run());
                let nat = if *nat == "dnat" { "DNAT" } else { "full-NAT" };
                let lb_name = match v6 {
                    false => format!("lb, {nat}"),
                    true => format!("lb, {nat}, {family}"),
                };
                rows.push(vec![
                    lb_name,
                    mode.to_string(),
                    lb.fmt(0),
                    format!("{:.0}", spread(&|s| s.lb.runs as f64).median),
                    floor.fmt(0),
                    format!("{:.0}", spread(&|s| s.floor.runs as f64).median),
                    format!("{:.1}x", ratio.median),
                ]);
            }
        }
    }
    out.table(
        "Per packet on live traffic (bpf_stats)",
        &format!(
            "`wrk -t1 -c{CONNECTIONS} -d{secs}s` through lb, {reps} runs per row (min / median / \
             max); run time / run count of the attached `lb_xdp` (both directions; for IPv6 \
             it includes `lb_xdp6`, which it tail-calls: the kernel accounts the whole run to \
             the program entered) against `xdp_parse_only` (lb's header parsing, no lookup) \
             on the veths where the same packets arrive next (servers' and client's), in the \
             same runs. The floor includes the cost of the statistics themselves (two clock \
             reads per run), the XDP entry and the parse."
        ),
        &[
            "lb",
            "traffic",
            "lb ns/packet",
            "lb packets",
            "parse-only ns/packet",
            "parse-only packets",
            "x floor",
        ],
        rows,
    );
}
