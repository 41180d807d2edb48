//! The stats HTTP listeners (native `stats_http`, haproxy.cfg `listen stats` sections):
//! Prometheus metrics ([`metrics`]) where `http-request use-service prometheus-exporter`
//! says, an HTML page like HAProxy's ([`page`]) under `stats uri`, and `show stat`'s CSV at
//! `URI;csv`, behind `stats auth` when set. [`listener`] bounds the connections and how long
//! they may idle; [`route`] decides what a request gets (pure).
pub mod listener;
pub mod metrics;
pub mod page;
pub mod route;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State as AxState},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::net::TcpListener;

use super::{
    Collector,
    cli::{AdminState, StatOpts},
    stats::{self, State, Traffic},
};
use crate::config::StatsHttp;
use metrics::render_metrics;
use page::render_page;
use route::Route;

/// Serves until the task is aborted.
pub async fn run(tcp: TcpListener, collector: Arc<Collector>, page: Arc<StatsHttp>) {
    let app = Router::new().fallback(answer).with_state((collector, page));
    listener::serve(tcp, app, listener::LIMITS).await;
}

type Shared = (Arc<Collector>, Arc<StatsHttp>);

async fn answer(AxState((col, page)): AxState<Shared>, req: Request) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match route::route(&page, req.uri().path(), &target, credentials) {
        Route::Metrics => get_metrics(&col).await,
        Route::Page => get_page(&col, &page).await,
        Route::Csv => get_csv(&col).await,
        Route::Unauthorized => unauthorized(&page.realm),
        Route::NoServer => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            route::NO_SERVER_BODY,
        )
            .into_response(),
    }
}

/// HAProxy's 401: its page, and the realm to ask credentials for.
fn unauthorized(realm: &str) -> Response {
    let challenge = format!("Basic realm=\"{}\"", realm.replace('"', "'"));
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html")],
        route::UNAUTHORIZED_BODY,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
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

async fn get_metrics(col: &Collector) -> Response {
    let (st, tr) = match gather(col).await {
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

async fn get_page(col: &Collector, page: &StatsHttp) -> Response {
    let (st, tr) = match gather(col).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let refresh = page.refresh.map(|r| r.as_secs().max(1));
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render_page(&st, &tr, refresh),
    )
        .into_response()
}

async fn get_csv(col: &Collector) -> Response {
    let (st, tr) = match gather(col).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Like HAProxy's stats page without authentication: no addresses.
    let body = stats::show_stat(&st, &tr, &StatOpts::default(), false).unwrap_or_else(|e| e);
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// UP, DOWN, MAINT or DRAIN: one word per server for metrics and colours.
pub fn state_word(s: &stats::ServerState) -> &'static str {
    match (s.admin, s.up) {
        (AdminState::Maint, _) => "MAINT",
        (_, false) => "DOWN",
        (AdminState::Drain, true) => "DRAIN",
        (AdminState::Ready, true) if s.stopping => "NOLB",
        (AdminState::Ready, true) if s.weight == 0 => "DRAIN",
        (AdminState::Ready, true) => "UP",
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{api::stats::tests::reference_state, health::CheckStatus};

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
            id: crate::dataplane::ids::ServerId(id),
            slot: crate::dataplane::ids::ServerSlot(id),
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
        dead.eweight = 0;
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
        unchecked.eweight = 0;
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
            tot_uweight: 0,
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
                refused: n + 8,
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

    /// Like HAProxy's page without `stats show-legends` (and its exporter), neither page nor
    /// metrics name a server's address, whatever its family.
    #[test]
    fn page_and_metrics_carry_no_address() {
        let (mut st, tr) = sample();
        for (s, a) in st.backends[0]
            .servers
            .iter_mut()
            .zip(["fd00:16::10", "10.9.8.7"])
        {
            s.addr = a.parse().expect("ip");
        }
        let page = page::render_page(&st, &tr, Some(5));
        let metrics = metrics::render_metrics(&st, &tr).expect("encode");
        for text in [&page, &metrics] {
            assert!(!text.contains("fd00:16") && !text.contains("10.9.8.7"));
        }
    }
}
