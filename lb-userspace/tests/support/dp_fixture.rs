//! The data-plane fixture shared by `tests/dataplane.rs` (packets) and `tests/conntrack.rs`
//! (flow lifecycle): frames built from scratch go through the real XDP program with
//! BPF_PROG_TEST_RUN, and the exact output frame (headers, checksums, MACs) and XDP action are
//! compared with what is expected, Katran style.
//!
//! The program runs inside a throwaway namespace (`lb_testbed::runnet`) with fixed MACs and
//! permanent neighbours, so `bpf_fib_lookup` gives deterministic next hops:
//!
//! ```text
//!  client 10.0.0.2 (02:..:c2) ── dpc 10.0.0.1 (VIP, 02:..:c1)  [ns]  dpb 10.1.0.1 (02:..:b1) ── servers 10.1.0.10 (02:..:0a)
//!                                                                                           10.1.0.11 (02:..:0b)
//!                                                                                           10.1.0.12 (no neighbour)
//! ```
#![allow(dead_code)] // each test file uses its own part

use std::net::{Ipv4Addr, SocketAddrV4};

use lb::{
    config::native,
    daemon::{Balancer, Plan, ServerState},
    dataplane::{
        Dataplane, LoadOptions, clock,
        ids::{PoolSlot, ServerSlot},
        layout::{Layout, addr_be},
        testrun::{self, XDP_PASS},
    },
};
use lb_common::{Flow, FlowKey, PROTO_TCP, PROTO_UDP, Reason, ServerInfo};
pub use lb_testbed::runnet::{MAC_DPB, MAC_DPC};
use lb_testbed::{
    packet::{self, ACK, Pkt, SYN},
    runnet::RunNet,
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const LB_B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const WEB10: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
pub const WEB11: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc2];
pub const MAC_WEB10: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_WEB11: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// The default full-NAT port range starts here (`Global::default().snat_ports`).
pub const SNAT_MIN: u16 = 1024;
/// The server's initial sequence number in fixture handshakes.
pub const SERVER_ISN: u32 = 5000;

pub const CONFIG: &str = r#"
[defaults]
timeout = { connect = "5s", client = "30s", server = "60s" }

[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "hoge"

[frontend.dns]
bind = ["10.0.0.1:53/udp"]
default_backend = "dns"

[frontend.direct]
bind = ["10.0.0.1:8080"]
default_backend = "direct"

[frontend.unresolved]
bind = ["10.0.0.1:81"]
default_backend = "unresolved"

[frontend.sorry]
bind = ["10.0.0.1:82"]
default_backend = "sorry"

[backend.hoge]
redispatch = true
retries = 2
server = [{ name = "web10", address = "10.1.0.10:80" }, { name = "web11", address = "10.1.0.11:80" }]

[backend.dns]
server = [{ name = "dns10", address = "10.1.0.10:53" }]

[backend.direct]
nat = "dnat"
server = [{ name = "web10", address = "10.1.0.10:80" }, { name = "web11", address = "10.1.0.11:80" }]

[backend.unresolved]
server = [{ name = "web12", address = "10.1.0.12:80" }]

[backend.sorry]
on_empty = "pass"
server = [{ name = "web10", address = "10.1.0.10:80", disabled = true }]
"#;

// Where hoge and its servers live in the maps: a fresh start places backends and servers in
// declaration order.
pub const HOGE: PoolSlot = PoolSlot(0);
pub const HOGE_WEB10: ServerSlot = ServerSlot(0);
pub const HOGE_WEB11: ServerSlot = ServerSlot(1);

pub struct Fixture {
    pub net: RunNet,
    pub bal: Balancer,
    pub dpc: u32,
    pub dpb: u32,
}

pub fn ep(a: Ipv4Addr, p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a, p)
}

/// The full-NAT source port of the `n`-th flow towards one server: ports go in turn.
pub fn nth_port(n: u16) -> u16 {
    SNAT_MIN + n
}

/// Which table an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Flows,
    HalfOpen,
}

impl Fixture {
    /// Creates the namespace, moves this test's thread into it and loads the program with
    /// the config above installed exactly as `lb run` installs it.
    pub fn new() -> Fixture {
        Fixture::with(CONFIG, LoadOptions::default())
    }

