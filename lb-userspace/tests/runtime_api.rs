//! The runtime API end to end: a real `lb` in network namespaces with two nginx servers,
//! driven through its stats socket as HAProxy users drive HAProxy's (`echo CMD | socat`),
//! and through the `lb` CLI.
#[path = "support/api_fixture.rs"]
mod fixture;

use std::{
    io::{Read as _, Write as _},
    os::unix::{fs::MetadataExt as _, net::UnixStream, process::CommandExt as _},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use fixture::{
    CAPTURE, Fixture, LB, Options, api_at, capture_block, haproxy_answer, health_checks,
    parse_stat, served_by, vip,
};
use lb_testbed::http::Conn;

/// Turns `kernel.bpf_stats_enabled` on and puts the previous value back when dropped.
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> BpfStats {
        let prev = std::fs::read_to_string(BPF_STATS).expect("bpf_stats_enabled");
        std::fs::write(BPF_STATS, "1").expect("enable bpf stats");
        BpfStats(prev.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// The uid/gid of `nobody`.
const NOBODY: u32 = 65534;

/// `socat - UNIX-CONNECT:PATH` as `nobody`, `input` on stdin: (success, stdout, stderr).
fn as_nobody(path: &std::path::Path, input: &str) -> (bool, String, String) {
    let mut child = Command::new("socat")
        .args(["-", &format!("UNIX-CONNECT:{}", path.display())])
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("socat output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn socket_answers_like_haproxy() {
    let mut f = Fixture::start(Options::default());

    // The socket is root's, mode 600 as configured: nobody else may even connect.
    let meta = std::fs::metadata(&f.socket).expect("socket");
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), 0);
    let (ok, out, err) = as_nobody(&f.socket, "show info\n");
    assert!(
        !ok && out.is_empty() && err.contains("Permission denied"),
        "{ok} {out:?} {err:?}"
    );

    // Some traffic, so counters move.
    let who = f.new_connections(10);
    assert_eq!(who.iter().filter(|w| *w == "web10").count(), 5, "{who:?}");

    // show stat: HAProxy's header exactly, rows for the frontend, each server, the backend.
    let text = f.api("show stat");
    let header = CAPTURE
        .lines()
        .find(|l| l.starts_with("# pxname"))
        .expect("capture header");
    assert_eq!(text.lines().next(), Some(header));
    assert!(text.ends_with(",\n\n"), "answer ends with an empty line");
    let rows = parse_stat(&text);
    let names: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["pxname"].as_str(), r["svname"].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("main", "FRONTEND"),
            ("hoge", "web10"),
            ("hoge", "web11"),
            ("hoge", "BACKEND")
        ]
    );
    let (fe, web10, web11, be) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(fe["status"], "OPEN");
    assert!(fe["stot"].parse::<u64>().expect("stot") >= 10, "{fe:?}");
    for (s, addr) in [(web10, "10.200.10.10:80"), (web11, "10.200.11.11:80")] {
        assert_eq!(s["status"], "UP");
        assert_eq!(s["weight"], "1");
        assert_eq!((s["act"].as_str(), s["bck"].as_str()), ("1", "0"));
        assert_eq!(s["check_status"], "L7OK");
        assert_eq!(s["check_code"], "200");
        assert_eq!(s["check_desc"], "Layer7 check passed");
        assert_eq!(
            (s["check_rise"].as_str(), s["check_fall"].as_str()),
            ("2", "2")
        );
        assert_eq!(s["check_health"], "3");
        assert!(s["check_duration"].parse::<u64>().is_ok(), "{s:?}");
        assert_eq!(s["addr"], addr);
        assert_eq!(s["mode"], "tcp");
        assert_eq!(s["type"], "2");
        assert!(s["stot"].parse::<u64>().expect("stot") >= 5);
        assert!(s["bin"].parse::<u64>().expect("bin") > 0);
        assert!(s["bout"].parse::<u64>().expect("bout") > 0);
        assert_eq!(s["chkfail"], "0");
        assert_eq!(s["hrsp_2xx"], "", "no HTTP counters at L4");
    }
    assert_eq!(be["status"], "UP");
    assert_eq!(be["weight"], "2");
    assert_eq!(be["act"], "2");
    assert_eq!(be["algo"], "roundrobin");
    assert_eq!(
        be["stot"].parse::<u64>().expect("stot"),
        web10["stot"].parse::<u64>().expect("stot") + web11["stot"].parse::<u64>().expect("stot")
    );

    // show servers state: HAProxy's version line and header, a line of 25 fields a server.
    let state = f.api("show servers state");
    let lines: Vec<&str> = state.lines().collect();
    let captured = capture_block("show servers state", 1);
    let want: Vec<&str> = captured.lines().collect();
    assert_eq!(lines[..2], want[..2]);
    let web10_state: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(web10_state.len(), 25);
    assert_eq!(
        web10_state[..9],
        [
            "3",
            "hoge",
            "1",
            "web10",
            "10.200.10.10",
            "2",
            "0",
            "1",
            "1"
        ]
    );
    assert_eq!(web10_state[10..15], ["15", "3", "3", "6", "0"]);
    assert_eq!(web10_state[18], "80");
    assert_eq!(f.api("show servers state nope"), "Can't find backend.\n\n");

    // show info: HAProxy's keys in HAProxy's order.
    let info = f.api("show info");
    let keys = |s: &str| -> Vec<String> {
        s.lines()
            .take_while(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(keys(&info), keys(&capture_block("show info", 1)));
    assert!(
        info.contains(&format!("\nPid: {}\n", f.lb.pid().expect("pid"))),
        "{info}"
    );

    // help, errors, unknown commands: HAProxy's texts.
    let help = f.api("help");
    assert!(help.starts_with("The following commands are valid at this level:\n"));
    assert!(help.contains(
        "\n  show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server\n"
    ));
    assert!(help.ends_with("  quit                                    : disconnect\n\n"));
    assert_eq!(
        f.api("set weight hoge/web10 300"),
        haproxy_answer("set weight hoge/web10 300")
    );
    assert_eq!(
        f.api("enable server hoge/nope"),
        haproxy_answer("enable server hoge/nope")
    );
    assert_eq!(f.api("enable server nope/web10"), "No such backend.\n\n");
    assert_eq!(
        f.api("disable server hoge"),
        "Require 'backend/server'.\n\n"
    );
    assert_eq!(
        f.api("set server hoge/web11 state bogus"),
        "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
    );
    let bogus = f.api("bogus command");
    assert!(
        bogus.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        )
    );
    assert!(bogus.ends_with(
        "  help [<command>]                        : list matching or all commands\n  prompt                                  : toggle interactive mode with prompt\n  quit                                    : disconnect\n\n"
    ));
    assert_eq!(f.api("get weight hoge/web11"), "1 (initial 1)\n\n");
    // `set server ... addr`: either family read, HAProxy's answers when nothing changes or
    // the words are wrong, lb's reason when it would change the address.
    assert_eq!(
        f.api("set server hoge/web10 addr 10.200.10.10 port 80"),
        "no need to change the addr, no need to change the port by 'stats socket command'\n\n"
    );
    assert_eq!(
        f.api("set server hoge/web10 addr fd00:16::zz"),
        "Invalid addr 'fd00:16::zz' by 'stats socket command'\n\n"
    );
    // An IPv4 server does not move to IPv6 (its family decides its pool and maps); changes
    // within the family are applied (tests/dns_e2e.rs moves traffic with one).
    for change in ["fd00:16::10", "[fd00:16::10]"] {
        assert_eq!(
            f.api(&format!("set server hoge/web10 addr {change}")),
            format!("{}\n", lb::api::cli::ADDR_FAMILY),
            "{change}"
        );
    }
    assert_eq!(
        f.api("set server hoge/web10 addr 10.200.10.10 port 81"),
        format!("{}\n", lb::api::cli::ADDR_PORT)
    );

    // Several commands a line; levels lowered within a session; interactive mode.
    assert_eq!(
        f.api("show cli level; get weight hoge/web10"),
        "admin\n\n1 (initial 1)\n\n"
    );
    assert_eq!(
        f.api(
            "operator; show cli level; disable server hoge/web10; user; show cli level; operator"
        ),
        "\noperator\n\nPermission denied\n\n\nuser\n\nPermission denied\n\n"
    );
    let out = f.raw(b"prompt\nshow cli level\nquit\n").expect("prompt");
    assert_eq!(String::from_utf8_lossy(&out), "\n> admin\n\n> ");

    // Maintenance, drain, ready: HAProxy's answers (none) and log lines, applied states.
    assert_eq!(
        f.api("disable server hoge/web11"),
        haproxy_answer("disable server hoge/web11")
    );
    f.wait_log(
        "Server hoge/web11 is going DOWN for maintenance. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
    );
    let web11 = f.server_row("web11");
    assert_eq!(web11["status"], "MAINT");
    assert_eq!(web11["check_status"], "", "checks are paused");
    assert_eq!(web11["chkdown"], "1");
    let be = f.stat().pop().expect("backend row");
    assert_eq!((be["weight"].as_str(), be["act"].as_str()), ("1", "1"));
    let web11_state = |f: &Fixture| -> Vec<String> {
        f.api("show servers state hoge")
            .lines()
            .nth(3)
            .expect("web11 line")
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        web11_state(&f)[5..7],
        ["0", "1"],
        "op STOPPED, admin FMAINT"
    );
    assert_eq!(web11_state(&f)[13], "14", "checks paused");

    assert_eq!(f.api("set server hoge/web11 state drain"), "\n");
    f.wait_log("Server hoge/web11 is UP/DRAIN (leaving forced maintenance).");
    let st = web11_state(&f);
    assert_eq!(st[5..7], ["2", "8"], "op RUNNING, admin FDRAIN");
    assert!(st[12] == "2" || st[12] == "3", "health from rise: {st:?}");
    assert!(f.server_row("web11")["status"].starts_with("DRAIN"));

    assert_eq!(f.api("set server hoge/web11 state ready"), "\n");
    f.wait_log("Server hoge/web11 is UP (leaving forced drain).");
    f.wait_status("web11", "UP", Duration::from_secs(5))
        .expect("UP again");

    assert_eq!(f.api("set server hoge/web11 state drain"), "\n");
    f.wait_log(
        "Server hoge/web11 enters drain state. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
    );
    assert_eq!(f.api("enable server hoge/web11"), "\n");

    // Health forced from the CLI, then the checks bring it back.
    assert_eq!(f.api("set server hoge/web11 health down"), "\n");
    f.wait_log(
        "Server hoge/web11 is DOWN, changed from CLI. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
    );
    f.wait_log("Server hoge/web11 is UP. 2 active and 0 backup servers online.");

    // Weights, absolute and relative.
    assert_eq!(f.api("set weight hoge/web11 5"), "\n");
    assert_eq!(f.api("get weight hoge/web11"), "5 (initial 1)\n\n");
    assert_eq!(f.api("set server hoge/web11 weight 200%"), "\n");
    assert_eq!(f.api("get weight hoge/web11"), "2 (initial 1)\n\n");
    assert_eq!(f.api("set server hoge/web11 weight 1"), "\n");

    // The stats HTTP listener: metrics, page, CSV. With kernel.bpf_stats_enabled on (for
    // this test only, restored after), the XDP program's own run time and count appear.
    let (_, metrics) = f.http_get("/metrics").expect("metrics");
    assert!(
        !metrics.contains("lb_xdp_run_count"),
        "bpf stats are off by default"
    );
    let bpf_stats = BpfStats::enable();
    f.new_connections(4);
    let (code, metrics) = f.http_get("/metrics").expect("metrics");
    drop(bpf_stats);
    let runs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lb_xdp_run_count_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(runs > 0, "no XDP run count:\n{metrics}");
    assert!(metrics.contains("lb_xdp_run_time_seconds_total "));
    assert_eq!(code, 200);
    for want in [
        "haproxy_server_weight{proxy=\"hoge\",server=\"web10\"} 1",
        "haproxy_server_status{proxy=\"hoge\",server=\"web11\",state=\"UP\"} 1",
        "haproxy_server_check_failures_total{proxy=\"hoge\",server=\"web10\"} 0",
        "haproxy_backend_active_servers{proxy=\"hoge\"} 2",
        "# TYPE haproxy_server_check_duration_seconds gauge",
        "# TYPE lb_server_packets_in counter",
        "# EOF",
    ] {
        assert!(metrics.contains(want), "missing {want}:\n{metrics}");
    }
    let (code, page) = f.http_get("/").expect("page");
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"sv-hoge-web10\" data-state=\"UP\""),
        "{page}"
    );
    let (code, csv) = f.http_get("/stats;csv").expect("csv");
    assert_eq!(code, 200);
    assert_eq!(csv.lines().next(), Some(header));
    assert!(
        !csv.contains("10.200.10.10"),
        "no addresses without a level"
    );
}

