//! The stats HTTP listener (`stats_http`): Prometheus metrics at `/metrics`, an HTML page
//! like HAProxy's `stats uri` at `/` and `/stats`, and `show stat`'s CSV at `/stats;csv`.
//!
//! Metric names follow HAProxy's Prometheus exporter (`haproxy_server_weight`,
//! `haproxy_backend_active_servers`, ...) where the meaning is the same, so dashboards
//! built for HAProxy find them; what only lb has is `lb_*` (packets, packet fates, the XDP
//! program's own run time when `kernel.bpf_stats_enabled` is on).
use std::{fmt::Write as _, sync::Arc};

use axum::{
    Router,
    extract::State as AxState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use super::{
    Collector,
    cli::{AdminState, StatOpts},
    stats::{self, Flows, State, Traffic},
};

/// Seconds between refreshes of the HTML page.
pub const REFRESH_SECS: u32 = 5;

/// Serves until the task is aborted.
pub async fn run(listener: TcpListener, collector: Arc<Collector>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/stats", get(page))
        .route("/stats;csv", get(csv))
        .layer(tower_limits())
        .with_state(collector);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("[WARNING] stats_http: {e}");
    }
}

/// Bounds the work a flood of scrapes can cause (the data itself is cached, see
/// [`Collector::traffic`]).
fn tower_limits() -> tower::limit::ConcurrencyLimitLayer {
    tower::limit::ConcurrencyLimitLayer::new(64)
}

async fn gather(col: &Collector) -> Result<(State, Traffic), Response> {
    match col.state().await {
        Ok(st) => {
            let tr = col.traffic(&st).await;
            Ok((st, tr))
        }
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e).into_response()),
    }
}

async fn metrics(AxState(col): AxState<Arc<Collector>>) -> Response {
    let (st, tr) = match gather(&col).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match render_metrics(&st, &tr) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn page(AxState(col): AxState<Arc<Collector>>) -> Response {
    let (st, tr) = match gather(&col).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render_page(&st, &tr),
    )
        .into_response()
}

