//! The serve loop's side of the runtime API: it answers [`Request`]s with the daemon's view
//! of every server and applies operators' changes the way [`Runtime::on_check`] applies
//! health events: states first, then the maps (`Balancer::sync_pool`), then the log lines,
//! in HAProxy's words.
use std::time::Instant;

use super::{
    balancer::{Admin, ServerState as BalState},
    runtime::Runtime,
};
use crate::{
    api::{
        Action, AdminCmd, AdminState, Request,
        cli::{self, NO_SUCH_BACKEND, NO_SUCH_SERVER},
        stats::{BackendState, CheckState, FrontendState, ServerState, State, XdpStats},
    },
    config::Mode,
    logs::{
        Counts, LogLine, Sessions, Why,
        format::{
            CHANGED_FROM_CLI, drain_enter, drain_leave, maintenance_enter, maintenance_leave,
            no_server_available, server_down, server_up,
        },
    },
};

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
    pub fn on_api(&mut self, req: Request) {
        match req {
            Request::State(reply) => {
                let _ = reply.send(self.api_state());
            }
            Request::Admin(cmd, reply) => {
                let r = self.admin(cmd);
                let _ = reply.send(r);
            }
        }
    }

    /// `cli_find_server`: the server's id, or HAProxy's answer.
    fn find_server(&self, backend: &str, server: &str) -> Result<u32, String> {
        if !self.cfg.backends.iter().any(|b| b.name == backend) {
            return Err(NO_SUCH_BACKEND.into());
        }
        self.servers
            .iter()
            .position(|r| r.backend == backend && r.name == server)
            .filter(|&i| i < self.bal.states.len())
            .map(|i| i as u32)
            .ok_or_else(|| NO_SUCH_SERVER.into())
    }

    /// The weight the config gave the server (HAProxy's `iweight`).
    fn initial_weight(&self, id: u32) -> u32 {
        let r = &self.servers[id as usize];
        self.cfg
            .backends
            .get(r.pool as usize)
            .and_then(|b| b.servers.iter().find(|s| s.name == r.name))
            .map_or(1, |s| s.weight)
    }

    fn admin(&mut self, cmd: AdminCmd) -> Result<(), String> {
        let id = self.find_server(&cmd.backend, &cmd.server)?;
        let applied = match cmd.action {
            Action::Invalid(text) => return Err(text),
            Action::State(s) => self.set_admin(id, s),
            Action::Weight(raw) => {
                let w = cli::parse_weight(&raw, self.initial_weight(id)).map_err(String::from)?;
                self.set_weight(id, w)
            }
            Action::Health(up) => self.force_health(id, up),
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

    fn log_all(&self, lines: &[LogLine]) {
        for l in lines {
            self.log(l);
        }
    }

    /// Brings the history of `pool` (its servers and itself) up to date after a change.
    pub(crate) fn note_pool(&mut self, pool: u32) {
        let ids: Vec<u32> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.pool == pool)
            .map(|(i, _)| i as u32)
            .collect();
        for id in ids {
            let st = self.bal.states[id as usize];
            self.history.server(id, st.up && st.admin != Admin::Maint);
        }
        let up = self.counts(pool).total() > 0;
        self.history.backend(pool, up);
    }

    /// `disable|enable server`, `set server ... state ready|drain|maint`.
    fn set_admin(&mut self, id: u32, want: AdminState) -> anyhow::Result<()> {
        let new = match want {
            AdminState::Ready => Admin::Ready,
            AdminState::Drain => Admin::Drain,
            AdminState::Maint => Admin::Maint,
        };
        let r = self.servers[id as usize].clone();
        let old: BalState = self.bal.states[id as usize];
        if old.admin == new {
            return Ok(());
        }
        let before = self.counts(r.pool);
        let was_up = old.up && old.admin != Admin::Maint;
        if new == Admin::Maint {
            self.checkers.enter_maintenance(id);
        } else if old.admin == Admin::Maint {
            // Checks resume with the counter at `rise`: the server comes back UP and the
            // next failed check takes it down. Unchecked servers are simply UP.
            self.checkers.leave_maintenance(id);
            self.bal.states[id as usize].up = true;
            self.history.leave_config_maint(id);
        }
        self.bal.states[id as usize].admin = new;
        self.bal.sync_pool(r.pool)?;
        self.history
            .health(id, self.checkers.health(id).map(|h| h.health()));
        self.note_pool(r.pool);
        let after = self.counts(r.pool);
        let name = self.name(id);
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
            (Admin::Maint, _) => lines.push(maintenance_leave(name, true, new == Admin::Drain)),
            (Admin::Ready, Admin::Drain) => lines.push(drain_enter(name, was_up, after, z)),
            (Admin::Drain, Admin::Ready) => lines.push(drain_leave(name, was_up)),
            _ => {}
        }
        if before.total() > 0 && after.total() == 0 {
            lines.push(no_server_available(&r.backend));
        }
        self.log_all(&lines);
        Ok(())
    }

    /// `set weight`, `set server ... weight`: the pool's table is rebuilt with the new
    /// weight. HAProxy logs nothing for a weight change; lb logs only when it leaves the
    /// backend without a usable server.
    fn set_weight(&mut self, id: u32, w: u32) -> anyhow::Result<()> {
        let r = self.servers[id as usize].clone();
        if self.bal.states[id as usize].weight == w {
            return Ok(());
        }
        let before = self.counts(r.pool);
        self.bal.states[id as usize].weight = w;
        self.bal.sync_pool(r.pool)?;
        self.note_pool(r.pool);
        let after = self.counts(r.pool);
        if before.total() > 0 && after.total() == 0 {
            self.log(&no_server_available(&r.backend));
        }
        Ok(())
    }

    /// `set server ... health up|down`: the counter goes to its top or to 0; in maintenance
    /// only the counter moves (HAProxy's behaviour).
    fn force_health(&mut self, id: u32, up: bool) -> anyhow::Result<()> {
        let r = self.servers[id as usize].clone();
        let st = self.bal.states[id as usize];
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
        self.history
            .health(id, self.checkers.health(id).map(|h| h.health()));
        if !changed {
            return Ok(());
        }
        let before = self.counts(r.pool);
        self.bal.states[id as usize].up = up;
        self.bal.sync_pool(r.pool)?;
        self.note_pool(r.pool);
        let after = self.counts(r.pool);
        let name = self.name(id);
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
                lines.push(no_server_available(&r.backend));
            }
        }
        self.log_all(&lines);
        Ok(())
    }

    /// The sum of the weights of the servers taking new flows, chosen as the table builder
    /// chooses them (active servers, else the first backup, or all with `allbackups`).
    fn tot_weight(&self, pool: u32) -> u32 {
        let Some(p) = self.bal.plan.layout.pools.get(pool as usize) else {
            return 0;
        };
        let usable: Vec<(bool, u32)> = p
            .servers
            .iter()
            .map(|s| (s.backup, self.bal.states[s.id as usize]))
            .filter(|(_, st)| st.usable() && st.weight > 0)
            .map(|(b, st)| (b, st.weight))
            .collect();
        let active: u32 = usable.iter().filter(|(b, _)| !b).map(|(_, w)| w).sum();
        if active > 0 {
            return active;
        }
        let mut backups = usable.iter().filter(|(b, _)| *b).map(|(_, w)| *w);
        if p.allbackups {
            backups.sum()
        } else {
            backups.next().unwrap_or(0)
        }
    }

    /// The daemon's view for `show stat`, `show servers state`, metrics and the page.
    pub fn api_state(&mut self) -> State {
        let now = Instant::now();
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let mut backends = Vec::new();
        let slots = self.bal.plan.layout.slots();
        let mut id = 0u32;
        for (pool, b) in self.cfg.backends.iter().enumerate() {
            let pool = pool as u32;
            let mut servers = Vec::new();
            for (i, s) in b.servers.iter().enumerate() {
                // States and history are numbered like the config's servers; should they
                // ever disagree, the server is left out rather than the daemon panicking.
                let (Some(&st), Some(h)) = (
                    self.bal.states.get(id as usize),
                    self.history.servers.get(id as usize),
                ) else {
                    id += 1;
                    continue;
                };
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
                servers.push(ServerState {
                    id,
                    slot: slots.get(id as usize).copied().unwrap_or(id),
                    puid: i as u32 + 1,
                    name: s.name.clone(),
                    addr: s.addr,
                    port: s.port,
                    backup: s.backup,
                    up: st.up && st.admin != Admin::Maint,
                    admin: admin_state(st.admin),
                    config_maint: h.config_maint && st.admin == Admin::Maint,
                    weight: st.weight,
                    initial_weight: s.weight,
                    check,
                    check_port: s.check_port,
                    check_addr: s.check_addr,
                    chkfail: h.chkfail,
                    chkdown: h.updown.chkdown,
                    lastchg: secs(h.updown.last_change),
                    downtime: h.updown.downtime(now).as_secs(),
                });
                id += 1;
            }
            let c: Counts = self.counts(pool);
            let tot_weight = self.tot_weight(pool);
            let bh = self.history.backends.get(pool as usize);
            backends.push(BackendState {
                name: b.name.clone(),
                mode: mode_name(b.mode),
                algo: "roundrobin",
                up: tot_weight > 0 || servers.is_empty(),
                servers,
                act: c.active,
                bck: c.backup,
                tot_weight,
                chkdown: bh.map_or(0, |h| h.chkdown),
                lastchg: bh.map_or(0, |h| secs(h.last_change)),
                downtime: bh.map_or(0, |h| h.downtime(now).as_secs()),
            });
        }
        State {
            instance: self.cfg.global.instance.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            start_time: self.history.start_unix,
            uptime: secs(self.history.started),
            conntrack_entries: self.cfg.global.conntrack_entries,
            listeners: self.bal.plan.layout.services.len() as u32,
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
