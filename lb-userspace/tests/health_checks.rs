//! Health checks against fake servers on 127.0.0.1: real sockets, bounded waits.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb::{
    dataplane::ids::ServerId,
    health::{
        CheckEvent, CheckResult, CheckSpec, CheckStatus, CheckTarget, Health, Intervals, Probe,
        run_check, spawn_checkers,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{sleep, timeout},
};

const SEED_REQUEST: &[u8] = b"GET /health_check.html HTTP/1.0\r\nUser-agent: Proxy-Check\r\n\r\n";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn http_spec(addr: SocketAddr, inter: Duration) -> CheckSpec {
    CheckSpec {
        addr,
        probe: Probe::Http {
            request: SEED_REQUEST.to_vec(),
            expect: Vec::new(),
        },
        inter,
        timeout_connect: None,
        timeout_check: None,
    }
}

/// Reads a request head (up to the empty line) or whatever came before EOF.
async fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match timeout(ms(2000), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// A one-connection HTTP server: reads the request, waits `delay`, writes `reply` (if any),
/// then keeps the connection open for `hold`. Returns its address and the request it saw.
async fn fake_server(
    reply: Option<&'static [u8]>,
    delay: Duration,
    hold: Duration,
) -> (SocketAddr, oneshot::Receiver<Vec<u8>>, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let req = read_request(&mut s).await;
        let _ = tx.send(req);
        sleep(delay).await;
        if let Some(r) = reply {
            let _ = s.write_all(r).await;
        }
        sleep(hold).await;
    });
    (addr, rx, task)
}

fn assert_result(r: &CheckResult, status: CheckStatus, code: Option<u16>, info: &str) {
    assert_eq!(
        (r.status, r.code, r.info.as_str()),
        (status, code, info),
        "{r:?}"
    );
}

#[tokio::test]
async fn refused_is_layer4_connection_problem() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L4Con, None, "Connection refused");
    assert!(r.duration < ms(500), "{r:?}");
    let tcp = CheckSpec {
        probe: Probe::Tcp,
        ..http_spec(addr, ms(2000))
    };
    assert_result(
        &run_check(&tcp).await,
        CheckStatus::L4Con,
        None,
        "Connection refused",
    );
}

#[tokio::test]
async fn tcp_check_passes_on_connect() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let spec = CheckSpec {
        probe: Probe::Tcp,
        ..http_spec(l.local_addr().expect("addr"), ms(2000))
    };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L4Ok, None, "");
}

#[tokio::test]
async fn correct_200_and_the_exact_request_bytes() {
    let (addr, req, _t) = fake_server(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ms(0),
        ms(500),
    )
    .await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Ok, Some(200), "");
    assert_eq!(r.reason.as_deref(), Some("OK"));
    let seen = timeout(ms(2000), req)
        .await
        .expect("in time")
        .expect("request");
    assert_eq!(seen, SEED_REQUEST);
}

#[tokio::test]
async fn server_closing_after_the_answer_still_passes() {
    // HTTP/1.0 style: answer then close at once.
    let (addr, _req, _t) = fake_server(Some(b"HTTP/1.0 302 Found\r\n\r\n"), ms(0), ms(0)).await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Ok, Some(302), "");
}

#[tokio::test]
async fn not_found_is_layer7_wrong_status_with_the_servers_phrase() {
    let (addr, _req, _t) =
        fake_server(Some(b"HTTP/1.1 404 Not Found\r\n\r\n"), ms(0), ms(500)).await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Sts, Some(404), "Not Found");

    // The phrase is the server's own, not a table's.
    let (addr, _req, _t) =
        fake_server(Some(b"HTTP/1.1 404 Nicht Gefunden\r\n\r\n"), ms(0), ms(500)).await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Sts, Some(404), "Nicht Gefunden");
}

#[tokio::test]
async fn server_error_is_layer7_wrong_status() {
    let (addr, _req, _t) = fake_server(
        Some(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
        ms(0),
        ms(500),
    )
    .await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Sts, Some(500), "Internal Server Error");
}

#[tokio::test]
async fn expect_status_overrides_the_default_range() {
    let (addr, _req, _t) =
        fake_server(Some(b"HTTP/1.1 404 Not Found\r\n\r\n"), ms(0), ms(500)).await;
    let spec = CheckSpec {
        probe: Probe::Http {
            request: SEED_REQUEST.to_vec(),
            expect: vec![(404, 404)],
        },
        ..http_spec(addr, ms(2000))
    };
    assert_result(&run_check(&spec).await, CheckStatus::L7Ok, Some(404), "");

    let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(0), ms(500)).await;
    let spec = CheckSpec { addr, ..spec };
    assert_result(&run_check(&spec).await, CheckStatus::L7Sts, Some(200), "OK");
}

#[tokio::test]
async fn garbage_is_layer7_invalid_response() {
    let (addr, _req, _t) = fake_server(Some(b"garbage\r\n"), ms(0), ms(500)).await;
    let started = Instant::now();
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Rsp, None, "");
    assert!(
        started.elapsed() < ms(1000),
        "judged without waiting: {r:?}"
    );
}

