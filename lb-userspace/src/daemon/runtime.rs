//! The running balancer: health events (and, through the runtime API, operators) change
//! server states; every change is applied to the maps first and logged after, in HAProxy's
//! words.
use std::collections::HashMap;

use anyhow::Result;
use tokio::sync::mpsc;

use super::{
    balancer::{Admin, Balancer, ServerState, initial_states},
    history::History,
    plan::{host_diagnostics, plan},
    sysctl::Forwarding,
};
use crate::{
    config::{Config, Level, Severity},
    health::{self, CheckEvent, Checkers, Transition},
    logs::{
        CheckEventLog, Counts, Flavor, LogLine, Logger, ServerName, Sessions, check_event_lines,
    },
};

/// Where a server belongs, by id.
#[derive(Clone, Debug)]
pub struct ServerRef {
    pub pool: u32,
    pub backend: String,
    pub name: String,
    pub backup: bool,
    pub log_health_checks: bool,
}

pub struct Runtime {
    pub cfg: Config,
    /// Where the config came from (re-read on reload) and `-i` interfaces.
    pub source: super::ConfigFile,
    pub extra_ifaces: Vec<String>,
    pub bal: Balancer,
    pub checkers: Checkers,
    /// Where checkers report (kept to start new ones on reload).
    pub events: mpsc::Sender<CheckEvent>,
    pub logger: Logger,
    /// The tcplog task's logger, replaced on reload when the `log` lines change.
    pub flow_logger: tokio::sync::watch::Sender<std::sync::Arc<Logger>>,
    pub flavor: Flavor,
    pub servers: Vec<ServerRef>,
    pub sysctls: Vec<Forwarding>,
    /// Names for the tcplog task, replaced on reload.
    pub names: tokio::sync::watch::Sender<std::sync::Arc<super::flowlog::Names>>,
    /// What `show stat` reports besides the current state (changes, downtime, failures).
    pub history: History,
}

fn server_refs(cfg: &Config) -> Vec<ServerRef> {
    cfg.backends
        .iter()
        .enumerate()
        .flat_map(|(pool, b)| {
            b.servers.iter().map(move |s| ServerRef {
                pool: pool as u32,
                backend: b.name.clone(),
                name: s.name.clone(),
                backup: s.backup,
                log_health_checks: b.log_health_checks,
            })
        })
        .collect()
}

/// Every server UP or not, `disabled` or not, every backend with a usable server or not, as
/// the balancer starts (or restarts after a reload).
fn new_history(cfg: &Config, refs: &[ServerRef], bal: &Balancer) -> History {
    let up: Vec<bool> = bal
        .states
        .iter()
        .map(|s| s.up && s.admin != Admin::Maint)
        .collect();
    let config_maint: Vec<bool> = cfg
        .backends
        .iter()
        .flat_map(|b| b.servers.iter().map(|s| s.disabled))
        .collect();
    let backends_up: Vec<bool> = (0..cfg.backends.len())
        .map(|pool| {
            refs.iter().enumerate().any(|(id, r)| {
                r.pool == pool as u32
                    && bal
                        .states
                        .get(id)
                        .is_some_and(|s| s.usable() && s.weight > 0)
            })
        })
        .collect();
    History::new(&up, &config_maint, &backends_up)
}

impl Runtime {
    pub fn new(
        cfg: Config,
        source: super::ConfigFile,
        extra_ifaces: Vec<String>,
        bal: Balancer,
        events: mpsc::Sender<CheckEvent>,
        logger: Logger,
        sysctls: Forwarding,
    ) -> Runtime {
        let checkers = health::spawn_checkers(health::targets(&cfg), events.clone());
        let names =
            tokio::sync::watch::Sender::new(super::flowlog::Names::of(&cfg, &bal.plan.layout));
        let flow_logger =
            tokio::sync::watch::Sender::new(std::sync::Arc::new(Logger::from_global(&cfg.global)));
        let servers = server_refs(&cfg);
        let history = new_history(&cfg, &servers, &bal);
        Runtime {
            history,
            servers,
            cfg,
            source,
            extra_ifaces,
            bal,
            checkers,
            events,
            logger,
            flow_logger,
            flavor: Flavor::Seed,
            sysctls: vec![sysctls],
            names,
        }
    }

    pub fn log(&self, line: &LogLine) {
        self.logger.log(line);
    }

    /// The pool's servers that take traffic, as HAProxy counts them for its log lines.
    pub fn counts(&self, pool: u32) -> Counts {
        let mut c = Counts::default();
        for (id, r) in self.servers.iter().enumerate() {
            let st = self.bal.states[id];
            if r.pool == pool && st.usable() && st.weight > 0 {
                if r.backup {
                    c.backup += 1;
                } else {
                    c.active += 1;
                }
            }
        }
        c
    }

