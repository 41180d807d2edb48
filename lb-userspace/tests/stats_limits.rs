//! The stats HTTP listener under 2,000 idle connections: a real `lb run` in the seed's
//! topology, started with a low open-file limit, keeps answering on its stats socket, keeps
//! its servers UP and serves `/metrics` again once the idle connections it holds time out.
#[path = "support/api_fixture.rs"]
mod fixture;

use std::{
    io::{ErrorKind, Read as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use fixture::{Fixture, HTTP_PORT, Options, api_at, parse_stat};
use lb::api::http::listener::LIMITS;

/// The idle connections the test opens.
const IDLE: usize = 2_000;

/// The daemon starts with this soft limit (its hard limit is the test's): below what the
/// config needs, so the daemon must raise it, and far below `IDLE`.
const LOW_SOFT_LIMIT: u64 = 256;

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_soft_nofile(soft: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: nofile().rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The soft "Max open files" of process `pid`.
fn soft_limit_of(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("soft limit")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether the server closed this connection (EOF or reset), without waiting.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let closed = match s.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// What the run saw, printed before anything is asserted.
#[derive(Debug, Default)]
struct Seen {
    needed: u64,
    soft_limit: u64,
    fds_at_rest: usize,
    fds_flooded: usize,
    connected: usize,
    connect_error: Option<String>,
    flood_took: Duration,
    closed_at_once: usize,
    show_info: Option<Duration>,
    first_scrape_failed_after: Option<Duration>,
    metrics_after: Option<Duration>,
    stat_samples: usize,
    not_up: Vec<String>,
    check_trouble: Vec<String>,
    chkfail_added: u64,
    fds_after: usize,
}

fn chkfail(rows: &[std::collections::HashMap<String, String>]) -> u64 {
    rows.iter()
        .filter(|r| r["svname"].starts_with("web"))
        .map(|r| r["chkfail"].parse::<u64>().unwrap_or(0))
        .sum()
}

#[test]
fn idle_connections_to_stats_http_hurt_neither_the_socket_nor_the_checks() {
    let hard = nofile().rlim_max;
    assert!(
        hard >= IDLE as u64 + 200,
        "the test needs an open-file hard limit of {} or more, not {hard}",
        IDLE + 200
    );
    let before = nofile().rlim_cur;
    set_soft_nofile(LOW_SOFT_LIMIT);
    let f = Fixture::start(Options::default());
    // Room for the test's own end of the connections.
    set_soft_nofile(before.max(IDLE as u64 + 200));
    let pid = f.lb.pid().expect("lb pid");
    let cfg = lb::config::native::parse(
        "t.toml",
        &fixture::config(&f.lb.instance, &f.socket, &Options::default()),
    )
    .expect("fixture config");

    let mut seen = Seen {
        needed: lb::rlimit::needed(&cfg),
        soft_limit: soft_limit_of(pid),
        fds_at_rest: open_fds(pid),
        ..Seen::default()
    };
    let rows = parse_stat(&f.api("show stat"));
    let chkfail_before = chkfail(&rows);
    let log_before = f.lb.output().len();

    // The flood: IDLE connections that never send a byte, from inside the LB namespace.
    let started = Instant::now();
    let (mut idle, refused) = f
        .topo
        .lb
        .run(|| {
            let to = SocketAddr::from(([127, 0, 0, 1], HTTP_PORT));
            let mut idle = Vec::with_capacity(IDLE);
            for _ in 0..IDLE {
                match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                    Ok(s) => idle.push(s),
                    // A full listen backlog: the daemon stopped accepting.
                    Err(e) => return (idle, Some(e.to_string())),
                }
            }
            (idle, None)
        })
        .expect("thread in the LB namespace");
    seen.connected = idle.len();
    seen.connect_error = refused;
    seen.flood_took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    seen.fds_flooded = open_fds(pid);
    seen.closed_at_once = idle.iter_mut().map(closed_by_server).filter(|&c| c).count();

    // The stats socket answers at once.
    let t = Instant::now();
    if let Ok(info) = api_at(&f.socket, "show info")
        && info.contains("Pid: ")
    {
        seen.show_info = Some(t.elapsed());
    }

    // A new scraper: turned away at once while the idle connections hold every slot, then
    // served once they have timed out. The servers' state is sampled all along.
    let t = Instant::now();
    let deadline = started + LIMITS.header_timeout + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = api_at(&f.socket, "show stat") {
            let rows = parse_stat(&text);
            for r in rows.iter().filter(|r| r["svname"].starts_with("web")) {
                if r["status"] != "UP" {
                    seen.not_up.push(format!(
                        "{} {} {}",
                        r["svname"], r["status"], r["check_status"]
                    ));
                }
            }
            seen.chkfail_added = chkfail(&rows).saturating_sub(chkfail_before);
            seen.stat_samples += 1;
        }
        match f.http_get("/metrics") {
            Ok((200, body)) if body.contains("haproxy_server_status{") => {
                seen.metrics_after = Some(t.elapsed());
                break;
            }
            _ => {
                seen.first_scrape_failed_after.get_or_insert(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // The health checks' own account (log_health_checks, on stderr), which does not need
    // the stats socket.
    seen.check_trouble = f.lb.output()[log_before..]
        .lines()
        .filter(|l| l.contains("Health check for") || l.contains(" is DOWN"))
        .map(str::to_string)
        .collect();

    drop(idle);
    let settle = Instant::now() + Duration::from_secs(3);
    while open_fds(pid) > seen.fds_at_rest + 2 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    seen.fds_after = open_fds(pid);
    eprintln!("{seen:#?}");

    assert_eq!(
        seen.soft_limit,
        seen.needed.min(hard),
        "the daemon did not raise its open-file limit to what the config needs"
    );
    assert!(seen.needed > LOW_SOFT_LIMIT);
    assert_eq!(seen.connected, IDLE, "{:?}", seen.connect_error);
    // What follows holds while the first connections still wait for their headers.
    assert!(
        seen.flood_took < LIMITS.header_timeout / 2,
        "the flood took {:?}",
        seen.flood_took
    );
    assert!(
        seen.fds_flooded <= seen.fds_at_rest + LIMITS.connections + 2,
        "{IDLE} idle connections took {} descriptors (at rest: {})",
        seen.fds_flooded,
        seen.fds_at_rest
    );
    assert_eq!(
        seen.closed_at_once,
        IDLE - LIMITS.connections,
        "connections over the cap are closed at once, the others kept"
    );
    let took = seen.show_info.expect("show info answered during the flood");
    assert!(took < Duration::from_secs(2), "show info took {took:?}");
    let failed = seen
        .first_scrape_failed_after
        .expect("a scrape while every slot is held is turned away");
    assert!(
        failed < Duration::from_secs(2),
        "turned away after {failed:?}"
    );
    seen.metrics_after
        .expect("/metrics served again once the idle connections timed out");
    assert!(seen.stat_samples > 0);
    assert!(seen.not_up.is_empty(), "servers not UP: {:?}", seen.not_up);
    assert!(seen.check_trouble.is_empty(), "{:?}", seen.check_trouble);
    assert!(
        seen.fds_after <= seen.fds_at_rest + 2,
        "descriptors left after the clients closed: {} (at rest: {})",
        seen.fds_after,
        seen.fds_at_rest
    );
}
