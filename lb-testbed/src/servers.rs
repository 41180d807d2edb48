//! Real servers inside namespaces, always stopped by PID.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The page each server returns for `/`, as in the reference capture.
pub fn index_page(name: &str, addr: impl std::fmt::Display) -> String {
    format!("<html><body>backend {name} {addr}</body></html>\n")
}

/// nginx in a namespace: one process (no master), its own config, pid file, logs and docroot
/// under a temporary directory. Serves `/` (naming the server) and `/health_check.html`.
pub struct WebServer {
    pub name: String,
    /// IPv4 or IPv6 (a ULA address in the IPv6 tests).
    pub addr: IpAddr,
    pub port: u16,
    pub dir: PathBuf,
    ns: Netns,
    child: Option<Child>,
}

impl WebServer {
    /// One nginx per backend of the topology, on port 80, named after the backend.
    pub fn nginx_all(topo: &crate::topo::Topology) -> Result<Vec<WebServer>> {
        topo.backends
            .iter()
            .map(|b| WebServer::nginx(&b.ns, &b.name, b.addr, 80))
            .collect()
    }

    pub fn nginx(ns: &Netns, name: &str, addr: impl Into<IpAddr>, port: u16) -> Result<WebServer> {
        let addr = addr.into();
        let listen = SocketAddr::new(addr, port).to_string();
        Self::nginx_listening(ns, name, addr, port, &listen)
    }

    /// nginx on `port` of every address of the namespace (a direct-server-return server
    /// answers on the VIP it holds on `lo`, its checks come to `addr`).
    pub fn nginx_any(ns: &Netns, name: &str, addr: Ipv4Addr, port: u16) -> Result<WebServer> {
        Self::nginx_listening(ns, name, addr.into(), port, &port.to_string())
    }

    /// [`WebServer::nginx_any`] for IPv6: every IPv6 address of the namespace.
    pub fn nginx_any6(ns: &Netns, name: &str, addr: Ipv6Addr, port: u16) -> Result<WebServer> {
        Self::nginx_listening(ns, name, addr.into(), port, &format!("[::]:{port}"))
    }

    fn nginx_listening(
        ns: &Netns,
        name: &str,
        addr: IpAddr,
        port: u16,
        listen: &str,
    ) -> Result<WebServer> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-{name}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::write(dir.join("www/index.html"), index_page(name, addr))?;
        std::fs::write(dir.join("www/health_check.html"), "OK\n")?;
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp-body;\n\
                 proxy_temp_path {d}/tmp-proxy;\n  fastcgi_temp_path {d}/tmp-fcgi;\n\
                 uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n\
                 default_type text/html;\n  keepalive_requests 100000;\n\
                 server {{ listen {listen} backlog=4096; root {d}/www; }}\n}}\n"
            ),
        )?;
        let mut s = WebServer {
            name: name.into(),
            addr,
            port,
            dir,
            ns: ns.handle(),
            child: None,
        };
        s.start()?;
        Ok(s)
    }

    /// (Re)starts the server and waits until it accepts connections.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let conf = self.dir.join("nginx.conf");
        let child = self
            .ns
            .command("nginx")?
            .args([
                "-c",
                &conf.display().to_string(),
                "-p",
                &self.dir.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        self.child = Some(child);
        let addr = SocketAddr::from((self.addr, self.port));
        self.ns
            .run(move || wait_listening(addr, Duration::from_secs(10)))??;
        Ok(())
    }

    /// Stops the server (SIGKILL by PID, like `kill -9 httpd` in the seed's test).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn health_check_file(&self) -> PathBuf {
        self.dir.join("www/health_check.html")
    }

    /// Deletes health_check.html (the seed's second failure scenario).
    pub fn remove_health_check(&self) -> Result<()> {
        std::fs::remove_file(self.health_check_file()).context("removing health_check.html")
    }

    pub fn restore_health_check(&self) -> Result<()> {
        std::fs::write(self.health_check_file(), "OK\n").context("restoring health_check.html")
    }

    /// Requests the server saw, from its access log.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls until something accepts on `addr` (call from inside the namespace).
pub fn wait_listening(addr: SocketAddr, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listening on {addr} after {limit:?}")
}

/// A UDP server answering every datagram with `NAME:payload`, until dropped.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

