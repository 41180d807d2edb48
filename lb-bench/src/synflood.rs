//! A spoofed SYN flood (`lb_testbed::flood`) at each [`Via`] in turn, each on a fresh bed,
//! while one kept-alive connection asks every 100 ms and a new connection opens every 200 ms:
//! the rate the flood reached, the kept-alive requests it broke, and the new connections
//! served before, during (until the flood's half-open flows have timed out) and after it.
use std::{collections::BTreeMap, net::SocketAddrV4, time::Duration};

use anyhow::{Context, Result};
use lb_testbed::flood::{Flood, FloodOutcome, Served, Watch};

use crate::{
    Args,
    balancer::{VIAS, Via},
    http::fmt_reasons,
    report::Report,
    web::WebBed,
};

/// New connections count as "after" from this long after the flood: lb's default
/// `timeout connect`, when the flood's half-open flows are gone.
const SETTLE: Duration = Duration::from_secs(5);

struct Run {
    via: Via,
    outcome: FloodOutcome,
    reasons: BTreeMap<&'static str, u64>,
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let (syns, observe) = if args.quick {
        (20_000, Duration::from_secs(2))
    } else {
        (100_000, Duration::from_secs(5))
    };
    let watch = Watch {
        after: SETTLE + observe,
        ..Watch::default()
    };
    let mut runs = Vec::new();
    for via in VIAS {
        runs.push(measure(args, via, syns, &watch).with_context(|| via.name())?);
    }
    report(&runs, syns, out);
    Ok(())
}

fn measure(args: &Args, via: Via, syns: u64, watch: &Watch) -> Result<Run> {
    let bed = WebBed::new(args)?;
    let b = bed.start(via)?;
    let target = SocketAddrV4::new(b.target, 80);
    let outcome = Flood::new(target, syns, Duration::from_secs(30)).watched(
        bed.client(),
        target.into(),
        watch,
    )?;
    let run = Run {
        via,
        outcome,
        reasons: b.reasons()?,
    };
    b.stop()?;
    Ok(run)
}

fn served(s: Served) -> String {
    format!("{}/{}", s.served, s.opened)
}

fn report(runs: &[Run], syns: u64, out: &mut Report) {
    let direct = runs
        .iter()
        .find(|r| r.via == Via::Direct)
        .map_or(f64::NAN, |r| r.outcome.sent.rate());
    let rows = runs
        .iter()
        .map(|r| {
            let o = &r.outcome;
            vec![
                r.via.name().to_string(),
                format!("{:.0}", o.sent.rate()),
                format!("{:.2}x", o.sent.rate() / direct),
                o.keep_alive.ok.to_string(),
                o.keep_alive.errors.len().to_string(),
                served(o.before()),
                served(o.during(SETTLE)),
                served(o.after(SETTLE)),
                match r.via {
                    Via::Lb(_) => fmt_reasons(&r.reasons),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    out.table(
        "SYN flood",
        &format!(
            "{syns} SYNs from random addresses of 10.77.0.0/16 (nothing answers them) as fast as \
             one raw socket sends them (`sendmmsg`, 64 a call) from the client namespace, at the \
             target each via offers (a server, or the VIP). Meanwhile one kept-alive \
             connection GETs every 100 ms and a new connection opens every 200 ms (connect \
             within {} s). During: from the flood's start to {} s after its end (lb's \
             `timeout connect`); after: from then on. Each via on fresh namespaces; \
             SYNs/s is what the sender reached (a veth drops what its peer cannot take).",
            lb_testbed::probe::CONNECT_LIMIT.as_secs(),
            SETTLE.as_secs()
        ),
        &[
            "via",
            "flood SYNs/s",
            "x direct",
            "kept-alive requests ok",
            "kept-alive requests failed",
            "new connections served before",
            "during",
            "after",
            "lb pass/drop",
        ],
        rows,
    );
}
