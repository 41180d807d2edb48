//! The seed's topology, in namespaces: a client, the LB, and two web servers on their own
//! segments, with the addresses of the reference capture.
//!
//! ```text
//!  client 10.200.0.2 ──── 10.200.0.1 (VIP)  LB  10.200.10.1 ──── 10.200.10.10 web10
//!                                               10.200.11.1 ──── 10.200.11.11 web11
//! ```
//!
//! [`Topology::add_ipv6`] gives every segment a ULA prefix as well (client `fd00:200::2`, VIP
//! `fd00:200::1`, server n `fd00:200:n::n`, the LB `fd00:200:n::1` on its segment), for the
//! IPv6 and dual-stack tests.
//!
//! `Routing::Isolated` is the seed's layout: the servers know only their own segment, so
//! replies come back only if the LB rewrote the source (full-NAT). `Routing::ViaLb` gives the
//! servers a default route through the LB, which plain DNAT needs.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use crate::{netns::Netns, unique_tag};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    Isolated,
    ViaLb,
}

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);

/// Server `n`'s IPv6 address, and the LB's on its segment.
pub fn backend6(n: u8) -> (Ipv6Addr, Ipv6Addr) {
    let n = u16::from(n);
    (
        Ipv6Addr::new(0xfd00, 0x200, n, 0, 0, 0, 0, n),
        Ipv6Addr::new(0xfd00, 0x200, n, 0, 0, 0, 0, 1),
    )
}

pub struct Backend {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    /// The LB's own address on this server's segment (the full-NAT source).
    pub lb_addr: Ipv4Addr,
    /// The server-side veth.
    pub ifname: String,
    /// The LB-side veth towards this server.
    pub lb_ifname: String,
}

pub struct Topology {
    pub tag: String,
    pub client: Netns,
    pub client_if: String,
    pub lb: Netns,
    /// LB-side veth towards the client.
    pub lb_client_if: String,
    pub backends: Vec<Backend>,
    routing: Routing,
    /// `n` of each backend (`10.200.n.n`), in order.
    numbers: Vec<u8>,
}

impl Topology {
    /// Two web servers, web10 and web11, as in the seed.
    pub fn seed(routing: Routing) -> Result<Topology> {
        Self::new(routing, &[("web10", 10), ("web11", 11)])
    }

    /// One backend per `(name, n)`: server `10.200.n.n`, LB side `10.200.n.1`.
    pub fn new(routing: Routing, servers: &[(&str, u8)]) -> Result<Topology> {
        crate::require_root();
        let tag = unique_tag();
        let client = Netns::new(&format!("lbt-{tag}-client"))?;
        let lb = Netns::new(&format!("lbt-{tag}-lb"))?;
        let client_if = format!("t{tag}c");
        let lb_client_if = format!("t{tag}l");
        veth(&client, &client_if, &lb, &lb_client_if)?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", &client_if])?;
        client.ip(&["link", "set", &client_if, "up"])?;
        client.ip(&["route", "add", "default", "via", &VIP.to_string()])?;
        lb.ip(&["addr", "add", &format!("{VIP}/24"), "dev", &lb_client_if])?;
        lb.ip(&["link", "set", &lb_client_if, "up"])?;
        peer_settings(&client, &client_if)?;
        let mut backends = Vec::new();
        for &(name, n) in servers {
            let ns = Netns::new(&format!("lbt-{tag}-{name}"))?;
            let ifname = format!("t{tag}b{n}");
            let lb_ifname = format!("t{tag}l{n}");
            veth(&ns, &ifname, &lb, &lb_ifname)?;
            let addr = Ipv4Addr::new(10, 200, n, n);
            let lb_addr = Ipv4Addr::new(10, 200, n, 1);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &ifname])?;
            ns.ip(&["link", "set", &ifname, "up"])?;
            lb.ip(&["addr", "add", &format!("{lb_addr}/24"), "dev", &lb_ifname])?;
            lb.ip(&["link", "set", &lb_ifname, "up"])?;
            if routing == Routing::ViaLb {
                ns.ip(&["route", "add", "default", "via", &lb_addr.to_string()])?;
            }
            peer_settings(&ns, &ifname)?;
            backends.push(Backend {
                name: name.into(),
                ns,
                addr,
                lb_addr,
                ifname,
                lb_ifname,
            });
        }
        Ok(Topology {
            tag,
            client,
            client_if,
            lb,
            lb_client_if,
            backends,
            routing,
            numbers: servers.iter().map(|&(_, n)| n).collect(),
        })
    }

    /// Adds the IPv6 addresses (see the module's comment) and routes, as the IPv4 ones:
    /// the client routes through the VIP, servers through the LB with `Routing::ViaLb`.
    /// Addresses skip duplicate address detection (`nodad`): they are usable at once.
    pub fn add_ipv6(&self) -> Result<()> {
        self.lb.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let add = |ns: &Netns, a: Ipv6Addr, dev: &str| {
            ns.ip(&["-6", "addr", "add", &format!("{a}/64"), "dev", dev, "nodad"])
        };
        add(&self.client, CLIENT6, &self.client_if)?;
        add(&self.lb, VIP6, &self.lb_client_if)?;
        self.client
            .ip(&["-6", "route", "add", "default", "via", &VIP6.to_string()])?;
        for (b, &n) in self.backends.iter().zip(&self.numbers) {
            let (addr, lb_addr) = backend6(n);
            add(&b.ns, addr, &b.ifname)?;
            add(&self.lb, lb_addr, &b.lb_ifname)?;
            if self.routing == Routing::ViaLb {
                b.ns.ip(&["-6", "route", "add", "default", "via", &lb_addr.to_string()])?;
            }
        }
        Ok(())
    }

    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in this topology"))
    }

    /// The LB's interfaces, client side first.
    pub fn lb_ifaces(&self) -> Vec<String> {
        std::iter::once(self.lb_client_if.clone())
            .chain(self.backends.iter().map(|b| b.lb_ifname.clone()))
            .collect()
    }

    /// Sum of a checksum-error counter over the client and every server.
    pub fn csum_errors(&self) -> Result<u64> {
        let mut total = 0;
        for ns in std::iter::once(&self.client).chain(self.backends.iter().map(|b| &b.ns)) {
            for c in ["TcpInCsumErrors", "UdpInCsumErrors", "IpExtInCsumErrors"] {
                total += ns.nstat(c)?;
            }
        }
        Ok(total)
    }
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    crate::netns::ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])
}

/// On the non-LB end of each veth:
/// - checksum offload off: a local socket's partial checksum would not survive XDP
///   redirection between veths (the receiver would count csum errors); real NICs are fine;
/// - GRO on: frames redirected into a veth by XDP are only picked up by the peer with GRO (or
///   an XDP program) enabled.
fn peer_settings(ns: &Netns, ifname: &str) -> Result<()> {
    ns.exec("ethtool", &["-K", ifname, "tx-checksum-ip-generic", "off"])?;
    ns.exec("ethtool", &["-K", ifname, "gro", "on"])?;
    Ok(())
}
