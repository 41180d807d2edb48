//! The HTML stats page in a real browser: headless Chromium inside the LB namespace loads
//! `http://127.0.0.1:8404/` from a running `lb`, before and after a web server dies.
//! Screenshots are kept under `target/test-artifacts/`.
#[path = "support/api_fixture.rs"]
mod fixture;
#[path = "support/side_by_side.rs"]
mod side_by_side;

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use fixture::{Fixture, HTTP_PORT, Options};
use lb_testbed::netns::Netns;

const CHROMIUM: &str = "/usr/bin/chromium";

/// `target/` (the test binary lives in `target/<profile>/deps/`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("test-artifacts")
}

/// Runs headless Chromium in `ns` with a fresh profile; returns its stdout. Bounded: killed
/// (its whole process group, by the group's id) after 60 s.
fn chromium(ns: &Netns, profile: &Path, args: &[&str]) -> Result<String> {
    let _ = std::fs::remove_dir_all(profile);
    let mut child = ns
        .command(CHROMIUM)?
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting chromium")?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever is left of the browser's helpers: its process group, by its id.
    // SAFETY: signalling the process group we created for our own child.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
    let out = reader.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(profile);
    match status {
        Some(st) if st.success() => Ok(out),
        Some(st) => bail!("chromium exited with {st}"),
        None => bail!("chromium did not finish within 60 s"),
    }
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn stats_page_in_headless_chromium() {
    let mut f = Fixture::start(Options::default());
    let url = format!("http://127.0.0.1:{HTTP_PORT}/");
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let profile = f.dir.join("chromium-profile");
    // Some traffic so the counters show something.
    f.new_connections(6);

    let dom = chromium(&f.topo.lb, &profile, &["--dump-dom", &url]).expect("dump-dom");
    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{dom}"
    );
    assert!(dom.contains("Statistics Report for lb instance"), "{dom}");
    for s in ["web10", "web11"] {
        assert!(
            dom.contains(&format!(
                "<tr class=\"active_up\" id=\"sv-hoge-{s}\" data-state=\"UP\">"
            )),
            "{s} not UP in:\n{dom}"
        );
    }
    let up = dir.join("stats-page-both-up.png");
    let _ = std::fs::remove_file(&up);
    chromium(
        &f.topo.lb,
        &profile,
        &[
            &format!("--screenshot={}", up.display()),
            "--window-size=1400,700",
            &url,
        ],
    )
    .expect("screenshot");
    assert!(is_png(&up), "no screenshot at {}", up.display());

    // web11 dies (kill -9, as in the seed's test): the page turns it DOWN.
    f.web[1].stop();
    f.wait_status("web11", "DOWN", Duration::from_secs(10))
        .expect("web11 DOWN");
    let dom = chromium(&f.topo.lb, &profile, &["--dump-dom", &url]).expect("dump-dom");
    assert!(
        dom.contains("<tr class=\"active_down\" id=\"sv-hoge-web11\" data-state=\"DOWN\">"),
        "web11 not DOWN in:\n{dom}"
    );
    assert!(
        dom.contains("<tr class=\"active_up\" id=\"sv-hoge-web10\" data-state=\"UP\">"),
        "web10 not UP in:\n{dom}"
    );
    let down = dir.join("stats-page-web11-down.png");
    let _ = std::fs::remove_file(&down);
    chromium(
        &f.topo.lb,
        &profile,
        &[
            &format!("--screenshot={}", down.display()),
            "--window-size=1400,700",
            &url,
        ],
    )
    .expect("screenshot");
    assert!(is_png(&down), "no screenshot at {}", down.display());
    f.wait_log("Server hoge/web11 is DOWN.");
}

