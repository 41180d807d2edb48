//! End to end in network namespaces: a client, the `lb` daemon attached with XDP, two real
//! nginx servers (and UDP echo servers), both NAT modes, both server routings.
use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use lb_testbed::{
    config::SeedConfig,
    daemon::Daemon,
    http::{self, Conn},
    servers::{UdpEcho, WebServer},
    topo::{Routing, Topology, VIP},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const UDP_PORT: u16 = 5353;

struct Setup {
    topo: Topology,
    web: Vec<WebServer>,
    _udp: Vec<UdpEcho>,
    lb: Daemon,
}

fn config(instance: &str, nat: &str) -> String {
    SeedConfig::new(instance)
        .nat(nat)
        .section(&format!(
            r#"
[frontend.udp]
bind = ["{VIP}:{UDP_PORT}/udp"]
default_backend = "echo"

[backend.echo]
nat = "{nat}"
server = [
  {{ name = "echo10", address = "10.200.10.10:{UDP_PORT}" }},
  {{ name = "echo11", address = "10.200.11.11:{UDP_PORT}" }},
]"#
        ))
        .to_string()
}

fn setup(routing: Routing, nat: &str) -> Setup {
    setup_with(routing, nat, |_| Vec::new())
}

/// `prepare` may change the topology before lb starts and returns extra `lb run` arguments.
fn setup_with(
    routing: Routing,
    nat: &str,
    prepare: impl FnOnce(&Topology) -> Vec<String>,
) -> Setup {
    let topo = Topology::seed(routing).expect("topology");
    let extra = prepare(&topo);
    let web = WebServer::nginx_all(&topo).expect("nginx");
    let udp = topo
        .backends
        .iter()
        .map(|b| {
            UdpEcho::start(&b.ns, &b.name, SocketAddr::from((b.addr, UDP_PORT))).expect("udp echo")
        })
        .collect();
    let instance = format!("e2e{}", topo.tag);
    let path = std::env::temp_dir().join(format!("lbt-{instance}.toml"));
    std::fs::write(&path, config(&instance, nat)).expect("write config");
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut lb =
        Daemon::start_file(Path::new(LB), &topo.lb, &instance, &path, &extra).expect("start lb");
    lb.remove_on_drop(path);
    lb.wait_ready().expect("lb ready");
    Setup {
        topo,
        web,
        _udp: udp,
        lb,
    }
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from((VIP, port))
}

/// Which server answered: the page names it.
fn served_by(body: &str) -> &str {
    if body.contains("backend web10") {
        "web10"
    } else if body.contains("backend web11") {
        "web11"
    } else {
        "?"
    }
}

fn lb_show(s: &Setup, what: &str) -> serde_json::Value {
    lb_show_instance(&s.topo, &s.lb.instance, what)
}

fn lb_show_instance(topo: &Topology, instance: &str, what: &str) -> serde_json::Value {
    let out = topo
        .lb
        .exec(LB, &["show", what, "--json", "--instance", instance])
        .expect("lb show");
    serde_json::from_str(&out).expect("json")
}

/// The checks every combination that can work must pass.
fn balances_http_and_udp(s: &mut Setup) {
    let csum_before = s.topo.csum_errors().expect("nstat");

    // 20 requests, each on a new connection: strict alternation.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = http::get(&s.topo.client, vip(80), "/").expect("GET through the VIP");
        assert_eq!(r.status, 200);
        seen.push(served_by(&r.body).to_string());
    }
    let first = seen[0].clone();
    for (i, who) in seen.iter().enumerate() {
        let want = if (i % 2 == 0) == (first == "web10") {
            "web10"
        } else {
            "web11"
        };
        assert_eq!(who, want, "request {i} of {seen:?}");
    }

    // A long-lived connection stays on its server while other connections alternate.
    let stuck = s
        .topo
        .client
        .run(move || -> anyhow::Result<Vec<String>> {
            let mut long = Conn::connect(vip(80))?;
            let mut owners = Vec::new();
            for _ in 0..5 {
                owners.push(served_by(&long.request("/", true)?.body).to_string());
                for _ in 0..3 {
                    let mut other = Conn::connect(vip(80))?;
                    other.request("/", false)?;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(owners)
        })
        .expect("thread")
        .expect("long-lived connection");
    assert!(
        stuck.iter().all(|o| *o == stuck[0]),
        "long connection moved: {stuck:?}"
    );

    // UDP: a request/answer exchange per source port, alternating between servers.
    let answers = s
        .topo
        .client
        .run(|| -> anyhow::Result<Vec<String>> {
            let mut out = Vec::new();
            for i in 0..4 {
                let sock = UdpSocket::bind("10.200.0.2:0")?;
                sock.set_read_timeout(Some(Duration::from_secs(3)))?;
                sock.send_to(format!("ping{i}").as_bytes(), vip(UDP_PORT))?;
                let mut buf = [0u8; 256];
                let (n, from) = sock.recv_from(&mut buf)?;
                anyhow::ensure!(from == vip(UDP_PORT), "answer from {from}");
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            Ok(out)
        })
        .expect("thread")
        .expect("UDP exchange");
    let names: Vec<_> = answers
        .iter()
        .map(|a| a.split(':').next().unwrap_or(""))
        .collect();
    assert!(answers[0].ends_with(":ping0"), "{answers:?}");
    assert!(
        names == ["web10", "web11", "web10", "web11"]
            || names == ["web11", "web10", "web11", "web10"],
        "UDP not balanced: {answers:?}"
    );

    assert_eq!(
        s.topo.csum_errors().expect("nstat"),
        csum_before,
        "receivers counted checksum errors"
    );

    // `lb show backends` reads the pinned maps: every server has seen traffic.
    let rows = lb_show(s, "backends");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r["state"], "UP");
        assert!(r["new_flows"].as_u64().unwrap_or(0) >= 2, "{r}");
        assert!(r["packets_out"].as_u64().unwrap_or(0) >= 2, "{r}");
    }
}

fn stop_and_check_detached(s: &mut Setup) {
    let status = s.lb.stop().expect("stop");
    assert!(
        status.success(),
        "lb exited with {status}:\n{}",
        s.lb.output()
    );
    let links = s.topo.lb.exec("ip", &["link", "show"]).expect("ip link");
    assert!(
        !links.contains("xdp"),
        "XDP still attached after exit:\n{links}"
    );
    let fwd = s
        .topo
        .lb
        .exec(
            "sysctl",
            &[
                "-n",
                &format!("net.ipv4.conf.{}.forwarding", s.topo.lb_client_if),
            ],
        )
        .expect("sysctl");
    assert_eq!(fwd.trim(), "0", "forwarding not restored");
}

#[test]
fn full_nat_with_isolated_servers() {
    // The seed's layout: the servers have no route to the client.
    let mut s = setup(Routing::Isolated, "full-nat");
    balances_http_and_udp(&mut s);
    // Servers saw the LB's address, not the client's (like HAProxy).
    let log = s.web[0].access_log();
    assert!(log.contains("10.200.10.1 "), "web10 access log: {log}");
    assert!(!log.contains("10.200.0.2"), "web10 saw the client: {log}");
    // Nothing was resolved when the first packets arrived: the kernel resolved the MACs.
    let stats = lb_show(&s, "stats");
    let no_neigh = stats["reasons"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e[0] == "pass_no_neigh"))
        .and_then(|e| e[1].as_u64())
        .unwrap_or(0);
    assert!(
        no_neigh >= 1,
        "expected the neighbour fallback to be used: {stats}"
    );
    stop_and_check_detached(&mut s);
}

