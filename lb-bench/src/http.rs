//! HTTP end to end through the namespaces: `wrk` in the client namespace, two nginx backends,
//! and in between, in turn: nothing (straight to one backend through the LB namespace's
//! kernel routing, the upper bound), HAProxy 2.6 in `mode tcp` (Debian's, run in the LB
//! namespace with a generated config, stopped by PID), and lb (`lb run`) in both NAT modes:
//! DNAT (servers see the client, as with the direct case) and full-NAT (servers see the LB,
//! as with HAProxy). lb restarts between runs keep their pinned conntrack, as in production.
//!
//! The servers route via the LB namespace (`Routing::ViaLb`) so that the direct case and
//! DNAT work.
//!
//! Balancer CPU: HAProxy's is its process CPU time (all threads, /proc/PID/stat); lb's is the
//! XDP program's run time from `kernel.bpf_stats_enabled=1` (the packets' own path; what the
//! kernel does with the frame after the redirect is not in it) plus the daemon's CPU time.
//! Both are compared per request, since lb serves more requests in the same time.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use aya::{maps::MapInfo, programs::loaded_programs};
use lb_common::{PROG_LB, names};
use lb_testbed::{
    daemon::Daemon,
    netns::Netns,
    servers::{WebServer, wait_listening},
    topo::{Routing, Topology, VIP},
};

use crate::{
    Args,
    pktrate::lb_config,
    report::{Report, Spread, Target},
    sys::{BpfStats, cpu_time, status_kb},
};

const CONNECTIONS: u32 = 50;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Direct,
    Haproxy,
    /// lb with this `nat` mode.
    Lb(&'static str),
}

const VIAS: [(Via, &str); 4] = [
    (Via::Direct, "direct to one backend"),
    (Via::Haproxy, "HAProxy 2.6 mode tcp"),
    (Via::Lb("dnat"), "lb, DNAT"),
    (Via::Lb("full-nat"), "lb, full-NAT"),
];
const LB_DNAT: usize = 2;
const LB_FULL_NAT: usize = 3;

const MODES: [(bool, &str); 2] = [(false, "keep-alive"), (true, "new connection per request")];

/// One `wrk` run.
#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

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

