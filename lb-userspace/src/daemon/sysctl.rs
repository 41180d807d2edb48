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
/// With IPv6 services, `net.ipv6.conf.IF.forwarding` too (`bpf_fib_lookup` checks it for
/// IPv6 as for IPv4). Forwarding makes Linux ignore router advertisements on the interface
/// when `accept_ra` is 1, which would lose a VPS's IPv6 default route: `accept_ra` 1 becomes
/// 2 (accept them while forwarding) for as long as forwarding is on.
///
/// The files are opened now, so restoring works after a `chroot` (with CAP_NET_ADMIN kept).
pub struct Forwarding {
    saved: Vec<(String, String, File)>,
}

impl Forwarding {
    pub fn enable(ifaces: &[String], ipv6: bool) -> Result<Forwarding> {
        let mut f = Forwarding { saved: Vec::new() };
        for i in ifaces {
            for knob in ["forwarding", "accept_local"] {
                f.set(&format!("net.ipv4.conf.{i}.{knob}"), "1", |_| true)?;
            }
            if ipv6 {
                // Before forwarding, so no advertisement is missed in between.
                f.set(&format!("net.ipv6.conf.{i}.accept_ra"), "2", |old| {
                    old == "1"
                })?;
                f.set(&format!("net.ipv6.conf.{i}.forwarding"), "1", |_| true)?;
            }
        }
        Ok(f)
    }

    /// Sets `key` to `value` if it differs and `when(old)`, remembering the old value.
    fn set(&mut self, key: &str, value: &str, when: impl Fn(&str) -> bool) -> Result<()> {
        let old = net::sysctl_get(key)?;
        if old != value && when(&old) {
            let file = net::sysctl_file(key, true)?;
            net::sysctl_set(key, value)?;
            eprintln!("[NOTICE] set {key}={value} (was {old}); restored on exit");
            self.saved.push((key.to_string(), old, file));
        }
        Ok(())
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
        // Last set, first restored: forwarding goes off before `accept_ra` comes back.
        for (key, old, file) in self.saved.iter_mut().rev() {
            if let Err(e) = file.write_all(old.as_bytes()) {
                // The interface may be gone (its namespace deleted first): nothing to restore.
                if e.raw_os_error() != Some(libc::ENODEV) {
                    eprintln!("[WARNING] could not restore {key}={old}: {e}");
                }
            }
        }
    }
}
