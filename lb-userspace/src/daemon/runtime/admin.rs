//! The serve loop's side of the runtime API: it answers [`Request`]s with the daemon's view
//! of every server and applies operators' changes the way [`Runtime::on_check`] applies
//! health events: states and maps first (`Balancer::change`), then the log lines, in
//! HAProxy's words.
use std::time::Instant;

use super::Runtime;
use crate::{
    api::{
        Action, AdminCmd, AdminState, Request,
        cli::{self, NO_SUCH_BACKEND, NO_SUCH_SERVER},
        stats::{BackendState, CheckState, FrontendState, ServerState, State, XdpStats},
    },
    config::{Balance, Mode, Observe},
    daemon::{
        servers::{Admin, ServerEntry},
        slowstart,
    },
    dataplane::ids::{BackendId, ServerId},
    health::Transition,
    logs::{
        Counts, LogLine, Sessions, Why,
        format::{
            CHANGED_FROM_CLI, drain_enter, drain_leave, maintenance_enter, maintenance_leave,
            no_server_available, server_down, server_up,
        },
    },
};

/// What [`Runtime::move_admin`] did, for the lines the caller logs.
pub(super) struct AdminMove {
    /// The server could keep flows before (UP, not in maintenance).
    pub was_up: bool,
    /// Leaving maintenance: the state it comes back in.
    pub up_again: bool,
    /// The backend's usable servers before and after.
    pub before: Counts,
    pub after: Counts,
}

fn admin_state(a: Admin) -> AdminState {
    match a {
        Admin::Ready => AdminState::Ready,
        Admin::Drain => AdminState::Drain,
        Admin::Maint => AdminState::Maint,
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Tcp => "tcp",
        // lb balances HTTP backends at L4 too.
        Mode::Http => "http",
    }
}

impl Runtime {
    /// Answers one request from the API servers.
    pub async fn on_api(&mut self, req: Request) {
        match req {
            Request::State(reply) => {
                let _ = reply.send(self.api_state());
            }
            Request::Admin(
                AdminCmd {
                    backend,
                    server,
                    action: Action::Addr(change),
                },
                reply,
            ) => {
                // HAProxy answers this change with a message whatever happens: the text to
                // answer.
                let text = self.set_addr_cmd(&backend, &server, &change).await;
                let _ = reply.send(Err(text));
            }
            Request::Admin(cmd, reply) => {
                let r = self.admin(cmd);
                if r.is_ok() {
                    self.save_server_state();
                }
                let _ = reply.send(r);
            }
            Request::Trace(cmd, reply) => self.set_trace(cmd, reply),
        }
    }

    /// `cli_find_server`: the server's id, or HAProxy's answer.
    fn find_server(&self, backend: &str, server: &str) -> Result<ServerId, String> {
        if !self.cfg.backends.iter().any(|b| b.name == backend) {
            return Err(NO_SUCH_BACKEND.into());
        }
        self.bal
            .servers()
            .find(backend, server)
            .ok_or_else(|| NO_SUCH_SERVER.into())
    }

    /// The weight the config gave the server (HAProxy's `iweight`).
    pub(super) fn initial_weight(&self, id: ServerId) -> u32 {
        self.bal.server(id).map_or(1, |e| e.place.weight)
    }

    /// The `balance` of the server's backend.
    fn balance_of(&self, id: ServerId) -> Balance {
        self.bal
            .server(id)
            .and_then(|e| self.cfg.backends.get(e.place.backend.index()))
            .map_or(Balance::RoundRobin, |b| b.balance)
    }

    /// The entry of a server [`Runtime::find_server`] found.
    pub(super) fn entry(&self, id: ServerId) -> anyhow::Result<&ServerEntry> {
        self.bal
            .server(id)
            .ok_or_else(|| anyhow::anyhow!("no server {id}"))
    }

    /// Records the server's health counter after an operator moved it.
    fn note_health(&mut self, id: ServerId) {
        let health = self.checkers.health(id).map(|h| h.health());
        if let Some(h) = self.bal.history_mut(id) {
            h.set_health(health);
        }
    }

