//! HTTP end to end through the namespaces: `wrk` in the client namespace, two nginx backends,
//! and in between each [`Via`] in turn (see `balancer`), keep-alive and a new connection per
//! request. lb restarts between runs keep their pinned conntrack, as in production.
//!
//! Steps: [`measure`] (every via and mode, `reps` times, interleaved), then [`report`]
//! (table, targets, chart). Balancer CPU is compared per request, since lb serves more
//! requests in the same time.
use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, Result, ensure};
use lb_testbed::wrk::{Wrk, WrkResult};

use crate::{
    Args,
    balancer::{Balancer, VIAS, Via},
    report::{Report, Spread, Target},
    sys::BpfStats,
    web::WebBed,
};

pub const CONNECTIONS: u32 = 50;

const LB_DNAT: usize = 2;
const LB_FULL_NAT: usize = 3;

pub const MODES: [(bool, &str); 2] = [(false, "keep-alive"), (true, "new connection per request")];

#[derive(Default)]
struct Sample {
    wrk: WrkResult,
    /// Balancer CPU over the run, in seconds (None: no balancer).
    cpu: Option<f64>,
    /// lb only: the XDP program's share of `cpu`.
    xdp: Option<f64>,
    secs: f64,
    /// The client's SYN retransmissions during the run.
    syn_retrans: u64,
}

/// Everything [`measure`] collected: `samples[via][mode]`, one per repetition.
struct Measured {
    samples: Vec<Vec<Vec<Sample>>>,
    /// lb daemon RSS after each lb run, MiB.
    rss: Vec<f64>,
    /// lb's pass/drop counters over its runs.
    reasons: BTreeMap<&'static str, u64>,
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let (reps, secs) = if args.quick { (3, 1) } else { (3, 6) };
    let bed = WebBed::new(args)?;
    let stats = BpfStats::enable()?;
    let m = measure(&bed, reps, secs)?;
    drop(stats);
    report(&m, reps, secs, out);
    Ok(())
}

fn measure(bed: &WebBed, reps: usize, secs: u32) -> Result<Measured> {
    let mut m = Measured {
        samples: VIAS
            .iter()
            .map(|_| MODES.iter().map(|_| Vec::new()).collect())
            .collect(),
        rss: Vec::new(),
        reasons: BTreeMap::new(),
    };
    for _ in 0..reps {
        for (vi, via) in VIAS.iter().enumerate() {
            let b = bed.start(*via)?;
            for (mi, (close, mode)) in MODES.iter().enumerate() {
                let s = sample(bed, &b, secs, *close)
                    .with_context(|| format!("wrk via {}, {mode}", via.name()))?;
                m.samples[vi][mi].push(s);
            }
            if let Some(rss) = b.rss_mib()? {
                m.rss.push(rss);
            }
            for (r, n) in b.reasons()? {
                *m.reasons.entry(r).or_insert(0) += n;
            }
            b.stop()?;
        }
    }
    Ok(m)
}

/// One `wrk` run through `b`, with the balancer's CPU and the client's SYN retransmissions.
fn sample(bed: &WebBed, b: &Balancer, secs: u32, close: bool) -> Result<Sample> {
    let cpu_before = b.usage()?;
    let retrans = bed.client_retrans()?;
    let t = Instant::now();
    let w = Wrk {
        connections: CONNECTIONS,
        secs,
        close,
    }
    .run(bed.client(), b.target)?;
    let elapsed = t.elapsed().as_secs_f64();
    let syn_retrans = bed.client_retrans()?.since(retrans).syn;
    let (cpu, xdp) = match (cpu_before, b.usage()?) {
        (Some(a), Some(z)) => (Some(z.total() - a.total()), Some(z.xdp - a.xdp)),
        _ => (None, None),
    };
    ensure!(w.requests > 0, "no request completed");
    Ok(Sample {
        wrk: w,
        cpu,
        xdp: if matches!(b.via, Via::Lb(_)) {
            xdp
        } else {
            None
        },
        secs: elapsed,
        syn_retrans,
    })
}

