//! Numbering (pure): turns the config into the ids the daemon uses and the slots the maps use
//! (see [`super::ids`]). Pools are backends in declaration order, servers are numbered across
//! all backends, frontends likewise.
//!
//! Slots are kept across reloads and restarts for every backend and server that stays (by
//! name, see [`Layout::keep_slots`]), so adding or removing a server never moves another
//! server's flows.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{
    Addr6, Algorithm, MAGLEV_RINGS, MAX_POOLS, MAX_SERVERS, POOL_F_DNAT, POOL_F_DSR,
    POOL_F_EMPTY_PASS, POOL_F_HASH_SOURCE, POOL_F_MAXCONN, POOL_F_REDISPATCH, POOL_RETRIES_SHIFT,
    PortFilter, PortSide, ServiceKey, ServiceKey6, ServiceValue, Timeouts, addr6_from_octets,
    addr6_octets, draws_flags, name_field, name_str, pool_ring, ring_flags,
};

use super::{
    access::{self, AccessEntry, AccessEntry6},
    ids::{BackendId, PoolSlot, ServerId, ServerSlot},
};
use crate::config::{Backend, Balance, Config, Family, NatMode, OnEmpty, Server};

#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// IPv4 services as bound: `addr == 0` for a wildcard bind (`*:port`, and the IPv4 half
    /// of a dual-stack `:::port`), see [`Layout::service_entries`].
    pub services: Vec<(ServiceKey, ServiceValue)>,
    /// IPv6 services as bound: `addr == [0; 4]` for `:::port`; their pool is the backend's
    /// IPv6 pool ([`PoolLayout::slot6`]).
    pub services6: Vec<(ServiceKey6, ServiceValue)>,
    /// Some bind is a wildcard.
    pub wildcard: bool,
    /// By [`BackendId`].
    pub pools: Vec<PoolLayout>,
    pub frontends: Vec<String>,
    /// `LB_ACCESS`: every frontend's `tcp-request connection` rules for IPv4 clients.
    pub access: Vec<AccessEntry>,
    /// `LB6_ACCESS`: the same for IPv6 clients.
    pub access6: Vec<AccessEntry6>,
}

/// A backend's pools: a pool slot serves one family (lb does not translate between
/// families), so a backend IPv6 clients reach has a second pool balancing its IPv6 servers.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLayout {
    pub id: BackendId,
    /// The pool of its IPv4 servers (every backend has one).
    pub slot: PoolSlot,
    /// The pool of its IPv6 servers, when some bind serving IPv6 leads here.
    pub slot6: Option<PoolSlot>,
    pub name: String,
    /// `POOL_F_*` of the IPv4 pool.
    pub flags: u32,
    /// `POOL_F_*` of the IPv6 pool: the same but for a hashing pool's ring.
    pub flags6: u32,
    /// Flow timeouts in the data plane's ticks.
    pub timeouts: Timeouts,
    pub allbackups: bool,
    pub balance: Balance,
    /// A hashing pool's Maglev table size; 0 for pools that do not hash.
    pub hash_table_size: u32,
    /// In config order; their ids follow each other.
    pub servers: Vec<ServerLayout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerLayout {
    pub id: ServerId,
    pub slot: ServerSlot,
    /// Its backend's id.
    pub backend: BackendId,
    /// 1-based within its backend (HAProxy's `puid`).
    pub puid: u32,
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
    pub disabled: bool,
    /// 0: no limit.
    pub maxconn: u32,
    pub slowstart: Option<std::time::Duration>,
}

impl ServerLayout {
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// The config's backend and server this one was laid out from; `None` if `cfg` is not
    /// the config the layout was made of.
    pub fn config<'c>(&self, cfg: &'c Config) -> Option<(&'c Backend, &'c Server)> {
        let b = cfg.backends.get(self.backend.index())?;
        let s = b.servers.get(self.puid.checked_sub(1)? as usize)?;
        (s.name == self.name).then_some((b, s))
    }
}

