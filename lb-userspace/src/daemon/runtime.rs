//! The running balancer: health events (and, through the runtime API, operators) change
//! server states; every change is applied to the maps first and logged after, in HAProxy's
//! words.
//!
//! - `admin`: the runtime API's requests, answered in the serve loop;
//! - `reload`: SIGHUP, a new configuration applied on the same maps;
//! - `dns`: finished name resolutions moving servers (addresses, resolution maintenance).
mod admin;
mod agent;
mod dns;
mod reload;
mod state_file;

pub use state_file::StateFiles;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a stopping node keeps its data plane after withdrawing its VIPs: BGP carries a
/// withdrawal to the router in milliseconds; this leaves room for a busy router.
const WITHDRAW_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

use super::{
    ConfigFile,
    balancer::Balancer,
    flowlog,
    flowlog::Names,
    history::Started,
    recount,
    servers::Admin,
    sysctl::Forwarding,
    tracing::{self, Tracing},
};
use crate::{
    api::cli::TraceCmd,
    config::Config,
    config::{Observe, OnError, OnMarkedDown, OnMarkedUp},
    dataplane::Dataplane,
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
    /// Whether the configuration needs active flows recounted (`recount::needed`).
    recount: watch::Sender<bool>,
    /// `lb trace on`: the tracing copy of the program, running.
    tracing: Option<Tracing>,
    /// Where a tracing copy, once loaded, comes back to the serve loop.
    traces: mpsc::Sender<TraceLoaded>,
    /// The DNS clients of the `resolvers` sections, replaced on reload, and where they
    /// report.
    dns: super::dns::client::DnsClients,
    dns_events: mpsc::Sender<super::dns::client::DnsEvent>,
    /// Servers in maintenance because their name does not resolve (HAProxy's RMAINT), and
    /// whether an operator had put them in maintenance before (then a valid answer gives
    /// them their address but leaves them there).
    rmaint: std::collections::BTreeMap<ServerId, bool>,
    /// The last address DNS gave a server that lb could not use (no route), said once.
    unusable: std::collections::BTreeMap<ServerId, std::net::Ipv4Addr>,
}

/// A tracing copy of the program loaded for `lb trace on` (see [`Runtime::set_trace`]).
pub struct TraceLoaded {
    dp: Result<Dataplane>,
    vip: Option<String>,
    reply: oneshot::Sender<Result<(), String>>,
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
    /// The pinned maps, for the recount of active flows (`recount::run`).
    pub recount_maps: crate::dataplane::Maps,
}

impl Runtime {
    pub fn new(
        cfg: Config,
        bal: Balancer,
        events: mpsc::Sender<CheckEvent>,
        logger: Logger,
        opened: Opened,
        traces: mpsc::Sender<TraceLoaded>,
        dns_events: mpsc::Sender<super::dns::client::DnsEvent>,
    ) -> Runtime {
        let Opened {
            source,
            extra_ifaces,
            sysctls,
            state_files,
            recount_maps,
        } = opened;
        let (recount, wanted) = watch::channel(recount::needed(&cfg));
        tokio::spawn(recount::run(recount_maps, wanted));
        let checkers = health::spawn_checkers(health::targets(bal.layout(), &cfg), events.clone());
        let names = watch::Sender::new(Names::of(&cfg, bal.layout()));
        let flow_logger = watch::Sender::new(Arc::new(Logger::from_global(&cfg.global)));
        let dns = super::dns::client::spawn(&cfg, dns_events.clone());
        let mut rt = Runtime {
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
            recount,
            tracing: None,
            traces,
            dns,
            dns_events,
            rmaint: Default::default(),
            unusable: Default::default(),
        };
        rt.rmaint = rt.unresolved_servers();
        rt
    }