impl UdpEcho {
    pub fn start(ns: &Netns, name: &str, addr: SocketAddr) -> Result<UdpEcho> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || -> Result<()> {
            let sock = UdpSocket::bind(addr)?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    sock.send_to(&reply, peer)?;
                }
            }
            Ok(())
        })?;
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("UDP echo server did not start")?;
        Ok(UdpEcho {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Debian's rsyslogd inside a namespace, configured as in the seed: UDP on port 514,
/// `local6.*` to a file with the `%msg%` template. A second file keeps the PRI of each
/// message (`<181>...`) to check severities.
pub struct Rsyslog {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Rsyslog {
    pub fn start(ns: &Netns, name: &str) -> Result<Rsyslog> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-{name}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work"))?;
        let d = dir.display();
        std::fs::write(
            dir.join("rsyslog.conf"),
            format!(
                "$ModLoad imudp\n$UDPServerRun 514\n$WorkDirectory {d}/work\n\
                 $template Haproxy,\"%msg%\\n\"\n\
                 $template WithPri,\"<%pri%>%msg%\\n\"\n\
                 local6.* -{d}/haproxy.log;Haproxy\n\
                 local6.* -{d}/haproxy-pri.log;WithPri\n"
            ),
        )?;
        let child = ns
            .command("rsyslogd")?
            .args([
                "-n",
                "-f",
                &format!("{d}/rsyslog.conf"),
                "-i",
                &format!("{d}/rsyslogd.pid"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rsyslogd")?;
        let r = Rsyslog {
            dir,
            child: Some(child),
        };
        // Wait until it listens: a probe message must reach the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = ns.handle();
        while Instant::now() < deadline {
            probe.run(|| {
                if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
                    let _ = s.send_to(b"<182>testbed: rsyslog probe", "127.0.0.1:514");
                }
            })?;
            std::thread::sleep(Duration::from_millis(100));
            if r.raw().contains("rsyslog probe") {
                return Ok(r);
            }
        }
        bail!("rsyslogd did not start logging within 10 s")
    }

    /// The seed's log file: one `%msg%` per line.
    pub fn raw(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// Lines (trimmed, without the probe), as `(pri, text)`.
    pub fn lines(&self) -> Vec<(u8, String)> {
        std::fs::read_to_string(self.dir.join("haproxy-pri.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("rsyslog probe"))
            .filter_map(|l| {
                let (pri, msg) = l.strip_prefix('<')?.split_once('>')?;
                Some((pri.parse().ok()?, msg.trim().to_string()))
            })
            .collect()
    }

    /// Waits until a line containing `needle` has been logged.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.lines().iter().any(|(_, l)| l.contains(needle)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "no log line containing {needle:?} within {limit:?}; got:\n{}",
            self.lines()
                .iter()
                .map(|(p, l)| format!("<{p}>{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's dnsmasq inside a namespace: an authoritative name server for the `lbtest`
/// domain, answering from a hosts file it reads again on SIGHUP (names it does not list
/// are NXDOMAIN). Stopped by PID.
pub struct Dnsmasq {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Dnsmasq {
    /// The domain it answers for.
    pub const DOMAIN: &'static str = "lbtest";

    /// Starts it on `addr` (an address of `ns`) with `hosts` as its only records.
    pub fn start(
        ns: &Netns,
        name: &str,
        addr: SocketAddr,
        hosts: &[(&str, Ipv4Addr)],
    ) -> Result<Dnsmasq> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-{name}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut d = Dnsmasq {
            dir,
            addr,
            child: None,
        };
        d.write_hosts(hosts)?;
        let dir = d.dir.display().to_string();
        let child = ns
            .command("dnsmasq")?
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--bind-interfaces",
                &format!("--listen-address={}", addr.ip()),
                &format!("--port={}", addr.port()),
                &format!("--addn-hosts={dir}/hosts"),
                &format!("--local=/{}/", Self::DOMAIN),
                &format!("--pid-file={dir}/dnsmasq.pid"),
                &format!("--log-facility={dir}/dnsmasq.log"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq")?;
        d.child = Some(child);
        // Ready when it answers a query (any answer will do).
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = ns.handle();
        while Instant::now() < deadline {
            let answered = probe.run(move || {
                let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                // A query for "probe.lbtest" A.
                let mut q = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                for l in ["probe", Self::DOMAIN] {
                    q.push(l.len() as u8);
                    q.extend_from_slice(l.as_bytes());
                }
                q.extend_from_slice(&[0, 0, 1, 0, 1]);
                let mut buf = [0u8; 512];
                s.send_to(&q, addr).is_ok() && s.recv_from(&mut buf).is_ok()
            })?;
            if answered {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("dnsmasq did not answer on {addr} within 10 s")
    }

    fn write_hosts(&self, hosts: &[(&str, Ipv4Addr)]) -> Result<()> {
        let text: String = hosts
            .iter()
            .map(|(n, a)| format!("{a} {n}.{}\n", Self::DOMAIN))
            .collect();
        // Written aside and renamed: dnsmasq never reads half a file.
        let tmp = self.dir.join("hosts.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join("hosts"))?;
        Ok(())
    }

    /// Replaces the records and has dnsmasq read them (SIGHUP also empties its cache).
    pub fn set_hosts(&self, hosts: &[(&str, Ipv4Addr)]) -> Result<()> {
        self.write_hosts(hosts)?;
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id())
            .context("dnsmasq is not running")?;
        // SAFETY: kill() on the PID of our own child process, which has not been reaped.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to dnsmasq: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
