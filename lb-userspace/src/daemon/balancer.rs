//! The daemon's view of every server (health and admin state, weight) and how it is pushed
//! into the maps: pool tables through the double buffer, server entries, names for `lb show`.
use anyhow::{Result, anyhow};
use lb_common::{
    META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT, META_STATE_UP, NextHop,
    SETTINGS_F_LOG_FLOWS, ServerInfo, ServerMeta, Settings, TABLE_SIZE, name_field,
};

use super::plan::Plan;
use crate::{
    config::Config,
    dataplane::{
        Dataplane,
        layout::{ServerLayout, addr_be},
        table::{self, Candidate},
    },
};

/// A server's state as HAProxy has it: operational (health) and administrative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub up: bool,
    pub admin: Admin,
    pub weight: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

impl ServerState {
    /// May take new flows.
    pub fn usable(self) -> bool {
        self.up && self.admin == Admin::Ready
    }

    /// May keep its existing flows.
    pub fn active(self) -> bool {
        self.up && self.admin != Admin::Maint
    }

    fn meta_state(self) -> u8 {
        match (self.admin, self.up) {
            (Admin::Maint, _) => META_STATE_MAINT,
            (_, false) => META_STATE_DOWN,
            (Admin::Drain, true) => META_STATE_DRAIN,
            _ if self.weight == 0 => META_STATE_DRAIN,
            (Admin::Ready, true) => META_STATE_UP,
        }
    }
}

/// The data plane plus what the daemon knows about every server.
pub struct Balancer {
    pub dp: Dataplane,
    pub plan: Plan,
    pub states: Vec<ServerState>,
    settings: Settings,
    pid: u32,
}

impl Balancer {
    /// Writes settings, services and every pool. Servers start UP (HAProxy's initial state),
    /// or in maintenance when `disabled`.
    pub fn install(dp: Dataplane, mut plan: Plan, cfg: &Config) -> Result<Balancer> {
        // Pinned maps may hold flows of an earlier run: keep its servers where they were.
        let placed = dp.maps.placed()?;
        let fresh = plan.layout.keep_slots(&placed);
        let states = initial_states(&plan);
        let mut b = Balancer {
            dp,
            plan,
            states,
            settings: Settings::default(),
            pid: std::process::id(),
        };
        b.dp.maps.reset_server_counters(&fresh)?;
        b.write_all(cfg)?;
        Ok(b)
    }

    /// Switches to a new configuration on the same maps (`lb` reload): flows of servers that
    /// stay keep going, flows of servers that left are redispatched. `states` are the new
    /// servers' states (carried over by the caller for servers that stay).
    pub fn reinstall(
        &mut self,
        mut plan: Plan,
        states: Vec<ServerState>,
        cfg: &Config,
    ) -> Result<()> {
        let fresh = plan.layout.keep_slots(&self.plan.layout.placed());
        self.dp.maps.reset_server_counters(&fresh)?;
        self.plan = plan;
        self.states = states;
        self.write_all(cfg)
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
            _pad: 0,
        };
        self.dp.maps.write_settings(self.settings)?;
        let servers: Vec<u32> = self.plan.layout.servers().map(|(_, s)| s.slot).collect();
        self.dp.maps.clear_servers_except(&servers)?;
        let pools: Vec<u32> = self.plan.layout.pools.iter().map(|p| p.slot).collect();
        self.dp.maps.clear_pools_except(&pools)?;
        for pool in 0..self.plan.layout.pools.len() as u32 {
            self.sync_pool(pool)?;
        }
        // Services last: by now every pool they point to has its table.
        let services = self.plan.layout.service_entries(&self.plan.local);
        self.dp.maps.sync_services(&services)?;
        self.dp.maps.write_port_filter(&ports)
    }

    /// Brings one pool's maps in line with `states`: every server's entry first, then the
    /// table of those that take new flows. Established flows carry their own rewrite and stay
    /// where they are whatever the server's state, as in HAProxy.
    pub fn sync_pool(&mut self, pool: u32) -> Result<()> {
        let p = self
            .plan
            .layout
            .pools
            .get(pool as usize)
            .ok_or_else(|| anyhow!("no pool {pool}"))?
            .clone();
        let cands: Vec<Candidate> = p
            .servers
            .iter()
            .map(|s| {
                let st = self.states[s.id as usize];
                Candidate {
                    id: s.slot,
                    weight: st.weight,
                    backup: s.backup,
                    usable: st.usable(),
                }
            })
            .collect();
        let table = table::build(&cands, p.allbackups, TABLE_SIZE as usize);
        let info = |s: &ServerLayout| ServerInfo {
            addr: addr_be(s.addr),
            snat_addr: addr_be(self.plan.snat[s.id as usize]),
            port: s.port.to_be(),
            _pad: 0,
            pool: p.slot,
            nh: NextHop::default(),
        };
        for s in &p.servers {
            let want = info(s);
            // Rewriting an unchanged entry would only drop its cached next hop.
            let cur = self.dp.maps.servers.get(&s.slot, 0)?;
            if (ServerInfo {
                nh: NextHop::default(),
                ..cur
            }) != want
            {
                self.dp.maps.write_server(s.slot, want)?;
            }
        }
        self.dp.publish(p.slot, p.flags, p.timeouts, &table)?;
        for s in &p.servers {
            let st = self.states[s.id as usize];
            let meta = ServerMeta {
                backend: name_field(&p.name),
                server: name_field(&s.name),
                state: st.meta_state(),
                backup: u8::from(s.backup),
                weight: st.weight as u16,
                pid: self.pid,
                last_change: unix_now(),
            };
            self.dp.maps.write_meta(s.slot, meta)?;
        }
        Ok(())
    }
}

/// Servers start UP (HAProxy's initial state), or in maintenance when `disabled`.
pub fn initial_states(plan: &Plan) -> Vec<ServerState> {
    plan.layout
        .servers()
        .map(|(_, s)| ServerState {
            up: true,
            admin: if s.disabled {
                Admin::Maint
            } else {
                Admin::Ready
            },
            weight: s.weight,
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
