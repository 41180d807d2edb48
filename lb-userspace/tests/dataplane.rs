//! Byte-level data-plane fixtures for the packet path: built frames through the real XDP
//! program (BPF_PROG_TEST_RUN), exact output frames and actions. The flow lifecycle (states,
//! timeouts, port reuse, floods) is in `tests/conntrack.rs`; the fixture is shared.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::Ipv4Addr;

use dp_fixture::*;
use lb::{
    config::native,
    daemon::{Admin, Plan},
    dataplane::{
        ids::ServerSlot,
        layout::{Layout, addr_be},
        testrun::{XDP_DROP, XDP_PASS, XDP_REDIRECT, action_name},
    },
};
use lb_common::{NEXT_HOP_TTL, NextHop, PortFilter, PortSide, Reason, clock::elapsed};
use lb_testbed::packet::{self, ACK, FIN, Pkt, RST, SYN};

#[test]
fn tcp_full_nat_round_robin_conntrack_and_replies() {
    let mut f = Fixture::new();
    let c1 = ep(CLIENT, 40001);
    let c2 = ep(CLIENT, 40002);
    let c3 = ep(CLIENT, 40003);
    let vip = ep(VIP, 80);
    // web10 gets flows 1 and 3, web11 flow 2: each server's ports go in turn.
    let (p1, p2, p3) = (nth_port(0), nth_port(0), nth_port(1));

    // SYN to the VIP: new flow, first server of the table.
    let syn1 = Pkt::tcp(c1, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "SYN flow 1",
        f.dpc,
        &syn1,
        XDP_REDIRECT,
        &full_nat(&syn1, WEB10, MAC_WEB10, p1, 80),
    );
    // Later packets of the same flow: same server, same source port.
    let data1 = Pkt::tcp(c1, vip)
        .flags(ACK)
        .payload(b"GET / HTTP/1.0\r\n\r\n")
        .macs(MAC_CLIENT, MAC_DPC);
    for i in 0..3 {
        f.expect(
            &format!("data {i} flow 1"),
            f.dpc,
            &data1,
            XDP_REDIRECT,
            &full_nat(&data1, WEB10, MAC_WEB10, p1, 80),
        );
    }
    // A second and a third flow: next servers in turn.
    let syn2 = Pkt::tcp(c2, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "SYN flow 2",
        f.dpc,
        &syn2,
        XDP_REDIRECT,
        &full_nat(&syn2, WEB11, MAC_WEB11, p2, 80),
    );
    let syn3 = Pkt::tcp(c3, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "SYN flow 3",
        f.dpc,
        &syn3,
        XDP_REDIRECT,
        &full_nat(&syn3, WEB10, MAC_WEB10, p3, 80),
    );
    // A retransmitted SYN of flow 2 sticks to its server.
    f.expect(
        "SYN retransmit flow 2",
        f.dpc,
        &syn2,
        XDP_REDIRECT,
        &full_nat(&syn2, WEB11, MAC_WEB11, p2, 80),
    );

    // Replies from the servers: back to VIP -> client, towards the client's MAC.
    let reply1 = Pkt::tcp(ep(WEB10, 80), ep(LB_B, p1))
        .flags(SYN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    let want1 = reply1.clone().tuple(vip, c1).macs(MAC_DPC, MAC_CLIENT);
    f.expect("reply flow 1", f.dpb, &reply1, XDP_REDIRECT, &want1);
    let reply2 = Pkt::tcp(ep(WEB11, 80), ep(LB_B, p2))
        .payload(b"HTTP/1.0 200 OK\r\n\r\nbackend web11")
        .macs(MAC_WEB11, MAC_DPB);
    let want2 = reply2.clone().tuple(vip, c2).macs(MAC_DPC, MAC_CLIENT);
    f.expect("reply flow 2", f.dpb, &reply2, XDP_REDIRECT, &want2);
    // A reply-shaped packet that matches no flow is not ours.
    let stray = Pkt::tcp(ep(WEB10, 80), ep(LB_B, 9))
        .macs(MAC_WEB10, MAC_DPB)
        .build();
    f.expect_frame("stray reply", f.dpb, &stray, XDP_PASS, &stray);

    // FINs both ways close flow 1; a new SYN on the same tuple is a new connection: next in
    // turn.
    let fin1 = Pkt::tcp(c1, vip).flags(FIN | ACK).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "FIN flow 1",
        f.dpc,
        &fin1,
        XDP_REDIRECT,
        &full_nat(&fin1, WEB10, MAC_WEB10, p1, 80),
    );
    let fin1_back = Pkt::tcp(ep(WEB10, 80), ep(LB_B, p1))
        .flags(FIN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    let want = fin1_back.clone().tuple(vip, c1).macs(MAC_DPC, MAC_CLIENT);
    f.expect("server FIN flow 1", f.dpb, &fin1_back, XDP_REDIRECT, &want);
    f.expect(
        "SYN reusing flow 1's tuple",
        f.dpc,
        &syn1,
        XDP_REDIRECT,
        &full_nat(&syn1, WEB11, MAC_WEB11, nth_port(1), 80),
    );

    let s10 = f.bal.dp.maps.server_counters(HOGE_WEB10).expect("counters");
    let s11 = f.bal.dp.maps.server_counters(HOGE_WEB11).expect("counters");
    assert_eq!(
        (s10.new_flows, s11.new_flows),
        (2, 2),
        "new flows per server"
    );
    assert_eq!((s10.packets_in, s10.packets_out), (6, 2));
    assert_eq!((s11.packets_in, s11.packets_out), (3, 1));
    assert_eq!(
        s10.bytes_in,
        (3 * syn1.build().len() + 3 * data1.build().len()) as u64
    );
    assert_eq!(f.reason(Reason::PassNotService), 1);
}

#[test]
fn dnat_keeps_the_client_address() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 41000);
    let vip = ep(VIP, 8080);
    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let fwd = syn.clone().tuple(c, ep(WEB10, 80)).macs(MAC_DPB, MAC_WEB10);
    f.expect("DNAT SYN", f.dpc, &syn, XDP_REDIRECT, &fwd);
    let syn2 = Pkt::tcp(ep(CLIENT, 41001), vip)
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    let fwd2 = syn2
        .clone()
        .tuple(ep(CLIENT, 41001), ep(WEB11, 80))
        .macs(MAC_DPB, MAC_WEB11);
    f.expect("DNAT second flow", f.dpc, &syn2, XDP_REDIRECT, &fwd2);
    // The server answers the client directly (routed through the LB): source back to the VIP.
    let reply = Pkt::tcp(ep(WEB10, 80), c)
        .flags(SYN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    let want = reply.clone().tuple(vip, c).macs(MAC_DPC, MAC_CLIENT);
    f.expect("DNAT reply", f.dpb, &reply, XDP_REDIRECT, &want);
}

