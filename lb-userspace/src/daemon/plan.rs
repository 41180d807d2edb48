//! Resolving the config against this host: routes to every server (the full-NAT source and
//! the interfaces to attach to), host-only checks.
use std::{collections::BTreeSet, net::Ipv4Addr};

use anyhow::{Context, Result, anyhow};

use crate::{
    config::{self, Config, Diagnostic},
    dataplane::layout::Layout,
    net,
};

/// Problems only this host can reveal (VIPs that are not local, port overlaps).
pub fn host_diagnostics(cfg: &Config, usage: config::validate::HostUse) -> Vec<Diagnostic> {
    let local: Vec<Ipv4Addr> = net::local_addrs()
        .map(|v| v.into_iter().map(|a| a.addr).collect())
        .unwrap_or_default();
    config::validate::host(cfg, &local, net::ephemeral_ports(), usage)
}

/// The distinct addresses of `local`, in network order.
pub fn local_v4(local: &[net::LocalAddr]) -> Vec<u32> {
    let mut v: Vec<u32> = local
        .iter()
        .map(|l| crate::dataplane::layout::addr_be(l.addr))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Where packets come from and go to, resolved against this host.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    /// By `ServerId`: the LB's source address towards each server (full-NAT).
    pub snat: Vec<Ipv4Addr>,
    /// Interfaces to attach to, in a stable order.
    pub interfaces: Vec<String>,
    /// This host's IPv4 addresses (network order): where wildcard binds listen.
    pub local: Vec<u32>,
}

/// Resolves the config against the host: routes to every server, interfaces to attach to.
pub fn plan(cfg: &Config, extra: &[String]) -> Result<Plan> {
    let layout = Layout::new(cfg);
    let local = net::local_addrs()?;
    let mut ifaces = BTreeSet::new();
    for f in &cfg.frontends {
        for b in &f.binds {
            match b.addr {
                // A VIP on `lo` (several nodes announcing it) arrives on the real
                // interfaces: those towards the servers below, or the configured ones.
                Some(a) => {
                    for l in local.iter().filter(|l| l.addr == a && !l.loopback) {
                        ifaces.insert(l.ifname.clone());
                    }
                }
                // `*`: every interface that could receive it.
                None => {
                    for l in local.iter().filter(|l| l.up && !l.loopback) {
                        ifaces.insert(l.ifname.clone());
                    }
                }
            }
        }
    }
    let mut snat = Vec::new();
    for (pool, s) in layout.servers() {
        let route = net::route_get(s.addr)
            .with_context(|| format!("server {}/{} ({})", pool.name, s.name, s.addr))?;
        let src = route.prefsrc.ok_or_else(|| {
            anyhow!(
                "server {}/{} ({}): the route has no source address to use for full-NAT",
                pool.name,
                s.name,
                s.addr
            )
        })?;
        snat.push(src);
        if route.ifname != "lo" {
            ifaces.insert(route.ifname);
        }
    }
    ifaces.extend(cfg.global.interfaces.iter().cloned());
    ifaces.extend(extra.iter().cloned());
    Ok(Plan {
        layout,
        snat,
        interfaces: ifaces.into_iter().collect(),
        local: local_v4(&local),
    })
}
