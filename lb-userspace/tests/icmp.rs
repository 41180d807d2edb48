//! ICMP through lb, byte for byte (BPF_PROG_TEST_RUN on the real program): errors about a
//! tracked flow reach its other side as that side knows the flow, and a packet too big for its
//! path is answered (DF) or left to the kernel to fragment, so path-MTU discovery works
//! through lb as it does through a Linux NAT.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::{Ipv4Addr, SocketAddrV4};

use dp_fixture::*;
use lb::dataplane::testrun::{XDP_PASS, XDP_REDIRECT, XDP_TX};
use lb_common::Reason;
use lb_testbed::packet::{
    self, ACK, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACH, ICMP_TIME_EXCEEDED, Pkt,
    icmp_error,
};

/// A router between lb and the servers.
const ROUTER_B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
/// A router on the clients' side.
const ROUTER_C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const MAC_ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const FRAG_NEEDED: (u8, u8) = (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED);
const PORT_UNREACH: (u8, u8) = (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH);

/// A confirmed TCP flow from `c` through the VIP: its client-side and server-side packets
/// carrying `payload`, as each side sends them.
fn tcp_flow(f: &mut Fixture, c: SocketAddrV4, payload: &[u8]) -> (Pkt, Pkt) {
    let vip = ep(VIP, 80);
    let (lb_side, server) = f.handshake(c, vip);
    let client_pkt = Pkt::tcp(c, vip).flags(ACK).seq(1001).payload(payload);
    let server_pkt = client_pkt.clone().tuple(lb_side, server);
    (client_pkt, server_pkt)
}

#[test]
fn errors_from_the_servers_side_reach_the_client_about_its_own_packet() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 41000);
    let (client_pkt, server_pkt) = tcp_flow(&mut f, c, &[b'x'; 100]);

    // A router towards the server cannot forward lb's packet without fragmenting it.
    let err = icmp_error(
        (MAC_ROUTER, MAC_DPB),
        ROUTER_B,
        LB_B,
        FRAG_NEEDED,
        1300,
        &server_pkt.build(),
    );
    // The client gets it about the packet it sent (to the VIP), from the router, through the
    // flow's next hop.
    let want = icmp_error(
        (MAC_DPC, MAC_CLIENT),
        ROUTER_B,
        CLIENT,
        FRAG_NEEDED,
        1300,
        &client_pkt.build(),
    );
    f.expect_frame("frag needed", f.dpb, &err, XDP_REDIRECT, &want);

    // The server itself says "port unreachable": the client hears it from the VIP, the
    // address it talks to, and never learns the server's.
    let err = icmp_error(
        (MAC_WEB10, MAC_DPB),
        WEB10,
        LB_B,
        PORT_UNREACH,
        0,
        &server_pkt.build(),
    );
    let want = icmp_error(
        (MAC_DPC, MAC_CLIENT),
        VIP,
        CLIENT,
        PORT_UNREACH,
        0,
        &client_pkt.build(),
    );
    f.expect_frame("port unreachable", f.dpb, &err, XDP_REDIRECT, &want);
    assert_eq!(f.reason(Reason::IcmpTranslated), 2);
}

#[test]
fn errors_from_the_clients_side_reach_the_server_about_its_own_packet() {
    let mut f = Fixture::new();
    // UDP: the quote holds the L4 checksum, which must come out as the server computed it.
    let c = ep(CLIENT, 5300);
    let vip = ep(VIP, 53);
    let q = Pkt::udp(c, vip).payload(b"query").macs(MAC_CLIENT, MAC_DPC);
    let (_, out) = f.run(f.dpc, &q.build());
    let (lb_side, server) = packet::endpoints(&out);
    let answer = Pkt::udp(server, lb_side).payload(b"an answer of some length");
    let (action, _) = f.run(f.dpb, &answer.clone().macs(MAC_WEB10, MAC_DPB).build());
    assert_eq!(action, XDP_REDIRECT, "answer forwarded");
    let answer_to_client = answer.clone().tuple(vip, c);

    // A router on the way back expires the answer; then the client's host has closed the
    // port.
    let cases = [
        ("time exceeded", ROUTER_C, ROUTER_C, (ICMP_TIME_EXCEEDED, 0)),
        ("port unreachable", CLIENT, LB_B, PORT_UNREACH),
    ];
    for (what, from, translated_from, kind) in cases {
        let err = icmp_error(
            (MAC_CLIENT, MAC_DPC),
            from,
            CLIENT,
            kind,
            0,
            &answer_to_client.build(),
        );
        let want = icmp_error(
            (MAC_DPB, MAC_WEB10),
            translated_from,
            WEB10,
            kind,
            0,
            &answer.build(),
        );
        f.expect_frame(what, f.dpc, &err, XDP_REDIRECT, &want);
    }
}

