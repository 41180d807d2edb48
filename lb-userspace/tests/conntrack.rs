//! The flow lifecycle through the real XDP program (BPF_PROG_TEST_RUN): half-open flows
//! confirmed by the client's ACK, timeouts per state, expiry without any daemon, full-NAT
//! ports that come back as the server allows, and SYN floods that only churn the half-open
//! table. Entries are aged by rewriting their clock through the maps, as the data plane
//! would see them after that much idle time.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use dp_fixture::*;
use lb::dataplane::{
    LoadOptions,
    layout::addr_be,
    testrun::{XDP_PASS, XDP_REDIRECT, action_name},
};
use lb_common::{
    FLOW_F_SERVER_CLOSED_FIRST, FLOW_F_TS, Reason, State,
    clock::ticks_from_ms,
    conntrack::{CLOSED_LINGER_MS, TIME_WAIT_MS},
};
use lb_testbed::packet::{self, ACK, FIN, Pkt, RST, SYN};

#[allow(non_snake_case)]
fn VIP80() -> std::net::SocketAddrV4 {
    ep(VIP, 80)
}

fn state(f: &Fixture, k: &lb_common::FlowKey) -> (State, Where) {
    let (e, at) = f.entry(k).expect("entry");
    (State::from_u8(e.state).expect("state"), at)
}

#[test]
fn a_handshake_is_confirmed_by_the_clients_ack_only() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 40100);
    let syn = Pkt::tcp(c, VIP80()).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (_, out) = f.run(f.dpc, &syn.build());
    let (lb_side, server) = packet::endpoints(&out);
    let fwd = tcp_key(c, VIP80());
    let reply = tcp_key(server, lb_side);
    assert_eq!(state(&f, &fwd), (State::SynSent, Where::HalfOpen));
    assert_eq!(state(&f, &reply), (State::SynSent, Where::HalfOpen));
    assert_eq!(f.counts(), (0, 2), "both directions half-open");

    let synack = Pkt::tcp(server, lb_side)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .ack(1001)
        .macs(MAC_WEB10, MAC_DPB);
    assert_eq!(f.run(f.dpb, &synack.build()).0, XDP_REDIRECT);
    assert_eq!(state(&f, &fwd), (State::SynRecv, Where::HalfOpen));
    assert_eq!(f.entry(&fwd).expect("fwd").0.tcp_ref, SERVER_ISN);

    // An ACK that does not acknowledge the server's ISN (a blind spoofer's guess) is
    // forwarded (the server judges it) but confirms nothing.
    let guess = Pkt::tcp(c, VIP80())
        .flags(ACK)
        .seq(1001)
        .ack(12345)
        .macs(MAC_CLIENT, MAC_DPC);
    assert_eq!(f.run(f.dpc, &guess.build()).0, XDP_REDIRECT);
    assert_eq!(state(&f, &fwd), (State::SynRecv, Where::HalfOpen));
    // The real one moves both entries to the main table.
    let ack = guess.clone().ack(SERVER_ISN + 1);
    let (action, out) = f.run(f.dpc, &ack.build());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(packet::endpoints(&out), (lb_side, server));
    assert_eq!(state(&f, &fwd), (State::Established, Where::Flows));
    assert_eq!(state(&f, &reply), (State::Established, Where::Flows));
    assert_eq!(f.counts(), (2, 0));
    // Established traffic both ways keeps working from the main table.
    let data = Pkt::tcp(server, lb_side)
        .payload(b"HTTP/1.0 200 OK\r\n\r\n")
        .macs(MAC_WEB10, MAC_DPB);
    let (action, out) = f.run(f.dpb, &data.build());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(packet::endpoints(&out), (VIP80(), c));
}

