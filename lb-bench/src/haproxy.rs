//! HAProxy 2.6 (Debian's) in `mode tcp`, the baseline balancer: run in the LB namespace with
//! a generated config, round robin over the topology's servers, stopped by PID.
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_testbed::{
    servers::wait_listening,
    topo::{Topology, VIP},
};

/// HAProxy 2.6 in the LB namespace, `mode tcp`, round robin over the same two servers.
pub struct Haproxy {
    child: Option<Child>,
    dir: PathBuf,
}

impl Haproxy {
    pub fn start(topo: &Topology) -> Result<Haproxy> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-haproxy", topo.tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let servers: String = topo
            .backends
            .iter()
            .map(|b| format!("    server {} {}:80\n", b.name, b.addr))
            .collect();
        let cfg = format!(
            "global\n    maxconn 8000\n\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n\n\
             frontend main\n    bind {VIP}:80\n    default_backend web\n\n\
             backend web\n    balance roundrobin\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg)?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let child = topo
            .lb
            .command("/usr/sbin/haproxy")?
            .args(["-f", &path.display().to_string(), "-db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting /usr/sbin/haproxy")?;
        let h = Haproxy {
            child: Some(child),
            dir,
        };
        let addr = SocketAddr::from((VIP, 80));
        topo.client
            .run(move || wait_listening(addr, Duration::from_secs(10)))?
            .with_context(|| {
                format!(
                    "HAProxy did not start: {}",
                    std::fs::read_to_string(h.dir.join("haproxy.log")).unwrap_or_default()
                )
            })?;
        Ok(h)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM by PID, then a bounded wait (SIGKILL after 5 s).
    pub fn stop(mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        bail!("HAProxy did not exit within 5 s of SIGTERM")
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