    fn admin(&mut self, cmd: AdminCmd) -> Result<(), String> {
        let id = self.find_server(&cmd.backend, &cmd.server)?;
        let applied = match cmd.action {
            Action::Invalid(text) => return Err(text),
            // Answered by `set_addr_cmd`, which needs to wait for the checks to restart.
            Action::Addr(_) => return Err(cli::ADDR_REQUIRED.into()),
            Action::State(s) => self.set_admin(id, s),
            Action::Weight(raw) => {
                let initial = self.initial_weight(id);
                let w = cli::parse_weight(&raw, initial).map_err(String::from)?;
                if w != 0 && w != initial && !self.balance_of(id).dynamic() {
                    return Err(cli::STATIC_WEIGHT.into());
                }
                self.set_weight(id, w)
            }
            Action::Health(up) => self.force_health(id, up),
            Action::Shutdown => self
                .entry(id)
                .map(|e| e.place.slot)
                .and_then(|slot| self.bal.shutdown_sessions(slot))
                .map(|_| ()),
            Action::Checks(enabled) => {
                if !self.checkers.is_checked(id) {
                    return if enabled {
                        Err(cli::HEALTH_NOT_CONFIGURED.into())
                    } else {
                        Ok(())
                    };
                }
                self.checkers.set_enabled(id, enabled);
                Ok(())
            }
        };
        applied.map_err(|e| format!("lb: the change could not be applied: {e:#}\n"))
    }

    /// `set server <b>/<s> addr ADDR [port PORT]` (`srv_update_addr_port`): the new address
    /// goes through the same path as a DNS answer (maps, checks, state file), without a log
    /// line, as in HAProxy. The answer is HAProxy's message; changing the port is refused.
    async fn set_addr_cmd(
        &mut self,
        backend: &str,
        server: &str,
        change: &cli::AddrChange,
    ) -> String {
        let id = match self.find_server(backend, server) {
            Ok(id) => id,
            Err(text) => return text,
        };
        let Ok(current) = self
            .entry(id)
            .map(|e| std::net::SocketAddr::new(e.place.addr, e.place.port))
        else {
            return cli::NO_SUCH_SERVER.into();
        };
        let plan = cli::plan_addr_change(current, change);
        // Within the family only (the plan refuses a change of family).
        if let Some(new) = plan.to {
            if let Err(e) = self.set_server_addr(id, Some(new)) {
                return format!("lb: the change could not be applied: {e:#}\n");
            }
            self.restart_checks().await;
            self.save_server_state();
        }
        plan.answer
    }

    fn log_all(&self, lines: &[LogLine]) {
        for l in lines {
            self.log(l);
        }
    }

    /// `disable|enable server`, `set server ... state ready|drain|maint` (and an agent's
    /// `ready`, `drain`, `maint`).
    pub(super) fn set_admin(&mut self, id: ServerId, want: AdminState) -> anyhow::Result<()> {
        let new = match want {
            AdminState::Ready => Admin::Ready,
            AdminState::Drain => Admin::Drain,
            AdminState::Maint => Admin::Maint,
        };
        let (old, addr) = self.entry(id).map(|e| (e.state, e.place.addr))?;
        if old.admin == new {
            return Ok(());
        }
        // A host name that resolves to nothing (`init-addr none`, a DNS failure): as HAProxy's
        // resolution maintenance, only an address ends it.
        if old.admin == Admin::Maint && addr.is_unspecified() {
            anyhow::bail!(
                "the server has no address (its host name does not resolve); it leaves maintenance when its name resolves again (its 'resolvers', or a reload)"
            );
        }
        let m = self.move_admin(id, new)?;
        let (was_up, up_again, before, after) = (m.was_up, m.up_again, m.before, m.after);
        let e = self.entry(id)?;
        let name = e.name();
        let z = Sessions::default();
        let mut lines = Vec::new();
        match (old.admin, new) {
            (_, Admin::Maint) => lines.push(maintenance_enter(
                name,
                was_up,
                old.admin == Admin::Drain,
                after,
                z,
            )),
            (Admin::Maint, _) => lines.push(maintenance_leave(name, up_again, new == Admin::Drain)),
            (Admin::Ready, Admin::Drain) => lines.push(drain_enter(name, was_up, after, z)),
            (Admin::Drain, Admin::Ready) => lines.push(drain_leave(name, was_up)),
            _ => {}
        }
        if before.total() > 0 && after.total() == 0 {
            lines.push(no_server_available(&e.backend));
        }
        self.log_all(&lines);
        Ok(())
    }

