//! The daemon's servers (see [`super::servers`]) and how they are pushed into the maps: pool
//! tables through the double buffer, server entries, names for `lb show`. Every state change
//! goes through [`Balancer::change`], so the maps never lag behind the daemon's view.
use std::time::Instant;

use anyhow::{Result, anyhow};
use lb_common::{
    META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT, META_STATE_UP, NextHop,
    SETTINGS_F_LOG_FLOWS, ServerInfo, ServerInfo6, ServerInfoOf, ServerMeta, Settings, TABLE_SIZE,
    name_field,
};

use super::{
    announce::{Announcer, Vips},
    history::ServerHistory,
    plan::Plan,
    servers::{Admin, Applied, ServerEntry, ServerState, Servers},
    slowstart,
};
use crate::{
    config::{Config, Family},
    dataplane::{
        Dataplane,
        ids::{BackendId, ServerId, ServerSlot},
        layout::{Layout, addr_be, addr6_be},
        table::{self, Candidate, Shape},
        writer::Table,
    },
};

/// The data plane plus what the daemon knows about every server.
pub struct Balancer {
    pub dp: Dataplane,
    plan: Plan,
    servers: Servers,
    settings: Settings,
    pid: u32,
    /// The VIPs this node's routing daemon announces (`announce_table`).
    announcer: Announcer,
}

impl Balancer {
    /// Writes settings, services and every pool. Servers start UP (HAProxy's initial state),
    /// or in maintenance when `disabled`.
    pub fn install(dp: Dataplane, mut plan: Plan, cfg: &Config) -> Result<Balancer> {
        // Pinned maps may hold flows of an earlier run: keep its servers where they were.
        let placed = dp.maps.placed()?;
        let fresh = plan.layout.keep_slots(&placed);
        plan.layout.keep_rings(&dp.maps.placed_rings(&placed)?);
        let servers = Servers::new(&plan)?;
        let mut b = Balancer {
            dp,
            plan,
            servers,
            settings: Settings::default(),
            pid: std::process::id(),
            announcer: Announcer::default(),
        };
        b.announcer.set_vips(Vips::of(cfg, &b.plan.layout))?;
        b.dp.maps.reset_server_counters(&fresh)?;
        b.write_all(cfg)?;
        Ok(b)
    }

    /// Switches to a new configuration on the same maps (`lb` reload): flows of servers that
    /// stay keep going, flows of servers that left are redispatched. Servers that stay keep
    /// their health and history (see [`Servers::carried_into`]).
    pub fn reinstall(&mut self, mut plan: Plan, cfg: &Config) -> Result<()> {
        let fresh = plan.layout.keep_slots(&self.plan.layout.placed());
        plan.layout.keep_rings(&self.plan.layout.rings());
        self.dp.maps.reset_server_counters(&fresh)?;
        self.servers = self.servers.carried_into(&plan)?;
        self.plan = plan;
        let changes = self.announcer.set_vips(Vips::of(cfg, &self.plan.layout))?;
        log_announce(&changes);
        self.write_all(cfg)
    }

    /// From now on (the data plane is attached), the VIPs that have a server UP are
    /// announced.
    pub fn start_announcing(&mut self) -> Result<()> {
        self.announcer.start();
        self.announce()
    }

    /// Withdraws every VIP (lb stops). Returns whether any was announced.
    pub fn withdraw_all(&mut self) -> Result<bool> {
        let changes = self.announcer.withdraw_all()?;
        log_announce(&changes);
        Ok(!changes.is_empty())
    }

    /// Brings the announced VIPs in line with the servers' states.
    fn announce(&mut self) -> Result<()> {
        let servers = &self.servers;
        let changes = self.announcer.sync(|b, f| {
            servers
                .of_backend(b)
                .any(|e| Family::of(e.place.addr) == f && e.state.usable() && e.state.weight > 0)
        })?;
        log_announce(&changes);
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.plan.layout
    }

    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    pub fn server(&self, id: ServerId) -> Option<&ServerEntry> {
        self.servers.get(id)
    }

    /// A server's history, for what it records besides state changes (checks, counter).
    pub fn history_mut(&mut self, id: ServerId) -> Option<&mut ServerHistory> {
        self.servers.get_mut(id).map(|e| &mut e.history)
    }

