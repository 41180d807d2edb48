//! Resolving the config against this host: routes to every server (the full-NAT source and
//! the interfaces to attach to), host-only checks.
use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context, Result, anyhow};

use crate::{
    config::{self, Config, Diagnostic},
    dataplane::layout::Layout,
    net,
};

/// Problems only this host can reveal (VIPs that are not local, port overlaps).
pub fn host_diagnostics(cfg: &Config, usage: config::validate::HostUse) -> Vec<Diagnostic> {
    let local: Vec<IpAddr> = net::local_addrs()
        .map(|v| v.into_iter().map(|a| a.addr).collect())
        .unwrap_or_default();
    config::validate::host(cfg, &local, net::ephemeral_ports(), usage)
}

/// This host's addresses as the services maps hold them: where wildcard binds listen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// IPv4, network order, sorted, once each.
    pub v4: Vec<u32>,
    /// IPv6 (not link-local, see [`net::local_addrs`]), sorted, once each.
    pub v6: Vec<lb_common::Addr6>,
}

/// The distinct addresses of `local`, per family, in network order.
pub fn local_of(local: &[net::LocalAddr]) -> Local {
    use crate::dataplane::layout::{addr_be, addr6_be};
    let mut out = Local::default();
    for l in local {
        match l.addr {
            IpAddr::V4(a) => out.v4.push(addr_be(a)),
            IpAddr::V6(a) => out.v6.push(addr6_be(a)),
        }
    }
    out.v4.sort_unstable();
    out.v4.dedup();
    out.v6.sort_unstable();
    out.v6.dedup();
    out
}

/// Where packets come from and go to, resolved against this host.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    /// By `ServerId`: the LB's source address towards each server (full-NAT), of the
    /// server's family.
    pub snat: Vec<IpAddr>,
    /// Interfaces to attach to, in a stable order.
    pub interfaces: Vec<String>,
    /// This host's addresses: where wildcard binds listen.
    pub local: Local,
}

/// Resolves the config against the host: routes to every server, interfaces to attach to.
pub fn plan(cfg: &Config, extra: &[String]) -> Result<Plan> {
    let layout = Layout::new(cfg);
    let local = net::local_addrs()?;
    let mut ifaces = BTreeSet::new();
    for f in &cfg.frontends {
        for b in &f.binds {
            if b.is_wildcard() {
                // `*`, `::`: every interface that could receive it.
                for l in local.iter().filter(|l| l.up && !l.loopback) {
                    ifaces.insert(l.ifname.clone());
                }
            } else {
                // A VIP on `lo` (several nodes announcing it) arrives on the real
                // interfaces: those towards the servers below, or the configured ones.
                for l in local.iter().filter(|l| l.addr == b.addr && !l.loopback) {
                    ifaces.insert(l.ifname.clone());
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
        local: local_of(&local),
    })
}
