//! Two lb nodes behind one router with an IPv6 VIP, end to end (`lb_testbed::cluster` with
//! IPv6): each node's lb keeps `VIP/128 dev lo` in table 100, its BIRD
//! (`dist/bird/lb-node6.conf`, as shipped) announces it over an IPv6 BGP session, and the
//! router's BIRD (`dist/bird/router6.conf`) installs one IPv6 route with a next hop per node.
//! Clients reach IPv6 servers through both nodes (full-NAT); a node whose IPv6 servers all fail their checks is withdrawn and comes back
//! with them, and a node whose lb stops is withdrawn. With `nat dsr-ipip` the servers (nginx
//! on the VIP held on `lo`) get the clients' packets in IPv6-in-IPv6 and answer them
//! directly.
use std::{
    net::{Ipv6Addr, SocketAddr, SocketAddrV6},
    path::Path,
    time::Duration,
};

use lb_testbed::{
    cluster::{ANNOUNCE_TABLE, Cluster, VIP6},
    daemon::Daemon,
    http::Conn,
    netns::Netns,
    servers::WebServer,
};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const CONNECTIONS: usize = 40;

fn config(instance: &str, node: &str, nat: &str, servers: &[(String, Ipv6Addr)]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|(name, addr)| {
            format!(
                "  {{ name = \"{name}\", address = \"[{addr}]:80\", check = true, inter = \"200\", fall = 2, rise = 1 }},"
            )
        })
        .collect();
    format!(
        r#"[global]
instance = "{instance}"
announce_table = {ANNOUNCE_TABLE}
log = [{{ target = "stderr", facility = "local0" }}]

[defaults]
timeout = {{ connect = "5s", client = "5m", server = "5m" }}
http_check = {{ method = "GET", uri = "/health-{node}.html" }}

[frontend.web]
bind = ["[{VIP6}]:80"]
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
fn attach(ns: &Netns, prog: &'static str, ifname: &str) -> aya::Ebpf {
    let name = ifname.to_string();
    ns.run(move || -> anyhow::Result<aya::Ebpf> {
        let mut e = lb::dataplane::load_alone(prog)?;
        lb::dataplane::attach_alone(&mut e, prog, &name)?;
        Ok(e)
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("{prog} on {ifname}: {e:#}"))
}

fn instance(cluster: &Cluster, i: usize) -> String {
    format!("s6{}{}", cluster.tag, i + 1)
}

fn start_lb(cluster: &Cluster, i: usize) -> Daemon {
    start_lb_nat(cluster, i, "full-nat")
}

fn start_lb_nat(cluster: &Cluster, i: usize, nat: &str) -> Daemon {
    let node = &cluster.nodes[i];
    let servers: Vec<_> = cluster
        .servers
        .iter()
        .map(|s| (s.name.clone(), s.addr6.expect("IPv6 server")))
        .collect();
    let instance = instance(cluster, i);
    let mut d = Daemon::start(
        Path::new(LB),
        &node.ns,
        &instance,
        &config(&instance, &node.name, nat, &servers),
        "toml",
    )
    .expect("start lb");
    d.wait_ready().expect("lb ready");
    d
}

/// Flows lb tracks on node `i` (either family).
fn flows_on(cluster: &Cluster, i: usize) -> u64 {
    let out = cluster.nodes[i]
        .ns
        .exec(
            LB,
            &[
                "show",
                "flows",
                "--json",
                "--instance",
                &instance(cluster, i),
            ],
        )
        .expect("lb show flows");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["matching"].as_u64().unwrap_or(0)
}

/// The IPv6 routes of node `i`'s announce table.
fn announce_table(cluster: &Cluster, i: usize) -> String {
    cluster.nodes[i]
        .ns
        .exec(
            "ip",
            &["-6", "route", "show", "table", &ANNOUNCE_TABLE.to_string()],
        )
        .expect("ip -6 route")
}

/// Opens `n` kept-alive connections to the VIP from the client, each answered once; returns
/// them open (so the nodes still track them) with the bodies (which server answered).
fn open(cluster: &Cluster, n: usize) -> (Vec<Conn>, Vec<String>) {
    cluster
        .client
        .run(move || -> anyhow::Result<(Vec<Conn>, Vec<String>)> {
            let vip = SocketAddr::V6(SocketAddrV6::new(VIP6, 80, 0, 0));
            let mut conns = Vec::new();
            let mut bodies = Vec::new();
            for _ in 0..n {
                let mut c = Conn::connect(vip)?;
                let r = c.request("/", true)?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
                conns.push(c);
                bodies.push(r.body);
            }
            Ok((conns, bodies))
        })
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("connections to [{VIP6}]:80: {e:#}"))
}

#[test]
fn ipv6_vip_is_announced_spread_withdrawn_with_its_servers_and_when_lb_stops() {
    let cluster = Cluster::with_ipv6(2, 2).expect("cluster");
    // The router's ends of the nodes' links pick up what lb sends back (XDP_TX).
    let _helpers: Vec<aya::Ebpf> = cluster
        .nodes
        .iter()
        .map(|n| attach(&cluster.router, lb_common::PROG_PASS, &n.peer))
        .collect();
    let web: Vec<WebServer> = cluster
        .servers
        .iter()
        .map(|s| WebServer::nginx(&s.ns, &s.name, s.addr6.expect("IPv6"), 80).expect("nginx"))
        .collect();
    for w in &web {
        for n in &cluster.nodes {
            std::fs::write(w.dir().join(format!("www/health-{}.html", n.name)), "OK\n")
                .expect("health page");
        }
    }
    let mut lbs: Vec<Daemon> = (0..2).map(|i| start_lb(&cluster, i)).collect();
    let all = cluster.node_addrs6();
    let (n1, n2) = (all[0], all[1]);

    // Both nodes announce: a /128 in their table, a multipath route at the router.
    cluster
        .wait_next_hops6(&all, Duration::from_secs(30))
        .expect("both nodes announced");
    for (i, d) in lbs.iter().enumerate() {
        let t = announce_table(&cluster, i);
        assert!(t.contains(&format!("{VIP6} dev lo")), "node {}: {t}", i + 1);
        let said = d.output();
        assert!(
            said.contains(&format!("VIP {VIP6} announced: it has a server UP")),
            "{said}"
        );
    }
    let routes = cluster
        .router_bird()
        .birdc(&["show", "route", "for", &VIP6.to_string()])
        .expect("birdc");
    assert!(routes.contains(&format!("{VIP6}/128")), "{routes}");

    // IPv6 clients spread over both nodes, and over both servers.
    let (conns, bodies) = open(&cluster, CONNECTIONS);
    let (f1, f2) = (flows_on(&cluster, 0), flows_on(&cluster, 1));
    assert!(f1 > 0 && f2 > 0, "flows per node: {f1} and {f2}");
    for w in &web {
        assert!(
            bodies.iter().any(|b| b.contains(&w.name)),
            "{} answered none of {bodies:?}",
            w.name
        );
    }
    drop(conns);

    // Node 2's checks fail for every IPv6 server: its VIP is withdrawn, node 1 takes all.
    for w in &web {
        std::fs::remove_file(w.dir().join("www/health-n2.html")).expect("health page");
    }
    lbs[1]
        .wait_for(&format!("VIP {VIP6} withdrawn"), Duration::from_secs(20))
        .expect("node 2 withdraws");
    cluster
        .wait_next_hops6(&[n1], Duration::from_secs(10))
        .expect("node 2 withdrawn at the router");
    assert!(!announce_table(&cluster, 1).contains(&VIP6.to_string()));
    let (conns, _) = open(&cluster, CONNECTIONS / 2);
    drop(conns);

    // They come back: so does node 2's announcement.
    for w in &web {
        std::fs::write(w.dir().join("www/health-n2.html"), "OK\n").expect("health page");
    }
    cluster
        .wait_next_hops6(&all, Duration::from_secs(20))
        .expect("node 2 announced again");

    // lb stops on node 1: its route goes with it.
    lbs[0].stop().expect("stop node 1");
    cluster
        .wait_next_hops6(&[n2], Duration::from_secs(10))
        .expect("node 1 withdrawn at the router");
    assert!(!announce_table(&cluster, 0).contains(&VIP6.to_string()));
    let (conns, _) = open(&cluster, CONNECTIONS / 2);
    drop(conns);
}

#[test]
fn ipv6_servers_answer_directly_from_the_vip_through_ip6ip6() {
    let cluster = Cluster::with_ipv6(2, 2).expect("cluster");
    let mut helpers: Vec<aya::Ebpf> = cluster
        .nodes
        .iter()
        .map(|n| attach(&cluster.router, lb_common::PROG_PASS, &n.peer))
        .collect();
    // Without `ip6_tunnel` (this test machine's kernel), lb's decapsulator takes the outer
    // header off on each server, as `ip6tnl0` would.
    if cluster.servers_need_decap {
        for s in &cluster.servers {
            helpers.push(attach(&s.ns, lb_common::PROG_IPIP_DECAP, &s.ifname));
        }
    }
    let web: Vec<WebServer> = cluster
        .servers
        .iter()
        .map(|s| WebServer::nginx_any6(&s.ns, &s.name, s.addr6.expect("IPv6"), 80).expect("nginx"))
        .collect();
    for w in &web {
        for n in &cluster.nodes {
            std::fs::write(w.dir().join(format!("www/health-{}.html", n.name)), "OK\n")
                .expect("health page");
        }
    }
    let _lbs: Vec<Daemon> = (0..2)
        .map(|i| start_lb_nat(&cluster, i, "dsr-ipip"))
        .collect();
    cluster
        .wait_next_hops6(&cluster.node_addrs6(), Duration::from_secs(30))
        .expect("both nodes announced");

    // Every connection is answered (the server's replies go from the VIP straight to the
    // router), over both nodes and both servers.
    let (conns, bodies) = open(&cluster, CONNECTIONS);
    let (f1, f2) = (flows_on(&cluster, 0), flows_on(&cluster, 1));
    assert!(f1 > 0 && f2 > 0, "flows per node: {f1} and {f2}");
    for w in &web {
        assert!(
            bodies.iter().any(|b| b.contains(&w.name)),
            "{} answered none of {bodies:?}",
            w.name
        );
    }
    drop(conns);
}
