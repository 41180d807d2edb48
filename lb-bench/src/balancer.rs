//! What sits between the client and the servers in the HTTP benchmarks, in turn: nothing
//! (straight to one server through the LB namespace's kernel routing, the upper bound),
//! HAProxy 2.6 in `mode tcp`, and lb (`lb run`) in both NAT modes: DNAT (servers see the
//! client, as with the direct case) and full-NAT (servers see the LB, as with HAProxy).
//!
//! Balancer CPU: HAProxy's is its process CPU time (all threads, /proc/PID/stat); lb's is the
//! XDP program's run time from `kernel.bpf_stats_enabled=1` (the packets' own path; what the
//! kernel does with the frame after the redirect is not in it) plus the daemon's CPU time.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use aya::{maps::MapInfo, programs::loaded_programs};
use lb_common::{PROG_LB, names};
use lb_testbed::{
    config::SeedConfig,
    daemon::Daemon,
    topo::{Topology, VIP, VIP6, backend6},
};

use crate::{
    haproxy::Haproxy,
    sys::{cpu_time, status_kb},
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    Direct,
    Haproxy,
    /// lb with this `nat` mode.
    Lb(&'static str),
}

pub const VIAS: [Via; 4] = [
    Via::Direct,
    Via::Haproxy,
    Via::Lb("dnat"),
    Via::Lb("full-nat"),
];

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct to one backend",
            Via::Haproxy => "HAProxy 2.6 mode tcp",
            Via::Lb("dnat") => "lb, DNAT",
            Via::Lb(_) => "lb, full-NAT",
        }
    }
}

/// `lb run`'s config for the seed topology: VIP:80 round robin over web10 and web11.
pub fn lb_config(instance: &str, conntrack: u32, nat: &str) -> String {
    SeedConfig::new(instance)
        .names("bench", "web")
        .nat(nat)
        .global(&format!("conntrack_entries = {conntrack}"))
        .to_string()
}

/// The same for the topology's IPv6 addresses (`Topology::add_ipv6`): the IPv6 VIP:80 round
/// robin over web10's and web11's IPv6 addresses.
pub fn lb_config6(instance: &str, conntrack: u32, nat: &str) -> String {
    let server = |n| format!("[{}]:80", backend6(n).0);
    let (web10, web11) = (server(10), server(11));
    SeedConfig::new(instance)
        .names("bench", "web")
        .bind(&format!("[{VIP6}]:80"))
        .addresses([&web10, &web11])
        .nat(nat)
        .global(&format!("conntrack_entries = {conntrack}"))
        .to_string()
}

/// lb's instance name in `topo` for `nat` (one per mode, so each keeps its own maps).
fn instance(topo: &Topology, nat: &str) -> String {
    format!("bh{}{}", &nat[..1], topo.tag)
}

/// Where lb's instance for `via` pins its maps in `topo` (None: not lb).
pub fn pin_dir(topo: &Topology, via: Via) -> Option<PathBuf> {
    match via {
        Via::Lb(nat) => Some(Path::new("/sys/fs/bpf/lb").join(instance(topo, nat))),
        _ => None,
    }
}

/// A balancer running for some measurements; stopped by [`Balancer::stop`] (or on drop).
pub struct Balancer {
    pub via: Via,
    /// Where the client sends its requests.
    pub target: Ipv4Addr,
    haproxy: Option<Haproxy>,
    daemon: Option<Daemon>,
}

impl Balancer {
    pub fn start(topo: &Topology, lb_bin: &Path, via: Via, direct: Ipv4Addr) -> Result<Balancer> {
        let mut b = Balancer {
            via,
            target: VIP,
            haproxy: None,
            daemon: None,
        };
        match via {
            Via::Direct => b.target = direct,
            Via::Haproxy => b.haproxy = Some(Haproxy::start(topo)?),
            Via::Lb(nat) => {
                let instance = instance(topo, nat);
                let mut d = Daemon::start(
                    lb_bin,
                    &topo.lb,
                    &instance,
                    &lb_config(&instance, 262_144, nat),
                    "toml",
                )?;
                // Restarts keep conntrack, as `lb run` does in production (pinned maps).
                d.keep_pins = true;
                d.wait_ready()?;
                b.daemon = Some(d);
            }
        }
        Ok(b)
    }

