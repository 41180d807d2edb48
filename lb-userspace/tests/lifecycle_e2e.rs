//! A flow's life end to end (real `lb run`, nginx and UDP servers, the seed's topology): an
//! idle UDP flow expires after its `timeout client`/`server` and gives its full-NAT source
//! port to the next flow; an established connection stays on its server when that server
//! goes DOWN, while new connections go to the others.
#[path = "support/e2e_fixture.rs"]
mod fixture;

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use fixture::{Bed, Extra, config, served_by, vip};
use lb_testbed::{
    http::Conn,
    servers::UdpEcho,
    topo::{CLIENT, Routing, VIP},
};

const UDP_PORT: u16 = 5353;
/// The UDP backend's idle timeout (`timeout client` and `server`).
const UDP_IDLE: Duration = Duration::from_secs(2);
/// Its only full-NAT source port: a flow that holds it leaves none for another.
const SNAT_PORT: u16 = 20000;

/// The UDP flows `lb show flows` lists: `(client, source the server sees, state)`.
fn udp_flows(bed: &Bed) -> Vec<(String, String, String)> {
    let f = bed.show("flows", &["--backend", "echo"]);
    f["flows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
                    (s("client"), s("source"), s("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A client socket in the client namespace (usable from any thread once made).
fn udp_client(bed: &Bed) -> UdpSocket {
    let sock = bed
        .topo
        .client
        .run(|| UdpSocket::bind(SocketAddr::from((CLIENT, 0))))
        .expect("netns")
        .expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    sock
}

/// Sends `msg` to the UDP VIP and returns the answer, if one comes within 500 ms.
fn ask(sock: &UdpSocket, msg: &str) -> Option<String> {
    sock.send_to(msg.as_bytes(), SocketAddr::from((VIP, UDP_PORT)))
        .expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn an_idle_udp_flow_expires_and_frees_its_full_nat_port() {
    let sections = format!(
        r#"
[frontend.udp]
bind = ["{VIP}:{UDP_PORT}/udp"]
default_backend = "echo"

[backend.echo]
nat = "full-nat"
timeout = {{ connect = "1s", client = "{idle}s", server = "{idle}s" }}
server = [{{ name = "echo10", address = "10.200.10.10:{UDP_PORT}" }}]
"#,
        idle = UDP_IDLE.as_secs()
    );
    let global = format!("snat_ports = \"{SNAT_PORT}-{SNAT_PORT}\"");
    let bed = Bed::start(Routing::Isolated, "ux", |i| {
        config(
            i,
            "full-nat",
            &Extra {
                global: &global,
                sections: &sections,
                ..Extra::default()
            },
        )
    });
    let web10 = bed.topo.backend("web10");
    let _echo = UdpEcho::start(
        &web10.ns,
        "echo10",
        SocketAddr::from((web10.addr, UDP_PORT)),
    )
    .expect("udp echo");
    let port_source = format!("{}:{SNAT_PORT}", web10.lb_addr);

    // A's flow takes the only port; speaking again confirms it.
    let a = udp_client(&bed);
    let a_name = a.local_addr().expect("addr").to_string();
    assert_eq!(ask(&a, "a1").as_deref(), Some("echo10:a1"));
    assert_eq!(ask(&a, "a2").as_deref(), Some("echo10:a2"));
    let last_packet = Instant::now();
    assert_eq!(
        udp_flows(&bed),
        [(a_name.clone(), port_source.clone(), "udp".to_string())]
    );

    // While it lives, B finds no port.
    let b = udp_client(&bed);
    let b_name = b.local_addr().expect("addr").to_string();
    assert_eq!(ask(&b, "b1"), None, "B got an answer while A held the port");
    assert!(
        bed.reasons().get("drop_snat_exhausted") >= Some(&1),
        "{:?}",
        bed.reasons()
    );

    // Idle past its timeout, A's flow is gone (no daemon involved: `lb show` reads the
    // entries' clocks as the data plane does).
    let deadline = last_packet + UDP_IDLE * 3;
    while !udp_flows(&bed).is_empty() {
        assert!(
            Instant::now() < deadline,
            "A's flow still listed {:?} after {:?}: {:?}",
            last_packet.elapsed(),
            UDP_IDLE,
            udp_flows(&bed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gone_after = last_packet.elapsed();
    assert!(
        gone_after >= UDP_IDLE,
        "A's flow went after {gone_after:?}, before its {UDP_IDLE:?} timeout"
    );

    // B's next datagram gets the same port.
    assert_eq!(ask(&b, "b2").as_deref(), Some("echo10:b2"));
    assert_eq!(
        udp_flows(&bed),
        [(b_name, port_source, "udp-replied".to_string())]
    );
    eprintln!("A's UDP flow was listed until {gone_after:?} after its last packet");
}

/// A connection to the VIP, made in the client namespace.
fn connect(bed: &Bed) -> Conn {
    bed.topo
        .client
        .run(|| Conn::connect(vip()))
        .expect("netns")
        .expect("connect")
}

/// Who serves `n` new connections.
fn new_connections(bed: &Bed, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|_| {
            let mut c = connect(bed);
            served_by(&c.request("/", false).expect("GET").body)
        })
        .collect()
}

fn wait_state(bed: &Bed, server: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while bed.state_of(server) != state {
        assert!(
            Instant::now() < deadline,
            "{server} is {}, not {state}",
            bed.state_of(server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn established_connection_outlives_its_servers_down(routing: Routing, nat: &str) {
    let bed = Bed::start(routing, "dn", |i| {
        config(
            i,
            nat,
            &Extra {
                defaults: r#"http_check = { method = "GET", uri = "/health_check.html", version = "HTTP/1.0" }"#,
                server: "check = true, inter = 300, fall = 2, rise = 2",
                ..Extra::default()
            },
        )
    });
    for s in ["web10", "web11"] {
        wait_state(&bed, s, "UP");
    }
    let mut conn = connect(&bed);
    let mine = served_by(&conn.request("/", true).expect("first GET").body);
    let other = if mine == "web10" { "web11" } else { "web10" };
    let server = bed
        .web
        .iter()
        .find(|w| w.name == mine)
        .expect("the server that answered");

    server.remove_health_check().expect("remove health check");
    wait_state(&bed, mine, "DOWN");

    // The open connection goes on with its server...
    for i in 0..5 {
        let r = conn
            .request("/", true)
            .unwrap_or_else(|e| panic!("request {i} on the open connection after DOWN: {e:#}"));
        assert_eq!((r.status, served_by(&r.body)), (200, mine), "request {i}");
    }
    let flows = bed.show("flows", &["--server", &format!("hoge/{mine}")]);
    assert_eq!(flows["matching"], 1, "{flows}");
    assert_eq!(flows["flows"][0]["state"], "established", "{flows}");
    // ...while new connections all go to the other one.
    let who = new_connections(&bed, 6);
    assert!(who.iter().all(|w| *w == other), "{who:?}");

    // Back UP, it gets new connections again.
    server.restore_health_check().expect("restore health check");
    wait_state(&bed, mine, "UP");
    let who = new_connections(&bed, 4);
    assert!(who.contains(&mine), "{who:?}");
    assert_eq!(served_by(&conn.request("/", true).expect("GET").body), mine);
}

#[test]
fn an_established_connection_outlives_its_servers_down_full_nat() {
    established_connection_outlives_its_servers_down(Routing::Isolated, "full-nat");
}

#[test]
fn an_established_connection_outlives_its_servers_down_dnat() {
    established_connection_outlives_its_servers_down(Routing::ViaLb, "dnat");
}