    /// Changes a server's state, brings its pool's maps in line, and records the change in
    /// the history of the server and its backend. A server that comes back (UP again, or out
    /// of maintenance while UP) starts its `slowstart`, if it has one.
    pub fn change(&mut self, id: ServerId, f: impl FnOnce(&mut ServerState)) -> Result<()> {
        let e = self
            .servers
            .get_mut(id)
            .ok_or_else(|| anyhow!("no server {id}"))?;
        let was_active = e.state.active();
        f(&mut e.state);
        if !e.state.active() {
            e.state.starting = None;
        } else if !was_active && e.place.slowstart.is_some_and(|t| !t.is_zero()) {
            e.state.starting = Some(Instant::now());
        }
        let backend = e.place.backend;
        self.write_pool(backend)?;
        self.servers.note(backend);
        self.announce()
    }

    /// Gives a server a new address (its name resolved to another one) and the source address
    /// towards it, then rewrites its entry: new flows go to the new address, established
    /// ones keep the rewrite they carry, as `set server ... addr` does in HAProxy. `iface`:
    /// the interface the new address is reached through, kept on the plan's list.
    pub fn set_addr(
        &mut self,
        id: ServerId,
        addr: std::net::IpAddr,
        snat: std::net::IpAddr,
        iface: Option<String>,
    ) -> Result<()> {
        let e = self
            .servers
            .get_mut(id)
            .ok_or_else(|| anyhow!("no server {id}"))?;
        e.place.addr = addr;
        e.snat = snat;
        let backend = e.place.backend;
        if let Some(s) = self
            .plan
            .layout
            .pools
            .iter_mut()
            .flat_map(|p| p.servers.iter_mut())
            .find(|s| s.id == id)
        {
            s.addr = addr;
        }
        if let Some(s) = self.plan.snat.get_mut(id.index()) {
            *s = snat;
        }
        if let Some(i) = iface
            && !self.plan.interfaces.contains(&i)
        {
            self.plan.interfaces.push(i);
        }
        self.write_pool(backend)
    }

    fn write_all(&mut self, cfg: &Config) -> Result<()> {
        // The port filter admits the old and the new ports while the rest changes, then only
        // the new ones: no packet of a service that stays is passed to the kernel midway.
        let ports = self.plan.layout.port_filter();
        let widened = self.dp.maps.port_filter()?.union(&ports);
        self.dp.maps.write_port_filter(&widened)?;
        let (lo, hi) = cfg.global.snat_ports;
        self.settings = Settings {
            snat_port_min: lo,
            snat_port_max: hi,
            flags: if cfg.frontends.iter().any(|f| f.tcplog) {
                SETTINGS_F_LOG_FLOWS
            } else {
                0
            },
            // Running: a stop left by a daemon that exited is cancelled.
            stop_at: 0,
            maxconn: cfg.global.maxconn.unwrap_or(0),
        };
        self.dp.maps.write_settings(self.settings)?;
        let servers: Vec<(ServerSlot, Family)> = self
            .servers
            .iter()
            .map(|e| (e.place.slot, Family::of(e.place.addr)))
            .collect();
        self.dp.maps.clear_servers_except(&servers)?;
        let pools: Vec<_> = self
            .plan
            .layout
            .pools
            .iter()
            .flat_map(|p| [Some(p.slot), p.slot6])
            .flatten()
            .collect();
        self.dp.maps.clear_pools_except(&pools)?;
        let backends: Vec<BackendId> = self.plan.layout.pools.iter().map(|p| p.id).collect();
        for b in backends {
            self.write_pool(b)?;
        }
        // Access rules before the services whose new flows they judge.
        self.dp.maps.sync_access(&self.plan.layout.access)?;
        self.dp.maps.sync_access6(&self.plan.layout.access6)?;
        // Services last: by now every pool they point to has its table.
        self.sync_services()?;
        self.dp.maps.write_port_filter(&ports)?;
        self.announce()
    }

    /// Writes both services maps for the current local addresses.
    fn sync_services(&mut self) -> Result<()> {
        let layout = &self.plan.layout;
        let services = layout.service_entries(&self.plan.local.v4);
        self.dp.maps.sync_services(&services)?;
        let services6 = layout.service_entries6(&self.plan.local.v6);
        self.dp.maps.sync_services6(&services6)
    }

