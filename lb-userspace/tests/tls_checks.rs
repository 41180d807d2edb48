//! TLS and content health checks against real nginx, with lb and HAProxy 2.6 checking the
//! same servers side by side (seed topology, one haproxy.cfg): their `Health check` lines
//! must be the same, durations aside.
//!
//! web10 runs nginx with a test CA's certificates: good, expired, for another name, a
//! server that rejects an unknown SNI, self-signed, and plain HTTP on the port a TLS check
//! goes to; and small servers for the faults nginx does not produce on demand: silent after
//! accept (handshake timeout), RST during the handshake, SYNs dropped (full backlog).
#[path = "support/side_by_side.rs"]
mod side_by_side;
#[path = "support/test_pki.rs"]
mod test_pki;

use std::{net::SocketAddr, time::Duration};

use lb_testbed::topo::{Routing, Topology};
use side_by_side::{
    Haproxy, LogSink, Nginx, assert_same, per_server, start_lb, wait_both, without_seed_info,
};
use test_pki::TestPki;

const WEB10: &str = "10.200.10.10";
const LB_LOG: u16 = 5514;
const HAPROXY_LOG: u16 = 5515;

/// The faults nginx does not make, served until dropped.
struct FaultServers {
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn fault_servers(ns: &lb_testbed::netns::Netns) -> FaultServers {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let _thread = ns
        .spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                use tokio::{io::AsyncReadExt, net::TcpSocket};
                let listen = |port: u16, backlog: u32| -> anyhow::Result<tokio::net::TcpListener> {
                    let s = TcpSocket::new_v4()?;
                    s.set_reuseaddr(true)?;
                    s.bind(format!("{WEB10}:{port}").parse()?)?;
                    Ok(s.listen(backlog)?)
                };
                // Accepts and never speaks: a handshake that never ends.
                let mute = listen(8450, 64)?;
                // Reads the ClientHello and resets.
                let reset = listen(8452, 64)?;
                // A full accept queue: SYNs are dropped, connects never finish.
                let full = listen(8453, 0)?;
                let addr: SocketAddr = format!("{WEB10}:8453").parse()?;
                let mut fillers = Vec::new();
                for _ in 0..4 {
                    if let Ok(Ok(s)) = tokio::time::timeout(
                        Duration::from_millis(200),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    {
                        fillers.push(s);
                    }
                }
                let _ = ready_tx.send(());
                let mut held = Vec::new();
                loop {
                    tokio::select! {
                        Ok((s, _)) = mute.accept() => held.push(s),
                        Ok((mut s, _)) = reset.accept() => {
                            tokio::spawn(async move {
                                let mut buf = [0u8; 4096];
                                let _ = s.read(&mut buf).await;
                                #[allow(deprecated)]
                                let _ = s.set_linger(Some(Duration::ZERO));
                            });
                        }
                        _ = &mut stopped => break,
                        else => break,
                    }
                    let _ = (&full, &fillers);
                }
                Ok(())
            })
        })
        .expect("fault servers");
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("fault servers ready");
    FaultServers { _stop: stop }
}

fn nginx_tls(topo: &Topology, pki: &TestPki) -> Nginx {
    let ssl = |port: u16, pem: &test_pki::Pem, extra: &str| {
        format!(
            "  server {{ listen {WEB10}:{port} ssl{extra}; ssl_certificate {}; ssl_certificate_key {}; root {{dir}}/www; }}\n",
            pem.cert.display(),
            pem.key.display()
        )
    };
    let mut servers = format!("  server {{ listen {WEB10}:80; root {{dir}}/www; }}\n");
    servers += &ssl(8443, &pki.good, "");
    servers += &ssl(8444, &pki.expired, "");
    servers += &ssl(8445, &pki.other_name, "");
    // An unknown SNI is refused with an alert; web.test gets the good certificate.
    servers += &format!(
        "  server {{ listen {WEB10}:8446 ssl default_server; ssl_reject_handshake on; }}\n"
    );
    servers += &ssl(8446, &pki.good, "").replace(
        "; ssl_certificate",
        "; server_name web.test; ssl_certificate",
    );
    servers += &ssl(8448, &pki.self_signed, "");
    let addrs: Vec<SocketAddr> = [80, 8443, 8444, 8445, 8446, 8448]
        .iter()
        .map(|p| format!("{WEB10}:{p}").parse().expect("addr"))
        .collect();
    let web10 = &topo.backend("web10").ns;
    let nginx = Nginx::start(web10, "nginx-tls", &servers, &addrs);
    std::fs::write(nginx.www().join("health_check.html"), "OK\n").expect("page");
    std::fs::write(
        nginx.www().join("index.html"),
        "<html><body>hello world</body></html>\n",
    )
    .expect("page");
    std::fs::write(nginx.www().join("empty.html"), "").expect("page");
    nginx
}

const DEFAULTS: &str = "defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 5s
    timeout client 50s
    timeout server 50s

frontend main
    bind 10.200.0.1:80
";