#[tokio::test]
async fn closed_before_a_status_line_is_layer7_invalid_response() {
    let (addr, _req, _t) = fake_server(None, ms(0), ms(0)).await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Rsp, None, "");

    // Half a head, then close.
    let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\nServ"), ms(0), ms(0)).await;
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_result(&r, CheckStatus::L7Rsp, None, "");
}

#[tokio::test]
async fn reset_before_any_answer_is_a_socket_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let _t = tokio::spawn(async move {
        if let Ok((mut s, _)) = l.accept().await {
            let _ = read_request(&mut s).await;
            // Close with RST. (Deprecated because a non-zero linger blocks on drop; a zero
            // one does not.)
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    let r = run_check(&http_spec(addr, ms(2000))).await;
    assert_eq!(r.status, CheckStatus::SockErr, "{r:?}");
    assert_eq!(r.info, "Connection reset by peer");
}

#[tokio::test]
async fn silent_server_is_layer7_timeout_after_inter() {
    let (addr, req, _t) = fake_server(None, ms(0), ms(3000)).await;
    let r = run_check(&http_spec(addr, ms(300))).await;
    assert_result(&r, CheckStatus::L7Tout, None, "");
    assert!(r.duration >= ms(300) && r.duration < ms(1000), "{r:?}");
    // The request did go out.
    let seen = timeout(ms(2000), req)
        .await
        .expect("in time")
        .expect("request");
    assert_eq!(seen, SEED_REQUEST);
}

#[tokio::test]
async fn slow_answer_beyond_timeout_check_is_layer7_timeout() {
    let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(600), ms(500)).await;
    let spec = CheckSpec {
        timeout_connect: Some(ms(1000)),
        timeout_check: Some(ms(200)),
        ..http_spec(addr, ms(5000))
    };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L7Tout, None, "");
    assert!(r.duration >= ms(200) && r.duration < ms(600), "{r:?}");

    // The same answer in time passes, and the duration covers the wait.
    let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(100), ms(500)).await;
    let spec = CheckSpec { addr, ..spec };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L7Ok, Some(200), "");
    assert!(r.duration >= ms(100), "{r:?}");
}

/// A listener whose accept queue is full: further SYNs are dropped and connects hang, which
/// is a Layer4 timeout.
#[tokio::test]
async fn full_backlog_is_layer4_timeout() {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    let _listener = sock.listen(0).expect("listen");
    // Fill the accept queue (never accepted).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = timeout(ms(200), TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    let spec = CheckSpec {
        probe: Probe::Tcp,
        ..http_spec(addr, ms(300))
    };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L4Tout, None, "");
    assert!(r.duration >= ms(300) && r.duration < ms(1000), "{r:?}");
    // `timeout connect` bounds it when `timeout check` is set.
    let spec = CheckSpec {
        timeout_connect: Some(ms(100)),
        timeout_check: Some(ms(5000)),
        ..spec
    };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L4Tout, None, "");
    assert!(r.duration >= ms(100) && r.duration < ms(300), "{r:?}");
}

fn target(id: u32, spec: CheckSpec, inter: Duration, rise: u32, fall: u32) -> CheckTarget {
    CheckTarget {
        id: ServerId(id),
        spec,
        intervals: Intervals {
            inter,
            fastinter: None,
            downinter: None,
        },
        health: Health::new(rise, fall),
    }
}

/// An HTTP server answering 200 to every connection, forever.
async fn ok_server() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = read_request(&mut s).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            });
        }
    });
    (addr, task)
}

/// A server accepting and never answering.
async fn mute_server() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

async fn next_event(rx: &mut mpsc::Receiver<CheckEvent>, wait: Duration) -> Option<CheckEvent> {
    timeout(wait, rx.recv()).await.ok().flatten()
}

#[tokio::test]
async fn a_hanging_server_does_not_stall_the_others() {
    let (ok, _a) = ok_server().await;
    let (mute, _b) = mute_server().await;
    let (tx, mut rx) = mpsc::channel(64);
    // The mute one first: it would block the second if checks were sequential. Its interval
    // stays under a second so that it does not set the start spread (see the spread test).
    let checkers = spawn_checkers(
        vec![
            target(0, http_spec(mute, ms(900)), ms(900), 2, 2),
            target(1, http_spec(ok, ms(100)), ms(100), 2, 2),
        ],
        tx,
    );
    let mut ok_events = 0;
    let deadline = Instant::now() + ms(2000);
    while ok_events < 4 && Instant::now() < deadline {
        let Some(ev) = next_event(&mut rx, ms(2000)).await else {
            break;
        };
        assert_eq!(
            ev.server,
            ServerId(1),
            "the mute server cannot have finished: {ev:?}"
        );
        assert_eq!(ev.result.status, CheckStatus::L7Ok);
        ok_events += 1;
    }
    assert!(
        ok_events >= 4,
        "only {ok_events} checks of the healthy server"
    );
    let started = Instant::now();
    timeout(ms(1000), checkers.shutdown())
        .await
        .expect("shutdown does not wait for hanging checks");
    assert!(started.elapsed() < ms(1000));
}

