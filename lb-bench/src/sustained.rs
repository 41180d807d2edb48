//! Sustained short connections: `wrk -c50 -H 'Connection: close'` for a minute through each
//! [`Via`] in turn, each on a fresh bed (no TIME_WAIT left over from the previous one). The
//! servers close first, so they hold every finished connection's tuple in TIME_WAIT for 60 s,
//! while the client (or lb's full-NAT, or HAProxy) comes back to the same ports within
//! seconds: what counts here is how many SYNs go unanswered (client SYN retransmissions) and
//! how many requests fail, next to the rate.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use lb_testbed::wrk::{Wrk, WrkResult};

use crate::{
    Args,
    balancer::{VIAS, Via},
    http::{CONNECTIONS, fmt_reasons},
    report::Report,
    web::{Retrans, WebBed},
};

struct Run {
    via: Via,
    wrk: WrkResult,
    /// The client's retransmissions.
    client: Retrans,
    /// The LB namespace's: HAProxy's own connections to the servers.
    balancer: Retrans,
    reasons: BTreeMap<&'static str, u64>,
}

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let secs = if args.quick { 10 } else { 60 };
    let mut runs = Vec::new();
    for via in VIAS {
        runs.push(measure(args, via, secs).with_context(|| via.name())?);
    }
    report(&runs, secs, out);
    Ok(())
}

fn measure(args: &Args, via: Via, secs: u32) -> Result<Run> {
    let bed = WebBed::new(args)?;
    let b = bed.start(via)?;
    let (client, balancer) = (bed.client_retrans()?, bed.lb_retrans()?);
    let wrk = Wrk {
        connections: CONNECTIONS,
        secs,
        close: true,
    }
    .run(bed.client(), b.target)?;
    let run = Run {
        via,
        wrk,
        client: bed.client_retrans()?.since(client),
        balancer: bed.lb_retrans()?.since(balancer),
        reasons: b.reasons()?,
    };
    b.stop()?;
    Ok(run)
}

fn report(runs: &[Run], secs: u32, out: &mut Report) {
    let rps = |via: Via| {
        runs.iter()
            .find(|r| r.via == via)
            .map_or(f64::NAN, |r| r.wrk.rps)
    };
    let (direct, haproxy) = (rps(Via::Direct), rps(Via::Haproxy));
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.via.name().to_string(),
                format!("{:.0}", r.wrk.rps),
                format!("{:.2}x", r.wrk.rps / direct),
                format!("{:.2}x", r.wrk.rps / haproxy),
                format!("{:.2}", r.wrk.p99_ms),
                r.wrk.errors.to_string(),
                r.client.syn.to_string(),
                r.client.segments.to_string(),
                match r.via {
                    Via::Haproxy => r.balancer.syn.to_string(),
                    _ => "-".into(),
                },
                match r.via {
                    Via::Lb(_) => fmt_reasons(&r.reasons),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    out.table(
        "Sustained short connections",
        &format!(
            "`wrk -t1 -c{CONNECTIONS} -d{secs}s -H 'Connection: close'`, one run per row, each on \
             fresh namespaces (client port range 1024-65535, tcp_tw_reuse=1). The servers close \
             first and keep each tuple in TIME_WAIT; a SYN on such a tuple is only answered if \
             the server takes it for a new connection (RFC 6191), otherwise the client sends it \
             again a second later (SYN retrans). Balancer SYN retrans: HAProxy's own \
             connections to the servers."
        ),
        &[
            "via",
            "requests/s",
            "x direct",
            "x HAProxy",
            "p99 ms",
            "errors",
            "client SYN retrans",
            "client retransmitted segments",
            "balancer SYN retrans",
            "lb pass/drop",
        ],
        rows,
    );
}