#[test]
fn udp_with_and_without_checksum() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 5353);
    let vip = ep(VIP, 53);
    let port = nth_port(0);
    let q = Pkt::udp(c, vip).payload(b"query").macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "UDP query",
        f.dpc,
        &q,
        XDP_REDIRECT,
        &full_nat(&q, WEB10, MAC_WEB10, port, 53),
    );
    let mut q0 = q.clone();
    q0.udp_no_checksum = true;
    let mut want0 = full_nat(&q, WEB10, MAC_WEB10, port, 53);
    want0.udp_no_checksum = true;
    f.expect(
        "UDP without checksum stays without",
        f.dpc,
        &q0,
        XDP_REDIRECT,
        &want0,
    );
    let r = Pkt::udp(ep(WEB10, 53), ep(LB_B, port))
        .payload(b"answer")
        .macs(MAC_WEB10, MAC_DPB);
    f.expect(
        "UDP answer",
        f.dpb,
        &r,
        XDP_REDIRECT,
        &r.clone().tuple(vip, c).macs(MAC_DPC, MAC_CLIENT),
    );
}

#[test]
fn ip_options_are_kept_and_checksummed() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 42000);
    let mut syn = Pkt::tcp(c, ep(VIP, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    // Router Alert (RFC 2113) and NOP padding: 8 bytes of options, IHL 7.
    syn.ip_options = vec![0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
    let want = full_nat(&syn, WEB10, MAC_WEB10, nth_port(0), 80);
    f.expect("SYN with IP options", f.dpc, &syn, XDP_REDIRECT, &want);
}

#[test]
fn traffic_that_is_not_ours_passes_untouched() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 43000);
    // Other port on the VIP, other address, UDP to a TCP-only service.
    for (what, p) in [
        ("VIP, port 22", Pkt::tcp(c, ep(VIP, 22)).flags(SYN)),
        (
            "other address",
            Pkt::tcp(c, ep(Ipv4Addr::new(10, 0, 0, 99), 80)).flags(SYN),
        ),
        ("UDP to a TCP service", Pkt::udp(c, ep(VIP, 80))),
    ] {
        f.expect_untouched(what, &p.build());
    }
    // ICMP echo to the VIP.
    let mut icmp = Pkt::tcp(c, ep(VIP, 80)).build();
    icmp[23] = 1;
    f.expect_untouched("ICMP", &icmp);
    // ARP and IPv6.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_CLIENT);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_CLIENT);
    arp.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    f.expect_untouched("ARP", &arp);
    // An IPv6 frame while no service is IPv6: no IPv6 program is installed, so it passes
    // at once, counted with the other families (tests/dataplane6.rs has the IPv6 program).
    let mut v6 = Pkt::tcp(c, ep(VIP, 80)).build();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    f.expect_untouched("IPv6 ethertype", &v6);
    assert_eq!(f.reason(Reason::PassMalformed), 0);
    // Fragments of a packet to the service: first fragment (MF) and a later one (offset).
    let mut first = Pkt::tcp(c, ep(VIP, 80)).flags(SYN);
    first.frag = 0x2000;
    f.expect_untouched("first fragment", &first.build());
    let mut later = Pkt::udp(c, ep(VIP, 53));
    later.frag = 0x0003;
    f.expect_untouched("later fragment", &later.build());
    assert_eq!(f.reason(Reason::PassFragment), 2);
    assert_eq!(f.reason(Reason::PassNotIpv4), 2);
    assert_eq!(f.reason(Reason::PassNotL4), 1);
    // A TCP segment to the service that is not a SYN and belongs to no flow: the host's to
    // answer (with an RST), and no state is made for it.
    f.expect_untouched("ACK without a flow", &Pkt::tcp(c, ep(VIP, 80)).build());
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
    assert_eq!(f.counts(), (0, 0));
}

