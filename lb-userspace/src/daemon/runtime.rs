//! The running balancer: health events (and, through the runtime API, operators) change
//! server states; every change is applied to the maps first and logged after, in HAProxy's
//! words.
//!
//! - `admin`: the runtime API's requests, answered in the serve loop;
//! - `reload`: SIGHUP, a new configuration applied on the same maps.
mod admin;
mod agent;
mod reload;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::{mpsc, watch};

use super::{
    ConfigFile, balancer::Balancer, flowlog, flowlog::Names, history::Started, servers::Admin,
    sysctl::Forwarding,
};
use crate::{
    config::Config,
    dataplane::ids::{BackendId, ServerId},
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
}

impl Runtime {
    pub fn new(
        cfg: Config,
        source: ConfigFile,
        extra_ifaces: Vec<String>,
        bal: Balancer,
        events: mpsc::Sender<CheckEvent>,
        logger: Logger,
        sysctls: Forwarding,
    ) -> Runtime {
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

    /// Stops the checks and detaches from every interface (the maps stay pinned).
    pub async fn stop(&mut self) -> Result<()> {
        self.stop_checks().await;
        self.bal.dp.detach_all()
    }

    /// Stops every checker and waits for them to end; none is left running.
    async fn stop_checks(&mut self) {
        let none = health::spawn_checkers(Vec::new(), self.events.clone());
        std::mem::replace(&mut self.checkers, none).shutdown().await;
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