/// The data plane's algorithm for a backend's `balance` and `hash-type`, as pool flags
/// (a hashing pool's ring is given later, see [`Layout::keep_rings`]).
fn algorithm(b: &Backend) -> u32 {
    if b.hashes() {
        let source = if b.balance == Balance::Source {
            POOL_F_HASH_SOURCE
        } else {
            0
        };
        return Algorithm::Maglev.flags() | source;
    }
    match b.balance {
        // static-rr is round robin whose weights the daemon keeps as configured; `source`
        // always hashes (above).
        Balance::RoundRobin | Balance::StaticRr | Balance::Source => Algorithm::RoundRobin.flags(),
        Balance::LeastConn => Algorithm::LeastConn.flags(),
        Balance::First => Algorithm::First.flags(),
        Balance::Random { draws } => Algorithm::Random.flags() | draws_flags(draws),
    }
}

impl PoolLayout {
    /// Whether the pool hashes new flows into a Maglev table.
    pub fn hashes(&self) -> bool {
        Algorithm::of_flags(self.flags) == Algorithm::Maglev
    }

    /// A hashing pool's ring (its pair of `LB_MAGLEV` values).
    pub fn ring(&self) -> u32 {
        pool_ring(self.flags)
    }

    /// The pool slot and flags of family `f`'s pool, if it has one.
    pub fn family_pool(&self, f: Family) -> Option<(PoolSlot, u32)> {
        match f {
            Family::V4 => Some((self.slot, self.flags)),
            Family::V6 => self.slot6.map(|s| (s, self.flags6)),
        }
    }

    /// The pool slot a server's entry names: its family's pool (the IPv4 one for an IPv6
    /// server no IPv6 client reaches).
    pub fn server_pool(&self, s: &ServerLayout) -> PoolSlot {
        match s.family() {
            Family::V6 => self.slot6.unwrap_or(self.slot),
            Family::V4 => self.slot,
        }
    }

    /// Its servers of family `f`.
    pub fn servers_of(&self, f: Family) -> impl Iterator<Item = &ServerLayout> {
        self.servers.iter().filter(move |s| s.family() == f)
    }
}

/// Whether `bind` leads clients of family `f` to `be`'s pool of that family: a bind of one
/// family always does (an empty pool drops them, as for IPv4), a dual-stack bind only where
/// the backend has servers of `f` (validation warns about the other family).
fn leads(bind: &crate::config::Bind, be: &Backend, f: Family) -> bool {
    let fams = bind.families();
    fams.contains(&f) && (be.has_family(f) || fams.len() == 1)
}

/// The name a backend's IPv6 pool goes by where rings are kept by name (a space is in no
/// backend's name, so it names no other backend).
fn v6_key(name: &str) -> String {
    format!("{} ipv6", short(name))
}

