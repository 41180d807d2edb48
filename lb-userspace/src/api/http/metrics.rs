//! `/metrics`: the Prometheus (OpenMetrics text) exposition of a snapshot.
//!
//! Metric names follow HAProxy's Prometheus exporter (`haproxy_server_weight`,
//! `haproxy_backend_active_servers`, ...) where the meaning is the same, so dashboards
//! built for HAProxy find them; what only lb has is `lb_*` (packets, packet fates, the XDP
//! program's own run time when `kernel.bpf_stats_enabled` is on).
//!
//! Families come out in the order they are registered: process, frontends, backends,
//! servers. Each scrape builds a fresh registry from the snapshot.
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeMetric, text::encode},
    metrics::{TypedMetric, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::state_word;
use crate::api::stats::{Flows, State, Traffic};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Registers an empty family of `M` under `name`; the caller fills it.
fn family<M>(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: EncodeMetric + TypedMetric + Default + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<Labels, M>::default();
    reg.register(name, help, f.clone());
    f
}

/// A family with a single, label-less sample.
fn single<M>(reg: &mut Registry, name: &str, help: &str) -> M
where
    M: EncodeMetric + TypedMetric + Default + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    family::<M>(reg, name, help)
        .get_or_create(&Vec::new())
        .clone()
}

type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The Prometheus text exposition of a snapshot.
pub fn render_metrics(st: &State, tr: &Traffic) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    process(&mut reg, st, tr);
    frontends(&mut reg, st, tr);
    backends(&mut reg, st, tr);
    servers(&mut reg, st, tr);
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// The process: start time, flows against the table's size, dropped logs, packet fates and
/// the XDP program's own figures.
fn process(reg: &mut Registry, st: &State, tr: &Traffic) {
    single::<Gauge>(
        reg,
        "haproxy_process_start_time_seconds",
        "Start time in seconds",
    )
    .set(as_i64(st.start_time));
    single::<Gauge>(
        reg,
        "haproxy_process_current_connections",
        "Number of active flows",
    )
    .set(as_i64(tr.total_flows));
    single::<Gauge>(
        reg,
        "lb_conntrack_capacity",
        "Flows the connection-tracking table can hold",
    )
    .set(i64::from(st.conntrack_entries));
    single::<Counter>(reg, "haproxy_process_dropped_logs", "Log messages dropped")
        .inc_by(st.dropped_logs);
    let reasons = family::<Counter>(
        reg,
        "lb_packets_unforwarded",
        "Packets the data plane passed to the kernel or dropped, by reason",
    );
    for (r, n) in &tr.reasons {
        reasons.get_or_create(&labels(&[("reason", r)])).inc_by(*n);
    }
    if let Some(x) = st.xdp {
        single::<CounterF>(
            reg,
            "lb_xdp_run_time_seconds",
            "CPU time the XDP program used (kernel.bpf_stats_enabled)",
        )
        .inc_by(x.run_time_ns as f64 / 1e9);
        single::<Counter>(
            reg,
            "lb_xdp_run_count",
            "Runs of the XDP program (kernel.bpf_stats_enabled)",
        )
        .inc_by(x.run_count);
    }
}

/// Each frontend's traffic.
fn frontends(reg: &mut Registry, st: &State, tr: &Traffic) {
    let flows = FlowFamilies::register(reg, &FRONTEND);
    for f in &st.frontends {
        flows.record(&labels(&[("proxy", &f.name)]), &tr.frontend(f.id));
    }
}

/// Each backend: status, usable servers and weight, traffic (its servers' summed), times
/// it lost its last server.
fn backends(reg: &mut Registry, st: &State, tr: &Traffic) {
    let status = family::<Gauge>(
        reg,
        "haproxy_backend_status",
        "Current status of the backend, per state",
    );
    let act = family::<Gauge>(
        reg,
        "haproxy_backend_active_servers",
        "Usable active servers",
    );
    let bck = family::<Gauge>(
        reg,
        "haproxy_backend_backup_servers",
        "Usable backup servers",
    );
    let weight = family::<Gauge>(
        reg,
        "haproxy_backend_weight",
        "Total weight of the servers taking new flows",
    );
    let flows = FlowFamilies::register(reg, &BACKEND);
    let down = family::<Counter>(
        reg,
        "haproxy_backend_check_up_down",
        "Times the backend lost its last server",
    );
    let downtime = family::<Counter>(
        reg,
        "haproxy_backend_downtime_seconds",
        "Seconds without a usable server",
    );
    for b in &st.backends {
        let l = labels(&[("proxy", &b.name)]);
        for state in ["UP", "DOWN"] {
            let on = (state == "UP") == b.up;
            status
                .get_or_create(&labels(&[("proxy", &b.name), ("state", state)]))
                .set(i64::from(on));
        }
        act.get_or_create(&l).set(i64::from(b.act));
        bck.get_or_create(&l).set(i64::from(b.bck));
        weight.get_or_create(&l).set(i64::from(b.tot_weight));
        flows.record(&l, &tr.backend(b));
        down.get_or_create(&l).inc_by(b.chkdown);
        downtime.get_or_create(&l).inc_by(b.downtime);
    }
}