#[test]
fn each_state_has_its_timeout() {
    let mut f = Fixture::new();
    // The fixture's config: connect 5s, client 30s, server 60s.
    let t = |ms| ticks_from_ms(ms);
    let c = ep(CLIENT, 40200);
    let fwd = tcp_key(c, VIP80());
    let syn = Pkt::tcp(c, VIP80()).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &syn.build());
    assert_eq!(f.entry(&fwd).expect("fwd").0.timeout, t(5_000), "connect");
    let (lb_side, server) = f.handshake(ep(CLIENT, 40201), VIP80());
    let fwd = tcp_key(ep(CLIENT, 40201), VIP80());
    let reply = tcp_key(server, lb_side);
    assert_eq!(
        f.entry(&fwd).expect("fwd").0.timeout,
        t(30_000),
        "established: the shorter of client and server"
    );
    // The server closes first: half-closed, then closed; its reply entry keeps the port for
    // the server's TIME_WAIT, the forward entry only lingers.
    let fin = Pkt::tcp(server, lb_side)
        .flags(FIN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    f.run(f.dpb, &fin.build());
    assert_eq!(state(&f, &fwd).0, State::FinWait);
    assert_eq!(f.entry(&fwd).expect("fwd").0.timeout, t(30_000));
    let fin = Pkt::tcp(ep(CLIENT, 40201), VIP80())
        .flags(FIN | ACK)
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &fin.build());
    let (r, _) = f.entry(&reply).expect("reply");
    assert_eq!(State::from_u8(r.state), Some(State::Closed));
    assert!(r.flags & FLOW_F_SERVER_CLOSED_FIRST != 0);
    assert_eq!(r.timeout, t(TIME_WAIT_MS));
    assert_eq!(f.entry(&fwd).expect("fwd").0.timeout, t(CLOSED_LINGER_MS));
    // UDP: idle like an established flow.
    let q = Pkt::udp(ep(CLIENT, 5300), ep(VIP, 53)).macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &q.build());
    let (u, at) = f
        .entry(&udp_key(ep(CLIENT, 5300), ep(VIP, 53)))
        .expect("udp");
    assert_eq!((u.timeout, at), (t(30_000), Where::HalfOpen));
}

#[test]
fn idle_flows_expire_without_a_daemon_and_give_their_port_back() {
    let mut f = Fixture::new();
    let a = ep(CLIENT, 40300);
    f.rewind(HOGE, HOGE_WEB10);
    let (lb_side, server) = f.handshake(a, VIP80());
    assert_eq!((lb_side.port(), server), (nth_port(0), ep(WEB10, 80)));
    let fwd = tcp_key(a, VIP80());
    let reply = tcp_key(server, lb_side);
    // One direction idle past the timeout is not enough while the other is fresh.
    let idle = ticks_from_ms(30_000) + 10;
    f.age(&fwd, idle);
    let back = Pkt::tcp(server, lb_side).macs(MAC_WEB10, MAC_DPB);
    assert_eq!(f.run(f.dpb, &back.build()).0, XDP_REDIRECT, "still alive");
    // Both idle: the next packet finds no flow. A client's mid-stream segment goes to the
    // host (which answers RST), and the entries are gone.
    f.age(&fwd, idle);
    f.age(&reply, idle);
    assert_eq!(
        f.bal.dp.maps.live_flows(now()).len(),
        0,
        "lb show sees it dead"
    );
    let data = Pkt::tcp(a, VIP80())
        .payload(b"late")
        .macs(MAC_CLIENT, MAC_DPC);
    f.expect_untouched("expired flow", &data.build());
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
    // The server may still hold its side of the connection (its own timeout may be longer):
    // the reply entry keeps the full-NAT port from the next client...
    assert_eq!(f.counts(), (1, 0), "the reply entry is kept");
    assert!(f.entry(&fwd).is_none(), "the client's tuple is free");
    f.rewind(HOGE, HOGE_WEB10);
    let (lb_side, _) = f.handshake(ep(CLIENT, 40301), VIP80());
    assert_eq!(lb_side.port(), nth_port(1));
    // ...until the longest a server holds a tuple (TIME_WAIT, 60 s) has passed.
    f.age(&reply, ticks_from_ms(TIME_WAIT_MS));
    f.rewind(HOGE, HOGE_WEB10);
    let (lb_side, _) = f.handshake(ep(CLIENT, 40302), VIP80());
    assert_eq!(lb_side.port(), nth_port(0));
    assert!(
        f.entry(&reply)
            .is_some_and(|(r, _)| r.dport == 40302u16.to_be())
    );
}

