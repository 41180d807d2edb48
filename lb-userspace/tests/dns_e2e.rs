//! Run-time DNS resolution end to end: a real `lb run` whose backend `app` has one server
//! given by host name (`app.lbtest`, `resolvers dns`, `init-addr last,none`), a real name
//! server (dnsmasq, in the LB namespace) answering from a hosts file the test rewrites, and
//! the seed's nginx servers web10 (A) and web11 (B). What a user would see: the name resolved
//! at start-up by the resolvers section, traffic to A; the name moved to B, the change logged
//! in HAProxy's words to a real rsyslogd and new connections reaching B; the name removed
//! (NXDOMAIN), the server in maintenance after `hold nx`; the name back, the server back;
//! and the address DNS gave kept across a reload through the server state file (`last`).
#[path = "support/e2e_fixture.rs"]
mod fixture;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use fixture::{Extra, LB, config, served_by};
use lb_testbed::{
    daemon::Daemon,
    http,
    servers::{Dnsmasq, Rsyslog, WebServer},
    topo::{Routing, Topology, VIP},
};

/// The frontend of backend `app`.
const PORT: u16 = 8080;
/// The frontend of backend `pool`: three servers sharing one name.
const POOL_PORT: u16 = 8081;
/// `timeout resolve` and `timeout retry`.
const RESOLVE: Duration = Duration::from_millis(300);
/// `hold nx`.
const HOLD_NX: Duration = Duration::from_secs(2);

fn sections(ns: SocketAddr) -> String {
    format!(
        r#"
[frontend.dns]
bind = ["{VIP}:{PORT}"]
default_backend = "app"

[backend.app]
load_server_state = "global"
server = [{{ name = "app1", address = "app.lbtest:80", resolvers = "dns", init_addr = "last,none" }}]

[frontend.pool]
bind = ["{VIP}:{POOL_PORT}"]
default_backend = "pool"

# As `server-template pool 3 pool.lbtest:80 resolvers dns init-addr none`.
[backend.pool]
server = [
  {{ name = "pool1", address = "pool.lbtest:80", resolvers = "dns", init_addr = "none" }},
  {{ name = "pool2", address = "pool.lbtest:80", resolvers = "dns", init_addr = "none" }},
  {{ name = "pool3", address = "pool.lbtest:80", resolvers = "dns", init_addr = "none" }},
]

[resolvers.dns]
nameservers = {{ ns1 = "{ns}" }}
timeout = {{ resolve = "{ms}ms", retry = "{ms}ms" }}
hold = {{ nx = "{nx}s" }}
"#,
        ms = RESOLVE.as_millis(),
        nx = HOLD_NX.as_secs()
    )
}

/// Which web server a new connection to the frontend reaches.
fn who(topo: &Topology) -> anyhow::Result<&'static str> {
    who_at(topo, PORT)
}

fn who_at(topo: &Topology, port: u16) -> anyhow::Result<&'static str> {
    http::get(&topo.client, SocketAddr::from((VIP, port)), "/").map(|r| served_by(&r.body))
}

/// Asks until `want` answers (a moved name takes up to a resolution and a log line).
fn until_served_by(topo: &Topology, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match who(topo) {
            Ok(w) if w == want => return,
            Ok(w) => last = w.to_string(),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("new connections never reached {want}; last: {last}");
}

/// One command on the stats socket, HAProxy's way (`echo CMD | socat`).
fn api(socket: &Path, cmd: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("stats socket");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(format!("{cmd}\n").as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `show servers state`'s line for app1: (srv_addr, srv_admin_state, srv_fqdn).
fn app1_state(socket: &Path) -> (String, String, String) {
    server_state(socket, "app", "app1")
}

/// `show servers state BACKEND`'s line for a server: (srv_addr, srv_admin_state, srv_fqdn).
fn server_state(socket: &Path, backend: &str, server: &str) -> (String, String, String) {
    let out = api(socket, &format!("show servers state {backend}"));
    let header: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("# be_id"))
        .map(|l| l.trim_start_matches("# ").split(' ').collect())
        .unwrap_or_default();
    let col = |row: &[&str], name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| row.get(i))
            .map_or_else(String::new, |v| v.to_string())
    };
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.split(' ').nth(3) == Some(server))
        .unwrap_or_else(|| panic!("no {server} in:\n{out}"))
        .split(' ')
        .collect();
    (
        col(&row, "srv_addr"),
        col(&row, "srv_admin_state"),
        col(&row, "srv_fqdn"),
    )
}