#[tokio::test]
async fn events_carry_the_state_machine_outcome() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = l.local_addr().expect("addr");
    drop(l);
    let (tx, mut rx) = mpsc::channel(64);
    let _checkers = spawn_checkers(
        vec![target(7, http_spec(refused, ms(100)), ms(100), 2, 2)],
        tx,
    );
    let first = next_event(&mut rx, ms(2000)).await.expect("first event");
    assert_eq!(first.server, ServerId(7));
    assert_eq!(first.result.status, CheckStatus::L4Con);
    assert!(first.outcome.log);
    assert_eq!(first.outcome.transition, Some(lb::health::Transition::Down));
    assert_eq!(first.outcome.health.status_text(1), "0/2 DOWN");
    let second = next_event(&mut rx, ms(2000)).await.expect("second event");
    assert!(!second.outcome.log, "nothing changed: {second:?}");
    assert_eq!(second.outcome.transition, None);
}

#[tokio::test]
async fn first_checks_are_spread_over_the_interval() {
    let (ok, _a) = ok_server().await;
    let (tx, mut rx) = mpsc::channel(64);
    let started = Instant::now();
    let _checkers = spawn_checkers(
        vec![
            target(0, http_spec(ok, ms(1000)), ms(1000), 2, 2),
            target(1, http_spec(ok, ms(1000)), ms(1000), 2, 2),
        ],
        tx,
    );
    let a = next_event(&mut rx, ms(2000)).await.expect("first");
    let at_a = started.elapsed();
    let b = next_event(&mut rx, ms(2000)).await.expect("second");
    let at_b = started.elapsed();
    assert_eq!((a.server, b.server), (ServerId(0), ServerId(1)));
    assert!(at_a < ms(300), "first server starts at once: {at_a:?}");
    assert!(
        at_b >= ms(450) && at_b < ms(900),
        "second one half an interval later: {at_b:?}"
    );
}

#[tokio::test]
async fn maintenance_pauses_checks_and_resume_restarts_at_rise() {
    let (ok, _a) = ok_server().await;
    let (tx, mut rx) = mpsc::channel(64);
    let checkers = spawn_checkers(vec![target(3, http_spec(ok, ms(100)), ms(100), 2, 2)], tx);
    let ev = next_event(&mut rx, ms(2000)).await.expect("a check");
    assert_eq!(ev.outcome.health.status_text(1), "2/2 UP");
    assert_eq!(checkers.enter_maintenance(ServerId(3)), Some(true));
    assert_eq!(checkers.enter_maintenance(ServerId(3)), None);
    // Drain what was already queued, then nothing for several intervals.
    while timeout(ms(50), rx.recv()).await.is_ok_and(|e| e.is_some()) {}
    assert!(
        next_event(&mut rx, ms(500)).await.is_none(),
        "no checks in maintenance"
    );
    let h = checkers.health(ServerId(3)).expect("checked");
    assert!(h.in_maintenance() && !h.is_up());
    assert!(checkers.leave_maintenance(ServerId(3)));
    assert_eq!(
        checkers
            .health(ServerId(3))
            .map(|h| h.status_text(1))
            .as_deref(),
        Some("1/2 UP")
    );
    let ev = next_event(&mut rx, ms(2000)).await.expect("checks resumed");
    assert_eq!(ev.outcome.health.status_text(1), "2/2 UP");
    assert!(ev.outcome.log, "the counter moved from rise to the top");
    assert_eq!(
        checkers.last_result(ServerId(3)).map(|r| r.status),
        Some(CheckStatus::L7Ok)
    );
    assert!(!checkers.is_checked(ServerId(4)));
    assert_eq!(checkers.enter_maintenance(ServerId(4)), None);
}

#[tokio::test]
async fn disabled_checks_send_nothing_until_enabled() {
    let (ok, _a) = ok_server().await;
    let (tx, mut rx) = mpsc::channel(64);
    let checkers = spawn_checkers(vec![target(0, http_spec(ok, ms(100)), ms(100), 2, 2)], tx);
    checkers.set_enabled(ServerId(0), false);
    while timeout(ms(50), rx.recv()).await.is_ok_and(|e| e.is_some()) {}
    assert!(next_event(&mut rx, ms(400)).await.is_none());
    checkers.set_enabled(ServerId(0), true);
    assert!(next_event(&mut rx, ms(2000)).await.is_some());
}

#[tokio::test]
async fn absurd_intervals_do_not_panic() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let spec = CheckSpec {
        timeout_check: Some(Duration::MAX),
        timeout_connect: Some(Duration::MAX),
        ..http_spec(addr, Duration::MAX)
    };
    assert_eq!(run_check(&spec).await.status, CheckStatus::L4Con);
    let (tx, _rx) = mpsc::channel(4);
    let checkers = spawn_checkers(
        vec![
            target(0, spec.clone(), Duration::MAX, 2, 2),
            target(1, spec, Duration::MAX, 2, 2),
        ],
        tx,
    );
    sleep(ms(100)).await;
    checkers.shutdown().await;
}