#[test]
fn level_user_socket_is_read_only() {
    let f = Fixture::start(Options {
        level: "user",
        mode: "666",
        ..Options::default()
    });
    let meta = std::fs::metadata(&f.socket).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o666);
    // Anyone may connect and read; nobody may change anything, root included.
    let (ok, out, _) = as_nobody(&f.socket, "show stat\n");
    assert!(ok, "{out}");
    let rows = parse_stat(&out);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["addr"], "", "level user sees no addresses");
    assert_eq!(rows[3]["algo"], "");
    let (_, out, _) = as_nobody(&f.socket, "disable server hoge/web11\n");
    assert_eq!(out, "Permission denied\n\n");
    for cmd in [
        "disable server hoge/web11",
        "set server hoge/web11 state drain",
        "set weight hoge/web10 0",
        "operator",
    ] {
        assert_eq!(f.api(cmd), "Permission denied\n\n", "{cmd}");
    }
    assert_eq!(f.api("show cli level"), "user\n\n");
    assert_eq!(f.api("get weight hoge/web10"), "1 (initial 1)\n\n");
    // The CLI says why it failed.
    let out = Command::new(LB)
        .args(["server", "disable", "hoge/web11", "--socket"])
        .arg(&f.socket)
        .output()
        .expect("lb server");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert_eq!(f.server_row("web11")["status"], "UP");
}

