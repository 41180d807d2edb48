//! The running balancer: health events (and, through the runtime API, operators) change
//! server states; every change is applied to the maps first and logged after, in HAProxy's
//! words.
//!
//! - `admin`: the runtime API's requests, answered in the serve loop;
//! - `reload`: SIGHUP, a new configuration applied on the same maps.
mod admin;
mod agent;
mod reload;
mod state_file;

pub use state_file::StateFiles;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::{mpsc, watch};

/// How long a stopping node keeps its data plane after withdrawing its VIPs: BGP carries a
/// withdrawal to the router in milliseconds; this leaves room for a busy router.
const WITHDRAW_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

use super::{
    ConfigFile, balancer::Balancer, flowlog, flowlog::Names, history::Started, servers::Admin,
    sysctl::Forwarding,
};
use crate::{
    config::Config,
    config::{OnMarkedDown, OnMarkedUp},
    dataplane::ids::{BackendId, ServerId, ServerSlot},
    health::{self, CheckEvent, CheckResult, Checkers, Outcome, Transition},
    logs::{
        CheckEventLog, Counts, Flavor, LogLine, Logger, Sessions, check_event_lines,
        format::startup_lines,
    },
};

pub struct Runtime {
    cfg: Config,
    /// Where the config came from (re-read on reload) and `-i` interfaces.
    source: ConfigFile,
    extra_ifaces: Vec<String>,
    bal: Balancer,
    checkers: Checkers,
    /// Where checkers report (kept to start new ones on reload).
    events: mpsc::Sender<CheckEvent>,
    logger: Logger,
    /// The tcplog task's logger, replaced on reload when the `log` lines change.
    flow_logger: watch::Sender<Arc<Logger>>,
    /// Names for the tcplog task, replaced on reload.
    names: watch::Sender<Arc<Names>>,
    flavor: Flavor,
    /// The host settings of every configuration applied, restored on exit.
    sysctls: Vec<Forwarding>,
    started: Started,
    /// `server-state-file`s, opened before any chroot.
    state_files: StateFiles,
}

/// What the daemon opened on the host while it still had its privileges, and keeps using
/// after a `chroot`.
pub struct Opened {
    /// Where the config came from (re-read on reload).
    pub source: ConfigFile,
    /// `-i` interfaces.
    pub extra_ifaces: Vec<String>,
    pub sysctls: Forwarding,
    pub state_files: StateFiles,
}

impl Runtime {
    pub fn new(
        cfg: Config,
        bal: Balancer,
        events: mpsc::Sender<CheckEvent>,
        logger: Logger,
        opened: Opened,
    ) -> Runtime {
        let Opened {
            source,
            extra_ifaces,
            sysctls,
            state_files,
        } = opened;
        let checkers = health::spawn_checkers(health::targets(bal.layout(), &cfg), events.clone());
        let names = watch::Sender::new(Names::of(&cfg, bal.layout()));
        let flow_logger = watch::Sender::new(Arc::new(Logger::from_global(&cfg.global)));
        Runtime {
            cfg,
            source,
            extra_ifaces,
            bal,
            checkers,
            events,
            logger,
            flow_logger,
            names,
            flavor: Flavor::Seed,
            sysctls: vec![sysctls],
            started: Started::now(),
            state_files,
        }
    }