#[test]
fn ports_no_service_or_server_uses_pass_before_conntrack() {
    let mut f = Fixture::new();
    let want = f.bal.layout().port_filter();
    assert_eq!(f.bal.dp.maps.port_filter().expect("LB_PORTS"), want);
    for p in [80, 53, 8080, 81, 82] {
        assert!(want.has(PortSide::Service, p), "service port {p}");
    }
    assert!(want.has(PortSide::Server, 80) && want.has(PortSide::Server, 53));

    // A tracked flow is forwarded both ways while its ports are in the filter...
    let c = ep(CLIENT, 43100);
    let data = Pkt::tcp(c, ep(VIP, 80))
        .flags(ACK)
        .macs(MAC_CLIENT, MAC_DPC);
    let syn = data.clone().flags(SYN);
    f.expect(
        "SYN",
        f.dpc,
        &syn,
        XDP_REDIRECT,
        &full_nat(&syn, WEB10, MAC_WEB10, nth_port(0), 80),
    );
    let reply = Pkt::tcp(ep(WEB10, 80), ep(LB_B, nth_port(0)))
        .flags(ACK)
        .macs(MAC_WEB10, MAC_DPB);
    assert_eq!(f.run(f.dpb, &reply.build()).0, XDP_REDIRECT, "reply");
    // ...and passed untouched, without a conntrack lookup, once they are not: the filter
    // alone decides, even for a flow still in the table.
    f.bal
        .dp
        .maps
        .write_port_filter(&PortFilter::default())
        .expect("clear LB_PORTS");
    let before = f.reason(Reason::PassNotService);
    f.expect_untouched("data, port filter empty", &data.build());
    f.expect_frame(
        "reply, port filter empty",
        f.dpb,
        &reply.build(),
        XDP_PASS,
        &reply.build(),
    );
    assert_eq!(f.reason(Reason::PassNotService), before + 2);
    // Only the server side admits the reply, only the service side the client's packets.
    let mut only_servers = PortFilter::default();
    only_servers.add(PortSide::Server, 80);
    f.bal
        .dp
        .maps
        .write_port_filter(&only_servers)
        .expect("LB_PORTS");
    f.expect_untouched("data, servers only", &data.build());
    assert_eq!(f.run(f.dpb, &reply.build()).0, XDP_REDIRECT, "reply again");
    f.bal.dp.maps.write_port_filter(&want).expect("LB_PORTS");
    f.expect(
        "data, filter restored",
        f.dpc,
        &data,
        XDP_REDIRECT,
        &full_nat(&data, WEB10, MAC_WEB10, nth_port(0), 80),
    );
}

#[test]
fn truncated_and_malformed_headers_pass_untouched() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 44000);
    for p in [
        Pkt::tcp(c, ep(VIP, 80)).flags(SYN).payload(b"xy"),
        Pkt::udp(c, ep(VIP, 53)).payload(b"q"),
    ] {
        let full = p.build();
        // Every length from a bare Ethernet header up to one byte short (the kernel's test
        // run refuses frames shorter than an Ethernet header; so does every NIC).
        for len in 14..full.len() {
            f.expect_untouched(&format!("truncated to {len} bytes"), &full[..len]);
        }
    }
    let good = Pkt::tcp(c, ep(VIP, 80)).flags(SYN).build();
    let mut bad = |what: &str, at: usize, v: u8| {
        let mut fr = good.clone();
        fr[at] = v;
        f.expect_untouched(what, &fr);
    };
    bad("IHL 4", 14, 0x44);
    bad("IP version 6 in an IPv4 frame", 14, 0x65);
    bad("IHL beyond the frame", 14, 0x4f);
    bad("total length shorter than the header", 17, 19);
    bad("TCP data offset 4", 46, 0x40);
    bad("TCP data offset beyond the segment", 46, 0xf0);
    let udp = Pkt::udp(c, ep(VIP, 53)).payload(b"q").build();
    for (what, len) in [("UDP length 7", 7u16), ("UDP length past the packet", 200)] {
        let mut fr = udp.clone();
        fr[38..40].copy_from_slice(&len.to_be_bytes());
        f.expect_untouched(what, &fr);
    }
    let forwarded: u64 = (0..7)
        .map(|id| {
            f.bal
                .dp
                .maps
                .server_counters(ServerSlot(id))
                .expect("counters")
                .packets_in
        })
        .sum();
    assert_eq!(forwarded, 0, "nothing malformed was forwarded");
}

