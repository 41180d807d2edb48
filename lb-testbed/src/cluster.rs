//! Several lb nodes behind one router, in namespaces: the router runs BIRD and installs an
//! ECMP route to the VIP with a next hop per node (L4 hash); each node runs BIRD announcing
//! what its lb keeps in kernel table 100 (`dist/bird/*.conf`, as shipped); the servers take
//! the VIP on `lo` and decapsulate IPIP (`scripts/dsr-server.sh`, as shipped).
//!
//! ```text
//!  client 10.100.0.2 ── 10.100.0.1 router 10.100.1.1 ── LAN (bridge) ─┬─ n1 10.100.1.11  lb + BIRD
//!                                                                     ├─ n2 10.100.1.12  lb + BIRD
//!                                                                     ├─ n3 10.100.1.13  lb + BIRD
//!                                                                     ├─ s1 10.100.1.21  nginx
//!                                                                     ├─ s2 10.100.1.22  nginx
//!                                                                     └─ s3 10.100.1.23  nginx
//!  VIP 10.100.100.1 on lo of every node and server
//! ```
//!
//! [`Cluster::with_ipv6`] adds IPv6 on the same links (client `fd00:100::2`, router
//! `fd00:100::1` and `fd00:100:1::1`, hosts `fd00:100:1::HOST` with the IPv4 address's last
//! byte) and the VIP `fd00:100:100::1` on the nodes' and servers' `lo`, and BIRD's IPv6 half
//! (`dist/bird/*6.conf`, as shipped): an IPv6 BGP session per node next to the IPv4 one.
//!
//! Everything is stopped by PID and the namespaces deleted on drop.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{netns::Netns, unique_tag};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 100, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 2);
pub const ROUTER_CLIENT_SIDE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
pub const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 1, 0, 0, 0, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0x100, 0, 0, 0, 0, 1);
/// lb's `announce_table` in the shipped BIRD configuration.
pub const ANNOUNCE_TABLE: u32 = 100;

const NODE_CONF: &str = include_str!("../../dist/bird/lb-node.conf");
const ROUTER_CONF: &str = include_str!("../../dist/bird/router.conf");
const NODE6_CONF: &str = include_str!("../../dist/bird/lb-node6.conf");
const ROUTER6_CONF: &str = include_str!("../../dist/bird/router6.conf");
const DSR_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/dsr-server.sh");

/// A namespace on the LAN.
pub struct Host {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    /// With [`Cluster::with_ipv6`].
    pub addr6: Option<Ipv6Addr>,
    pub ifname: String,
    /// The router's end of its link (a port of the LAN bridge).
    pub peer: String,
}

pub struct Cluster {
    pub tag: String,
    pub client: Netns,
    pub router: Netns,
    pub nodes: Vec<Host>,
    pub servers: Vec<Host>,
    /// The kernel has no `ipip`: the servers were set up with `--no-ipip`, and the caller
    /// must take the outer header off otherwise (lb's `ipip_decap` on each server's link).
    pub servers_need_decap: bool,
    birds: Vec<Bird>,
}

impl Cluster {
    /// The namespaces, links, the servers' DSR set-up and BIRD everywhere (the router waits
    /// for announcements; nothing is announced until an lb runs).
    pub fn new(nodes: usize, servers: usize) -> Result<Cluster> {
        Self::build(nodes, servers, false)
    }

    /// [`Cluster::new`], dual-stack: IPv6 addresses, routes and BGP sessions too.
    pub fn with_ipv6(nodes: usize, servers: usize) -> Result<Cluster> {
        Self::build(nodes, servers, true)
    }

