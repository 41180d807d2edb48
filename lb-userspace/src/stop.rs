//! `lb stop`: ends an instance for good. The daemon, if one runs, is asked to detach
//! (SIGINT) and waited for; then whatever data plane is still attached (left by a SIGTERM
//! hand-over or a crash) is detached through its pinned links. The maps stay unless
//! `--purge`: a later `lb run` finds its flows and counters.
use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{config, daemon::lock, dataplane::links, dataplane::pin_dir};

pub fn stop(config_file: Option<&Path>, instance: Option<&str>, purge: bool) -> Result<()> {
    let instance = match (instance, config_file) {
        (Some(i), _) => i.to_string(),
        (None, Some(c)) => {
            config::load(c)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .config
                .global
                .instance
        }
        (None, None) => "lb".to_string(),
    };
    if let Some(pid) = lock::running(&instance) {
        // SAFETY: kill(2) on the pid the instance's lock names.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signalling lb (pid {pid})"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while lock::running(&instance).is_some() {
            if std::time::Instant::now() > deadline {
                bail!("lb (pid {pid}) did not stop within 15 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("[NOTICE] lb (pid {pid}) stopped");
    }
    let dir = pin_dir(&instance);
    let detached = links::detach_pinned(&dir)?;
    if !detached.is_empty() {
        let names: Vec<String> = detached
            .iter()
            .map(|&i| crate::net::ifname(i).unwrap_or_else(|_| format!("#{i}")))
            .collect();
        eprintln!("[NOTICE] detached the data plane from {}", names.join(", "));
    }
    if purge && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        eprintln!("[NOTICE] removed the pinned maps of instance '{instance}'");
    }
    Ok(())
}