/// What a real haproxy.cfg's stats sections get: `listen stats` with `stats auth` serves the
/// page (and its CSV) to the right user only, `frontend prometheus` serves the metrics, a
/// TCP `stats socket` answers the runtime API; the page in Chromium, with credentials.
#[test]
fn haproxy_cfg_stats_sections() {
    use lb_testbed::{
        servers::WebServer,
        topo::{Routing, Topology},
    };
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let _web = WebServer::nginx_all(&topo).expect("nginx");
    let cfg = "global
    stats socket ipv4@127.0.0.1:9999 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen stats
    bind 127.0.0.1:8404
    stats enable
    stats uri /stats
    stats refresh 10s
    stats auth admin:s3cret
    stats admin if TRUE

frontend prometheus
    bind 127.0.0.1:8405
    http-request use-service prometheus-exporter if { path /metrics }

frontend main
    bind 10.200.0.1:80
    default_backend hoge

backend hoge
    option httpchk GET /health_check.html
    server web10 10.200.10.10:80 check inter 300
    server web11 10.200.11.11:80 check inter 300
";
    let instance = format!("stsec{}", topo.tag);
    let _lb = side_by_side::start_lb(&topo, &instance, cfg, 5519);
    let get = |port: u16, path: &str, auth: Option<&str>| -> (u16, String, String) {
        let (path, auth) = (path.to_string(), auth.map(str::to_string));
        topo.lb
            .run(move || -> Result<(u16, String, String)> {
                use std::io::{Read as _, Write as _};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                let auth = auth
                    .map(|a| format!("Authorization: Basic {a}\r\n"))
                    .unwrap_or_default();
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: lb\r\n{auth}Connection: close\r\n\r\n"
                )?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
                let code = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                Ok((code, head.to_string(), body.to_string()))
            })
            .expect("ns")
            .expect("GET")
    };
    // base64("admin:s3cret"), base64("admin:wrong").
    let (good, bad) = ("YWRtaW46czNjcmV0", "YWRtaW46d3Jvbmc=");
    let (code, head, body) = get(8404, "/stats", None);
    assert_eq!(code, 401, "{head}");
    assert!(
        head.contains("www-authenticate: Basic realm=\"HAProxy Statistics\""),
        "{head}"
    );
    assert!(body.contains("401 Unauthorized"), "{body}");
    assert_eq!(get(8404, "/stats", Some(bad)).0, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let (code, _, page) = get(8404, "/stats", Some(good));
        assert_eq!(code, 200);
        if page.matches("data-state=\"UP\"").count() == 2 || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        page.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"active_up\" id=\"sv-hoge-web10\" data-state=\"UP\">"),
        "{page}"
    );
    let (code, _, csv) = get(8404, "/stats;csv", Some(good));
    assert_eq!(code, 200);
    assert!(csv.starts_with("# pxname,svname,"), "{csv}");
    assert!(csv.contains("\nhoge,web11,"), "{csv}");
    // Anything else finds no server, as in HAProxy.
    assert_eq!(get(8404, "/", Some(good)).0, 503);
    // The exporter: its own section, no credentials (as HAProxy's http-request rule).
    let (code, _, metrics) = get(8405, "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("haproxy_server_status{proxy=\"hoge\",server=\"web10\",state=\"UP\"} 1"),
        "{metrics}"
    );
    assert_eq!(get(8405, "/", None).0, 503);
    // The runtime API over TCP.
    let info = topo
        .lb
        .run(|| -> Result<String> {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", 9999))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"show servers state hoge\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .expect("ns")
        .expect("TCP stats socket");
    assert!(info.contains(" hoge 1 web10 10.200.10.10 2 "), "{info}");

    // The page in a browser, credentials in the URL.
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let profile = std::env::temp_dir().join(format!("lbt-chromium-{instance}"));
    let url = "http://admin:s3cret@127.0.0.1:8404/stats";
    let dom = chromium(&topo.lb, &profile, &["--dump-dom", url]).expect("dump-dom");
    assert!(dom.contains("Statistics Report for lb instance"), "{dom}");
    let shot = dir.join("stats-section-with-auth.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &topo.lb,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,500",
            url,
        ],
    )
    .expect("screenshot");
    assert!(is_png(&shot), "no screenshot at {}", shot.display());
}