    fn build(nodes: usize, servers: usize, ipv6: bool) -> Result<Cluster> {
        crate::require_root();
        let tag = unique_tag();
        let client = Netns::new(&format!("lbc-{tag}-client"))?;
        let router = Netns::new(&format!("lbc-{tag}-router"))?;
        let (cif, rcif) = (format!("c{tag}c"), format!("c{tag}rc"));
        veth(&client, &cif, &router, &rcif)?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", &cif])?;
        client.ip(&["link", "set", &cif, "up"])?;
        client.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_SIDE.to_string(),
        ])?;
        no_csum_offload(&client, &cif)?;
        if ipv6 {
            client.ip(&[
                "addr",
                "add",
                &format!("{CLIENT6}/64"),
                "dev",
                &cif,
                "nodad",
            ])?;
            client.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_CLIENT_SIDE6.to_string(),
            ])?;
        }
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_CLIENT_SIDE}/24"),
            "dev",
            &rcif,
        ])?;
        router.ip(&["link", "set", &rcif, "up"])?;
        let br = format!("c{tag}br");
        router.ip(&["link", "add", &br, "type", "bridge"])?;
        router.ip(&["addr", "add", &format!("{ROUTER}/24"), "dev", &br])?;
        router.ip(&["link", "set", &br, "up"])?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Hash the ports too: one client's connections spread over the nodes.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
        if ipv6 {
            let side = format!("{ROUTER_CLIENT_SIDE6}/64");
            router.ip(&["addr", "add", &side, "dev", &rcif, "nodad"])?;
            router.ip(&["addr", "add", &format!("{ROUTER6}/64"), "dev", &br, "nodad"])?;
            router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            router.sysctl("net.ipv6.fib_multipath_hash_policy", "1")?;
        }
        let lan = |kind: &str, i: usize, host: u8| -> Result<Host> {
            let name = format!("{kind}{}", i + 1);
            let ns = Netns::new(&format!("lbc-{tag}-{name}"))?;
            let (ifname, peer) = (format!("c{tag}{name}"), format!("c{tag}r{name}"));
            veth(&ns, &ifname, &router, &peer)?;
            router.ip(&["link", "set", &peer, "master", &br])?;
            router.ip(&["link", "set", &peer, "up"])?;
            // The router-side end of a node's link must pick up what lb's XDP program sends
            // back (XDP_TX): GRO is not enough on a bridge port, the caller attaches an XDP
            // program there.
            no_csum_offload(&router, &peer)?;
            let addr = Ipv4Addr::new(10, 100, 1, host);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &ifname])?;
            ns.ip(&["link", "set", &ifname, "up"])?;
            ns.ip(&["route", "add", "default", "via", &ROUTER.to_string()])?;
            let addr6 = ipv6.then(|| host6(host));
            if let Some(a) = addr6 {
                ns.ip(&["addr", "add", &format!("{a}/64"), "dev", &ifname, "nodad"])?;
                ns.ip(&["-6", "route", "add", "default", "via", &ROUTER6.to_string()])?;
            }
            Ok(Host {
                name,
                ns,
                addr,
                addr6,
                ifname,
                peer,
            })
        };
        let nodes = (0..nodes)
            .map(|i| lan("n", i, 11 + i as u8))
            .collect::<Result<Vec<_>>>()?;
        let servers = (0..servers)
            .map(|i| lan("s", i, 21 + i as u8))
            .collect::<Result<Vec<_>>>()?;
        for n in &nodes {
            n.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            if ipv6 {
                n.ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo"])?;
            }
        }
        let probe = &servers[0].ns;
        let has = |dev: &str, module: &str| -> Result<bool> {
            Ok(probe.ip(&["link", "show", dev]).is_ok()
                || crate::netns::run(probe.command("modprobe")?.arg(module)).is_ok())
        };
        let servers_need_decap = !has("tunl0", "ipip")? || (ipv6 && !has("ip6tnl0", "ip6_tunnel")?);
        for s in &servers {
            let mut cmd = s.ns.command("sh")?;
            cmd.arg(DSR_SERVER).arg("up");
            if servers_need_decap {
                cmd.arg("--no-ipip");
            }
            cmd.arg(VIP.to_string());
            if ipv6 {
                cmd.arg(VIP6.to_string());
            }
            crate::netns::run(&mut cmd)?;
        }
        let mut c = Cluster {
            tag,
            client,
            router,
            nodes,
            servers,
            servers_need_decap,
            birds: Vec::new(),
        };
        let mut router_conf = test_timers(&ROUTER_CONF.replace("192.0.2.", "10.100.1."));
        if ipv6 {
            router_conf += &test_timers(&ROUTER6_CONF.replace("2001:db8:2::", "fd00:100:1::"));
        }
        let bird = Bird::start(&c.router, &c.tag, "router", &router_conf)?;
        c.birds.push(bird);
        for i in 0..c.nodes.len() {
            let mut conf =
                test_timers(&NODE_CONF.replace("192.0.2.11", &c.nodes[i].addr.to_string()))
                    .replace("192.0.2.", "10.100.1.");
            if let Some(a) = c.nodes[i].addr6 {
                conf += &test_timers(&NODE6_CONF.replace("2001:db8:2::11", &a.to_string()))
                    .replace("2001:db8:2::", "fd00:100:1::");
            }
            let bird = Bird::start(&c.nodes[i].ns, &c.tag, &c.nodes[i].name, &conf)?;
            c.birds.push(bird);
        }
        Ok(c)
    }

    /// The next hops the router's route to the VIP has now (none: no route).
    pub fn vip_next_hops(&self) -> Result<Vec<Ipv4Addr>> {
        self.next_hops(VIP.into())
    }

    /// Waits until the router's next hops to the VIP are exactly `want` (sorted); returns
    /// when they were seen so (polled every 5 ms).
    pub fn wait_next_hops(&self, want: &[Ipv4Addr], limit: Duration) -> Result<Instant> {
        self.wait_for_hops(VIP.into(), want, limit)
    }

    /// [`Cluster::vip_next_hops`] for the IPv6 VIP.
    pub fn vip6_next_hops(&self) -> Result<Vec<Ipv6Addr>> {
        self.next_hops(VIP6.into())
    }

    /// [`Cluster::wait_next_hops`] for the IPv6 VIP.
    pub fn wait_next_hops6(&self, want: &[Ipv6Addr], limit: Duration) -> Result<Instant> {
        self.wait_for_hops(VIP6.into(), want, limit)
    }

    fn next_hops<A: std::str::FromStr + Ord>(&self, vip: IpAddr) -> Result<Vec<A>>
    where
        A::Err: std::error::Error + Send + Sync + 'static,
    {
        // `VIP via GW ...`, or `VIP proto bird ...` then a `nexthop via GW ...` line per hop.
        let (family, len) = if vip.is_ipv4() {
            ("-4", 32)
        } else {
            ("-6", 128)
        };
        let out = self
            .router
            .exec("ip", &[family, "route", "show", &format!("{vip}/{len}")])?;
        let words: Vec<&str> = out.split_whitespace().collect();
        let mut hops: Vec<A> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].parse().with_context(|| format!("next hop in {out:?}")))
            .collect::<Result<_>>()?;
        hops.sort();
        Ok(hops)
    }

    fn wait_for_hops<A>(&self, vip: IpAddr, want: &[A], limit: Duration) -> Result<Instant>
    where
        A: std::str::FromStr + Ord + Clone + std::fmt::Debug,
        A::Err: std::error::Error + Send + Sync + 'static,
    {
        let mut want = want.to_vec();
        want.sort();
        let deadline = Instant::now() + limit;
        let mut last: Vec<A> = Vec::new();
        while Instant::now() < deadline {
            last = self.next_hops(vip)?;
            if last == want {
                return Ok(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the router's next hops to {vip} are {last:?}, not {want:?}, after {limit:?}")
    }

    /// Node addresses, for next hops.
    pub fn node_addrs(&self) -> Vec<Ipv4Addr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Node IPv6 addresses (with [`Cluster::with_ipv6`]), for next hops.
    pub fn node_addrs6(&self) -> Vec<Ipv6Addr> {
        self.nodes.iter().filter_map(|n| n.addr6).collect()
    }

    /// The router's BIRD (`birdc` on it).
    pub fn router_bird(&self) -> &Bird {
        &self.birds[0]
    }
}

/// A LAN host's IPv6 address: the IPv4 one's last byte, written the same, in the LAN's IPv6
/// prefix (10.100.1.11 is fd00:100:1::11).
fn host6(host: u8) -> Ipv6Addr {
    let last = u16::from_str_radix(&host.to_string(), 16).unwrap_or(host.into());
    Ipv6Addr::new(0xfd00, 0x100, 1, 0, 0, 0, 0, last)
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    crate::netns::ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])
}