#[test]
fn servers_follow_their_names_while_lb_runs() {
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let web = WebServer::nginx_all(&topo).expect("nginx");
    let (a, b) = (topo.backend("web10").addr, topo.backend("web11").addr);
    let syslog = Rsyslog::start(&topo.lb, "rsyslog").expect("rsyslogd");
    let ns_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    let dns = Dnsmasq::start(
        &topo.lb,
        "dnsmasq",
        ns_addr,
        &[("app", a), ("pool", a), ("pool", b)],
    )
    .expect("dnsmasq");
    let instance = format!("dns{}", topo.tag);
    let dir = std::env::temp_dir().join(format!("lbt-{instance}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("stats.sock");
    let state = dir.join("state");
    let global = format!(
        "log = [{{ target = \"127.0.0.1\", facility = \"local6\", level = \"debug\" }}]\n\
         stats_socket = {{ path = \"{}\", level = \"admin\" }}\n\
         server_state_file = \"{}\"",
        socket.display(),
        state.display()
    );
    let sections = sections(ns_addr);
    let cfg = config(
        &instance,
        "full-nat",
        &Extra {
            global: &global,
            sections: &sections,
            ..Extra::default()
        },
    );
    let mut lb = Daemon::start(Path::new(LB), &topo.lb, &instance, &cfg, "toml").expect("start lb");
    lb.wait_ready().expect("lb ready");
    let wait_log = |needle: &str, limit: Duration| {
        syslog
            .wait_for(needle, limit)
            .unwrap_or_else(|e| panic!("{e:#}\nlb said:\n{}", lb.output()));
    };
    // Lines come again (the name comes back): wait for the n-th of exactly this line.
    let wait_nth = |line: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = syslog.lines().iter().filter(|(_, l)| l == line).count();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{line:?} logged {got} times, not {n}:\n{:?}\nlb said:\n{}",
                syslog.lines(),
                lb.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Start-up: no address from the state file or libc (init-addr last,none), so app1 starts
    // in maintenance; the resolvers section's first answer gives it A.
    wait_log(
        &format!("app/app1 changed its IP from (none) to {a} by dns/ns1."),
        Duration::from_secs(5),
    );
    wait_log(
        "Server app/app1 ('app.lbtest') is UP/READY (resolves again).",
        Duration::from_secs(2),
    );
    wait_log(
        "Server app/app1 administratively READY thanks to valid DNS answer.",
        Duration::from_secs(2),
    );
    until_served_by(&topo, "web10");
    assert_eq!(
        app1_state(&socket),
        (a.to_string(), "0".to_string(), "app.lbtest".to_string())
    );

    // Three servers, one name with two addresses: one address each, the third without one
    // (it stays in resolution maintenance, as HAProxy's "No IP for server").
    // (dnsmasq orders the records as it likes.)
    wait_log(
        "pool/pool1 changed its IP from (none) to ",
        Duration::from_secs(5),
    );
    wait_log(
        "pool/pool2 changed its IP from (none) to ",
        Duration::from_secs(2),
    );
    let mut pool: Vec<(String, String)> = ["pool1", "pool2", "pool3"]
        .iter()
        .map(|s| {
            let (addr, admin, _) = server_state(&socket, "pool", s);
            (addr, admin)
        })
        .collect();
    assert_eq!(
        pool.pop(),
        Some(("0.0.0.0".to_string(), "32".to_string())),
        "pool3 has no address"
    );
    pool.sort();
    assert_eq!(
        pool,
        [
            (a.to_string(), "0".to_string()),
            (b.to_string(), "0".to_string())
        ]
    );
    let mut reached: Vec<&str> = (0..4)
        .map(|_| who_at(&topo, POOL_PORT).expect("GET"))
        .collect();
    reached.sort_unstable();
    assert_eq!(
        reached,
        ["web10", "web10", "web11", "web11"],
        "round robin over both"
    );

    // The name moves to B: logged, new connections go to B.
    dns.set_hosts(&[("app", b), ("pool", a), ("pool", b)])
        .expect("move the name");
    wait_log(
        &format!("app/app1 changed its IP from {a} to {b} by dns/ns1."),
        Duration::from_secs(5),
    );
    until_served_by(&topo, "web11");
    let (addr, _, fqdn) = app1_state(&socket);
    assert_eq!(
        (addr.as_str(), fqdn.as_str()),
        (b.to_string().as_str(), "app.lbtest")
    );
    let stat = api(&socket, "show stat");
    assert!(
        stat.lines()
            .any(|l| l.starts_with("app,app1,") && l.contains(&format!("{b}:80"))),
        "show stat has app1 at {b}:80:\n{stat}"
    );

    // The name goes away: NXDOMAIN; app1 stays at B for `hold nx`, then leaves.
    let removed = Instant::now();
    dns.set_hosts(&[("pool", a), ("pool", b)])
        .expect("remove the name");
    let down = "Server app/app1 is going DOWN for maintenance (DNS NX status). 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.";
    wait_log(down, HOLD_NX + Duration::from_secs(5));
    let held = removed.elapsed();
    // The hold counts from the last valid answer, at most one resolution before the removal.
    assert!(
        held + RESOLVE * 2 >= HOLD_NX,
        "maintenance after {held:?}, before hold nx ({HOLD_NX:?})"
    );
    wait_log(
        "backend app has no server available!",
        Duration::from_secs(2),
    );
    let lines = syslog.lines();
    let (pri, _) = lines
        .iter()
        .find(|(_, l)| l == down)
        .expect("the maintenance line");
    assert_eq!(*pri, 176 + 1, "local6.alert, as HAProxy sends it");
    assert!(
        who(&topo).is_err(),
        "a connection went through without a server"
    );
    let (addr, admin, _) = app1_state(&socket);
    // No address, SRV_ADMF_RMAINT (0x20), `MAINT (resolution)` in `show stat`.
    assert_eq!((addr.as_str(), admin.as_str()), ("0.0.0.0", "32"));
    let stat = api(&socket, "show stat");
    assert!(
        stat.lines()
            .any(|l| l.starts_with("app,app1,") && l.contains(",MAINT (resolution),")),
        "{stat}"
    );

    // The name comes back: the server with it.
    dns.set_hosts(&[("app", a), ("pool", a), ("pool", b)])
        .expect("restore the name");
    wait_nth(
        &format!("app/app1 changed its IP from (none) to {a} by dns/ns1."),
        2,
    );
    wait_nth(
        "Server app/app1 ('app.lbtest') is UP/READY (resolves again).",
        2,
    );
    wait_nth(
        "Server app/app1 administratively READY thanks to valid DNS answer.",
        2,
    );
    until_served_by(&topo, "web10");
    assert_eq!(app1_state(&socket).1, "0", "ready again");

    // Moved again, then the name server stops answering and lb reloads: the address DNS
    // gave comes back from the server state file (init-addr last), not from libc or DNS.
    dns.set_hosts(&[("app", b), ("pool", a), ("pool", b)])
        .expect("move the name");
    wait_nth(
        &format!("app/app1 changed its IP from {a} to {b} by dns/ns1."),
        2,
    );
    until_served_by(&topo, "web11");
    drop(dns);
    let saved = std::fs::read_to_string(&state).unwrap_or_default();
    let pid = lb.pid().expect("lb pid");
    // SAFETY: kill() on the PID of the daemon this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lb.output().contains("Configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", lb.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        app1_state(&socket).0,
        b.to_string(),
        "{}\nstate file before the reload:\n{saved}",
        lb.output()
    );
    until_served_by(&topo, "web11");

    // An operator moves it back through the runtime API: the same path, HAProxy's answer.
    assert_eq!(
        api(&socket, &format!("set server app/app1 addr {a} port 80")),
        format!(
            "IP changed from '{b}' to '{a}', no need to change the port by 'stats socket command'\n\n"
        )
    );
    until_served_by(&topo, "web10");
    assert_eq!(app1_state(&socket).0, a.to_string());
    assert_eq!(
        api(&socket, "set server app/app1 addr nowhere"),
        "Invalid addr 'nowhere' by 'stats socket command'\n\n"
    );

    assert!(lb.stop().expect("stop").success(), "{}", lb.output());
    drop(web);
    let _ = std::fs::remove_dir_all(&dir);
}
