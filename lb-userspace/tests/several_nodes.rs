//! Three lb nodes behind one router, end to end (`lb_testbed::cluster`): BIRD on the router
//! and on each node, the router's ECMP route to the VIP hashing L4, nginx servers set up by
//! `scripts/dsr-server.sh`. 200 long-lived keep-alive connections keep asking while a node
//! stops (its VIP withdrawn through BIRD), comes back, and loses its servers' health checks.
//!
//! With `nat dsr-ipip` and `hash-type consistent` no connection may break: a connection the
//! router moves to another node goes on there to the same server. With full-NAT the ones the
//! stopped node carried break (the others have no state for them, and their servers answer
//! the stopped node's address); the test counts them.
use std::{
    net::{SocketAddr, SocketAddrV4},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_testbed::{
    cluster::{Cluster, VIP},
    daemon::Daemon,
    http::Conn,
    servers::WebServer,
};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const CONNECTIONS: usize = 200;

fn config(
    instance: &str,
    node: &str,
    nat: &str,
    servers: &[(String, std::net::Ipv4Addr)],
) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|(name, addr)| {
            format!(
                "  {{ name = \"{name}\", address = \"{addr}:80\", check = true, inter = \"200\", fall = 2, rise = 1 }},"
            )
        })
        .collect();
    format!(
        r#"[global]
instance = "{instance}"
announce_table = 100
log = [{{ target = "stderr", facility = "local0" }}]

[defaults]
timeout = {{ connect = "5s", client = "5m", server = "5m" }}
http_check = {{ method = "GET", uri = "/health-{node}.html" }}

[frontend.web]
bind = ["{VIP}:80"]
default_backend = "web"

[backend.web]
nat = "{nat}"
hash_type = "consistent"
server = [
{}
]
"#,
        servers.join("\n")
    )
}

/// One of lb's small XDP programs on `ifname` in `ns`, for as long as the result lives.
fn attach(ns: &lb_testbed::netns::Netns, prog: &'static str, ifname: &str) -> aya::Ebpf {
    let name = ifname.to_string();
    ns.run(move || -> anyhow::Result<aya::Ebpf> {
        let mut e = lb::dataplane::load_alone(prog)?;
        lb::dataplane::attach_alone(&mut e, prog, &name)?;
        Ok(e)
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("{prog} on {ifname}: {e:#}"))
}

struct Bed {
    cluster: Cluster,
    /// lb's IPIP decapsulator on each server, when the kernel has no `ipip`, and `xdp_pass`
    /// on the router's ends of the nodes' links.
    _helpers: Vec<aya::Ebpf>,
    web: Vec<WebServer>,
    lbs: Vec<Option<Daemon>>,
    nat: &'static str,
}

impl Bed {
    fn start(nat: &'static str) -> Bed {
        let cluster = Cluster::new(3, 3).expect("cluster");
        let mut helpers = Vec::new();
        if cluster.servers_need_decap {
            for s in &cluster.servers {
                helpers.push(attach(&s.ns, lb_common::PROG_IPIP_DECAP, &s.ifname));
            }
        }
        // The router's ends of the nodes' links pick up what lb sends back (XDP_TX).
        for n in &cluster.nodes {
            helpers.push(attach(&cluster.router, lb_common::PROG_PASS, &n.peer));
        }
        let web: Vec<WebServer> = cluster
            .servers
            .iter()
            .map(|s| WebServer::nginx_any(&s.ns, &s.name, s.addr, 80).expect("nginx"))
            .collect();
        for w in &web {
            for n in &cluster.nodes {
                std::fs::write(w.dir().join(format!("www/health-{}.html", n.name)), "OK\n")
                    .expect("health page");
            }
        }
        let mut bed = Bed {
            cluster,
            _helpers: helpers,
            web,
            lbs: Vec::new(),
            nat,
        };
        for i in 0..3 {
            let d = bed.start_lb(i);
            bed.lbs.push(Some(d));
        }
        bed.cluster
            .wait_next_hops(&bed.cluster.node_addrs(), Duration::from_secs(30))
            .expect("every node announced");
        bed
    }

    fn instance(&self, i: usize) -> String {
        format!("sn{}{}", self.cluster.tag, i + 1)
    }

    fn start_lb(&self, i: usize) -> Daemon {
        let node = &self.cluster.nodes[i];
        let servers: Vec<_> = self
            .cluster
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.addr))
            .collect();
        let instance = self.instance(i);
        let mut d = Daemon::start(
            Path::new(LB),
            &node.ns,
            &instance,
            &config(&instance, &node.name, self.nat, &servers),
            "toml",
        )
        .expect("start lb");
        d.wait_ready().expect("lb ready");
        d
    }

    /// Flows lb tracks on node `i`.
    fn flows_on(&self, i: usize) -> u64 {
        let out = self.cluster.nodes[i]
            .ns
            .exec(
                LB,
                &["show", "flows", "--json", "--instance", &self.instance(i)],
            )
            .expect("lb show flows");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["matching"].as_u64().unwrap_or(0)
    }
}