impl Layout {
    pub fn new(c: &Config) -> Layout {
        let mut next_server = 0u32;
        let mut pools: Vec<PoolLayout> = c
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let id = BackendId(i as u32);
                let mut flags = algorithm(b);
                if b.servers.iter().any(|s| s.maxconn.is_some_and(|m| m > 0)) {
                    flags |= POOL_F_MAXCONN;
                }
                match b.nat {
                    NatMode::Dnat => flags |= POOL_F_DNAT,
                    NatMode::DsrIpip => flags |= POOL_F_DSR,
                    NatMode::FullNat => {}
                }
                if b.on_empty == OnEmpty::Pass {
                    flags |= POOL_F_EMPTY_PASS;
                }
                if b.redispatch {
                    flags |= POOL_F_REDISPATCH | (b.retries.min(255) << POOL_RETRIES_SHIFT);
                }
                let servers = b
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        let n = next_server;
                        next_server += 1;
                        ServerLayout {
                            id: ServerId(n),
                            slot: ServerSlot(n),
                            backend: id,
                            puid: j as u32 + 1,
                            name: s.name.clone(),
                            addr: s.addr,
                            port: s.port,
                            weight: s.weight,
                            backup: s.backup,
                            disabled: s.disabled,
                            maxconn: s.maxconn.unwrap_or(0),
                            slowstart: s.slowstart,
                        }
                    })
                    .collect();
                PoolLayout {
                    id,
                    slot: PoolSlot(id.0),
                    slot6: None,
                    name: b.name.clone(),
                    flags,
                    flags6: flags,
                    timeouts: b.timeouts.flows(),
                    allbackups: b.allbackups,
                    balance: b.balance,
                    hash_table_size: if b.hashes() { b.hash_table_size } else { 0 },
                    servers,
                }
            })
            .collect();
        let mut next_pool = c.backends.len() as u32;
        for f in &c.frontends {
            let Some((i, be)) = c
                .backends
                .iter()
                .enumerate()
                .find(|(_, b)| b.name == f.default_backend)
            else {
                continue;
            };
            if pools[i].slot6.is_none() && f.binds.iter().any(|b| leads(b, be, Family::V6)) {
                pools[i].slot6 = Some(PoolSlot(next_pool));
                next_pool += 1;
            }
        }
        let mut services = Vec::new();
        let mut services6 = Vec::new();
        let mut wildcard = false;
        for (fid, f) in c.frontends.iter().enumerate() {
            let Some((i, be)) = c
                .backends
                .iter()
                .enumerate()
                .find(|(_, b)| b.name == f.default_backend)
            else {
                continue; // validation reports it
            };
            let pool = &pools[i];
            for b in &f.binds {
                wildcard |= b.is_wildcard();
                if leads(b, be, Family::V4) {
                    let addr = match b.addr {
                        IpAddr::V4(a) => addr_be(a),
                        IpAddr::V6(_) => 0, // the IPv4 half of `:::port`
                    };
                    services.push((
                        ServiceKey {
                            addr,
                            port: b.port.to_be(),
                            proto: b.proto.number(),
                            _pad: 0,
                        },
                        ServiceValue {
                            pool: pool.slot.0,
                            frontend: fid as u32,
                        },
                    ));
                }
                if let (true, Some(slot6), IpAddr::V6(a)) =
                    (leads(b, be, Family::V6), pool.slot6, b.addr)
                {
                    services6.push((
                        ServiceKey6 {
                            addr: addr6_be(a),
                            port: b.port.to_be(),
                            proto: b.proto.number(),
                            _pad: 0,
                        },
                        ServiceValue {
                            pool: slot6.0,
                            frontend: fid as u32,
                        },
                    ));
                }
            }
        }
        let mut l = Layout {
            services,
            services6,
            wildcard,
            pools,
            frontends: c.frontends.iter().map(|f| f.name.clone()).collect(),
            access: c
                .frontends
                .iter()
                .enumerate()
                .flat_map(|(fid, f)| access::entries(fid as u32, f))
                .collect(),
            access6: c
                .frontends
                .iter()
                .enumerate()
                .flat_map(|(fid, f)| access::entries6(fid as u32, f))
                .collect(),
        };
        l.keep_rings(&[]);
        l
    }

    /// Hashing pools and their rings, by backend name (an IPv6 pool's by [`v6_key`]): what
    /// the next layout keeps.
    pub fn rings(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for p in self.pools.iter().filter(|p| p.hashes()) {
            out.push((p.name.clone(), p.ring()));
            if p.slot6.is_some() {
                out.push((v6_key(&p.name), pool_ring(p.flags6)));
            }
        }
        out
    }

    /// Gives hashing pools that had a ring (`old`, by backend name) the same one, the others
    /// the lowest free rings: a reload never points a pool at a table another pool is
    /// rewriting. Validation keeps hashing pools within `MAGLEV_RINGS`.
    pub fn keep_rings(&mut self, old: &[(String, u32)]) {
        let mut taken = vec![false; MAGLEV_RINGS as usize];
        // Every hashing pool of either family, by the name its ring is kept under.
        let mut hashing: Vec<(String, &mut u32, Option<u32>)> = Vec::new();
        for p in self.pools.iter_mut().filter(|p| p.hashes()) {
            let v6 = p.slot6.is_some().then(|| v6_key(&p.name));
            hashing.push((short(&p.name), &mut p.flags, None));
            if let Some(k) = v6 {
                hashing.push((k, &mut p.flags6, None));
            }
        }
        for (name, _, ring) in &mut hashing {
            let was = old.iter().find(|(n, _)| short(n) == *name).map(|(_, r)| *r);
            *ring = was.filter(|&r| take(&mut taken, r));
        }
        for (_, flags, ring) in hashing {
            let r = ring.unwrap_or_else(|| lowest_free(&mut taken));
            *flags = (*flags & !ring_flags(u32::MAX)) | ring_flags(r);
        }
    }

    /// What `LB_SERVICES` holds on a host with these `local` IPv4 addresses (network
    /// order): exact binds as they are, and each wildcard bind once per local address, as
    /// HAProxy's INADDR_ANY means "this host's addresses" (traffic the host merely routes is
    /// not a service's). An exact bind wins over a wildcard on the same address and port.
    pub fn service_entries(&self, local: &[u32]) -> Vec<(ServiceKey, ServiceValue)> {
        per_local_address(&self.services, local, 0)
    }

    /// What `LB6_SERVICES` holds on a host with these `local` IPv6 addresses: as
    /// [`Layout::service_entries`], `:::port` once per local IPv6 address.
    pub fn service_entries6(&self, local: &[Addr6]) -> Vec<(ServiceKey6, ServiceValue)> {
        per_local_address(&self.services6, local, [0; 4])
    }

    /// Every server with its pool, in id order.
    pub fn servers(&self) -> impl Iterator<Item = (&PoolLayout, &ServerLayout)> {
        self.pools
            .iter()
            .flat_map(|p| p.servers.iter().map(move |s| (p, s)))
    }

    pub fn server(&self, id: ServerId) -> Option<(&PoolLayout, &ServerLayout)> {
        self.servers().find(|(_, s)| s.id == id)
    }

    pub fn pool(&self, id: BackendId) -> Option<&PoolLayout> {
        self.pools.get(id.index())
    }

    /// Where each backend's servers live now, to hand over to the next layout.
    pub fn placed(&self) -> Vec<Placed> {
        self.servers()
            .map(|(p, s)| Placed {
                backend: short(&p.name),
                server: short(&s.name),
                slot: s.slot,
                pool_slot: p.server_pool(s),
                family: s.family(),
            })
            .collect()
    }

    /// Gives backends and servers that were already `placed` their old slots (by name), and
    /// the others the lowest slots nobody keeps. Services follow their pools. Returns the
    /// server slots that changed hands (whose counters start again).
    pub fn keep_slots(&mut self, placed: &[Placed]) -> Vec<ServerSlot> {
        let mut pools_taken = vec![false; MAX_POOLS as usize];
        let mut servers_taken = vec![false; MAX_SERVERS as usize];
        // Each family's pool keeps the slot its servers named.
        let mut pool_slot: Vec<[Option<u32>; 2]> = vec![[None; 2]; self.pools.len()];
        for (i, p) in self.pools.iter().enumerate() {
            let name = short(&p.name);
            for (j, fam) in [Family::V4, Family::V6].into_iter().enumerate() {
                if fam == Family::V6 && p.slot6.is_none() {
                    continue;
                }
                let old = placed
                    .iter()
                    .find(|x| x.backend == name && x.family == fam)
                    .map(|x| x.pool_slot.0);
                if let Some(slot) = old.filter(|&s| take(&mut pools_taken, s)) {
                    pool_slot[i][j] = Some(slot);
                }
            }
        }
        let mut server_slot: Vec<Vec<Option<u32>>> = Vec::new();
        for p in &self.pools {
            let backend = short(&p.name);
            let mut v = Vec::new();
            for s in &p.servers {
                let server = short(&s.name);
                let old = placed
                    .iter()
                    .find(|x| x.backend == backend && x.server == server)
                    .map(|x| x.slot.0);
                v.push(old.filter(|&slot| take(&mut servers_taken, slot)));
            }
            server_slot.push(v);
        }
        let mut fresh = Vec::new();
        let mut old_to_new = vec![None; MAX_POOLS as usize];
        for (i, p) in self.pools.iter_mut().enumerate() {
            let slot = pool_slot[i][0].unwrap_or_else(|| lowest_free(&mut pools_taken));
            if let Some(o) = old_to_new.get_mut(p.slot.index()) {
                *o = Some(slot);
            }
            p.slot = PoolSlot(slot);
            if let Some(old6) = p.slot6 {
                let slot = pool_slot[i][1].unwrap_or_else(|| lowest_free(&mut pools_taken));
                if let Some(o) = old_to_new.get_mut(old6.index()) {
                    *o = Some(slot);
                }
                p.slot6 = Some(PoolSlot(slot));
            }
            for (s, kept) in p.servers.iter_mut().zip(&server_slot[i]) {
                s.slot = ServerSlot(kept.unwrap_or_else(|| {
                    let slot = lowest_free(&mut servers_taken);
                    fresh.push(ServerSlot(slot));
                    slot
                }));
            }
        }
        let values = self
            .services
            .iter_mut()
            .map(|(_, v)| v)
            .chain(self.services6.iter_mut().map(|(_, v)| v));
        for v in values {
            if let Some(Some(slot)) = old_to_new.get(v.pool as usize) {
                v.pool = *slot;
            }
        }
        fresh
    }

    pub fn server_count(&self) -> u32 {
        self.pools.iter().map(|p| p.servers.len() as u32).sum()
    }

    /// The ports a tracked packet can carry: services' on the way in, servers' on the way
    /// back. Everything else is passed before any conntrack lookup.
    pub fn port_filter(&self) -> PortFilter {
        let mut f = PortFilter::default();
        let services = || {
            let v4 = self.services.iter().map(|(k, v)| (k.port, v.pool));
            v4.chain(self.services6.iter().map(|(k, v)| (k.port, v.pool)))
        };
        for (port, _) in services() {
            f.add(PortSide::Service, u16::from_be(port));
        }
        for (p, s) in self.servers() {
            if s.port != 0 {
                f.add(PortSide::Server, s.port);
                continue;
            }
            // A server without a port answers from the ports its clients connected to.
            let pool = p.server_pool(s).0;
            for (port, _) in services().filter(|&(_, v)| v == pool) {
                f.add(PortSide::Server, u16::from_be(port));
            }
        }
        f
    }
}

