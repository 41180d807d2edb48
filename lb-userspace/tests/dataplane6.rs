//! The IPv6 data plane byte for byte, as `dataplane.rs`, `conntrack.rs` and `icmp.rs` check
//! IPv4's: frames built from scratch (`lb_testbed::packet::Pkt6`, checksums from the RFCs)
//! go through the real XDP program with BPF_PROG_TEST_RUN, and the exact output frame and
//! action are compared with what is expected.
//!
//! The IPv4 fixture installs its configuration as `lb run` does; the IPv6 side of the same
//! services and servers is written into the `LB6_*` maps by `support/dp6_fixture.rs`:
//!
//! ```text
//!  client fd00::2 (02:..:c2) ── dpc fd00::1 (VIP, 02:..:c1)  [ns]  dpb fd01::1 (02:..:b1) ── servers fd01::10 (02:..:0a)
//!                                                                                         fd01::11 (02:..:0b)
//!                                                                                         fd01::12 (no neighbour)
//! ```
#[path = "support/dp6_fixture.rs"]
mod dp6_fixture;
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::{Ipv6Addr, SocketAddrV6};

use aya::maps::lpm_trie::Key;
use dp_fixture::*;
use dp6_fixture::*;
use lb::dataplane::{
    LoadOptions,
    testrun::{self, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
};
use lb_common::{
    ACCESS_FIXED_BITS, ACCESS_REJECT, AccessKey6, Addr6, FLOW_F_DSR, FLOW_F_FIN_CLIENT, Flow6,
    FlowEvent6, FlowKey6, NEXT_HOP_TTL, PROTO_TCP, PROTO_UDP, Reason, SETTINGS_F_LOG_FLOWS, State,
    addr6_from_octets,
    clock::ticks_from_ms,
    maglev::{self, Candidate, flow_hash, maglev_entry},
};
use lb_testbed::packet::{
    self, ACK, EXT_DSTOPTS, EXT_FRAGMENT, EXT_HOPOPTS, EXT_ROUTING, FIN, ICMPV6,
    ICMPV6_DEST_UNREACH, ICMPV6_PACKET_TOO_BIG, ICMPV6_PORT_UNREACH, ICMPV6_TIME_EXCEEDED, Pkt6,
    RST, SYN, icmp6_error, ip6ip6, l4_checksum6,
};

/// The IPv4 fixture with every service also at `[fd00::1]` and every server also at its
/// IPv6 twin (`dp6_fixture`).
fn fixture() -> Fixture {
    dp6_fixture::with_ipv6(LoadOptions::default())
}

/// [`fixture`] for another configuration of the same addresses.
fn fixture_with(config: &str) -> Fixture {
    dp6_fixture::with_ipv6_config(config, LoadOptions::default())
}

fn key6(src: SocketAddrV6, dst: SocketAddrV6, proto: u8) -> FlowKey6 {
    FlowKey6::new(
        a6(*src.ip()),
        a6(*dst.ip()),
        src.port().to_be(),
        dst.port().to_be(),
        proto,
    )
}

/// The entry at `key` and whether it is confirmed (`LB6_FLOWS`) rather than half-open.
fn entry6(f: &Fixture, key: &FlowKey6) -> Option<(Flow6, bool)> {
    if let Ok(e) = f.bal.dp.maps.flows6.get(key, 0) {
        return Some((e, true));
    }
    f.bal.dp.maps.halfopen6.get(key, 0).ok().map(|e| (e, false))
}

fn counts6(f: &Fixture) -> (usize, usize) {
    (
        f.bal.dp.maps.flows6.keys().flatten().count(),
        f.bal.dp.maps.halfopen6.keys().flatten().count(),
    )
}

/// A full handshake from `client` to the VIP's port 80 (full-NAT to web10, the pool
/// rewound): returns the client's and the server's view of the next data packet carrying
/// `payload`.
fn handshake6(f: &mut Fixture, client: SocketAddrV6, payload: &[u8]) -> (Pkt6, Pkt6) {
    f.rewind(HOGE, HOGE_WEB10);
    let vip = ep6(VIP6, 80);
    let lb_side = ep6(LB_B6, nth_port(0));
    let server = ep6(WEB10_6, 80);
    let syn = Pkt6::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let want = syn.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    let (dpc, dpb) = (f.dpc, f.dpb);
    f.expect_frame("SYN", dpc, &syn.build(), XDP_REDIRECT, &want.build());
    let synack = Pkt6::tcp(server, lb_side)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .ack(1001)
        .macs(MAC_WEB10, MAC_DPB);
    let want = synack.clone().tuple(vip, client).macs(MAC_DPC, MAC_CLIENT);
    f.expect_frame("SYN-ACK", dpb, &synack.build(), XDP_REDIRECT, &want.build());
    let ack = Pkt6::tcp(client, vip)
        .flags(ACK)
        .seq(1001)
        .ack(SERVER_ISN + 1)
        .macs(MAC_CLIENT, MAC_DPC);
    let want = ack.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("ACK", dpc, &ack.build(), XDP_REDIRECT, &want.build());
    let client_pkt = ack.ack(SERVER_ISN + 1).payload(payload);
    let server_pkt = client_pkt.clone().tuple(lb_side, server);
    (client_pkt, server_pkt)
}

#[test]
fn tcp_full_nat_new_flow_reply_and_hit() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    let client = ep6(CLIENT6, 40000);
    let vip = ep6(VIP6, 80);
    let lb_side = ep6(LB_B6, nth_port(0));
    let server = ep6(WEB10_6, 80);
    f.rewind(HOGE, HOGE_WEB10);

    // The SYN: full-NAT from lb's address on the servers' side, first port, to web10. The
    // hop limit, traffic class and flow label go through as they came (as IPv4's TTL does).
    let syn = Pkt6::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let want = syn.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("SYN", dpc, &syn.build(), XDP_REDIRECT, &want.build());
    let (fwd, confirmed) = entry6(&f, &key6(client, vip, PROTO_TCP)).expect("forward entry");
    assert!(!confirmed, "a new flow starts half-open");
    assert_eq!((fwd.src, fwd.dst), (a6(LB_B6), a6(WEB10_6)));
    assert_eq!(fwd.sport, nth_port(0).to_be());
    let (reply, _) = entry6(&f, &key6(server, lb_side, PROTO_TCP)).expect("reply entry");
    assert_eq!((reply.src, reply.dst), (a6(VIP6), a6(CLIENT6)));
    assert_eq!(counts6(&f), (0, 2));

    // The server's SYN-ACK goes back to the client from the VIP.
    let synack = Pkt6::tcp(server, lb_side)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .ack(1001)
        .macs(MAC_WEB10, MAC_DPB);
    let want = synack.clone().tuple(vip, client).macs(MAC_DPC, MAC_CLIENT);
    f.expect_frame("SYN-ACK", dpb, &synack.build(), XDP_REDIRECT, &want.build());

    // The client's ACK confirms the flow: both entries move to the main table.
    let ack = Pkt6::tcp(client, vip)
        .flags(ACK)
        .seq(1001)
        .ack(SERVER_ISN + 1)
        .macs(MAC_CLIENT, MAC_DPC);
    let want = ack.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("ACK", dpc, &ack.build(), XDP_REDIRECT, &want.build());
    assert_eq!(counts6(&f), (2, 0));

    // Data both ways on the confirmed flow (the inline hit path), odd lengths included.
    let data = ack.clone().payload(b"GET / HTTP/1.0\r\n\r\n!");
    let want = data.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("hit", dpc, &data.build(), XDP_REDIRECT, &want.build());
    let answer = Pkt6::tcp(server, lb_side)
        .flags(ACK)
        .seq(SERVER_ISN + 1)
        .ack(1020)
        .payload(b"HTTP/1.0 200 OK\r\n")
        .macs(MAC_WEB10, MAC_DPB);
    let want = answer.clone().tuple(vip, client).macs(MAC_DPC, MAC_CLIENT);
    f.expect_frame("reply", dpb, &answer.build(), XDP_REDIRECT, &want.build());

    // A second client takes the next server and the next port of its own.
    let other = ep6(CLIENT6, 40001);
    let syn = Pkt6::tcp(other, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let want = syn
        .clone()
        .tuple(ep6(LB_B6, nth_port(0)), ep6(WEB11_6, 80))
        .macs(MAC_DPB, MAC_WEB11);
    f.expect_frame("second SYN", dpc, &syn.build(), XDP_REDIRECT, &want.build());
    // IPv4's tables never saw any of it.
    assert_eq!(f.counts(), (0, 0));
}

/// An idle IPv6 flow takes its server's fresh next hop as IPv4's does (`dataplane.rs`), and
/// only while the server entry still holds the flow's 16-byte address.
#[test]
fn an_idle_flow_takes_its_servers_next_hop() {
    let mut f = fixture();
    let dpc = f.dpc;
    let client = ep6(CLIENT6, 40100);
    let (data, out) = handshake6(&mut f, client, b"GET / HTTP/1.0\r\n\r\n");
    let key = key6(client, ep6(VIP6, 80), PROTO_TCP);
    let stale = |f: &mut Fixture| {
        let mut e = f.bal.dp.maps.flows6.get(&key, 0).expect("forward entry");
        e.nh.stamp = e.nh.stamp.wrapping_sub(NEXT_HOP_TTL);
        f.bal.dp.maps.flows6.insert(key, e, 0).expect("write entry");
    };
    // The server's hop says a MAC no neighbour has, so only a copy can send the packet there.
    let lend = |f: &mut Fixture, addr: Ipv6Addr| {
        let mut s = f
            .bal
            .dp
            .maps
            .servers6
            .get(&HOGE_WEB10.0, 0)
            .expect("server");
        s.addr = a6(addr);
        s.nh.dmac = MAC_LENT;
        s.nh.stamp = now();
        f.bal
            .dp
            .maps
            .write_server6(HOGE_WEB10, s)
            .expect("write server");
    };

    stale(&mut f);
    lend(&mut f, WEB10_6);
    let want = out.clone().macs(MAC_DPB, MAC_LENT);
    f.expect_frame(
        "the server's hop",
        dpc,
        &data.build(),
        XDP_REDIRECT,
        &want.build(),
    );

    // The server moved (its entry written behind the writer's back, hop and all): the flow
    // to its old address looks its own up.
    stale(&mut f);
    lend(&mut f, WEB11_6);
    let want = out.clone().macs(MAC_DPB, MAC_WEB10);
    f.expect_frame(
        "moved server",
        dpc,
        &data.build(),
        XDP_REDIRECT,
        &want.build(),
    );
    let e = f.bal.dp.maps.flows6.get(&key, 0).expect("forward entry");
    assert_eq!(e.nh.dmac, MAC_WEB10);
    let s = f
        .bal
        .dp
        .maps
        .servers6
        .get(&HOGE_WEB10.0, 0)
        .expect("server");
    assert_eq!(s.nh.dmac, MAC_LENT, "the moved server's hop left alone");
}

/// A MAC no neighbour of the fixture has.
const MAC_LENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5a];

