//! Sysctls the data plane depends on, set for the daemon's lifetime and restored after.
use std::{fs::File, io::Write};

use anyhow::Result;

use crate::net;

/// Sysctls the data plane needs on the interfaces it is attached to, restored on drop:
/// - `forwarding`: `bpf_fib_lookup` refuses to forward otherwise, and the kernel must forward
///   the packets handed to it while a neighbour is being resolved;
/// - `accept_local`: those packets carry one of our own addresses as source (the full-NAT
///   source, or the VIP on replies), which the kernel otherwise drops as martian.
///
/// The files are opened now, so restoring works after a `chroot` (with CAP_NET_ADMIN kept).
pub struct Forwarding {
    saved: Vec<(String, String, File)>,
}

impl Forwarding {
    pub fn enable(ifaces: &[String]) -> Result<Forwarding> {
        let mut saved = Vec::new();
        for i in ifaces {
            for knob in ["forwarding", "accept_local"] {
                let key = format!("net.ipv4.conf.{i}.{knob}");
                let old = net::sysctl_get(&key)?;
                if old != "1" {
                    let file = net::sysctl_file(&key, true)?;
                    net::sysctl_set(&key, "1")?;
                    eprintln!("[NOTICE] set {key}=1 (was {old}); restored on exit");
                    saved.push((key, old, file));
                }
            }
        }
        Ok(Forwarding { saved })
    }
}

impl Forwarding {
    /// Leaves the sysctls as they are for a data plane that outlives the daemon.
    pub fn keep(&mut self) {
        self.saved.clear();
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (key, old, file) in &mut self.saved {
            if let Err(e) = file.write_all(old.as_bytes()) {
                // The interface may be gone (its namespace deleted first): nothing to restore.
                if e.raw_os_error() != Some(libc::ENODEV) {
                    eprintln!("[WARNING] could not restore {key}={old}: {e}");
                }
            }
        }
    }
}