/// A name as the maps hold it (`ServerMeta`), so names read back from pins compare equal.
fn short(name: &str) -> String {
    name_str(&name_field(name)).to_string()
}

/// A server's place in the data plane: its backend's pool slot and its own slot. Names are
/// as `ServerMeta` holds them (truncated to `NAME_LEN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub backend: String,
    pub server: String,
    pub slot: ServerSlot,
    /// Which map holds the server's entry (`LB_SERVERS` or `LB6_SERVERS`).
    pub family: Family,
    pub pool_slot: PoolSlot,
}

/// Marks `slot` taken; false if it is out of range or already taken.
fn take(taken: &mut [bool], slot: u32) -> bool {
    match taken.get_mut(slot as usize) {
        Some(t) if !*t => {
            *t = true;
            true
        }
        _ => false,
    }
}

/// Takes the lowest free slot. Validation caps the config below the maps' sizes, so one is
/// always free; the last slot is the fallback should that ever change.
fn lowest_free(taken: &mut [bool]) -> u32 {
    match taken.iter().position(|t| !*t) {
        Some(i) => {
            taken[i] = true;
            i as u32
        }
        None => taken.len().saturating_sub(1) as u32,
    }
}

/// Exact entries of `services` as they are, and each wildcard (`any`) once per `local`
/// address; an exact entry wins over a wildcard on the same address and port.
fn per_local_address<A: Copy + PartialEq>(
    services: &[(lb_common::ServiceKeyOf<A>, ServiceValue)],
    local: &[A],
    any: A,
) -> Vec<(lb_common::ServiceKeyOf<A>, ServiceValue)> {
    let mut out: Vec<_> = services
        .iter()
        .filter(|(k, _)| k.addr != any)
        .copied()
        .collect();
    for (k, v) in services.iter().filter(|(k, _)| k.addr == any) {
        for &addr in local {
            let key = lb_common::ServiceKeyOf { addr, ..*k };
            if !out.iter().any(|(o, _)| *o == key) {
                out.push((key, *v));
            }
        }
    }
    out
}

