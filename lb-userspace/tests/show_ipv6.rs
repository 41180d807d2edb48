//! What `lb show`, `show stat` and `shutdown sessions` read from the IPv6 conntrack tables
//! (`LB6_FLOWS`, `LB6_HALFOPEN`), on the real maps of a loaded program: entries are written
//! as the data plane writes them (both directions), then read back through `Maps`.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::Ipv6Addr;

use dp_fixture::*;
use lb_common::{
    Addr6, FLOW_F_REPLY, Flow6, FlowKey6, PROTO_TCP, State, addr6_from_octets, clock::ticks_from_ms,
};

fn a6(s: &str) -> Addr6 {
    addr6_from_octets(s.parse::<Ipv6Addr>().expect("v6").octets())
}

/// A full-NAT flow fd00:16::2:33906 -> [fd00:16::1]:80, sent from [fd00:16::1]:1024 to
/// web11 at [fd00:16::11]:8000: its forward and reply entries.
fn flow(state: State, server: u16) -> [(FlowKey6, Flow6); 2] {
    let (client, vip, server_addr) = (a6("fd00:16::2"), a6("fd00:16::1"), a6("fd00:16::11"));
    let (cport, vport, nport, sport) = (
        33906u16.to_be(),
        80u16.to_be(),
        1024u16.to_be(),
        8000u16.to_be(),
    );
    let base = Flow6 {
        state: state as u8,
        server,
        frontend: 0,
        last_seen: now(),
        timeout: ticks_from_ms(50_000),
        ..Flow6::default()
    };
    let fwd = Flow6 {
        src: vip,
        dst: server_addr,
        sport: nport,
        dport: sport,
        ..base
    };
    let reply = Flow6 {
        src: vip,
        dst: client,
        sport: vport,
        dport: cport,
        flags: FLOW_F_REPLY,
        ..base
    };
    [
        (FlowKey6::new(client, vip, cport, vport, PROTO_TCP), fwd),
        (fwd.mirror_key(PROTO_TCP), reply),
    ]
}

#[test]
fn ipv6_flows_are_listed_counted_and_ended() {
    // The IPv6 tables sized as for IPv6 services: an instance without them keeps two
    // entries, and every update of an LRU entry takes a free node first, so rewriting one of
    // a flow's entries there may evict the other (which CI saw once: 0 flows ended, not 1).
    let mut f = Fixture::with(
        CONFIG,
        lb::dataplane::LoadOptions {
            ipv6: true,
            ..lb::dataplane::LoadOptions::default()
        },
    );
    let web11 = HOGE_WEB11.0 as u16;
    for (k, v) in flow(State::Established, web11) {
        f.bal.dp.maps.flows6.insert(k, v, 0).expect("insert");
    }
    let now = now();
    assert_eq!(f.bal.dp.maps.live_flows6(now).len(), 1, "the forward entry");
    assert_eq!(f.bal.dp.maps.flow_count(now), 1);
    let open = f.bal.dp.maps.open_flows(1, now);
    assert_eq!(
        (
            open.total,
            open.per_server[HOGE_WEB11.index()],
            open.per_frontend[0]
        ),
        (1, 1, 1)
    );
    assert_eq!(f.bal.dp.maps.active_flows(now)[HOGE_WEB11.index()], 1);

    let shown = lb::show::flow_rows(
        &f.bal.dp.maps,
        &lb::show::FlowFilter {
            client: Some("fd00:16::2".parse().expect("ip")),
            limit: 10,
            ..Default::default()
        },
    )
    .expect("flows");
    assert_eq!(shown.matching, 1);
    let row = &shown.flows[0];
    assert_eq!(
        (
            row.client.as_str(),
            row.vip.as_str(),
            row.server_addr.as_str(),
            row.source.as_str()
        ),
        (
            "[fd00:16::2]:33906",
            "[fd00:16::1]:80",
            "[fd00:16::11]:8000",
            "[fd00:16::1]:1024"
        )
    );
    assert_eq!(format!("{}/{}", row.backend, row.server), "hoge/web11");

    // Idle past its timeout both ways: dead by the same rule as an IPv4 flow.
    for (k, _) in flow(State::Established, web11) {
        let mut e = f.bal.dp.maps.flows6.get(&k, 0).expect("entry");
        e.last_seen = e.last_seen.wrapping_sub(ticks_from_ms(50_000) + 10);
        f.bal.dp.maps.flows6.insert(k, e, 0).expect("age");
    }
    assert_eq!(f.bal.dp.maps.live_flows6(now).len(), 0, "expired");

    // `shutdown sessions` ends both entries of the server's flows.
    for (k, v) in flow(State::Established, web11) {
        f.bal.dp.maps.flows6.insert(k, v, 0).expect("insert");
    }
    assert_eq!(f.bal.shutdown_sessions(HOGE_WEB11).expect("shutdown"), 1);
    assert_eq!(f.bal.dp.maps.flows6.keys().flatten().count(), 0);
}
