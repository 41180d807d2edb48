//! Runs `lb run` inside the topology's LB namespace (keeping the host's bpffs), waits until it
//! is ready, and stops it by PID.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

pub struct Daemon {
    child: Option<Child>,
    /// Everything the daemon printed on stderr so far.
    pub output: Arc<Mutex<String>>,
    pub instance: String,
    /// A config file written by [`Daemon::start`], removed on drop.
    temp_config: Option<PathBuf>,
    /// Leave the pinned maps in place on drop, as a restarted `lb run` would find them.
    pub keep_pins: bool,
}

impl Daemon {
    /// Writes `config` to a temporary file and starts `lb run -c FILE` in `ns`. `instance`
    /// must match the config's (it names the pin directory, removed on drop).
    pub fn start(
        lb: &Path,
        ns: &Netns,
        instance: &str,
        config: &str,
        extension: &str,
    ) -> Result<Daemon> {
        let path = std::env::temp_dir().join(format!("lbt-{instance}.{extension}"));
        std::fs::write(&path, config)?;
        let mut d = Self::start_file(lb, ns, instance, &path, &[])?;
        d.temp_config = Some(path);
        Ok(d)
    }

    /// Starts `lb run -c CONFIG EXTRA...`.
    pub fn start_file(
        lb: &Path,
        ns: &Netns,
        instance: &str,
        config: &Path,
        extra: &[&str],
    ) -> Result<Daemon> {
        Self::start_file_env(lb, ns, instance, config, extra, &[])
    }

    /// [`Daemon::start_file`] with these environment variables set.
    pub fn start_file_env(
        lb: &Path,
        ns: &Netns,
        instance: &str,
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let mut child = ns
            .command(&lb.display().to_string())?
            .args(["run", "-c", &config.display().to_string()])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting lb run")?;
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            });
        }
        Ok(Daemon {
            child: Some(child),
            output,
            instance: instance.into(),
            temp_config: None,
            keep_pins: false,
        })
    }

    /// Removes `path` (a config written for this daemon) when the daemon is dropped.
    pub fn remove_on_drop(&mut self, path: PathBuf) {
        self.temp_config = Some(path);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the output contains `needle`, failing if the daemon exits first.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "lb exited ({status}) before printing {needle:?}:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "lb did not print {needle:?} within {limit:?}:\n{}",
            self.output()
        )
    }

    /// Waits until the daemon is attached and serving.
    pub fn wait_ready(&mut self) -> Result<()> {
        self.wait_for("lb ready", Duration::from_secs(30))
    }

    /// SIGINT (Ctrl-C: lb detaches), then waits (bounded) for a clean exit; returns the
    /// exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_and_wait(libc::SIGINT)
    }

    /// SIGTERM (`systemctl stop`/`restart`: lb exits and leaves the data plane attached for a
    /// successor), then waits for the exit.
    pub fn hand_over(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// SIGKILL: a crash, as far as lb can tell.
    pub fn kill(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_and_wait(libc::SIGKILL)
    }

    fn signal_and_wait(&mut self, sig: libc::c_int) -> Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("already stopped");
        };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        bail!(
            "lb did not exit within 10 s of signal {sig}:\n{}",
            self.output()
        )
    }

    /// Path of the pinned maps (`/sys/fs/bpf/lb/<instance>`).
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf/lb").join(&self.instance)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Removing the pins (links included) takes the data plane down with them.
        if !self.keep_pins {
            let _ = std::fs::remove_dir_all(self.pin_dir());
        }
        if let Some(c) = &self.temp_config {
            let _ = std::fs::remove_file(c);
        }
    }
}