pub fn run(args: &Args, out: &mut Report) -> Result<()> {
    let lb_bin = args.lb()?;
    let (reps, secs) = if args.quick { (3, 1) } else { (3, 6) };
    let topo = Topology::seed(Routing::ViaLb)?;
    let mut web = Vec::new();
    for b in &topo.backends {
        web.push(WebServer::nginx(&b.ns, &b.name, b.addr, 80)?);
    }
    topo.lb.sysctl("net.ipv4.ip_forward", "1")?;
    // Connection per request: TIME_WAIT would otherwise exhaust the client's default port
    // range and collide (SYN retransmits). The LB namespace keeps its default range
    // (32768-60999) for HAProxy's connections: it must stay clear of lb's full-NAT ports
    // (10000-32767), or the servers' TIME_WAIT entries from HAProxy's connections would
    // refuse lb's SYNs in the runs that follow.
    topo.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    topo.client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let direct = topo.backends[0].addr;
    let stats = BpfStats::enable()?;
    // Warm up the servers and the namespaces' neighbour tables (not measured).
    wrk(&topo.client, direct, 1, false)?;

    let mut samples: Vec<Vec<Vec<Sample>>> = VIAS
        .iter()
        .map(|_| MODES.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut rss = Vec::new();
    let mut pins = Vec::new();
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..reps {
        for (vi, (via, name)) in VIAS.iter().enumerate() {
            let mut haproxy = None;
            let mut daemon = None;
            let target = match via {
                Via::Direct => direct,
                Via::Haproxy => {
                    haproxy = Some(Haproxy::start(&topo)?);
                    VIP
                }
                Via::Lb(nat) => {
                    let instance = format!("bh{}{}", &nat[..1], topo.tag);
                    let mut d = Daemon::start(
                        &lb_bin,
                        &topo.lb,
                        &instance,
                        &lb_config(&instance, 262_144, nat),
                        "toml",
                    )?;
                    // Restarts keep conntrack, as `lb run` does in production (pinned maps).
                    d.keep_pins = true;
                    pins.push(d.pin_dir());
                    d.wait_ready()?;
                    daemon = Some(d);
                    VIP
                }
            };
            for (mi, (close, mode)) in MODES.iter().enumerate() {
                let cpu_before = match (&haproxy, &daemon) {
                    (Some(h), _) => Some(Usage::of_pid(h.pid())?),
                    (_, Some(d)) => Some(Usage::of_lb(d)?),
                    _ => None,
                };
                let syn0 = topo.client.nstat("TcpExtTCPSynRetrans")?;
                let t = Instant::now();
                let w = wrk(&topo.client, target, secs, *close)
                    .with_context(|| format!("wrk via {name}, {mode}"))?;
                let elapsed = t.elapsed().as_secs_f64();
                let syn_retrans = topo.client.nstat("TcpExtTCPSynRetrans")? - syn0;
                let cpu_after = match (&haproxy, &daemon) {
                    (Some(h), _) => Some(Usage::of_pid(h.pid())?),
                    (_, Some(d)) => Some(Usage::of_lb(d)?),
                    _ => None,
                };
                let (cpu, xdp) = match (cpu_before, cpu_after) {
                    (Some(a), Some(b)) => (Some(b.total() - a.total()), Some(b.xdp - a.xdp)),
                    _ => (None, None),
                };
                ensure!(
                    w.requests > 0,
                    "wrk via {name}, {mode}: no request completed"
                );
                samples[vi][mi].push(Sample {
                    wrk: w,
                    cpu,
                    xdp: if matches!(via, Via::Lb(_)) { xdp } else { None },
                    secs: elapsed,
                    syn_retrans,
                });
            }
            if let Some(d) = &daemon
                && let Some(pid) = d.pid()
            {
                rss.push(status_kb(pid, "VmRSS")? as f64 / 1024.0);
                let maps = lb::dataplane::Maps::from_pins(&d.pin_dir())?;
                for (r, n) in maps.reasons()? {
                    if n > 0 {
                        *reasons.entry(r.name()).or_insert(0) += n;
                    }
                }
            }
            if let Some(mut d) = daemon.take() {
                d.stop()?;
            }
            if let Some(h) = haproxy.take() {
                h.stop()?;
            }
        }
    }
    drop(stats);
    drop(web);
    for p in pins {
        let _ = std::fs::remove_dir_all(p);
    }

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
        for (vi, (via, name)) in VIAS.iter().enumerate() {
            let s = rps(vi, mi);
            bars.push((format!("{name}, {mode}"), s));
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
                name.to_string(),
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
            Spread::of(&rss).median,
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
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
    Ok(())
}

/// Balancer CPU so far: process CPU, and for lb its XDP program's run time.
struct Usage {
    process: f64,
    xdp: f64,
}

impl Usage {
    fn total(&self) -> f64 {
        self.process + self.xdp
    }

    fn of_pid(pid: u32) -> Result<Usage> {
        Ok(Usage {
            process: cpu_time(pid)?.as_secs_f64(),
            xdp: 0.0,
        })
    }

    fn of_lb(d: &Daemon) -> Result<Usage> {
        let pid = d.pid().context("lb is not running")?;
        Ok(Usage {
            process: cpu_time(pid)?.as_secs_f64(),
            xdp: xdp_run_time(&d.pin_dir())?.as_secs_f64(),
        })
    }
}

/// Run time (bpf_stats) of the `lb_xdp` program(s) using this instance's conntrack map.
pub fn xdp_run_time(pin_dir: &Path) -> Result<Duration> {
    let path = lb::dataplane::maps::pin_path(pin_dir, names::LB_FLOWS)?;
    let flows = MapInfo::from_pin(&path)
        .with_context(|| format!("opening {}", path.display()))?
        .id();
    let mut total = Duration::ZERO;
    let mut found = false;
    for p in loaded_programs() {
        let Ok(p) = p else { continue };
        if p.name_as_str() != Some(PROG_LB) {
            continue;
        }
        if p.map_ids()
            .ok()
            .flatten()
            .unwrap_or_default()
            .contains(&flows)
        {
            total += p.run_time();
            found = true;
        }
    }
    ensure!(found, "no {PROG_LB} program uses map {flows}");
    Ok(total)
}

/// Runs `wrk` in `ns` against `http://addr/` for `secs` seconds; killed by PID if it overruns.
pub fn wrk(ns: &Netns, addr: Ipv4Addr, secs: u32, close: bool) -> Result<WrkResult> {
    let mut cmd = ns.command("wrk")?;
    cmd.args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{secs}s"),
        "--timeout",
        "2s",
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting wrk")?;
    let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 20);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish in time (killed)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    ensure!(
        o.status.success(),
        "wrk failed ({}): {}{}",
        o.status,
        text,
        String::from_utf8_lossy(&o.stderr)
    );
    parse_wrk(&text)
}

fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e3)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * scale)
}

