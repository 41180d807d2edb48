//! Network namespaces owned by a test: created with `ip netns add`, deleted on drop.
use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

/// Runs a command and fails with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip ARGS...`, failing on error.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

pub struct Netns {
    pub name: String,
    /// Only the owner deletes the namespace on drop; handles just name it.
    owned: bool,
}

impl Netns {
    pub fn new(name: &str) -> Result<Netns> {
        // A leftover from a crashed run with the same name would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.into(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A non-owning handle on the same namespace (for servers living in it).
    pub fn handle(&self) -> Netns {
        Netns {
            name: self.name.clone(),
            owned: false,
        }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that will run inside this namespace's network stack while keeping the host's
    /// mounts (unlike `ip netns exec`, which hides /sys/fs/bpf behind a private /sys).
    pub fn command(&self, program: &str) -> Result<Command> {
        use std::os::unix::process::CommandExt;
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.path()))?;
        let mut cmd = Command::new(program);
        // SAFETY: setns is async-signal-safe; `file` is moved into the closure and stays open
        // until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Runs `program args` inside the namespace and returns stdout; fails on error.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = run(self.command(program)?.args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])
            .map(|_| ())
    }

    /// Runs `f` on a fresh thread that has entered this namespace: sockets it opens live here.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.path()))?;
        let handle = std::thread::spawn(move || -> Result<T> {
            enter(&file)?;
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside netns panicked"))?
    }

    /// Like [`Netns::run`] but returns the thread handle (for servers that run until told
    /// to stop).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T>>> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.path()))?;
        Ok(std::thread::spawn(move || -> Result<T> {
            enter(&file)?;
            Ok(f())
        }))
    }

    /// Moves the *calling* thread into this namespace for good. Meant for a test's own thread
    /// when everything it does belongs there.
    pub fn enter_current_thread(&self) -> Result<()> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.path()))?;
        enter(&file)
    }

    /// A counter from `nstat` (absolute), e.g. `TcpInCsumErrors`.
    pub fn nstat(&self, counter: &str) -> Result<u64> {
        let out = self.exec("nstat", &["-az", counter])?;
        Ok(out
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(counter)).then(|| it.next()?.parse().ok())?
            })
            .unwrap_or(0))
    }
}

fn enter(file: &File) -> Result<()> {
    // SAFETY: plain setns(2) on an fd we own; affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setns");
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
        }
    }
}
