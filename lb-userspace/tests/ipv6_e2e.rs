//! IPv6 end to end, in namespaces with ULA addresses (`Topology::add_ipv6`), real nginx
//! servers and the real rsyslogd the seed's test uses:
//!
//! - the seed's scenario over IPv6, in both NAT modes: round robin alternates, web11's web
//!   server is killed and leaves the rotation with HAProxy's log lines (the addresses are not
//!   in them), new connections all go to web10;
//! - a dual-stack frontend (`bind :::80 v4v6`) whose backend has an IPv4 and an IPv6 server,
//!   serving IPv4 and IPv6 clients at once, each over its own family's server (lb does not
//!   translate between families);
//! - IPv6 traffic the LB merely routes, to the same port as a wildcard bind, reaches its
//!   server untouched (the server sees the client's own address).
//!
//! They need the data plane's `lb6` path (the v6dp work).
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use lb_testbed::{
    daemon::Daemon,
    http,
    servers::{Rsyslog, WebServer},
    topo::{CLIENT6, Routing, Topology, VIP, VIP6, backend6},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const INTER_MS: u64 = 500;

fn served_by(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.starts_with("web1"))
        .unwrap_or("?")
        .to_string()
}

/// `check duration: 12ms` -> `check duration: Nms`.
fn normalize(line: &str) -> String {
    match line.split_once("check duration: ") {
        Some((a, b)) => format!(
            "{a}check duration: N{}",
            b.trim_start_matches(|c: char| c.is_ascii_digit())
        ),
        None => line.to_string(),
    }
}

/// The seed's lb.toml with the given binds and servers, checks every `INTER_MS`.
fn config(instance: &str, nat: &str, binds: &[&str], servers: &[(&str, String)]) -> String {
    let binds: Vec<String> = binds.iter().map(|b| format!("{b:?}")).collect();
    let servers: Vec<String> = servers
        .iter()
        .map(|(name, addr)| {
            format!(
                "  {{ name = \"{name}\", address = \"{addr}\", check = true, inter = \"{INTER_MS}\", fall = 2, rise = 2 }},"
            )
        })
        .collect();
    format!(
        r#"[global]
instance = "{instance}"
log = [{{ target = "127.0.0.1", facility = "local6", level = "debug" }}]
pidfile = "/tmp/lbt-{instance}.pid"
stats_socket = {{ path = "/tmp/lbt-{instance}.sock", mode = "600", level = "admin" }}

[defaults]
mode = "tcp"
retries = 3
redispatch = true
log_health_checks = true
timeout = {{ connect = "10s", client = "1m", server = "1m", check = "10s" }}
http_check = {{ method = "GET", uri = "/health_check.html", version = "HTTP/1.0", headers = ["User-agent: Proxy-Check"] }}

[frontend.main]
bind = [{}]
default_backend = "hoge"

[backend.hoge]
balance = "roundrobin"
nat = "{nat}"
server = [
{}
]
"#,
        binds.join(", "),
        servers.join("\n")
    )
}

struct Running {
    topo: Topology,
    web10: WebServer,
    web11: WebServer,
    syslog: Rsyslog,
    lb: Daemon,
}

/// The topology with IPv6, nginx on web10 and web11 at `addrs` (port 80), rsyslogd, and lb
/// with `cfg(instance)`.
fn start(
    routing: Routing,
    name: &str,
    addrs: [IpAddr; 2],
    cfg: impl Fn(&str) -> String,
) -> Running {
    let topo = Topology::seed(routing).expect("topology");
    topo.add_ipv6().expect("IPv6 addresses");
    let web10 = WebServer::nginx(&topo.backend("web10").ns, "web10", addrs[0], 80).expect("web10");
    let web11 = WebServer::nginx(&topo.backend("web11").ns, "web11", addrs[1], 80).expect("web11");
    let syslog = Rsyslog::start(&topo.lb, "rsyslog").expect("rsyslogd");
    let instance = format!("{name}{}", topo.tag);
    let mut lb =
        Daemon::start(Path::new(LB), &topo.lb, &instance, &cfg(&instance), "toml").expect("lb");
    lb.wait_ready()
        .unwrap_or_else(|e| panic!("lb ready: {e}\n{}", lb.output()));
    Running {
        topo,
        web10,
        web11,
        syslog,
        lb,
    }
}

impl Running {
    fn wait_log(&self, needle: &str) {
        let limit = Duration::from_millis(INTER_MS * 4) + Duration::from_secs(5);
        self.syslog
            .wait_for(needle, limit)
            .unwrap_or_else(|e| panic!("{needle}: {e}\n{}", self.lb.output()));
    }

