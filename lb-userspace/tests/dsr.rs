//! Direct server return over IPIP, byte for byte (BPF_PROG_TEST_RUN on the real program):
//! the client's packet unchanged inside an outer header from lb to the server, conntrack of
//! the client's side only, connections begun on another lb node taken over by hash, and the
//! path MTU with the 20 bytes the tunnel adds.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::{Ipv4Addr, SocketAddrV4};

use dp_fixture::*;
use lb::dataplane::{
    ids::ServerSlot,
    testrun::{XDP_PASS, XDP_REDIRECT, XDP_TX},
};
use lb_common::{
    FLOW_F_DSR, FLOW_F_FIN_CLIENT, NEXT_HOP_TTL, NextHop, Reason, State,
    maglev::{self, Candidate, flow_hash, maglev_entry},
};
use lb_testbed::packet::{
    self, ACK, FIN, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, Pkt, RST, SYN, icmp_error, ipip,
};

const CONFIG: &str = r#"
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

fn fixture() -> Fixture {
    Fixture::with(CONFIG, Default::default())
}

/// The server the pure table names for a TCP connection from `client` to VIP:80.
fn hashed_server(client: SocketAddrV4) -> (Ipv4Addr, [u8; 6]) {
    let c = |slot, name| Candidate {
        name,
        slot,
        weight: 1,
        usable: true,
    };
    let table = maglev::build(&[c(0, "web10"), c(1, "web11")], 251);
    let k = tcp_key(client, ep(VIP, 80));
    let h = flow_hash(k.src, k.dst, k.sport, k.dport, k.proto);
    match table[maglev_entry(h, 251) as usize] {
        0 => (WEB10, MAC_WEB10),
        _ => (WEB11, MAC_WEB11),
    }
}

/// What a client packet becomes: itself, inside IPIP from lb to `server`.
fn tunnelled(p: &Pkt, server: (Ipv4Addr, [u8; 6])) -> Vec<u8> {
    ipip((MAC_DPB, server.1), LB_B, server.0, &p.build())
}

#[test]
fn client_packets_reach_the_server_unchanged_inside_ipip() {
    let mut f = fixture();
    let c = ep(CLIENT, 45000);
    let vip = ep(VIP, 80);
    let server = hashed_server(c);
    let k = tcp_key(c, vip);

    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect_frame(
        "SYN",
        f.dpc,
        &syn.build(),
        XDP_REDIRECT,
        &tunnelled(&syn, server),
    );
    let (e, at) = f.entry(&k).expect("tracked");
    assert_eq!(
        (at, e.state, e.flags),
        (Where::HalfOpen, State::SynSent as u8, FLOW_F_DSR)
    );
    assert_eq!(f.counts(), (0, 1), "one entry: lb never sees the replies");

    // The client's ACK (of a SYN-ACK lb never saw) confirms the flow.
    let ack = Pkt::tcp(c, vip)
        .flags(ACK)
        .seq(1001)
        .ack(5001)
        .macs(MAC_CLIENT, MAC_DPC);
    f.expect_frame(
        "ACK",
        f.dpc,
        &ack.build(),
        XDP_REDIRECT,
        &tunnelled(&ack, server),
    );
    let (e, at) = f.entry(&k).expect("tracked");
    assert_eq!((at, e.state), (Where::Flows, State::Established as u8));
    let data = ack.clone().payload(b"GET / HTTP/1.0\r\n\r\n");
    f.expect_frame(
        "data",
        f.dpc,
        &data.build(),
        XDP_REDIRECT,
        &tunnelled(&data, server),
    );
    let fin = ack.clone().flags(FIN | ACK);
    f.expect_frame(
        "FIN",
        f.dpc,
        &fin.build(),
        XDP_REDIRECT,
        &tunnelled(&fin, server),
    );
    let (e, _) = f.entry(&k).expect("tracked");
    assert_eq!(
        (e.state, e.flags),
        (State::FinWait as u8, FLOW_F_DSR | FLOW_F_FIN_CLIENT)
    );

    // Many clients: every one where the hash says, outer and inner checksums sound.
    for port in 46000..46040 {
        let c = ep(CLIENT, port);
        let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
        f.expect_frame(
            "SYN",
            f.dpc,
            &syn.build(),
            XDP_REDIRECT,
            &tunnelled(&syn, hashed_server(c)),
        );
    }
}