#[test]
fn a_half_open_flow_expires_after_timeout_connect() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 40400);
    f.rewind(HOGE, HOGE_WEB10);
    let syn = Pkt::tcp(c, VIP80()).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (_, out) = f.run(f.dpc, &syn.build());
    let (lb_side, server) = packet::endpoints(&out);
    // The client has retransmitted (fresh) but the server never answered within 5 s: each
    // entry judges its own clock in the handshake.
    let reply = tcp_key(server, lb_side);
    f.age(&reply, ticks_from_ms(5_000) + 10);
    // A late SYN-ACK finds no flow: the host gets it (and resets the server's half-open
    // connection); the port is free for the next client.
    let synack = Pkt::tcp(server, lb_side)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .macs(MAC_WEB10, MAC_DPB);
    let frame = synack.build();
    f.expect_frame("late SYN-ACK", f.dpb, &frame, XDP_PASS, &frame);
    f.rewind(HOGE, HOGE_WEB10);
    let (_, out) = f.run(
        f.dpc,
        &Pkt::tcp(ep(CLIENT, 40401), VIP80()).flags(SYN).build(),
    );
    assert_eq!(packet::endpoints(&out).0.port(), nth_port(0));
}

#[test]
fn udp_flows_are_confirmed_by_the_client_and_expire() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 5400);
    let dns = ep(VIP, 53);
    let q = Pkt::udp(c, dns).payload(b"q").macs(MAC_CLIENT, MAC_DPC);
    let (_, out) = f.run(f.dpc, &q.build());
    let (lb_side, server) = packet::endpoints(&out);
    let fwd = udp_key(c, dns);
    assert_eq!(state(&f, &fwd), (State::UdpNew, Where::HalfOpen));
    // More queries without an answer stay half-open (a spoofed UDP flood looks like this).
    f.run(f.dpc, &q.build());
    assert_eq!(state(&f, &fwd), (State::UdpNew, Where::HalfOpen));
    let a = Pkt::udp(server, lb_side)
        .payload(b"a")
        .macs(MAC_WEB10, MAC_DPB);
    f.run(f.dpb, &a.build());
    assert_eq!(state(&f, &fwd), (State::UdpReplied, Where::HalfOpen));
    f.run(f.dpc, &q.build());
    assert_eq!(state(&f, &fwd), (State::UdpActive, Where::Flows));
    assert_eq!(f.counts(), (2, 0));
    // Idle past the timeout both ways: the next query is a new flow, on the next port.
    let idle = ticks_from_ms(30_000) + 10;
    f.age(&fwd, idle);
    f.age(&udp_key(server, lb_side), idle);
    let (action, out) = f.run(f.dpc, &q.build());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(state(&f, &fwd), (State::UdpNew, Where::HalfOpen));
    assert_eq!(packet::endpoints(&out).0.port(), nth_port(1));
    assert_eq!(f.counts(), (0, 2), "the expired flow's entries are gone");
}

/// Closes the established flow of `client` (whose server side is `lb_side`/`server`), the
/// server first or the client first.
/// Who closes a connection first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum First {
    Server,
    /// The client, and the server's FIN acknowledges the client's.
    Client,
    /// The client as lb sees it, but the FINs crossed: the server's does not acknowledge the
    /// client's (sequence 1000, so 1001).
    Crossed,
}

fn close(
    f: &mut Fixture,
    client: std::net::SocketAddrV4,
    lb_side: std::net::SocketAddrV4,
    server: std::net::SocketAddrV4,
    first: First,
    client_ts: Option<u32>,
) {
    let from_server = Pkt::tcp(server, lb_side)
        .flags(FIN | ACK)
        .ack(if first == First::Client { 1001 } else { 1000 })
        .macs(MAC_WEB10, MAC_DPB);
    let mut from_client = Pkt::tcp(client, VIP80())
        .flags(FIN | ACK)
        .macs(MAC_CLIENT, MAC_DPC);
    if let Some(ts) = client_ts {
        from_client = from_client.timestamp(ts);
    }
    let (first, second) = if first == First::Server {
        ((f.dpb, from_server), (f.dpc, from_client))
    } else {
        ((f.dpc, from_client), (f.dpb, from_server))
    };
    for (ifindex, p) in [first, second] {
        let (action, _) = f.run(ifindex, &p.build());
        assert_eq!(
            action_name(action),
            "XDP_REDIRECT",
            "{p:?} {:?}",
            f.bal.dp.maps.reasons()
        );
    }
}

/// A SYN like Linux sends it, with timestamps (this TSval) or without; returns the full-NAT
/// port it got.
fn connect(f: &mut Fixture, client: std::net::SocketAddrV4, ts: Option<u32>) -> u16 {
    connect_from(f, client, ts, 0)
}