#[test]
fn flows_stay_on_a_server_that_goes_down() {
    // As in HAProxy: a server failing its health checks often still serves its open
    // connections; only new flows avoid it (`on-marked-down shutdown-sessions` is the
    // daemon's to apply).
    let mut f = Fixture::new();
    let vip = ep(VIP, 80);
    let (c1, c2) = (ep(CLIENT, 45001), ep(CLIENT, 45002));
    let syn1 = Pkt::tcp(c1, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let syn2 = Pkt::tcp(c2, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (p1, p2) = (nth_port(0), nth_port(0));
    f.expect(
        "flow 1",
        f.dpc,
        &syn1,
        XDP_REDIRECT,
        &full_nat(&syn1, WEB10, MAC_WEB10, p1, 80),
    );
    f.expect(
        "flow 2",
        f.dpc,
        &syn2,
        XDP_REDIRECT,
        &full_nat(&syn2, WEB11, MAC_WEB11, p2, 80),
    );
    f.set_down("hoge", "web11");
    let live: Vec<u32> = (f.bal.dp.maps.live_table(HOGE).expect("table").iter())
        .map(|e| e.slot)
        .collect();
    assert_eq!(live, [HOGE_WEB10.0]);
    let data2 = Pkt::tcp(c2, vip).payload(b"x").macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "flow 2 stays on web11",
        f.dpc,
        &data2,
        XDP_REDIRECT,
        &full_nat(&data2, WEB11, MAC_WEB11, p2, 80),
    );
    // New flows only go to web10 now.
    for port in 45100..45104 {
        let (_, out) = f.run(f.dpc, &Pkt::tcp(ep(CLIENT, port), vip).flags(SYN).build());
        assert_eq!(packet::endpoints(&out).1, ep(WEB10, 80));
    }
    // Both down: the VIP's new flows are dropped (default), not sent to a DOWN server...
    f.set_down("hoge", "web10");
    let syn = Pkt::tcp(ep(CLIENT, 45200), vip).flags(SYN).build();
    let (action, _) = f.run(f.dpc, &syn);
    assert_eq!(action_name(action), action_name(XDP_DROP));
    assert_eq!(f.reason(Reason::DropNoServer), 1);
    // ...and established ones still go where they went.
    let data1 = Pkt::tcp(c1, vip).payload(b"y").macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "flow 1 stays on web10",
        f.dpc,
        &data1,
        XDP_REDIRECT,
        &full_nat(&data1, WEB10, MAC_WEB10, p1, 80),
    );
    let redispatched: u64 = [HOGE_WEB10, HOGE_WEB11]
        .iter()
        .map(|&s| {
            f.bal
                .dp
                .maps
                .server_counters(s)
                .expect("counters")
                .redispatched
        })
        .sum();
    assert_eq!(redispatched, 0);
}

#[test]
fn a_reload_that_adds_servers_and_backends_moves_no_flow() {
    let mut f = Fixture::new();
    let vip = ep(VIP, 80);
    let (c1, c2) = (ep(CLIENT, 47001), ep(CLIENT, 47002));
    let data = |c| Pkt::tcp(c, vip).payload(b"z").macs(MAC_CLIENT, MAC_DPC);
    let udp = Pkt::udp(ep(CLIENT, 47003), ep(VIP, 53)).macs(MAC_CLIENT, MAC_DPC);
    let mut before = Vec::new();
    for p in [data(c1).flags(SYN), data(c2).flags(SYN), udp.clone()] {
        let (action, out) = f.run(f.dpc, &p.build());
        assert_eq!(action, XDP_REDIRECT);
        before.push(packet::endpoints(&out).1);
    }
    assert_eq!(before, [ep(WEB10, 80), ep(WEB11, 80), ep(WEB10, 53)]);
    let (_, flow1) = f.run(f.dpc, &data(c1).build());
    let (_, flow2) = f.run(f.dpc, &data(c2).build());
    let (_, dns) = f.run(f.dpc, &udp.build());

    // A backend and frontend before all others, a server before web10: every config-order
    // number moves, the data plane's slots do not.
    let moved = CONFIG.replacen(
        "[frontend.web]",
        "[frontend.api]\nbind = [\"10.0.0.1:8081\"]\ndefault_backend = \"api\"\n\n[backend.api]\nserver = [{ name = \"api10\", address = \"10.1.0.10:8081\" }]\n\n[frontend.web]",
        1,
    )
    .replacen(
        "server = [{ name = \"web10\"",
        "server = [{ name = \"web09\", address = \"10.1.0.11:8080\" }, { name = \"web10\"",
        1,
    );
    let cfg = native::parse("moved.toml", &moved).expect("config");
    let layout = Layout::new(&cfg);
    assert_eq!(layout.pools[1].name, "hoge");
    assert_eq!(layout.pools[1].servers[1].name, "web10");
    let plan = Plan {
        snat: vec![LB_B.into(); layout.server_count() as usize],
        layout,
        interfaces: vec![],
        local: lb::daemon::Local {
            v4: vec![addr_be(VIP), addr_be(LB_B)],
            v6: Vec::new(),
        },
    };
    f.bal.reinstall(plan, &cfg).expect("reload");
    assert_eq!(f.bal.layout().pools[1].slot, HOGE, "hoge keeps its pool");
    assert_eq!(
        f.bal.layout().pools[1].servers[1].slot,
        HOGE_WEB10,
        "web10 keeps its slot"
    );

    // The same packets are rewritten exactly as before the reload: same server, same port.
    f.expect_frame(
        "flow 1 after reload",
        f.dpc,
        &data(c1).build(),
        XDP_REDIRECT,
        &flow1,
    );
    f.expect_frame(
        "flow 2 after reload",
        f.dpc,
        &data(c2).build(),
        XDP_REDIRECT,
        &flow2,
    );
    f.expect_frame("dns after reload", f.dpc, &udp.build(), XDP_REDIRECT, &dns);
    let redispatched: u64 = (0..8)
        .map(|s| {
            f.bal
                .dp
                .maps
                .server_counters(ServerSlot(s))
                .expect("counters")
                .redispatched
        })
        .sum();
    assert_eq!(redispatched, 0, "no flow was redispatched");
    // New flows of hoge now take web09 too; api's VIP works.
    let mut to = Vec::new();
    for port in 47100..47103 {
        let (_, out) = f.run(f.dpc, &data(ep(CLIENT, port)).flags(SYN).build());
        to.push(packet::endpoints(&out).1);
    }
    assert!(to.contains(&ep(WEB11, 8080)), "web09 in rotation: {to:?}");
    let api = Pkt::tcp(ep(CLIENT, 47200), ep(VIP, 8081)).flags(SYN);
    let (action, out) = f.run(f.dpc, &api.build());
    assert_eq!(action, XDP_REDIRECT);
    assert_eq!(packet::endpoints(&out).1, ep(WEB10, 8081));
}