    fn get(&self, to: SocketAddr) -> anyhow::Result<String> {
        http::get(&self.topo.client, to, "/").map(|r| served_by(&r.body))
    }
}

fn v6(n: u8) -> IpAddr {
    IpAddr::V6(backend6(n).0)
}

/// HAProxy's lines for the start and web11's failure (the addresses are in none of them).
const EXPECTED: &[(u8, &str)] = &[
    (181, "Proxy main started."),
    (181, "Proxy hoge started."),
    (
        181,
        "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 2/2 UP.",
    ),
    (
        181,
        "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 2/2 UP.",
    ),
    (
        181,
        "Health check for server hoge/web11 failed, reason: Layer4 connection problem, info: \"Connection refused\", check duration: Nms, status: 1/2 UP.",
    ),
    (
        181,
        "Health check for server hoge/web11 failed, reason: Layer4 connection problem, info: \"Connection refused\", check duration: Nms, status: 0/2 DOWN.",
    ),
    (
        177,
        "Server hoge/web11 is DOWN. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
    ),
];

fn seed_scenario_over_ipv6(routing: Routing, nat: &str) {
    lb_testbed::require_root();
    let servers = [
        ("web10", format!("[{}]:80", v6(10))),
        ("web11", format!("[{}]:80", v6(11))),
    ];
    let binds = [format!("[{VIP6}]:80")];
    let mut r = start(routing, "v6seed", [v6(10), v6(11)], |i| {
        config(i, nat, &[binds[0].as_str()], &servers)
    });
    let vip = SocketAddr::new(VIP6.into(), 80);
    r.wait_log("Health check for server hoge/web10 succeeded");
    r.wait_log("Health check for server hoge/web11 succeeded");
    let first: Vec<String> = (0..6)
        .map(|_| {
            r.get(vip)
                .unwrap_or_else(|e| panic!("GET {vip}: {e}\n{}", r.lb.output()))
        })
        .collect();
    for pair in first.chunks(2) {
        assert_ne!(pair[0], pair[1], "{nat}: not round robin: {first:?}");
    }
    r.web11.stop();
    r.wait_log("Server hoge/web11 is DOWN");
    for _ in 0..6 {
        assert_eq!(r.get(vip).expect("GET while web11 is down"), "web10");
    }
    let got: Vec<(u8, String)> = r
        .syslog
        .lines()
        .iter()
        .map(|(p, l)| (*p, normalize(l)))
        .collect();
    let want: Vec<(u8, String)> = EXPECTED.iter().map(|(p, l)| (*p, l.to_string())).collect();
    assert_eq!(got, want, "{nat}: log differs from HAProxy's");
    assert!(r.lb.stop().expect("stop").success(), "{}", r.lb.output());
}

#[test]
fn seed_scenario_over_ipv6_full_nat() {
    seed_scenario_over_ipv6(Routing::Isolated, "full-nat");
}

#[test]
fn seed_scenario_over_ipv6_dnat() {
    seed_scenario_over_ipv6(Routing::ViaLb, "dnat");
}

#[test]
fn a_dual_stack_frontend_serves_both_families_at_once() {
    lb_testbed::require_root();
    // The seed topology's web10 (`10.200.10.10`) on IPv4, web11 on IPv6.
    let web10_v4 = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 10, 10));
    let servers = [
        ("web10", format!("{web10_v4}:80")),
        ("web11", format!("[{}]:80", v6(11))),
    ];
    let mut r = start(Routing::Isolated, "v6dual", [web10_v4, v6(11)], |i| {
        config(i, "full-nat", &[":::80 v4v6"], &servers)
    });
    r.wait_log("Health check for server hoge/web10 succeeded");
    r.wait_log("Health check for server hoge/web11 succeeded");
    let (v4, v6vip) = (
        SocketAddr::new(VIP.into(), 80),
        SocketAddr::new(VIP6.into(), 80),
    );
    // Both families' clients at the same time: each is balanced over its own family's
    // servers only.
    let client = r.topo.client.handle();
    let ipv4_clients = client
        .spawn(move || {
            (0..20)
                .map(|_| {
                    lb_testbed::http::Conn::connect(v4).and_then(|mut c| c.request("/", false))
                })
                .map(|res| {
                    res.map(|r| served_by(&r.body))
                        .unwrap_or_else(|e| format!("{e}"))
                })
                .collect::<Vec<String>>()
        })
        .expect("IPv4 clients");
    let ipv6_answers: Vec<String> = (0..20)
        .map(|_| r.get(v6vip).unwrap_or_else(|e| format!("{e}")))
        .collect();
    let ipv4_answers = ipv4_clients
        .join()
        .expect("IPv4 client thread")
        .expect("in the client namespace");
    assert!(
        ipv4_answers.iter().all(|a| a == "web10"),
        "{ipv4_answers:?}"
    );
    assert!(
        ipv6_answers.iter().all(|a| a == "web11"),
        "{ipv6_answers:?}"
    );
    assert!(r.lb.stop().expect("stop").success(), "{}", r.lb.output());
}