/// Network-order map representation of an IPv6 address ([`lb_common::addr`]).
pub fn addr6_be(a: Ipv6Addr) -> Addr6 {
    addr6_from_octets(a.octets())
}

/// Inverse of [`addr6_be`].
pub fn addr6_of(a: Addr6) -> Ipv6Addr {
    Ipv6Addr::from(addr6_octets(a))
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
    use lb_common::NAME_LEN;

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
redispatch = true
retries = 5
server = [{ name = "w1", address = "10.0.1.1:80" }, { name = "w2", address = "10.0.1.2:80", weight = 3 }]
"#,
        )
        .expect("parses");
        let l = Layout::new(&c);
        assert!(l.wildcard);
        assert_eq!(l.frontends, ["web", "dns"]);
        assert_eq!(l.pools[0].flags, POOL_F_DNAT | POOL_F_EMPTY_PASS);
        assert_eq!(
            l.pools[1].flags,
            POOL_F_REDISPATCH | (5 << POOL_RETRIES_SHIFT)
        );
        let ids: Vec<_> = l
            .servers()
            .map(|(p, s)| (p.id.0, s.id.0, s.backend, s.puid, s.name.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                (0, 0, BackendId(0), 1, "d1"),
                (1, 1, BackendId(1), 1, "w1"),
                (1, 2, BackendId(1), 2, "w2")
            ]
        );
        let (_, w2) = l.server(ServerId(2)).expect("w2");
        let (b, s) = w2.config(&c).expect("in the config");
        assert_eq!((b.name.as_str(), s.name.as_str()), ("b2", "w2"));
        assert_eq!(l.pool(BackendId(1)).map(|p| p.name.as_str()), Some("b2"));
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

    #[test]
    fn a_backend_ipv6_clients_reach_gets_a_pool_per_family() {
        let c = native::parse(
            "t.toml",
            r#"
[frontend.dual]
bind = [":::80", "[2001:db8::1]:443"]
default_backend = "both"
tcp_request_connection = ["reject if { src 2001:db8:bad::/48 }"]
[frontend.v4]
bind = ["*:8080"]
default_backend = "v4"
[backend.both]
balance = "source"
server = [{ name = "a", address = "10.0.1.1:80" }, { name = "b", address = "[fd00::10]:80" }]
[backend.v4]
server = [{ name = "c", address = "10.0.1.2" }]
"#,
        )
        .expect("parses");
        let mut l = Layout::new(&c);
        let both = &l.pools[0];
        assert_eq!((both.slot, both.slot6), (PoolSlot(0), Some(PoolSlot(2))));
        assert_eq!(l.pools[1].slot6, None);
        // The dual-stack bind is an IPv4 wildcard and an IPv6 one; the exact one IPv6 only.
        let v4: Vec<_> = l.services.iter().map(|(k, v)| (k.addr, v.pool)).collect();
        assert_eq!(v4, [(0, 0), (0, 1)]);
        let v6: Vec<_> = l
            .services6
            .iter()
            .map(|(k, v)| (addr6_of(k.addr).to_string(), u16::from_be(k.port), v.pool))
            .collect();
        assert_eq!(
            v6,
            [
                ("::".to_string(), 80, 2),
                ("2001:db8::1".to_string(), 443, 2)
            ]
        );
        let local6 = [addr6_be("fd00::1".parse().expect("v6"))];
        let entries = l.service_entries6(&local6);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(entries.iter().any(|(k, _)| k.addr == local6[0]));
        // Each hashing pool of either family has a ring of its own.
        assert_ne!(pool_ring(l.pools[0].flags), pool_ring(l.pools[0].flags6));
        // Rules for IPv6 clients go to LB6_ACCESS, IPv4's (only "all") to LB_ACCESS.
        assert_eq!(l.access6.len(), 2 * 2);
        assert_eq!(l.access.len(), 2);
        let placed = l.placed();
        assert_eq!(placed[1].family, Family::V6);
        assert_eq!(placed[1].pool_slot, PoolSlot(2));
        // A restart finds each family's pool where its servers named it.
        let moved: Vec<Placed> = placed
            .iter()
            .map(|p| Placed {
                pool_slot: PoolSlot(p.pool_slot.0 + 5),
                ..p.clone()
            })
            .collect();
        l.keep_slots(&moved);
        assert_eq!(
            (l.pools[0].slot, l.pools[0].slot6),
            (PoolSlot(5), Some(PoolSlot(7)))
        );
        assert_eq!(l.services6[0].1.pool, 7);
        assert_eq!(l.services[0].1.pool, 5);
        // A server without a port answers from its clients' ports, per family.
        let ports = l.port_filter();
        assert!(ports.has(PortSide::Service, 443) && ports.has(PortSide::Server, 8080));
    }

    #[test]
    fn hashing_pools_get_rings_and_keep_them() {
        let l = layout(
            r#"
[backend.rr]
[backend.src]
balance = "source"
[backend.conn]
hash_type = "consistent"
hash_table_size = 251
"#,
        );
        let (rr, src, conn) = (&l.pools[0], &l.pools[1], &l.pools[2]);
        assert!(!rr.hashes() && src.hashes() && conn.hashes());
        assert_eq!(rr.flags, 0);
        assert_eq!(src.flags & POOL_F_HASH_SOURCE, POOL_F_HASH_SOURCE);
        assert_eq!(conn.flags & POOL_F_HASH_SOURCE, 0);
        assert_eq!((src.ring(), conn.ring()), (0, 1));
        assert_eq!(
            (
                src.hash_table_size,
                conn.hash_table_size,
                rr.hash_table_size
            ),
            (65537, 251, 0)
        );
        // A new hashing backend in front: the others keep their rings.
        let mut after = layout(
            r#"
[backend.new]
balance = "source"
[backend.conn]
hash_type = "consistent"
"#,
        );
        after.keep_rings(&l.rings());
        assert_eq!(
            after.rings(),
            [("new".to_string(), 0), ("conn".to_string(), 1)]
        );
        let mut again = layout(
            "[backend.x]\nbalance='source'\n[backend.conn]\nhash_type='consistent'\n[backend.src]\nbalance='source'\n",
        );
        again.keep_rings(&l.rings());
        assert_eq!(
            again.rings(),
            [
                ("x".to_string(), 2),
                ("conn".to_string(), 1),
                ("src".to_string(), 0)
            ]
        );
    }

    fn layout(toml: &str) -> Layout {
        Layout::new(&native::parse("t.toml", toml).expect("parses"))
    }

    const BEFORE: &str = r#"
