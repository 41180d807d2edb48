//! What the runtime API, the metrics and the stats page report, and HAProxy's text forms of
//! it, pure: [`State`] is the daemon's view (taken in the serve loop), [`Traffic`] the data
//! plane's counters (read from the maps); `show stat`, `show servers state`, `show info`.
//!
//! `show stat` keeps HAProxy 2.6's header and column order exactly (`stats_fill_fe_stats`,
//! `stats_fill_sv_stats`, `stats_fill_be_stats` in `src/stats.c`), so CSV consumers find
//! every column where they expect it. An L4 data plane measures flows, packets and bytes,
//! not requests, queues or response times: columns it cannot know are left empty (HAProxy
//! leaves a column empty when it does not apply) rather than filled with made-up zeros.
//! What the columns hold for lb:
//! - `scur`: flows in the connection-tracking table now (forward entries not seen closing:
//!   TCP until a FIN or RST, UDP until the entry is evicted, the data plane keeps no idle
//!   timer); `smax`: the largest `scur` the daemon has computed (it counts on demand, not
//!   continuously);
//! - `stot`, `lbtot`, `conn_tot`: new flows; `bin`/`bout`: bytes client->server /
//!   server->client, whole frames as the data plane sees them; `wredis`: flows moved to
//!   another server because theirs went away (`option redispatch`); `econ`: connections the
//!   server refused (an RST to the SYN); `wretr`, `qcur`, `qmax`: 0 (lb never retries nor
//!   queues);
//! - `slim`, `throttle`, `hanafail` of a server: its `maxconn`, its slow start's progress,
//!   and what `observe layer4` found, as HAProxy's;
//! - `slim` of a frontend: the connection-tracking capacity (the real limit on flows);
//! - the state, weight, check and history columns are HAProxy's.
use std::fmt::Write as _;

use serde::Serialize;

use super::cli::{AdminState, ProxySel, StatOpts};
use crate::{
    daemon::slowstart,
    dataplane::ids::{ServerId, ServerSlot},
    health::CheckStatus,
};