#[test]
fn dnat_keeps_the_client_address() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    let client = ep6(CLIENT6, 40002);
    let vip = ep6(VIP6, 8080);
    let server = ep6(WEB10_6, 80);
    f.bal.dp.maps.pool_rr.set(2, 0, 0).expect("rr cursor");
    let syn = Pkt6::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let want = syn.clone().tuple(client, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("SYN", dpc, &syn.build(), XDP_REDIRECT, &want.build());
    let synack = Pkt6::tcp(server, client)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .ack(1001)
        .macs(MAC_WEB10, MAC_DPB);
    let want = synack.clone().tuple(vip, client).macs(MAC_DPC, MAC_CLIENT);
    f.expect_frame("SYN-ACK", dpb, &synack.build(), XDP_REDIRECT, &want.build());
}

#[test]
fn udp_full_nat_both_ways() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    let client = ep6(CLIENT6, 5353);
    let vip = ep6(VIP6, 53);
    let lb_side = ep6(LB_B6, nth_port(0));
    let server = ep6(WEB10_6, 53);
    let q = Pkt6::udp(client, vip)
        .payload(b"query?")
        .macs(MAC_CLIENT, MAC_DPC);
    let want = q.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("query", dpc, &q.build(), XDP_REDIRECT, &want.build());
    let a = Pkt6::udp(server, lb_side)
        .payload(b"answer")
        .macs(MAC_WEB10, MAC_DPB);
    let want = a.clone().tuple(vip, client).macs(MAC_DPC, MAC_CLIENT);
    f.expect_frame("answer", dpb, &a.build(), XDP_REDIRECT, &want.build());
    let (e, _) = entry6(&f, &key6(client, vip, PROTO_UDP)).expect("UDP flow");
    assert_eq!(e.dst, a6(WEB10_6));
}

