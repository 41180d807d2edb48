//! Health checks against fake servers on 127.0.0.1: real sockets, bounded waits.
//!
//! Every HTTP outcome is checked on both ways a request goes out, which must agree: byte for
//! byte as configured (the seed's `GET /health_check.html HTTP/1.0` + `User-agent:
//! Proxy-Check`) and through reqwest (HTTP/1.1 with `Host`). TLS faults a web server does not
//! produce on demand (a handshake that never ends, a reset during it) are here too; the
//! certificate faults against real nginx and HAProxy are in `tls_checks.rs`.
#[path = "support/test_pki.rs"]
mod test_pki;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use lb::{
    config::{HttpCheck, HttpExpect, Verify},
    dataplane::ids::ServerId,
    health::{
        AgentAdmin, AgentSpec, AgentVerdict, Budget, CheckEvent, CheckResult, CheckSpec,
        CheckStatus, CheckTarget, Health, Intervals, Probe, TlsSpec, run_agent, run_check,
        spawn_checkers,
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

/// The two ways an HTTP check's request goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The seed's request, byte for byte.
    Exact,
    /// HTTP/1.1 with Host, through reqwest.
    Client,
}

const WAYS: [Way; 2] = [Way::Exact, Way::Client];

fn request(way: Way) -> HttpCheck {
    let (version, header) = match way {
        Way::Exact => ("HTTP/1.0", "User-agent: Proxy-Check"),
        Way::Client => ("HTTP/1.1", "Host: web.test"),
    };
    HttpCheck {
        method: "GET".into(),
        uri: "/health_check.html".into(),
        version: version.into(),
        headers: vec![header.into()],
        ..HttpCheck::default()
    }
}

fn budget(inter: Duration) -> Budget {
    Budget {
        inter,
        timeout_connect: None,
        timeout_check: None,
    }
}

fn http_spec(way: Way, addr: SocketAddr, inter: Duration) -> CheckSpec {
    let spec = CheckSpec {
        addr,
        probe: Probe::Http(request(way)),
        tls: None,
        budget: budget(inter),
    };
    assert_eq!(spec.sends_exact_bytes(), way == Way::Exact);
    spec
}

fn with_expect(mut spec: CheckSpec, expect: HttpExpect) -> CheckSpec {
    if let Probe::Http(h) = &mut spec.probe {
        h.expect = expect;
    }
    spec
}

/// Reads a request head (up to the empty line) or whatever came before EOF.
async fn read_request(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
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

/// A one-connection HTTP server: reads the request, writes `reply` in its parts (if any)
/// with `delay` before each, then keeps the connection open for `hold`. Returns its address
/// and the request it saw.
async fn fake_server_parts(
    reply: Vec<&'static [u8]>,
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
        for part in reply {
            sleep(delay).await;
            let _ = s.write_all(part).await;
        }
        sleep(hold).await;
    });
    (addr, rx, task)
}

async fn fake_server(
    reply: Option<&'static [u8]>,
    delay: Duration,
    hold: Duration,
) -> (SocketAddr, oneshot::Receiver<Vec<u8>>, JoinHandle<()>) {
    fake_server_parts(reply.into_iter().collect(), delay, hold).await
}

fn assert_result(r: &CheckResult, status: CheckStatus, code: Option<u16>, info: &str) {
    assert_eq!(
        (r.status, r.code, r.info.as_str()),
        (status, code, info),
        "{r:?}"
    );
}

async fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test]
async fn refused_is_layer4_connection_problem() {
    let addr = refused_addr().await;
    for way in WAYS {
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L4Con, None, "Connection refused");
        assert!(r.duration < ms(500), "{way:?}: {r:?}");
    }
    let tcp = CheckSpec {
        probe: Probe::Tcp,
        ..http_spec(Way::Exact, addr, ms(2000))
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
        ..http_spec(Way::Exact, l.local_addr().expect("addr"), ms(2000))
    };
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L4Ok, None, "");
}