    pub fn with(config: &str, opts: LoadOptions) -> Fixture {
        let net = RunNet::new().expect("netns");
        for (ip, mac) in [(CLIENT, MAC_CLIENT), (WEB10, MAC_WEB10), (WEB11, MAC_WEB11)] {
            net.neighbour(ip, mac).expect("neighbour");
        }
        let (dpc, dpb) = net.enter().expect("setns");

        let cfg = native::parse("dataplane.toml", config).expect("config");
        let layout = Layout::new(&cfg);
        let plan = Plan {
            snat: vec![LB_B.into(); layout.server_count() as usize],
            layout,
            interfaces: vec![],
            local: lb::daemon::Local {
                v4: vec![addr_be(VIP), addr_be(LB_B)],
                v6: Vec::new(),
            },
        };
        let dp = Dataplane::load(&opts).expect("load XDP object");
        let bal = Balancer::install(dp, plan, &cfg).expect("install");
        Fixture { net, bal, dpc, dpb }
    }

    pub fn run(&mut self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = self.bal.dp.lb_program().expect("program");
        let o = testrun::run(prog, ifindex, frame, 1).expect("test run");
        (o.action, o.frame)
    }

    /// Feeds `input` and asserts the exact output frame and action.
    #[track_caller]
    pub fn expect(&mut self, what: &str, ifindex: u32, input: &Pkt, action: u32, output: &Pkt) {
        self.expect_frame(what, ifindex, &input.build(), action, &output.build());
    }

    #[track_caller]
    pub fn expect_frame(
        &mut self,
        what: &str,
        ifindex: u32,
        input: &[u8],
        action: u32,
        want: &[u8],
    ) {
        let (got_action, got) = self.run(ifindex, input);
        assert_eq!(
            testrun::action_name(got_action),
            testrun::action_name(action),
            "{what}: XDP action"
        );
        assert!(
            got == want,
            "{what}: output frame differs\n{}",
            packet::diff(&got, want)
        );
        if got != input {
            // Either family: the IPv6 fixture (`dp6_fixture`) feeds its frames here too.
            let sums = if got.get(12..14) == Some(&[0x86, 0xdd]) {
                packet::verify_checksums6(&got)
            } else {
                packet::verify_checksums(&got)
            };
            assert_eq!(sums, Ok(()), "{what}: checksums");
        }
    }

    /// Feeds `frame` and asserts it is passed to the kernel byte for byte.
    #[track_caller]
    pub fn expect_untouched(&mut self, what: &str, frame: &[u8]) {
        self.expect_frame(what, self.dpc, frame, XDP_PASS, frame);
    }

