//! Numbering (pure): turns the config into the ids the maps use. Pools are backends in
//! declaration order, servers are numbered across all backends, frontends likewise.
use std::net::Ipv4Addr;

use lb_common::{POOL_F_DNAT, POOL_F_EMPTY_PASS, PortFilter, PortSide, ServiceKey, ServiceValue};

use crate::config::{Config, NatMode, OnEmpty};

#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub services: Vec<(ServiceKey, ServiceValue)>,
    /// Some bind is `*:port`.
    pub wildcard: bool,
    pub pools: Vec<PoolLayout>,
    pub frontends: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolLayout {
    pub id: u32,
    pub name: String,
    /// `POOL_F_*`.
    pub flags: u32,
    pub allbackups: bool,
    pub servers: Vec<ServerLayout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerLayout {
    pub id: u32,
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
    pub disabled: bool,
}

impl Layout {
    pub fn new(c: &Config) -> Layout {
        let mut next_server = 0u32;
        let pools: Vec<PoolLayout> = c
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut flags = 0;
                if b.nat == NatMode::Dnat {
                    flags |= POOL_F_DNAT;
                }
                if b.on_empty == OnEmpty::Pass {
                    flags |= POOL_F_EMPTY_PASS;
                }
                let servers = b
                    .servers
                    .iter()
                    .map(|s| {
                        let id = next_server;
                        next_server += 1;
                        ServerLayout {
                            id,
                            name: s.name.clone(),
                            addr: s.addr,
                            port: s.port,
                            weight: s.weight,
                            backup: s.backup,
                            disabled: s.disabled,
                        }
                    })
                    .collect();
                PoolLayout {
                    id: i as u32,
                    name: b.name.clone(),
                    flags,
                    allbackups: b.allbackups,
                    servers,
                }
            })
            .collect();
        let mut services = Vec::new();
        let mut wildcard = false;
        for (fid, f) in c.frontends.iter().enumerate() {
            let Some(pool) = pools.iter().position(|p| p.name == f.default_backend) else {
                continue; // validation reports it
            };
            for b in &f.binds {
                wildcard |= b.addr.is_none();
                services.push((
                    ServiceKey {
                        addr: b.addr.map_or(0, |a| u32::from_ne_bytes(a.octets())),
                        port: b.port.to_be(),
                        proto: b.proto.number(),
                        _pad: 0,
                    },
                    ServiceValue {
                        pool: pool as u32,
                        frontend: fid as u32,
                    },
                ));
            }
        }
        Layout {
            services,
            wildcard,
            pools,
            frontends: c.frontends.iter().map(|f| f.name.clone()).collect(),
        }
    }

    pub fn servers(&self) -> impl Iterator<Item = (&PoolLayout, &ServerLayout)> {
        self.pools
            .iter()
            .flat_map(|p| p.servers.iter().map(move |s| (p, s)))
    }

    pub fn server_count(&self) -> u32 {
        self.pools.iter().map(|p| p.servers.len() as u32).sum()
    }

    /// The ports a tracked packet can carry: services' on the way in, servers' on the way
    /// back. Everything else is passed before any conntrack lookup.
    pub fn port_filter(&self) -> PortFilter {
        let mut f = PortFilter::default();
        for (k, _) in &self.services {
            f.add(PortSide::Service, u16::from_be(k.port));
        }
        for (_, s) in self.servers() {
            f.add(PortSide::Server, s.port);
        }
        f
    }
}

/// Network-order map representation of an address.
pub fn addr_be(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// Inverse of [`addr_be`].
pub fn addr_of(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(be.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native;

    #[test]
    fn ids_follow_declaration_order() {
        let c = native::parse(
            "t.toml",
            r#"
[frontend.web]
bind = ["10.0.0.1:80", "*:8080"]
default_backend = "b2"
[frontend.dns]
bind = ["10.0.0.1:53/udp"]
default_backend = "b1"
[backend.b1]
nat = "dnat"
on_empty = "pass"
server = [{ name = "d1", address = "10.0.2.1:53" }]
[backend.b2]
server = [{ name = "w1", address = "10.0.1.1:80" }, { name = "w2", address = "10.0.1.2:80", weight = 3 }]
"#,
        )
        .expect("parses");
        let l = Layout::new(&c);
        assert!(l.wildcard);
        assert_eq!(l.frontends, ["web", "dns"]);
        assert_eq!(l.pools[0].flags, POOL_F_DNAT | POOL_F_EMPTY_PASS);
        assert_eq!(l.pools[1].flags, 0);
        let ids: Vec<_> = l
            .servers()
            .map(|(p, s)| (p.id, s.id, s.name.as_str()))
            .collect();
        assert_eq!(ids, [(0, 0, "d1"), (1, 1, "w1"), (1, 2, "w2")]);
        assert_eq!(l.services.len(), 3);
        let (k, v) = l.services[0];
        assert_eq!(
            (addr_of(k.addr), u16::from_be(k.port), k.proto),
            ("10.0.0.1".parse().expect("ip"), 80, 6)
        );
        assert_eq!((v.pool, v.frontend), (1, 0));
        assert_eq!(l.services[1].0.addr, 0);
        assert_eq!(
            (
                l.services[2].0.proto,
                l.services[2].1.pool,
                l.services[2].1.frontend
            ),
            (17, 0, 1)
        );
        let ports = l.port_filter();
        for p in [80, 8080, 53] {
            assert!(ports.has(PortSide::Service, p), "service port {p}");
        }
        for p in [53, 80] {
            assert!(ports.has(PortSide::Server, p), "server port {p}");
        }
        assert!(!ports.has(PortSide::Server, 8080) && !ports.has(PortSide::Service, 22));
    }
}