/// Full checksums from local sockets: a partial one would not survive an XDP program
/// sending the frame on (real NICs are fine).
fn no_csum_offload(ns: &Netns, ifname: &str) -> Result<()> {
    ns.exec("ethtool", &["-K", ifname, "tx-checksum-ip-generic", "off"])
        .map(|_| ())
}

/// The shipped timers, shortened: the test does not wait 5 s for a first BGP session.
fn test_timers(conf: &str) -> String {
    conf.replace(
        "connect retry time 5;",
        "connect retry time 1;\n    connect delay time 1;",
    )
}

/// BIRD in a namespace, with its own control socket; killed by PID on drop.
pub struct Bird {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Bird {
    pub fn start(ns: &Netns, tag: &str, name: &str, conf: &str) -> Result<Bird> {
        let dir = std::env::temp_dir().join(format!("lbc-{tag}-bird-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("bird.conf");
        std::fs::write(&path, conf)?;
        let ctl = dir.join("bird.ctl");
        let child = ns
            .command("bird")?
            .args(["-f", "-c"])
            .arg(&path)
            .arg("-s")
            .arg(&ctl)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bird")?;
        let bird = Bird {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctl.exists() {
            if Instant::now() > deadline {
                bail!("bird ({name}) did not start: {}", bird.dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bird)
    }

    pub fn ctl(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// `birdc -s CTL ARGS...`.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = crate::netns::run(
            std::process::Command::new("birdc")
                .arg("-s")
                .arg(self.ctl())
                .args(args),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // BIRD first (it holds sockets in the namespaces), then the namespaces go with the
        // fields.
        self.birds.clear();
    }
}

/// The shipped server script's path (for tests that run it themselves).
pub fn dsr_server_script() -> &'static Path {
    Path::new(DSR_SERVER)
}
