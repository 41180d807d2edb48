//! The HTML stats page in a real browser: headless Chromium inside the LB namespace loads
//! `http://127.0.0.1:8404/` from a running `lb`, before and after a web server dies.
//! Screenshots are kept under `target/test-artifacts/`.
#[path = "support/api_fixture.rs"]
mod fixture;

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