    pub fn reason(&self, r: Reason) -> u64 {
        let all = self.bal.dp.maps.reasons().expect("reasons");
        all.iter()
            .find(|(x, _)| *x == r)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    pub fn set_down(&mut self, backend: &str, server: &str) {
        let id = self.bal.servers().find(backend, server).expect("server");
        self.bal.change(id, |st| st.up = false).expect("change");
    }

    pub fn state(&self, backend: &str, server: &str) -> ServerState {
        let id = self.bal.servers().find(backend, server).expect("server");
        self.bal.server(id).expect("entry").state
    }

    /// Points the pool's round-robin cursor and a server's port cursor back at the start, so
    /// the next new flow goes to the pool's first server and tries its first port first.
    pub fn rewind(&mut self, pool: PoolSlot, server: ServerSlot) {
        self.bal
            .dp
            .maps
            .pool_rr
            .set(pool.0, 0, 0)
            .expect("rr cursor");
        self.bal
            .dp
            .maps
            .snat_cursor
            .set(server.0, 0, 0)
            .expect("port cursor");
    }

    /// The entry at `key` and its table, if any.
    pub fn entry(&self, key: &FlowKey) -> Option<(Flow, Where)> {
        if let Ok(f) = self.bal.dp.maps.flows.get(key, 0) {
            return Some((f, Where::Flows));
        }
        self.bal
            .dp
            .maps
            .halfopen
            .get(key, 0)
            .ok()
            .map(|f| (f, Where::HalfOpen))
    }

    /// Rewrites the entry at `key` (wherever it is) with `change`.
    pub fn edit(&mut self, key: &FlowKey, change: impl FnOnce(&mut Flow)) {
        let (mut f, at) = self.entry(key).expect("entry to edit");
        change(&mut f);
        let table = match at {
            Where::Flows => &mut self.bal.dp.maps.flows,
            Where::HalfOpen => &mut self.bal.dp.maps.halfopen,
        };
        table.insert(key, f, 0).expect("write entry");
        // As the daemon does after changing flows: no CPU serves the old entry from a copy.
        self.bal
            .dp
            .maps
            .forget_cached_copies([key])
            .expect("drop cached copies");
    }

    /// The server entry at `slot` (`LB_SERVERS`).
    pub fn server_entry(&self, slot: ServerSlot) -> ServerInfo {
        self.bal
            .dp
            .maps
            .servers
            .get(&slot.0, 0)
            .expect("server entry")
    }

    /// Rewrites the server entry at `slot` with `change` (behind the daemon's back, as the
    /// data plane's next-hop refreshes do).
    pub fn edit_server(&mut self, slot: ServerSlot, change: impl FnOnce(&mut ServerInfo)) {
        let mut s = self.server_entry(slot);
        change(&mut s);
        self.bal
            .dp
            .maps
            .write_server(slot, s)
            .expect("write server");
    }

    /// Makes the entry at `key` look idle for `ticks` more than it has been.
    pub fn age(&mut self, key: &FlowKey, ticks: u32) {
        self.edit(key, |f| f.last_seen = f.last_seen.wrapping_sub(ticks));
    }

    /// Entries in each table (both directions of every flow).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.bal.dp.maps.flows.keys().flatten().count(),
            self.bal.dp.maps.halfopen.keys().flatten().count(),
        )
    }

    /// A full handshake from `client` to `vip` (SYN, the server's SYN-ACK, the client's ACK):
    /// returns where the flow went (the LB-side endpoint and the server).
    pub fn handshake(
        &mut self,
        client: SocketAddrV4,
        vip: SocketAddrV4,
    ) -> (SocketAddrV4, SocketAddrV4) {
        let syn = Pkt::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
        let (action, out) = self.run(self.dpc, &syn.build());
        assert_eq!(testrun::action_name(action), "XDP_REDIRECT", "SYN");
        let (lb_side, server) = packet::endpoints(&out);
        let synack = Pkt::tcp(server, lb_side)
            .flags(SYN | ACK)
            .seq(SERVER_ISN)
            .ack(1001)
            .macs(MAC_WEB10, MAC_DPB);
        let (action, _) = self.run(self.dpb, &synack.build());
        assert_eq!(testrun::action_name(action), "XDP_REDIRECT", "SYN-ACK");
        let ack = Pkt::tcp(client, vip)
            .flags(ACK)
            .seq(1001)
            .ack(SERVER_ISN + 1)
            .macs(MAC_CLIENT, MAC_DPC);
        let (action, _) = self.run(self.dpc, &ack.build());
        assert_eq!(testrun::action_name(action), "XDP_REDIRECT", "ACK");
        (lb_side, server)
    }
}

/// The `LB_FLOWS` key of a packet from `src` to `dst`.
pub fn key(src: SocketAddrV4, dst: SocketAddrV4, proto: u8) -> FlowKey {
    FlowKey::new(
        addr_be(*src.ip()),
        addr_be(*dst.ip()),
        src.port().to_be(),
        dst.port().to_be(),
        proto,
    )
}

pub fn tcp_key(src: SocketAddrV4, dst: SocketAddrV4) -> FlowKey {
    key(src, dst, PROTO_TCP)
}

pub fn udp_key(src: SocketAddrV4, dst: SocketAddrV4) -> FlowKey {
    key(src, dst, PROTO_UDP)
}

/// What a client packet to the VIP becomes towards a server in full-NAT.
pub fn full_nat(p: &Pkt, server: Ipv4Addr, mac: [u8; 6], sport: u16, dport: u16) -> Pkt {
    p.clone()
        .tuple(ep(LB_B, sport), ep(server, dport))
        .macs(MAC_DPB, mac)
}

/// Now, in the data plane's clock.
pub fn now() -> u32 {
    clock::now()
}