/// [`connect`], trying ports from the `first`-th on.
fn connect_from(
    f: &mut Fixture,
    client: std::net::SocketAddrV4,
    ts: Option<u32>,
    first: u64,
) -> u16 {
    f.rewind(HOGE, HOGE_WEB10);
    f.bal
        .dp
        .maps
        .snat_cursor
        .set(HOGE_WEB10.0, first, 0)
        .expect("port cursor");
    let mut syn = Pkt::tcp(client, VIP80())
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    if let Some(ts) = ts {
        syn = syn.timestamps(ts);
    }
    let (action, out) = f.run(f.dpc, &syn.build());
    assert_eq!(
        action_name(action),
        "XDP_REDIRECT",
        "{client}: {:?}",
        f.bal.dp.maps.reasons()
    );
    assert_eq!(packet::verify_checksums(&out), Ok(()));
    let (lb_side, server) = packet::endpoints(&out);
    assert_eq!(server, ep(WEB10, 80));
    lb_side.port()
}

#[test]
fn ports_come_back_as_the_server_allows() {
    let mut f = Fixture::new();
    let other = std::net::Ipv4Addr::new(10, 0, 0, 3);
    f.net
        .neighbour(other, [0x02, 0, 0, 0, 0, 0xc3])
        .expect("neighbour");
    let server = ep(WEB10, 80);
    // a takes port 0 (its SYN carries timestamps), b port 1: a live port is never shared.
    let a = ep(CLIENT, 50000);
    assert_eq!(connect(&mut f, a, Some(1_000_000)), nth_port(0));
    let fwd_a = tcp_key(a, VIP80());
    assert!(f.entry(&fwd_a).expect("a").0.flags & FLOW_F_TS != 0);
    let b = ep(other, 50000);
    assert_eq!(connect(&mut f, b, None), nth_port(1));
    // web10 closes a's connection first: it holds the tuple in TIME_WAIT for 60 s, where the
    // last timestamp it saw is a's FIN's. A SYN with an older one (timestamp clocks start at
    // a random offset per connection), or none, may not have the port: web10 would reject it.
    close(
        &mut f,
        a,
        ep(LB_B, nth_port(0)),
        server,
        First::Server,
        Some(1_000_500),
    );
    let reply_a = tcp_key(server, ep(LB_B, nth_port(0)));
    assert_eq!(f.entry(&reply_a).expect("a's reply").0.tcp_ref, 1_000_500);
    let c = ep(other, 50001);
    assert_eq!(
        connect(&mut f, c, Some(1_000_100)),
        nth_port(2),
        "an older timestamp than the server's last"
    );
    assert_eq!(connect(&mut f, ep(CLIENT, 50001), None), nth_port(3));
    // A newer one, from any client, may: web10 takes the SYN at once.
    let e = ep(other, 50010);
    assert_eq!(
        connect(&mut f, e, Some(1_000_501)),
        nth_port(0),
        "a newer timestamp"
    );
    assert!(f.entry(&fwd_a).is_none(), "a's flow is forgotten");
    let reply = f.entry(&reply_a).expect("the tuple's reply entry").0;
    assert_eq!(
        (reply.dst, reply.dport),
        (addr_be(*e.ip()), e.port().to_be()),
        "answers go to e"
    );
    // A close the client begins leaves nothing on the server: the port is free at once, for
    // anyone (b's port 1 goes to d).
    close(
        &mut f,
        b,
        ep(LB_B, nth_port(1)),
        server,
        First::Client,
        None,
    );
    let d = ep(other, 50002);
    assert_eq!(connect(&mut f, d, None), nth_port(1));
    // An RST too.
    let rst = Pkt::tcp(d, VIP80()).flags(RST).macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &rst.build());
    assert_eq!(connect(&mut f, ep(other, 50003), None), nth_port(1));
    // c's FIN comes without timestamps (the server did not agree to them): nothing to
    // compare, so the port rests until the TIME_WAIT ends, 60 s later.
    close(
        &mut f,
        c,
        ep(LB_B, nth_port(2)),
        server,
        First::Server,
        None,
    );
    assert_eq!(
        connect(&mut f, ep(other, 50004), Some(2_000_000)),
        nth_port(4)
    );
    let reply_c = tcp_key(server, ep(LB_B, nth_port(2)));
    f.age(&reply_c, ticks_from_ms(TIME_WAIT_MS) + 10);
    assert_eq!(connect(&mut f, ep(other, 50005), None), nth_port(2));
    // The reply now belongs to the new flow, never to c.
    let back = Pkt::tcp(server, ep(LB_B, nth_port(2)))
        .flags(SYN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    let (_, out) = f.run(f.dpb, &back.build());
    assert_eq!(packet::endpoints(&out), (VIP80(), ep(other, 50005)));
    let g = ep(other, 50006);
    assert_eq!(connect(&mut f, g, Some(3_000_000)), nth_port(5));
    // FINs that crossed: lb sees the client's first, but the server sent its own before it
    // had the client's, so it holds a TIME_WAIT after all: only a newer timestamp than g's
    // last may have the port. g's ACK of the server's FIN, after both FINs, is that last.
    close(
        &mut f,
        g,
        ep(LB_B, nth_port(5)),
        server,
        First::Crossed,
        Some(3_000_400),
    );
    let last_ack = Pkt::tcp(g, VIP80())
        .flags(ACK)
        .seq(1001)
        .timestamp(3_000_401)
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &last_ack.build());
    let reply_g = tcp_key(server, ep(LB_B, nth_port(5)));
    assert_eq!(f.entry(&reply_g).expect("g's reply").0.tcp_ref, 3_000_401);
    let h = ep(other, 50007);
    assert_eq!(
        connect(&mut f, h, Some(3_000_401)),
        nth_port(6),
        "not newer than g's last ACK"
    );
    let h2 = ep(other, 50008);
    assert_eq!(connect(&mut f, h2, Some(3_000_402)), nth_port(5));
    // A client that starts its own tuple again (as Linux does with tcp_tw_reuse) gets no
    // pass on the server's TIME_WAIT on the old port either: the SYN restarts the flow,
    // and the old port keeps its rule.
    let k = ep(other, 50009);
    assert_eq!(connect(&mut f, k, Some(4_000_000)), nth_port(7));
    close(
        &mut f,
        k,
        ep(LB_B, nth_port(7)),
        server,
        First::Server,
        Some(4_000_100),
    );
    assert_eq!(
        connect_from(&mut f, k, Some(4_000_050), 7),
        nth_port(8),
        "the same tuple, an older timestamp: not port 7"
    );
    assert_eq!(
        connect(&mut f, ep(other, 50011), Some(4_000_101)),
        nth_port(7)
    );
}