#[test]
fn refused_connections_are_retried_on_another_server() {
    let mut f = Fixture::new();
    let vip = ep(VIP, 80);
    let c1 = ep(CLIENT, 48001);
    let syn = Pkt::tcp(c1, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let rst = |from: Ipv4Addr, port: u16| {
        Pkt::tcp(ep(from, 80), ep(LB_B, port))
            .flags(RST | ACK)
            .macs(MAC_WEB10, MAC_DPB)
    };
    // web10 refuses: its RST is held back, the client's retransmitted SYN goes to web11.
    f.expect(
        "SYN",
        f.dpc,
        &syn,
        XDP_REDIRECT,
        &full_nat(&syn, WEB10, MAC_WEB10, nth_port(0), 80),
    );
    let (action, _) = f.run(f.dpb, &rst(WEB10, nth_port(0)).build());
    assert_eq!(action_name(action), action_name(XDP_DROP), "RST held back");
    assert_eq!(f.reason(Reason::DropServerRefused), 1);
    f.expect(
        "retransmitted SYN",
        f.dpc,
        &syn,
        XDP_REDIRECT,
        &full_nat(&syn, WEB11, MAC_WEB11, nth_port(0), 80),
    );
    let c11 = f.bal.dp.maps.server_counters(HOGE_WEB11).expect("counters");
    assert_eq!((c11.new_flows, c11.redispatched), (1, 1));
    // web11 refuses too (retry 2 of 2): back to web10.
    let (action, _) = f.run(f.dpb, &rst(WEB11, nth_port(0)).build());
    assert_eq!(action_name(action), action_name(XDP_DROP));
    f.expect(
        "second retransmission",
        f.dpc,
        &syn,
        XDP_REDIRECT,
        &full_nat(&syn, WEB10, MAC_WEB10, nth_port(1), 80),
    );
    // Retries used up: the third refusal reaches the client, rewritten as a reply.
    let (action, out) = f.run(f.dpb, &rst(WEB10, nth_port(1)).build());
    assert_eq!(
        action_name(action),
        action_name(XDP_REDIRECT),
        "RST passed on"
    );
    assert_eq!(packet::endpoints(&out), (vip, c1));
    assert_eq!(packet::verify_checksums(&out), Ok(()));
    assert_eq!(f.reason(Reason::DropServerRefused), 2);
    let refused = f
        .entry(&tcp_key(c1, vip))
        .expect("the refused flow lingers, closed")
        .0;
    assert_eq!(refused.state, lb_common::State::Closed as u8);

    // Once the server accepted (SYN-ACK), its RST is its own business.
    let c2 = ep(CLIENT, 48002);
    let syn2 = Pkt::tcp(c2, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (_, out) = f.run(f.dpc, &syn2.build());
    let (lb_side, server) = packet::endpoints(&out);
    let port = lb_side.port();
    let synack = Pkt::tcp(server, ep(LB_B, port)).flags(SYN | ACK);
    assert_eq!(f.run(f.dpb, &synack.build()).0, XDP_REDIRECT);
    let (action, out) = f.run(f.dpb, &rst(*server.ip(), port).build());
    assert_eq!(action_name(action), action_name(XDP_REDIRECT));
    assert_eq!(packet::endpoints(&out), (vip, c2));
    // A backend without `option redispatch` ("direct", DNAT) passes refusals on at once.
    let c3 = ep(CLIENT, 48003);
    let (_, out) = f.run(f.dpc, &Pkt::tcp(c3, ep(VIP, 8080)).flags(SYN).build());
    let server = packet::endpoints(&out).1;
    let refusal = Pkt::tcp(server, c3).flags(RST | ACK);
    let (action, out) = f.run(f.dpb, &refusal.build());
    assert_eq!(action_name(action), action_name(XDP_REDIRECT));
    assert_eq!(packet::endpoints(&out), (ep(VIP, 8080), c3));
    assert_eq!(f.reason(Reason::DropServerRefused), 2);
}

#[test]
fn empty_pool_can_pass_to_the_local_stack() {
    let mut f = Fixture::new();
    // backend "sorry" has only a disabled server and on_empty = "pass".
    let syn = Pkt::tcp(ep(CLIENT, 46000), ep(VIP, 82)).flags(SYN).build();
    f.expect_untouched("no server, pass", &syn);
    assert_eq!(f.reason(Reason::PassNoServer), 1);
    assert_eq!(
        f.state("sorry", "web10").admin,
        Admin::Maint,
        "disabled server starts in maintenance"
    );
}

#[test]
fn unknown_neighbour_hands_the_rewritten_packet_to_the_kernel() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 47000);
    let syn = Pkt::tcp(c, ep(VIP, 81))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    // Rewritten (so the kernel forwards it to the server and resolves its MAC), MACs as they
    // came in, XDP_PASS.
    let want = syn
        .clone()
        .tuple(ep(LB_B, nth_port(0)), ep(Ipv4Addr::new(10, 1, 0, 12), 80));
    f.expect("no neighbour", f.dpc, &syn, XDP_PASS, &want);
    assert_eq!(f.reason(Reason::PassNoNeigh), 1);
}

