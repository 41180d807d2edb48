//! A one-namespace network for `BPF_PROG_TEST_RUN`: two interfaces with fixed MACs and
//! permanent neighbours, so that `bpf_fib_lookup` inside the program gives the same next hops
//! every time (data-plane fixtures, per-packet benchmarks).
//!
//! ```text
//!  clients 10.0.0.0/24 ── dpc 10.0.0.1 (02:00:00:00:00:c1)  [ns]  dpb 10.1.0.1 (02:00:00:00:00:b1) ── servers 10.1.0.0/24
//!          fd00::/64          fd00::1                               fd01::1                              fd01::/64
//! ```
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use crate::{netns::Netns, unique_tag};

pub const MAC_DPC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
pub const MAC_DPB: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb1];
pub const DPC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const DPB_ADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const DPC_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const DPB_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);

pub struct RunNet {
    pub ns: Netns,
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl RunNet {
    pub fn new() -> Result<RunNet> {
        crate::require_root();
        let ns = Netns::new(&format!("lbt-{}-run", unique_tag()))?;
        ns.ip(&["link", "add", "dpc", "type", "veth", "peer", "name", "dpcp"])?;
        ns.ip(&["link", "add", "dpb", "type", "veth", "peer", "name", "dpbp"])?;
        ns.ip(&["link", "set", "dpc", "address", &mac_str(MAC_DPC)])?;
        ns.ip(&["link", "set", "dpb", "address", &mac_str(MAC_DPB)])?;
        for i in ["dpc", "dpcp", "dpb", "dpbp"] {
            ns.ip(&["link", "set", i, "up"])?;
        }
        ns.ip(&["addr", "add", &format!("{DPC_ADDR}/24"), "dev", "dpc"])?;
        ns.ip(&["addr", "add", &format!("{DPB_ADDR}/24"), "dev", "dpb"])?;
        // IPv6 too, without duplicate address detection (the addresses are usable at once);
        // the FIB answers IPv6 lookups only where forwarding is on.
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{DPC_ADDR6}/64"),
            "dev",
            "dpc",
            "nodad",
        ])?;
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{DPB_ADDR6}/64"),
            "dev",
            "dpb",
            "nodad",
        ])?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for i in ["dpc", "dpb"] {
            ns.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
            ns.sysctl(&format!("net.ipv6.conf.{i}.forwarding"), "1")?;
        }
        Ok(RunNet { ns })
    }

    /// A permanent neighbour on whichever side `ip` lives.
    pub fn neighbour(&self, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let dev = if ip.octets()[1] == 0 { "dpc" } else { "dpb" };
        self.ns.ip(&[
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &mac_str(mac),
            "dev",
            dev,
            "nud",
            "permanent",
        ])
    }

    /// A permanent IPv6 neighbour on whichever side `ip` lives (fd00::/64: dpc).
    pub fn neighbour6(&self, ip: Ipv6Addr, mac: [u8; 6]) -> Result<()> {
        let dev = if ip.segments()[0] == 0xfd00 {
            "dpc"
        } else {
            "dpb"
        };
        self.ns.ip(&[
            "-6",
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &mac_str(mac),
            "dev",
            dev,
            "nud",
            "permanent",
        ])
    }

    /// Moves the calling thread into the namespace and returns `(dpc, dpb)` ifindexes.
    pub fn enter(&self) -> Result<(u32, u32)> {
        self.ns.enter_current_thread()?;
        Ok((ifindex("dpc")?, ifindex("dpb")?))
    }
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => anyhow::bail!("no interface {name}"),
        i => Ok(i),
    }
}