#[test]
fn full_nat_with_servers_routed_via_lb() {
    let mut s = setup(Routing::ViaLb, "full-nat");
    balances_http_and_udp(&mut s);
    stop_and_check_detached(&mut s);
}

#[test]
fn dnat_with_servers_routed_via_lb() {
    let mut s = setup(Routing::ViaLb, "dnat");
    balances_http_and_udp(&mut s);
    // DNAT keeps the client's address visible to the server.
    let log = s.web[1].access_log();
    assert!(log.contains("10.200.0.2 "), "web11 access log: {log}");
    stop_and_check_detached(&mut s);
}

#[test]
fn dnat_needs_servers_routed_via_lb() {
    // Servers that do not route through the LB answer the client directly... or cannot
    // at all here: the connection must fail rather than be silently mangled.
    let mut s = setup(Routing::Isolated, "dnat");
    let r = http::get(&s.topo.client, vip(80), "/");
    assert!(r.is_err(), "DNAT worked without a return route: {r:?}");
    stop_and_check_detached(&mut s);
}

#[test]
fn bad_config_attaches_nothing() {
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let instance = format!("bad{}", topo.tag);
    let cfg = config(&instance, "full-nat").replace("10.200.11.11:80", "10.200.11.300:80");
    let mut lb = Daemon::start(Path::new(LB), &topo.lb, &instance, &cfg, "toml").expect("start");
    let err = lb.wait_ready().expect_err("must refuse the config");
    let msg = err.to_string();
    assert!(
        msg.contains(".toml:")
            && msg.contains("server 'web11': '10.200.11.300' is not an IP address"),
        "{msg}"
    );
    assert!(msg.contains("exited (exit status: 1)"), "{msg}");
    let links = topo.lb.exec("ip", &["link", "show"]).expect("ip link");
    assert!(
        !links.contains("xdp"),
        "attached despite a bad config:\n{links}"
    );
    assert!(!lb.pin_dir().exists(), "pinned maps despite a bad config");
}