/// Runs HAProxy and lb on the same `backends` (the frontend sends to the first) and compares
/// the `Health check` lines of `servers`.
fn compare(topo: &Topology, tag: &str, backends: &str, servers: &[&str]) {
    let lb_log = LogSink::start(&topo.lb, LB_LOG);
    let haproxy_log = LogSink::start(&topo.lb, HAPROXY_LOG);
    let first = backends.split_whitespace().nth(1).expect("a backend");
    let cfg = format!(
        "global\n    log 127.0.0.1:{HAPROXY_LOG} local6\n\n{DEFAULTS}    default_backend {first}\n\n{backends}"
    );
    let _haproxy = Haproxy::start(&topo.lb, tag, &cfg);
    let instance = format!("{tag}{}", topo.tag);
    let _lb = start_lb(topo, &instance, &cfg, LB_LOG);
    let health = |l: &str| l.starts_with("Health check for server ");
    // Every server's first check, then a little longer: a second line would be a change
    // neither side should make.
    wait_both(&lb_log, &haproxy_log, Duration::from_secs(20), |lines| {
        per_server(lines, servers, health)
            .values()
            .all(|l| !l.is_empty())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let lb_lines: Vec<String> = lb_log
        .lines()
        .iter()
        .map(|l| without_seed_info(l))
        .collect();
    let got = per_server(&lb_lines, servers, health);
    // HAProxy appends the OS error to a handshake failure when errno still holds it as the
    // check is reported: for a reset it does or not from one run to the next. lb prints the
    // stable part (see `health::tls::handshake_info`).
    let haproxy_lines: Vec<String> = haproxy_log
        .lines()
        .iter()
        .map(|l| {
            l.replace(
                "SSL handshake failure (Connection reset by peer)",
                "SSL handshake failure",
            )
        })
        .collect();
    let want = per_server(&haproxy_lines, servers, health);
    assert!(
        want.values().all(|l| !l.is_empty()),
        "HAProxy did not check every server: {want:#?}"
    );
    assert_same(tag, &got, &want);
}

#[test]
fn tls_faults_log_as_haproxy_does() {
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let pki = TestPki::new(&std::env::temp_dir().join(format!("lbt-{}-pki", topo.tag)));
    let _nginx = nginx_tls(&topo, &pki);
    let _faults = fault_servers(&topo.backend("web10").ns);
    let ca = pki.ca.display();
    let backends = format!(
        "backend tls
    option httpchk
    http-check send meth GET uri /health_check.html ver HTTP/1.1 hdr Host web.test
    default-server check inter 1000 fall 2 rise 2 check-ssl check-sni web.test verify required ca-file {ca}
    server good {WEB10}:8443
    server expired {WEB10}:8444
    server wrongname {WEB10}:8445
    server wrongsni {WEB10}:8446 check-sni nope.test
    server rightsni {WEB10}:8446
    server plainport {WEB10}:80
    server selfsigned {WEB10}:8448
    server refused {WEB10}:8449
    server mute {WEB10}:8450
    server reset {WEB10}:8452
    server synlost {WEB10}:8453

backend nosni
    option httpchk
    http-check send meth GET uri /health_check.html ver HTTP/1.1 hdr Host web.test
    default-server check inter 1000 fall 2 rise 2 check-ssl verify required ca-file {ca}
    server nosni-wrongname {WEB10}:8445
    server nosni-expired {WEB10}:8444

backend handshake
    default-server check inter 1000 fall 2 rise 2 check-ssl verify none
    server tcp-good {WEB10}:8443
    server tcp-selfsigned {WEB10}:8448
    server tcp-plainport {WEB10}:80
    server tcp-mute {WEB10}:8450

backend rule
    option httpchk
    http-check connect port 8443 ssl sni web.test
    http-check send meth GET uri /health_check.html ver HTTP/1.1 hdr Host web.test
    server rule-good {WEB10}:80 check inter 1000 fall 2 rise 2 verify required ca-file {ca}
"
    );
    compare(
        &topo,
        "tls",
        &backends,
        &[
            "tls/good",
            "tls/expired",
            "tls/wrongname",
            "tls/wrongsni",
            "tls/rightsni",
            "tls/plainport",
            "tls/selfsigned",
            "tls/refused",
            "tls/mute",
            "tls/reset",
            "tls/synlost",
            "nosni/nosni-wrongname",
            "nosni/nosni-expired",
            "handshake/tcp-good",
            "handshake/tcp-selfsigned",
            "handshake/tcp-plainport",
            "handshake/tcp-mute",
            "rule/rule-good",
        ],
    );
}

#[test]
fn content_checks_log_as_haproxy_does() {
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let pki = TestPki::new(&std::env::temp_dir().join(format!("lbt-{}-pki", topo.tag)));
    let _nginx = nginx_tls(&topo, &pki);
    let backend = |name: &str, uri: &str, expect: &str| {
        format!(
            "backend {name}
    option httpchk
    http-check send meth GET uri {uri} ver HTTP/1.1 hdr Host web.test
    http-check expect {expect}
    server {name} {WEB10}:80 check inter 1000 fall 2 rise 2

"
        )
    };
    let backends = [
        backend("string", "/index.html", "string hello"),
        backend("string-miss", "/index.html", "string nothere"),
        backend("not-string", "/index.html", "! string hello"),
        backend("rstring", "/index.html", "rstring h[e]llo\\ w.rld"),
        backend("not-rstring", "/index.html", "! rstring ^hello"),
        backend("rstatus", "/nothere", "rstatus ^2"),
        backend("not-status", "/index.html", "! status 200"),
        backend("no-body", "/empty.html", "string x"),
        backend("no-body-not", "/empty.html", "! rstring x"),
    ]
    .concat();
    let servers = [
        "string/string",
        "string-miss/string-miss",
        "not-string/not-string",
        "rstring/rstring",
        "not-rstring/not-rstring",
        "rstatus/rstatus",
        "not-status/not-status",
        "no-body/no-body",
        "no-body-not/no-body-not",
    ];
    compare(&topo, "content", &backends, &servers);
}