    /// Brings one backend's maps in line with its servers' states: every server's entry
    /// first, then the table of those that take new flows, per family (a pool slot serves
    /// one family). Established flows carry their own rewrite and stay where they are
    /// whatever the server's state, as in HAProxy.
    fn write_pool(&mut self, backend: BackendId) -> Result<()> {
        let now = Instant::now();
        let dynamic = self
            .plan
            .layout
            .pool(backend)
            .ok_or_else(|| anyhow!("no pool for backend {backend}"))?
            .balance
            .dynamic();
        let applied: Vec<(ServerId, Applied)> = self
            .servers
            .of_backend(backend)
            .map(|e| {
                let a = Applied {
                    eweight: e.eweight(now, dynamic),
                    maxconn: e.maxconn(now),
                };
                (e.id(), a)
            })
            .collect();
        for &(id, a) in &applied {
            if let Some(e) = self.servers.get_mut(id) {
                e.applied = a;
            }
        }
        for family in [Family::V4, Family::V6] {
            self.write_family_pool(backend, family)?;
        }
        let p = self
            .plan
            .layout
            .pool(backend)
            .ok_or_else(|| anyhow!("no pool for backend {backend}"))?;
        for e in self.servers.of_backend(backend) {
            let meta = ServerMeta {
                backend: name_field(&p.name),
                server: name_field(&e.place.name),
                state: meta_state(e.state),
                backup: u8::from(e.place.backup),
                weight: slowstart::shown_weight(e.applied.eweight) as u16,
                pid: self.pid,
                last_change: unix_now(),
            };
            self.dp.maps.write_meta(e.place.slot, meta)?;
        }
        Ok(())
    }

    /// One family's half of [`Balancer::write_pool`]: its servers' entries in its map
    /// (`LB_SERVERS` or `LB6_SERVERS`) and, when the backend has a pool of that family, the
    /// table over them.
    fn write_family_pool(&mut self, backend: BackendId, family: Family) -> Result<()> {
        let p = self
            .plan
            .layout
            .pool(backend)
            .ok_or_else(|| anyhow!("no pool for backend {backend}"))?;
        let servers: Vec<&ServerEntry> = self
            .servers
            .of_backend(backend)
            .filter(|e| Family::of(e.place.addr) == family)
            .collect();
        let pool = p.family_pool(family);
        // An IPv6 server no IPv6 client reaches still gets its entry (it keeps its slot
        // across restarts), naming the backend's IPv4 pool.
        let entry_pool = pool.map_or(p.slot, |(slot, _)| slot);
        for e in &servers {
            let (addr, snat) = (e.place.addr, e.snat);
            let port = e.place.port.to_be();
            let (pool, maxconn) = (entry_pool.0, e.applied.maxconn);
            match (addr, snat) {
                (std::net::IpAddr::V6(a), std::net::IpAddr::V6(sn)) => {
                    let want = server_info(addr6_be(a), addr6_be(sn), port, pool, maxconn);
                    let cur = self.dp.maps.servers6.get(&e.place.slot.0, 0)?;
                    // Rewriting an unchanged entry would only drop its cached next hop.
                    if (ServerInfo6 {
                        nh: NextHop::default(),
                        ..cur
                    }) != want
                    {
                        self.dp.maps.write_server6(e.place.slot, want)?;
                    }
                }
                (std::net::IpAddr::V4(a), std::net::IpAddr::V4(sn)) => {
                    let want = server_info(addr_be(a), addr_be(sn), port, pool, maxconn);
                    let cur = self.dp.maps.servers.get(&e.place.slot.0, 0)?;
                    if (ServerInfo {
                        nh: NextHop::default(),
                        ..cur
                    }) != want
                    {
                        self.dp.maps.write_server(e.place.slot, want)?;
                    }
                }
                _ => {
                    return Err(anyhow!(
                        "server {}: its full-NAT source {snat} is not of its family ({addr})",
                        e.place.name
                    ));
                }
            }
        }
        let Some((slot, flags)) = pool else {
            return Ok(());
        };
        let cands: Vec<Candidate> = servers
            .iter()
            .map(|e| Candidate {
                slot: e.place.slot,
                weight: e.applied.eweight,
                backup: e.place.backup,
                usable: e.state.usable(),
            })
            .collect();
        let (rr, hashed);
        let table = if p.hashes() {
            let named: Vec<(&str, Candidate, u32)> = servers
                .iter()
                .zip(&cands)
                .map(|(e, c)| (e.place.name.as_str(), *c, e.place.weight))
                .collect();
            hashed = table::maglev(&named, p.allbackups, p.hash_table_size);
            Table::Maglev(&hashed)
        } else {
            rr = table::build(
                &cands,
                p.allbackups,
                TABLE_SIZE as usize,
                Shape::of(p.balance),
            );
            Table::Entries(&rr)
        };
        let timeouts = p.timeouts;
        self.dp.publish(slot, flags, timeouts, table)
    }
}