/// The daemon's view of every proxy and server, taken in the serve loop.
#[derive(Clone, Debug, Serialize)]
pub struct State {
    pub instance: String,
    pub pid: u32,
    pub version: String,
    /// Unix time the daemon started, and seconds since.
    pub start_time: u64,
    pub uptime: u64,
    /// Flows the connection-tracking table can hold.
    pub conntrack_entries: u32,
    /// The global `maxconn`: the most active flows the data plane admits.
    pub maxconn: Option<u32>,
    /// Number of listening services (binds).
    pub listeners: u32,
    pub dropped_logs: u64,
    pub frontends: Vec<FrontendState>,
    pub backends: Vec<BackendState>,
    /// The XDP program's own CPU use, when `kernel.bpf_stats_enabled` is on.
    pub xdp: Option<XdpStats>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct XdpStats {
    pub run_time_ns: u64,
    pub run_count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrontendState {
    /// Index into the frontend counters.
    pub id: u32,
    pub name: String,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendState {
    pub name: String,
    pub mode: &'static str,
    pub algo: &'static str,
    pub servers: Vec<ServerState>,
    /// Usable active and backup servers (HAProxy's `srv_act`, `srv_bck`).
    pub act: u32,
    pub bck: u32,
    /// Sum of the effective weights of the servers taking new flows, in user units
    /// (`lbprm.tot_weight` as `show stat` prints it), and of their user weights.
    pub tot_weight: u32,
    pub tot_uweight: u32,
    /// HAProxy's backend status: some weight to balance over, or no server at all.
    pub up: bool,
    pub chkdown: u64,
    pub lastchg: u64,
    pub downtime: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerState {
    /// The daemon's number for it (the index of [`Traffic::servers`]).
    pub id: ServerId,
    /// Where the data plane keeps it (counters, flows).
    pub slot: ServerSlot,
    /// 1-based within its backend (HAProxy's `puid`).
    pub puid: u32,
    pub name: String,
    pub addr: std::net::IpAddr,
    /// The host name the address was resolved from (`srv_fqdn`).
    pub fqdn: Option<String>,
    pub port: u16,
    pub backup: bool,
    /// Operationally UP (health checks, or `set server ... health`); false in maintenance.
    pub up: bool,
    /// NOLB: UP but taking no new flows (`http-check disable-on-404`).
    pub stopping: bool,
    pub admin: AdminState,
    /// In maintenance because the config says `disabled` (and not enabled since).
    pub config_maint: bool,
    /// The user weight (`uweight`).
    pub weight: u32,
    /// The effective weight, in sixteenths of the user weight (`cur_eweight`): less during a
    /// slow start.
    pub eweight: u32,
    /// In its slow start (HAProxy's STARTING).
    pub starting: bool,
    /// `maxconn` as configured (0: none).
    pub maxconn: u32,
    pub initial_weight: u32,
    pub check: Option<CheckState>,
    pub check_port: Option<u16>,
    pub check_addr: Option<std::net::IpAddr>,
    pub chkfail: u64,
    /// With `observe`: times it found `error-limit` errors in a row.
    pub hanafail: Option<u64>,
    pub chkdown: u64,
    pub lastchg: u64,
    pub downtime: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckState {
    /// Not `disable health`d.
    pub enabled: bool,
    /// Paused by maintenance.
    pub paused: bool,
    pub health: u32,
    pub rise: u32,
    pub fall: u32,
    /// The last check's status (`Ini` before the first).
    #[serde(serialize_with = "status_code")]
    pub status: CheckStatus,
    pub code: Option<u16>,
    pub duration_ms: Option<u64>,
    /// HAProxy's `check->desc` ("Connection refused", "Not Found", or empty).
    pub info: String,
}

fn status_code<S: serde::Serializer>(s: &CheckStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.code())
}

/// The data plane's counters for one server or frontend.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Flows {
    /// Tracked flows now.
    pub current: u64,
    /// Largest `current` seen by the daemon.
    pub max: u64,
    /// The per-CPU counters, summed.
    #[serde(flatten)]
    pub counters: lb_common::Counters,
}

impl Flows {
    fn plus(self, o: Flows) -> Flows {
        Flows {
            current: self.current + o.current,
            max: self.max + o.max,
            counters: self.counters.plus(o.counters),
        }
    }
}

/// Counters by server id ([`ServerId`]) and frontend id.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    pub servers: Vec<Flows>,
    pub frontends: Vec<Flows>,
    /// Tracked flows of every frontend.
    pub total_flows: u64,
    /// Packets the data plane passed or dropped, by reason.
    pub reasons: Vec<(String, u64)>,
}

impl Traffic {
    pub fn server(&self, id: ServerId) -> Flows {
        self.servers.get(id.index()).copied().unwrap_or_default()
    }

    pub fn frontend(&self, id: u32) -> Flows {
        self.frontends.get(id as usize).copied().unwrap_or_default()
    }

    pub fn backend(&self, b: &BackendState) -> Flows {
        b.servers
            .iter()
            .fold(Flows::default(), |a, s| a.plus(self.server(s.id)))
    }
}

/// `show stat`'s header: HAProxy 2.6's, column for column (the trailing empty column
/// included).
pub const STAT_HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,";

/// The column names, in order (the trailing empty one excluded).
pub fn stat_columns() -> Vec<&'static str> {
    let body = STAT_HEADER.trim_start_matches("# ");
    let mut cols: Vec<&str> = body.split(',').collect();
    cols.pop();
    cols
}

/// HAProxy's row types (`STATS_TYPE_*`).
const TYPE_FE: u32 = 0;
const TYPE_BE: u32 = 1;
const TYPE_SV: u32 = 2;

/// One CSV row being filled by column name.
struct Row<'c> {
    cols: &'c [&'static str],
    cells: Vec<String>,
}

impl<'c> Row<'c> {
    fn new(cols: &'c [&'static str]) -> Row<'c> {
        let mut cells = vec![String::new(); cols.len()];
        // HAProxy's separator before the modules' columns is always "-".
        if let Some(i) = cols.iter().position(|c| *c == "-") {
            cells[i] = "-".into();
        }
        Row { cols, cells }
    }

    fn set(&mut self, col: &str, v: impl ToString) -> &mut Self {
        if let Some(i) = self.cols.iter().position(|c| *c == col) {
            self.cells[i] = v.to_string();
        }
        self
    }

    fn render(&self, out: &mut String) {
        for c in &self.cells {
            csv_field(out, c);
            out.push(',');
        }
        out.push('\n');
    }
}

/// HAProxy's `csv_enc`: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A proxy as HAProxy numbers them: frontends then backends, a backend with a frontend's
/// name (a `listen` section) sharing its id. Ids start at 2 as in HAProxy 2.6 with a stats
/// socket (its internal proxy takes 1), so the reference config's numbering is reproduced.
struct Proxy<'a> {
    iid: u32,
    name: &'a str,
    frontend: Option<&'a FrontendState>,
    backend: Option<&'a BackendState>,
}

fn proxies(st: &State) -> Vec<Proxy<'_>> {
    let mut out: Vec<Proxy<'_>> = st
        .frontends
        .iter()
        .map(|f| Proxy {
            iid: 0,
            name: &f.name,
            frontend: Some(f),
            backend: None,
        })
        .collect();
    for b in &st.backends {
        match out
            .iter_mut()
            .find(|p| p.name == b.name && p.backend.is_none())
        {
            Some(p) => p.backend = Some(b),
            None => out.push(Proxy {
                iid: 0,
                name: &b.name,
                frontend: None,
                backend: Some(b),
            }),
        }
    }
    for (i, p) in out.iter_mut().enumerate() {
        p.iid = 2 + i as u32;
    }
    out
}