#[test]
fn extension_headers_are_walked_and_kept() {
    let mut f = fixture();
    let dpc = f.dpc;
    f.rewind(HOGE, HOGE_WEB10);
    let client = ep6(CLIENT6, 40010);
    let vip = ep6(VIP6, 80);
    // Hop-by-hop (router alert), a routing header with no segment left, destination
    // options: walked to TCP, forwarded with all three as they were.
    let syn = Pkt6::tcp(client, vip)
        .flags(SYN)
        .ext(EXT_HOPOPTS, &[5, 2, 0, 0, 1, 0])
        .ext(EXT_ROUTING, &[4, 0, 0, 0, 0, 0])
        .ext(EXT_DSTOPTS, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .macs(MAC_CLIENT, MAC_DPC);
    let want = syn
        .clone()
        .tuple(ep6(LB_B6, nth_port(0)), ep6(WEB10_6, 80))
        .macs(MAC_DPB, MAC_WEB10);
    f.expect_frame(
        "SYN with extension headers",
        dpc,
        &syn.build(),
        XDP_REDIRECT,
        &want.build(),
    );
    assert!(entry6(&f, &key6(client, vip, PROTO_TCP)).is_some());
}

#[test]
fn truncation_at_every_boundary_passes_untouched() {
    let mut f = fixture();
    // A SYN to the service (one that would start a flow), with extension headers, and a
    // UDP query: cut anywhere, each is passed to the kernel byte for byte and makes no state.
    let syn = Pkt6::tcp(ep6(CLIENT6, 40020), ep6(VIP6, 80))
        .flags(SYN)
        .ext(EXT_HOPOPTS, &[1, 4, 0, 0, 0, 0])
        .ext(EXT_DSTOPTS, &[1, 4, 0, 0, 0, 0])
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    let udp = Pkt6::udp(ep6(CLIENT6, 5354), ep6(VIP6, 53))
        .payload(b"q")
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    let mut cuts = 0;
    for frame in [&syn, &udp] {
        // From a bare Ethernet header (the smallest frame a test run takes) to one byte short.
        for len in 14..frame.len() {
            f.expect_untouched(&format!("cut at {len}"), &frame[..len]);
            cuts += 1;
        }
    }
    assert_eq!(f.reason(Reason::PassMalformed), cuts);
    assert_eq!(counts6(&f), (0, 0));
}

#[test]
fn fragments_unknown_headers_and_long_chains_pass_untouched() {
    let mut f = fixture();
    let c = ep6(CLIENT6, 40030);
    let vip = ep6(VIP6, 80);
    let base = Pkt6::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    // A first fragment: the data plane never reassembles.
    let frag = base.clone().ext(EXT_FRAGMENT, &[0, 1, 0, 0, 0, 42]);
    f.expect_untouched("fragment", &frag.build());
    assert_eq!(f.reason(Reason::PassFragment), 1);
    // Five extension headers: one more than the walk takes.
    let mut long = base.clone();
    for _ in 0..5 {
        long = long.ext(EXT_DSTOPTS, &[1, 4, 0, 0, 0, 0]);
    }
    f.expect_untouched("five extension headers", &long.build());
    // A routing header with a segment left: the packet is on its way elsewhere.
    let routed = base.clone().ext(EXT_ROUTING, &[4, 1, 0, 0, 0, 0]);
    f.expect_untouched("segments left", &routed.build());
    assert_eq!(f.reason(Reason::PassExtHeaders), 2);
    // "No next header" (59) and an unknown one.
    for next in [59u8, 253] {
        let mut p = base.clone().build();
        p[20] = next;
        f.expect_untouched(&format!("next header {next}"), &p);
    }
    assert_eq!(f.reason(Reason::PassNotL4), 2);
    // UDP without a checksum is not valid IPv6.
    let mut udp = Pkt6::udp(ep6(CLIENT6, 5355), ep6(VIP6, 53))
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    udp[60..62].copy_from_slice(&[0, 0]);
    f.expect_untouched("UDP checksum 0", &udp);
    assert_eq!(f.reason(Reason::PassMalformed), 1);
    assert_eq!(counts6(&f), (0, 0));
}

/// An ICMPv6 message of `kind` from `src` to `dst` with `body` after the type, code and
/// checksum, built from scratch.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_DPC);
    f.extend_from_slice(&MAC_CLIENT);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(body);
    let c = l4_checksum6(src, dst, ICMPV6, &f[54..]);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn neighbour_discovery_and_other_icmpv6_pass_untouched() {
    let mut f = fixture();
    let mut ns = vec![0, 0, 0, 0];
    ns.extend_from_slice(&VIP6.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&MAC_CLIENT);
    let solicited = "ff02::1:ff00:1".parse().expect("address");
    f.expect_untouched(
        "neighbour solicitation",
        &icmp6(CLIENT6, solicited, 135, &ns),
    );
    let mut na = vec![0x60, 0, 0, 0];
    na.extend_from_slice(&CLIENT6.octets());
    f.expect_untouched("neighbour advertisement", &icmp6(CLIENT6, VIP6, 136, &na));
    f.expect_untouched("router solicitation", &icmp6(CLIENT6, VIP6, 133, &[0; 4]));
    f.expect_untouched("echo request", &icmp6(CLIENT6, VIP6, 128, &[0, 1, 0, 1]));
    assert_eq!(f.reason(Reason::PassNotL4), 4);
    // An error about a packet of no flow of ours.
    let about = Pkt6::tcp(ep6(VIP6, 80), ep6(CLIENT6, 40099)).build();
    let err = icmp6_error(
        (MAC_ROUTER, MAC_DPC),
        ROUTER_C6,
        VIP6,
        (ICMPV6_DEST_UNREACH, 0),
        0,
        &about,
        1232,
    );
    f.expect_untouched("error about no flow", &err);
    assert_eq!(f.reason(Reason::PassNotService), 1);
}

#[test]
fn errors_about_tracked_flows_reach_the_other_side_as_it_knows_the_flow() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    let client = ep6(CLIENT6, 41000);
    let (client_pkt, server_pkt) = handshake6(&mut f, client, &[b'x'; 100]);
    let client_pkt = client_pkt.macs(MAC_CLIENT, MAC_DPC).build();
    let server_pkt = server_pkt.macs(MAC_DPB, MAC_WEB10).build();

    // A router towards the server says "packet too big" about lb's packet (quoting all of
    // it, as Linux does): the client hears it about its own packet, from the router.
    let ptb = (ICMPV6_PACKET_TOO_BIG, 0);
    let err = icmp6_error(
        (MAC_ROUTER, MAC_DPB),
        ROUTER_B6,
        LB_B6,
        ptb,
        1280,
        &server_pkt,
        1232,
    );
    let want = icmp6_error(
        (MAC_DPC, MAC_CLIENT),
        ROUTER_B6,
        CLIENT6,
        ptb,
        1280,
        &client_pkt,
        1232,
    );
    f.expect_frame("packet too big", dpb, &err, XDP_REDIRECT, &want);

    // The server itself says "port unreachable": the client hears it from the VIP.
    let unreach = (ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH);
    let err = icmp6_error(
        (MAC_WEB10, MAC_DPB),
        WEB10_6,
        LB_B6,
        unreach,
        0,
        &server_pkt,
        1232,
    );
    let want = icmp6_error(
        (MAC_DPC, MAC_CLIENT),
        VIP6,
        CLIENT6,
        unreach,
        0,
        &client_pkt,
        1232,
    );
    f.expect_frame("port unreachable", dpb, &err, XDP_REDIRECT, &want);

    // A router on the client's side says "time exceeded" about a reply (a short quote: the
    // header and the ports): the server hears it about its own packet.
    let reply = Pkt6::tcp(ep6(VIP6, 80), client)
        .flags(ACK)
        .seq(SERVER_ISN + 1)
        .macs(MAC_DPC, MAC_ROUTER)
        .build();
    let server_reply = Pkt6::tcp(ep6(WEB10_6, 80), ep6(LB_B6, nth_port(0)))
        .flags(ACK)
        .seq(SERVER_ISN + 1)
        .build();
    let exceeded = (ICMPV6_TIME_EXCEEDED, 0);
    let err = icmp6_error(
        (MAC_ROUTER, MAC_DPC),
        ROUTER_C6,
        VIP6,
        exceeded,
        0,
        &reply,
        48,
    );
    let want = icmp6_error(
        (MAC_DPB, MAC_WEB10),
        ROUTER_C6,
        WEB10_6,
        exceeded,
        0,
        &server_reply,
        48,
    );
    f.expect_frame("time exceeded", dpc, &err, XDP_REDIRECT, &want);
    assert_eq!(f.reason(Reason::IcmpTranslated), 3);
}

