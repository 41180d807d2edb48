//! The flow lifecycle under load, end to end (real `lb run`, nginx, the seed's topology):
//! a spoofed SYN flood must not break established connections nor turn new ones away (the
//! half-open table it churns is kept well under the full-NAT port range), and must leave no
//! trace once its half-open flows timed out;
//! a sustained run of short connections through full-NAT must reuse source ports without a
//! single SYN retransmission.
//!
//! Each test prints its numbers (run with `--nocapture` to see them).
#[path = "support/e2e_fixture.rs"]
mod fixture;

use std::time::{Duration, Instant};

use fixture::{Bed, Extra, config, fmt_reasons, vip, vip4};
use lb_testbed::{
    flood::{Flood, Watch},
    topo::{Routing, VIP},
    wrk::Wrk,
};

/// Spoofed SYNs per flood.
const FLOOD_SYNS: u64 = 100_000;
/// New connections count as "after the flood" from this long after it ended: the default
/// `timeout connect` (5 s), after which every half-open flow of the flood has expired.
const SETTLE: Duration = Duration::from_secs(5);

fn syn_flood(routing: Routing, nat: &str) {
    let bed = Bed::start(routing, "fl", |i| config(i, nat, &Extra::default()));
    let flood = Flood::new(vip4(), FLOOD_SYNS, Duration::from_secs(30));
    let watch = Watch {
        // Four seconds of new connections once the flood's half-open flows are gone.
        after: SETTLE + Duration::from_secs(4),
        ..Watch::default()
    };
    let t = Instant::now();
    let veth_dropped = bed.client_tx_dropped();
    let out = flood
        .watched(&bed.topo.client, vip(), &watch)
        .expect("flood under watch");
    let reasons = bed.reasons();
    let new_flows = bed.new_flows();
    let veth_dropped = bed.client_tx_dropped() - veth_dropped;
    let (before, during, after) = (out.before(), out.during(SETTLE), out.after(SETTLE));
    eprintln!(
        "[{nat}] flood: {} SYNs in {:.2} s ({:.0}/s, {} busy sends), {veth_dropped} dropped \
         by the client's veth (lb's ring full); lb: {new_flows} new flows, reasons: {}",
        out.sent.packets,
        out.sent.elapsed.as_secs_f64(),
        out.sent.rate(),
        out.sent.busy,
        fmt_reasons(&reasons),
    );
    eprintln!(
        "[{nat}] kept-alive: {} ok, {} errors {:?}, {} reconnects",
        out.keep_alive.ok,
        out.keep_alive.errors.len(),
        out.keep_alive.errors,
        out.keep_alive.reconnects,
    );
    eprintln!(
        "[{nat}] new connections served: before {before:?}, during (to {} s after) {during:?}, \
         after {after:?}; took {:.1} s",
        SETTLE.as_secs(),
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(out.sent.packets, FLOOD_SYNS, "the sender stopped early");
    // The flood reached lb: what the veth did not drop (its ring to lb's XDP program was
    // full) became (half-open) flows or was counted as dropped.
    let dropped: u64 = reasons
        .iter()
        .filter(|(k, _)| k.starts_with("drop_"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        new_flows + dropped + veth_dropped >= FLOOD_SYNS * 9 / 10,
        "only {new_flows} new flows, {dropped} drops and {veth_dropped} veth drops for \
         {FLOOD_SYNS} SYNs"
    );
    assert!(
        new_flows >= FLOOD_SYNS / 4,
        "only {new_flows} new flows for {FLOOD_SYNS} SYNs"
    );
    // The established connection never noticed.
    assert!(
        out.keep_alive.errors.is_empty(),
        "the kept-alive connection failed: {:?}",
        out.keep_alive.errors
    );
    let expected = (out.end.as_secs_f64() + watch.after.as_secs_f64()) * 10.0;
    assert!(
        out.keep_alive.ok as f64 >= expected * 0.7,
        "the kept-alive connection made {} requests, expected about {expected:.0}",
        out.keep_alive.ok
    );
    assert_eq!(before.served, before.opened, "before the flood");
    // During it: the flood holds at most the half-open table's worth of each server's ports,
    // a quarter of them; a real SYN dropped by the saturated veth is retransmitted in time.
    // Under DNAT the servers' SYN-ACKs to the spoofed sources come back through lb too, and
    // at twice the load a real handshake can be slower than the half-open table's turnover
    // (8,192 flows at ~100k SYN/s: ~80 ms): its entry is evicted and its ACK reset by the
    // host. Seen in 1 of ~30 connections in 1 run of 4. Full-NAT meets it too now that lb
    // takes the flood faster (245k SYN/s in the bench, 26 of 28 and 26 of 27 served during
    // it, 1 of ~28 in a CI run): the target is every connection from 5 s after the
    // flood, asserted below; SYN cookies from XDP would close this gap.
    let may_fail = during.opened / 10;
    assert!(
        during.opened - during.served <= may_fail,
        "new connections failed during the flood: {:?}",
        out.failures_from(out.start)
    );
    // Once the flood's half-open flows timed out, every new connection is served.
    assert!(after.opened >= 15, "{after:?}");
    assert_eq!(
        after.served,
        after.opened,
        "new connections failed after the flood: {:?}",
        out.failures_from(out.end + SETTLE)
    );
}

#[test]
fn syn_flood_spares_established_flows_full_nat() {
    syn_flood(Routing::Isolated, "full-nat");
}

#[test]
fn syn_flood_spares_established_flows_dnat() {
    syn_flood(Routing::ViaLb, "dnat");
}

/// Full-NAT source ports per server in the short-connection runs: few, so that each is
/// reused many times whatever rate this machine reaches.
const SNAT_PORTS: (u16, u16) = (20000, 21999);

/// 15 s of `wrk -c50 -H 'Connection: close'` through full-NAT, the client's
/// `net.ipv4.tcp_timestamps` set to `timestamps`. The servers close first and hold each
/// (lb address, port) in TIME_WAIT, and the same ports must serve the next connections at
/// once: lb may only hand a port to a SYN the server accepts on it, or the client
/// retransmits its SYN a second later. The client's own ports (1024-65535) do not wrap in
/// 15 s, so every SYN retransmission is lb's choice of port.
fn short_connections_through_full_nat(timestamps: &str) {
    let global = format!("snat_ports = \"{}-{}\"", SNAT_PORTS.0, SNAT_PORTS.1);
    let bed = Bed::start(Routing::Isolated, "sc", |i| {
        config(
            i,
            "full-nat",
            &Extra {
                global: &global,
                ..Extra::default()
            },
        )
    });
    let client = &bed.topo.client;
    client
        .sysctl("net.ipv4.ip_local_port_range", "1024 65535")
        .expect("port range");
    client
        .sysctl("net.ipv4.tcp_tw_reuse", "1")
        .expect("tw_reuse");
    client
        .sysctl("net.ipv4.tcp_timestamps", timestamps)
        .expect("timestamps");
    let counters = ["TcpExtTCPSynRetrans", "TcpRetransSegs"];
    let read = || counters.map(|c| client.nstat(c).expect("nstat"));
    // Why a server would turn a SYN away: PAWS in TIME_WAIT, a full accept queue.
    let server_counters = [
        "TcpExtPAWSTimewait",
        "TcpExtListenDrops",
        "TcpExtTWRecycled",
    ];
    let read_servers = || {
        server_counters.map(|c| {
            bed.topo
                .backends
                .iter()
                .map(|b| b.ns.nstat(c).expect("nstat"))
                .sum::<u64>()
        })
    };
    let servers_before = read_servers();
    let before = read();
    let t = Instant::now();
    let w = Wrk {
        connections: 50,
        secs: 15,
        close: true,
    }
    .run(client, VIP)
    .expect("wrk");
    let after = read();
    let (syn_retrans, retrans) = (after[0] - before[0], after[1] - before[1]);
    let servers_after = read_servers();
    let servers: Vec<String> = server_counters
        .iter()
        .zip(servers_after.iter().zip(servers_before))
        .map(|(c, (a, b))| format!("{c} {}", a - b))
        .collect();
    let reasons = bed.reasons();
    eprintln!(
        "[full-nat, tcp_timestamps={timestamps}] {} requests in {:.1} s ({:.0}/s), {} errors, \
         p99 {:.2} ms; client SYN retransmissions {syn_retrans}, segments retransmitted \
         {retrans}; servers: {}; lb: {} new flows, reasons: {}",
        w.requests,
        t.elapsed().as_secs_f64(),
        w.rps,
        w.errors,
        w.p99_ms,
        servers.join(", "),
        bed.new_flows(),
        fmt_reasons(&reasons)
    );
    let ports = 2 * u64::from(SNAT_PORTS.1 - SNAT_PORTS.0 + 1);
    assert!(
        w.requests >= 4 * ports,
        "{} requests: too few to reuse each of the {ports} ports several times",
        w.requests
    );
    assert_eq!(w.errors, 0, "wrk counted errors");
    assert_eq!(syn_retrans, 0, "the client retransmitted SYNs");
    for r in [
        "drop_snat_exhausted",
        "drop_tuple_in_use",
        "drop_conntrack_full",
    ] {
        assert_eq!(reasons.get(r), None, "{}", fmt_reasons(&reasons));
    }
}

/// Clients whose timestamps only move forward between connections to the same address
/// (`tcp_timestamps=2`, no random offsets): what RFC 6191's reuse of a port in TIME_WAIT
/// relies on.
#[test]
fn short_connections_through_full_nat_never_retransmit_a_syn_monotonic_timestamps() {
    short_connections_through_full_nat("2");
}

/// Linux's default clients (`tcp_timestamps=1`): Linux 6.18 draws a random timestamp offset
/// per connection, so a new SYN's timestamp is older than the one the server's TIME_WAIT
/// holds about half the time, and the server would refuse it (`TcpExtPAWSTimewait`): lb
/// gives such a SYN another port.
#[test]
fn short_connections_through_full_nat_never_retransmit_a_syn() {
    short_connections_through_full_nat("1");
}