#[test]
fn a_syn_flood_churns_only_the_half_open_table() {
    // A small half-open table, so a bounded flood overflows it many times.
    let opts = LoadOptions {
        conntrack_entries: 4096,
        halfopen_entries: 256,
        ..LoadOptions::default()
    };
    let mut f = Fixture::with(CONFIG, opts);
    let mut established = Vec::new();
    for port in 41000..41020 {
        let c = ep(CLIENT, port);
        established.push((c, f.handshake(c, VIP80())));
    }
    assert_eq!(f.counts(), (40, 0));
    // 5,000 SYNs from spoofed sources, a few ACKs among them (which make no state).
    let mut rng = 0x1234_5678u32;
    for i in 0..5_000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let src = std::net::Ipv4Addr::from(0x0a40_0000 | (rng & 0x003f_ffff));
        let flags = if i % 10 == 0 { ACK } else { SYN };
        let p = Pkt::tcp(ep(src, 1024 + (rng >> 22) as u16), VIP80()).flags(flags);
        f.run(f.dpc, &p.build());
    }
    let (flows, halfopen) = f.counts();
    assert_eq!(flows, 40, "no established flow was evicted");
    assert!(halfopen <= 2 * 256, "half-open table bounded: {halfopen}");
    assert_eq!(
        f.reason(Reason::PassNoFlow),
        500,
        "ACKs without a flow made no state"
    );
    // Every established flow still goes where it went, both ways.
    for (c, (lb_side, server)) in &established {
        let data = Pkt::tcp(*c, VIP80())
            .payload(b"x")
            .macs(MAC_CLIENT, MAC_DPC);
        let (action, out) = f.run(f.dpc, &data.build());
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(packet::endpoints(&out), (*lb_side, *server));
        let back = Pkt::tcp(*server, *lb_side).macs(MAC_WEB10, MAC_DPB);
        let (_, out) = f.run(f.dpb, &back.build());
        assert_eq!(packet::endpoints(&out), (VIP80(), *c));
    }
    // And a new client still connects.
    let (_, server) = f.handshake(ep(CLIENT, 42000), VIP80());
    assert!(server.port() == 80);
    assert_eq!(f.counts().0, 42);
}