    /// The configuration applied last.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn log(&self, line: &LogLine) {
        self.logger.log(line);
    }

    /// HAProxy's lines for a start ("Proxy ... started.").
    pub fn log_startup(&self) {
        for line in startup_lines(&self.cfg, self.flavor) {
            self.log(&line);
        }
    }

    /// Starts logging the data plane's new-flow events (`option tcplog`), once.
    pub fn start_flow_log(&mut self) {
        let Some(ring) = self.bal.dp.events.take() else {
            return;
        };
        let names = self.names.subscribe();
        let flow_logger = self.flow_logger.subscribe();
        tokio::spawn(async move {
            if let Err(e) = flowlog::run(ring, names, flow_logger).await {
                eprintln!("[WARNING] option tcplog: no more connection lines: {e:#}");
            }
        });
    }

    /// Stops the checks and detaches from every interface (the maps stay pinned); the host
    /// settings are restored.
    pub async fn stop(&mut self) -> Result<()> {
        self.withdraw().await;
        self.save_server_state();
        self.stop_checks().await;
        self.bal.dp.detach_all()
    }

    /// Stops the checks and leaves the data plane running for a successor: new flows are
    /// still balanced for `grace`, established ones until they end. The host settings it
    /// needs stay as they are.
    pub async fn hand_over(&mut self, grace: std::time::Duration) -> Result<()> {
        self.withdraw().await;
        self.save_server_state();
        self.stop_checks().await;
        for s in &mut self.sysctls {
            s.keep();
        }
        self.bal.stop_new_flows_after(grace)
    }

    /// Withdraws this node's VIPs first (several lb nodes): while the router hears it, the
    /// data plane still takes what the router sends here, then the other nodes get it all.
    async fn withdraw(&mut self) {
        match self.bal.withdraw_all() {
            Ok(true) => tokio::time::sleep(WITHDRAW_GRACE).await,
            Ok(false) => {}
            Err(e) => eprintln!("[WARNING] withdrawing the VIPs' routes: {e:#}"),
        }
    }

    /// The host's addresses changed: wildcard binds follow them.
    pub fn on_addresses(&mut self) -> Result<()> {
        let local = crate::net::local_addrs()?;
        if self.bal.set_local(super::plan::local_v4(&local))? {
            eprintln!("[NOTICE] local addresses changed: wildcard binds follow them");
        }
        Ok(())
    }

    /// Stops every checker and waits for them to end; none is left running.
    async fn stop_checks(&mut self) {
        let none = health::spawn_checkers(Vec::new(), self.events.clone());
        std::mem::replace(&mut self.checkers, none).shutdown().await;
    }

    /// `on-marked-down shutdown-sessions` and `on-marked-up shutdown-backup-sessions`: the
    /// flows a transition of `id` ends.
    fn end_sessions_on(&mut self, id: ServerId, t: Transition) -> Result<()> {
        let Some(e) = self.bal.server(id) else {
            return Ok(());
        };
        let Some((_, srv)) = e.place.config(&self.cfg) else {
            return Ok(());
        };
        let doomed: Vec<ServerSlot> = match t {
            Transition::Down if srv.on_marked_down == OnMarkedDown::ShutdownSessions => {
                vec![e.place.slot]
            }
            Transition::Up
                if !e.place.backup && srv.on_marked_up == OnMarkedUp::ShutdownBackupSessions =>
            {
                self.bal
                    .servers()
                    .of_backend(e.place.backend)
                    .filter(|b| b.place.backup)
                    .map(|b| b.place.slot)
                    .collect()
            }
            _ => return Ok(()),
        };
        for slot in doomed {
            self.bal.shutdown_sessions(slot)?;
        }
        Ok(())
    }

    fn counts(&self, backend: BackendId) -> Counts {
        self.bal.servers().counts(backend)
    }

    /// A finished check: applies an UP/DOWN transition to the maps (so that, by the time the
    /// DOWN line is written, no new flow can reach the server), then logs. An agent's admin
    /// and weight words are applied first, as HAProxy does.
    pub fn on_check(&mut self, ev: CheckEvent) -> Result<()> {
        match ev {
            CheckEvent::Health(e) => self.on_health_check(e.server, &e.result, &e.outcome, false),
            CheckEvent::Agent(e) => {
                self.on_agent_words(e.server, &e.report)?;
                match self.checkers.apply_agent(e.server, &e.report) {
                    Some(outcome) => {
                        self.on_health_check(e.server, &e.report.result, &outcome, true)
                    }
                    None => Ok(()),
                }
            }
        }
    }

    fn on_health_check(
        &mut self,
        id: ServerId,
        result: &CheckResult,
        outcome: &Outcome,
        agent: bool,
    ) -> Result<()> {
        let Some(e) = self.bal.server(id) else {
            return Ok(());
        };
        // A health check result that raced an operator putting the server in maintenance.
        // (Agents go on in maintenance: their transitions are already none there.)
        if e.state.admin == Admin::Maint && !agent {
            return Ok(());
        }
        let backend = e.place.backend;
        let before = self.counts(backend);
        if let Some(t) = outcome.transition {
            self.bal.change(id, |st| st.up = t == Transition::Up)?;
            self.end_sessions_on(id, t)?;
        }
        let after = self.counts(backend);
        if !agent && let Some(h) = self.bal.history_mut(id) {
            h.check(result.status.passed(), outcome.health.health);
        }
        let Some(e) = self.bal.server(id) else {
            return Ok(());
        };
        let log_health_checks = self
            .cfg
            .backends
            .get(backend.index())
            .is_some_and(|b| b.log_health_checks);
        let lines = check_event_lines(&CheckEventLog {
            server: e.name(),
            agent,
            result,
            outcome,
            weight: e.state.weight,
            log_health_checks,
            was_draining: e.state.admin == Admin::Drain,
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