fn report(m: &Measured, reps: usize, secs: u32, out: &mut Report) {
    let samples = &m.samples;
    let rps = |vi: usize, mi: usize| {
        Spread::of(
            &samples[vi][mi]
                .iter()
                .map(|s| s.wrk.rps)
                .collect::<Vec<_>>(),
        )
    };
    // CPU seconds per request, median over runs.
    let cpu_per_req = |vi: usize, mi: usize| -> Option<Spread> {
        let v: Vec<f64> = samples[vi][mi]
            .iter()
            .filter_map(|s| Some(s.cpu? / s.wrk.requests.max(1) as f64))
            .collect();
        (!v.is_empty()).then(|| Spread::of(&v))
    };
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for (mi, (_, mode)) in MODES.iter().enumerate() {
        let (d, h) = (rps(0, mi).median, rps(1, mi).median);
        for (vi, via) in VIAS.iter().enumerate() {
            let s = rps(vi, mi);
            bars.push((format!("{}, {mode}", via.name()), s));
            let ss = &samples[vi][mi];
            let med = |f: &dyn Fn(&Sample) -> f64| {
                Spread::of(&ss.iter().map(f).collect::<Vec<_>>()).median
            };
            let cpu = match via {
                Via::Direct => "-".to_string(),
                _ => {
                    let core = med(&|s| s.cpu.unwrap_or(f64::NAN) / s.secs) * 100.0;
                    match via {
                        Via::Lb(_) => format!(
                            "{core:.1}% (XDP {:.1}%)",
                            med(&|s| s.xdp.unwrap_or(f64::NAN) / s.secs) * 100.0
                        ),
                        _ => format!("{core:.1}%"),
                    }
                }
            };
            let per_req = cpu_per_req(vi, mi)
                .map(|s| format!("{:.2}", s.median * 1e6))
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                via.name().to_string(),
                mode.to_string(),
                s.fmt(0),
                format!("{:.2}x", s.median / d),
                format!("{:.2}x", s.median / h),
                format!("{:.3}", med(&|s| s.wrk.p50_ms)),
                format!("{:.3}", med(&|s| s.wrk.p99_ms)),
                cpu,
                per_req,
                format!("{}", ss.iter().map(|s| s.wrk.errors).sum::<u64>()),
                format!("{}", ss.iter().map(|s| s.syn_retrans).sum::<u64>()),
            ]);
        }
    }
    out.table(
        "HTTP through the namespaces (wrk, nginx backends)",
        &format!(
            "`wrk -t1 -c{CONNECTIONS} -d{secs}s --latency`, {reps} runs per row, all on the same \
             2 vCPUs as the servers and the client; requests/s min / median / max, latency and \
             CPU are medians. New connection per request: `Connection: close`, client port range \
             1024-65535 and tcp_tw_reuse=1. Balancer CPU in % of one core over the run; for lb \
             the XDP program (bpf_stats run time) plus the daemon. lb daemon RSS after the runs: \
             {:.1} MiB. Errors (wrk socket errors and non-2xx) and client SYN retransmissions \
             are totals over the runs. lb's pass/drop counters over its runs: {}.",
            Spread::of(&m.rss).median,
            fmt_reasons(&m.reasons)
        ),
        &[
            "via",
            "mode",
            "requests/s",
            "x direct",
            "x HAProxy",
            "p50 ms",
            "p99 ms",
            "balancer CPU",
            "CPU us/request",
            "errors",
            "SYN retrans",
        ],
        rows,
    );
    let r = |vi, mi| rps(vi, mi).median;
    for (li, nat) in [(LB_DNAT, "DNAT"), (LB_FULL_NAT, "full-NAT")] {
        out.target(
            &format!("HTTP keep-alive: lb {nat} >= 0.9x direct"),
            r(li, 0) / r(0, 0),
            Target::AtLeast(0.9),
        );
        out.target(
            &format!("HTTP keep-alive: lb {nat} >= 1.15x HAProxy tcp"),
            r(li, 0) / r(1, 0),
            Target::AtLeast(1.15),
        );
        out.target(
            &format!("HTTP new connection per request: lb {nat} >= 0.85x direct"),
            r(li, 1) / r(0, 1),
            Target::AtLeast(0.85),
        );
        out.target(
            &format!("HTTP new connection per request: lb {nat} >= 1.5x HAProxy tcp"),
            r(li, 1) / r(1, 1),
            Target::AtLeast(1.5),
        );
        for (mi, (_, mode)) in MODES.iter().enumerate() {
            if let (Some(l), Some(h)) = (cpu_per_req(li, mi), cpu_per_req(1, mi)) {
                out.target(
                    &format!("balancer CPU per request, {mode}: lb {nat} <= 5% of HAProxy"),
                    l.median / h.median,
                    Target::AtMost(0.05),
                );
            }
        }
    }
    out.chart("http.svg", "HTTP requests/s", "requests/s", bars);
}

/// lb's pass/drop counters as `name n, ...`.
pub fn fmt_reasons(r: &BTreeMap<&'static str, u64>) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