/// The proxy id of a backend (`be_id` of `show servers state`).
pub fn backend_iid(st: &State, name: &str) -> Option<u32> {
    proxies(st)
        .iter()
        .find(|p| p.backend.is_some_and(|b| b.name == name))
        .map(|p| p.iid)
}

/// `stats_fill_sv_stats_computestate` and the MAINT cases of the status column.
pub fn server_status(s: &ServerState) -> String {
    if s.admin == AdminState::Maint {
        return "MAINT".into();
    }
    let checking = s.check.as_ref().filter(|c| c.enabled);
    if s.up {
        let going_down = checking.filter(|c| c.health < c.rise + c.fall - 1);
        let mut st = match going_down {
            Some(c) => format!("UP {}/{}", (c.health + 1).saturating_sub(c.rise), c.fall),
            None => "UP".to_string(),
        };
        if s.admin == AdminState::Drain {
            st = match going_down {
                Some(c) => format!("DRAIN {}/{}", (c.health + 1).saturating_sub(c.rise), c.fall),
                None => "DRAIN".into(),
            };
        } else if s.stopping {
            st = match going_down {
                Some(c) => format!("NOLB {}/{}", (c.health + 1).saturating_sub(c.rise), c.fall),
                None => "NOLB".into(),
            };
        }
        if st == "UP" && checking.is_none() {
            st = "no check".into();
        }
        st
    } else {
        match checking {
            Some(c) if c.health > 0 => format!("DOWN {}/{}", c.health, c.rise),
            _ => "DOWN".into(),
        }
    }
}

/// `show stat` as CSV. `operator` (the socket's level is operator or admin) adds the
/// addresses and the algorithm, as HAProxy's `STAT_SHLGNDS`.
pub fn show_stat(
    st: &State,
    tr: &Traffic,
    opts: &StatOpts,
    operator: bool,
) -> Result<String, String> {
    let cols = stat_columns();
    let all = proxies(st);
    let selected: Vec<&Proxy<'_>> = match &opts.bound {
        Some((ProxySel::Name(n), _, _)) => {
            let found: Vec<_> = all.iter().filter(|p| p.name == n.as_str()).collect();
            if found.is_empty() {
                // HAProxy falls back to atoi() of the name: 0.
                return Err("No such proxy.\n".into());
            }
            found
        }
        Some((ProxySel::Id(id), _, _)) if *id != -1 => {
            all.iter().filter(|p| i64::from(p.iid) == *id).collect()
        }
        _ => all.iter().collect(),
    };
    let (types, sid) = match &opts.bound {
        Some((_, t, s)) => (*t, *s),
        None => (-1, -1),
    };
    let wants = |ty: u32| types == -1 || (types & (1 << ty)) != 0;
    let mut out = String::from(STAT_HEADER);
    out.push('\n');
    for p in selected {
        if let Some(f) = p.frontend.filter(|_| wants(TYPE_FE)) {
            let c = tr.frontend(f.id);
            let mut r = Row::new(&cols);
            r.set("pxname", p.name)
                .set("svname", "FRONTEND")
                .set("scur", c.current)
                .set("smax", c.max)
                .set("slim", st.conntrack_entries)
                .set("stot", c.counters.new_flows)
                .set("bin", c.counters.bytes_in)
                .set("bout", c.counters.bytes_out)
                .set("status", "OPEN")
                .set("pid", 1)
                .set("iid", p.iid)
                .set("sid", 0)
                .set("type", TYPE_FE)
                .set("mode", f.mode)
                .set("conn_tot", c.counters.new_flows);
            r.render(&mut out);
        }
        let Some(b) = p.backend else { continue };
        if wants(TYPE_SV) {
            for s in &b.servers {
                if sid != -1 && i64::from(s.puid) != sid {
                    continue;
                }
                if opts.hide_maint && s.admin == AdminState::Maint {
                    continue;
                }
                if opts.hide_down && (!s.up || s.admin == AdminState::Maint) {
                    continue;
                }
                server_row(&cols, p.iid, b, s, tr.server(s.id), operator).render(&mut out);
            }
        }
        if wants(TYPE_BE) {
            let c = tr.backend(b);
            let mut r = Row::new(&cols);
            let mut status = if b.up { "UP" } else { "DOWN" }.to_string();
            if opts.hide_down || opts.hide_maint {
                let nbup = b
                    .servers
                    .iter()
                    .filter(|s| s.up && s.admin != AdminState::Maint)
                    .count();
                let _ = write!(status, " ({nbup}/{})", b.servers.len());
            }
            r.set("pxname", p.name)
                .set("svname", "BACKEND")
                .set("qcur", 0)
                .set("qmax", 0)
                .set("scur", c.current)
                .set("smax", c.max)
                .set("stot", c.counters.new_flows)
                .set("bin", c.counters.bytes_in)
                .set("bout", c.counters.bytes_out)
                .set("econ", c.counters.refused)
                .set("wretr", 0)
                .set("wredis", c.counters.redispatched)
                .set("status", status)
                .set("weight", b.tot_weight)
                .set("act", b.act)
                .set("bck", b.bck)
                .set("chkdown", b.chkdown)
                .set("lastchg", b.lastchg)
                .set("pid", 1)
                .set("iid", p.iid)
                .set("sid", 0)
                .set("lbtot", c.counters.new_flows)
                .set("type", TYPE_BE)
                .set("mode", b.mode)
                .set("uweight", b.tot_uweight);
            if !b.servers.is_empty() {
                r.set("downtime", b.downtime);
            }
            if operator {
                r.set("algo", b.algo);
            }
            r.render(&mut out);
        }
    }
    Ok(out)
}