#[test]
fn a_packet_too_big_for_the_path_is_answered() {
    let mut f = fixture();
    let dpc = f.dpc;
    // The route to web10 takes 1280-byte packets (IPv6's minimum), pinned.
    f.net
        .ns
        .ip(&[
            "-6",
            "route",
            "add",
            "fd01::10/128",
            "dev",
            "dpb",
            "mtu",
            "lock",
            "1280",
        ])
        .expect("route with MTU");
    let client = ep6(CLIENT6, 43000);
    let (client_pkt, server_pkt) = handshake6(&mut f, client, &[b'y'; 1300]);
    let big = client_pkt.macs(MAC_CLIENT, MAC_DPC).build();
    // "Packet too big" back to the client, from the VIP it sent to, quoting its packet's
    // header and first 8 bytes, with the path's MTU: IPv6 routers never fragment.
    let want = icmp6_error(
        (MAC_DPC, MAC_CLIENT),
        VIP6,
        CLIENT6,
        (ICMPV6_PACKET_TOO_BIG, 0),
        1280,
        &big,
        48,
    );
    f.expect_frame("too big", dpc, &big, XDP_TX, &want);
    assert_eq!(f.reason(Reason::TxPacketTooBig), 1);
    // What fits goes through on the same flow.
    let fits = Pkt6::tcp(client, ep6(VIP6, 80))
        .flags(ACK)
        .seq(1001)
        .ack(SERVER_ISN + 1)
        .payload(&[b'y'; 1200])
        .macs(MAC_CLIENT, MAC_DPC);
    let want = fits
        .clone()
        .tuple(
            ep6(server_pkt.src, server_pkt.sport),
            ep6(server_pkt.dst, server_pkt.dport),
        )
        .macs(MAC_DPB, MAC_WEB10);
    f.expect_frame("fits", dpc, &fits.build(), XDP_REDIRECT, &want.build());
}