pub fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut p50, mut p99, mut rps, mut reqs) = (None, None, None, None);
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("50%") {
            p50 = duration_ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            p99 = duration_ms(v);
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if l.contains(" requests in ") {
            reqs = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    match (p50, p99, rps, reqs) {
        (Some(a), Some(b), Some(c), Some(d)) => {
            r.p50_ms = a;
            r.p99_ms = b;
            r.rps = c;
            r.requests = d;
            Ok(r)
        }
        _ => bail!("cannot read wrk's output:\n{text}"),
    }
}

/// HAProxy 2.6 in the LB namespace, `mode tcp`, round robin over the same two servers.
struct Haproxy {
    child: Option<Child>,
    dir: PathBuf,
}

impl Haproxy {
    fn start(topo: &Topology) -> Result<Haproxy> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-haproxy", topo.tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let servers: String = topo
            .backends
            .iter()
            .map(|b| format!("    server {} {}:80\n", b.name, b.addr))
            .collect();
        let cfg = format!(
            "global\n    maxconn 8000\n\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n\n\
             frontend main\n    bind {VIP}:80\n    default_backend web\n\n\
             backend web\n    balance roundrobin\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg)?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = topo
            .lb
            .command("/usr/sbin/haproxy")?
            .args(["-f", &path.display().to_string(), "-db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting /usr/sbin/haproxy")?;
        let h = Haproxy {
            child: Some(child),
            dir,
        };
        let addr = SocketAddr::from((VIP, 80));
        topo.client
            .run(move || wait_listening(addr, Duration::from_secs(10)))?
            .with_context(|| {
                format!(
                    "HAProxy did not start: {}",
                    std::fs::read_to_string(h.dir.join("haproxy.log")).unwrap_or_default()
                )
            })?;
        Ok(h)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM by PID, then a bounded wait (SIGKILL after 5 s).
    fn stop(mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        bail!("HAProxy did not exit within 5 s of SIGTERM")
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 2s test @ http://10.200.0.1/\n  1 threads and 50 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   832.49us  \
            200.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  774.00us\n     \
            75%    0.90ms\n     90%    1.08ms\n     99%    1.61ms\n  119830 requests in \
            2.00s, 30.40MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  \
            Non-2xx or 3xx responses: 5\nRequests/sec:  59877.86\nTransfer/sec:     15.19MB\n";
        let r = parse_wrk(text).expect("parses");
        assert_eq!(r.requests, 119830);
        assert!((r.rps - 59877.86).abs() < 1e-6);
        assert!((r.p50_ms - 0.774).abs() < 1e-9);
        assert!((r.p99_ms - 1.61).abs() < 1e-9);
        assert_eq!(r.errors, 9);
        assert!(parse_wrk("garbage").is_err());
    }
}