fn server_row<'c>(
    cols: &'c [&'static str],
    iid: u32,
    b: &BackendState,
    s: &ServerState,
    c: Flows,
    operator: bool,
) -> Row<'c> {
    let mut r = Row::new(cols);
    r.set("pxname", &b.name)
        .set("svname", &s.name)
        .set("qcur", 0)
        .set("qmax", 0)
        .set("scur", c.current)
        .set("smax", c.max)
        .set("stot", c.counters.new_flows)
        .set("bin", c.counters.bytes_in)
        .set("bout", c.counters.bytes_out)
        .set("econ", c.counters.refused)
        .set("wretr", 0)
        .set("wredis", c.counters.redispatched)
        .set("status", server_status(s))
        .set("weight", slowstart::shown_weight(s.eweight))
        .set("act", u8::from(!s.backup))
        .set("bck", u8::from(s.backup))
        .set("lastchg", s.lastchg)
        .set("pid", 1)
        .set("iid", iid)
        .set("sid", s.puid)
        .set("lbtot", c.counters.new_flows)
        .set("type", TYPE_SV)
        .set("mode", b.mode)
        .set("uweight", s.weight);
    if s.maxconn > 0 {
        r.set("slim", s.maxconn);
    }
    if let Some(n) = s.hanafail {
        r.set("hanafail", n);
    }
    if s.starting && s.admin != AdminState::Drain {
        r.set("throttle", slowstart::throttle(s.eweight, s.weight));
    }
    if let Some(k) = s.check.as_ref().filter(|k| k.enabled) {
        r.set("chkfail", s.chkfail)
            .set("chkdown", s.chkdown)
            .set("downtime", s.downtime);
        if !k.paused {
            r.set("check_status", k.status.code())
                .set("check_desc", k.status.description())
                .set("last_chk", &k.info)
                .set("check_rise", k.rise)
                .set("check_fall", k.fall)
                .set("check_health", k.health);
            if k.status.has_code() {
                r.set("check_code", k.code.unwrap_or(0));
            }
            if let Some(d) = k.duration_ms.filter(|_| k.status.timed()) {
                r.set("check_duration", d);
            }
        }
    }
    if operator {
        r.set("addr", format!("{}:{}", s.addr, s.port));
    }
    r
}

/// `show servers state`'s header (`SRV_STATE_FILE_VERSION` and its field names).
pub const SERVERS_STATE_HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

/// HAProxy's `HCHK_STATUS_*` numbers.
pub fn check_status_number(s: CheckStatus) -> u32 {
    match s {
        CheckStatus::Ini => 1,
        CheckStatus::SockErr => 5,
        CheckStatus::L4Ok => 6,
        CheckStatus::L4Tout => 7,
        CheckStatus::L4Con => 8,
        CheckStatus::L6Ok => 9,
        CheckStatus::L6Tout => 10,
        CheckStatus::L6Rsp => 11,
        CheckStatus::L7Tout => 12,
        CheckStatus::L7Rsp => 13,
        CheckStatus::L7Ok => 15,
        CheckStatus::L7OkC => 16,
        CheckStatus::L7Sts => 17,
        CheckStatus::Hana => 4,
    }
}