#[test]
fn udp_is_tunnelled_and_confirmed_by_the_clients_second_datagram() {
    let mut f = fixture();
    let c = ep(CLIENT, 5353);
    let vip = ep(VIP, 53);
    let q = Pkt::udp(c, vip).payload(b"query").macs(MAC_CLIENT, MAC_DPC);
    let want = tunnelled(&q, (WEB10, MAC_WEB10));
    f.expect_frame("first", f.dpc, &q.build(), XDP_REDIRECT, &want);
    assert_eq!(
        f.entry(&udp_key(c, vip)).map(|(e, w)| (e.state, w)),
        Some((State::UdpNew as u8, Where::HalfOpen))
    );
    f.expect_frame("second", f.dpc, &q.build(), XDP_REDIRECT, &want);
    assert_eq!(
        f.entry(&udp_key(c, vip)).map(|(e, w)| (e.state, w)),
        Some((State::UdpActive as u8, Where::Flows))
    );
}

#[test]
fn a_connection_begun_on_another_node_goes_on_where_the_hash_says() {
    let mut f = fixture();
    let c = ep(CLIENT, 47000);
    let vip = ep(VIP, 80);
    // Mid-stream, never seen here: another lb node had it until the router moved it.
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .seq(7000)
        .ack(9000)
        .payload(b"more")
        .macs(MAC_CLIENT, MAC_DPC);
    f.expect_frame(
        "adopted",
        f.dpc,
        &data.build(),
        XDP_REDIRECT,
        &tunnelled(&data, hashed_server(c)),
    );
    assert_eq!(f.reason(Reason::NewMidStream), 1);
    let (e, at) = f.entry(&tcp_key(c, vip)).expect("tracked");
    assert_eq!((at, e.state), (Where::Flows, State::Established as u8));
    // A round-robin pool cannot know where such a connection went: the host answers it.
    let rr = Pkt::tcp(c, ep(VIP, 82))
        .flags(ACK)
        .macs(MAC_CLIENT, MAC_DPC)
        .build();
    f.expect_untouched("round robin, mid-stream", &rr);
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
}

/// The outer header goes to the server, so a DSR flow's entry shares its server's next hop as
/// a NAT flow's does (see `tests/dataplane.rs`): an idle flow takes the server's fresh one,
/// and one lookup refreshes both once both are stale.
#[test]
fn an_idle_flow_takes_its_servers_next_hop() {
    let mut f = fixture();
    let c = ep(CLIENT, 45100);
    let vip = ep(VIP, 80);
    let server = hashed_server(c);
    let k = tcp_key(c, vip);
    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &syn.build());
    assert_eq!(action, XDP_REDIRECT, "SYN");
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .seq(1001)
        .ack(5001)
        .payload(b"GET / HTTP/1.0\r\n\r\n")
        .macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &data.build());
    assert_eq!(action, XDP_REDIRECT, "established");
    let slot = ServerSlot(u32::from(f.entry(&k).expect("tracked").0.server));
    let stale = |nh: &mut NextHop| nh.stamp = nh.stamp.wrapping_sub(NEXT_HOP_TTL);

    // A MAC no neighbour has: only the server entry's copy can put it on the packet.
    let lent = [0x02, 0, 0, 0, 0, 0x5a];
    f.edit(&k, |e| stale(&mut e.nh));
    f.edit_server(slot, |s| {
        s.nh.dmac = lent;
        s.nh.stamp = now();
    });
    f.expect_frame(
        "the server's next hop",
        f.dpc,
        &data.build(),
        XDP_REDIRECT,
        &tunnelled(&data, (server.0, lent)),
    );
    assert_eq!(f.entry(&k).expect("tracked").0.nh, f.server_entry(slot).nh);

    f.edit(&k, |e| stale(&mut e.nh));
    f.edit_server(slot, |s| stale(&mut s.nh));
    f.expect_frame(
        "looked up for both",
        f.dpc,
        &data.build(),
        XDP_REDIRECT,
        &tunnelled(&data, server),
    );
    let shared = f.server_entry(slot).nh;
    assert_eq!(shared.dmac, server.1, "the server's refreshed");
    assert_eq!(f.entry(&k).expect("tracked").0.nh, shared, "the flow's too");
}

