//! A running `lb` with a stats socket and a stats HTTP listener in the seed's topology (two
//! nginx servers with HTTP health checks), and helpers to talk to it. Shared by the runtime
//! API tests and the stats page test.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_testbed::{
    config::{SEED_CHECK_DEFAULTS, SeedConfig},
    daemon::Daemon,
    http::Conn,
    servers::WebServer,
    topo::{Routing, Topology, VIP},
};

pub const LB: &str = env!("CARGO_BIN_EXE_lb");
/// `stats_http = "8404"`: 127.0.0.1:8404 inside the LB namespace.
pub const HTTP_PORT: u16 = 8404;
/// Health checks every 300 ms, fall 2, rise 2.
pub const INTER_MS: u64 = 300;

pub struct Options {
    pub level: &'static str,
    pub mode: &'static str,
    pub weights: (u32, u32),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            level: "admin",
            mode: "600",
            weights: (1, 1),
        }
    }
}

pub struct Fixture {
    pub lb: Daemon,
    pub web: Vec<WebServer>,
    pub topo: Topology,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn config(instance: &str, socket: &Path, o: &Options) -> String {
    SeedConfig::new(instance)
        .global(&format!(
            "stats_socket = {{ path = \"{socket}\", mode = \"{mode}\", level = \"{level}\" }}\n\
             stats_http = \"{HTTP_PORT}\"\n\
             log = [{{ target = \"stderr\", facility = \"local0\" }}]",
            socket = socket.display(),
            mode = o.mode,
            level = o.level,
        ))
        .defaults(SEED_CHECK_DEFAULTS)
        .server_keys(&format!(
            "check = true, inter = {INTER_MS}, fall = 2, rise = 2"
        ))
        .server_keys_of(0, &format!("weight = {}", o.weights.0))
        .server_keys_of(1, &format!("weight = {}", o.weights.1))
        .to_string()
}

impl Fixture {
    pub fn start(o: Options) -> Fixture {
        let topo = Topology::seed(Routing::Isolated).expect("topology");
        let web = topo
            .backends
            .iter()
            .map(|b| WebServer::nginx(&b.ns, &b.name, b.addr, 80).expect("nginx"))
            .collect();
        let instance = format!("api{}", topo.tag);
        let dir = std::env::temp_dir().join(format!("lbt-api-{}", topo.tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("socket dir");
        let socket = dir.join("stats");
        let mut lb = Daemon::start(
            Path::new(LB),
            &topo.lb,
            &instance,
            &config(&instance, &socket, &o),
            "toml",
        )
        .expect("start lb");
        lb.wait_ready().expect("lb ready");
        let f = Fixture {
            lb,
            web,
            topo,
            dir,
            socket,
        };
        for s in ["web10", "web11"] {
            f.wait_status(s, "UP", Duration::from_secs(10))
                .expect("servers UP");
        }
        f
    }

    /// Sends `input` as is and reads the whole answer (the daemon closes the session).
    pub fn raw(&self, input: &[u8]) -> Result<Vec<u8>> {
        let mut s = UnixStream::connect(&self.socket).context("connect")?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        s.set_write_timeout(Some(Duration::from_secs(15)))?;
        s.write_all(input)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    }

    /// One command line, the answer as text.
    pub fn api(&self, cmd: &str) -> String {
        let out = self
            .raw(format!("{cmd}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{cmd}: {e:#}"));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `show stat` parsed: one map per row, by column name.
    pub fn stat(&self) -> Vec<HashMap<String, String>> {
        parse_stat(&self.api("show stat"))
    }

    pub fn server_row(&self, server: &str) -> HashMap<String, String> {
        self.stat()
            .into_iter()
            .find(|r| r["svname"] == server)
            .unwrap_or_else(|| panic!("no row for {server}"))
    }

    /// Polls `show stat` until `server`'s status is `status`.
    pub fn wait_status(&self, server: &str, status: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.server_row(server)["status"].clone();
            if last == status {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{server} stayed {last:?}, not {status:?}, for {limit:?}")
    }

    /// Waits until the daemon's output (its log on stderr) contains `needle`.
    pub fn wait_log(&mut self, needle: &str) {
        self.lb
            .wait_for(needle, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// `n` requests, each on a new connection, from the client: who served each.
    pub fn new_connections(&self, n: usize) -> Vec<String> {
        self.topo
            .client
            .run(move || -> Result<Vec<String>> {
                let mut who = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut c = Conn::connect(vip())?;
                    who.push(served_by(&c.request("/", false)?.body).to_string());
                }
                Ok(who)
            })
            .expect("client thread")
            .expect("requests through the VIP")
    }

    /// GET `path` from the stats HTTP listener (inside the LB namespace).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let path = path.to_string();
        self.topo.lb.run(move || -> Result<(u16, String)> {
            let mut s = std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], HTTP_PORT)),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            let status = out
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            Ok((status, body.to_string()))
        })?
    }
}

pub fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// Which server answered: the page names it.
pub fn served_by(body: &str) -> &str {
    if body.contains("backend web10") {
        "web10"
    } else if body.contains("backend web11") {
        "web11"
    } else {
        "?"
    }
}

/// `show stat` CSV (header `# pxname,...`) into rows by column name.
pub fn parse_stat(text: &str) -> Vec<HashMap<String, String>> {
    let body = text
        .strip_prefix("# ")
        .expect("show stat starts with '# '")
        .trim_end_matches('\n');
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("CSV row");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// The capture of HAProxy 2.6's runtime API (a copy lives next to the api module).
pub const CAPTURE: &str = include_str!("../../src/api/testdata/haproxy-2.6-runtime-api.txt");

/// The capture's answer after `### title` (the `nth` one), without its last newline (empty
/// for commands that answer nothing).
pub fn capture_block(title: &str, nth: usize) -> String {
    let rest = CAPTURE
        .split(&format!("### {title}\n"))
        .nth(nth)
        .expect("section");
    if rest.starts_with('\n') {
        return String::new();
    }
    rest.split("\n\n").next().expect("block").to_string()
}

/// What HAProxy sent for `### title`: the answer, then the empty line it ends every answer
/// with.
pub fn haproxy_answer(title: &str) -> String {
    let b = capture_block(title, 1);
    if b.is_empty() {
        "\n".into()
    } else {
        format!("{b}\n\n")
    }
}

/// One command on the socket at `path`, from any thread (UNIX sockets by path do not care
/// about network namespaces).
pub fn api_at(path: &Path, cmd: &str) -> Result<String> {
    let mut s = UnixStream::connect(path).context("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Health checks nginx logged.
pub fn health_checks(w: &WebServer) -> usize {
    w.access_log()
        .lines()
        .filter(|l| l.contains("GET /health_check.html"))
        .count()
}
