//! The seed's operation test (its section 4), against lb, with a real rsyslogd configured as
//! in the seed: both servers come UP; web11's web server is killed and, after `fall` failed
//! checks, leaves the rotation; web10's health_check.html is deleted (Layer7 wrong status,
//! 404) and the backend has no server left; both are restored and come back after `rise`
//! checks. The captured lines must equal HAProxy's for the same events, except durations.
//!
//! Run twice: with the native TOML config, and with the seed's haproxy.cfg itself (only the
//! addresses moved into the test namespaces), which also exercises `chroot`, `user`,
//! `group` and `pidfile`.
use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use lb_testbed::{
    daemon::Daemon,
    http,
    servers::{Rsyslog, WebServer},
    topo::{Routing, Topology, VIP},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// `check duration: 12ms` -> `check duration: Nms` (the only part that varies).
fn normalize(line: &str) -> String {
    match line.split_once("check duration: ") {
        Some((a, b)) => format!(
            "{a}check duration: N{}",
            b.trim_start_matches(|c: char| c.is_ascii_digit())
        ),
        None => line.to_string(),
    }
}

fn served_by(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.starts_with("web1"))
        .unwrap_or("?")
        .to_string()
}

struct Scenario {
    topo: Topology,
    web10: WebServer,
    web11: WebServer,
    syslog: Rsyslog,
    lb: Daemon,
    inter: Duration,
}

impl Scenario {
    fn wait_log(&self, needle: &str) {
        // fall/rise 2: two checks, plus the spread of the first one.
        let limit = self.inter * 4 + Duration::from_secs(5);
        self.syslog.wait_for(needle, limit).expect("log line");
    }

    fn get(&self) -> anyhow::Result<String> {
        http::get(&self.topo.client, vip(), "/").map(|r| served_by(&r.body))
    }

    fn state_of(&self, server: &str) -> String {
        let out = self
            .topo
            .lb
            .exec(
                LB,
                &[
                    "show",
                    "backends",
                    "--json",
                    "--instance",
                    &self.lb.instance,
                ],
            )
            .unwrap_or_default();
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["server"] == server))
            .and_then(|r| r["state"].as_str())
            .unwrap_or("?")
            .to_string()
    }
}

fn start(config: &Path, instance: &str, inter: Duration, extra: &[&str]) -> Scenario {
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let web10 = WebServer::nginx(
        &topo.backend("web10").ns,
        "web10",
        topo.backend("web10").addr,
        80,
    )
    .expect("web10");
    let web11 = WebServer::nginx(
        &topo.backend("web11").ns,
        "web11",
        topo.backend("web11").addr,
        80,
    )
    .expect("web11");
    let syslog = Rsyslog::start(&topo.lb, "rsyslog").expect("rsyslogd");
    let mut lb = Daemon::start_file(Path::new(LB), &topo.lb, instance, config, extra).expect("lb");
    lb.wait_ready().expect("lb ready");
    Scenario {
        topo,
        web10,
        web11,
        syslog,
        lb,
        inter,
    }
}