#[test]
fn ipv4_and_ipv6_flows_live_side_by_side() {
    let mut f = fixture();
    f.handshake(ep(CLIENT, 44000), ep(VIP, 80));
    let client = ep6(CLIENT6, 44000);
    handshake6(&mut f, client, b"");
    assert_eq!(f.counts(), (2, 0));
    assert_eq!(counts6(&f), (2, 0));
    assert!(
        entry6(&f, &key6(client, ep6(VIP6, 80), PROTO_TCP)).is_some_and(|(_, confirmed)| confirmed)
    );
}

/// Ages the IPv6 entry at `key` by `ticks` (it looks idle that much longer).
fn age6(f: &mut Fixture, key: &FlowKey6, ticks: u32) {
    let (mut e, confirmed) = entry6(f, key).expect("entry to age");
    e.last_seen = e.last_seen.wrapping_sub(ticks);
    let table = match confirmed {
        true => &mut f.bal.dp.maps.flows6,
        false => &mut f.bal.dp.maps.halfopen6,
    };
    table.insert(key, e, 0).expect("write entry");
}

#[test]
fn udp_flows_are_confirmed_by_the_client_and_expire() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    let c = ep6(CLIENT6, 5400);
    let dns = ep6(VIP6, 53);
    let lb_side = ep6(LB_B6, nth_port(0));
    let server = ep6(WEB10_6, 53);
    let fwd = key6(c, dns, PROTO_UDP);
    let state = |f: &Fixture| entry6(f, &fwd).map(|(e, confirmed)| (e.state, confirmed));
    let q = Pkt6::udp(c, dns)
        .payload(b"q")
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    f.run(dpc, &q);
    assert_eq!(state(&f), Some((State::UdpNew as u8, false)));
    let a = Pkt6::udp(server, lb_side)
        .payload(b"a")
        .macs(MAC_WEB10, MAC_DPB)
        .build();
    f.run(dpb, &a);
    assert_eq!(state(&f), Some((State::UdpReplied as u8, false)));
    f.run(dpc, &q);
    assert_eq!(state(&f), Some((State::UdpActive as u8, true)));
    assert_eq!(counts6(&f), (2, 0));
    // Idle past the timeout both ways: the next query is a new flow, on the next port.
    let idle = ticks_from_ms(30_000) + 10;
    age6(&mut f, &fwd, idle);
    age6(&mut f, &key6(server, lb_side, PROTO_UDP), idle);
    let (action, out) = f.run(dpc, &q);
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(state(&f), Some((State::UdpNew as u8, false)));
    assert_eq!(packet::endpoints6(&out).0.port(), nth_port(1));
    assert_eq!(counts6(&f), (0, 2), "the expired flow's entries are gone");
}