#[test]
fn next_hops_are_cached_for_a_second() {
    let mut f = Fixture::new();
    let c = ep(CLIENT, 48000);
    let vip = ep(VIP, 80);
    let port = nth_port(0);
    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "first packet",
        f.dpc,
        &syn,
        XDP_REDIRECT,
        &full_nat(&syn, WEB10, MAC_WEB10, port, 80),
    );
    // web10's MAC changes (hardware swap); the data plane keeps the cached one...
    let new_mac = [0x02, 0, 0, 0, 0, 0x1a];
    f.net.neighbour(WEB10, new_mac).expect("neighbour");
    let data = Pkt::tcp(c, vip).payload(b"z").macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "cached next hop",
        f.dpc,
        &data,
        XDP_REDIRECT,
        &full_nat(&data, WEB10, MAC_WEB10, port, 80),
    );
    // ...for NEXT_HOP_TTL, without any daemon involved (here: the lookups pushed back, the
    // flow's and its server's, which a stale flow would take).
    f.edit(&tcp_key(c, vip), |e| stale(&mut e.nh));
    f.edit_server(HOGE_WEB10, |s| stale(&mut s.nh));
    f.expect(
        "refreshed next hop",
        f.dpc,
        &data,
        XDP_REDIRECT,
        &full_nat(&data, WEB10, new_mac, port, 80),
    );
}

/// Pushes a next hop's lookup back by `NEXT_HOP_TTL`: stale from now on.
fn stale(nh: &mut NextHop) {
    nh.stamp = nh.stamp.wrapping_sub(NEXT_HOP_TTL);
}

/// A MAC no neighbour of the fixture has: only a copy of an entry it was written into can
/// put it on a packet, never a FIB lookup.
const MAC_LENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5a];

