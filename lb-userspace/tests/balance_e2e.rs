//! Balancing by load, end to end (real `lb run`, two nginx servers, the seed's topology, the
//! runtime API over the stats socket): `leastconn` sends short connections away from a
//! server holding long ones; `maxconn` turns a connection away when every server is full,
//! counted; a server coming back UP ramps its weight in `show stat` as HAProxy's `slowstart`
//! does; `trace xdp on|off` prints the data plane's decisions and stops.
#[path = "support/e2e_fixture.rs"]
mod fixture;

use std::{
    collections::BTreeMap,
    net::TcpStream,
    path::PathBuf,
    time::{Duration, Instant},
};

use fixture::{Bed, Extra, LB, config, served_by, vip};
use lb::api::client;
use lb_testbed::{http::Conn, topo::Routing};

/// Where the config of instance `i` puts its stats socket.
fn socket_of(instance: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lbt-{instance}.sock"))
}

/// The bed with a stats socket (level admin), `defaults` and per-server keys.
fn bed(prefix: &str, defaults: &str, server: &str) -> Bed {
    Bed::start(Routing::Isolated, prefix, |i| {
        let global = format!(
            "stats_socket = {{ path = \"{}\", level = \"admin\" }}",
            socket_of(i).display()
        );
        config(
            i,
            "full-nat",
            &Extra {
                global: &global,
                defaults,
                server,
                ..Extra::default()
            },
        )
    })
}

fn api(bed: &Bed, cmd: &str) -> String {
    client::request(&socket_of(&bed.lb.instance), cmd).expect("runtime API")
}

/// A kept-alive connection that made one request; which server answered.
fn long_lived(bed: &Bed) -> (Conn, &'static str) {
    let mut c = bed
        .topo
        .client
        .run(|| Conn::connect(vip()))
        .expect("netns")
        .expect("connect");
    let who = served_by(&c.request("/", true).expect("GET").body);
    (c, who)
}

/// A connection for one request, closed by the server.
fn short_lived(bed: &Bed) -> &'static str {
    let mut c = bed
        .topo
        .client
        .run(|| Conn::connect(vip()))
        .expect("netns")
        .expect("connect");
    served_by(&c.request("/", false).expect("GET").body)
}