/// The whole scenario; returns the captured `(pri, line)`s.
fn play(s: &mut Scenario) -> Vec<(u8, String)> {
    // Start: both servers are checked and UP.
    s.wait_log("Health check for server hoge/web10 succeeded");
    s.wait_log("Health check for server hoge/web11 succeeded");
    let first: Vec<String> = (0..6).map(|_| s.get().expect("GET")).collect();
    for pair in first.chunks(2) {
        assert_ne!(pair[0], pair[1], "not round robin: {first:?}");
    }

    // Kill web11's web server. Measure how long until the maps no longer send it new flows,
    // and how many client connections failed meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let (tries, fails) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    // Connections that took a SYN retransmission (web11 refused, lb held its RST back and
    // sent the retransmitted SYN to web10), and the slowest connect.
    let (retried, slowest) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let hammer = {
        let (stop, tries, fails) = (stop.clone(), tries.clone(), fails.clone());
        let (retried, slowest) = (retried.clone(), slowest.clone());
        s.topo
            .client
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    tries.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let ok = std::net::TcpStream::connect_timeout(&vip(), Duration::from_secs(4))
                        .and_then(|mut c| {
                            use std::io::{Read, Write};
                            let took = started.elapsed().as_millis() as u32;
                            slowest.fetch_max(took, Ordering::Relaxed);
                            if took >= 900 {
                                retried.fetch_add(1, Ordering::Relaxed);
                            }
                            c.set_read_timeout(Some(Duration::from_secs(2)))?;
                            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                            let mut b = Vec::new();
                            c.read_to_end(&mut b)?;
                            Ok(b.starts_with(b"HTTP/1.1 200"))
                        })
                        .unwrap_or(false);
                    if !ok {
                        fails.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .expect("client thread")
    };
    let killed = Instant::now();
    s.web11.stop();
    let limit = s.inter * 4 + Duration::from_secs(5);
    while s.state_of("web11") != "DOWN" {
        assert!(killed.elapsed() < limit, "web11 never went DOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
    let failover = killed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = hammer.join();
    let (fails, tries) = (fails.load(Ordering::Relaxed), tries.load(Ordering::Relaxed));
    println!(
        "failover: web11 killed -> maps rewritten after {} ms (inter {} ms, fall 2); {fails} of {tries} client connections failed meanwhile, {} waited for a SYN retransmission (slowest connect {} ms)",
        failover.as_millis(),
        s.inter.as_millis(),
        retried.load(Ordering::Relaxed),
        slowest.load(Ordering::Relaxed),
    );
    // `retries 3` + `option redispatch`: web11's refusals are retried on web10, as HAProxy
    // retries them. One request may still be cut when nginx stops in the middle of it.
    assert!(
        fails <= 1,
        "{fails} of {tries} connections failed during failover"
    );
    s.wait_log("Server hoge/web11 is DOWN");
    // From then on every new connection goes to web10.
    for _ in 0..10 {
        assert_eq!(s.get().expect("GET while web11 is down"), "web10");
    }

    // Delete web10's health_check.html: 404s, DOWN, nothing left.
    s.web10.remove_health_check().expect("rm health_check.html");
    s.wait_log("backend hoge has no server available!");
    assert!(
        s.get().is_err(),
        "with no server available, new connections must not be forwarded"
    );

    // Restore web11, then web10.
    s.web11.start().expect("restart web11");
    s.wait_log("Server hoge/web11 is UP");
    s.web10
        .restore_health_check()
        .expect("restore health_check.html");
    s.wait_log("Server hoge/web10 is UP");
    let last: Vec<String> = (0..4)
        .map(|_| s.get().expect("GET after recovery"))
        .collect();
    assert!(
        last.contains(&"web10".into()) && last.contains(&"web11".into()),
        "{last:?}"
    );
    s.syslog.lines()
}

/// HAProxy's lines for this scenario (log-health-checks, the seed's `info: "OK"`), with the
/// syslog PRI each is sent at (local6: notice 181, alert 177, emerg 176).
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
    (
        181,
        "Health check for server hoge/web10 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: Nms, status: 1/2 UP.",
    ),
    (
        181,
        "Health check for server hoge/web10 failed, reason: Layer7 wrong status, code: 404, info: \"Not Found\", check duration: Nms, status: 0/2 DOWN.",
    ),
    (
        177,
        "Server hoge/web10 is DOWN. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
    ),
    (176, "backend hoge has no server available!"),
    (
        181,
        "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 1/2 DOWN.",
    ),
    (
        181,
        "Health check for server hoge/web11 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 2/2 UP.",
    ),
    (
        181,
        "Server hoge/web11 is UP. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
    ),
    (
        181,
        "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 1/2 DOWN.",
    ),
    (
        181,
        "Health check for server hoge/web10 succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 2/2 UP.",
    ),
    (
        181,
        "Server hoge/web10 is UP. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
    ),
];

fn check_log(variant: &str, got: &[(u8, String)]) {
    let got: Vec<(u8, String)> = got.iter().map(|(p, l)| (*p, normalize(l))).collect();
    let want: Vec<(u8, String)> = EXPECTED.iter().map(|(p, l)| (*p, l.to_string())).collect();
    println!("--- {variant}: captured (rsyslog, <PRI>%msg%) | expected");
    for i in 0..got.len().max(want.len()) {
        let g = got
            .get(i)
            .map(|(p, l)| format!("<{p}>{l}"))
            .unwrap_or_default();
        let w = want
            .get(i)
            .map(|(p, l)| format!("<{p}>{l}"))
            .unwrap_or_default();
        println!("{} {g}\n  {w}", if g == w { "=" } else { "!" });
    }
    assert_eq!(got, want, "{variant}: log differs from HAProxy's");
}

#[test]
fn seed_scenario_with_native_config() {
    lb_testbed::require_root();
    let instance = format!("seed{}", lb_testbed::unique_tag());
    let cfg = std::env::temp_dir().join(format!("lbt-{instance}.toml"));
    std::fs::write(
        &cfg,
        std::fs::read_to_string("../configs/lb.toml")
            .expect("configs/lb.toml")
            .replace("instance = \"lb\"", "")
            .replace("[global]", &format!("[global]\ninstance = \"{instance}\""))
            .replace("*:80", "10.200.0.1:80")
            .replace("192.168.33.10", "10.200.10.10")
            .replace("192.168.33.11", "10.200.11.11")
            .replace("inter = \"3000\"", "inter = \"1000\"")
            .replace("/var/lib/lb/stats", &format!("/tmp/lbt-{instance}.sock"))
            .replace("/var/run/lb.pid", &format!("/tmp/lbt-{instance}.pid")),
    )
    .expect("write config");
    let mut s = start(&cfg, &instance, Duration::from_millis(1000), &[]);
    let log = play(&mut s);
    check_log("configs/lb.toml", &log);
    assert!(s.lb.stop().expect("stop").success());
}

#[test]
fn seed_scenario_with_the_seeds_haproxy_cfg() {
    lb_testbed::require_root();
    // The seed's file with only the addresses moved (configs/haproxy-testbed.cfg), run as
    // written: chroot /var/lib/haproxy, user/group haproxy, pidfile /var/run/haproxy.pid,
    // inter 3000. `--foreground` keeps `daemon` from detaching from the test (HAProxy's -db).
    let cfg = std::fs::canonicalize("../configs/haproxy-testbed.cfg").expect("config");
    let mut s = start(&cfg, "lb", Duration::from_millis(3000), &["--foreground"]);
    let pid: u32 = std::fs::read_to_string("/var/run/haproxy.pid")
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(Some(pid), s.lb.pid(), "pidfile names the daemon");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert!(
        !uid_line.contains("\t0\t"),
        "still root after 'user haproxy': {uid_line}"
    );
    // Only CAP_NET_ADMIN (12), CAP_PERFMON (38) and CAP_BPF (39) are left.
    for set in ["CapEff:", "CapPrm:"] {
        let line = status.lines().find(|l| l.starts_with(set)).unwrap_or("");
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("000000c000001000"),
            "{line}"
        );
    }
    let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("root");
    assert_eq!(root, Path::new("/var/lib/haproxy"), "chroot");
    let log = play(&mut s);
    check_log("configs/haproxy-testbed.cfg", &log);
    assert!(s.lb.stop().expect("stop").success(), "{}", s.lb.output());
}