    /// `lb trace on|off [--vip ADDR[:PORT]]`: `off` at once; `on` loads the tracing copy of
    /// the program off the serve loop (the verifier takes seconds), then
    /// [`Runtime::on_trace_loaded`] swaps it in and answers. A new `on` replaces the running
    /// trace.
    pub fn set_trace(&mut self, cmd: TraceCmd, reply: oneshot::Sender<Result<(), String>>) {
        let failed = |e: String| format!("lb trace: {e}\n");
        let opts = match tracing::filter(cmd.vip.as_deref())
            .map_err(failed)
            .and_then(|f| {
                self.bal
                    .dp
                    .tracing_options(f)
                    .map_err(|e| failed(format!("{e:#}")))
            }) {
            Ok(o) => o,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if !cmd.on {
            let _ = reply.send(self.stop_tracing().map_err(|e| failed(format!("{e:#}"))));
            return;
        }
        let loaded = self.traces.clone();
        tokio::spawn(async move {
            let dp = tokio::task::spawn_blocking(move || Dataplane::load(&opts))
                .await
                .map_err(|e| anyhow::anyhow!("loading the tracing copy: {e}"))
                .and_then(|r| r);
            let _ = loaded
                .send(TraceLoaded {
                    dp,
                    vip: cmd.vip,
                    reply,
                })
                .await;
        });
    }

    /// The tracing copy is loaded (or failed to): swap it in and answer.
    pub fn on_trace_loaded(&mut self, t: TraceLoaded) {
        let r = self.swap_in_trace(t.dp).map(|()| {
            eprintln!(
                "[NOTICE] lb trace: on{}",
                t.vip.map_or(String::new(), |v| format!(" for {v}"))
            );
        });
        let _ = t.reply.send(r.map_err(|e| format!("lb trace: {e:#}\n")));
    }

    fn swap_in_trace(&mut self, dp: Result<Dataplane>) -> Result<()> {
        let dp = dp?;
        self.stop_tracing()?;
        let t = Tracing::start(
            &mut self.bal.dp,
            dp,
            self.names.subscribe(),
            self.flow_logger.subscribe(),
        )?;
        self.tracing = Some(t);
        Ok(())
    }

    /// Puts the untraced program back on every interface, if a trace runs.
    pub(super) fn stop_tracing(&mut self) -> Result<()> {
        if let Some(t) = self.tracing.take() {
            t.stop(&mut self.bal.dp)?;
            eprintln!("[NOTICE] lb trace: off");
        }
        Ok(())
    }

    /// Four times a second: slow starts move on, and what `observe` counted is acted on.
    pub fn on_tick(&mut self) -> Result<()> {
        self.bal.warm_up()?;
        self.observe()
    }

    /// `observe layer4`: a checked server that refused `error-limit` connections in a row
    /// (the data plane counts them, `LB_REFUSALS`; one it accepts starts again) gets its
    /// `on-error`, logged as HAProxy logs it.
    fn observe(&mut self) -> Result<()> {
        let observed: Vec<(ServerId, ServerSlot, u32, OnError)> = self
            .bal
            .servers()
            .iter()
            .filter_map(|e| {
                let (_, s) = e.place.config(&self.cfg)?;
                (s.observe == Observe::Layer4 && s.check).then_some((
                    e.id(),
                    e.place.slot,
                    s.error_limit,
                    s.on_error,
                ))
            })
            .collect();
        for (id, slot, limit, on_error) in observed {
            let n = self.bal.dp.maps.refusals.get(&slot.0, 0)?;
            if n < u64::from(limit) {
                continue;
            }
            self.bal.dp.maps.refusals.set(slot.0, 0, 0)?;
            if let Some(h) = self.bal.history_mut(id) {
                h.hanafail += 1;
            }
            let info = format!(
                "Detected {n} consecutive errors, last one was: L4 unsuccessful connection"
            );
            if let Some((result, outcome)) = self.checkers.analyze(id, on_error, info) {
                self.on_health_check(id, &result, &outcome, false)?;
            }
        }
        Ok(())
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
        self.stop_tracing()?;
        self.save_server_state();
        self.stop_checks().await;
        self.bal.dp.detach_all()
    }

    /// Stops the checks and leaves the data plane running for a successor: new flows are
    /// still balanced for `grace`, established ones until they end. The host settings it
    /// needs stay as they are.
    pub async fn hand_over(&mut self, grace: std::time::Duration) -> Result<()> {
        self.withdraw().await;
        // A successor adopts the links with its own program: never leave the tracing copy.
        self.stop_tracing()?;
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
        if self.bal.set_local(super::plan::local_of(&local))? {
            eprintln!("[NOTICE] local addresses changed: wildcard binds follow them");
        }
        Ok(())
    }

    /// Restarts every checker on the configuration as it is now (a server's address changed),
    /// each going on from its current health counter.
    pub(super) async fn restart_checks(&mut self) {
        let mut targets = health::targets(self.bal.layout(), &self.cfg);
        for t in &mut targets {
            if let Some(h) = self.checkers.health(t.id) {
                t.health = h;
            }
        }
        self.stop_checks().await;
        self.checkers = health::spawn_checkers(targets, self.events.clone());
    }

    /// Stops every checker and waits for them to end; none is left running.
    async fn stop_checks(&mut self) {
        let none = health::spawn_checkers(Vec::new(), self.events.clone());
        std::mem::replace(&mut self.checkers, none).shutdown().await;
    }

    /// `on-marked-down shutdown-sessions` and `on-marked-up shutdown-backup-sessions`: the
    /// flows a transition of `id` (by its checks, its agent or `set server ... health`)
    /// ends. As HAProxy, a server coming UP ends the backups' flows only if it is not a
    /// backup itself and can take new flows (some effective weight).
    pub(super) fn end_sessions_on(&mut self, id: ServerId, t: Transition) -> Result<()> {
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
                if !e.place.backup
                    && e.applied.eweight > 0
                    && srv.on_marked_up == OnMarkedUp::ShutdownBackupSessions =>
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
        let was_draining = e.state.admin == Admin::Drain || e.state.stopping;
        if let Some(t) = outcome.transition {
            let stopping = self.checkers.server_stopping(id);
            self.bal.change(id, |st| {
                st.up = t != Transition::Down;
                st.stopping = st.up && stopping;
            })?;
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
            was_draining,
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