#[test]
fn the_path_mtu_leaves_room_for_the_outer_header() {
    let mut f = fixture();
    f.net
        .ns
        .ip(&["link", "set", "dpb", "mtu", "1400"])
        .expect("link MTU");
    let c = ep(CLIENT, 48000);
    let vip = ep(VIP, 80);
    let server = hashed_server(c);
    // 1390 bytes of IP fit the link, but not once 20 more are put in front.
    let big = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(&[b'x'; 1350])
        .macs(MAC_CLIENT, MAC_DPC);
    let want = icmp_error(
        (MAC_DPC, MAC_CLIENT),
        VIP,
        CLIENT,
        (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED),
        1380,
        &big.build(),
    );
    f.expect_frame(
        "DF, too big once tunnelled",
        f.dpc,
        &big.build(),
        XDP_TX,
        &want,
    );
    assert_eq!(f.reason(Reason::TxFragNeeded), 1);
    let fits = big.clone().payload(&[b'x'; 1340]);
    f.expect_frame(
        "fits",
        f.dpc,
        &fits.build(),
        XDP_REDIRECT,
        &tunnelled(&fits, server),
    );
    // Without DF: tunnelled, MACs as they came, for the kernel to fragment.
    let mut frag_ok = big.clone();
    frag_ok.frag = 0;
    let want = ipip((MAC_CLIENT, MAC_DPC), LB_B, server.0, &frag_ok.build());
    f.expect_frame("no DF, too big", f.dpc, &frag_ok.build(), XDP_PASS, &want);
    assert_eq!(f.reason(Reason::PassTooBig), 1);
}

#[test]
fn icmp_errors_about_the_servers_replies_go_to_the_server() {
    let mut f = fixture();
    let c = ep(CLIENT, 49000);
    let vip = ep(VIP, 80);
    let server = hashed_server(c);
    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect_frame(
        "SYN",
        f.dpc,
        &syn.build(),
        XDP_REDIRECT,
        &tunnelled(&syn, server),
    );
    // The server answered from the VIP, directly; a router towards the client cannot forward
    // it without fragmenting and tells the VIP, which routes to lb.
    let reply = Pkt::tcp(vip, c)
        .flags(SYN | ACK)
        .payload(&[0; 1400])
        .build();
    let router = Ipv4Addr::new(10, 0, 0, 254);
    let err = icmp_error(
        ([0x02, 0, 0, 0, 0, 0xfe], MAC_DPC),
        router,
        VIP,
        (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED),
        1300,
        &reply,
    );
    let want = ipip((MAC_DPB, server.1), LB_B, server.0, &err);
    f.expect_frame(
        "frag needed, to the server",
        f.dpc,
        &err,
        XDP_REDIRECT,
        &want,
    );
    assert_eq!(packet::verify_checksums(&want), Ok(()));
}