/// Keep-alive connections asking in turn, as fast as they answer, until stopped. A
/// connection that fails once (reset, closed, no answer within 10 s) is counted broken and
/// dropped.
struct Clients {
    stop: Arc<AtomicBool>,
    broken: Arc<Mutex<Vec<String>>>,
    rounds: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl Clients {
    fn start(bed: &Bed) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let broken = Arc::new(Mutex::new(Vec::new()));
        let rounds = Arc::new(Mutex::new(0));
        let (s, b, r) = (stop.clone(), broken.clone(), rounds.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = bed
            .cluster
            .client
            .spawn(move || -> anyhow::Result<()> {
                let vip = SocketAddr::V4(SocketAddrV4::new(VIP, 80));
                let mut conns = Vec::new();
                for _ in 0..CONNECTIONS {
                    let mut c = Conn::connect(vip)?;
                    c.set_timeout(Duration::from_secs(10))?;
                    let first = c.request("/", true)?;
                    anyhow::ensure!(first.status == 200, "status {}", first.status);
                    conns.push(Some((c, first.body)));
                }
                let _ = tx.send(());
                while !s.load(Ordering::Relaxed) {
                    for slot in conns.iter_mut() {
                        let Some((c, body)) = slot else { continue };
                        let fail = match c.request("/", true) {
                            Ok(resp) if resp.status == 200 && resp.body == *body => None,
                            Ok(resp) => Some(format!("status {} body {}", resp.status, resp.body)),
                            Err(e) => Some(format!("{e:#}")),
                        };
                        if let Some(why) = fail {
                            let from = c.local_addr().map(|a| a.to_string()).unwrap_or_default();
                            if let Ok(mut b) = b.lock() {
                                b.push(format!("{from}: {why}"));
                            }
                            *slot = None;
                        }
                    }
                    if let Ok(mut r) = r.lock() {
                        *r += 1;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })
            .expect("client thread");
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let why = thread.join().map(|r| format!("{r:?}"));
            panic!("200 connections did not open and answer: {why:?}");
        }
        Clients {
            stop,
            broken,
            rounds,
            thread: Some(thread),
        }
    }

    fn broken(&self) -> Vec<String> {
        self.broken.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Waits for two more complete rounds: every live connection asked again.
    fn two_rounds(&self) {
        let at = *self.rounds.lock().expect("rounds");
        let deadline = Instant::now() + Duration::from_secs(60);
        while *self.rounds.lock().expect("rounds") < at + 2 {
            assert!(Instant::now() < deadline, "the clients are stuck");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("client thread")
                .expect("client")
                .expect("clients");
        }
        self.broken()
    }
}

/// What a scenario saw.
struct Seen {
    broken: Vec<String>,
    /// From lb's "withdrawn" line to the router's route without node 3 (both polled).
    withdrawal: Duration,
    /// From node 3's checks starting to fail (`inter 200`, `fall 2`) to the same.
    detection: Duration,
    /// Connections node 3 carried before it stopped.
    on_n3: u64,
}

/// Runs the scenario.
fn scenario(nat: &'static str) -> Seen {
    let mut bed = Bed::start(nat);
    let clients = Clients::start(&bed);
    let on_n3 = bed.flows_on(2);
    assert!(on_n3 > 0, "the router sent node 3 none of the connections");
    let all = bed.cluster.node_addrs();
    let (n3, others) = (all[2], vec![all[0], all[1]]);

    // Node 3 stops: lb withdraws the VIP, BIRD tells the router, node 3's connections move.
    let mut d = bed.lbs[2].take().expect("n3");
    d.stop().expect("stop n3");
    bed.cluster
        .wait_next_hops(&others, Duration::from_secs(10))
        .expect("n3 withdrawn");
    drop(d);
    clients.two_rounds();

    // It comes back, with nothing in its flow table.
    bed.lbs[2] = Some(bed.start_lb(2));
    bed.cluster
        .wait_next_hops(&all, Duration::from_secs(20))
        .expect("n3 announced again");
    clients.two_rounds();

    // Node 3's health checks fail for every server: from the failures' start, and from lb
    // taking the route away, to the router no longer sending node 3 the VIP.
    let failing = Instant::now();
    for w in &bed.web {
        std::fs::remove_file(w.dir().join("www/health-n3.html")).expect("health page");
    }
    let n3d = bed.lbs[2].as_ref().expect("n3");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut down_at, mut gone_at) = (None, None);
    while (down_at.is_none() || gone_at.is_none()) && Instant::now() < deadline {
        if down_at.is_none() && n3d.output().contains(&format!("VIP {VIP} withdrawn")) {
            down_at = Some(Instant::now());
        }
        if gone_at.is_none() && !bed.cluster.vip_next_hops().expect("hops").contains(&n3) {
            gone_at = Some(Instant::now());
        }
    }
    let (Some(down), Some(gone)) = (down_at, gone_at) else {
        panic!("node 3 did not withdraw:\n{}", n3d.output());
    };
    // The last server's DOWN line and the withdrawal notice come from one event but reach
    // the output through different streams: the line may land a moment after the notice.
    let last_down = "0 active and 0 backup servers left";
    let until = Instant::now() + Duration::from_secs(5);
    while !n3d.output().contains(last_down) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(n3d.output().contains(last_down), "{}", n3d.output());
    let detection = gone.saturating_duration_since(failing);
    let withdrawal = gone.saturating_duration_since(down);
    clients.two_rounds();
    for w in &bed.web {
        std::fs::write(w.dir().join("www/health-n3.html"), "OK\n").expect("health page");
    }
    bed.cluster
        .wait_next_hops(&all, Duration::from_secs(20))
        .expect("n3 announced again");
    clients.two_rounds();
    Seen {
        broken: clients.finish(),
        withdrawal,
        detection,
        on_n3,
    }
}

fn report(name: &str, line: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), format!("{line}\n"));
    eprintln!("{line}");
}