#[test]
fn reload_keeps_running_on_a_bad_file_and_applies_a_good_one() {
    let mut s = setup(Routing::Isolated, "full-nat");
    let path = std::env::temp_dir().join(format!("lbt-{}.toml", s.lb.instance));
    let good = std::fs::read_to_string(&path).expect("config");
    let hup = |s: &Setup| {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(s.lb.pid().expect("pid") as libc::pid_t, libc::SIGHUP) };
    };

    // A broken file: refused, logged, nothing changes.
    std::fs::write(&path, good.replace("10.200.11.11:80", "10.200.11.11:99999")).expect("write");
    hup(&s);
    s.lb.wait_for("keeping the running configuration", Duration::from_secs(10))
        .expect("reload refused");
    assert!(
        s.lb.output().contains("port 99999 is out of range"),
        "{}",
        s.lb.output()
    );
    let who: Vec<String> = (0..4)
        .map(|_| served_by(&http::get(&s.topo.client, vip(80), "/").expect("GET").body).to_string())
        .collect();
    assert!(
        who.contains(&"web11".to_string()),
        "web11 left despite the refused reload: {who:?}"
    );

    // A good file without web11 and with a syslog target: applied on the same maps, and
    // the new target gets the lines from then on.
    let syslog = s
        .topo
        .lb
        .run(|| std::net::UdpSocket::bind("127.0.0.1:0"))
        .expect("netns")
        .expect("syslog receiver");
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = syslog.local_addr().expect("addr").port();
    let without = good
        .replace(
            "  { name = \"web11\", address = \"10.200.11.11:80\" },\n",
            "",
        )
        .replace(
            "[global]\n",
            &format!(
                "[global]\nlog = [{{ target = \"127.0.0.1:{port}\", facility = \"local6\", level = \"debug\" }}]\n"
            ),
        );
    assert_ne!(without, good);
    std::fs::write(&path, without).expect("write");
    hup(&s);
    s.lb.wait_for("Configuration reloaded", Duration::from_secs(10))
        .expect("reload applied");
    for _ in 0..4 {
        let r = http::get(&s.topo.client, vip(80), "/").expect("GET after reload");
        assert_eq!(served_by(&r.body), "web10");
    }
    let mut buf = [0u8; 2048];
    let n = syslog
        .recv(&mut buf)
        .expect("a syslog line after the reload");
    let line = String::from_utf8_lossy(&buf[..n]);
    // local6.notice = 22 * 8 + 5.
    assert!(
        line.starts_with("<181>") && line.contains("Configuration reloaded from"),
        "{line}"
    );
    stop_and_check_detached(&mut s);
}

#[test]
fn daemon_mode_returns_once_attached() {
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let _web = WebServer::nginx_all(&topo).expect("nginx");
    let instance = format!("bg{}", topo.tag);
    let pidfile = std::env::temp_dir().join(format!("lbt-{instance}.pid"));
    let cfg = config(&instance, "full-nat").replace(
        "[global]\n",
        &format!(
            "[global]\ndaemon = true\npidfile = \"{}\"\n",
            pidfile.display()
        ),
    );
    let path = std::env::temp_dir().join(format!("lbt-{instance}.toml"));
    std::fs::write(&path, cfg).expect("write");
    // `lb run` returns 0 only once the background child is attached and serving.
    let status = topo
        .lb
        .command(LB)
        .expect("cmd")
        .args(["run", "-c", &path.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("lb run");
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    let r = http::get(&topo.client, vip(80), "/");
    // SAFETY: the daemon we started, by PID; then wait (bounded) for it to go.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/lb/{instance}"));
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.expect("GET through a daemonized lb").status, 200);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon did not exit on SIGTERM"
    );
}

