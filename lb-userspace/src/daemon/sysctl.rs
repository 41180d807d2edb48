//! Sysctls the data plane depends on, set for the daemon's lifetime and restored after.
use anyhow::Result;

use crate::net;

/// Sysctls the data plane needs on the interfaces it is attached to, restored on drop:
/// - `forwarding`: `bpf_fib_lookup` refuses to forward otherwise, and the kernel must forward
///   the packets handed to it while a neighbour is being resolved;
/// - `accept_local`: those packets carry one of our own addresses as source (the full-NAT
///   source, or the VIP on replies), which the kernel otherwise drops as martian.
pub struct Forwarding {
    saved: Vec<(String, String)>,
}

impl Forwarding {
    pub fn enable(ifaces: &[String]) -> Result<Forwarding> {
        let mut saved = Vec::new();
        for i in ifaces {
            for knob in ["forwarding", "accept_local"] {
                let key = format!("net.ipv4.conf.{i}.{knob}");
                let old = net::sysctl_get(&key)?;
                if old != "1" {
                    net::sysctl_set(&key, "1")?;
                    eprintln!("[NOTICE] set {key}=1 (was {old}); restored on exit");
                    saved.push((key, old));
                }
            }
        }
        Ok(Forwarding { saved })
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (key, old) in &self.saved {
            if let Err(e) = net::sysctl_set(key, old) {
                eprintln!("[WARNING] could not restore {key}={old}: {e:#}");
            }
        }
    }
}