#[tokio::test]
async fn correct_200_and_the_request_sent() {
    for way in WAYS {
        let (addr, req, _t) = fake_server(
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ms(0),
            ms(500),
        )
        .await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Ok, Some(200), "");
        assert_eq!(r.reason.as_deref(), Some("OK"));
        let seen = timeout(ms(2000), req)
            .await
            .expect("in time")
            .expect("request");
        match way {
            Way::Exact => assert_eq!(seen, SEED_REQUEST),
            // HAProxy 2.6's request (captured with `http-check send meth GET uri
            // /health_check.html ver HTTP/1.1 hdr Host web.test`), and reqwest's `accept`.
            Way::Client => assert_eq!(
                String::from_utf8_lossy(&seen),
                "GET /health_check.html HTTP/1.1\r\nhost: web.test\r\nconnection: close\r\naccept: */*\r\n\r\n"
            ),
        }
    }
}

#[tokio::test]
async fn server_closing_after_the_answer_still_passes() {
    for way in WAYS {
        // HTTP/1.0 style: answer then close at once.
        let (addr, _req, _t) = fake_server(Some(b"HTTP/1.0 302 Found\r\n\r\n"), ms(0), ms(0)).await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Ok, Some(302), "");
    }
}

#[tokio::test]
async fn not_found_is_layer7_wrong_status_with_the_servers_phrase() {
    for way in WAYS {
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 404 Not Found\r\n\r\n"), ms(0), ms(500)).await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Sts, Some(404), "Not Found");

        // The phrase is the server's own, not a table's.
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 404 Nicht Gefunden\r\n\r\n"), ms(0), ms(500)).await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Sts, Some(404), "Nicht Gefunden");
    }
}

#[tokio::test]
async fn server_error_is_layer7_wrong_status() {
    for way in WAYS {
        let (addr, _req, _t) = fake_server(
            Some(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
            ms(0),
            ms(500),
        )
        .await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Sts, Some(500), "Internal Server Error");
    }
}

#[tokio::test]
async fn expect_status_overrides_the_default_range() {
    for way in WAYS {
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 404 Not Found\r\n\r\n"), ms(0), ms(500)).await;
        let spec = with_expect(
            http_spec(way, addr, ms(2000)),
            HttpExpect::Status(vec![(404, 404)]),
        );
        assert_result(&run_check(&spec).await, CheckStatus::L7Ok, Some(404), "");

        let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(0), ms(500)).await;
        let spec = CheckSpec { addr, ..spec };
        assert_result(&run_check(&spec).await, CheckStatus::L7Sts, Some(200), "OK");

        // rstatus goes the same way, byte for byte or not.
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 503 Busy\r\n\r\n"), ms(0), ms(500)).await;
        let spec = with_expect(
            CheckSpec { addr, ..spec },
            HttpExpect::StatusRegex {
                pattern: "^5".into(),
                negate: true,
            },
        );
        assert_eq!(spec.sends_exact_bytes(), way == Way::Exact);
        assert_result(
            &run_check(&spec).await,
            CheckStatus::L7Sts,
            Some(503),
            "Busy",
        );
    }
}

#[tokio::test]
async fn garbage_is_layer7_invalid_response() {
    for way in WAYS {
        let (addr, _req, _t) = fake_server(Some(b"garbage\r\n"), ms(0), ms(500)).await;
        let started = Instant::now();
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Rsp, None, "");
        assert!(
            started.elapsed() < ms(1000),
            "{way:?}: judged without waiting: {r:?}"
        );
    }
}

#[tokio::test]
async fn closed_before_a_status_line_is_layer7_invalid_response() {
    for way in WAYS {
        let (addr, _req, _t) = fake_server(None, ms(0), ms(0)).await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Rsp, None, "");

        // Half a head, then close.
        let (addr, _req, _t) = fake_server(Some(b"HTTP/1.1 200 OK\r\nServ"), ms(0), ms(0)).await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Rsp, None, "");
    }
}

/// A listener that reads the request and closes with an RST.
async fn resetting_server() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = timeout(ms(500), s.read(&mut buf)).await;
            // Close with RST. (Deprecated because a non-zero linger blocks on drop; a zero
            // one does not.)
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn reset_before_any_answer_is_a_socket_error() {
    for way in WAYS {
        let (addr, _t) = resetting_server().await;
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_eq!(r.status, CheckStatus::SockErr, "{way:?}: {r:?}");
        assert_eq!(r.info, "Connection reset by peer");
    }
}