#[test]
fn dsr_with_consistent_hashing_breaks_no_connection_as_nodes_come_and_go() {
    let seen = scenario("dsr-ipip");
    report(
        "several_nodes_dsr",
        &format!(
            "dsr-ipip: {CONNECTIONS} connections, {} on node 3; broken: {}; node 3's checks failing -> route gone at the router: {:?}; lb's withdrawal -> router: {:?}",
            seen.on_n3,
            seen.broken.len(),
            seen.detection,
            seen.withdrawal
        ),
    );
    assert!(
        seen.broken.is_empty(),
        "broken connections: {:#?}",
        seen.broken
    );
    assert!(
        seen.withdrawal < Duration::from_secs(1),
        "{:?}",
        seen.withdrawal
    );
}

#[test]
fn full_nat_breaks_the_connections_of_a_node_that_goes() {
    let seen = scenario("full-nat");
    report(
        "several_nodes_full_nat",
        &format!(
            "full-nat: {CONNECTIONS} connections, {} on node 3; broken: {}",
            seen.on_n3,
            seen.broken.len()
        ),
    );
    // At least node 3's own: the others have no state for them.
    assert!(
        seen.broken.len() as u64 >= seen.on_n3,
        "{} broken, {} on node 3",
        seen.broken.len(),
        seen.on_n3
    );
}
