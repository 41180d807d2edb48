//! lb's cost per packet on live traffic, from `kernel.bpf_stats_enabled` (run time / run
//! count of the attached `lb_xdp`), next to a floor measured on the same packets in the same
//! runs: `xdp_parse_only` (lb's header parsing, nothing looked up) attached where lb's packets
//! arrive next (the servers' veths for requests, the client's for answers), so both programs
//! see each packet once, with the kernel's per-run overhead of the statistics themselves in
//! both.
use anyhow::{Context, Result};
use lb_common::PROG_PARSE_ONLY;
use lb_testbed::wrk::Wrk;

use crate::{
    Args,
    balancer::{ProgStats, lb_prog_stats},
    http::{CONNECTIONS, MODES},
    progs::BenchProgs,
    report::{Report, Spread},
    sys::BpfStats,
    web::WebBed,
};

const NATS: [&str; 2] = ["dnat", "full-nat"];

/// One run: what lb's program and the floor did.
struct Sample {
    lb: ProgStats,
    floor: ProgStats,
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let (reps, secs) = if args.quick { (2, 1) } else { (3, 5) };
    let bed = WebBed::new(args)?;
    let stats = BpfStats::enable()?;
    let mut progs = BenchProgs::load()?;
    progs.attach(PROG_PARSE_ONLY, &bed.topo.client, &bed.topo.client_if)?;
    for b in &bed.topo.backends {
        progs.attach(PROG_PARSE_ONLY, &b.ns, &b.ifname)?;
    }
    // samples[nat][mode]
    let mut samples: Vec<Vec<Vec<Sample>>> = NATS
        .iter()
        .map(|_| MODES.iter().map(|_| Vec::new()).collect())
        .collect();
    for _ in 0..reps {
        for (ni, nat) in NATS.iter().enumerate() {
            let b = bed.start(crate::balancer::Via::Lb(nat))?;
            let pins = b.lb().context("lb is not running")?.pin_dir();
            for (mi, (close, mode)) in MODES.iter().enumerate() {
                let (lb0, floor0) = (lb_prog_stats(&pins)?, progs.stats(PROG_PARSE_ONLY)?);
                Wrk {
                    connections: CONNECTIONS,
                    secs,
                    close: *close,
                }
                .run(bed.client(), b.target)
                .with_context(|| format!("wrk via lb {nat}, {mode}"))?;
                samples[ni][mi].push(Sample {
                    lb: lb_prog_stats(&pins)?.since(lb0),
                    floor: progs.stats(PROG_PARSE_ONLY)?.since(floor0),
                });
            }
            b.stop()?;
        }
    }
    drop(progs);
    drop(stats);
    report(&samples, reps, secs, out);
    Ok(())
}

fn report(samples: &[Vec<Vec<Sample>>], reps: usize, secs: u32, out: &mut Report) {
    let mut rows = Vec::new();
    for (ni, nat) in NATS.iter().enumerate() {
        for (mi, (_, mode)) in MODES.iter().enumerate() {
            let ss = &samples[ni][mi];
            let spread =
                |f: &dyn Fn(&Sample) -> f64| Spread::of(&ss.iter().map(f).collect::<Vec<_>>());
            let lb = spread(&|s| s.lb.ns_per_run());
            let floor = spread(&|s| s.floor.ns_per_run());
            let ratio = spread(&|s| s.lb.ns_per_run() / s.floor.ns_per_run());
            rows.push(vec![
                format!("lb, {}", if *nat == "dnat" { "DNAT" } else { "full-NAT" }),
                mode.to_string(),
                lb.fmt(0),
                format!("{:.0}", spread(&|s| s.lb.runs as f64).median),
                floor.fmt(0),
                format!("{:.0}", spread(&|s| s.floor.runs as f64).median),
                format!("{:.1}x", ratio.median),
            ]);
        }
    }
    out.table(
        "Per packet on live traffic (bpf_stats)",
        &format!(
            "`wrk -t1 -c{CONNECTIONS} -d{secs}s` through lb, {reps} runs per row (min / median / \
             max); run time / run count of the attached `lb_xdp` (both directions) against \
             `xdp_parse_only` (lb's header parsing, no lookup) on the veths where the same \
             packets arrive next (servers' and client's), in the same runs. The floor includes \
             the cost of the statistics themselves (two clock reads per run), the XDP entry and \
             the parse."
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