/// A forward entry whose next hop went stale (its flow idle for a second) takes its server's
/// while that one is fresh, with no FIB lookup of its own; when both are stale, one lookup
/// refreshes both. Full-NAT and DNAT alike. A reply entry (towards the client) keeps
/// looking its own up.
#[test]
fn an_idle_flow_takes_its_servers_next_hop() {
    for (mode, port) in [("full-NAT", 80), ("DNAT", 8080)] {
        let mut f = Fixture::new();
        let (c, vip) = (ep(CLIENT, 49000), ep(VIP, port));
        let (lb_side, server) = f.handshake(c, vip);
        assert_eq!(*server.ip(), WEB10, "{mode}: first server");
        let key = tcp_key(c, vip);
        let slot = ServerSlot(u32::from(f.entry(&key).expect("forward entry").0.server));
        let data = Pkt::tcp(c, vip)
            .flags(ACK)
            .seq(1001)
            .ack(SERVER_ISN + 1)
            .payload(b"GET / HTTP/1.0\r\n\r\n")
            .macs(MAC_CLIENT, MAC_DPC);
        let out = |mac| data.clone().tuple(lb_side, server).macs(MAC_DPB, mac);

        // The flow's hop is stale, its server's fresh (and says MAC_LENT): the server's.
        f.edit(&key, |e| stale(&mut e.nh));
        f.edit_server(slot, |s| {
            s.nh.dmac = MAC_LENT;
            s.nh.stamp = now();
        });
        f.expect(
            &format!("{mode}: the server's next hop"),
            f.dpc,
            &data,
            XDP_REDIRECT,
            &out(MAC_LENT),
        );
        let lent = f.server_entry(slot).nh;
        assert_eq!(f.entry(&key).expect("entry").0.nh, lent, "{mode}: copied");

        // Both stale, and web10's MAC changed meanwhile: one lookup, its answer in both.
        let new_mac = [0x02, 0, 0, 0, 0, 0x1a];
        f.net.neighbour(WEB10, new_mac).expect("neighbour");
        f.edit(&key, |e| stale(&mut e.nh));
        f.edit_server(slot, |s| stale(&mut s.nh));
        f.expect(
            &format!("{mode}: looked up for both"),
            f.dpc,
            &data,
            XDP_REDIRECT,
            &out(new_mac),
        );
        let (flow, shared) = (f.entry(&key).expect("entry").0.nh, f.server_entry(slot).nh);
        assert_eq!(shared.dmac, new_mac, "{mode}: the server's refreshed");
        assert!(
            elapsed(now(), shared.stamp) < NEXT_HOP_TTL,
            "{mode}: and stamped afresh"
        );
        assert_eq!(flow, shared, "{mode}: the flow's too");

        // The reply entry's stale hop is looked up (towards the client), whatever the
        // server's says, and the server's is left alone.
        let rkey = tcp_key(server, lb_side);
        f.edit(&rkey, |e| stale(&mut e.nh));
        f.edit_server(slot, |s| {
            s.nh.dmac = MAC_LENT;
            s.nh.stamp = now();
        });
        let reply = Pkt::tcp(server, lb_side)
            .flags(ACK)
            .seq(SERVER_ISN + 1)
            .ack(1001 + 18)
            .payload(b"HTTP/1.0 200 OK\r\n\r\n")
            .macs(MAC_WEB10, MAC_DPB);
        let want = reply.clone().tuple(vip, c).macs(MAC_DPC, MAC_CLIENT);
        f.expect(
            &format!("{mode}: reply"),
            f.dpb,
            &reply,
            XDP_REDIRECT,
            &want,
        );
        let rnh = f.entry(&rkey).expect("reply entry").0.nh;
        assert_eq!(rnh.dmac, MAC_CLIENT, "{mode}: the reply entry's own lookup");
        assert_eq!(
            f.server_entry(slot).nh.dmac,
            MAC_LENT,
            "{mode}: server's untouched"
        );
    }
}

/// A server given a new address (`set server addr`, DNS) drops its next hop with its old
/// address (the daemon's writer rewrites the entry without it), and the hop its new
/// address's flows then refresh is not lent to the flows still going to the old one.
#[test]
fn a_moved_server_lends_its_next_hop_to_its_new_address_only() {
    let mut f = Fixture::new();
    let (c, vip) = (ep(CLIENT, 49100), ep(VIP, 80));
    let (lb_side, server) = f.handshake(c, vip);
    assert_eq!(*server.ip(), WEB10);
    assert_eq!(f.server_entry(HOGE_WEB10).nh.dmac, MAC_WEB10);

    // web10 moves to 10.1.0.11 (web11's host, whose MAC the fixture knows).
    let id = f.bal.servers().find("hoge", "web10").expect("server");
    f.bal
        .set_addr(id, WEB11.into(), LB_B.into(), None)
        .expect("set addr");
    let moved = f.server_entry(HOGE_WEB10);
    assert_eq!(moved.addr, addr_be(WEB11));
    assert_eq!(
        moved.nh,
        NextHop::default(),
        "the old address's hop dropped"
    );
    // A new flow to web10 goes to its new address, and refreshes the server's hop for it.
    f.rewind(HOGE, HOGE_WEB10);
    let syn = Pkt::tcp(ep(CLIENT, 49101), vip)
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    let (action, out) = f.run(f.dpc, &syn.build());
    assert_eq!(action_name(action), action_name(XDP_REDIRECT));
    assert_eq!(*packet::endpoints(&out).1.ip(), WEB11, "the new address");
    assert_eq!(f.server_entry(HOGE_WEB10).nh.dmac, MAC_WEB11);

    // The established flow to the old address, idle: its own lookup, not the server's hop.
    let key = tcp_key(c, vip);
    f.edit(&key, |e| stale(&mut e.nh));
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .seq(1001)
        .ack(SERVER_ISN + 1)
        .payload(b"GET / HTTP/1.0\r\n\r\n")
        .macs(MAC_CLIENT, MAC_DPC);
    let want = data.clone().tuple(lb_side, server).macs(MAC_DPB, MAC_WEB10);
    f.expect("old flow, idle", f.dpc, &data, XDP_REDIRECT, &want);
    assert_eq!(f.entry(&key).expect("entry").0.nh.dmac, MAC_WEB10);
    assert_eq!(
        f.server_entry(HOGE_WEB10).nh.dmac,
        MAC_WEB11,
        "the server keeps its new address's hop"
    );
}