#[test]
fn routed_ipv6_traffic_to_the_same_port_passes_untouched() {
    lb_testbed::require_root();
    let servers = [
        ("web10", format!("[{}]:80", v6(10))),
        ("web11", format!("[{}]:80", v6(11))),
    ];
    // `:::80` is lb's on the LB's own IPv6 addresses; web10's address is routed through it.
    let r = start(Routing::ViaLb, "v6transit", [v6(10), v6(11)], |i| {
        config(i, "dnat", &[":::80 v6only"], &servers)
    });
    r.wait_log("Health check for server hoge/web10 succeeded");
    let direct = SocketAddr::new(v6(10), 80);
    for _ in 0..5 {
        assert_eq!(r.get(direct).expect("GET web10 directly"), "web10");
    }
    // web10 saw the client's own address: nothing translated these connections. (nginx
    // writes a request's log line once it is done, maybe after the client read the answer.)
    let direct_hits = || {
        let log = std::fs::read_to_string(r.web10.dir.join("access.log")).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.starts_with(&format!("{CLIENT6} ")) && l.contains("GET / "))
            .count();
        (n, log)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while direct_hits().0 < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (n, log) = direct_hits();
    assert_eq!(n, 5, "{log}");
    // And the VIP still balances.
    let vip = SocketAddr::new(VIP6.into(), 80);
    let via: Vec<String> = (0..4).map(|_| r.get(vip).expect("GET VIP")).collect();
    assert!(
        via.contains(&"web10".into()) && via.contains(&"web11".into()),
        "{via:?}"
    );
}

/// What the control plane writes for IPv6, read back from the pinned maps: `:::80` (dual
/// stack) once per local address of each family, link-local ones left out, and following
/// addresses as they come and go; the IPv6 servers in `LB6_SERVERS` with the LB's own address
/// on their segment as the full-NAT source; the IPv4 server in `LB_SERVERS`.
#[test]
fn a_dual_stack_wildcard_follows_both_families_addresses() {
    lb_testbed::require_root();
    let web10_v4 = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 10, 10));
    let servers = [
        ("web10", format!("{web10_v4}:80")),
        ("web11", format!("[{}]:80", v6(11))),
    ];
    let mut r = start(Routing::Isolated, "v6maps", [web10_v4, v6(11)], |i| {
        config(i, "full-nat", &[":::80"], &servers)
    });
    let pins = lb::dataplane::pin_dir(&r.lb.instance);
    let services6 = || -> Vec<std::net::Ipv6Addr> {
        let maps = lb::dataplane::Maps::from_pins(&pins).expect("pins");
        let mut v: Vec<_> = maps
            .services6
            .keys()
            .flatten()
            .filter(|k| u16::from_be(k.port) == 80)
            .map(|k| lb::dataplane::layout::addr6_of(k.addr))
            .collect();
        v.sort();
        v
    };
    let lb_on = |n: u8| backend6(n).1;
    // `::1` too, as HAProxy's `::` socket answers it (and `*:80` 127.0.0.1).
    assert_eq!(
        services6(),
        [std::net::Ipv6Addr::LOCALHOST, VIP6, lb_on(10), lb_on(11)]
    );
    let maps = lb::dataplane::Maps::from_pins(&pins).expect("pins");
    let v4: Vec<u32> = maps.services.keys().flatten().map(|k| k.addr).collect();
    assert!(
        v4.contains(&u32::from_ne_bytes(VIP.octets())),
        "IPv4 half of :::80: {v4:?}"
    );
    // web11 (IPv6) is in LB6_SERVERS with the LB's fd00:200:11::1 as its full-NAT source;
    // web10 (IPv4) in LB_SERVERS only.
    let web11 = (0..lb_common::MAX_SERVERS)
        .filter_map(|slot| maps.servers6.get(&slot, 0).ok())
        .find(|s| lb::dataplane::layout::addr6_of(s.addr) == backend6(11).0)
        .expect("web11 in LB6_SERVERS");
    assert_eq!(lb::dataplane::layout::addr6_of(web11.snat_addr), lb_on(11));
    assert_eq!(u16::from_be(web11.port), 80);
    let web10_be = u32::from_ne_bytes([10, 200, 10, 10]);
    assert!(
        (0..lb_common::MAX_SERVERS)
            .filter_map(|slot| maps.servers.get(&slot, 0).ok())
            .any(|s| s.addr == web10_be),
        "web10 in LB_SERVERS"
    );
    drop(maps);
    // An address that comes is served, one that goes is not; a link-local one never is.
    let extra: std::net::Ipv6Addr = "fd00:200::100".parse().expect("v6");
    let link_local: std::net::Ipv6Addr = "fe80::1234".parse().expect("v6");
    for a in [extra, link_local] {
        r.topo
            .lb
            .ip(&[
                "-6",
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                &r.topo.lb_client_if,
                "nodad",
            ])
            .expect("add address");
    }
    let wait_for = |want: &dyn Fn(&[std::net::Ipv6Addr]) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = services6();
            if want(&now) {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "services: {now:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let now = wait_for(&|s| s.contains(&extra));
    assert!(!now.contains(&link_local), "{now:?}");
    r.topo
        .lb
        .ip(&[
            "-6",
            "addr",
            "del",
            &format!("{extra}/64"),
            "dev",
            &r.topo.lb_client_if,
        ])
        .expect("remove address");
    wait_for(&|s| !s.contains(&extra));
    assert!(r.lb.stop().expect("stop").success(), "{}", r.lb.output());
}

