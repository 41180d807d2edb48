//! Several lb nodes behind one address: each node's routing daemon (BIRD) announces the
//! VIPs to the upstream router, which spreads clients over the nodes (ECMP). lb only says
//! which VIPs this node may take: it keeps a `/32` route per VIP in a kernel routing table of
//! its own (`announce_table`) while the VIP has a server that takes new flows, and removes it
//! when none is left or lb stops. BIRD exports what it learns from that table and withdraws
//! what disappears from it; BIRD stays the only one speaking BGP.
//!
//! The routes point at `lo` and live in a table nothing routes with: they are only a signal.
use std::{collections::BTreeSet, net::Ipv4Addr};

use anyhow::Result;

use crate::{
    config::Config,
    dataplane::{ids::BackendId, layout::Layout},
};

/// The VIPs of a configuration and the backends behind each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vips {
    pub table: Option<u32>,
    by_addr: Vec<(Ipv4Addr, Vec<BackendId>)>,
}

impl Vips {
    /// Explicit IPv4 bind addresses only: a wildcard bind has no one address to announce,
    /// and IPv6 VIPs are not announced yet (validation says so for both).
    pub fn of(cfg: &Config, layout: &Layout) -> Vips {
        let mut by_addr: Vec<(Ipv4Addr, Vec<BackendId>)> = Vec::new();
        for f in &cfg.frontends {
            let Some(pool) = layout.pools.iter().find(|p| p.name == f.default_backend) else {
                continue;
            };
            let v4 = f.binds.iter().filter_map(|b| match b.addr {
                std::net::IpAddr::V4(a) if !a.is_unspecified() => Some(a),
                _ => None,
            });
            for addr in v4 {
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

    /// The VIPs to announce: those with a backend that takes new flows.
    pub fn wanted(&self, takes_flows: impl Fn(BackendId) -> bool) -> BTreeSet<Ipv4Addr> {
        self.by_addr
            .iter()
            .filter(|(_, ids)| ids.iter().any(|&b| takes_flows(b)))
            .map(|(a, _)| *a)
            .collect()
    }
}

/// What this node announces (the routes it keeps in the announce table).
#[derive(Debug, Default)]
pub struct Announcer {
    vips: Vips,
    /// Announced by this process, in `table`.
    up: BTreeSet<Ipv4Addr>,
    /// Off until the data plane is attached, and again once lb stops.
    enabled: bool,
}

/// A change of announcement, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Announced(Ipv4Addr),
    Withdrawn(Ipv4Addr),
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

    /// Brings the table in line with which backends take new flows.
    pub fn sync(&mut self, takes_flows: impl Fn(BackendId) -> bool) -> Result<Vec<Change>> {
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
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let all: BTreeSet<_> = [ip("10.9.0.1"), ip("10.9.0.2")].into();
        assert_eq!(vips.wanted(|_| true), all);
        // 10.9.0.1 also serves backend b: it stays while b has a server.
        assert_eq!(vips.wanted(|b| b == BackendId(1)), [ip("10.9.0.1")].into());
        assert!(vips.wanted(|_| false).is_empty());
    }
}
