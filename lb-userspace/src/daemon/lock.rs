//! One daemon per instance: `lb run` holds an exclusive lock on `/run/lb/<instance>.lock` for
//! its whole life, taken before it touches any map, link or socket, so a second `lb run` on
//! the same instance fails without changing anything. The file holds the daemon's pid for
//! `lb stop`. The kernel releases the lock however the daemon ends.
use std::{
    fs::File,
    io::{Read, Seek, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

pub fn lock_path(instance: &str) -> PathBuf {
    Path::new("/run/lb").join(format!("{instance}.lock"))
}

/// Held for the daemon's life.
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    pub fn acquire(instance: &str) -> Result<InstanceLock> {
        let path = lock_path(instance);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder =
                read_pid(&mut file).map_or("another process".into(), |p| format!("pid {p}"));
            bail!(
                "instance '{instance}' is already running ({holder}, lock {}): nothing was changed. \
                 Stop it first (`lb stop --instance {instance}`), or give this configuration another 'instance'.",
                path.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(InstanceLock { _file: file })
    }

    /// Writes the daemon's pid again (after `daemon` forked).
    pub fn record_pid(&mut self) -> Result<()> {
        self._file.set_len(0)?;
        self._file.rewind()?;
        writeln!(self._file, "{}", std::process::id())?;
        Ok(())
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// The pid of the daemon running `instance`, if one holds the lock.
pub fn running(instance: &str) -> Option<u32> {
    let mut file = File::open(lock_path(instance)).ok()?;
    // SAFETY: flock on a file we own; released when it is closed below.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None; // nobody holds it
    }
    read_pid(&mut file)
}