/// Each server: state, weight, health checks (only for checked servers), traffic.
fn servers(reg: &mut Registry, st: &State, tr: &Traffic) {
    let status = family::<Gauge>(
        reg,
        "haproxy_server_status",
        "Current status of the server, per state",
    );
    let weight = family::<Gauge>(reg, "haproxy_server_weight", "Weight of the server");
    let check_duration = family::<GaugeF>(
        reg,
        "haproxy_server_check_duration_seconds",
        "Duration of the last health check",
    );
    let check_failures =
        family::<Counter>(reg, "haproxy_server_check_failures", "Failed health checks");
    let up_down = family::<Counter>(
        reg,
        "haproxy_server_check_up_down",
        "UP to DOWN transitions",
    );
    let downtime = family::<Counter>(
        reg,
        "haproxy_server_downtime_seconds",
        "Seconds DOWN or in maintenance",
    );
    let flows = FlowFamilies::register(reg, &SERVER);
    for b in &st.backends {
        for s in &b.servers {
            let l = labels(&[("proxy", &b.name), ("server", &s.name)]);
            let now = state_word(s);
            for state in ["UP", "DOWN", "MAINT", "DRAIN", "NOLB"] {
                status
                    .get_or_create(&labels(&[
                        ("proxy", &b.name),
                        ("server", &s.name),
                        ("state", state),
                    ]))
                    .set(i64::from(state == now));
            }
            weight.get_or_create(&l).set(i64::from(s.weight));
            if let Some(k) = &s.check {
                if let Some(d) = k.duration_ms {
                    check_duration.get_or_create(&l).set(d as f64 / 1000.0);
                }
                check_failures.get_or_create(&l).inc_by(s.chkfail);
                up_down.get_or_create(&l).inc_by(s.chkdown);
                downtime.get_or_create(&l).inc_by(s.downtime);
            }
            flows.record(&l, &tr.server(s.id));
        }
    }
}

/// A family filled from the [`Flows`] of each frontend, backend or server, named
/// `<ns>_<level>_<what>`: `haproxy` where HAProxy's exporter has the same family, `lb`
/// for what only lb counts.
#[derive(Clone, Copy)]
struct FlowFamily {
    ns: &'static str,
    what: &'static str,
    help: &'static str,
    /// Current flows are a gauge; everything else only grows.
    gauge: bool,
    value: FlowValue,
}

/// Which figure of a [`Flows`] a family shows.
type FlowValue = fn(&Flows) -> u64;

/// The families one level exports, in exposition order.
struct Level {
    name: &'static str,
    families: &'static [FlowFamily],
}

const CURRENT_SESSIONS: FlowFamily = FlowFamily {
    ns: "haproxy",
    what: "current_sessions",
    help: "Current flows",
    gauge: true,
    value: |c| c.current,
};
const SESSIONS: FlowFamily = FlowFamily {
    ns: "haproxy",
    what: "sessions",
    help: "New flows",
    gauge: false,
    value: |c| c.counters.new_flows,
};

const fn counter(
    ns: &'static str,
    what: &'static str,
    help: &'static str,
    value: FlowValue,
) -> FlowFamily {
    FlowFamily {
        ns,
        what,
        help,
        gauge: false,
        value,
    }
}

const fn bytes_in(help: &'static str) -> FlowFamily {
    counter("haproxy", "bytes_in", help, |c| c.counters.bytes_in)
}

const fn bytes_out(help: &'static str) -> FlowFamily {
    counter("haproxy", "bytes_out", help, |c| c.counters.bytes_out)
}

const fn packets_in(help: &'static str) -> FlowFamily {
    counter("lb", "packets_in", help, |c| c.counters.packets_in)
}

const fn packets_out(help: &'static str) -> FlowFamily {
    counter("lb", "packets_out", help, |c| c.counters.packets_out)
}

/// A frontend sees the client side: "in" is from clients.
const FRONTEND: Level = Level {
    name: "frontend",
    families: &[
        CURRENT_SESSIONS,
        SESSIONS,
        bytes_in("Bytes from clients (whole frames)"),
        bytes_out("Bytes to clients (whole frames)"),
        packets_in("Packets from clients"),
        packets_out("Packets to clients"),
    ],
};

/// A backend's figures are its servers' summed; "in" is client to server.
const BACKEND: Level = Level {
    name: "backend",
    families: &[
        CURRENT_SESSIONS,
        SESSIONS,
        bytes_in("Bytes client to server (whole frames)"),
        bytes_out("Bytes server to client (whole frames)"),
    ],
};

/// A server also counts the flows moved to it (`option redispatch`).
const SERVER: Level = Level {
    name: "server",
    families: &[
        CURRENT_SESSIONS,
        SESSIONS,
        bytes_in("Bytes client to server (whole frames)"),
        bytes_out("Bytes server to client (whole frames)"),
        counter(
            "haproxy",
            "redispatch_warnings",
            "Flows moved here because their server went away",
            |c| c.counters.redispatched,
        ),
        packets_in("Packets client to server"),
        packets_out("Packets server to client"),
    ],
};

/// A registered [`FlowFamily`], of its kind.
enum Registered {
    Gauge(Family<Labels, Gauge>),
    Counter(Family<Labels, Counter>),
}

/// A level's flow families, registered.
struct FlowFamilies(Vec<(Registered, FlowValue)>);

impl FlowFamilies {
    fn register(reg: &mut Registry, level: &Level) -> FlowFamilies {
        let families = level.families.iter().map(|f| {
            let name = format!("{}_{}_{}", f.ns, level.name, f.what);
            let registered = if f.gauge {
                Registered::Gauge(family(reg, &name, f.help))
            } else {
                Registered::Counter(family(reg, &name, f.help))
            };
            (registered, f.value)
        });
        FlowFamilies(families.collect())
    }

    fn record(&self, l: &Labels, c: &Flows) {
        for (family, value) in &self.0 {
            match family {
                Registered::Gauge(g) => {
                    g.get_or_create(l).set(as_i64(value(c)));
                }
                Registered::Counter(n) => {
                    n.get_or_create(l).inc_by(value(c));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        http::tests::sample,
        stats::{self, tests::reference_state},
    };

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
        let want = include_str!("../testdata/stats-http-metrics.txt");
        assert_eq!(canonical(&got), canonical(want));
        assert!(got.ends_with("# EOF\n"));
    }
}