async fn csv(AxState(col): AxState<Arc<Collector>>) -> Response {
    let (st, tr) = match gather(&col).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Like HAProxy's stats page without authentication: no addresses.
    let body = stats::show_stat(&st, &tr, &StatOpts::default(), false).unwrap_or_else(|e| e);
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Families registered by name; each scrape builds a fresh registry from a snapshot.
struct Metrics {
    reg: Registry,
}

impl Metrics {
    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn gauge_f(
        &mut self,
        name: &str,
        help: &str,
    ) -> Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> {
        let f = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.reg.register(name, help, f.clone());
        f
    }

    fn counter_f(
        &mut self,
        name: &str,
        help: &str,
    ) -> Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>> {
        let f = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        self.reg.register(name, help, f.clone());
        f
    }
}

/// The traffic families every proxy level has: `haproxy_<level>_current_sessions`,
/// `_sessions`, `_bytes_in`, `_bytes_out`.
struct FlowFamilies {
    cur: Family<Labels, Gauge>,
    tot: Family<Labels, Counter>,
    bin: Family<Labels, Counter>,
    bout: Family<Labels, Counter>,
}

impl FlowFamilies {
    fn new(m: &mut Metrics, level: &str, bin_help: &str, bout_help: &str) -> FlowFamilies {
        let name = |what: &str| format!("haproxy_{level}_{what}");
        FlowFamilies {
            cur: m.gauge(&name("current_sessions"), "Current flows"),
            tot: m.counter(&name("sessions"), "New flows"),
            bin: m.counter(&name("bytes_in"), bin_help),
            bout: m.counter(&name("bytes_out"), bout_help),
        }
    }

    fn record(&self, l: &Labels, c: &Flows) {
        self.cur.get_or_create(l).set(as_i64(c.current));
        self.tot.get_or_create(l).inc_by(c.counters.new_flows);
        self.bin.get_or_create(l).inc_by(c.counters.bytes_in);
        self.bout.get_or_create(l).inc_by(c.counters.bytes_out);
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The Prometheus text exposition of a snapshot.
pub fn render_metrics(st: &State, tr: &Traffic) -> Result<String, std::fmt::Error> {
    let mut m = Metrics {
        reg: Registry::default(),
    };
    // Process.
    m.gauge(
        "haproxy_process_start_time_seconds",
        "Start time in seconds",
    )
    .get_or_create(&Vec::new())
    .set(as_i64(st.start_time));
    m.gauge(
        "haproxy_process_current_connections",
        "Number of active flows",
    )
    .get_or_create(&Vec::new())
    .set(as_i64(tr.total_flows));
    m.gauge(
        "lb_conntrack_capacity",
        "Flows the connection-tracking table can hold",
    )
    .get_or_create(&Vec::new())
    .set(i64::from(st.conntrack_entries));
    m.counter("haproxy_process_dropped_logs", "Log messages dropped")
        .get_or_create(&Vec::new())
        .inc_by(st.dropped_logs);
    let reasons = m.counter(
        "lb_packets_unforwarded",
        "Packets the data plane passed to the kernel or dropped, by reason",
    );
    for (r, n) in &tr.reasons {
        reasons.get_or_create(&labels(&[("reason", r)])).inc_by(*n);
    }
    if let Some(x) = st.xdp {
        m.counter_f(
            "lb_xdp_run_time_seconds",
            "CPU time the XDP program used (kernel.bpf_stats_enabled)",
        )
        .get_or_create(&Vec::new())
        .inc_by(x.run_time_ns as f64 / 1e9);
        m.counter(
            "lb_xdp_run_count",
            "Runs of the XDP program (kernel.bpf_stats_enabled)",
        )
        .get_or_create(&Vec::new())
        .inc_by(x.run_count);
    }

    // Frontends.
    let fe_flows = FlowFamilies::new(
        &mut m,
        "frontend",
        "Bytes from clients (whole frames)",
        "Bytes to clients (whole frames)",
    );
    let fe_pin = m.counter("lb_frontend_packets_in", "Packets from clients");
    let fe_pout = m.counter("lb_frontend_packets_out", "Packets to clients");
    for f in &st.frontends {
        let l = labels(&[("proxy", &f.name)]);
        let c = tr.frontend(f.id);
        fe_flows.record(&l, &c);
        fe_pin.get_or_create(&l).inc_by(c.counters.packets_in);
        fe_pout.get_or_create(&l).inc_by(c.counters.packets_out);
    }

    // Backends.
    let be_status = m.gauge(
        "haproxy_backend_status",
        "Current status of the backend, per state",
    );
    let be_act = m.gauge("haproxy_backend_active_servers", "Usable active servers");
    let be_bck = m.gauge("haproxy_backend_backup_servers", "Usable backup servers");
    let be_weight = m.gauge(
        "haproxy_backend_weight",
        "Total weight of the servers taking new flows",
    );
    let be_flows = FlowFamilies::new(
        &mut m,
        "backend",
        "Bytes client to server (whole frames)",
        "Bytes server to client (whole frames)",
    );
    let be_down = m.counter(
        "haproxy_backend_check_up_down",
        "Times the backend lost its last server",
    );
    let be_dt = m.counter(
        "haproxy_backend_downtime_seconds",
        "Seconds without a usable server",
    );

    // Servers.
    let sv_status = m.gauge(
        "haproxy_server_status",
        "Current status of the server, per state",
    );
    let sv_weight = m.gauge("haproxy_server_weight", "Weight of the server");
    let sv_cd = m.gauge_f(
        "haproxy_server_check_duration_seconds",
        "Duration of the last health check",
    );
    let sv_fail = m.counter("haproxy_server_check_failures", "Failed health checks");
    let sv_updown = m.counter("haproxy_server_check_up_down", "UP to DOWN transitions");
    let sv_dt = m.counter(
        "haproxy_server_downtime_seconds",
        "Seconds DOWN or in maintenance",
    );
    let sv_flows = FlowFamilies::new(
        &mut m,
        "server",
        "Bytes client to server (whole frames)",
        "Bytes server to client (whole frames)",
    );
    let sv_redisp = m.counter(
        "haproxy_server_redispatch_warnings",
        "Flows moved here because their server went away",
    );
    let sv_pin = m.counter("lb_server_packets_in", "Packets client to server");
    let sv_pout = m.counter("lb_server_packets_out", "Packets server to client");
    for b in &st.backends {
        let l = labels(&[("proxy", &b.name)]);
        for state in ["UP", "DOWN"] {
            let on = (state == "UP") == b.up;
            be_status
                .get_or_create(&labels(&[("proxy", &b.name), ("state", state)]))
                .set(i64::from(on));
        }
        be_act.get_or_create(&l).set(i64::from(b.act));
        be_bck.get_or_create(&l).set(i64::from(b.bck));
        be_weight.get_or_create(&l).set(i64::from(b.tot_weight));
        be_flows.record(&l, &tr.backend(b));
        be_down.get_or_create(&l).inc_by(b.chkdown);
        be_dt.get_or_create(&l).inc_by(b.downtime);
        for s in &b.servers {
            let l = labels(&[("proxy", &b.name), ("server", &s.name)]);
            let now = state_word(s);
            for state in ["UP", "DOWN", "MAINT", "DRAIN"] {
                sv_status
                    .get_or_create(&labels(&[
                        ("proxy", &b.name),
                        ("server", &s.name),
                        ("state", state),
                    ]))
                    .set(i64::from(state == now));
            }
            sv_weight.get_or_create(&l).set(i64::from(s.weight));
            if let Some(k) = &s.check {
                if let Some(d) = k.duration_ms {
                    sv_cd.get_or_create(&l).set(d as f64 / 1000.0);
                }
                sv_fail.get_or_create(&l).inc_by(s.chkfail);
                sv_updown.get_or_create(&l).inc_by(s.chkdown);
                sv_dt.get_or_create(&l).inc_by(s.downtime);
            }
            let c = tr.server(s.id);
            sv_flows.record(&l, &c);
            sv_redisp.get_or_create(&l).inc_by(c.counters.redispatched);
            sv_pin.get_or_create(&l).inc_by(c.counters.packets_in);
            sv_pout.get_or_create(&l).inc_by(c.counters.packets_out);
        }
    }
    let mut out = String::new();
    encode(&mut out, &m.reg)?;
    Ok(out)
}

/// UP, DOWN, MAINT or DRAIN: one word per server for metrics and colours.
pub fn state_word(s: &stats::ServerState) -> &'static str {
    match (s.admin, s.up) {
        (AdminState::Maint, _) => "MAINT",
        (_, false) => "DOWN",
        (AdminState::Drain, true) => "DRAIN",
        (AdminState::Ready, true) if s.weight == 0 => "DRAIN",
        (AdminState::Ready, true) => "UP",
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// HAProxy's row classes (`active_up`, `backup_going_down`, `maintain`, ...).
pub fn row_class(s: &stats::ServerState) -> String {
    if s.admin == AdminState::Maint {
        return "maintain".into();
    }
    let who = if s.backup { "backup" } else { "active" };
    let checking = s.check.as_ref().filter(|k| k.enabled && !k.paused);
    let what = if s.up {
        if s.admin == AdminState::Drain || s.weight == 0 {
            "draining"
        } else if checking.is_some_and(|k| k.health < k.rise + k.fall - 1) {
            "going_down"
        } else if checking.is_none() {
            "no_check"
        } else {
            "up"
        }
    } else if checking.is_some_and(|k| k.health > 0) {
        "going_up"
    } else {
        "down"
    };
    format!("{who}_{what}")
}

/// `1d 2h03m` / `4m05s` like HAProxy's "LastChk" ages.
fn age(secs: u64) -> String {
    if secs >= 86400 {
        format!("{}d{}h", secs / 86400, (secs / 3600) % 24)
    } else if secs >= 3600 {
        format!("{}h{}m", secs / 3600, (secs / 60) % 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

const CSS: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px;color:#000;background:#fff}\
h1{font-size:16px}\
table.tbl{border-collapse:collapse;border:1px solid #808080;margin-bottom:14px}\
table.tbl th,table.tbl td{border:1px solid #808080;padding:2px 4px;white-space:nowrap}\
table.tbl th{background:#20D0D0}\
table.tbl th.pxname{background:#b00040;color:#ffff40;text-align:left}\
td.num{text-align:right}\
.frontend,.backend{background:#e8e8d0}\
.active_down{background:#ff9090}.active_going_up{background:#ffd020}\
.active_going_down{background:#ffffa0}.active_up{background:#c0ffc0}\
.active_draining{background:#20a0FF}.active_no_check{background:#e0e0e0}\
.backup_down{background:#ff9090}.backup_going_up{background:#ff80ff}\
.backup_going_down{background:#c060ff}.backup_up{background:#b0d0ff}\
.backup_draining{background:#cc9900}.backup_no_check{background:#e0e0e0}\
.maintain{background:#c07820}";

/// The HTML stats page: a table per frontend and per backend, a row per server coloured by
/// state as HAProxy colours them, refreshing itself.
pub fn render_page(st: &State, tr: &Traffic) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>Statistics Report for lb instance {inst}</title><style>{CSS}</style></head><body>\
         <h1>Statistics Report for lb instance {inst}</h1>\
         <p>pid = {pid}, uptime = {up}, flows = {flows} / {cap}, refreshed every {REFRESH_SECS}s</p>",
        inst = esc(&st.instance),
        pid = st.pid,
        up = age(st.uptime),
        flows = tr.total_flows,
        cap = st.conntrack_entries,
    );
    if let Some(x) = st.xdp {
        let _ = write!(
            h,
            "<p>XDP program: {} runs, {:.3} s of CPU</p>",
            x.run_count,
            x.run_time_ns as f64 / 1e9
        );
    }
    for f in &st.frontends {
        let c = tr.frontend(f.id);
        let _ = write!(
            h,
            "<table class=\"tbl\" id=\"fe-{n}\"><tr><th class=\"pxname\" colspan=\"7\">{n}</th></tr>\
             <tr><th></th><th>Status</th><th>Cur flows</th><th>Max flows</th><th>New flows</th>\
             <th>Bytes in</th><th>Bytes out</th></tr>\
             <tr class=\"frontend\"><td>Frontend</td><td>OPEN</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr></table>",
            c.current,
            c.max,
            c.counters.new_flows,
            c.counters.bytes_in,
            c.counters.bytes_out,
            n = esc(&f.name),
        );
    }
    for b in &st.backends {
        let _ = write!(
            h,
            "<table class=\"tbl\" id=\"be-{n}\"><tr><th class=\"pxname\" colspan=\"16\">{n}</th></tr>\
             <tr><th>Server</th><th>Status</th><th>LastChk</th><th>Wght</th><th>Act</th>\
             <th>Bck</th><th>Chk</th><th>Dwn</th><th>Last change</th><th>Dwntme</th>\
             <th>Cur flows</th><th>Max flows</th><th>New flows</th><th>Bytes in</th>\
             <th>Bytes out</th><th>Packets in/out</th></tr>",
            n = esc(&b.name),
        );
        for s in &b.servers {
            let c = tr.server(s.id);
            let lastchk = match &s.check {
                Some(k) if k.enabled && !k.paused && k.status.finished() => {
                    let mut t = k.status.code().to_string();
                    if let Some(code) = k.code.filter(|_| k.status.has_code()) {
                        let _ = write!(t, "/{code}");
                    }
                    if let Some(d) = k.duration_ms {
                        let _ = write!(t, " in {d}ms");
                    }
                    t
                }
                Some(k) if k.enabled && !k.paused => "* INI".into(),
                _ => String::new(),
            };
            let (chk, dwn, dt) = if s.check.is_some() {
                (
                    s.chkfail.to_string(),
                    s.chkdown.to_string(),
                    age(s.downtime),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            let _ = write!(
                h,
                "<tr class=\"{class}\" id=\"sv-{bn}-{sn}\" data-state=\"{word}\"><td>{sn}</td>\
                 <td class=\"status\">{status}</td><td>{lastchk}</td><td class=\"num\">{w}</td>\
                 <td>{act}</td><td>{bck}</td><td class=\"num\">{chk}</td><td class=\"num\">{dwn}</td>\
                 <td>{lc}</td><td>{dt}</td><td class=\"num\">{cur}</td><td class=\"num\">{max}</td>\
                 <td class=\"num\">{new}</td><td class=\"num\">{bin}</td><td class=\"num\">{bout}</td>\
                 <td class=\"num\">{pin}/{pout}</td></tr>",
                class = row_class(s),
                bn = esc(&b.name),
                sn = esc(&s.name),
                word = state_word(s),
                status = esc(&stats::server_status(s)),
                lastchk = esc(&lastchk),
                w = s.weight,
                act = if s.backup { "" } else { "Y" },
                bck = if s.backup { "Y" } else { "" },
                lc = age(s.lastchg),
                cur = c.current,
                max = c.max,
                new = c.counters.new_flows,
                bin = c.counters.bytes_in,
                bout = c.counters.bytes_out,
                pin = c.counters.packets_in,
                pout = c.counters.packets_out,
            );
        }
        let c = tr.backend(b);
        let _ = write!(
            h,
            "<tr class=\"backend\"><td>Backend</td><td>{status}</td><td></td><td class=\"num\">{w}</td>\
             <td class=\"num\">{act}</td><td class=\"num\">{bck}</td><td></td>\
             <td class=\"num\">{down}</td><td>{lc}</td><td>{dt}</td><td class=\"num\">{cur}</td>\
             <td class=\"num\">{max}</td><td class=\"num\">{new}</td><td class=\"num\">{bin}</td>\
             <td class=\"num\">{bout}</td><td class=\"num\">{pin}/{pout}</td></tr></table>",
            status = if b.up { "UP" } else { "DOWN" },
            w = b.tot_weight,
            act = b.act,
            bck = b.bck,
            down = b.chkdown,
            lc = age(b.lastchg),
            dt = age(b.downtime),
            cur = c.current,
            max = c.max,
            new = c.counters.new_flows,
            bin = c.counters.bytes_in,
            bout = c.counters.bytes_out,
            pin = c.counters.packets_in,
            pout = c.counters.packets_out,
        );
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::stats::tests::reference_state, health::CheckStatus};

    #[test]
    fn metrics_are_valid_exposition() {
        let mut st = reference_state();
        st.xdp = Some(stats::XdpStats {
            run_time_ns: 1_500_000_000,
            run_count: 10,
        });
        let tr = Traffic {
            servers: vec![
                stats::Flows {
                    current: 3,
                    counters: lb_common::Counters {
                        new_flows: 7,
                        bytes_in: 100,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                2
            ],
            ..Default::default()
        };
        let out = render_metrics(&st, &tr).expect("encode");
        for want in [
            "haproxy_server_weight{proxy=\"hoge\",server=\"web11\"} 50",
            "haproxy_server_status{proxy=\"hoge\",server=\"web10\",state=\"UP\"} 1",
            "haproxy_server_status{proxy=\"hoge\",server=\"web10\",state=\"DOWN\"} 0",
            "haproxy_server_sessions_total{proxy=\"hoge\",server=\"web10\"} 7",
            "haproxy_server_current_sessions{proxy=\"hoge\",server=\"web10\"} 3",
            "haproxy_server_check_failures_total{proxy=\"hoge\",server=\"web10\"} 1",
            "haproxy_server_check_duration_seconds{proxy=\"hoge\",server=\"web10\"} 0.001",
            "haproxy_backend_active_servers{proxy=\"hoge\"} 2",
            "haproxy_backend_sessions_total{proxy=\"hoge\"} 14",
            "lb_xdp_run_time_seconds_total 1.5",
            "lb_xdp_run_count_total 10",
        ] {
            assert!(out.contains(want), "missing {want}:\n{out}");
        }
        assert!(out.ends_with("# EOF\n"));
    }

    /// A snapshot that takes every branch of both renderings: a second backend that is DOWN
    /// with a backup server, servers in maintenance, draining, going up and going down,
    /// without checks, with checks disabled or not yet run, names that need escaping, the
    /// XDP program's figures and packet fates; every counter distinct.
    pub(super) fn sample() -> (State, Traffic) {
        let mut st = reference_state();
        st.instance = "edge<1>".into();
        st.uptime = 90_061;
        st.dropped_logs = 3;
        st.xdp = Some(stats::XdpStats {
            run_time_ns: 1_234_567_891,
            run_count: 987_654,
        });
        st.frontends.push(stats::FrontendState {
            id: 1,
            name: "tls&co".into(),
            mode: "tcp",
        });
        let hoge = &mut st.backends[0];
        hoge.lastchg = 4_000;
        hoge.servers[1].admin = AdminState::Drain;
        if let Some(k) = hoge.servers[0].check.as_mut() {
            k.health = 2;
            k.duration_ms = Some(1_234);
        }
        let base = hoge.servers[0].clone();
        let server = |id: u32, name: &str| stats::ServerState {
            id,
            slot: id,
            puid: id - 1,
            name: name.into(),
            ..base.clone()
        };
        let mut maint = server(2, "m\"aint");
        maint.admin = AdminState::Maint;
        maint.up = false;
        maint.check = None;
        let mut rising = server(3, "rising");
        rising.up = false;
        rising.backup = true;
        rising.downtime = 7_200;
        rising.lastchg = 59;
        if let Some(k) = rising.check.as_mut() {
            k.health = 1;
            k.status = CheckStatus::L7Sts;
            k.code = Some(503);
        }
        let mut dead = server(4, "dead");
        dead.up = false;
        dead.weight = 0;
        if let Some(k) = dead.check.as_mut() {
            k.health = 0;
            k.status = CheckStatus::L4Con;
            k.duration_ms = None;
        }
        let mut fresh = server(5, "fresh");
        fresh.backup = true;
        if let Some(k) = fresh.check.as_mut() {
            k.status = CheckStatus::Ini;
            k.code = None;
            k.duration_ms = None;
        }
        let mut unchecked = server(6, "unchecked");
        unchecked.weight = 0;
        unchecked.check = None;
        let mut paused = server(7, "paused");
        if let Some(k) = paused.check.as_mut() {
            k.enabled = false;
        }
        st.backends.push(stats::BackendState {
            name: "<spare>".into(),
            mode: "tcp",
            algo: "roundrobin",
            servers: vec![maint, rising, dead, fresh, unchecked, paused],
            act: 0,
            bck: 0,
            tot_weight: 0,
            up: false,
            chkdown: 5,
            lastchg: 3_601,
            downtime: 86_399,
        });
        let flows = |n: u64| stats::Flows {
            current: n,
            max: n * 3 + 1,
            counters: lb_common::Counters {
                packets_in: n * 11 + 2,
                bytes_in: n * 1_000 + 3,
                packets_out: n * 13 + 4,
                bytes_out: n * 2_000 + 5,
                new_flows: n * 7 + 6,
                redispatched: n + 7,
            },
        };
        let tr = Traffic {
            servers: (0..8).map(|i| flows(i * 100 + 1)).collect(),
            frontends: vec![flows(10_000), flows(20_000)],
            total_flows: 30_000,
            reasons: vec![("no_service".into(), 42), ("drop_snat_exhausted".into(), 9)],
        };
        (st, tr)
    }

    /// The exposition with each family's samples sorted: the registry lists a family's
    /// label sets in hash order, which differs between two scrapes of the same build.
    fn canonical(exposition: &str) -> String {
        let mut out = Vec::new();
        let mut samples: Vec<&str> = Vec::new();
        for line in exposition.lines() {
            if line.starts_with('#') {
                samples.sort_unstable();
                out.append(&mut samples);
                out.push(line);
            } else {
                samples.push(line);
            }
        }
        samples.sort_unstable();
        out.append(&mut samples);
        out.join("\n") + "\n"
    }

    /// `/metrics` as the build before the module was split rendered [`sample`].
    #[test]
    fn metrics_match_the_capture() {
        let (st, tr) = sample();
        let got = render_metrics(&st, &tr).expect("encode");
        let want = include_str!("testdata/stats-http-metrics.txt");
        assert_eq!(canonical(&got), canonical(want));
        assert!(got.ends_with("# EOF\n"));
    }

    /// `/` as the build before the module was split rendered [`sample`], byte for byte.
    #[test]
    fn page_matches_the_capture() {
        let (st, tr) = sample();
        assert_eq!(
            render_page(&st, &tr),
            include_str!("testdata/stats-http-page.html")
        );
    }

    #[test]
    fn page_colours_servers_by_state() {
        let mut st = reference_state();
        let html = render_page(&st, &Traffic::default());
        assert!(html.contains("<tr class=\"active_up\" id=\"sv-hoge-web10\" data-state=\"UP\">"));
        st.backends[0].servers[1].up = false;
        if let Some(k) = st.backends[0].servers[1].check.as_mut() {
            k.health = 0;
        }
        let html = render_page(&st, &Traffic::default());
        assert!(
            html.contains("<tr class=\"active_down\" id=\"sv-hoge-web11\" data-state=\"DOWN\">")
        );
        st.backends[0].servers[1].admin = AdminState::Maint;
        assert!(render_page(&st, &Traffic::default()).contains("class=\"maintain\""));
        st.backends[0].name = "<x>".into();
        assert!(render_page(&st, &Traffic::default()).contains("&lt;x&gt;"));
    }
}