#[test]
fn errors_about_anything_else_pass_untouched() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 42000);
    let (_, server_pkt) = tcp_flow(&mut f, c, b"data");

    // About a tuple no flow has (another port on the lb side).
    let stranger = server_pkt.clone().tuple(ep(LB_B, 9), ep(WEB10, 80));
    let err = icmp_error(
        (MAC_ROUTER, MAC_DPB),
        ROUTER_B,
        LB_B,
        FRAG_NEEDED,
        1300,
        &stranger.build(),
    );
    f.expect_frame("unknown flow", f.dpb, &err, XDP_PASS, &err);

    // About our flow, but cut short: no room for the quoted ports.
    let whole = icmp_error(
        (MAC_ROUTER, MAC_DPB),
        ROUTER_B,
        LB_B,
        FRAG_NEEDED,
        1300,
        &server_pkt.build(),
    );
    let mut short = whole[..14 + 20 + 8 + 20 + 2].to_vec();
    let tot = (short.len() - 14) as u16;
    short[16..18].copy_from_slice(&tot.to_be_bytes());
    short[24..26].copy_from_slice(&[0, 0]);
    let ip_csum = packet::checksum(&short[14..34]);
    short[24..26].copy_from_slice(&ip_csum.to_be_bytes());
    f.expect_frame("truncated quote", f.dpb, &short, XDP_PASS, &short);

    // Not an error (an echo reply, type 0) with the same shape: not ours either.
    let mut echo = whole.clone();
    echo[34] = 0;
    echo[35] = 0;
    echo[36..38].copy_from_slice(&[0, 0]);
    let icmp_csum = packet::checksum(&echo[34..]);
    echo[36..38].copy_from_slice(&icmp_csum.to_be_bytes());
    f.expect_frame("echo reply", f.dpb, &echo, XDP_PASS, &echo);
    assert_eq!(f.reason(Reason::IcmpTranslated), 0);
}

/// The servers' link takes 1400-byte packets (a tunnel, say); the clients' takes 1500.
fn narrow_server_link(f: &Fixture) {
    f.net
        .ns
        .ip(&["link", "set", "dpb", "mtu", "1400"])
        .expect("link MTU");
}

/// The route to web10 takes 1400-byte packets, as an administrator pins it (a locked route
/// MTU is what the kernel's forwarding path, and so the FIB lookup, honours).
fn narrow_route_to_web10(f: &Fixture) {
    f.net
        .ns
        .ip(&[
            "route",
            "add",
            "10.1.0.10/32",
            "dev",
            "dpb",
            "mtu",
            "lock",
            "1400",
        ])
        .expect("route with MTU");
}

#[test]
fn a_packet_too_big_for_the_path_is_answered_when_it_may_not_be_fragmented() {
    let mut f = Fixture::new();
    narrow_server_link(&f);
    let c = ep(CLIENT, 43000);
    let (client_pkt, server_pkt) = tcp_flow(&mut f, c, &[b'y'; 1400]);
    let big = client_pkt.clone().macs(MAC_CLIENT, MAC_DPC); // DF set, 1440 bytes of IP
    assert_eq!(big.frag, 0x4000);

    // "Fragmentation needed" back to the client, from the VIP it sent to, quoting its packet.
    let want = icmp_error(
        (MAC_DPC, MAC_CLIENT),
        VIP,
        CLIENT,
        FRAG_NEEDED,
        1400,
        &big.build(),
    );
    f.expect_frame("DF, too big", f.dpc, &big.build(), XDP_TX, &want);
    assert_eq!(f.reason(Reason::TxFragNeeded), 1);

    // The client lowers its MSS; the smaller packets go through on the same flow.
    let fits = Pkt::tcp(c, ep(VIP, 80))
        .flags(ACK)
        .seq(1001)
        .payload(&[b'y'; 1360])
        .macs(MAC_CLIENT, MAC_DPC);
    let mut want = fits.clone().tuple(
        ep(server_pkt.src, server_pkt.sport),
        ep(server_pkt.dst, server_pkt.dport),
    );
    want = want.macs(MAC_DPB, MAC_WEB10);
    f.expect("fits", f.dpc, &fits, XDP_REDIRECT, &want);
}

#[test]
fn a_packet_too_big_for_the_path_that_may_be_fragmented_goes_to_the_kernel_rewritten() {
    let mut f = Fixture::new();
    narrow_route_to_web10(&f);
    let c = ep(CLIENT, 44000);
    let (mut client_pkt, mut server_pkt) = tcp_flow(&mut f, c, &[b'z'; 1400]);
    client_pkt.frag = 0;
    server_pkt.frag = 0;
    // Rewritten as any packet of the flow, MACs as they came: the kernel fragments it on its
    // way to the server.
    let input = client_pkt.macs(MAC_CLIENT, MAC_DPC);
    let want = server_pkt.macs(MAC_CLIENT, MAC_DPC);
    f.expect("no DF, too big", f.dpc, &input, XDP_PASS, &want);
    assert_eq!(f.reason(Reason::PassTooBig), 1);
    assert_eq!(f.reason(Reason::TxFragNeeded), 0);
}