    /// The lb daemon, if this is lb.
    pub fn lb(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }

    /// Balancer CPU so far (None: nothing balances).
    pub fn usage(&self) -> Result<Option<Usage>> {
        if let Some(h) = &self.haproxy {
            return Ok(Some(Usage {
                process: cpu_time(h.pid())?.as_secs_f64(),
                xdp: 0.0,
            }));
        }
        let Some(d) = &self.daemon else {
            return Ok(None);
        };
        let pid = d.pid().context("lb is not running")?;
        Ok(Some(Usage {
            process: cpu_time(pid)?.as_secs_f64(),
            xdp: lb_prog_stats(&d.pin_dir())?.run_time.as_secs_f64(),
        }))
    }

    /// lb's pass/drop counters that are not zero (empty for the others).
    pub fn reasons(&self) -> Result<BTreeMap<&'static str, u64>> {
        let Some(d) = &self.daemon else {
            return Ok(BTreeMap::new());
        };
        let maps = lb::dataplane::Maps::from_pins(&d.pin_dir())?;
        Ok(maps
            .reasons()?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name(), n))
            .collect())
    }

    /// lb daemon's resident memory, MiB.
    pub fn rss_mib(&self) -> Result<Option<f64>> {
        match self.daemon.as_ref().and_then(Daemon::pid) {
            Some(pid) => Ok(Some(status_kb(pid, "VmRSS")? as f64 / 1024.0)),
            None => Ok(None),
        }
    }

    /// Stops the balancer; lb detaches from the interfaces (SIGINT), so that the next via
    /// finds the LB namespace as it was.
    pub fn stop(mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            if let Some(pid) = d.pid() {
                // SAFETY: signalling our own child by PID.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
                // Gone before `stop`'s SIGTERM, which would only hand over.
                exited(pid, Duration::from_secs(10));
            }
            d.stop()?;
        }
        if let Some(h) = self.haproxy.take() {
            h.stop()?;
        }
        Ok(())
    }
}

/// Waits (bounded) until child `pid` has exited (a zombie until reaped, or gone).
fn exited(pid: u32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z')) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return,
        }
    }
}

/// Balancer CPU so far: process CPU, and for lb its XDP program's run time.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub process: f64,
    pub xdp: f64,
}

impl Usage {
    pub fn total(&self) -> f64 {
        self.process + self.xdp
    }
}

/// A BPF program's run-time statistics (`kernel.bpf_stats_enabled=1`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub run_time: Duration,
    pub runs: u64,
}

impl ProgStats {
    /// What ran between `before` and `self`.
    pub fn since(self, before: ProgStats) -> ProgStats {
        ProgStats {
            run_time: self.run_time.saturating_sub(before.run_time),
            runs: self.runs.saturating_sub(before.runs),
        }
    }

    /// Average nanoseconds per run.
    pub fn ns_per_run(&self) -> f64 {
        self.run_time.as_nanos() as f64 / self.runs.max(1) as f64
    }
}

/// Statistics of the `lb_xdp` program(s) using this instance's flow cache (one per attached
/// interface, summed; the kernel counts the programs it tail-calls in its runs).
pub fn lb_prog_stats(pin_dir: &Path) -> Result<ProgStats> {
    let path = lb::dataplane::maps::pin_path(pin_dir, names::LB_FLOW_CACHE)?;
    let flows = MapInfo::from_pin(&path)
        .with_context(|| format!("opening {}", path.display()))?
        .id();
    let mut total = ProgStats::default();
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
            total.run_time += p.run_time();
            total.runs += p.run_count();
            found = true;
        }
    }
    ensure!(found, "no {PROG_LB} program uses map {flows}");
    Ok(total)
}
