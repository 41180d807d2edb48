//! What loading the program costs: the verifier's work, paid at every start and upgrade.
//!
//! Near the verifier's limit of 1,000,000 processed instructions a small change to the
//! program tips it over (the load fails with E2BIG), and the load time grows with the
//! instructions processed: on a busy 2-core machine several seconds per load. Both builds
//! are measured: the one `lb run` loads and the `variant` one the upgrade test swaps in; and
//! the tracing copy `lb trace on` loads (the verifier walks the trace paths only there).
use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use lb::dataplane::{Dataplane, LoadOptions, TraceFilter, VARIANT_OBJECT};

use crate::{Args, report::Report};

const LIMIT: u32 = 1_000_000;

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let reps = if args.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    // IPv4-only instances do not verify the IPv6 program (`LoadOptions::ipv6`).
    for (name, object, trace, ipv6) in [
        ("lb (built in), IPv4 services only", None, None, false),
        ("lb (built in), with IPv6 services", None, None, true),
        (
            "variant (upgrade test)",
            Some(PathBuf::from(VARIANT_OBJECT)),
            None,
            true,
        ),
        (
            "lb, tracing copy (lb trace on)",
            None,
            Some(TraceFilter::default()),
            true,
        ),
    ] {
        let mut ms = Vec::new();
        let (mut verified, mut verified4, mut verified6) = (None, None, None);
        for _ in 0..reps {
            let started = Instant::now();
            let mut dp = Dataplane::load(&LoadOptions {
                object: object.clone(),
                trace,
                ipv6,
                ..LoadOptions::default()
            })?;
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            verified = dp.lb_program()?.info()?.verified_instruction_count();
            verified4 = dp.lb4_program()?.info()?.verified_instruction_count();
            if ipv6 {
                verified6 = dp.lb6_program()?.info()?.verified_instruction_count();
            }
        }
        ms.sort_by(f64::total_cmp);
        let count = |v: Option<u32>| v.map_or("-".into(), |n| n.to_string());
        let share = |v: Option<u32>| {
            v.map_or("-".into(), |n| {
                format!("{:.0}%", f64::from(n) * 100.0 / f64::from(LIMIT))
            })
        };
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", ms[ms.len() / 2]),
            count(verified),
            share(verified),
            count(verified4),
            share(verified4),
            count(verified6),
            share(verified6),
        ]);
    }
    out.table(
        "Loading the program",
        &format!(
            "median of {reps} loads of the whole object (verification included), and the \
             instructions the verifier processed for the entry program (lb_xdp: the flow \
             cache) and for the IPv4 and IPv6 paths it tail-calls (each against the limit of \
             1,000,000)."
        ),
        &[
            "object",
            "load ms",
            "lb_xdp insns",
            "of the limit",
            "lb_xdp4 insns",
            "of the limit",
            "lb_xdp6 insns",
            "of the limit",
        ],
        rows,
    );
    Ok(())
}
