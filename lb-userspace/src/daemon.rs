//! `lb run`: read and check the config, load and attach the data plane, keep its maps in line
//! with the servers' state, detach on SIGINT/SIGTERM.
use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result, anyhow, bail};
use lb_common::{
    META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT, META_STATE_UP, NextHop, SERVER_ACTIVE,
    SERVER_GONE, SETTINGS_F_WILDCARD, ServerInfo, ServerMeta, Settings, TABLE_SIZE, name_field,
};

use crate::{
    config::{self, Config, Diagnostic, Severity},
    dataplane::{
        Dataplane, LoadOptions,
        layout::{Layout, addr_be},
        pin_dir,
        table::{self, Candidate},
    },
    net,
};

/// Problems only this host can reveal (VIPs that are not local, port overlaps).
pub fn host_diagnostics(cfg: &Config) -> Vec<Diagnostic> {
    let local: Vec<Ipv4Addr> = net::local_addrs()
        .map(|v| v.into_iter().map(|a| a.addr).collect())
        .unwrap_or_default();
    config::validate::host(cfg, &local, net::ephemeral_ports())
}

/// Where packets come from and go to, resolved against this host.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    /// Per server id: the LB's source address towards it (full-NAT).
    pub snat: Vec<Ipv4Addr>,
    /// Interfaces to attach to, in a stable order.
    pub interfaces: Vec<String>,
}

/// Resolves the config against the host: routes to every server, interfaces to attach to.
pub fn plan(cfg: &Config, extra: &[String]) -> Result<Plan> {
    let layout = Layout::new(cfg);
    let local = net::local_addrs()?;
    let mut ifaces = BTreeSet::new();
    for f in &cfg.frontends {
        for b in &f.binds {
            match b.addr {
                Some(a) => {
                    for l in local.iter().filter(|l| l.addr == a) {
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
    })
}

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
    fn usable(self) -> bool {
        self.up && self.admin == Admin::Ready
    }

    /// May keep its existing flows.
    fn active(self) -> bool {
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
    pub fn install(dp: Dataplane, plan: Plan, cfg: &Config) -> Result<Balancer> {
        let states = plan
            .layout
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
            .collect();
        let (lo, hi) = cfg.global.snat_ports;
        let settings = Settings {
            snat_port_min: lo,
            snat_port_max: hi,
            flags: if plan.layout.wildcard {
                SETTINGS_F_WILDCARD
            } else {
                0
            },
            fib_epoch: 1,
        };
        let mut b = Balancer {
            dp,
            plan,
            states,
            settings,
            pid: std::process::id(),
        };
        b.dp.maps.write_settings(settings)?;
        b.dp.maps.clear_servers_from(b.plan.layout.server_count())?;
        b.dp.maps
            .clear_pools_from(b.plan.layout.pools.len() as u32)?;
        for pool in 0..b.plan.layout.pools.len() as u32 {
            b.sync_pool(pool)?;
        }
        // Services last: by now every pool they point to has its table.
        let services = b.plan.layout.services.clone();
        b.dp.maps.sync_services(&services)?;
        Ok(b)
    }

    /// Brings one pool's maps in line with `states`. Servers that may keep flows are marked
    /// active before the new table goes live, servers that may not are marked gone after, so
    /// no new flow reaches a server that left and none is redispatched needlessly.
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
                    id: s.id,
                    weight: st.weight,
                    backup: s.backup,
                    usable: st.usable(),
                }
            })
            .collect();
        let table = table::build(&cands, p.allbackups, TABLE_SIZE as usize);
        let info = |s: &crate::dataplane::layout::ServerLayout, active: bool| ServerInfo {
            addr: addr_be(s.addr),
            snat_addr: addr_be(self.plan.snat[s.id as usize]),
            port: s.port.to_be(),
            state: if active { SERVER_ACTIVE } else { SERVER_GONE },
            _pad: 0,
            pool,
            nh: NextHop::default(),
        };
        for s in &p.servers {
            if self.states[s.id as usize].active() {
                let i = info(s, true);
                self.dp.maps.write_server(s.id, i)?;
            }
        }
        self.dp.publish(pool, p.flags, &table)?;
        for s in &p.servers {
            let st = self.states[s.id as usize];
            if !st.active() {
                let i = info(s, false);
                self.dp.maps.write_server(s.id, i)?;
            }
            let meta = ServerMeta {
                backend: name_field(&p.name),
                server: name_field(&s.name),
                state: st.meta_state(),
                backup: u8::from(s.backup),
                weight: st.weight as u16,
                pid: self.pid,
                last_change: unix_now(),
            };
            self.dp.maps.write_meta(s.id, meta)?;
        }
        Ok(())
    }
}