#[test]
fn the_servers_decapsulator_takes_the_outer_header_off() {
    use lb::dataplane::{load_alone, testrun, xdp_program};
    lb_testbed::require_root();
    let mut obj = load_alone(lb_common::PROG_IPIP_DECAP).expect("load");
    let prog = xdp_program(&mut obj, lb_common::PROG_IPIP_DECAP).expect("program");
    let inner = Pkt::tcp(ep(CLIENT, 50000), ep(VIP, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    let frame = ipip((MAC_DPB, MAC_WEB10), LB_B, WEB10, &inner.build());
    let out = testrun::run(prog, 1, &frame, 1).expect("test run");
    assert_eq!(out.action, XDP_PASS);
    let want = inner.macs(MAC_DPB, MAC_WEB10).build();
    assert!(out.frame == want, "{}", packet::diff(&out.frame, &want));
    // Anything else goes up untouched.
    let plain = Pkt::tcp(ep(CLIENT, 50000), ep(VIP, 80)).build();
    let out = testrun::run(prog, 1, &plain, 1).expect("test run");
    assert_eq!((out.action, out.frame), (XDP_PASS, plain));
}

/// lb sees only the client's side of a direct-server-return flow, so nothing waits for the
/// server: the client's packets alone keep the flow alive (one entry, no other direction to
/// ask), and once the client is quiet past the timeout of its state the flow is gone, for
/// the data plane and for `lb show`'s count alike. Its FIN and its RST move it to the
/// closing states, which expire on their own clocks the same way.
#[test]
fn a_quiet_client_ends_its_direct_server_return_flow() {
    let mut f = fixture();
    // Round robin: a packet after expiry is not adopted by a hash, so it shows the flow gone.
    let vip = ep(VIP, 82);
    let open = |f: &mut Fixture, c| {
        for p in [
            Pkt::tcp(c, vip).flags(SYN),
            Pkt::tcp(c, vip).flags(ACK).seq(1001).ack(5001),
        ] {
            let (action, _) = f.run(f.dpc, &p.macs(MAC_CLIENT, MAC_DPC).build());
            assert_eq!(action, XDP_REDIRECT);
        }
        tcp_key(c, vip)
    };
    let data = |c| {
        Pkt::tcp(c, vip)
            .flags(ACK)
            .seq(1001)
            .ack(5001)
            .payload(b"more")
            .macs(MAC_CLIENT, MAC_DPC)
    };

    let c = ep(CLIENT, 48000);
    let k = open(&mut f, c);
    let (e, at) = f.entry(&k).expect("tracked");
    assert_eq!((at, e.state), (Where::Flows, State::Established as u8));
    assert_eq!(f.counts(), (1, 0), "confirmed, one entry");
    assert_eq!(f.bal.dp.maps.flow_count(now()), 1);
    // Quiet for three quarters of its timeout, a packet, three quarters again: alive only
    // because the packet counted.
    f.age(&k, e.timeout / 4 * 3);
    assert_eq!(f.run(f.dpc, &data(c).build()).0, XDP_REDIRECT);
    f.age(&k, e.timeout / 4 * 3);
    assert_eq!(
        f.bal.dp.maps.flow_count(now()),
        1,
        "the client's packet kept it"
    );
    // Quiet past it: gone for `lb show`, and the next packet finds no flow.
    f.age(&k, e.timeout + 1);
    assert_eq!(
        f.bal.dp.maps.flow_count(now()),
        0,
        "dead by the shared rule"
    );
    f.expect_untouched("after expiry", &data(c).build());
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
    assert!(f.entry(&k).is_none(), "retired");

    // The client's FIN: half closed, on the half-closed clock.
    let c = ep(CLIENT, 48001);
    let k = open(&mut f, c);
    let fin = data(c).flags(FIN | ACK);
    assert_eq!(f.run(f.dpc, &fin.build()).0, XDP_REDIRECT);
    let (e, _) = f.entry(&k).expect("tracked");
    assert_eq!(e.state, State::FinWait as u8);
    assert_eq!(f.bal.dp.maps.flow_count(now()), 1);
    f.age(&k, e.timeout + 1);
    assert_eq!(f.bal.dp.maps.flow_count(now()), 0);

    // An RST: closed, lingering only `CLOSED_LINGER_MS` for a retransmission.
    let c = ep(CLIENT, 48002);
    let k = open(&mut f, c);
    let rst = data(c).flags(RST);
    assert_eq!(f.run(f.dpc, &rst.build()).0, XDP_REDIRECT);
    let (e, _) = f.entry(&k).expect("tracked");
    assert_eq!(
        (e.state, e.timeout),
        (
            State::Closed as u8,
            lb_common::clock::ticks_from_ms(lb_common::conntrack::CLOSED_LINGER_MS)
        )
    );
}
