//! The capture's scenario end to end, wired the way the daemon should: checkers -> events ->
//! state of the backend -> `check_event_lines` -> `Logger` -> a syslog listener on UDP.
use std::{net::SocketAddr, time::Duration};

use lb_testbed::config::{SEED_CHECK_DEFAULTS, SeedConfig};

use lb::{
    config::native,
    dataplane::layout::Layout,
    health::{CheckEvent, Transition, check::targets, spawn_checkers},
    logs::{CheckEventLog, Counts, Flavor, Logger, ServerName, Sessions, check_event_lines},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
    time::timeout,
};

/// Answers every request with 200 until aborted.
fn serve_ok(l: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            });
        }
    })
}

/// What the daemon keeps per server for logging: names, backup flag, weight, UP or not.
struct Srv {
    name: String,
    up: bool,
}

fn counts(servers: &[Srv]) -> Counts {
    Counts {
        active: servers.iter().filter(|s| s.up).count() as u32,
        backup: 0,
    }
}

/// The daemon's event loop, reduced to the logging part.
async fn daemon(mut rx: mpsc::Receiver<CheckEvent>, mut servers: Vec<Srv>, logger: Logger) {
    while let Some(ev) = rx.recv().await {
        // This scenario has health checks only (no agent).
        let CheckEvent::Health(ev) = ev else {
            continue;
        };
        let i = ev.server.index();
        let before = counts(&servers);
        match ev.outcome.transition {
            Some(Transition::Down) => servers[i].up = false,
            Some(Transition::Up) => servers[i].up = true,
            // No `disable-on-404` here: a server never goes to NOLB.
            Some(Transition::Stopping) | None => {}
        }
        let after = counts(&servers);
        for line in check_event_lines(&CheckEventLog {
            server: ServerName {
                backend: "hoge",
                server: &servers[i].name,
                backup: false,
            },
            agent: false,
            result: &ev.result,
            outcome: &ev.outcome,
            weight: 1,
            log_health_checks: true,
            was_draining: false,
            before,
            after,
            sessions: Sessions::default(),
            flavor: Flavor::Haproxy26,
        }) {
            logger.log(&line);
        }
    }
}

/// `<181>Nov 26 17:35:00 haproxy[22285]: text` -> (181, text with durations as Nms).
fn normalize(datagram: &str) -> (u8, String) {
    let (pri, rest) = datagram
        .trim_end()
        .strip_prefix('<')
        .and_then(|d| d.split_once('>'))
        .unwrap_or(("0", datagram));
    let text = rest.split_once("]: ").map_or(rest, |(_, t)| t);
    let text = match text.split_once("check duration: ") {
        Some((a, b)) => {
            let rest = b.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{a}check duration: N{rest}")
        }
        None => text.to_string(),
    };
    (pri.parse().unwrap_or(0), text)
}

async fn next_web11_line(syslog: &UdpSocket) -> (u8, String) {
    let mut buf = [0u8; 2048];
    loop {
        let n = timeout(Duration::from_secs(5), syslog.recv(&mut buf))
            .await
            .expect("a line within 5s")
            .expect("recv");
        let line = normalize(&String::from_utf8_lossy(&buf[..n]));
        if line.1.contains("web11") {
            return line;
        }
    }
}

#[tokio::test]
async fn capture_scenario_end_to_end() {
    let syslog = UdpSocket::bind("127.0.0.1:0").await.expect("bind syslog");
    let web10 = TcpListener::bind("127.0.0.1:0").await.expect("bind web10");
    let web11 = TcpListener::bind("127.0.0.1:0").await.expect("bind web11");
    let (a10, a11): (SocketAddr, SocketAddr) = (
        web10.local_addr().expect("addr"),
        web11.local_addr().expect("addr"),
    );
    let cfg = native::parse(
        "lb.toml",
        &SeedConfig::new("")
            .global(&format!(
                "log = [{{ target = \"{}\", facility = \"local6\" }}]\nlog_tag = \"haproxy\"",
                syslog.local_addr().expect("addr")
            ))
            .defaults(SEED_CHECK_DEFAULTS)
            .bind("127.0.0.1:18080")
            .addresses([&a10.to_string(), &a11.to_string()])
            .server_keys("check = true, inter = 100, fall = 2, rise = 2")
            .to_string(),
    )
    .expect("config parses");
    let _w10 = serve_ok(web10);
    let w11 = serve_ok(web11);
    let servers = cfg.backends[0]
        .servers
        .iter()
        .map(|s| Srv {
            name: s.name.clone(),
            up: true,
        })
        .collect();
    let (tx, rx) = mpsc::channel(64);
    let checkers = spawn_checkers(targets(&Layout::new(&cfg), &cfg), tx);
    let logger = Logger::from_global(&cfg.global);
    let _daemon = tokio::spawn(daemon(rx, servers, logger));

    let mut got = vec![next_web11_line(&syslog).await];
    // Stop web11: refused from now on.
    w11.abort();
    let _ = w11.await;
    loop {
        let l = next_web11_line(&syslog).await;
        let down = l.1.starts_with("Server hoge/web11 is DOWN");
        got.push(l);
        if down {
            break;
        }
    }
    // Restart it on the same port.
    let _w11 = serve_ok(TcpListener::bind(a11).await.expect("rebind web11"));
    loop {
        let l = next_web11_line(&syslog).await;
        let up = l.1.starts_with("Server hoge/web11 is UP");
        got.push(l);
        if up {
            break;
        }
    }
    checkers.shutdown().await;

    // The capture's web11 lines (mode http run), durations aside.
    let want: Vec<(u8, String)> =
        include_str!("../src/logs/testdata/haproxy-2.6-http-datagrams.txt")
            .lines()
            .filter(|l| l.contains("web11") && !l.contains(" http-in "))
            .map(normalize)
            .collect();
    assert_eq!(got, want);
}
