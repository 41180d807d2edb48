//! Consistent hashing in the data plane (BPF_PROG_TEST_RUN, exact frames): new flows go where
//! the pure Maglev table says (`lb_common::maglev`), which is what lets several lb nodes agree
//! without talking; conntrack still pins established flows when the table changes.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::{collections::BTreeMap, net::Ipv4Addr};

use dp_fixture::*;
use lb::dataplane::{ids::PoolSlot, layout::addr_be, testrun::XDP_REDIRECT};
use lb_common::maglev::{self, Candidate, flow_hash, maglev_entry, source_hash};
use lb_testbed::packet::{self, ACK, Pkt, SYN};

const CONFIG: &str = r#"
[frontend.conn]
bind = ["10.0.0.1:80"]
default_backend = "conn"

[frontend.src]
bind = ["10.0.0.1:81"]
default_backend = "src"

[backend.conn]
hash_type = "consistent"
hash_table_size = 251
server = [{ name = "web10", address = "10.1.0.10:80" }, { name = "web11", address = "10.1.0.11:80", weight = 3 }]

[backend.src]
balance = "source"
server = [{ name = "web10", address = "10.1.0.10:81" }, { name = "web11", address = "10.1.0.11:81" }]
"#;

const CONN: PoolSlot = PoolSlot(0);
const SRC: PoolSlot = PoolSlot(1);

/// The pure table of a pool's two servers, slots `first` and `first + 1`.
fn pure(first: u16, weights: [u32; 2], up: [bool; 2], size: u32) -> Vec<u16> {
    let c = |i: usize, name| Candidate {
        name,
        slot: first + i as u16,
        weight: weights[i],
        usable: up[i],
    };
    maglev::build(&[c(0, "web10"), c(1, "web11")], size)
}

fn server_addr(slot: u16) -> Ipv4Addr {
    if slot.is_multiple_of(2) { WEB10 } else { WEB11 }
}

/// Sends a SYN from `client` to `vip` and returns the server it went to.
fn syn_to(
    f: &mut Fixture,
    client: std::net::SocketAddrV4,
    vip: std::net::SocketAddrV4,
) -> Ipv4Addr {
    let syn = Pkt::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (action, out) = f.run(f.dpc, &syn.build());
    assert_eq!(action, XDP_REDIRECT, "SYN from {client}");
    assert_eq!(packet::verify_checksums(&out), Ok(()));
    *packet::endpoints(&out).1.ip()
}

#[test]
fn new_flows_go_where_the_pure_table_says() {
    let mut f = Fixture::with(CONFIG, Default::default());
    let live = f.bal.dp.maps.live_maglev(CONN).expect("live table");
    let want = pure(0, [1, 3], [true, true], 251);
    let live16: Vec<u16> = live.iter().map(|s| s.0 as u16).collect();
    assert_eq!(live16, want, "the published table is the pure one");

    let vip = ep(VIP, 80);
    let mut per_server: BTreeMap<Ipv4Addr, u32> = BTreeMap::new();
    for port in 0..200u16 {
        let client = ep(CLIENT, 30000 + port);
        let k = tcp_key(client, vip);
        let h = flow_hash(k.src, k.dst, k.sport, k.dport, k.proto);
        let slot = want[maglev_entry(h, 251) as usize];
        let got = syn_to(&mut f, client, vip);
        assert_eq!(got, server_addr(slot), "client port {}", 30000 + port);
        *per_server.entry(got).or_default() += 1;
    }
    // Weights 1:3 over 200 connections.
    let (a, b) = (per_server[&WEB10], per_server[&WEB11]);
    assert!((30..=70).contains(&a) && a + b == 200, "{per_server:?}");

    // web11 goes DOWN: its established flows stay (conntrack pins them), new flows of its
    // clients go to web10, web10's clients do not move.
    let pinned = ep(
        CLIENT,
        30000
            + (0..200)
                .find(|&p| {
                    let k = tcp_key(ep(CLIENT, 30000 + p), vip);
                    want[maglev_entry(flow_hash(k.src, k.dst, k.sport, k.dport, k.proto), 251)
                        as usize]
                        == 1
                })
                .expect("a client of web11"),
    );
    f.set_down("conn", "web11");
    let down = pure(0, [1, 3], [true, false], 251);
    let live: Vec<u16> = f
        .bal
        .dp
        .maps
        .live_maglev(CONN)
        .expect("live")
        .iter()
        .map(|s| s.0 as u16)
        .collect();
    assert_eq!(live, down);
    let data = Pkt::tcp(pinned, vip).flags(ACK).macs(MAC_CLIENT, MAC_DPC);
    let (action, out) = f.run(f.dpc, &data.build());
    assert_eq!(
        (action, *packet::endpoints(&out).1.ip()),
        (XDP_REDIRECT, WEB11),
        "pinned"
    );
    for port in 300..340u16 {
        assert_eq!(syn_to(&mut f, ep(CLIENT, 30000 + port), vip), WEB10);
    }
}

#[test]
fn balance_source_sends_a_client_to_one_server() {
    let mut f = Fixture::with(CONFIG, Default::default());
    let vip = ep(VIP, 81);
    let table = pure(2, [1, 1], [true, true], maglev::MAGLEV_DEFAULT_SIZE);
    let live: Vec<u16> = f
        .bal
        .dp
        .maps
        .live_maglev(SRC)
        .expect("live")
        .iter()
        .map(|s| s.0 as u16)
        .collect();
    assert_eq!(live, table);
    let mut seen = BTreeMap::new();
    for host in 2..40u8 {
        let client = Ipv4Addr::new(10, 0, 0, host);
        let slot = table[maglev_entry(source_hash(addr_be(client)), table.len() as u32) as usize];
        for port in [1000u16, 2000, 3000] {
            let got = syn_to(&mut f, ep(client, port), vip);
            assert_eq!(got, server_addr(slot), "{client}:{port}");
        }
        *seen.entry(slot).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both servers have clients: {seen:?}");
}