/// Where each server and each family's pool lives in the maps: (name, slot, family, pool).
fn placed(pins: &Path) -> Vec<(String, u32, &'static str, u32)> {
    let maps = lb::dataplane::Maps::from_pins(pins).expect("pins");
    let mut out = Vec::new();
    for slot in 0..lb_common::MAX_SERVERS {
        let meta = maps.meta.get(&slot, 0).expect("meta");
        if meta.pid == 0 {
            continue;
        }
        let name = lb_common::name_str(&meta.server).to_string();
        let v6 = maps.servers6.get(&slot, 0).expect("LB6_SERVERS");
        let v4 = maps.servers.get(&slot, 0).expect("LB_SERVERS");
        if v6 != lb_common::ServerInfo6::default() {
            out.push((name, slot, "ipv6", v6.pool));
        } else {
            out.push((name, slot, "ipv4", v4.pool));
        }
    }
    out.sort();
    out
}

/// A daemon killed and started again (with a server added in front) finds every server and
/// both pools of a dual-stack backend where the first one left them, so their flows go on.
#[test]
fn a_restart_keeps_both_families_slots() {
    lb_testbed::require_root();
    let web10_v4 = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 10, 10));
    let servers = vec![
        ("web10", format!("{web10_v4}:80")),
        ("web11", format!("[{}]:80", v6(11))),
    ];
    let first = servers.clone();
    let mut r = start(Routing::Isolated, "v6restart", [web10_v4, v6(11)], |i| {
        config(i, "full-nat", &[":::80"], &first)
    });
    let pins = lb::dataplane::pin_dir(&r.lb.instance);
    let before = placed(&pins);
    assert_eq!(
        before
            .iter()
            .map(|p| (p.0.as_str(), p.2))
            .collect::<Vec<_>>(),
        [("web10", "ipv4"), ("web11", "ipv6")]
    );
    assert_ne!(before[0].3, before[1].3, "one pool per family");
    r.lb.keep_pins = true;
    r.lb.kill().expect("SIGKILL");
    let mut more = vec![("web09", format!("[{}]:8080", v6(11)))];
    more.extend(servers);
    let instance = r.lb.instance.clone();
    let mut again = Daemon::start(
        Path::new(LB),
        &r.topo.lb,
        &instance,
        &config(&instance, "full-nat", &[":::80"], &more),
        "toml",
    )
    .expect("lb again");
    again
        .wait_ready()
        .unwrap_or_else(|e| panic!("{e}\n{}", again.output()));
    let after = placed(&pins);
    for b in &before {
        assert!(after.contains(b), "{b:?} moved: {after:?}");
    }
    let web09 = after.iter().find(|p| p.0 == "web09").expect("web09 placed");
    assert_eq!((web09.2, web09.3), ("ipv6", before[1].3), "the IPv6 pool");
    assert!(again.stop().expect("stop").success(), "{}", again.output());
}