#[test]
fn leastconn_sends_short_connections_away_from_long_ones() {
    let bed = bed("lc", r#"balance = "leastconn""#, "");
    // Three long-lived connections on web10 (web11 drains meanwhile).
    assert_eq!(api(&bed, "set server hoge/web11 state drain"), "\n");
    let long: Vec<_> = (0..3).map(|_| long_lived(&bed)).collect();
    assert!(long.iter().all(|(_, w)| *w == "web10"));
    assert_eq!(api(&bed, "set server hoge/web11 state ready"), "\n");
    // Every short connection goes to web11, which holds none.
    let short: Vec<_> = (0..10).map(|_| short_lived(&bed)).collect();
    assert!(short.iter().all(|w| *w == "web11"), "{short:?}");
    // The long ones end: the two servers take turns again.
    drop(long);
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<_> = (0..6).map(|_| long_lived(&bed)).collect();
    let on10 = after.iter().filter(|(_, w)| *w == "web10").count();
    assert_eq!(
        on10,
        3,
        "{:?}",
        after.iter().map(|(_, w)| w).collect::<Vec<_>>()
    );
}

/// `lb show stats`' reasons.
fn reasons(bed: &Bed) -> BTreeMap<String, u64> {
    bed.reasons()
}

#[test]
fn maxconn_turns_connections_away_when_every_server_is_full() {
    let bed = bed("mc", "", "maxconn = 1");
    let a = long_lived(&bed);
    let b = long_lived(&bed);
    assert_ne!(a.1, b.1, "one each");
    // A third connection finds no room: its SYNs are dropped (and counted) until it gives up.
    let refused = bed
        .topo
        .client
        .run(|| TcpStream::connect_timeout(&vip(), Duration::from_millis(1500)))
        .expect("netns");
    assert!(refused.is_err(), "connected while every server was full");
    assert!(
        reasons(&bed).get("drop_maxconn") >= Some(&1),
        "{:?}",
        reasons(&bed)
    );
    // One ends: its server takes the next connection.
    let freed = a.1;
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let (_c, who) = long_lived(&bed);
    assert_eq!(who, freed);
    // `show stat` has the limit as `slim`.
    let stat = api(&bed, "show stat");
    let header: Vec<&str> = stat
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let slim = header.iter().position(|c| *c == "slim").expect("slim");
    let web10 = stat
        .lines()
        .find(|l| l.starts_with("hoge,web10,"))
        .expect("web10");
    assert_eq!(web10.split(',').nth(slim), Some("1"));
}

/// `show stat` cells of `server` by column name.
fn stat_of(stat: &str, server: &str) -> BTreeMap<String, String> {
    let header: Vec<&str> = stat
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let row = stat
        .lines()
        .find(|l| l.starts_with(&format!("hoge,{server},")))
        .unwrap_or("");
    header
        .iter()
        .zip(row.split(','))
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

/// `show servers state`'s `srv_op_state` of `server`.
fn op_state(bed: &Bed, server: &str) -> String {
    let s = api(bed, "show servers state hoge");
    s.lines()
        .find(|l| l.split(' ').nth(3) == Some(server))
        .and_then(|l| l.split(' ').nth(5))
        .unwrap_or("?")
        .to_string()
}

#[test]
fn slowstart_ramps_the_weight_in_show_stat() {
    let bed = bed(
        "ss",
        r#"http_check = { method = "GET", uri = "/health_check.html", version = "HTTP/1.0" }"#,
        r#"check = true, inter = 200, fall = 1, rise = 1, weight = 100, slowstart = "4s""#,
    );
    let web10 = bed.web.iter().find(|w| w.name == "web10").expect("web10");
    let wait = |state: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while bed.state_of("web10") != state {
            assert!(Instant::now() < deadline, "web10 never {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("UP");
    let start = stat_of(&api(&bed, "show stat"), "web10");
    assert_eq!(
        (start["weight"].as_str(), start["throttle"].as_str()),
        ("100", ""),
        "no ramp at start"
    );
    web10.remove_health_check().expect("remove");
    wait("DOWN");
    web10.restore_health_check().expect("restore");
    // Every 200 ms until the ramp is over: (weight, throttle, srv_op_state).
    let mut seen: Vec<(u32, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = stat_of(&api(&bed, "show stat"), "web10");
        let w: u32 = row["weight"].parse().unwrap_or(0);
        if row["status"].starts_with("UP") {
            seen.push((w, row["throttle"].clone(), op_state(&bed, "web10")));
            if w == 100 && row["throttle"].is_empty() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no end to the ramp: {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // HAProxy's steps for weight 100 over 4 s: 7, 32, 57, 82, then 100.
    let weights: Vec<u32> = seen.iter().map(|s| s.0).collect();
    assert!(weights.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");
    assert_eq!(weights.first(), Some(&7), "{seen:?}");
    let mut steps = weights.clone();
    steps.dedup();
    assert!(
        steps.iter().all(|w| [7, 32, 57, 82, 100].contains(w)),
        "{seen:?}"
    );
    assert!(steps.len() >= 4, "{seen:?}");
    // Ramping, the server has a throttle and is STARTING (1); done, RUNNING (2) without.
    // (`show servers state` is asked just after `show stat`: the last ramping sample may
    // already see the end.)
    let ramping: Vec<_> = seen.iter().filter(|s| s.0 < 100).collect();
    assert!(ramping.iter().all(|s| !s.1.is_empty()), "{seen:?}");
    assert!(
        ramping.iter().filter(|s| s.2 == "1").count() + 1 >= ramping.len(),
        "{seen:?}"
    );
    assert_eq!(op_state(&bed, "web10"), "2");
}

/// The daemon's `[TRACE]` lines so far.
fn traces(bed: &Bed) -> Vec<String> {
    bed.lb
        .output()
        .lines()
        .filter(|l| l.starts_with("[TRACE] "))
        .map(str::to_string)
        .collect()
}

#[test]
fn tracing_goes_on_and_off_through_the_socket() {
    let mut bed = bed("tr", "", "");
    let socket = socket_of(&bed.lb.instance);
    // On, through `lb trace` (which speaks to the socket), for the VIP's port 80.
    let on = bed
        .topo
        .lb
        .exec(
            LB,
            &[
                "trace",
                "on",
                "--vip",
                "10.200.0.1:80",
                "--socket",
                &socket.display().to_string(),
            ],
        )
        .expect("lb trace on");
    assert_eq!(on.trim(), "");
    bed.lb
        .wait_for(
            "[NOTICE] lb trace: on for 10.200.0.1:80",
            Duration::from_secs(5),
        )
        .expect("notice");
    let who = short_lived(&bed);
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = format!(" hoge/{who}");
    // (The first packets towards a server may go to the kernel while it resolves the
    // neighbour: "pass pass_no_neigh new-flow ...".) The daemon prints the trace lines as it
    // reads them: wait for the connection's other packets too before judging.
    let seen = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains(" new-flow tcp 10.200.0.2:") && l.ends_with(&want))
            && lines.iter().any(|l| l.contains(" forward tcp 10.200.0.2:"))
            && lines.iter().any(|l| l.contains(" reply tcp "))
    };
    while !seen(&traces(&bed)) {
        assert!(
            Instant::now() < deadline,
            "no new-flow line: {:?}",
            traces(&bed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = traces(&bed);
    // Both ways of the connection, rewritten: forward packets to the server, replies back
    // from the VIP.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" forward tcp 10.200.0.2:") && l.contains(" > 10.200.0.1:80 => ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" reply tcp ") && l.contains("=> 10.200.0.1:80 > 10.200.0.2:")),
        "{lines:?}"
    );
    // Off, through the runtime API: nothing more is printed.
    assert_eq!(
        client::request(&socket, "trace xdp off").expect("API"),
        "\n"
    );
    bed.lb
        .wait_for("[NOTICE] lb trace: off", Duration::from_secs(5))
        .expect("notice");
    std::thread::sleep(Duration::from_millis(200));
    let before = traces(&bed).len();
    for _ in 0..3 {
        short_lived(&bed);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(traces(&bed).len(), before, "traced after off");
    // Bad words get the usage.
    assert_eq!(
        client::request(&socket, "trace xdp maybe").expect("API"),
        "'trace xdp' expects 'on [vip <addr>[:<port>]]' or 'off'.\n\n"
    );
}

#[test]
fn observe_layer4_marks_a_refusing_server_down_before_its_checks() {
    // Checks every 20 s: only what traffic shows can take web11 down within the test.
    let bed = Bed::start(Routing::Isolated, "ob", |i| {
        config(
            i,
            "full-nat",
            &Extra {
                global: r#"log = [{ target = "stderr", facility = "local0", level = "info" }]"#,
                defaults: "log_health_checks = true",
                server: r#"check = true, inter = 20000, fall = 3, rise = 2, observe = "layer4", error_limit = 2, on_error = "mark-down""#,
                ..Extra::default()
            },
        )
    });
    let mut web = bed.web;
    let web11 = web.iter_mut().find(|w| w.name == "web11").expect("web11");
    web11.stop();
    // Round robin: every other connection reaches web11, which refuses it.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused < 2 {
        assert!(Instant::now() < deadline, "web11 never refused twice");
        let r = bed
            .topo
            .client
            .run(|| TcpStream::connect_timeout(&vip(), Duration::from_secs(2)))
            .expect("netns");
        if r.is_err() {
            refused += 1;
        }
    }
    let line = "Health check for server hoge/web11 failed, reason: Health analyze, info: \"Detected 2 consecutive errors, last one was: L4 unsuccessful connection\", status: 0/2 DOWN.";
    let mut lb = bed.lb;
    lb.wait_for(line, Duration::from_secs(3))
        .expect("observe's verdict");
    lb.wait_for("Server hoge/web11 is DOWN.", Duration::from_secs(1))
        .expect("DOWN");
}

#[test]
fn a_server_coming_up_ends_the_backups_flows_with_on_marked_up() {
    let sections = format!(
        r#"
[frontend.alt]
bind = ["{vip}:8080"]
default_backend = "bk"

[backend.bk]
http_check = {{ method = "GET", uri = "/health_check.html", version = "HTTP/1.0" }}
server = [
  {{ name = "web10", address = "10.200.10.10:80", check = true, inter = 200, fall = 1, rise = 1, on_marked_up = "shutdown-backup-sessions" }},
  {{ name = "web11", address = "10.200.11.11:80", backup = true }},
]
"#,
        vip = lb_testbed::topo::VIP
    );
    let bed = Bed::start(Routing::Isolated, "mu", |i| {
        config(
            i,
            "full-nat",
            &Extra {
                sections: &sections,
                ..Extra::default()
            },
        )
    });
    let alt = std::net::SocketAddr::from((lb_testbed::topo::VIP, 8080));
    let state = || {
        bed.show("backends", &[])
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["backend"] == "bk" && r["server"] == "web10")
            })
            .and_then(|r| r["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let wait = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while state() != want {
            assert!(Instant::now() < deadline, "bk/web10 never {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("UP");
    let web10 = bed.web.iter().find(|w| w.name == "web10").expect("web10");
    web10.remove_health_check().expect("remove");
    wait("DOWN");
    // Only the backup is left: a kept-alive connection goes there.
    let mut conn = bed
        .topo
        .client
        .run(move || Conn::connect(alt))
        .expect("netns")
        .expect("connect");
    assert_eq!(
        served_by(&conn.request("/", true).expect("GET").body),
        "web11"
    );
    web10.restore_health_check().expect("restore");
    wait("UP");
    std::thread::sleep(Duration::from_millis(200));
    // Its flow was ended: the next request on it gets nothing from web11 (without
    // `on_marked_up` it gets web11's page: checked).
    let after = conn.request("/", true);
    assert!(
        after
            .as_ref()
            .map_or(true, |r| served_by(&r.body) != "web11"),
        "the backup's connection went on: {after:?}"
    );
}
