//! SIGHUP: the config file is re-read and applied on the same maps, in steps: check the new
//! configuration, prepare the host for it, carry the checks of servers that stay over, stop
//! the old checks, switch the data plane, start the new checks, switch logging.
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;

use super::{Runtime, StateFiles};
use crate::{
    config::{
        Config, Level, Severity,
        resolve::{SystemResolver, resolve},
    },
    daemon::{
        flowlog::Names,
        plan::{Plan, host_diagnostics, plan},
        server_state,
        sysctl::Forwarding,
    },
    dataplane::layout::Layout,
    health::{self, CheckEvent, CheckTarget},
    logs::Logger,
};

/// Lines for the log, in HAProxy's words.
type Alerts = Vec<String>;

fn alert(e: anyhow::Error) -> Alerts {
    vec![format!("[ALERT] {e:#}")]
}

impl Runtime {
    /// An invalid file changes nothing: the running configuration stays and the reasons are
    /// logged. A valid one is applied on the same maps: servers that stay (same backend and
    /// name) keep their health, the checks restart.
    pub async fn reload(&mut self, pending: &mut mpsc::Receiver<CheckEvent>) {
        let source = self.source.path.display().to_string();
        match self.try_reload(pending).await {
            Ok(()) => {
                let msg = format!("Configuration reloaded from {source}.");
                eprintln!("[NOTICE] {msg}");
                self.logger.send(Level::Notice, &msg);
            }
            Err(lines) => {
                for l in &lines {
                    eprintln!("{l}");
                    self.logger.send(Level::Alert, l);
                }
                let msg = format!("Reload of {source} failed: keeping the running configuration.");
                eprintln!("[ALERT] {msg}");
                self.logger.send(Level::Alert, &msg);
            }
        }
    }

    async fn try_reload(&mut self, pending: &mut mpsc::Receiver<CheckEvent>) -> Result<(), Alerts> {
        let cfg = self.resolved_config().await?;
        let (cfg, plan) = self.next_config(cfg)?;
        // The tracing copy runs on the old interfaces only; a new configuration starts
        // untraced (`lb trace on` again to go on).
        if let Err(e) = self.stop_tracing() {
            return Err(alert(e));
        }
        let ipv6 = !plan.layout.services6.is_empty();
        if ipv6 && !self.bal.dp.sized_for_ipv6() {
            eprintln!(
                "[WARNING] the first IPv6 services came with this reload: lb started without IPv6 services, so its IPv6 program was not loaded and its IPv6 flow tables were sized for none (they cannot grow in place); IPv6 clients pass to this host's own stack until lb is restarted."
            );
        }
        let sysctls = Forwarding::enable(&plan.interfaces, ipv6).map_err(alert)?;
        // What operators changed goes to the state files, which the new configuration's
        // backends then load (without them it resets to the configuration, as HAProxy's).
        self.save_server_state();
        let targets = self.checks_carried_over(&plan.layout, &cfg);
        self.stop_checks().await;
        // Results of the old checkers still queued refer to the old numbering.
        while pending.try_recv().is_ok() {}
        let applied = self.switch_dataplane(plan, &cfg);
        self.checkers = health::spawn_checkers(targets, self.events.clone());
        self.switch_logging(&cfg);
        self.state_files = StateFiles::open(&cfg, std::mem::take(&mut self.state_files));
        self.recount
            .send_replace(crate::daemon::recount::needed(&cfg));
        self.cfg = cfg;
        self.sysctls.push(sysctls);
        self.load_server_state();
        // Names are resolved again from the new file's sections.
        self.dns = crate::daemon::dns::client::spawn(&self.cfg, self.dns_events.clone());
        self.rmaint = self.unresolved_servers();
        self.unusable.clear();
        applied.map_err(|e| vec![format!("[ALERT] applying the new configuration: {e:#}")])
    }

    /// Reads the file and resolves its servers' host names (off the runtime's threads: the
    /// system's resolver blocks).
    async fn resolved_config(&self) -> Result<Config, Alerts> {
        let lines = |e: crate::config::ConfigError| {
            e.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Alerts>()
        };
        let mut cfg = self.source.load().map_err(lines)?.config;
        let last = server_state::last_addrs(&cfg, |p| self.state_files.read(p));
        let (cfg, resolved) = tokio::task::spawn_blocking(move || {
            let r = resolve(&mut cfg, &SystemResolver, &|b, s| {
                last.get(&(b.to_string(), s.to_string())).copied()
            });
            (cfg, r)
        })
        .await
        .map_err(|e| vec![format!("[ALERT] resolving host names: {e}")])?;
        for w in resolved.map_err(lines)? {
            eprintln!("{w}");
            self.logger.send(Level::Warning, &w.to_string());
        }
        Ok(cfg)
    }

    /// Checks a configuration as `lb run` would, and that it changes nothing only a restart
    /// can.
    fn next_config(&self, cfg: Config) -> Result<(Config, Plan), Alerts> {
        let alerts: Alerts = host_diagnostics(&cfg, crate::config::validate::HostUse::Run)
            .into_iter()
            .filter(|d| d.severity == Severity::Alert)
            .map(|d| d.to_string())
            .collect();
        if !alerts.is_empty() {
            return Err(alerts);
        }
        let plan = plan(&cfg, &self.extra_ifaces).map_err(alert)?;
        if cfg.global.instance != self.cfg.global.instance
            || cfg.global.flow_capacity() != self.cfg.global.flow_capacity()
            || cfg.global.halfopen_entries != self.cfg.global.halfopen_entries
        {
            return Err(vec![
                "[ALERT] 'instance', 'conntrack_entries' (or a global 'maxconn' above it) and 'halfopen_entries' only change with a restart".into(),
            ]);
        }
        Ok((cfg, plan))
    }

    /// The new configuration's checks; a server that stays goes on from its current health
    /// counter, unless it or its new config entry is in maintenance.
    fn checks_carried_over(&self, layout: &Layout, cfg: &Config) -> Vec<CheckTarget> {
        let mut targets = health::targets(layout, cfg);
        for t in &mut targets {
            let Some((p, s)) = layout.server(t.id) else {
                continue;
            };
            if let Some(old) = self.bal.servers().find(&p.name, &s.name)
                && let Some(h) = self.checkers.health(old)
                && !h.in_maintenance()
                && !t.health.in_maintenance()
            {
                t.health = h;
            }
        }
        targets
    }

    /// Installs the new plan on the maps, then attaches to the interfaces it adds and
    /// detaches from those it drops.
    fn switch_dataplane(&mut self, plan: Plan, cfg: &Config) -> Result<()> {
        let wanted = plan.interfaces.clone();
        self.bal.reinstall(plan, cfg)?;
        for i in &wanted {
            if !self.bal.dp.is_attached(i) {
                self.bal.dp.attach(i)?;
            }
        }
        let stale: Vec<String> = self
            .bal
            .dp
            .attachments()
            .iter()
            .map(|a| a.ifname.clone())
            .filter(|i| !wanted.contains(i))
            .collect();
        for i in stale {
            self.bal.dp.detach(&i)?;
        }
        Ok(())
    }

    /// New log targets apply from the next line on, as in a reloaded HAProxy; tcplog names
    /// follow the new layout.
    fn switch_logging(&mut self, cfg: &Config) {
        if cfg.global.logs != self.cfg.global.logs || cfg.global.log_tag != self.cfg.global.log_tag
        {
            self.logger = Logger::from_global(&cfg.global);
            self.flow_logger
                .send_replace(Arc::new(Logger::from_global(&cfg.global)));
        }
        self.names.send_replace(Names::of(cfg, self.bal.layout()));
    }
}