    /// Moves a server to the admin state `new` (maintenance pauses its checks, leaving it
    /// resumes them from `rise`) and brings the maps in line; the caller logs.
    pub(super) fn move_admin(&mut self, id: ServerId, new: Admin) -> anyhow::Result<AdminMove> {
        let (old, backend) = self.entry(id).map(|e| (e.state, e.place.backend))?;
        let before = self.counts(backend);
        let was_up = old.active();
        let leaving_maint = old.admin == Admin::Maint;
        if new == Admin::Maint {
            self.checkers.enter_maintenance(id);
        } else if leaving_maint {
            // Checks resume with the counter at `rise`: the server comes back UP (unless its
            // agent says DOWN) and the next failed check takes it down. Unchecked servers
            // are simply UP.
            self.checkers.leave_maintenance(id);
            if let Some(h) = self.bal.history_mut(id) {
                h.leave_config_maint();
            }
        }
        let up_again = self.checkers.server_up(id).unwrap_or(true);
        self.bal.change(id, |st| {
            if leaving_maint {
                st.up = up_again;
                st.stopping = false;
            }
            st.admin = new;
        })?;
        self.note_health(id);
        Ok(AdminMove {
            was_up,
            up_again,
            before,
            after: self.counts(backend),
        })
    }

    /// `set weight`, `set server ... weight`: the pool's table is rebuilt with the new
    /// weight. HAProxy logs nothing for a weight change; lb logs only when it leaves the
    /// backend without a usable server.
    pub(super) fn set_weight(&mut self, id: ServerId, w: u32) -> anyhow::Result<()> {
        let (old, backend) = self.entry(id).map(|e| (e.state, e.place.backend))?;
        if old.weight == w {
            return Ok(());
        }
        let before = self.counts(backend);
        self.bal.change(id, |st| st.weight = w)?;
        let after = self.counts(backend);
        if before.total() > 0 && after.total() == 0 {
            let e = self.entry(id)?;
            self.log(&no_server_available(&e.backend));
        }
        Ok(())
    }

    /// `set server ... health up|down`: the counter goes to its top or to 0; in maintenance
    /// only the counter moves (HAProxy's behaviour).
    fn force_health(&mut self, id: ServerId, up: bool) -> anyhow::Result<()> {
        let (st, backend) = self.entry(id).map(|e| (e.state, e.place.backend))?;
        let checked = self.checkers.is_checked(id);
        if st.admin == Admin::Maint {
            if checked {
                self.checkers.force(id, up);
            }
            return Ok(());
        }
        let changed = if checked {
            self.checkers.force(id, up).is_some()
        } else {
            st.up != up
        };
        self.note_health(id);
        if !changed {
            return Ok(());
        }
        let before = self.counts(backend);
        self.bal.change(id, |s| {
            s.up = up;
            s.stopping = false;
        })?;
        self.end_sessions_on(id, if up { Transition::Up } else { Transition::Down })?;
        let after = self.counts(backend);
        let e = self.entry(id)?;
        let name = e.name();
        let why = Why::Text(CHANGED_FROM_CLI);
        let z = Sessions::default();
        let mut lines = Vec::new();
        if up {
            lines.push(server_up(name, why, after, z, self.flavor));
        } else {
            lines.push(server_down(
                name,
                why,
                after,
                z,
                st.admin == Admin::Drain,
                self.flavor,
            ));
            if before.total() > 0 && after.total() == 0 {
                lines.push(no_server_available(&e.backend));
            }
        }
        self.log_all(&lines);
        Ok(())
    }

    /// The sums of the effective weights (in user units, rounded up: HAProxy's
    /// `tot_weight` as `show stat` prints it) and of the user weights of the servers taking
    /// new flows, chosen as the table builder chooses them (active servers, else the first
    /// backup, or all with `allbackups`).
    fn tot_weight(&self, backend: BackendId) -> (u32, u32) {
        let Some(p) = self.bal.layout().pool(backend) else {
            return (0, 0);
        };
        let usable: Vec<(bool, u32, u32)> = self
            .bal
            .servers()
            .of_backend(backend)
            .filter(|e| e.state.usable() && e.state.weight > 0)
            .map(|e| (e.place.backup, e.applied.eweight, e.state.weight))
            .collect();
        let sum = |it: &mut dyn Iterator<Item = &(bool, u32, u32)>| {
            it.fold((0, 0), |(e, u), &(_, ew, uw)| (e + ew, u + uw))
        };
        let mut taken = sum(&mut usable.iter().filter(|s| !s.0));
        if taken.1 == 0 {
            let mut backups = usable.iter().filter(|s| s.0);
            taken = if p.allbackups {
                sum(&mut backups)
            } else {
                sum(&mut backups.take(1))
            };
        }
        (slowstart::shown_weight(taken.0), taken.1)
    }