impl Balancer {
    /// Invalidates every next hop the data plane cached, so the next packet of each server
    /// and flow asks the FIB again (routes or neighbours may have changed).
    pub fn bump_fib_epoch(&mut self) -> Result<()> {
        self.settings.fib_epoch = self.settings.fib_epoch.wrapping_add(1).max(1);
        self.dp.maps.write_settings(self.settings)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sysctls the data plane needs on the interfaces it is attached to, restored on drop:
/// - `forwarding`: `bpf_fib_lookup` refuses to forward otherwise, and the kernel must forward
///   the packets handed to it while a neighbour is being resolved;
/// - `accept_local`: those packets carry one of our own addresses as source (the full-NAT
///   source, or the VIP on replies), which the kernel otherwise drops as martian.
struct Forwarding {
    saved: Vec<(String, String)>,
}

impl Forwarding {
    fn enable(ifaces: &[String]) -> Result<Forwarding> {
        let mut saved = Vec::new();
        for i in ifaces {
            for knob in ["forwarding", "accept_local"] {
                let key = format!("net.ipv4.conf.{i}.{knob}");
                let old = net::sysctl_get(&key)?;
                if old != "1" {
                    net::sysctl_set(&key, "1")?;
                    eprintln!("[NOTICE] set {key}=1 (was {old}); restored on exit");
                    saved.push((key, old));
                }
            }
        }
        Ok(Forwarding { saved })
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (key, old) in &self.saved {
            if let Err(e) = net::sysctl_set(key, old) {
                eprintln!("[WARNING] could not restore {key}={old}: {e:#}");
            }
        }
    }
}

/// How long a next hop cached by the data plane is trusted.
const FIB_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// `lb run`.
pub fn run(path: &Path, extra_ifaces: &[String]) -> Result<()> {
    let loaded = config::load(path)
        .map_err(|e| anyhow!("{e}\n[ALERT] config : Fatal errors found in configuration."))?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let cfg = loaded.config;
    let host = host_diagnostics(&cfg);
    for d in &host {
        eprintln!("{d}");
    }
    if host.iter().any(|d| d.severity == Severity::Alert) {
        bail!("config : Fatal errors found in configuration.");
    }
    let plan = plan(&cfg, extra_ifaces)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, plan))
}

async fn serve(cfg: Config, plan: Plan) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions {
        pin_dir: Some(pin_dir(&cfg.global.instance)),
        conntrack_entries: cfg.global.conntrack_entries,
    })?;
    for n in &dp.notes {
        eprintln!("[WARNING] {n}");
    }
    let _forwarding = Forwarding::enable(&plan.interfaces)?;
    let ifaces = plan.interfaces.clone();
    let mut bal = Balancer::install(dp, plan, &cfg)?;
    for i in &ifaces {
        let mode = bal.dp.attach(i)?;
        if mode == aya::programs::XdpMode::Skb {
            eprintln!(
                "[WARNING] {i}: the driver refused native XDP, attached in generic (skb) mode"
            );
        }
    }
    if let Some(pidfile) = &cfg.global.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pidfile {}", pidfile.display()))?;
    }
    for f in &cfg.frontends {
        eprintln!("[NOTICE] Proxy {} started.", f.name);
    }
    eprintln!(
        "[NOTICE] lb ready: attached to {} (instance '{}', pid {})",
        ifaces.join(", "),
        cfg.global.instance,
        std::process::id()
    );
    let mut refresh = tokio::time::interval(FIB_REFRESH);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = &mut shutdown => { r?; break; }
            _ = refresh.tick() => bal.bump_fib_epoch()?,
        }
    }
    bal.dp.detach_all()?;
    if let Some(pidfile) = &cfg.global.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    eprintln!("[NOTICE] lb stopped: detached from {}", ifaces.join(", "));
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