/// A server's `LB_SERVERS`/`LB6_SERVERS` entry, its next hop left for the data plane.
fn server_info<A>(addr: A, snat: A, port: u16, pool: u32, maxconn: u32) -> ServerInfoOf<A> {
    ServerInfoOf {
        addr,
        snat_addr: snat,
        port,
        _pad: 0,
        pool,
        maxconn,
        _pad2: 0,
        nh: NextHop::default(),
    }
}

impl Balancer {
    /// Moves the slow starts on (called every second): ends those that are over and
    /// rewrites the pools whose servers' effective weight or `maxconn` changed. Returns
    /// whether any server is still starting.
    pub fn warm_up(&mut self) -> Result<bool> {
        let now = Instant::now();
        let mut dirty: Vec<BackendId> = Vec::new();
        let mut starting = false;
        let pools = &self.plan.layout;
        for e in self.servers.iter_mut() {
            if e.state.starting.is_none() {
                continue;
            }
            let dynamic = pools
                .pool(e.place.backend)
                .is_some_and(|p| p.balance.dynamic());
            if e.ramp(now).is_none() {
                e.state.starting = None;
            } else {
                starting = true;
            }
            let want = Applied {
                eweight: e.eweight(now, dynamic),
                maxconn: e.maxconn(now),
            };
            if (want != e.applied || e.state.starting.is_none())
                && !dirty.contains(&e.place.backend)
            {
                dirty.push(e.place.backend);
            }
        }
        for b in dirty {
            self.write_pool(b)?;
        }
        Ok(starting)
    }

    /// From `grace` on, the data plane balances no new flow (established ones go on) unless a
    /// new daemon installs itself before (which clears it).
    pub fn stop_new_flows_after(&mut self, grace: std::time::Duration) -> Result<()> {
        let at = crate::dataplane::clock::now()
            .wrapping_add(lb_common::clock::ticks_from_ms(grace.as_millis() as u64))
            .max(1);
        self.settings.stop_at = at;
        self.dp.maps.write_settings(self.settings)
    }

    /// Ends the established flows of the server at `slot`.
    pub fn shutdown_sessions(&mut self, slot: ServerSlot) -> Result<u64> {
        let s = slot.0 as u16;
        // A slot is one family's, but asking both tables costs a scan of an empty one.
        Ok(self.dp.maps.forget_flows(|f| f.server == s)?
            + self.dp.maps.forget_flows6(|f| f.server == s)?)
    }

    /// New local addresses: rewrites the services of wildcard binds. Returns whether
    /// anything changed.
    pub fn set_local(&mut self, local: super::plan::Local) -> Result<bool> {
        if local == self.plan.local {
            return Ok(false);
        }
        self.plan.local = local;
        self.sync_services()?;
        Ok(true)
    }
}

fn log_announce(changes: &[super::announce::Change]) {
    for c in changes {
        eprintln!("[NOTICE] {c}");
    }
}

/// The state `lb show` reads from `LB_SERVER_META`.
fn meta_state(st: ServerState) -> u8 {
    match (st.admin, st.up) {
        (Admin::Maint, _) => META_STATE_MAINT,
        (_, false) => META_STATE_DOWN,
        (Admin::Drain, true) => META_STATE_DRAIN,
        // NOLB: no new flows, as in drain.
        _ if st.stopping => META_STATE_DRAIN,
        _ if st.weight == 0 => META_STATE_DRAIN,
        (Admin::Ready, true) => META_STATE_UP,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