#[test]
fn a_stopped_daemon_balances_no_new_flow_but_keeps_established_ones() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 43000);
    let (lb_side, server) = f.handshake(c, VIP80());
    let mut s = f.bal.dp.maps.settings.get(&0, 0).expect("settings");
    s.stop_at = now();
    f.bal.dp.maps.write_settings(s).expect("stop");
    let syn = Pkt::tcp(ep(CLIENT, 43001), VIP80()).flags(SYN).build();
    f.expect_untouched("new flow after stop", &syn);
    assert_eq!(f.reason(Reason::PassStopped), 1);
    let data = Pkt::tcp(c, VIP80()).macs(MAC_CLIENT, MAC_DPC);
    let (action, out) = f.run(f.dpc, &data.build());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(packet::endpoints(&out), (lb_side, server));
    // A stop still in the future changes nothing yet.
    s.stop_at = now().wrapping_add(ticks_from_ms(10_000));
    f.bal.dp.maps.write_settings(s).expect("stop later");
    assert_eq!(f.run(f.dpc, &syn).0, XDP_REDIRECT);
}

#[test]
fn shutting_a_servers_sessions_down_ends_only_its_flows() {
    // `shutdown sessions server`, `on-marked-down shutdown-sessions`: the daemon forgets the
    // server's flows; their next packets find none and go to the host, which resets them.
    let mut f = Fixture::new();
    let (a, b) = (ep(CLIENT, 44000), ep(CLIENT, 44001));
    let (a_side, a_server) = f.handshake(a, VIP80());
    let (_, b_server) = f.handshake(b, VIP80());
    assert_ne!(a_server, b_server, "round robin put them apart");
    let slot = if a_server.ip() == &WEB10 {
        HOGE_WEB10
    } else {
        HOGE_WEB11
    };
    let ended = f.bal.shutdown_sessions(slot).expect("shutdown sessions");
    assert_eq!(ended, 1);
    let data = |c| Pkt::tcp(c, VIP80()).payload(b"x").macs(MAC_CLIENT, MAC_DPC);
    f.expect_untouched("a's flow is gone", &data(a).build());
    let back = Pkt::tcp(a_server, a_side).macs(MAC_WEB10, MAC_DPB).build();
    f.expect_frame("and its replies", f.dpb, &back, XDP_PASS, &back);
    let (action, out) = f.run(f.dpc, &data(b).build());
    assert_eq!(action, XDP_REDIRECT, "b's flow stays");
    assert_eq!(packet::endpoints(&out).1, b_server);
}

/// The source-port search runs as a `bpf_loop` callback: with every port of the range held
/// by a live flow, it gives up after `SNAT_PROBES` probes (the cursor shows each one), and
/// the SYN is dropped and counted, never sent with a port that is in use.
#[test]
fn a_full_port_range_drops_new_flows_after_the_probes() {
    let config = format!(
        "[global]\nsnat_ports = \"{SNAT_MIN}-{}\"\n{CONFIG}",
        SNAT_MIN + 1
    );
    let mut f = Fixture::with(&config, LoadOptions::default());
    assert_eq!(connect(&mut f, ep(CLIENT, 50000), None), SNAT_MIN);
    assert_eq!(connect(&mut f, ep(CLIENT, 50001), None), SNAT_MIN + 1);
    let c = ep(CLIENT, 50002);
    f.rewind(HOGE, HOGE_WEB10);
    let syn = Pkt::tcp(c, VIP80()).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &syn.build());
    assert_eq!(action_name(action), "XDP_DROP");
    let exhausted = f
        .bal
        .dp
        .maps
        .reasons()
        .expect("reasons")
        .into_iter()
        .find(|(r, _)| *r == Reason::DropSnatExhausted)
        .map(|(_, n)| n);
    assert_eq!(exhausted, Some(1));
    let cursor = f
        .bal
        .dp
        .maps
        .snat_cursor
        .get(&HOGE_WEB10.0, 0)
        .expect("cursor");
    assert_eq!(cursor, u64::from(lb_common::balance::SNAT_PROBES));
    assert!(f.entry(&tcp_key(c, VIP80())).is_none(), "nothing tracked");
}