/// `show servers state [<backend>]`; `Err` is HAProxy's answer for an unknown backend.
pub fn servers_state(st: &State, only: Option<&str>) -> Result<String, String> {
    if let Some(n) = only
        && !st.backends.iter().any(|b| b.name == n)
    {
        return Err(super::cli::CANT_FIND_BACKEND.into());
    }
    let mut out = String::from(SERVERS_STATE_HEADER);
    for p in proxies(st) {
        let Some(b) = p.backend else { continue };
        if only.is_some_and(|n| n != b.name) {
            continue;
        }
        for s in &b.servers {
            let maint = s.admin == AdminState::Maint;
            // SRV_ST_STOPPED, SRV_ST_STARTING (a slow start), SRV_ST_RUNNING, SRV_ST_STOPPING
            // (NOLB: `disable-on-404`).
            let op = match (s.up && !maint, s.starting, s.stopping) {
                (false, _, _) => 0,
                (true, _, true) => 3,
                (true, true, false) => 1,
                (true, false, false) => 2,
            };
            let admin = match s.admin {
                AdminState::Maint => 0x01 | if s.config_maint { 0x04 } else { 0 },
                AdminState::Drain => 0x08,
                AdminState::Ready => 0,
            };
            let (status, result, health, state) = match &s.check {
                Some(k) => (
                    check_status_number(k.status),
                    match k.status {
                        CheckStatus::Ini => 0,
                        st if st.passed() => 3,
                        _ => 2,
                    },
                    k.health,
                    0x02 | if k.enabled { 0x04 } else { 0 } | if k.paused { 0x08 } else { 0 },
                ),
                None => (1, 0, if maint { 0 } else { 2 }, 0),
            };
            let _ = writeln!(
                out,
                "{} {} {} {} {} {op} {admin} {} {} {} {status} {result} {health} {state} 0 0 0 {} {} - 0 {} {} - 0",
                p.iid,
                b.name,
                s.puid,
                s.name,
                s.addr,
                s.weight,
                s.initial_weight,
                s.lastchg,
                s.fqdn.as_deref().unwrap_or("-"),
                s.port,
                s.check_port.unwrap_or(0),
                s.check_addr.map_or("-".to_string(), |a| a.to_string()),
            );
        }
    }
    Ok(out)
}

/// `show backend`.
pub fn show_backend(st: &State) -> String {
    let mut out = String::from("# name\n");
    for p in proxies(st) {
        if let Some(b) = p.backend {
            out.push_str(&b.name);
            out.push('\n');
        }
    }
    out
}

