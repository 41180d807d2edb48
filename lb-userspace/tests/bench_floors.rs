//! The benchmark floors (`bench_floor_hit`, `bench_floor_new` in lb-ebpf's `bench`), through
//! BPF_PROG_TEST_RUN on a real data plane's tables: lb-bench's scale section reports lb's
//! costs next to them, so they must do what their rows say, byte for byte, and keep
//! verifying as the object changes.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::SocketAddrV4;

use dp_fixture::{CLIENT, MAC_CLIENT, MAC_WEB10, VIP, WEB10, ep, tcp_key as key};
use lb::dataplane::{
    Dataplane, LoadOptions,
    layout::addr_be,
    testrun::{self, XDP_ABORTED, XDP_DROP, XDP_PASS},
};
use lb_common::{
    Flow, FlowKey,
    bench::{PROG_BENCH_FLOOR_HIT, PROG_BENCH_FLOOR_NEW},
};
use lb_testbed::packet::{ACK, Pkt, SYN};

fn frame(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    Pkt::tcp(src, dst)
        .flags(flags)
        .payload(b"floor")
        .macs(MAC_CLIENT, MAC_WEB10)
        .build()
}

#[test]
fn the_hit_floor_rewrites_as_its_entry_says_and_nothing_else() {
    let mut dp = Dataplane::load(&LoadOptions::default()).expect("load");
    let (client, vip) = (ep(CLIENT, 40000), ep(VIP, 80));
    let server = ep(WEB10, 8080);
    let to = Flow {
        src: addr_be(*client.ip()),
        dst: addr_be(*server.ip()),
        sport: client.port().to_be(),
        dport: server.port().to_be(),
        ..Flow::default()
    };
    dp.maps
        .flows
        .insert(key(client, vip), to, 0)
        .expect("insert");
    let prog = dp.bench_program(PROG_BENCH_FLOOR_HIT).expect("floor hit");
    let o = testrun::run(prog, 0, &frame(client, vip, ACK), 1).expect("run");
    assert_eq!(o.action, XDP_PASS);
    // Addresses, ports and both checksums as a packet built to the server would have them;
    // MACs untouched (the floor forwards nothing).
    assert_eq!(o.frame, frame(client, server, ACK));

    let other = ep(WEB10, 40000);
    let o = testrun::run(prog, 0, &frame(other, vip, ACK), 1).expect("run");
    assert_eq!(
        o.action, XDP_DROP,
        "no entry: dropped, so a bench run is checkable"
    );
    let o = testrun::run(prog, 0, &[0u8; 20], 1).expect("run");
    assert_eq!(o.action, XDP_ABORTED, "a frame that does not parse");
}

#[test]
fn the_new_flow_floor_inserts_both_entries_of_a_new_flow_per_run() {
    let mut dp = Dataplane::load(&LoadOptions::default()).expect("load");
    let (client, vip) = (ep(CLIENT, 1024), ep(VIP, 80));
    let prog = dp.bench_program(PROG_BENCH_FLOOR_NEW).expect("floor new");
    let o = testrun::run(prog, 0, &frame(client, vip, SYN), 3).expect("run");
    assert_eq!(o.action, XDP_PASS);
    assert_eq!(o.frame.get(34..36), Some(&1027u16.to_be_bytes()[..]));
    let mut held: Vec<FlowKey> = dp
        .maps
        .halfopen
        .keys()
        .collect::<Result<_, _>>()
        .expect("keys");
    held.sort_by_key(|k| (k.sport, k.dport));
    let mut want = Vec::new();
    for port in 1024..1027 {
        let c = ep(CLIENT, port);
        want.push(key(c, vip));
        want.push(key(vip, c));
    }
    want.sort_by_key(|k| (k.sport, k.dport));
    assert_eq!(
        held, want,
        "each run's flow, both directions, and nothing else"
    );
    assert_eq!(
        dp.maps.flows.keys().count(),
        0,
        "the main table is not touched"
    );
}
