//! `cargo xtask bench [--quick]`: lb's benchmarks. Every figure is printed next to a baseline
//! measured in the same invocation (these machines are noisy), as a ratio; nothing here
//! asserts on time. Sections:
//! - `cost`: per-packet cost through BPF_PROG_TEST_RUN against the empty program;
//! - `pktrate`: packets per second across veth, against XDP_DROP/XDP_TX and kernel forwarding;
//! - `http`: HTTP through the namespaces (wrk, nginx) against direct and HAProxy 2.6;
//! - `sustained`: a minute of short connections through each, SYN retransmissions counted;
//! - `synflood`: a spoofed SYN flood at each while clients keep using the service;
//! - `live`: lb's ns/packet on live HTTP traffic against the empty program on the same packets;
//! - `scale`: per-packet cost against backends and flows in conntrack, map memory.
//!
//! Markdown goes to stdout (and `target/bench/report.md`), SVG charts to `target/bench/`.
mod balancer;
mod chart;
mod cost;
mod fixture;
mod haproxy;
mod http;
mod live;
mod load;
mod pktrate;
mod progs;
mod report;
mod scale;
mod sustained;
mod synflood;
mod sys;
mod web;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(name = "lb-bench")]
pub struct Args {
    /// Fewer repetitions and shorter runs (under a minute).
    #[arg(long)]
    pub quick: bool,
    /// Only these sections (cost, pktrate, http, sustained, synflood, live, scale); default:
    /// all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The `lb` binary (default: next to this one, as `cargo xtask bench` builds it).
    #[arg(long)]
    pub lb: Option<PathBuf>,
    /// Where charts and report.md go (default: target/bench next to this binary's target).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    /// The `lb` binary to run as the daemon.
    pub fn lb(&self) -> Result<PathBuf> {
        if let Some(p) = &self.lb {
            return Ok(p.clone());
        }
        let me = std::env::current_exe().context("locating lb-bench")?;
        let lb = me.with_file_name("lb");
        anyhow::ensure!(
            lb.exists(),
            "{} not found: build it (`cargo build --release -p lb-userspace`) or pass --lb",
            lb.display()
        );
        Ok(lb)
    }

    fn out_dir(&self) -> Result<PathBuf> {
        if let Some(p) = &self.out {
            return Ok(p.clone());
        }
        let me = std::env::current_exe().context("locating lb-bench")?;
        // target/<profile>/lb-bench -> target/bench
        let target = me
            .parent()
            .and_then(|p| p.parent())
            .context("lb-bench is not inside a target directory; pass --out")?;
        Ok(target.join("bench"))
    }
}

type Section = fn(&Args, &mut report::Report) -> Result<()>;

fn main() -> Result<()> {
    let args = Args::parse();
    lb_testbed::require_root();
    let started = Instant::now();
    let mut out = report::Report::default();
    let sections: [(&str, Section); 8] = [
        ("load", load::run),
        ("cost", cost::run),
        ("pktrate", pktrate::run),
        ("http", http::run),
        ("sustained", sustained::run),
        ("synflood", synflood::run),
        ("live", live::run),
        ("scale", scale::run),
    ];
    for (name, f) in sections {
        if args.wants(name) {
            let t = Instant::now();
            eprintln!("[lb-bench] {name}...");
            f(&args, &mut out).with_context(|| format!("section {name}"))?;
            eprintln!("[lb-bench] {name} took {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    out.add_target_table();
    let mode = if args.quick { " --quick" } else { "" };
    let mut md = format!(
        "## lb benchmarks (`cargo xtask bench{mode}`)\n\nMachine: {}; kernel {}. Took {:.0} s.\n",
        cpu_model(),
        kernel(),
        started.elapsed().as_secs_f64()
    );
    md.push_str(&out.markdown());
    print!("{md}");
    let dir = args.out_dir()?;
    let written = chart::write_all(&out, &dir)?;
    std::fs::write(dir.join("report.md"), &md)?;
    eprintln!(
        "[lb-bench] wrote {} and {}",
        dir.join("report.md").display(),
        written.join(", ")
    );
    Ok(())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown CPU")
        .to_string();
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{n} x {model}")
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