#[test]
fn hostile_clients_do_not_disturb_forwarding() {
    let f = Fixture::start(Options::default());

    // Traffic through the VIP for the whole attack, every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let (stop2, done2) = (stop.clone(), done.clone());
    let traffic = f
        .topo
        .client
        .spawn(move || -> Result<(), String> {
            for i in 0..20_000 {
                if stop2.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let r = Conn::connect(vip())
                    .and_then(|mut c| c.request("/", false))
                    .map_err(|e| format!("request {i}: {e:#}"))?;
                if r.status != 200 {
                    return Err(format!("request {i}: status {}", r.status));
                }
                done2.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .expect("traffic thread");

    let connect = || {
        let s = UnixStream::connect(&f.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        s
    };
    let answer_of = |mut s: UnixStream| -> Vec<u8> {
        let mut out = Vec::new();
        // A reset is as good as a close here.
        let _ = s.read_to_end(&mut out);
        out
    };

    // A 1 MB line, with or without its newline: refused, nothing answered.
    for tail in [&b""[..], b"\n"] {
        let mut s = connect();
        let mut line = vec![b'a'; 1 << 20];
        line.extend_from_slice(tail);
        // The daemon closes after 16 kB: the rest of the write may fail.
        let _ = s.write_all(&line);
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert!(answer_of(s).is_empty(), "answered a 1 MB line");
    }
    // Binary garbage: an unknown command.
    let mut s = connect();
    s.write_all(b"\xff\xfe\x01\x02\x7f garbage \x00 more\n")
        .expect("write");
    let out = String::from_utf8_lossy(&answer_of(s)).into_owned();
    assert!(out.starts_with("Unknown command"), "{out}");
    // Half a line, then the end: dropped, as HAProxy does.
    let mut s = connect();
    s.write_all(b"show sta").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert!(answer_of(s).is_empty());
    // Half a line and silence, held while everything else goes on.
    let mut idle = connect();
    idle.write_all(b"show in").expect("write");

    // 1000 clients at once, each answered in full.
    let path = f.socket.clone();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let path = path.clone();
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || api_at(&path, "show info").unwrap_or_default())
                .expect("client thread")
        })
        .collect();
    let answered = clients
        .into_iter()
        .map(|c| c.join().unwrap_or_default())
        .filter(|a| a.starts_with("Name: lb\n") && a.ends_with("Tainted: 0\n\n"))
        .count();
    assert_eq!(answered, 1000, "every client answered");

    // The idle session is closed after 10 s of silence, without an answer.
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    assert!(buf.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(15));

    stop.store(true, Ordering::Relaxed);
    let r = traffic
        .join()
        .expect("traffic thread")
        .expect("client namespace");
    r.expect("forwarding kept working");
    assert!(done.load(Ordering::Relaxed) >= 50, "too little traffic ran");
    // The daemon is fine.
    assert!(f.api("show info").starts_with("Name: lb\n"));
    assert!(
        std::path::Path::new(&format!("/proc/{}", f.lb.pid().expect("pid"))).exists(),
        "daemon alive"
    );
}

#[test]
fn drain_keeps_established_flows_and_refuses_new_ones() {
    let mut f = Fixture::start(Options::default());
    let sock = f.socket.clone();
    let result = f
        .topo
        .client
        .run(move || -> anyhow::Result<()> {
            // A kept-alive connection on web11.
            let mut long = None;
            for _ in 0..10 {
                let mut c = Conn::connect(vip())?;
                if served_by(&c.request("/", true)?.body) == "web11" {
                    long = Some(c);
                    break;
                }
            }
            let mut long = long.ok_or_else(|| anyhow::anyhow!("never reached web11"))?;
            anyhow::ensure!(api_at(&sock, "set server hoge/web11 state drain")? == "\n");
            // New connections: web10 only.
            for i in 0..20 {
                let mut c = Conn::connect(vip())?;
                let who = served_by(&c.request("/", false)?.body).to_string();
                anyhow::ensure!(who == "web10", "new connection {i} went to {who}");
            }
            // The established one goes on, on web11.
            for i in 0..5 {
                let who = served_by(&long.request("/", true)?.body).to_string();
                anyhow::ensure!(who == "web11", "kept-alive request {i} went to {who}");
            }
            let stat = parse_stat(&api_at(&sock, "show stat")?);
            let web11 = stat
                .iter()
                .find(|r| r["svname"] == "web11")
                .ok_or_else(|| anyhow::anyhow!("no web11 row"))?;
            anyhow::ensure!(web11["status"] == "DRAIN", "{web11:?}");
            anyhow::ensure!(
                web11["scur"] != "0",
                "the kept-alive flow is counted: {web11:?}"
            );
            anyhow::ensure!(api_at(&sock, "set server hoge/web11 state ready")? == "\n");
            let mut who = Vec::new();
            for _ in 0..4 {
                let mut c = Conn::connect(vip())?;
                who.push(served_by(&c.request("/", false)?.body).to_string());
            }
            anyhow::ensure!(
                who.iter().filter(|w| *w == "web11").count() == 2,
                "ready again: {who:?}"
            );
            Ok(())
        })
        .expect("client thread");
    result.expect("drain scenario");
    f.wait_log("Server hoge/web11 enters drain state.");
    f.wait_log("Server hoge/web11 is UP (leaving forced drain).");
}

#[test]
fn weights_give_proportional_new_connections() {
    let f = Fixture::start(Options::default());
    assert_eq!(f.api("set weight hoge/web10 3"), "\n");
    assert_eq!(f.api("get weight hoge/web10"), "3 (initial 1)\n\n");
    let who = f.new_connections(400);
    let web10 = who.iter().filter(|w| *w == "web10").count();
    let web11 = who.iter().filter(|w| *w == "web11").count();
    assert_eq!(web10 + web11, 400, "{who:?}");
    // 3:1 within 2% of the 400 connections.
    assert!(web10.abs_diff(300) <= 8, "web10 got {web10} of 400");
    // The same through the CLI, the other way round.
    let out = Command::new(LB)
        .args(["weight", "hoge/web10", "1", "--socket"])
        .arg(&f.socket)
        .output()
        .expect("lb weight");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(LB)
        .args(["weight", "hoge/web11", "3", "--json", "--socket"])
        .arg(&f.socket)
        .output()
        .expect("lb weight");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    let who = f.new_connections(400);
    let web11 = who.iter().filter(|w| *w == "web11").count();
    assert!(web11.abs_diff(300) <= 8, "web11 got {web11} of 400");
    let be = f.stat().pop().expect("backend");
    assert_eq!(be["weight"], "4");
}

#[test]
fn maintenance_stops_health_checks() {
    let mut f = Fixture::start(Options::default());
    let inter = Duration::from_millis(fixture::INTER_MS);
    assert!(health_checks(&f.web[1]) > 0, "checks before");
    // Through the CLI this time.
    let out = Command::new(LB)
        .args(["server", "disable", "hoge/web11", "--socket"])
        .arg(&f.socket)
        .output()
        .expect("lb server disable");
    assert!(out.status.success(), "{out:?}");
    f.wait_log("Server hoge/web11 is going DOWN for maintenance.");
    // A check under way when maintenance started may still land.
    std::thread::sleep(inter * 2);
    let before = health_checks(&f.web[1]);
    std::thread::sleep(inter * 8);
    assert_eq!(
        health_checks(&f.web[1]),
        before,
        "checks went on in maintenance"
    );
    let web10_checks = health_checks(&f.web[0]);
    assert!(web10_checks > 0);
    // No new connection reaches it.
    let who = f.new_connections(10);
    assert!(who.iter().all(|w| w == "web10"), "{who:?}");
    let row = f.server_row("web11");
    assert_eq!(row["status"], "MAINT");
    // Back: checks resume.
    let out = Command::new(LB)
        .args(["server", "enable", "hoge/web11", "--socket"])
        .arg(&f.socket)
        .output()
        .expect("lb server enable");
    assert!(out.status.success(), "{out:?}");
    f.wait_log("Server hoge/web11 is UP/READY (leaving forced maintenance).");
    let deadline = Instant::now() + Duration::from_secs(10);
    while health_checks(&f.web[1]) == before && Instant::now() < deadline {
        std::thread::sleep(inter);
    }
    assert!(health_checks(&f.web[1]) > before, "checks did not resume");
    // Maintenance while DOWN: the other line.
    f.web[1].stop();
    f.wait_status("web11", "DOWN", Duration::from_secs(10))
        .expect("DOWN");
    assert_eq!(f.api("set server hoge/web11 state maint"), "\n");
    f.wait_log("Server hoge/web11 was DOWN and now enters maintenance.");
}

#[test]
fn cli_reads_pins_and_drives_the_socket() {
    let f = Fixture::start(Options::default());
    let instance = f.lb.instance.clone();
    let lb = |args: &[&str]| -> std::process::Output {
        Command::new(LB).args(args).output().expect("lb")
    };
    // Two kept-alive flows to look at, held by a thread in the client namespace.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let holder = f
        .topo
        .client
        .spawn(move || -> anyhow::Result<()> {
            let mut a = Conn::connect(vip())?;
            let mut b = Conn::connect(vip())?;
            a.request("/", true)?;
            b.request("/", true)?;
            let _ = ready_tx.send(());
            let _ = rx.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
        .expect("holder");
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("flows open");

    let out = lb(&["show", "servers", "--json", "--instance", &instance]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let active: u64 = rows
        .iter()
        .map(|r| r["active_flows"].as_u64().unwrap_or(0))
        .sum();
    assert!(active >= 2, "{rows:?}");

    let out = lb(&["show", "flows", "--json", "--instance", &instance]);
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(flows["matching"].as_u64().unwrap_or(0) >= 2, "{flows}");
    let first = &flows["flows"][0];
    assert_eq!(first["proto"], "tcp");
    assert_eq!(first["vip"], "10.200.0.1:80");
    assert!(
        first["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("10.200.0.2:")),
        "{first}"
    );
    let out = lb(&[
        "show",
        "flows",
        "--json",
        "--limit",
        "1",
        "--client",
        "10.200.0.2",
        "--instance",
        &instance,
    ]);
    let limited: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(limited["flows"].as_array().map(Vec::len), Some(1));
    assert!(limited["matching"].as_u64().unwrap_or(0) >= 2);
    let out = lb(&[
        "show",
        "flows",
        "--json",
        "--client",
        "10.9.9.9",
        "--instance",
        &instance,
    ]);
    let none: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(none["matching"], 0);
    let out = lb(&[
        "show",
        "flows",
        "--server",
        "hoge/web10",
        "--instance",
        &instance,
    ]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.starts_with("PROTO"), "{table}");
    assert!(!table.contains("hoge/web11"), "{table}");

    // Drain through the CLI; show servers reads it back from the pins.
    let out = lb(&[
        "server",
        "drain",
        "hoge/web11",
        "--socket",
        &f.socket.display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = lb(&["show", "servers", "--json", "--instance", &instance]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[1]["state"], "DRAIN");
    let out = lb(&[
        "api",
        "show",
        "servers",
        "state",
        "--socket",
        &f.socket.display().to_string(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1\n# be_id"));
    let _ = tx.send(());
    holder
        .join()
        .expect("holder")
        .expect("client namespace")
        .expect("flows");

    // Errors name what is missing.
    let out = lb(&["show", "flows", "--instance", "nope-not-running"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pinned maps"));
    let out = lb(&[
        "server",
        "enable",
        "hoge/web11",
        "--socket",
        "/nonexistent/stats",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to the stats socket"));
}