[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "web"
[frontend.dns]
bind = ["10.0.0.1:53/udp"]
default_backend = "dns"
[backend.web]
server = [{ name = "w1", address = "10.0.1.1:80" }, { name = "w2", address = "10.0.1.2:80" }]
[backend.dns]
server = [{ name = "d1", address = "10.0.2.1:53" }]
"#;

    fn slots(l: &Layout) -> Vec<(String, u32, u32)> {
        l.servers()
            .map(|(p, s)| (format!("{}/{}", p.name, s.name), s.id.0, s.slot.0))
            .collect()
    }

    #[test]
    fn fresh_slots_follow_ids() {
        let mut l = layout(BEFORE);
        assert_eq!(
            l.keep_slots(&[]),
            [ServerSlot(0), ServerSlot(1), ServerSlot(2)]
        );
        for (_, id, slot) in slots(&l) {
            assert_eq!(id, slot);
        }
        assert_eq!(l.placed().len(), 3);
    }

    #[test]
    fn servers_and_backends_that_stay_keep_their_slots() {
        let before = layout(BEFORE);
        // A new backend first, a server inserted before w2, d1 renamed.
        let mut after = layout(
            r#"
[frontend.api]
bind = ["10.0.0.1:8080"]
default_backend = "api"
[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "web"
[frontend.dns]
bind = ["10.0.0.1:53/udp"]
default_backend = "dns"
[backend.api]
server = [{ name = "a1", address = "10.0.3.1:8080" }]
[backend.web]
server = [{ name = "w1", address = "10.0.1.1:80" }, { name = "w9", address = "10.0.1.9:80" }, { name = "w2", address = "10.0.1.2:80" }]
[backend.dns]
server = [{ name = "d2", address = "10.0.2.2:53" }]
"#,
        );
        let fresh = after.keep_slots(&before.placed());
        assert_eq!(
            slots(&after),
            [
                ("api/a1".to_string(), 0, 2),
                ("web/w1".to_string(), 1, 0),
                ("web/w9".to_string(), 2, 3),
                ("web/w2".to_string(), 3, 1),
                ("dns/d2".to_string(), 4, 4),
            ]
        );
        assert_eq!(fresh, [ServerSlot(2), ServerSlot(3), ServerSlot(4)]);
        // Pools: web and dns stay in 0 and 1, api takes 2; services follow.
        let pools: Vec<_> = after.pools.iter().map(|p| (p.id.0, p.slot.0)).collect();
        assert_eq!(pools, [(0, 2), (1, 0), (2, 1)]);
        let svc: Vec<_> = after
            .services
            .iter()
            .map(|(k, v)| (u16::from_be(k.port), v.pool))
            .collect();
        assert_eq!(svc, [(8080, 2), (80, 0), (53, 1)]);
        assert_eq!(
            after.server(ServerId(3)).map(|(_, s)| s.slot),
            Some(ServerSlot(1))
        );
        // Placing again from its own placement changes nothing.
        let again = after.clone();
        assert!(after.keep_slots(&again.placed()).is_empty());
        assert_eq!(after, again);
    }

    #[test]
    fn names_compare_as_the_maps_hold_them() {
        let long = "s".repeat(40);
        let toml = format!(
            r#"
[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "web"
[backend.web]
server = [{{ name = "a", address = "10.0.1.1:80" }}, {{ name = "{long}", address = "10.0.1.2:80" }}]
"#
        );
        let mut l = layout(&toml);
        // As read back from LB_SERVER_META: truncated names, other slots.
        let placed = [Placed {
            backend: "web".into(),
            server: "s".repeat(NAME_LEN),
            slot: ServerSlot(7),
            pool_slot: PoolSlot(3),
            family: Family::V4,
        }];
        assert_eq!(l.keep_slots(&placed), [ServerSlot(0)]);
        let got: Vec<_> = slots(&l).into_iter().map(|(_, _, s)| s).collect();
        assert_eq!(got, [0, 7]);
        assert_eq!(l.pools[0].slot, PoolSlot(3));
        assert_eq!(l.services[0].1.pool, 3);
    }
}
