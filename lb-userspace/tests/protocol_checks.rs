//! `option redis-check`, `option mysql-check` and `tcp-check` rules against real servers from
//! Debian's packages (redis-server, mariadb-server) in the seed topology's namespaces, lb and
//! HAProxy 2.6 side by side on one haproxy.cfg: every line about every server must be the
//! same, in the same order, durations aside. MariaDB starts after the checkers (its servers go
//! from DOWN to UP), redis starts asking for a password halfway (its servers go DOWN); a
//! password-protected
//! redis, a replica check on a master, a user MariaDB does not know, redis spoken to MariaDB
//! and a refused connect rule fail in their own ways.
#[path = "support/side_by_side.rs"]
mod side_by_side;

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use lb_testbed::{
    netns::Netns,
    topo::{Routing, Topology},
};
use side_by_side::{Haproxy, LogSink, per_server, start_lb, wait_both};

/// A server process in a namespace, killed by PID when dropped.
struct Proc(Child);

impl Proc {
    fn start(ns: &Netns, program: &str, args: &[&str]) -> Proc {
        let child = ns
            .command(program)
            .expect("ns")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Proc(child)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_port(ns: &Netns, addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().expect("addr");
    ns.run(move || lb_testbed::servers::wait_listening(addr, Duration::from_secs(30)))
        .expect("ns")
        .unwrap_or_else(|e| panic!("{addr} not listening: {e:#}"));
}

/// MariaDB on a fresh data directory, with a user `haproxy` who may log in without a
/// password from anywhere (what `mysql-check user haproxy` needs).
struct Mariadb {
    proc: Proc,
    dir: PathBuf,
}

impl Mariadb {
    fn install(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lbt-mariadb-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mariadb dir");
        let out = std::process::Command::new("mariadb-install-db")
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    }

    fn start(ns: &Netns, dir: &Path, bind: &str) -> Mariadb {
        let arg = |k: &str, v: &Path| format!("--{k}={}", v.display());
        // Run before the first connection is accepted: no check sees MariaDB without it.
        let init = dir.join("init.sql");
        std::fs::write(&init, "CREATE USER IF NOT EXISTS 'haproxy'@'%';\n").expect("init.sql");
        let proc = Proc::start(
            ns,
            "mariadbd",
            &[
                // First or not at all.
                "--no-defaults",
                "--user=root",
                &arg("datadir", &dir.join("data")),
                &arg("socket", &dir.join("sock")),
                &arg("pid-file", &dir.join("pid")),
                &arg("log-error", &dir.join("error.log")),
                &arg("init-file", &init),
                &format!("--bind-address={bind}"),
                "--port=3306",
            ],
        );
        wait_port(ns, &format!("{bind}:3306"));
        Mariadb {
            proc,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(log_port: u16) -> String {
    format!(
        "global
    log 127.0.0.1:{log_port} local6

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 2s
    timeout client 50s
    timeout server 50s
    timeout check 1s
    default-server inter 300 fall 2 rise 3

frontend main
    bind 10.200.0.1:6379
    default_backend redis_ok

backend redis_ok
    option redis-check
    server r1 10.200.10.10:6379 check

backend redis_auth
    option redis-check
    server r2 10.200.10.10:6380 check

backend redis_master
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
    server r3 10.200.10.10:6379 check

backend redis_replica
    option tcp-check
    tcp-check comment is\\ it\\ a\\ replica
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:slave
    server r4 10.200.10.10:6379 check

backend refused
    option tcp-check
    tcp-check connect port 6390
    tcp-check send PING\\r\\n
    server r5 10.200.10.10:6379 check

backend mysql_ok
    option mysql-check user haproxy
    server m1 10.200.11.11:3306 check

backend mysql_unknown_user
    option mysql-check user nobody
    server m2 10.200.11.11:3306 check

backend mysql_greeting
    option mysql-check
    server m3 10.200.11.11:3306 check

backend redis_on_mysql
    option redis-check
    server m4 10.200.11.11:3306 check
"
    )
}

const SERVERS: &[&str] = &[
    "redis_ok/r1",
    "redis_auth/r2",
    "redis_master/r3",
    "redis_replica/r4",
    "refused/r5",
    "mysql_ok/m1",
    "mysql_unknown_user/m2",
    "mysql_greeting/m3",
    "redis_on_mysql/m4",
];

#[test]
fn redis_and_mysql_checks_log_as_haproxy_does() {
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let (redis_ns, db_ns) = (&topo.backend("web10").ns, &topo.backend("web11").ns);
    let _redis = Proc::start(
        redis_ns,
        "redis-server",
        &[
            "--bind",
            "10.200.10.10",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            // Checks come from another address than the loopback.
            "--protected-mode",
            "no",
        ],
    );
    let _redis_auth = Proc::start(
        redis_ns,
        "redis-server",
        &[
            "--bind",
            "10.200.10.10",
            "--port",
            "6380",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "secret",
            "--protected-mode",
            "no",
        ],
    );
    wait_port(redis_ns, "10.200.10.10:6379");
    wait_port(redis_ns, "10.200.10.10:6380");
    let db_dir = Mariadb::install(&topo.tag);

    let lb_log = LogSink::start(&topo.lb, 5514);
    let haproxy_log = LogSink::start(&topo.lb, 5515);
    let _haproxy = Haproxy::start(&topo.lb, "protocol", &config(5515));
    let instance = format!("proto{}", topo.tag);
    let _lb = start_lb(&topo, &instance, &config(5514), 5514);

    // MariaDB comes up after the checkers: its servers go from DOWN to UP.
    std::thread::sleep(Duration::from_secs(2));
    let db = Mariadb::start(db_ns, &db_dir, "10.200.11.11");
    let up = |l: &[String]| l.iter().any(|x| x.starts_with("Server mysql_ok/m1 is UP"));
    wait_both(&lb_log, &haproxy_log, Duration::from_secs(20), up);
    // Then redis asks for a password: every check from then on gets `-NOAUTH` instead of
    // `+PONG` (a change redis makes between two commands, where stopping it would break
    // checks of both balancers halfway, at different steps).
    let out = redis_ns
        .command("redis-cli")
        .expect("ns")
        .args([
            "-h",
            "10.200.10.10",
            "-p",
            "6379",
            "CONFIG",
            "SET",
            "requirepass",
            "secret",
        ])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = |l: &[String]| {
        l.iter()
            .any(|x| x.starts_with("Server redis_ok/r1 is DOWN"))
    };
    wait_both(&lb_log, &haproxy_log, Duration::from_secs(10), down);
    // A few more rounds for the last lines to land.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = per_server(&lb_log.lines(), SERVERS, |_| true);
    let want = per_server(&haproxy_log.lines(), SERVERS, |_| true);
    drop(db);
    for (s, lines) in &want {
        for l in lines {
            println!("haproxy {s}: {l}");
        }
    }
    for s in SERVERS {
        assert!(!want[*s].is_empty(), "HAProxy logged nothing about {s}");
    }
    assert!(
        want["mysql_ok/m1"].iter().any(|l| l.contains("MariaDB")),
        "HAProxy's run is incomplete: {want:#?}"
    );
    side_by_side::assert_same("protocol checks", &got, &want);
}

/// An HTTP server in `ns` on `port` answering each connection with the next status of
/// `codes` (the last one once they run out). Counts the connections served.
struct Scripted {
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Scripted {
    fn start(ns: &Netns, addr: &str, codes: &'static [u16]) -> Scripted {
        use std::{
            io::{Read, Write},
            sync::{
                Arc,
                atomic::{AtomicBool, AtomicUsize, Ordering},
            },
        };
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (served.clone(), stop.clone());
        let addr: std::net::SocketAddr = addr.parse().expect("addr");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        ns.spawn(move || -> anyhow::Result<()> {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let n = count.fetch_add(1, Ordering::Relaxed);
                let code = codes[n.min(codes.len() - 1)];
                let reason = match code {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Service Unavailable",
                };
                let _ = write!(
                    s,
                    "HTTP/1.0 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
            Ok(())
        })
        .expect("scripted server");
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("scripted server listening");
        Scripted { served, stop }
    }

    fn served(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `http-check disable-on-404`: a 404 puts the UP server in NOLB ("is stopping"), a 200
/// takes it out, a failure counts down without leaving NOLB, a 404 while DOWN is a failure.
#[test]
fn disable_on_404_logs_as_haproxy_does() {
    const CODES: &[u16] = &[
        200, 200, 404, 404, 404, 200, 404, 503, 200, 404, 503, 503, 404, 404, 200, 200, 200,
    ];
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let ns = &topo.backend("web10").ns;
    let config = |log_port: u16, port: u16| {
        format!(
            "global
    log 127.0.0.1:{log_port} local6

defaults
    mode http
    log global
    option log-health-checks
    timeout connect 2s
    timeout client 50s
    timeout server 50s

frontend main
    bind 10.200.0.1:80
    default_backend app

backend app
    option httpchk GET /
    http-check disable-on-404
    server s1 10.200.10.10:{port} check inter 200 fall 2 rise 2
"
        )
    };
    let (for_lb, for_haproxy) = (
        Scripted::start(ns, "10.200.10.10:9080", CODES),
        Scripted::start(ns, "10.200.10.10:9081", CODES),
    );
    let lb_log = LogSink::start(&topo.lb, 5514);
    let haproxy_log = LogSink::start(&topo.lb, 5515);
    let _haproxy = Haproxy::start(&topo.lb, "nolb", &config(5515, 9081));
    let instance = format!("nolb{}", topo.tag);
    let _lb = start_lb(&topo, &instance, &config(5514, 9080), 5514);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && (for_lb.served() <= CODES.len() || for_haproxy.served() <= CODES.len())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let servers = ["app/s1"];
    let lb_lines: Vec<String> = lb_log
        .lines()
        .iter()
        .map(|l| side_by_side::without_seed_info(l))
        .collect();
    let got = per_server(&lb_lines, &servers, |_| true);
    let want = per_server(&haproxy_log.lines(), &servers, |_| true);
    for l in &want["app/s1"] {
        println!("haproxy: {l}");
    }
    assert!(
        want["app/s1"].iter().any(|l| l.contains("is stopping")),
        "HAProxy's run is incomplete: {want:#?}"
    );
    side_by_side::assert_same("disable-on-404", &got, &want);
}