    /// The daemon's view for `show stat`, `show servers state`, metrics and the page.
    pub(super) fn api_state(&mut self) -> State {
        let now = Instant::now();
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let mut backends = Vec::new();
        for p in &self.bal.layout().pools {
            let Some(b) = self.cfg.backends.get(p.id.index()) else {
                continue;
            };
            let servers: Vec<ServerState> = self
                .bal
                .servers()
                .of_backend(p.id)
                .filter_map(|e| self.server_state(e, now))
                .collect();
            let c: Counts = self.counts(p.id);
            let (tot_weight, tot_uweight) = self.tot_weight(p.id);
            let bh = self.bal.servers().backend(p.id).map(|b| &b.history);
            backends.push(BackendState {
                name: b.name.clone(),
                mode: mode_name(b.mode),
                algo: b.balance.name(),
                up: tot_weight > 0 || servers.is_empty(),
                servers,
                act: c.active,
                bck: c.backup,
                tot_weight,
                tot_uweight,
                chkdown: bh.map_or(0, |h| h.chkdown),
                lastchg: bh.map_or(0, |h| secs(h.last_change)),
                downtime: bh.map_or(0, |h| h.downtime(now).as_secs()),
            });
        }
        State {
            instance: self.cfg.global.instance.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            start_time: self.started.unix,
            uptime: secs(self.started.at),
            conntrack_entries: self.cfg.global.flow_capacity(),
            maxconn: self.cfg.global.maxconn,
            listeners: self.bal.layout().services.len() as u32,
            dropped_logs: self.logger.dropped(),
            frontends: self
                .cfg
                .frontends
                .iter()
                .enumerate()
                .map(|(i, f)| FrontendState {
                    id: i as u32,
                    name: f.name.clone(),
                    mode: mode_name(f.mode),
                })
                .collect(),
            backends,
            xdp: self.xdp_stats(),
        }
    }

    /// One server's row of [`Runtime::api_state`]; `None` should its config entry be
    /// missing.
    fn server_state(&self, e: &ServerEntry, now: Instant) -> Option<ServerState> {
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let (_, s) = e.place.config(&self.cfg)?;
        let (id, st, h) = (e.id(), e.state, &e.history);
        let last = self.checkers.last_result(id);
        let check = self.checkers.health(id).map(|hl| CheckState {
            enabled: self.checkers.is_enabled(id),
            paused: hl.in_maintenance(),
            health: hl.health(),
            rise: hl.rise(),
            fall: hl.fall(),
            status: hl.status(),
            code: last.as_ref().and_then(|l| l.code),
            duration_ms: last
                .as_ref()
                .map(|l| u64::try_from(l.duration_ms()).unwrap_or(u64::MAX)),
            info: last.as_ref().map(|l| l.info.clone()).unwrap_or_default(),
        });
        Some(ServerState {
            id,
            slot: e.place.slot,
            puid: e.place.puid,
            name: e.place.name.clone(),
            addr: e.place.addr,
            fqdn: s.fqdn.clone(),
            port: e.place.port,
            backup: e.place.backup,
            up: st.active(),
            stopping: st.stopping,
            admin: admin_state(st.admin),
            config_maint: h.config_maint && st.admin == Admin::Maint,
            resolution_maint: self.rmaint.contains_key(&id) && st.admin == Admin::Maint,
            weight: st.weight,
            eweight: e.applied.eweight,
            starting: st.starting.is_some(),
            maxconn: e.place.maxconn,
            initial_weight: e.place.weight,
            check,
            check_port: s.check_port,
            check_addr: s.check_addr,
            chkfail: h.chkfail,
            hanafail: (s.observe == Observe::Layer4).then_some(h.hanafail),
            chkdown: h.updown.chkdown,
            lastchg: secs(h.updown.last_change),
            downtime: h.updown.downtime(now).as_secs(),
        })
    }

    /// `run_time_ns`/`run_cnt` of the balancer program, while `kernel.bpf_stats_enabled`
    /// is on (otherwise the kernel does not count).
    fn xdp_stats(&mut self) -> Option<XdpStats> {
        let on = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if !on {
            return None;
        }
        let info = self.bal.dp.lb_program().ok()?.info().ok()?;
        Some(XdpStats {
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            run_count: info.run_count(),
        })
    }
}
