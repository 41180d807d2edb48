//! Several lb nodes behind one address: each node's routing daemon (BIRD) announces the
//! VIPs to the upstream router, which spreads clients over the nodes (ECMP). lb only says
//! which VIPs this node may take: it keeps a route per VIP (`/32`, or `/128` for an IPv6 VIP)
//! in a kernel routing table of its own (`announce_table`) while the VIP has a server of its
//! family that takes new flows, and removes it when none is left or lb stops. BIRD exports what it learns from that table and withdraws
//! what disappears from it; BIRD stays the only one speaking BGP.
//!
//! The routes point at `lo` and live in a table nothing routes with: they are only a signal.
use std::{collections::BTreeSet, net::IpAddr};

use anyhow::Result;

use crate::{
    config::{Config, Family},
    dataplane::{ids::BackendId, layout::Layout},
};

/// The VIPs of a configuration and the backends behind each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vips {
    pub table: Option<u32>,
    by_addr: Vec<(IpAddr, Vec<BackendId>)>,
}

impl Vips {
    /// Explicit bind addresses of either family: a wildcard bind has no one address to
    /// announce (validation says so).
    pub fn of(cfg: &Config, layout: &Layout) -> Vips {
        let mut by_addr: Vec<(IpAddr, Vec<BackendId>)> = Vec::new();
        for f in &cfg.frontends {
            let Some(pool) = layout.pools.iter().find(|p| p.name == f.default_backend) else {
                continue;
            };
            let explicit = f.binds.iter().filter(|b| !b.is_wildcard()).map(|b| b.addr);
            for addr in explicit {
                match by_addr.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, ids)) if !ids.contains(&pool.id) => ids.push(pool.id),
                    Some(_) => {}
                    None => by_addr.push((addr, vec![pool.id])),
                }
            }
        }
        Vips {
            table: cfg.global.announce_table,
            by_addr,
        }
    }

    /// The VIPs to announce: those with a backend that takes new flows of the VIP's family
    /// (a pool serves one family: an IPv6 VIP needs an IPv6 server, an IPv4 one an IPv4
    /// server).
    pub fn wanted(&self, takes_flows: impl Fn(BackendId, Family) -> bool) -> BTreeSet<IpAddr> {
        self.by_addr
            .iter()
            .filter(|(a, ids)| ids.iter().any(|&b| takes_flows(b, Family::of(*a))))
            .map(|(a, _)| *a)
            .collect()
    }
}

/// What this node announces (the routes it keeps in the announce table).
#[derive(Debug, Default)]
pub struct Announcer {
    vips: Vips,
    /// Announced by this process, in `table`.
    up: BTreeSet<IpAddr>,
    /// Off until the data plane is attached, and again once lb stops.
    enabled: bool,
}

/// A change of announcement, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Announced(IpAddr),
    Withdrawn(IpAddr),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Announced(a) => write!(f, "VIP {a} announced: it has a server UP"),
            Change::Withdrawn(a) => write!(f, "VIP {a} withdrawn"),
        }
    }
}

impl Announcer {
    /// Takes a new configuration's VIPs; routes of VIPs it no longer has go at the next
    /// [`Announcer::sync`] (all of them if the table changed).
    pub fn set_vips(&mut self, vips: Vips) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        if vips.table != self.vips.table {
            changes = self.remove_all()?;
        }
        self.vips = vips;
        Ok(changes)
    }

    pub fn start(&mut self) {
        self.enabled = true;
    }

    /// Brings the table in line with which backends take new flows of which family.
    pub fn sync(&mut self, takes_flows: impl Fn(BackendId, Family) -> bool) -> Result<Vec<Change>> {
        let Some(table) = self.vips.table.filter(|_| self.enabled) else {
            return Ok(Vec::new());
        };
        let want = self.vips.wanted(takes_flows);
        let mut changes = Vec::new();
        for &a in want.difference(&self.up.clone()) {
            crate::net::vip_route(a, table, true)?;
            self.up.insert(a);
            changes.push(Change::Announced(a));
        }
        for &a in self.up.clone().difference(&want) {
            crate::net::vip_route(a, table, false)?;
            self.up.remove(&a);
            changes.push(Change::Withdrawn(a));
        }
        Ok(changes)
    }

    /// Removes every route this process announced, and announces nothing more: lb stops.
    pub fn withdraw_all(&mut self) -> Result<Vec<Change>> {
        self.enabled = false;
        self.remove_all()
    }

    fn remove_all(&mut self) -> Result<Vec<Change>> {
        let Some(table) = self.vips.table else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        for a in std::mem::take(&mut self.up) {
            crate::net::vip_route(a, table, false)?;
            changes.push(Change::Withdrawn(a));
        }
        Ok(changes)
    }

    /// Whether anything is announced (a stop then waits for the router to hear the withdrawal).
    pub fn announcing(&self) -> bool {
        !self.up.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_vip_is_wanted_while_one_of_its_backends_takes_flows() {
        let cfg = native::parse(
            "t.toml",
            r#"
[global]
announce_table = 100
[frontend.web]
bind = ["10.9.0.1:80", "10.9.0.2:80", "*:8080"]
default_backend = "a"
[frontend.dns]
bind = ["10.9.0.1:53/udp"]
default_backend = "b"
[backend.a]
[backend.b]
"#,
        )
        .expect("parses");
        let vips = Vips::of(&cfg, &Layout::new(&cfg));
        assert_eq!(vips.table, Some(100));
        let all: BTreeSet<_> = [ip("10.9.0.1"), ip("10.9.0.2")].into();
        assert_eq!(vips.wanted(|_, _| true), all);
        // 10.9.0.1 also serves backend b: it stays while b has a server.
        assert_eq!(
            vips.wanted(|b, _| b == BackendId(1)),
            [ip("10.9.0.1")].into()
        );
        assert!(vips.wanted(|_, _| false).is_empty());
    }

    #[test]
    fn an_ipv6_vip_is_wanted_while_its_backend_takes_ipv6_flows() {
        let cfg = native::parse(
            "t.toml",
            r#"
[global]
announce_table = 100
[frontend.web]
bind = ["10.9.0.1:80", "[2001:db8::1]:80", ":::8080", "2001:db8::2:443"]
default_backend = "a"
[backend.a]
server = [
  { name = "v4", address = "10.9.1.1:80" },
  { name = "v6", address = "[fd00::10]:80" },
]
"#,
        )
        .expect("parses");
        let vips = Vips::of(&cfg, &Layout::new(&cfg));
        // The dual-stack wildcard has no address to announce.
        let all: BTreeSet<_> = [ip("10.9.0.1"), ip("2001:db8::1"), ip("2001:db8::2")].into();
        assert_eq!(vips.wanted(|_, _| true), all);
        // Each family's VIPs follow that family's servers only.
        assert_eq!(
            vips.wanted(|_, f| f == Family::V6),
            [ip("2001:db8::1"), ip("2001:db8::2")].into()
        );
        assert_eq!(vips.wanted(|_, f| f == Family::V4), [ip("10.9.0.1")].into());
    }
}
