//! Operating lb on a host it does not own: traffic that is not lb's is left alone, the data
//! plane outlives the daemon (SIGKILL, restart, upgrade), one daemon per instance, reload with
//! the seed's own haproxy.cfg, the server state file, systemd's notify protocol. Real `lb run`
//! in the seed topology with nginx servers; a probe counts what a user would see fail.
use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lb::{
    api::client,
    dataplane::{VARIANT_OBJECT, links, pin_dir},
};
use lb_testbed::{
    config::SeedConfig,
    daemon::Daemon,
    http,
    probe::{Probe, Seen},
    servers::WebServer,
    topo::{CLIENT, Routing, Topology, VIP},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn config(instance: &str, nat: &str, bind: &str, extra_global: &str) -> String {
    SeedConfig::new(instance)
        .nat(nat)
        .bind(bind)
        .global(&format!(
            "stats_socket = {{ path = \"/tmp/lbt-{instance}.sock\", level = \"admin\" }}"
        ))
        .global(extra_global)
        .to_string()
}

struct Setup {
    topo: Topology,
    _web: Vec<WebServer>,
    path: PathBuf,
    instance: String,
}

impl Setup {
    fn new(routing: Routing, nat: &str, bind: &str, extra_global: &str) -> Setup {
        let topo = Topology::seed(routing).expect("topology");
        let web = WebServer::nginx_all(&topo).expect("nginx");
        let instance = format!("op{}", topo.tag);
        let path = std::env::temp_dir().join(format!("lbt-{instance}.toml"));
        std::fs::write(&path, config(&instance, nat, bind, extra_global)).expect("config");
        Setup {
            topo,
            _web: web,
            path,
            instance,
        }
    }

    fn start(&self, extra: &[&str]) -> Daemon {
        let mut d = Daemon::start_file(
            Path::new(LB),
            &self.topo.lb,
            &self.instance,
            &self.path,
            extra,
        )
        .expect("start lb");
        d.wait_ready().expect("lb ready");
        d
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/lbt-{}.sock", self.instance))
    }

    fn probe(&self) -> Probe {
        Probe::start(&self.topo.client, vip()).expect("probe")
    }

    /// The program on the client-side interface's pinned link.
    fn program_id(&self) -> u32 {
        // `ip -o link show dev X`: "N: X@...: <...>".
        let line = self
            .topo
            .lb
            .exec(
                "ip",
                &["-o", "link", "show", "dev", &self.topo.lb_client_if],
            )
            .expect("ip link");
        let ifindex: u32 = line
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .expect("ifindex");
        let pin = links::pin_path(&pin_dir(&self.instance), ifindex);
        let link = aya::programs::links::PinnedLink::from_pin(&pin).expect("pinned link");
        let fd: aya::programs::links::FdLink = link.into();
        fd.info().expect("link info").program_id()
    }
}

impl Setup {
    /// The tag of the IPv4 packet path (`lb_xdp4`, which the attached `lb_xdp` tail-calls)
    /// that works on this instance's pinned flow table: the build of the path in effect.
    fn ipv4_path_tag(&self) -> u64 {
        let pin =
            lb::dataplane::maps::pin_path(&pin_dir(&self.instance), lb_common::names::LB_FLOWS)
                .expect("pin path");
        let flows = aya::maps::MapInfo::from_pin(&pin).expect("flow table").id();
        let tags: Vec<u64> = aya::programs::loaded_programs()
            .flatten()
            .filter(|p| p.name_as_str() == Some(lb_common::PROG_LB4))
            .filter(|p| {
                p.map_ids()
                    .ok()
                    .flatten()
                    .is_some_and(|ids| ids.contains(&flows))
            })
            .map(|p| p.tag())
            .collect();
        assert_eq!(tags.len(), 1, "one IPv4 path on this instance's maps");
        tags[0]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir_all(pin_dir(&self.instance));
    }
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

#[track_caller]
fn assert_nothing_failed(what: &str, seen: &Seen) {
    assert!(
        seen.keep_alive.ok >= 10 && seen.new_conns_ok() >= 5,
        "{what}: the probe hardly ran: {seen:?}"
    );
    assert!(
        seen.keep_alive.errors.is_empty() && seen.new_conns_failed().is_empty(),
        "{what}: requests failed: kept-alive {:?}, new connections {:?}",
        seen.keep_alive.errors,
        seen.new_conns_failed()
    );
}

#[test]
fn sigkill_and_restart_break_no_connection() {
    let s = Setup::new(Routing::Isolated, "full-nat", "*:80", "");
    let mut lb = s.start(&[]);
    lb.keep_pins = true;
    let probe = s.probe();
    std::thread::sleep(Duration::from_secs(1));
    let before = s.program_id();
    lb.kill().expect("SIGKILL");
    // Nobody runs lb for a second: the data plane goes on with the last tables.
    std::thread::sleep(Duration::from_secs(1));
    let mut again = s.start(&[]);
    assert!(
        again.output().contains("took over the data plane"),
        "{}",
        again.output()
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen = probe.finish().expect("probe");
    assert_nothing_failed("SIGKILL + restart", &seen);
    assert_ne!(
        s.program_id(),
        before,
        "the new daemon's program is the one attached"
    );
    assert!(again.stop().expect("stop").success());
}

#[test]
fn an_upgrade_swaps_the_program_under_traffic() {
    let s = Setup::new(Routing::Isolated, "full-nat", "*:80", "");
    let mut lb = s.start(&[]);
    lb.keep_pins = true;
    let probe = s.probe();
    std::thread::sleep(Duration::from_secs(1));
    let before = s.program_id();
    let path_before = s.ipv4_path_tag();
    // `systemctl restart` after installing a new build: SIGTERM hands over, the new binary
    // (here: another build of the XDP object) takes over.
    assert!(
        lb.hand_over().expect("SIGTERM").success(),
        "{}",
        lb.output()
    );
    assert!(lb.output().contains("stays attached"), "{}", lb.output());
    let mut next = s.start(&["--xdp-object", VARIANT_OBJECT]);
    std::thread::sleep(Duration::from_secs(2));
    let seen = probe.finish().expect("probe");
    assert_nothing_failed("upgrade", &seen);
    let after = s.program_id();
    assert_ne!(after, before, "the program was replaced");
    // The variant's difference (full-NAT port probes) is in the IPv4 path the entry
    // (`lb_xdp`, the flow cache) tail-calls.
    assert_ne!(
        s.ipv4_path_tag(),
        path_before,
        "a different build of the IPv4 path"
    );
    assert!(next.stop().expect("stop").success());
}

#[test]
fn sigterm_without_a_successor_stops_new_flows_after_the_grace() {
    let s = Setup::new(Routing::Isolated, "full-nat", "*:80", "");
    let mut lb = s.start(&[]);
    let mut conn = s
        .topo
        .client
        .run(move || http::Conn::connect(vip()))
        .expect("thread")
        .expect("connect");
    assert!(lb.hand_over().expect("SIGTERM").success());
    // Within the grace, new connections are still balanced...
    assert_eq!(
        http::get(&s.topo.client, vip(), "/").expect("GET").status,
        200
    );
    std::thread::sleep(lb::daemon::HANDOVER_GRACE + Duration::from_secs(1));
    // ...after it, the host answers them (nothing listens on the VIP): refused.
    assert!(
        http::get(&s.topo.client, vip(), "/").is_err(),
        "a new connection was balanced after the grace"
    );
    // The established one goes on.
    assert_eq!(conn.request("/", true).expect("established").status, 200);
    // `lb stop` takes the data plane down.
    let out = std::process::Command::new(LB)
        .args(["stop", "--instance", &s.instance])
        .output()
        .expect("lb stop");
    assert!(out.status.success(), "{out:?}");
    let links = s.topo.lb.exec("ip", &["link", "show"]).expect("ip link");
    assert!(!links.contains("xdp"), "still attached:\n{links}");
}

/// Everything an instance exposes, to compare before and after a refused second daemon:
/// per pin, bpftool's description and its content, hashed. Conntrack tables and counters
/// are left out of the content: traffic (the host's own, too) moves them.
fn snapshot(s: &Setup) -> Vec<(String, u64)> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let digest = |bytes: &[u8]| {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    };
    let mut out = Vec::new();
    let dir = pin_dir(&s.instance);
    let mut pins: Vec<_> = std::fs::read_dir(&dir)
        .expect("pins")
        .flatten()
        .map(|e| e.path())
        .collect();
    pins.sort();
    for p in pins {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if name.starts_with("xdp_") {
            "link"
        } else {
            "map"
        };
        let show = std::process::Command::new("bpftool")
            .args(["-j", kind, "show", "pinned"])
            .arg(&p)
            .output()
            .expect("bpftool show");
        out.push((format!("{name} (show)"), digest(&show.stdout)));
        let moves_with_traffic = ["LB_FLOWS", "LB_HALFOPEN", "_STATS"]
            .iter()
            .any(|t| name.contains(t));
        if kind == "map" && !moves_with_traffic {
            let dump = std::process::Command::new("bpftool")
                .args(["-j", "map", "dump", "pinned"])
                .arg(&p)
                .output()
                .expect("bpftool dump");
            out.push((format!("{name} (content)"), digest(&dump.stdout)));
        }
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(s.socket()).expect("socket");
    out.push(("socket".into(), meta.ino() ^ meta.mtime_nsec() as u64));
    out
}

#[test]
fn a_second_daemon_on_the_same_instance_changes_nothing() {
    let s = Setup::new(Routing::Isolated, "full-nat", "10.200.0.1:80", "");
    let mut lb = s.start(&[]);
    let before = snapshot(&s);
    let out = s
        .topo
        .lb
        .command(LB)
        .expect("command")
        .args(["run", "-c"])
        .arg(&s.path)
        .output()
        .expect("second lb run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon started:\n{err}");
    assert!(err.contains("is already running"), "{err}");
    let after = snapshot(&s);
    let changed: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| &b.0)
        .collect();
    assert!(
        changed.is_empty() && before.len() == after.len(),
        "the second daemon changed {changed:?}"
    );
    assert_eq!(
        http::get(&s.topo.client, vip(), "/").expect("GET").status,
        200
    );
    assert!(lb.stop().expect("stop").success());
}

/// A backend fetches a page from an origin beyond the lb host: the request is routed through
/// it, on port 80 like the service, and must reach the origin, not the backends.
fn transit(s: &Setup) -> Vec<String> {
    let web10 = &s.topo.backend("web10").ns;
    (0..10)
        .map(|_| {
            http::get(web10, SocketAddr::from((CLIENT, 80)), "/")
                .map(|r| r.body)
                .unwrap_or_else(|e| format!("failed: {e:#}"))
        })
        .collect()
}

#[test]
fn routed_traffic_is_left_alone_in_both_nat_modes() {
    for (nat, bind) in [
        ("full-nat", "*:80"),
        ("dnat", "*:80"),
        ("full-nat", "10.200.0.1:80"),
        ("dnat", "10.200.0.1:80"),
    ] {
        let s = Setup::new(Routing::ViaLb, nat, bind, "");
        let _origin = WebServer::nginx(&s.topo.client, "origin", CLIENT, 80).expect("origin");
        let mut lb = s.start(&[]);
        let got = transit(&s);
        assert!(
            got.iter().all(|b| b.contains("backend origin")),
            "{nat} {bind}: routed requests did not reach their origin: {got:?}"
        );
        // The service itself still works.
        let body = http::get(&s.topo.client, vip(), "/").expect("GET").body;
        assert!(body.contains("backend web1"), "{body}");
        assert!(lb.stop().expect("stop").success());
    }
}

#[test]
fn wildcard_binds_follow_addresses_as_they_come_and_go() {
    let s = Setup::new(Routing::Isolated, "full-nat", "*:80", "");
    let mut lb = s.start(&[]);
    let extra = Ipv4Addr::new(10, 200, 0, 100);
    s.topo
        .lb
        .ip(&[
            "addr",
            "add",
            &format!("{extra}/24"),
            "dev",
            &s.topo.lb_client_if,
        ])
        .expect("add address");
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        match http::get(&s.topo.client, SocketAddr::from((extra, 80)), "/") {
            Ok(r) if r.body.contains("backend web1") => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(
        served,
        "a new local address was not served:\n{}",
        lb.output()
    );
    s.topo
        .lb
        .ip(&[
            "addr",
            "del",
            &format!("{extra}/24"),
            "dev",
            &s.topo.lb_client_if,
        ])
        .expect("remove address");
    let deadline = Instant::now() + Duration::from_secs(5);
    let gone = loop {
        let maps = lb::dataplane::Maps::from_pins(&pin_dir(&s.instance)).expect("pins");
        let has = maps
            .services
            .keys()
            .flatten()
            .any(|k| k.addr == u32::from_ne_bytes(extra.octets()));
        if !has {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(gone, "a removed address still has its service");
    assert!(lb.stop().expect("stop").success());
}

#[test]
fn the_server_state_file_keeps_operator_changes_across_restarts() {
    let state = std::env::temp_dir().join(format!("lbt-state-{}", lb_testbed::unique_tag()));
    let with_file = format!(
        "server_state_file = \"{}\"\n\n[defaults]\nload_server_state = \"global\"",
        state.display()
    );
    let s = Setup::new(Routing::Isolated, "full-nat", "10.200.0.1:80", &with_file);
    let mut lb = s.start(&[]);
    client::change(&s.socket(), "set server hoge/web11 state drain").expect("drain");
    client::change(&s.socket(), "set server hoge/web10 weight 5").expect("weight");
    let saved = std::fs::read_to_string(&state).expect("state file written");
    assert!(saved.starts_with("1\n# be_id"), "{saved}");
    assert!(lb.stop().expect("stop").success());
    let mut again = s.start(&[]);
    let st = client::request(&s.socket(), "show servers state").expect("show");
    let row = |name: &str| {
        st.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(name))
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("web11")[6], "8", "web11 drained after restart:\n{st}");
    assert_eq!(row("web10")[7], "5", "web10's weight after restart:\n{st}");
    assert!(again.stop().expect("stop").success());
    let _ = std::fs::remove_file(&state);

    // Without the keywords, a restart resets to the configuration, as HAProxy does.
    let plain = Setup::new(Routing::Isolated, "full-nat", "10.200.0.1:80", "");
    let mut lb = plain.start(&[]);
    client::change(&plain.socket(), "set server hoge/web11 state drain").expect("drain");
    assert!(lb.stop().expect("stop").success());
    let mut again = plain.start(&[]);
    let st = client::request(&plain.socket(), "show servers state").expect("show");
    assert!(
        st.lines()
            .filter(|l| !l.starts_with('#') && l.len() > 2)
            .all(|l| l.split_whitespace().nth(6) == Some("0")),
        "state survived without a state file:\n{st}"
    );
    assert!(again.stop().expect("stop").success());
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let s = Setup::new(Routing::Isolated, "full-nat", "10.200.0.1:80", "");
    let sock_path = std::env::temp_dir().join(format!("lbt-notify-{}", s.instance));
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let path = sock_path.display().to_string();
    let mut lb = Daemon::start_file_env(
        Path::new(LB),
        &s.topo.lb,
        &s.instance,
        &s.path,
        &[],
        &[("NOTIFY_SOCKET", path.as_str())],
    )
    .expect("start lb");
    let next = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", lb.pid().unwrap_or(0))),
        "{ready}"
    );
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(lb.pid().unwrap_or(0) as libc::pid_t, libc::SIGHUP) };
    assert_eq!(next(), "RELOADING=1");
    assert!(next().starts_with("READY=1"));
    assert!(lb.hand_over().expect("SIGTERM").success());
    assert_eq!(next(), "STOPPING=1");
    let _ = std::fs::remove_file(&sock_path);
}

#[test]
fn hup_with_the_seeds_haproxy_cfg_applies_a_new_weight_and_server() {
    // The seed's file (addresses in the test namespaces) as written: chroot
    // /var/lib/haproxy, user haproxy, daemon (kept in the foreground); only its pidfile and
    // socket move so the test owns them.
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let _web = WebServer::nginx_all(&topo).expect("nginx");
    let tag = lb_testbed::unique_tag();
    // haproxy.cfg has no word for lb's instance: the default one.
    let instance = "lb".to_string();
    let dir = std::env::temp_dir().join(format!("lbt-hup-{tag}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("haproxy.cfg");
    let seed = std::fs::read_to_string("../configs/haproxy-testbed.cfg").expect("seed cfg");
    let sock = format!("/var/lib/haproxy/lbt-{tag}.sock");
    let text = seed
        .replace("/var/run/haproxy.pid", &format!("/tmp/lbt-{tag}.pid"))
        .replace(
            "stats socket /var/lib/haproxy/stats",
            &format!("stats socket {sock} level admin"),
        );
    std::fs::write(&path, &text).expect("config");
    let mut lb = Daemon::start_file(Path::new(LB), &topo.lb, &instance, &path, &["--foreground"])
        .expect("lb");
    lb.wait_ready().expect("ready");
    let changed = text
        .replace(
            "server      web10 10.200.10.10:80 check inter 3000 fall 2 rise 2",
            "server      web10 10.200.10.10:80 check inter 3000 fall 2 rise 2 weight 3",
        )
        .replace(
            "server      web11 10.200.11.11:80 check inter 3000 fall 2 rise 2",
            "server      web11 10.200.11.11:80 check inter 3000 fall 2 rise 2\n    server      web12 10.200.11.11:80 check inter 3000 fall 2 rise 2",
        );
    std::fs::write(&path, changed).expect("new config");
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(lb.pid().unwrap_or(0) as libc::pid_t, libc::SIGHUP) };
    lb.wait_for("Configuration reloaded", Duration::from_secs(10))
        .expect("reloaded");
    let st = client::request(Path::new(&sock), "show servers state").expect("show");
    let weight = |name: &str| {
        st.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(name))
            .and_then(|l| l.split_whitespace().nth(7).map(String::from))
    };
    assert_eq!(weight("web10").as_deref(), Some("3"), "{st}");
    assert_eq!(weight("web12").as_deref(), Some("1"), "{st}");
    assert!(lb.stop().expect("stop").success(), "{}", lb.output());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn the_shipped_systemd_unit_verifies() {
    // systemd's own checker, on dist/lb.service pointed at this build's binary.
    let unit = std::fs::read_to_string("../dist/lb.service").expect("dist/lb.service");
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let dir = std::env::temp_dir().join(format!("lbt-unit-{}", lb_testbed::unique_tag()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("lb.service");
    std::fs::write(&path, unit.replace("/usr/local/sbin/lb", LB)).expect("unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