#[tokio::test]
async fn silent_server_is_layer7_timeout_after_inter() {
    for way in WAYS {
        let (addr, req, _t) = fake_server(None, ms(0), ms(3000)).await;
        let r = run_check(&http_spec(way, addr, ms(300))).await;
        assert_result(&r, CheckStatus::L7Tout, None, "");
        assert!(
            r.duration >= ms(300) && r.duration < ms(1000),
            "{way:?}: {r:?}"
        );
        // The request did go out.
        let seen = timeout(ms(2000), req)
            .await
            .expect("in time")
            .expect("request");
        assert!(
            seen.starts_with(b"GET /health_check.html HTTP/1."),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn slow_answer_beyond_timeout_check_is_layer7_timeout() {
    for way in WAYS {
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(600), ms(500)).await;
        let spec = CheckSpec {
            budget: Budget {
                inter: ms(5000),
                timeout_connect: Some(ms(1000)),
                timeout_check: Some(ms(200)),
            },
            ..http_spec(way, addr, ms(5000))
        };
        let r = run_check(&spec).await;
        assert_result(&r, CheckStatus::L7Tout, None, "");
        assert!(
            r.duration >= ms(200) && r.duration < ms(600),
            "{way:?}: {r:?}"
        );

        // The same answer in time passes, and the duration covers the wait.
        let (addr, _req, _t) =
            fake_server(Some(b"HTTP/1.1 200 OK\r\n\r\n"), ms(100), ms(500)).await;
        let spec = CheckSpec { addr, ..spec };
        let r = run_check(&spec).await;
        assert_result(&r, CheckStatus::L7Ok, Some(200), "");
        assert!(r.duration >= ms(100), "{r:?}");
    }
}

/// A listener whose accept queue is full: further SYNs are dropped and connects hang.
async fn full_backlog() -> (SocketAddr, tokio::net::TcpListener, Vec<TcpStream>) {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    let listener = sock.listen(0).expect("listen");
    // Fill the accept queue (never accepted).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = timeout(ms(200), TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    (addr, listener, fillers)
}

#[tokio::test]
async fn full_backlog_is_layer4_timeout() {
    let (addr, _listener, _fillers) = full_backlog().await;
    let specs = [
        CheckSpec {
            probe: Probe::Tcp,
            ..http_spec(Way::Exact, addr, ms(300))
        },
        http_spec(Way::Client, addr, ms(300)),
    ];
    for spec in specs {
        let r = run_check(&spec).await;
        assert_result(&r, CheckStatus::L4Tout, None, "");
        assert!(r.duration >= ms(300) && r.duration < ms(1000), "{r:?}");
        // `timeout connect` bounds it when `timeout check` is set.
        let spec = CheckSpec {
            budget: Budget {
                inter: ms(300),
                timeout_connect: Some(ms(100)),
                timeout_check: Some(ms(5000)),
            },
            ..spec
        };
        let r = run_check(&spec).await;
        assert_result(&r, CheckStatus::L4Tout, None, "");
        assert!(r.duration >= ms(100) && r.duration < ms(300), "{r:?}");
    }
}

fn body(text: &str, negate: bool) -> HttpExpect {
    HttpExpect::Body {
        text: text.into(),
        negate,
    }
}

#[tokio::test]
async fn body_matches_whatever_the_framing() {
    let framings: [&[&[u8]]; 3] = [
        // Content-Length, in two writes.
        &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n<html>hello",
            b" world</html>",
        ],
        // Chunked.
        &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<html>\r\n",
            b"12\r\nhello world</html>\r\n0\r\n\r\n",
        ],
        // HTTP/1.0, up to the close.
        &[b"HTTP/1.0 200 OK\r\n\r\n<html>hello", b" world</html>"],
    ];
    for parts in framings {
        for (expect, want, info) in [
            (body("hello world", false), CheckStatus::L7Ok, ""),
            (
                body("goodbye", false),
                CheckStatus::L7Rsp,
                "HTTP content check did not match",
            ),
            (
                body("hello", true),
                CheckStatus::L7Rsp,
                "HTTP check matched unwanted content",
            ),
            (
                HttpExpect::BodyRegex {
                    pattern: r"h[e]llo\s+w.rld".into(),
                    negate: false,
                },
                CheckStatus::L7Ok,
                "",
            ),
        ] {
            for way in WAYS {
                let (addr, _req, _t) = fake_server_parts(parts.to_vec(), ms(20), ms(0)).await;
                let spec = with_expect(http_spec(way, addr, ms(2000)), expect.clone());
                // A body match always goes through reqwest, HTTP/1.0 or not.
                assert!(!spec.sends_exact_bytes());
                let r = run_check(&spec).await;
                assert_eq!(
                    (r.status, r.info.as_str()),
                    (want, info),
                    "{parts:?} {expect:?}: {r:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn body_checks_without_a_body_and_without_an_end() {
    // No body at all.
    let (addr, _req, _t) = fake_server(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ms(0),
        ms(500),
    )
    .await;
    let spec = with_expect(http_spec(Way::Client, addr, ms(2000)), body("x", false));
    let r = run_check(&spec).await;
    assert_result(
        &r,
        CheckStatus::L7Rsp,
        Some(200),
        "HTTP content check could not find a response body",
    );
    // A body that never ends: the match is found before, and decides (HAProxy stops reading
    // there too).
    let (addr, _req, _t) = fake_server(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nstatus: ready\n"),
        ms(0),
        ms(3000),
    )
    .await;
    let spec = with_expect(http_spec(Way::Client, addr, ms(1000)), body("ready", false));
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L7Ok, Some(200), "");
    assert!(r.duration < ms(500), "{r:?}");
    // Without the match, it runs out of time.
    let (addr, _req, _t) = fake_server(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nstatus: busy\n"),
        ms(0),
        ms(3000),
    )
    .await;
    let spec = with_expect(http_spec(Way::Client, addr, ms(300)), body("ready", false));
    let r = run_check(&spec).await;
    assert_result(&r, CheckStatus::L7Tout, None, "");
}

// --- TLS faults that need a misbehaving server ----------------------------------------------

fn pki() -> test_pki::TestPki {
    let dir = std::env::temp_dir().join(format!(
        "lb-health-pki-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    test_pki::TestPki::new(&dir)
}

fn tls_spec(sni: Option<&str>, pki: &test_pki::TestPki) -> TlsSpec {
    TlsSpec {
        sni: sni.map(str::to_string),
        verify: Verify::Required,
        ca_file: Some(pki.ca.clone()),
    }
}

/// A TLS server answering every request with 200.
async fn tls_server(config: Arc<rustls::ServerConfig>) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(s).await {
                    let _ = read_request(&mut s).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nOK\n")
                        .await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// A server accepting connections and never answering.
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

/// The same server, checked over TLS with a TCP check and with an HTTP check (reqwest).
fn tls_checks(addr: SocketAddr, tls: TlsSpec, inter: Duration) -> [CheckSpec; 2] {
    let http = CheckSpec {
        tls: Some(tls),
        ..http_spec(Way::Client, addr, inter)
    };
    [
        CheckSpec {
            probe: Probe::Tcp,
            ..http.clone()
        },
        http,
    ]
}

#[tokio::test]
async fn tls_checks_pass_on_a_good_server() {
    let pki = pki();
    let (addr, _t) = tls_server(pki.good.server_config()).await;
    let [tcp, http] = tls_checks(addr, tls_spec(Some(test_pki::NAME), &pki), ms(2000));
    assert_result(&run_check(&tcp).await, CheckStatus::L6Ok, None, "");
    assert_result(&run_check(&http).await, CheckStatus::L7Ok, Some(200), "");
}

#[tokio::test]
async fn handshake_without_an_answer_is_layer6_timeout() {
    let pki = pki();
    let (addr, _t) = mute_server().await;
    for spec in tls_checks(addr, tls_spec(Some(test_pki::NAME), &pki), ms(300)) {
        let r = run_check(&spec).await;
        assert_result(&r, CheckStatus::L6Tout, None, "");
        assert!(r.duration >= ms(300) && r.duration < ms(1000), "{r:?}");
    }
}

#[tokio::test]
async fn tls_check_that_cannot_connect_is_layer4() {
    let pki = pki();
    let (addr, _listener, _fillers) = full_backlog().await;
    for spec in tls_checks(addr, tls_spec(Some(test_pki::NAME), &pki), ms(300)) {
        assert_result(&run_check(&spec).await, CheckStatus::L4Tout, None, "");
    }
    let addr = refused_addr().await;
    for spec in tls_checks(addr, tls_spec(None, &pki), ms(2000)) {
        assert_result(
            &run_check(&spec).await,
            CheckStatus::L4Con,
            None,
            "Connection refused",
        );
    }
}

#[tokio::test]
async fn reset_or_plain_text_during_the_handshake_is_a_handshake_failure() {
    let pki = pki();
    let (reset, _a) = resetting_server().await;
    // A plain HTTP server answers the ClientHello with an error page, as nginx does.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain = l.local_addr().expect("addr");
    let _b = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    for addr in [reset, plain] {
        for spec in tls_checks(addr, tls_spec(Some(test_pki::NAME), &pki), ms(2000)) {
            assert_result(
                &run_check(&spec).await,
                CheckStatus::L6Rsp,
                None,
                "SSL handshake failure",
            );
        }
    }
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_fails_every_check() {
    let addr = refused_addr().await;
    let tls = TlsSpec {
        sni: None,
        verify: Verify::Required,
        ca_file: Some("/nonexistent/ca.pem".into()),
    };
    for spec in tls_checks(addr, tls, ms(2000)) {
        assert_result(
            &run_check(&spec).await,
            CheckStatus::SockErr,
            None,
            "Couldn't open the ca-file '/nonexistent/ca.pem' (No such file or directory).",
        );
    }
}

// --- agent checks ---------------------------------------------------------------------------

/// An agent answering each connection with the next reply (and closing), recording what it
/// was sent.
async fn agent(replies: Vec<&'static [u8]>) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    agent_on("127.0.0.1:0", replies).await
}

/// [`agent`] listening on `bind`.
async fn agent_on(
    bind: &str,
    replies: Vec<&'static [u8]>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind(bind).await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for reply in replies {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = [0u8; 256];
            let n = timeout(ms(300), s.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let _ = tx.send(buf[..n].to_vec());
            let _ = s.write_all(reply).await;
        }
    });
    (addr, rx)
}

fn agent_spec(addr: SocketAddr, send: &[u8], inter: Duration) -> AgentSpec {
    AgentSpec {
        addr,
        send: send.to_vec(),
        budget: budget(inter),
    }
}

#[tokio::test]
async fn agent_replies_and_failures() {
    let (addr, mut sent) = agent(vec![
        b"up 75%\n",
        b"drain\r\n",
        b"down # disk full\n",
        b"",
        b"maint, ready up",
    ])
    .await;
    let spec = agent_spec(addr, b"ping\n", ms(1000));
    let r = run_agent(&spec).await;
    assert_eq!(sent.recv().await.as_deref(), Some(&b"ping\n"[..]));
    assert_eq!(
        (r.verdict, r.weight.as_deref(), r.admin),
        (AgentVerdict::Up, Some("75%"), None)
    );
    assert_result(&r.result, CheckStatus::L7Ok, Some(0), "via agent : up");
    let r = run_agent(&spec).await;
    assert_eq!(
        (r.verdict, r.admin),
        (AgentVerdict::Neutral, Some(AgentAdmin::Drain))
    );
    let r = run_agent(&spec).await;
    assert_eq!(r.verdict, AgentVerdict::Down);
    assert_result(
        &r.result,
        CheckStatus::L7Sts,
        Some(0),
        "via agent : down (disk full)",
    );
    let r = run_agent(&spec).await;
    assert_eq!(r.verdict, AgentVerdict::Failed(CheckStatus::L7Rsp));
    assert_result(
        &r.result,
        CheckStatus::L7Rsp,
        None,
        "TCPCHK got an empty response at step 2",
    );
    // A line without its end is ignored.
    let r = run_agent(&spec).await;
    assert_eq!(r.verdict, AgentVerdict::Ignored);
    // Gone: refused, which never takes a server down.
    let r = run_agent(&spec).await;
    assert_eq!(r.verdict, AgentVerdict::Failed(CheckStatus::L4Con));
    assert_result(&r.result, CheckStatus::L4Con, None, "Connection refused");
    // Silent: a Layer7 timeout after agent-inter.
    let (mute, _m) = mute_server().await;
    let r = run_agent(&agent_spec(mute, b"", ms(300))).await;
    assert_eq!(r.verdict, AgentVerdict::Failed(CheckStatus::L7Tout));
    assert!(
        r.result.duration >= ms(300) && r.result.duration < ms(1000),
        "{r:?}"
    );
}

// --- the scheduler --------------------------------------------------------------------------

fn target(id: u32, spec: CheckSpec, inter: Duration, rise: u32, fall: u32) -> CheckTarget {
    CheckTarget {
        id: ServerId(id),
        spec: Some(spec),
        intervals: Intervals {
            inter,
            fastinter: None,
            downinter: None,
        },
        health: Health::new(rise, fall),
        agent: None,
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

async fn next_event(rx: &mut mpsc::Receiver<CheckEvent>, wait: Duration) -> Option<CheckEvent> {
    timeout(wait, rx.recv()).await.ok().flatten()
}

async fn next_health(
    rx: &mut mpsc::Receiver<CheckEvent>,
    wait: Duration,
) -> Option<lb::health::HealthEvent> {
    match next_event(rx, wait).await? {
        CheckEvent::Health(e) => Some(e),
        CheckEvent::Agent(e) => panic!("no agent here: {e:?}"),
    }
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
            target(0, http_spec(Way::Exact, mute, ms(900)), ms(900), 2, 2),
            target(1, http_spec(Way::Client, ok, ms(100)), ms(100), 2, 2),
        ],
        tx,
    );
    let mut ok_events = 0;
    let deadline = Instant::now() + ms(2000);
    while ok_events < 4 && Instant::now() < deadline {
        let Some(ev) = next_health(&mut rx, ms(2000)).await else {
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
    let refused = refused_addr().await;
    let (tx, mut rx) = mpsc::channel(64);
    let _checkers = spawn_checkers(
        vec![target(
            7,
            http_spec(Way::Exact, refused, ms(100)),
            ms(100),
            2,
            2,
        )],
        tx,
    );
    let first = next_health(&mut rx, ms(2000)).await.expect("first event");
    assert_eq!(first.server, ServerId(7));
    assert_eq!(first.result.status, CheckStatus::L4Con);
    assert!(first.outcome.log);
    assert_eq!(first.outcome.transition, Some(lb::health::Transition::Down));
    assert_eq!(first.outcome.health.status_text(1), "0/2 DOWN");
    let second = next_health(&mut rx, ms(2000)).await.expect("second event");
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
            target(0, http_spec(Way::Exact, ok, ms(1000)), ms(1000), 2, 2),
            target(1, http_spec(Way::Exact, ok, ms(1000)), ms(1000), 2, 2),
        ],
        tx,
    );
    let a = next_health(&mut rx, ms(2000)).await.expect("first");
    let at_a = started.elapsed();
    let b = next_health(&mut rx, ms(2000)).await.expect("second");
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
    let checkers = spawn_checkers(
        vec![target(3, http_spec(Way::Exact, ok, ms(100)), ms(100), 2, 2)],
        tx,
    );
    let ev = next_health(&mut rx, ms(2000)).await.expect("a check");
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
    let ev = next_health(&mut rx, ms(2000))
        .await
        .expect("checks resumed");
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
    let checkers = spawn_checkers(
        vec![target(
            0,
            http_spec(Way::Client, ok, ms(100)),
            ms(100),
            2,
            2,
        )],
        tx,
    );
    checkers.set_enabled(ServerId(0), false);
    while timeout(ms(50), rx.recv()).await.is_ok_and(|e| e.is_some()) {}
    assert!(next_event(&mut rx, ms(400)).await.is_none());
    checkers.set_enabled(ServerId(0), true);
    assert!(next_event(&mut rx, ms(2000)).await.is_some());
}

#[tokio::test]
async fn agents_keep_checking_in_maintenance_and_report_unapplied() {
    let (addr, _sent) = agent(vec![b"maint\n", b"ready up\n", b"up\n"]).await;
    let (tx, mut rx) = mpsc::channel(64);
    let checkers = spawn_checkers(
        vec![CheckTarget {
            id: ServerId(5),
            spec: None,
            intervals: Intervals {
                inter: ms(100),
                fastinter: None,
                downinter: None,
            },
            health: Health::new(2, 2),
            agent: Some(agent_spec(addr, b"ping\n", ms(100))),
        }],
        tx,
    );
    let CheckEvent::Agent(e) = next_event(&mut rx, ms(2000)).await.expect("agent") else {
        panic!("an agent event")
    };
    assert_eq!(
        (e.server, e.report.admin),
        (ServerId(5), Some(AgentAdmin::Maint))
    );
    // Applying maintenance (as the daemon does for `maint`) does not stop the agent.
    checkers.enter_maintenance(ServerId(5));
    let CheckEvent::Agent(e) = next_event(&mut rx, ms(2000)).await.expect("agent") else {
        panic!("an agent event")
    };
    assert_eq!(e.report.admin, Some(AgentAdmin::Ready));
    checkers.leave_maintenance(ServerId(5));
    let out = checkers.apply_agent(ServerId(5), &e.report).expect("agent");
    // Up already: the status changed from INI, so HAProxy logs it; no transition.
    assert_eq!((out.log, out.transition), (true, None));
    assert_eq!(
        checkers.last_agent_result(ServerId(5)).map(|r| r.info),
        Some("via agent : up".into())
    );
    checkers.shutdown().await;
}

#[tokio::test]
async fn absurd_intervals_do_not_panic() {
    let addr = refused_addr().await;
    let spec = CheckSpec {
        budget: Budget {
            inter: Duration::MAX,
            timeout_check: Some(Duration::MAX),
            timeout_connect: Some(Duration::MAX),
        },
        ..http_spec(Way::Exact, addr, Duration::MAX)
    };
    assert_eq!(run_check(&spec).await.status, CheckStatus::L4Con);
    let client = CheckSpec {
        probe: Probe::Http(request(Way::Client)),
        ..spec.clone()
    };
    assert_eq!(run_check(&client).await.status, CheckStatus::L4Con);
    let (tx, _rx) = mpsc::channel(4);
    let checkers = spawn_checkers(
        vec![
            target(0, spec.clone(), Duration::MAX, 2, 2),
            target(1, client, Duration::MAX, 2, 2),
        ],
        tx,
    );
    sleep(ms(100)).await;
    checkers.shutdown().await;
}

// --- IPv6 servers ----------------------------------------------------------------------------

/// Answers every connection on `[::1]` with `reply`, recording the request seen.
async fn v6_server(reply: &'static [u8]) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind("[::1]:0").await.expect("bind ::1");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let req = read_request(&mut s).await;
            let _ = tx.send(req);
            let _ = s.write_all(reply).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn checks_reach_ipv6_servers() {
    let (addr, mut seen) = v6_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    assert!(addr.is_ipv6());
    for way in WAYS {
        let r = run_check(&http_spec(way, addr, ms(2000))).await;
        assert_result(&r, CheckStatus::L7Ok, Some(200), "");
        let req = timeout(ms(2000), seen.recv())
            .await
            .expect("in time")
            .expect("request");
        assert!(
            req.starts_with(b"GET /health_check.html HTTP/1."),
            "{way:?}: {}",
            String::from_utf8_lossy(&req)
        );
    }
    // Through reqwest without a Host header of the check's: the URL's, bracketed.
    let mut bare = http_spec(Way::Client, addr, ms(2000));
    if let Probe::Http(h) = &mut bare.probe {
        h.headers.clear();
    }
    assert_result(&run_check(&bare).await, CheckStatus::L7Ok, Some(200), "");
    let req = timeout(ms(2000), seen.recv())
        .await
        .expect("in time")
        .expect("request");
    let host = format!("host: [::1]:{}\r\n", addr.port());
    assert!(
        String::from_utf8_lossy(&req).contains(&host),
        "{}",
        String::from_utf8_lossy(&req)
    );
    let tcp = CheckSpec {
        probe: Probe::Tcp,
        ..http_spec(Way::Exact, addr, ms(2000))
    };
    assert_result(&run_check(&tcp).await, CheckStatus::L4Ok, None, "");
    let refused = {
        let l = std::net::TcpListener::bind("[::1]:0").expect("bind ::1");
        l.local_addr().expect("addr")
    };
    let r = run_check(&http_spec(Way::Client, refused, ms(2000))).await;
    assert_result(&r, CheckStatus::L4Con, None, "Connection refused");
}

#[tokio::test]
async fn agent_checks_reach_ipv6_agents() {
    let (addr, mut sent) = agent_on("[::1]:0", vec![b"up 50%\n"]).await;
    assert!(addr.is_ipv6());
    let r = run_agent(&agent_spec(addr, b"ping\n", ms(1000))).await;
    assert_eq!(sent.recv().await.as_deref(), Some(&b"ping\n"[..]));
    assert_eq!(
        (r.verdict, r.weight.as_deref()),
        (AgentVerdict::Up, Some("50%"))
    );
}