#[test]
fn access_rules_judge_ipv6_clients_before_any_state() {
    let mut f = fixture();
    let dpc = f.dpc;
    // `reject if { src fd00::/64 }` on frontend web (0), port 80, as the daemon writes it.
    let frontend = f
        .bal
        .dp
        .maps
        .services6
        .iter()
        .map(|r| r.expect("service"))
        .find(|(k, _)| k.port == 80u16.to_be() && k.proto == PROTO_TCP)
        .expect("web")
        .1
        .frontend;
    let mut net = [0u8; 16];
    net[..2].copy_from_slice(&[0xfd, 0x00]);
    let prefix = AccessKey6::new(frontend, 80u16.to_be(), addr6_from_octets(net));
    let key = Key::new(ACCESS_FIXED_BITS + 64, prefix);
    f.bal
        .dp
        .maps
        .access6
        .insert(&key, ACCESS_REJECT, 0)
        .expect("rule");
    let syn = Pkt6::tcp(ep6(CLIENT6, 45000), ep6(VIP6, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    f.expect_frame("denied", dpc, &syn, XDP_DROP, &syn);
    assert_eq!(f.reason(Reason::DropDenied), 1);
    // Another network is not the rule's; the same network to another frontend neither.
    let far = "2001:db8::5".parse().expect("address");
    let syn = Pkt6::tcp(ep6(far, 45000), ep6(VIP6, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    let (action, _) = f.run(dpc, &syn);
    assert_eq!(testrun::action_name(action), "XDP_REDIRECT");
    let dns = Pkt6::udp(ep6(CLIENT6, 45001), ep6(VIP6, 53))
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    let (action, _) = f.run(dpc, &dns);
    assert_eq!(testrun::action_name(action), "XDP_REDIRECT");
    assert_eq!(f.reason(Reason::DropDenied), 1);
    assert_eq!(counts6(&f), (0, 4));
}

#[test]
fn new_flows_are_counted_and_reported_with_their_ipv6_addresses() {
    let mut f = fixture();
    let dpc = f.dpc;
    let mut settings = f.bal.dp.maps.settings.get(&0, 0).expect("settings");
    settings.flags |= SETTINGS_F_LOG_FLOWS;
    f.bal
        .dp
        .maps
        .settings
        .set(0, settings, 0)
        .expect("settings");
    let client = ep6(CLIENT6, 46000);
    let (data, _) = handshake6(&mut f, client, b"0123456789");
    let data = data.macs(MAC_CLIENT, MAC_DPC).build();
    let (action, _) = f.run(dpc, &data);
    assert_eq!(testrun::action_name(action), "XDP_REDIRECT");

    // `option tcplog`: one record, an IPv6 one (its size says so), for the SYN alone.
    let ring = f.bal.dp.events.as_mut().expect("event ring");
    let record = ring.next().expect("a new-flow record").to_vec();
    assert!(ring.next().is_none(), "one record per flow");
    assert_eq!(record.len(), size_of::<FlowEvent6>());
    assert_eq!(&record[..16], &CLIENT6.octets(), "client");
    assert_eq!(&record[16..32], &VIP6.octets(), "VIP");
    assert_eq!(&record[32..34], &46000u16.to_be_bytes(), "client port");
    assert_eq!(&record[34..36], &80u16.to_be_bytes(), "VIP port");
    assert_eq!(
        u16::from_ne_bytes([record[36], record[37]]),
        HOGE_WEB10.0 as u16,
        "server slot"
    );
    assert_eq!(record[40], PROTO_TCP);

    // The server's counters, as for IPv4: SYN, ACK and the data in, the SYN-ACK out.
    let c = f.bal.dp.maps.server_counters(HOGE_WEB10).expect("counters");
    assert_eq!((c.new_flows, c.packets_in, c.packets_out), (1, 3, 1));
    assert_eq!(c.bytes_in, (2 * 74 + data.len()) as u64);
}

#[test]
fn refused_connections_are_retried_on_another_server() {
    let mut f = fixture();
    let (dpc, dpb) = (f.dpc, f.dpb);
    f.rewind(HOGE, HOGE_WEB10);
    let vip = ep6(VIP6, 80);
    let client = ep6(CLIENT6, 48001);
    let syn = Pkt6::tcp(client, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let to = |server: Ipv6Addr, mac, port| {
        syn.clone()
            .tuple(ep6(LB_B6, port), ep6(server, 80))
            .macs(MAC_DPB, mac)
            .build()
    };
    let rst = |from: Ipv6Addr, port: u16| {
        Pkt6::tcp(ep6(from, 80), ep6(LB_B6, port))
            .flags(RST | ACK)
            .macs(MAC_WEB10, MAC_DPB)
            .build()
    };
    let syn = syn.build();
    // web10 refuses: its RST is held back, the client's retransmitted SYN goes to web11.
    let want = to(WEB10_6, MAC_WEB10, nth_port(0));
    f.expect_frame("SYN", dpc, &syn, XDP_REDIRECT, &want);
    let (action, _) = f.run(dpb, &rst(WEB10_6, nth_port(0)));
    assert_eq!(testrun::action_name(action), "XDP_DROP", "RST held back");
    assert_eq!(f.reason(Reason::DropServerRefused), 1);
    let want = to(WEB11_6, MAC_WEB11, nth_port(0));
    f.expect_frame("retransmitted SYN", dpc, &syn, XDP_REDIRECT, &want);
    let c11 = f.bal.dp.maps.server_counters(HOGE_WEB11).expect("counters");
    assert_eq!((c11.new_flows, c11.redispatched), (1, 1));
    // web11 refuses too (retry 2 of 2): back to web10, on its next port.
    let (action, _) = f.run(dpb, &rst(WEB11_6, nth_port(0)));
    assert_eq!(testrun::action_name(action), "XDP_DROP");
    let want = to(WEB10_6, MAC_WEB10, nth_port(1));
    f.expect_frame("second retransmission", dpc, &syn, XDP_REDIRECT, &want);
    // Retries used up: the third refusal reaches the client, as a reply from the VIP.
    let last = rst(WEB10_6, nth_port(1));
    let want = Pkt6::tcp(vip, client)
        .flags(RST | ACK)
        .macs(MAC_DPC, MAC_CLIENT)
        .build();
    f.expect_frame("RST passed on", dpb, &last, XDP_REDIRECT, &want);
    assert_eq!(f.reason(Reason::DropServerRefused), 2);
}

/// Direct server return to IPv6 servers: `dsr.rs`'s configuration (a hashing pool, a
/// round-robin one, UDP), its services also at `[fd00::1]`, its servers at their twins.
const DSR_CONFIG: &str = r#"
[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "dsr"

[frontend.rr]
bind = ["10.0.0.1:82"]
default_backend = "rr"

[frontend.dns]
bind = ["10.0.0.1:53/udp"]
default_backend = "dns"

[backend.dsr]
nat = "dsr-ipip"
hash_type = "consistent"
hash_table_size = 251
server = [{ name = "web10", address = "10.1.0.10:80" }, { name = "web11", address = "10.1.0.11:80" }]

[backend.rr]
nat = "dsr-ipip"
server = [{ name = "web10", address = "10.1.0.10:82" }]

[backend.dns]
nat = "dsr-ipip"
server = [{ name = "web10", address = "10.1.0.10:53" }]
"#;

/// The server the pure Maglev table names for a TCP connection from `client` to the VIP's
/// port 80: an IPv6 address hashes as its four words folded into one.
fn hashed_server6(client: SocketAddrV6) -> (Ipv6Addr, [u8; 6]) {
    let c = |slot, name| Candidate {
        name,
        slot,
        weight: 1,
        usable: true,
    };
    let table = maglev::build(&[c(0, "web10"), c(1, "web11")], 251);
    let k = key6(client, ep6(VIP6, 80), PROTO_TCP);
    let fold = |a: Addr6| a[0] ^ a[1] ^ a[2] ^ a[3];
    let h = flow_hash(fold(k.src), fold(k.dst), k.sport, k.dport, k.proto);
    match table[maglev_entry(h, 251) as usize] {
        0 => (WEB10_6, MAC_WEB10),
        _ => (WEB11_6, MAC_WEB11),
    }
}

/// What a client packet becomes: itself, inside IPv6 from lb's address towards `server`.
fn tunnelled6(p: &Pkt6, server: (Ipv6Addr, [u8; 6])) -> Vec<u8> {
    ip6ip6((MAC_DPB, server.1), LB_B6, server.0, &p.build())
}

/// Feeds a frame and asserts the exact IPv6-in-IPv6 output and action, the inner packet's
/// checksum verified from scratch.
#[track_caller]
fn expect_tunnelled(f: &mut Fixture, what: &str, input: &[u8], action: u32, want: &[u8]) {
    let dpc = f.dpc;
    let (got_action, got) = f.run(dpc, input);
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
    let inner = [&got[..14], &got[54..]].concat();
    assert_eq!(
        packet::verify_checksums6(&inner),
        Ok(()),
        "{what}: inner checksums"
    );
}

#[test]
fn dsr_client_packets_reach_the_ipv6_server_unchanged_inside_ip6ip6() {
    let mut f = fixture_with(DSR_CONFIG);
    let c = ep6(CLIENT6, 45000);
    let vip = ep6(VIP6, 80);
    let server = hashed_server6(c);
    let k = key6(c, vip, PROTO_TCP);

    let syn = Pkt6::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    // By hand once, byte for byte: the inner packet's traffic class and flow label (the
    // builder's 0x0001_2345) copied, payload length 40 more, next header 41, hop limit 64.
    let inner = syn.build();
    let mut want = [server.1, MAC_DPB].concat();
    want.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
    want.extend_from_slice(&((inner.len() - 14) as u16).to_be_bytes());
    want.extend_from_slice(&[41, 64]);
    want.extend_from_slice(&LB_B6.octets());
    want.extend_from_slice(&server.0.octets());
    want.extend_from_slice(&inner[14..]);
    assert_eq!(want, tunnelled6(&syn, server), "the builder says the same");
    expect_tunnelled(&mut f, "SYN", &inner, XDP_REDIRECT, &want);
    let (e, confirmed) = entry6(&f, &k).expect("tracked");
    assert_eq!(
        (confirmed, e.state, e.flags),
        (false, State::SynSent as u8, FLOW_F_DSR)
    );
    assert_eq!(
        (e.src, e.dst),
        (a6(LB_B6), a6(server.0)),
        "the tunnel's ends"
    );
    assert_eq!(counts6(&f), (0, 1), "one entry: lb never sees the replies");

    // The client's ACK (of a SYN-ACK lb never saw) confirms the flow.
    let ack = Pkt6::tcp(c, vip)
        .flags(ACK)
        .seq(1001)
        .ack(5001)
        .macs(MAC_CLIENT, MAC_DPC);
    expect_tunnelled(
        &mut f,
        "ACK",
        &ack.build(),
        XDP_REDIRECT,
        &tunnelled6(&ack, server),
    );
    let (e, confirmed) = entry6(&f, &k).expect("tracked");
    assert_eq!((confirmed, e.state), (true, State::Established as u8));
    // A hit, on the steady path.
    let data = ack.clone().payload(b"GET / HTTP/1.0\r\n\r\n");
    expect_tunnelled(
        &mut f,
        "data",
        &data.build(),
        XDP_REDIRECT,
        &tunnelled6(&data, server),
    );
    let fin = ack.clone().flags(FIN | ACK);
    expect_tunnelled(
        &mut f,
        "FIN",
        &fin.build(),
        XDP_REDIRECT,
        &tunnelled6(&fin, server),
    );
    let (e, _) = entry6(&f, &k).expect("tracked");
    assert_eq!(
        (e.state, e.flags),
        (State::FinWait as u8, FLOW_F_DSR | FLOW_F_FIN_CLIENT)
    );

    // Many clients: each where the hash says (both servers get some).
    let mut seen = [false; 2];
    for port in 46000..46040 {
        let c = ep6(CLIENT6, port);
        let server = hashed_server6(c);
        seen[usize::from(server.0 == WEB11_6)] = true;
        let syn = Pkt6::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
        expect_tunnelled(
            &mut f,
            "SYN",
            &syn.build(),
            XDP_REDIRECT,
            &tunnelled6(&syn, server),
        );
    }
    assert_eq!(seen, [true, true]);

    // UDP: tunnelled, confirmed by the client's second datagram.
    let c = ep6(CLIENT6, 5353);
    let vip = ep6(VIP6, 53);
    let q = Pkt6::udp(c, vip)
        .payload(b"query")
        .macs(MAC_CLIENT, MAC_DPC);
    let want = tunnelled6(&q, (WEB10_6, MAC_WEB10));
    expect_tunnelled(&mut f, "first", &q.build(), XDP_REDIRECT, &want);
    let k = key6(c, vip, PROTO_UDP);
    assert_eq!(
        entry6(&f, &k).map(|(e, c)| (e.state, c)),
        Some((State::UdpNew as u8, false))
    );
    expect_tunnelled(&mut f, "second", &q.build(), XDP_REDIRECT, &want);
    assert_eq!(
        entry6(&f, &k).map(|(e, c)| (e.state, c)),
        Some((State::UdpActive as u8, true))
    );
}

#[test]
fn dsr_an_ipv6_connection_begun_on_another_node_goes_on_where_the_hash_says() {
    let mut f = fixture_with(DSR_CONFIG);
    let c = ep6(CLIENT6, 47000);
    let vip = ep6(VIP6, 80);
    // Mid-stream, never seen here: another lb node had it until the router moved it.
    let data = Pkt6::tcp(c, vip)
        .flags(ACK)
        .seq(7000)
        .ack(9000)
        .payload(b"more")
        .macs(MAC_CLIENT, MAC_DPC);
    expect_tunnelled(
        &mut f,
        "adopted",
        &data.build(),
        XDP_REDIRECT,
        &tunnelled6(&data, hashed_server6(c)),
    );
    assert_eq!(f.reason(Reason::NewMidStream), 1);
    let (e, confirmed) = entry6(&f, &key6(c, vip, PROTO_TCP)).expect("tracked");
    assert_eq!((confirmed, e.state), (true, State::Established as u8));
    // A round-robin pool cannot know where such a connection went: the host answers it.
    let rr = Pkt6::tcp(c, ep6(VIP6, 82))
        .flags(ACK)
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    f.expect_untouched("round robin, mid-stream", &rr);
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
}

#[test]
fn dsr_the_ipv6_path_mtu_leaves_room_for_the_outer_header() {
    let mut f = fixture_with(DSR_CONFIG);
    f.net
        .ns
        .ip(&["link", "set", "dpb", "mtu", "1400"])
        .expect("link MTU");
    let c = ep6(CLIENT6, 48000);
    let vip = ep6(VIP6, 80);
    let server = hashed_server6(c);
    // 1390 bytes of IPv6 fit the link, but not once 40 more are put in front: "packet too
    // big" for the link's MTU less the outer header, whatever the packet says.
    let big = Pkt6::tcp(c, vip)
        .flags(ACK)
        .payload(&[b'x'; 1330])
        .macs(MAC_CLIENT, MAC_DPC);
    let want = icmp6_error(
        (MAC_DPC, MAC_CLIENT),
        VIP6,
        CLIENT6,
        (ICMPV6_PACKET_TOO_BIG, 0),
        1360,
        &big.build(),
        48,
    );
    let dpc = f.dpc;
    f.expect_frame("too big once tunnelled", dpc, &big.build(), XDP_TX, &want);
    assert_eq!(f.reason(Reason::TxPacketTooBig), 1);
    let fits = big.clone().payload(&[b'x'; 1200]);
    expect_tunnelled(
        &mut f,
        "fits",
        &fits.build(),
        XDP_REDIRECT,
        &tunnelled6(&fits, server),
    );
    // Exactly the MTU once tunnelled: fits too.
    let full = big.clone().payload(&[b'x'; 1300]);
    expect_tunnelled(
        &mut f,
        "full",
        &full.build(),
        XDP_REDIRECT,
        &tunnelled6(&full, server),
    );
}

#[test]
fn dsr_icmpv6_errors_about_the_ipv6_servers_replies_go_to_the_server() {
    let mut f = fixture_with(DSR_CONFIG);
    let c = ep6(CLIENT6, 49000);
    let vip = ep6(VIP6, 80);
    let server = hashed_server6(c);
    let syn = Pkt6::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    expect_tunnelled(
        &mut f,
        "SYN",
        &syn.build(),
        XDP_REDIRECT,
        &tunnelled6(&syn, server),
    );
    // The server answered from the VIP, directly; a router towards the client cannot forward
    // it and tells the VIP, which routes to lb: the error goes to the server as it came.
    let reply = Pkt6::tcp(vip, c)
        .flags(SYN | ACK)
        .payload(&[0; 1400])
        .build();
    let err = icmp6_error(
        (MAC_ROUTER, MAC_DPC),
        ROUTER_C6,
        VIP6,
        (ICMPV6_PACKET_TOO_BIG, 0),
        1280,
        &reply,
        200,
    );
    let want = ip6ip6((MAC_DPB, server.1), LB_B6, server.0, &err);
    let dpc = f.dpc;
    let (action, got) = f.run(dpc, &err);
    assert_eq!(
        testrun::action_name(action),
        testrun::action_name(XDP_REDIRECT)
    );
    assert!(got == want, "{}", packet::diff(&got, &want));
    assert_eq!(
        packet::verify_checksums6(&[&got[..14], &got[54..]].concat()),
        Ok(())
    );
    assert_eq!(f.reason(Reason::IcmpTranslated), 1);
}

#[test]
fn the_servers_decapsulator_takes_an_ipv6_outer_header_off() {
    use lb::dataplane::{load_alone, xdp_program};
    lb_testbed::require_root();
    let mut obj = load_alone(lb_common::PROG_IPIP_DECAP).expect("load");
    let prog = xdp_program(&mut obj, lb_common::PROG_IPIP_DECAP).expect("program");
    let inner = Pkt6::tcp(ep6(CLIENT6, 50000), ep6(VIP6, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    let frame = ip6ip6((MAC_DPB, MAC_WEB10), LB_B6, WEB10_6, &inner.build());
    let out = testrun::run(prog, 1, &frame, 1).expect("test run");
    assert_eq!(out.action, XDP_PASS);
    let want = inner.macs(MAC_DPB, MAC_WEB10).build();
    assert!(out.frame == want, "{}", packet::diff(&out.frame, &want));
    // Plain IPv6 goes up untouched.
    let plain = Pkt6::tcp(ep6(CLIENT6, 50000), ep6(VIP6, 80)).build();
    let out = testrun::run(prog, 1, &plain, 1).expect("test run");
    assert_eq!((out.action, out.frame), (XDP_PASS, plain));
}