/// A server given without a port (HAProxy's `server s 10.1.0.10`) gets each connection on
/// the port the client connected to; its replies come back from those ports.
#[test]
fn a_server_without_a_port_takes_the_clients_destination_port() {
    let mut f = Fixture::with(
        r#"
[frontend.multi]
bind = ["10.0.0.1:80", "10.0.0.1:8443"]
default_backend = "portless"

[backend.portless]
server = [{ name = "web10", address = "10.1.0.10" }]
"#,
        Default::default(),
    );
    for (i, port) in [80u16, 8443].into_iter().enumerate() {
        let client = ep(CLIENT, 41000 + i as u16);
        let syn = Pkt::tcp(client, ep(VIP, port))
            .flags(SYN)
            .macs(MAC_CLIENT, MAC_DPC);
        let sport = nth_port(i as u16);
        f.expect(
            &format!("SYN to :{port}"),
            f.dpc,
            &syn,
            XDP_REDIRECT,
            &full_nat(&syn, WEB10, MAC_WEB10, sport, port),
        );
        let reply = Pkt::tcp(ep(WEB10, port), ep(LB_B, sport))
            .flags(SYN | ACK)
            .macs(MAC_WEB10, MAC_DPB);
        let want = reply
            .clone()
            .tuple(ep(VIP, port), client)
            .macs(MAC_DPC, MAC_CLIENT);
        f.expect(
            &format!("reply from :{port}"),
            f.dpb,
            &reply,
            XDP_REDIRECT,
            &want,
        );
    }
    let ports = f.bal.dp.maps.port_filter().expect("port filter");
    assert!(ports.has(PortSide::Server, 80) && ports.has(PortSide::Server, 8443));
    assert!(!ports.has(PortSide::Server, 0));
}

/// `tcp-request connection` rules, first match wins: a denied client's SYN is dropped in XDP
/// (`drop_denied`) before any state exists, allowed ones are balanced, UDP is not judged,
/// and a reload that denies a client leaves its established connection alone.
#[test]
fn access_rules_drop_denied_sources_before_any_state() {
    const GUARDED: &str = r#"
[frontend.guarded]
bind = ["10.0.0.1:80", "10.0.0.1:2222", "10.0.0.1:53/udp"]
default_backend = "hoge"
tcp_request_connection = [
  "accept if { src 10.0.0.2 }",
  "reject if { src 10.0.0.0/8 }",
  "reject if { dst_port 2222 }",
]

[backend.hoge]
server = [{ name = "web10", address = "10.1.0.10:80" }]
"#;
    let mut f = Fixture::with(GUARDED, Default::default());
    let syn = |src: Ipv4Addr, sport, dport| {
        Pkt::tcp(ep(src, sport), ep(VIP, dport))
            .flags(SYN)
            .macs(MAC_CLIENT, MAC_DPC)
    };
    let near = Ipv4Addr::new(10, 0, 0, 3);
    let far = Ipv4Addr::new(192, 168, 5, 5);
    let mut port = 0;
    for (what, src, dport, allowed) in [
        ("the accepted host, before the /8 rule", CLIENT, 80, true),
        ("the accepted host on the denied port", CLIENT, 2222, true),
        ("the rest of 10/8", near, 80, false),
        ("another network", far, 80, true),
        ("another network on the denied port", far, 2222, false),
    ] {
        let p = syn(src, 40000, dport);
        if allowed {
            let want = full_nat(&p, WEB10, MAC_WEB10, nth_port(port), 80);
            port += 1;
            f.expect(what, f.dpc, &p, XDP_REDIRECT, &want);
        } else {
            let before = f.counts();
            let (action, _) = f.run(f.dpc, &p.build());
            assert_eq!(action_name(action), "XDP_DROP", "{what}");
            assert_eq!(f.counts(), before, "{what}: no state");
        }
    }
    assert_eq!(f.reason(Reason::DropDenied), 2);
    let udp = Pkt::udp(ep(near, 40001), ep(VIP, 53)).macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &udp.build());
    assert_eq!(action_name(action), "XDP_REDIRECT", "UDP is not judged");

    // Reload denying 10.0.0.2 too: its flow goes on, its next connection is refused.
    let data = Pkt::tcp(ep(CLIENT, 40000), ep(VIP, 80))
        .payload(b"z")
        .macs(MAC_CLIENT, MAC_DPC);
    let (_, forwarded) = f.run(f.dpc, &data.build());
    let cfg = native::parse(
        "denied.toml",
        &GUARDED.replace("accept if { src 10.0.0.2 }", "reject if { src 10.0.0.2 }"),
    )
    .expect("config");
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
    f.bal.reinstall(plan, &cfg).expect("reload");
    f.expect_frame(
        "established flow after the reload",
        f.dpc,
        &data.build(),
        XDP_REDIRECT,
        &forwarded,
    );
    let (action, _) = f.run(f.dpc, &syn(CLIENT, 40100, 80).build());
    assert_eq!(
        action_name(action),
        "XDP_DROP",
        "new connection after the reload"
    );
    assert_eq!(f.reason(Reason::DropDenied), 3);
    // Rules gone: everyone is let in, no prefix is left behind.
    let open = GUARDED
        .replace("tcp_request_connection", "# tcp_request_connection")
        .replace("\n  \"", "\n#  \"")
        .replace("\n]", "\n#]");
    let cfg = native::parse("open.toml", &open).expect("config");
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
    f.bal.reinstall(plan, &cfg).expect("reload");
    assert_eq!(f.bal.dp.maps.access.keys().count(), 0);
    let (action, _) = f.run(f.dpc, &syn(near, 40200, 2222).build());
    assert_eq!(action_name(action), "XDP_REDIRECT", "no rule: accepted");
}
