//! lb and HAProxy 2.6 run side by side in the seed's topology on one haproxy.cfg: the same
//! checks of the same servers, each logging to its own UDP socket, so that their lines can be
//! compared. HAProxy gets the file as written; lb gets it through its own haproxy.cfg parser
//! and `lb convert` (native TOML), which is how it takes an instance name and a log port of
//! its own.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_testbed::{daemon::Daemon, netns::Netns, topo::Topology};

pub const LB: &str = env!("CARGO_BIN_EXE_lb");

/// Datagrams received on a UDP port inside a namespace, as they come.
pub struct LogSink {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl LogSink {
    pub fn start(ns: &Netns, port: u16) -> LogSink {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, flag) = (lines.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns
            .spawn(move || -> anyhow::Result<()> {
                let s = UdpSocket::bind(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 4096];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok(n) = s.recv(&mut buf)
                        && let Ok(mut l) = sink.lock()
                    {
                        l.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                }
                Ok(())
            })
            .expect("log sink thread");
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("log sink listening");
        LogSink {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// The messages so far, normalised (see [`normalise`]).
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().map(|d| normalise(d)).collect())
            .unwrap_or_default()
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `<181>Nov 26 17:35:00 haproxy[22285]: text` -> `text`, with every `check duration: Nms`
/// made `check duration: Nms` literally.
pub fn normalise(datagram: &str) -> String {
    let text = datagram.trim_end();
    let text = text.split_once("]: ").map_or(text, |(_, t)| t);
    let mut out = String::new();
    let mut rest = text;
    while let Some((a, b)) = rest.split_once("check duration: ") {
        out.push_str(a);
        out.push_str("check duration: N");
        rest = b.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// lb logs like the seed's HAProxy 1.x, which printed the reason phrase of a passed HTTP
/// check (`code: 200, info: "OK"`); HAProxy 2.6 does not. That one documented difference is
/// taken out before comparing.
pub fn without_seed_info(line: &str) -> String {
    match line.split_once("reason: Layer7 check passed, code: ") {
        Some((head, tail)) => {
            let Some((code, rest)) = tail.split_once(", ") else {
                return line.to_string();
            };
            match rest.strip_prefix("info: \"") {
                Some(r) if code != "0" => match r.split_once("\", ") {
                    Some((_, after)) => {
                        format!("{head}reason: Layer7 check passed, code: {code}, {after}")
                    }
                    None => line.to_string(),
                },
                _ => line.to_string(),
            }
        }
        None => line.to_string(),
    }
}

/// The lines that name `backend/server` and pass `keep`, per server of interest.
pub fn per_server(
    lines: &[String],
    servers: &[&str],
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    servers
        .iter()
        .map(|s| {
            let mine: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(&format!(" {s} ")) || l.contains(&format!(" {s}.")))
                .filter(|l| keep(l))
                .cloned()
                .collect();
            (s.to_string(), mine)
        })
        .collect()
}

/// HAProxy in a namespace, in the foreground, stopped by PID.
pub struct Haproxy {
    child: Child,
    config: PathBuf,
}

impl Haproxy {
    pub fn start(ns: &Netns, name: &str, config: &str) -> Haproxy {
        let path = std::env::temp_dir().join(format!("lbt-{}-{name}.cfg", ns.name));
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let check = std::process::Command::new("haproxy")
            .args(["-c", "-q", "-f", &path.display().to_string()])
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "HAProxy refuses the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = ns
            .command("haproxy")
            .expect("ns")
            .args(["-f", &path.display().to_string(), "-db"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy {
            child,
            config: path,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// nginx in a namespace with a config written by the caller (`{dir}` stands for its
/// directory), stopped by PID.
pub struct Nginx {
    child: Child,
    pub dir: PathBuf,
}

impl Nginx {
    pub fn start(
        ns: &Netns,
        name: &str,
        servers: &str,
        listening: &[std::net::SocketAddr],
    ) -> Nginx {
        let dir = std::env::temp_dir().join(format!("lbt-{}-{name}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).expect("nginx dir");
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp-body;\n\
             proxy_temp_path {d}/tmp-proxy;\n  fastcgi_temp_path {d}/tmp-fcgi;\n\
             uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n\
             default_type text/html;\n{}\n}}\n",
            servers.replace("{dir}", &d.to_string())
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let child = ns
            .command("nginx")
            .expect("ns")
            .args([
                "-c",
                &dir.join("nginx.conf").display().to_string(),
                "-p",
                &dir.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        for &addr in listening {
            ns.run(move || lb_testbed::servers::wait_listening(addr, Duration::from_secs(10)))
                .expect("ns")
                .expect("nginx listening");
        }
        Nginx { child, dir }
    }

    pub fn www(&self) -> PathBuf {
        self.dir.join("www")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts lb on `haproxy_cfg` in the topology's LB namespace: parsed by lb's haproxy.cfg
/// front end, given `instance` and a log target on `log_port`, written as native TOML.
pub fn start_lb(topo: &Topology, instance: &str, haproxy_cfg: &str, log_port: u16) -> Daemon {
    let mut cfg = match lb::config::parse_bytes("side-by-side.cfg", haproxy_cfg.as_bytes(), false) {
        Ok(l) => l.config,
        Err(e) => panic!("lb refuses the config:\n{e}"),
    };
    cfg.global.instance = instance.to_string();
    for l in &mut cfg.global.logs {
        l.dest = lb::config::LogDest::Udp(([127, 0, 0, 1], log_port).into());
    }
    let path: PathBuf = std::env::temp_dir().join(format!("lbt-{instance}.toml"));
    std::fs::write(&path, lb::config::convert::to_toml(&cfg)).expect("write lb.toml");
    let mut lb = Daemon::start_file(Path::new(LB), &topo.lb, instance, &path, &[]).expect("lb");
    lb.remove_on_drop(path);
    lb.wait_ready().expect("lb ready");
    lb
}

/// Waits until `done` holds for both logs' lines, or `limit` passes.
pub fn wait_both(
    lb: &LogSink,
    haproxy: &LogSink,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done(&lb.lines()) && done(&haproxy.lines()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints both sides when they differ, then asserts they do not.
pub fn assert_same(
    what: &str,
    lb: &BTreeMap<String, Vec<String>>,
    haproxy: &BTreeMap<String, Vec<String>>,
) {
    if lb != haproxy {
        for (server, want) in haproxy {
            let got = lb.get(server).cloned().unwrap_or_default();
            println!("--- {server}");
            for i in 0..got.len().max(want.len()) {
                let g = got.get(i).map(String::as_str).unwrap_or("");
                let w = want.get(i).map(String::as_str).unwrap_or("");
                println!(
                    "{} lb      {g}\n  haproxy {w}",
                    if g == w { "=" } else { "!" }
                );
            }
        }
    }
    assert_eq!(lb, haproxy, "{what}: lb's lines differ from HAProxy's");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising() {
        assert_eq!(
            normalise(
                "<181>Nov 26 17:35:00 haproxy[1]: Health check for server b/s failed, reason: Layer4 timeout, check duration: 1001ms, status: 0/2 DOWN.\n"
            ),
            "Health check for server b/s failed, reason: Layer4 timeout, check duration: Nms, status: 0/2 DOWN."
        );
        assert_eq!(
            without_seed_info(
                "Health check for server b/s succeeded, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: Nms, status: 2/2 UP."
            ),
            "Health check for server b/s succeeded, reason: Layer7 check passed, code: 200, check duration: Nms, status: 2/2 UP."
        );
        // Agents print their own info, which stays.
        let agent = "Agent check for server b/s succeeded, reason: Layer7 check passed, code: 0, info: \"via agent : up\", check duration: Nms, status: 1/1 UP.";
        assert_eq!(without_seed_info(agent), agent);
    }
}