#[test]
fn tcplog_logs_each_new_flow() {
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let _web = WebServer::nginx_all(&topo).expect("nginx");
    let instance = format!("tl{}", topo.tag);
    let cfg = config(&instance, "full-nat")
        .replace(
            "[global]\n",
            "[global]\nlog = [{ target = \"stderr\", facility = \"local6\", level = \"info\" }]\n",
        )
        .replace(
            "default_backend = \"hoge\"",
            "default_backend = \"hoge\"\ntcplog = true",
        );
    let mut lb = Daemon::start(Path::new(LB), &topo.lb, &instance, &cfg, "toml").expect("start");
    lb.wait_ready().expect("ready");
    let mut ports = Vec::new();
    for _ in 0..4 {
        let port = topo
            .client
            .run(|| -> anyhow::Result<u16> {
                let mut c = Conn::connect(vip(80))?;
                let port = c.local_addr()?.port();
                c.request("/", false)?;
                Ok(port)
            })
            .expect("thread")
            .expect("GET");
        ports.push(port);
    }
    for port in &ports {
        let needle = format!("10.200.0.2:{port} [");
        lb.wait_for(&needle, Duration::from_secs(5))
            .expect("tcplog line");
        let out = lb.output();
        let line = out
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_default();
        assert!(line.contains("] main hoge/web1"), "{line}");
    }
    // The UDP frontend has no tcplog: none of its flows is logged.
    assert!(!lb.output().contains("] udp echo/"), "{}", lb.output());
    assert!(lb.stop().expect("stop").success());
}

#[test]
fn falls_back_to_generic_xdp_where_the_driver_has_no_native_mode() {
    let mut s = setup_with(Routing::Isolated, "full-nat", |topo| {
        // A bridge has no native XDP; lb must still attach (in skb mode) and say so.
        topo.lb
            .ip(&["link", "add", "br0", "type", "bridge"])
            .expect("bridge");
        topo.lb.ip(&["link", "set", "br0", "up"]).expect("up");
        vec!["-i".into(), "br0".into()]
    });
    s.lb.wait_for(
        "br0: the driver refused native XDP, attached in generic (skb) mode",
        Duration::from_secs(5),
    )
    .expect("fallback warning");
    let links = s
        .topo
        .lb
        .exec("ip", &["link", "show", "br0"])
        .expect("ip link");
    assert!(links.contains("xdpgeneric"), "{links}");
    let veth = s
        .topo
        .lb
        .exec("ip", &["link", "show", &s.topo.lb_client_if])
        .expect("ip link");
    assert!(
        veth.contains("xdpdrv") || veth.contains("xdp "),
        "veth not native: {veth}"
    );
    let r = http::get(&s.topo.client, vip(80), "/").expect("GET");
    assert_eq!(r.status, 200);
    stop_and_check_detached(&mut s);
}

/// `tcp-request connection` rules in a haproxy-style rule list: the denied source's SYNs are
/// dropped in XDP (its connection times out, nginx never sees it), the allowed client is
/// served, and `lb show stats` counts the drops.
#[test]
fn access_rules_drop_a_denied_source_in_xdp() {
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let _web = WebServer::nginx_all(&topo).expect("nginx");
    let denied = "10.200.0.3";
    topo.client
        .ip(&[
            "addr",
            "add",
            &format!("{denied}/24"),
            "dev",
            &topo.client_if,
        ])
        .expect("second client address");
    let instance = format!("ac{}", topo.tag);
    let cfg = config(&instance, "full-nat").replace(
        "default_backend = \"hoge\"",
        &format!(
            "default_backend = \"hoge\"\ntcp_request_connection = [\"reject if {{ src {denied} }}\"]"
        ),
    );
    let mut lb = Daemon::start(Path::new(LB), &topo.lb, &instance, &cfg, "toml").expect("start");
    lb.wait_ready().expect("ready");
    let get = |source: &str| {
        topo.client.exec(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                source,
                "--max-time",
                "2",
                "http://10.200.0.1/",
            ],
        )
    };
    assert_eq!(get("10.200.0.2").expect("allowed client"), "200");
    assert!(get(denied).is_err(), "the denied client got an answer");
    let stats = lb_show_instance(&topo, &instance, "stats");
    let denied_drops = stats["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|r| r[0] == "drop_denied")
        .and_then(|r| r[1].as_u64())
        .expect("drop_denied");
    assert!(denied_drops >= 1, "{stats}");
    assert!(lb.stop().expect("stop").success());
}