    pub fn name(&self, id: u32) -> ServerName<'_> {
        let r = &self.servers[id as usize];
        ServerName {
            backend: &r.backend,
            server: &r.name,
            backup: r.backup,
        }
    }

    /// A finished health check: applies an UP/DOWN transition to the maps (so that, by the
    /// time the DOWN line is written, no new flow can reach the server), then logs.
    pub fn on_check(&mut self, ev: CheckEvent) -> Result<()> {
        let Some(r) = self.servers.get(ev.server as usize).cloned() else {
            return Ok(());
        };
        let id = ev.server as usize;
        // A result that raced an operator putting the server in maintenance.
        if self.bal.states[id].admin == Admin::Maint {
            return Ok(());
        }
        let before = self.counts(r.pool);
        if let Some(t) = ev.outcome.transition {
            self.bal.states[id].up = t == Transition::Up;
            self.bal.sync_pool(r.pool)?;
        }
        let after = self.counts(r.pool);
        self.history.check(
            ev.server,
            ev.result.status.passed(),
            ev.outcome.health.health,
        );
        self.note_pool(r.pool);
        let st = self.bal.states[id];
        let lines = check_event_lines(&CheckEventLog {
            server: self.name(ev.server),
            result: &ev.result,
            outcome: &ev.outcome,
            weight: st.weight,
            log_health_checks: r.log_health_checks,
            was_draining: st.admin == Admin::Drain,
            before,
            after,
            sessions: Sessions::default(),
            flavor: self.flavor,
        });
        for line in &lines {
            self.log(line);
        }
        Ok(())
    }
}

impl Runtime {
    /// SIGHUP: re-reads the config file. An invalid file changes nothing: the running
    /// configuration stays and the reasons are logged. A valid one is applied on the same
    /// maps: servers that stay (same backend and name) keep their health, the checks restart.
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

    async fn try_reload(
        &mut self,
        pending: &mut mpsc::Receiver<CheckEvent>,
    ) -> Result<(), Vec<String>> {
        let loaded = self.source.load().map_err(|e| {
            e.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        let cfg = loaded.config;
        let alerts: Vec<String> = host_diagnostics(&cfg)
            .into_iter()
            .filter(|d| d.severity == Severity::Alert)
            .map(|d| d.to_string())
            .collect();
        if !alerts.is_empty() {
            return Err(alerts);
        }
        let new_plan =
            plan(&cfg, &self.extra_ifaces).map_err(|e| vec![format!("[ALERT] {e:#}")])?;
        if cfg.global.instance != self.cfg.global.instance
            || cfg.global.conntrack_entries != self.cfg.global.conntrack_entries
        {
            return Err(vec![
                "[ALERT] 'instance' and 'conntrack_entries' only change with a restart".into(),
            ]);
        }
        let sysctls =
            Forwarding::enable(&new_plan.interfaces).map_err(|e| vec![format!("[ALERT] {e:#}")])?;

        // Carry the health of servers that stay over to the new numbering.
        let old: HashMap<(String, String), (u32, ServerState)> = self
            .servers
            .iter()
            .enumerate()
            .map(|(id, r)| {
                (
                    (r.backend.clone(), r.name.clone()),
                    (id as u32, self.bal.states[id]),
                )
            })
            .collect();
        let old_health: HashMap<u32, health::Health> = self
            .checkers
            .ids()
            .filter_map(|id| Some((id, self.checkers.health(id)?)))
            .collect();
        let mut states = initial_states(&new_plan);
        let mut targets = health::targets(&cfg);
        let refs = server_refs(&cfg);
        for (id, r) in refs.iter().enumerate() {
            if let Some((old_id, st)) = old.get(&(r.backend.clone(), r.name.clone())) {
                // A server in maintenance restarts its checks from `rise` (UP), as its new
                // checker does.
                states[id].up = st.up || st.admin == Admin::Maint;
                if let Some(t) = targets.iter_mut().find(|t| t.id == id as u32)
                    && let Some(h) = old_health.get(old_id)
                    && !h.in_maintenance()
                    && !t.health.in_maintenance()
                {
                    t.health = h.clone();
                }
            }
        }
        let old_checkers = std::mem::replace(
            &mut self.checkers,
            health::spawn_checkers(Vec::new(), self.events.clone()),
        );
        old_checkers.shutdown().await;
        // Results of the old checkers still queued refer to the old numbering.
        while pending.try_recv().is_ok() {}

        let wanted = new_plan.interfaces.clone();
        let apply = (|| -> Result<()> {
            self.bal.reinstall(new_plan, states, &cfg)?;
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
        })();
        self.checkers = health::spawn_checkers(targets, self.events.clone());
        let names = |refs: &[ServerRef]| -> Vec<(String, String)> {
            refs.iter()
                .map(|r| (r.backend.clone(), r.name.clone()))
                .collect()
        };
        let backend_names =
            |c: &Config| -> Vec<String> { c.backends.iter().map(|b| b.name.clone()).collect() };
        self.history = self.history.carry_over(
            &names(&self.servers),
            &backend_names(&self.cfg),
            &names(&refs),
            &backend_names(&cfg),
            new_history(&cfg, &refs, &self.bal),
        );
        self.servers = refs;
        // New log targets apply from the next line on, as in a reloaded HAProxy.
        if cfg.global.logs != self.cfg.global.logs || cfg.global.log_tag != self.cfg.global.log_tag
        {
            self.logger = Logger::from_global(&cfg.global);
            self.flow_logger
                .send_replace(std::sync::Arc::new(Logger::from_global(&cfg.global)));
        }
        self.names
            .send_replace(super::flowlog::Names::of(&cfg, &self.bal.plan.layout));
        self.cfg = cfg;
        self.sysctls.push(sysctls);
        apply.map_err(|e| vec![format!("[ALERT] applying the new configuration: {e:#}")])
    }
}