/// `Uptime: 0d 0h00m02s`.
fn uptime_text(secs: u64) -> String {
    format!(
        "{}d {}h{:02}m{:02}s",
        secs / 86400,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `show info`: HAProxy 2.6's keys, in its order, with lb's values (0 for what lb does not
/// have: SSL, compression, pools, pipes).
pub fn show_info(st: &State, tr: &Traffic, node: &str, ulimit_n: u64, nbthread: usize) -> String {
    let cum: u64 = tr.frontends.iter().map(|f| f.counters.new_flows).sum();
    let bytes_out: u64 = tr.frontends.iter().map(|f| f.counters.bytes_out).sum();
    let maxconn = st.maxconn.unwrap_or(st.conntrack_entries).to_string();
    let fields: Vec<(&str, String)> = vec![
        ("Name", "lb".into()),
        ("Version", st.version.clone()),
        ("Release_date", String::new()),
        ("Nbthread", nbthread.to_string()),
        ("Nbproc", "1".into()),
        ("Process_num", "1".into()),
        ("Pid", st.pid.to_string()),
        ("Uptime", uptime_text(st.uptime)),
        ("Uptime_sec", st.uptime.to_string()),
        ("Memmax_MB", "0".into()),
        ("PoolAlloc_MB", "0".into()),
        ("PoolUsed_MB", "0".into()),
        ("PoolFailed", "0".into()),
        ("Ulimit-n", ulimit_n.to_string()),
        ("Maxsock", ulimit_n.to_string()),
        ("Maxconn", maxconn.clone()),
        ("Hard_maxconn", maxconn),
        ("CurrConns", tr.total_flows.to_string()),
        ("CumConns", cum.to_string()),
        ("CumReq", "0".into()),
        ("MaxSslConns", "0".into()),
        ("CurrSslConns", "0".into()),
        ("CumSslConns", "0".into()),
        ("Maxpipes", "0".into()),
        ("PipesUsed", "0".into()),
        ("PipesFree", "0".into()),
        ("ConnRate", "0".into()),
        ("ConnRateLimit", "0".into()),
        ("MaxConnRate", "0".into()),
        ("SessRate", "0".into()),
        ("SessRateLimit", "0".into()),
        ("MaxSessRate", "0".into()),
        ("SslRate", "0".into()),
        ("SslRateLimit", "0".into()),
        ("MaxSslRate", "0".into()),
        ("SslFrontendKeyRate", "0".into()),
        ("SslFrontendMaxKeyRate", "0".into()),
        ("SslFrontendSessionReuse_pct", "0".into()),
        ("SslBackendKeyRate", "0".into()),
        ("SslBackendMaxKeyRate", "0".into()),
        ("SslCacheLookups", "0".into()),
        ("SslCacheMisses", "0".into()),
        ("CompressBpsIn", "0".into()),
        ("CompressBpsOut", "0".into()),
        ("CompressBpsRateLim", "0".into()),
        ("Tasks", "0".into()),
        ("Run_queue", "0".into()),
        ("Idle_pct", "100".into()),
        ("node", node.into()),
        ("Stopping", "0".into()),
        ("Jobs", st.listeners.to_string()),
        ("Unstoppable Jobs", "0".into()),
        ("Listeners", st.listeners.to_string()),
        ("ActivePeers", "0".into()),
        ("ConnectedPeers", "0".into()),
        ("DroppedLogs", st.dropped_logs.to_string()),
        ("BusyPolling", "0".into()),
        ("FailedResolutions", "0".into()),
        ("TotalBytesOut", bytes_out.to_string()),
        ("TotalSplicdedBytesOut", "0".into()),
        ("BytesOutRate", "0".into()),
        ("DebugCommandsIssued", "0".into()),
        ("CumRecvLogs", "0".into()),
        ("Build info", st.version.clone()),
        ("Memmax_bytes", "0".into()),
        ("PoolAlloc_bytes", "0".into()),
        ("PoolUsed_bytes", "0".into()),
        ("Start_time_sec", st.start_time.to_string()),
        ("Tainted", "0".into()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k}: {v}");
    }
    out
}

/// `get weight`: `N (initial M)`.
pub fn get_weight(st: &State, backend: &str, server: &str) -> Result<String, String> {
    let b = st
        .backends
        .iter()
        .find(|b| b.name == backend)
        .ok_or(super::cli::NO_SUCH_BACKEND)?;
    let s = b
        .servers
        .iter()
        .find(|s| s.name == server)
        .ok_or(super::cli::NO_SUCH_SERVER)?;
    Ok(format!("{} (initial {})\n", s.weight, s.initial_weight))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The reference config's state, as HAProxy had it in the capture.
    pub fn reference_state() -> State {
        let check = |health| CheckState {
            enabled: true,
            paused: false,
            health,
            rise: 2,
            fall: 2,
            status: CheckStatus::L7Ok,
            code: Some(200),
            duration_ms: Some(1),
            info: String::new(),
        };
        let server = |id, name: &str, port, weight| ServerState {
            id: ServerId(id),
            slot: ServerSlot(id),
            puid: id + 1,
            name: name.into(),
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            fqdn: None,
            port,
            backup: false,
            up: true,
            stopping: false,
            admin: AdminState::Ready,
            config_maint: false,
            weight,
            eweight: weight * lb_common::WEIGHT_SCALE,
            starting: false,
            maxconn: 0,
            initial_weight: weight,
            check: Some(check(3)),
            check_port: None,
            check_addr: None,
            chkfail: 0,
            hanafail: None,
            chkdown: 0,
            lastchg: 3,
            downtime: 0,
        };
        let mut web10 = server(0, "web10", 18081, 1);
        web10.chkfail = 1;
        web10.chkdown = 1;
        web10.lastchg = 1;
        web10.downtime = 2;
        State {
            instance: "lb".into(),
            pid: 1234,
            version: "0.1.0".into(),
            start_time: 1_795_714_976,
            uptime: 2,
            conntrack_entries: 4000,
            maxconn: None,
            listeners: 1,
            dropped_logs: 0,
            frontends: vec![FrontendState {
                id: 0,
                name: "main".into(),
                mode: "tcp",
            }],
            backends: vec![BackendState {
                name: "hoge".into(),
                mode: "tcp",
                algo: "roundrobin",
                servers: vec![web10, server(1, "web11", 18082, 50)],
                act: 2,
                bck: 0,
                tot_weight: 51,
                tot_uweight: 51,
                up: true,
                chkdown: 0,
                lastchg: 3,
                downtime: 0,
            }],
            xdp: None,
        }
    }

    fn capture() -> &'static str {
        include_str!("testdata/haproxy-2.6-runtime-api.txt")
    }

    /// The capture's block after `### title`.
    fn block(title: &str, nth: usize) -> Vec<&'static str> {
        capture()
            .split(&format!("### {title}\n"))
            .nth(nth)
            .expect("section")
            .split("\n\n")
            .next()
            .expect("block")
            .lines()
            .collect()
    }

    fn cells(line: &str) -> Vec<&str> {
        line.split(',').collect()
    }

    #[test]
    fn header_is_haproxys() {
        assert_eq!(block("show stat", 1)[0], STAT_HEADER);
        assert_eq!(stat_columns().len(), 128);
    }

    /// Every column HAProxy filled with something lb knows has the same value; lb leaves
    /// empty what it cannot measure and never fills a column HAProxy leaves empty, except
    /// `slim` of the frontend (HAProxy's maxconn there, lb's table size).
    #[test]
    fn rows_agree_with_the_capture() {
        let st = reference_state();
        let out = show_stat(&st, &Traffic::default(), &StatOpts::default(), true).expect("csv");
        let ours: Vec<&str> = out.lines().collect();
        let theirs = block("show stat", 1);
        assert_eq!(ours.len(), theirs.len());
        let cols = stat_columns();
        let known = [
            "pxname",
            "svname",
            "status",
            "weight",
            "act",
            "bck",
            "chkfail",
            "chkdown",
            "lastchg",
            "downtime",
            "pid",
            "iid",
            "sid",
            "type",
            "check_status",
            "check_code",
            "check_duration",
            "check_desc",
            "check_rise",
            "check_fall",
            "check_health",
            "addr",
            "mode",
            "algo",
            "uweight",
            "scur",
            "stot",
            "bin",
            "bout",
            "qcur",
            "qmax",
            "wretr",
            "wredis",
            "lbtot",
            "-",
            "last_chk",
        ];
        for (o, t) in ours[1..].iter().zip(&theirs[1..]) {
            let (o, t) = (cells(o), cells(t));
            assert_eq!(o.len(), t.len(), "{o:?}");
            for (i, col) in cols.iter().enumerate() {
                if known.contains(col) {
                    assert_eq!(o[i], t[i], "column {col} of {}/{}", t[0], t[1]);
                } else if t[i].is_empty() {
                    assert!(o[i].is_empty() || *col == "slim", "{col}: {}", o[i]);
                }
            }
        }
    }

    #[test]
    fn maintenance_row_agrees_with_the_capture() {
        let mut st = reference_state();
        let b = &mut st.backends[0];
        let web11 = &mut b.servers[1];
        web11.admin = AdminState::Maint;
        web11.up = false;
        web11.chkdown = 1;
        web11.lastchg = 0;
        if let Some(k) = web11.check.as_mut() {
            k.paused = true;
            k.health = 0;
        }
        if let Some(k) = b.servers[0].check.as_mut() {
            k.duration_ms = Some(0);
        }
        b.act = 1;
        b.tot_weight = 1;
        b.tot_uweight = 1;
        let out = show_stat(&st, &Traffic::default(), &StatOpts::default(), true).expect("csv");
        let theirs = block("show stat", 2);
        let cols = stat_columns();
        for (o, t) in out.lines().zip(&theirs).skip(1) {
            let (o, t) = (cells(o), cells(t));
            for c in [
                "status",
                "weight",
                "act",
                "chkfail",
                "chkdown",
                "check_status",
                "check_health",
                "check_duration",
                "uweight",
            ] {
                let i = cols.iter().position(|x| *x == c).expect("col");
                assert_eq!(o[i], t[i], "{c} of {}", t[1]);
            }
        }
    }

    /// HAProxy 2.6 right after a server with `weight 100 slowstart 10s maxconn 50` came UP
    /// (captured): `show stat` has weight 7, throttle 6, uweight 100, slim 50, and `show
    /// servers state` has it STARTING (1).
    #[test]
    fn a_slow_start_shows_as_haproxy_shows_it() {
        let mut st = reference_state();
        let s = &mut st.backends[0].servers[1];
        s.weight = 100;
        s.eweight = 100;
        s.starting = true;
        s.maxconn = 50;
        let out = show_stat(&st, &Traffic::default(), &StatOpts::default(), true).expect("csv");
        let cols = stat_columns();
        let row = out
            .lines()
            .find(|l| l.starts_with("hoge,web11,"))
            .expect("row");
        let c = cells(row);
        let get = |name: &str| c[cols.iter().position(|x| *x == name).expect("col")];
        assert_eq!(
            (get("weight"), get("throttle"), get("uweight"), get("slim")),
            ("7", "6", "100", "50")
        );
        let state = servers_state(&st, None).expect("state");
        let line = state
            .lines()
            .find(|l| l.contains(" web11 "))
            .expect("web11");
        assert_eq!(line.split(' ').nth(5), Some("1"), "{line}");
        // Done: no throttle, RUNNING.
        let s = &mut st.backends[0].servers[1];
        s.starting = false;
        s.eweight = 100 * lb_common::WEIGHT_SCALE;
        let out = show_stat(&st, &Traffic::default(), &StatOpts::default(), true).expect("csv");
        let row = out
            .lines()
            .find(|l| l.starts_with("hoge,web11,"))
            .expect("row");
        let c = cells(row);
        let get = |name: &str| c[cols.iter().position(|x| *x == name).expect("col")];
        assert_eq!((get("weight"), get("throttle")), ("100", ""));
    }

    #[test]
    fn servers_state_matches_the_capture() {
        let mut st = reference_state();
        st.backends[0].servers[0].lastchg = 1;
        let out = servers_state(&st, None).expect("state");
        let want = block("show servers state", 1).join("\n") + "\n";
        assert_eq!(out, want);
        // After `set server hoge/web11 state drain` (leaving maintenance: health = rise).
        let web11 = &mut st.backends[0].servers[1];
        web11.admin = AdminState::Drain;
        web11.lastchg = 0;
        if let Some(k) = web11.check.as_mut() {
            k.health = 2;
        }
        let out = servers_state(&st, None).expect("state");
        let want = block("show servers state", 2).join("\n") + "\n";
        assert_eq!(out, want);
        assert_eq!(
            servers_state(&st, Some("nope")),
            Err("Can't find backend.\n".into())
        );
        assert_eq!(
            servers_state(&st, Some("hoge")).map(|s| s.lines().count()),
            Ok(4)
        );
    }

    #[test]
    fn servers_state_names_a_servers_host_in_srv_fqdn() {
        let mut st = reference_state();
        st.backends[0].servers[0].fqdn = Some("app.example".into());
        let out = servers_state(&st, None).expect("state");
        let header: Vec<&str> = out.lines().nth(1).expect("header").split(' ').collect();
        let row: Vec<&str> = out.lines().nth(2).expect("row").split(' ').collect();
        // The header starts with '#': columns shift by one.
        let col = |name: &str| header.iter().position(|c| *c == name).expect("column") - 1;
        assert_eq!(row[col("srv_fqdn")], "app.example");
        assert_eq!(row[col("srv_addr")], "127.0.0.1");
        assert_eq!(
            out.lines()
                .nth(3)
                .map(|l| l.split(' ').nth(col("srv_fqdn"))),
            Some(Some("-"))
        );
    }

    #[test]
    fn statuses() {
        let st = reference_state();
        let mut s = st.backends[0].servers[0].clone();
        assert_eq!(server_status(&s), "UP");
        if let Some(k) = s.check.as_mut() {
            k.health = 2;
        }
        assert_eq!(server_status(&s), "UP 1/2");
        s.admin = AdminState::Drain;
        assert_eq!(server_status(&s), "DRAIN 1/2");
        if let Some(k) = s.check.as_mut() {
            k.health = 3;
        }
        assert_eq!(server_status(&s), "DRAIN");
        s.admin = AdminState::Ready;
        s.up = false;
        if let Some(k) = s.check.as_mut() {
            k.health = 0;
        }
        assert_eq!(server_status(&s), "DOWN");
        if let Some(k) = s.check.as_mut() {
            k.health = 1;
        }
        assert_eq!(server_status(&s), "DOWN 1/2");
        s.check = None;
        assert_eq!(server_status(&s), "DOWN");
        s.up = true;
        assert_eq!(server_status(&s), "no check");
        s.admin = AdminState::Maint;
        assert_eq!(server_status(&s), "MAINT");
    }

    #[test]
    fn info_keys_are_haproxys() {
        let st = reference_state();
        let ours = show_info(&st, &Traffic::default(), "vm", 8030, 2);
        let keys = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.split(':').next().unwrap_or("").to_string())
                .collect()
        };
        let theirs = block("show info", 1).join("\n");
        assert_eq!(keys(&ours), keys(&theirs));
        assert!(ours.contains("\nUptime: 0d 0h00m02s\n"), "{ours}");
        assert!(ours.starts_with("Name: lb\n"));
    }

    #[test]
    fn filters_and_levels() {
        let st = reference_state();
        let tr = Traffic::default();
        let only_servers = StatOpts {
            bound: Some((ProxySel::Id(-1), 4, -1)),
            ..StatOpts::default()
        };
        let out = show_stat(&st, &tr, &only_servers, true).expect("csv");
        assert_eq!(out.lines().count(), 3, "{out}");
        let one = StatOpts {
            bound: Some((ProxySel::Name("hoge".into()), 4, 2)),
            ..StatOpts::default()
        };
        let out = show_stat(&st, &tr, &one, true).expect("csv");
        assert_eq!(out.lines().count(), 2);
        assert!(
            out.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("hoge,web11,"))
        );
        let nope = StatOpts {
            bound: Some((ProxySel::Name("nope".into()), -1, -1)),
            ..StatOpts::default()
        };
        assert!(show_stat(&st, &tr, &nope, true).is_err());
        // At level user the addresses and the algorithm are hidden, as in HAProxy.
        let user = show_stat(&st, &tr, &StatOpts::default(), false).expect("csv");
        assert!(!user.contains("127.0.0.1"));
        assert!(!user.contains("roundrobin"));
        assert_eq!(
            get_weight(&st, "hoge", "web11"),
            Ok("50 (initial 50)\n".into())
        );
        assert_eq!(
            get_weight(&st, "hoge", "nope"),
            Err("No such server.\n".into())
        );
        assert_eq!(
            get_weight(&st, "nope", "x"),
            Err("No such backend.\n".into())
        );
        assert_eq!(show_backend(&st), "# name\nhoge\n");
    }
}
