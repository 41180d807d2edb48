//! The balance algorithms that weigh active flows (`leastconn`, `first`, `random`) and
//! `maxconn`, through the real program (BPF_PROG_TEST_RUN): where new flows go while other
//! flows live, how active flows are counted along the flow lifecycle, and how the daemon's
//! recount corrects what the data plane cannot see.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::net::SocketAddrV4;

use dp_fixture::*;
use lb::{
    daemon::recount,
    dataplane::{LoadOptions, ids::ServerSlot, testrun::action_name},
};
use lb_common::{ACTIVE_TOTAL, Reason};
use lb_testbed::packet::{ACK, FIN, Pkt, RST, SYN};

/// Two servers behind VIP:80 with `balance` and each server's `extra` keys.
fn config(balance: &str, web10: &str, web11: &str, global: &str) -> String {
    format!(
        r#"
[global]
{global}

[defaults]
timeout = {{ connect = "5s", client = "30s", server = "60s" }}

[frontend.web]
bind = ["10.0.0.1:80"]
default_backend = "pool"

[backend.pool]
balance = "{balance}"
redispatch = true
retries = 2
server = [
  {{ name = "web10", address = "10.1.0.10:80"{web10} }},
  {{ name = "web11", address = "10.1.0.11:80"{web11} }},
]
"#
    )
}

const WEB10_SLOT: ServerSlot = ServerSlot(0);
const WEB11_SLOT: ServerSlot = ServerSlot(1);

fn fixture(balance: &str, web10: &str, web11: &str) -> Fixture {
    Fixture::with(&config(balance, web10, web11, ""), LoadOptions::default())
}

fn vip() -> SocketAddrV4 {
    ep(VIP, 80)
}

/// Which server a connection from `port` reaches with a full handshake (confirmed, active).
fn open(f: &mut Fixture, port: u16) -> (SocketAddrV4, SocketAddrV4) {
    f.handshake(ep(CLIENT, port), vip())
}

/// Closes the flow of client `port` (the client's FIN, the server's acknowledging it).
fn close(f: &mut Fixture, port: u16, (lb_side, server): (SocketAddrV4, SocketAddrV4)) {
    let mac = if *server.ip() == WEB10 {
        MAC_WEB10
    } else {
        MAC_WEB11
    };
    let client_fin = Pkt::tcp(ep(CLIENT, port), vip())
        .flags(FIN | ACK)
        .macs(MAC_CLIENT, MAC_DPC);
    let server_fin = Pkt::tcp(server, lb_side)
        .flags(FIN | ACK)
        .ack(1001)
        .macs(mac, MAC_DPB);
    for (ifindex, p) in [(f.dpc, client_fin), (f.dpb, server_fin)] {
        let (action, _) = f.run(ifindex, &p.build());
        assert_eq!(action_name(action), "XDP_REDIRECT", "{p:?}");
    }
}

/// A short connection: opened, then closed at once. Returns its server.
fn short(f: &mut Fixture, port: u16) -> std::net::Ipv4Addr {
    let ends = open(f, port);
    close(f, port, ends);
    *ends.1.ip()
}

fn active(f: &Fixture, slot: ServerSlot) -> u64 {
    f.bal.dp.maps.active(slot.0).expect("LB_ACTIVE")
}

/// The instance's active flows.
fn total(f: &Fixture) -> u64 {
    f.bal.dp.maps.active(ACTIVE_TOTAL).expect("LB_ACTIVE")
}

fn set_up(f: &mut Fixture, server: &str, up: bool) {
    let id = f.bal.servers().find("pool", server).expect("server");
    f.bal.change(id, |st| st.up = up).expect("change");
}

#[test]
fn leastconn_sends_new_flows_away_from_long_lived_ones() {
    let mut f = fixture("leastconn", "", "");
    // Three long-lived flows land on web10 while web11 is down.
    set_up(&mut f, "web11", false);
    let long: Vec<_> = (46000..46003).map(|p| (p, open(&mut f, p))).collect();
    assert!(long.iter().all(|(_, (_, s))| *s.ip() == WEB10));
    assert_eq!((active(&f, WEB10_SLOT), active(&f, WEB11_SLOT)), (3, 0));
    // web11 back: every short connection goes there while web10 holds three flows.
    set_up(&mut f, "web11", true);
    let who: Vec<_> = (46100..46110).map(|p| short(&mut f, p)).collect();
    assert!(who.iter().all(|s| *s == WEB11), "{who:?}");
    assert_eq!((active(&f, WEB10_SLOT), active(&f, WEB11_SLOT)), (3, 0));
    // Long flows on web11 too: once it holds as many, the two take turns.
    let more: Vec<_> = (46200..46203).map(|p| *open(&mut f, p).1.ip()).collect();
    assert_eq!(more, [WEB11, WEB11, WEB11]);
    let even: Vec<_> = (46300..46304).map(|p| *open(&mut f, p).1.ip()).collect();
    assert_eq!(even.iter().filter(|s| **s == WEB10).count(), 2, "{even:?}");
    // The long flows on web10 end: new flows go back to it.
    for (p, ends) in long {
        close(&mut f, p, ends);
    }
    assert_eq!(active(&f, WEB10_SLOT), 2);
    assert_eq!(short(&mut f, 46400), WEB10);
    assert_eq!(total(&f), 7, "instance total");
}

#[test]
fn leastconn_weighs_active_flows_by_weight() {
    // web10 has three times web11's weight: it takes three flows for each of web11's.
    let mut f = fixture("leastconn", ", weight = 3", "");
    let who: Vec<_> = (47000..47008).map(|p| *open(&mut f, p).1.ip()).collect();
    let on10 = who.iter().filter(|s| **s == WEB10).count();
    assert_eq!((on10, who.len() - on10), (6, 2), "{who:?}");
}

#[test]
fn a_flow_counts_from_its_confirmation_until_it_closes() {
    let mut f = fixture("leastconn", "", "");
    // A SYN alone (half-open, as a flood's) counts for nothing.
    let syn = Pkt::tcp(ep(CLIENT, 48000), vip())
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &syn.build());
    assert_eq!(active(&f, WEB10_SLOT) + active(&f, WEB11_SLOT), 0);
    // Confirmed: one; reset: none.
    let (lb_side, server) = open(&mut f, 48001);
    let slot = if *server.ip() == WEB10 {
        WEB10_SLOT
    } else {
        WEB11_SLOT
    };
    assert_eq!(active(&f, slot), 1);
    let rst = Pkt::tcp(ep(CLIENT, 48001), vip())
        .flags(RST)
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &rst.build());
    assert_eq!(active(&f, slot), 0);
    // A retransmitted RST or a late FIN changes nothing more.
    f.run(f.dpc, &rst.build());
    let late = Pkt::tcp(server, lb_side)
        .flags(FIN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    f.run(f.dpb, &late.build());
    assert_eq!(active(&f, slot), 0);
}

#[test]
fn the_recount_corrects_what_the_data_plane_cannot_see() {
    let mut f = fixture("leastconn", "", "");
    let a = open(&mut f, 49000);
    let b = open(&mut f, 49001);
    assert_eq!(total(&f), 2);
    // Flow a's entries vanish without a packet (the LRU evicting them), and the count of
    // web11 drifted below zero (two CPUs racing on a close): the recount puts both right.
    let ka = tcp_key(ep(CLIENT, 49000), vip());
    let (fwd, _) = f.entry(&ka).expect("entry");
    f.bal.dp.maps.flows.remove(&ka).expect("evict");
    f.bal
        .dp
        .maps
        .flows
        .remove(&fwd.mirror_key(lb_common::PROTO_TCP))
        .expect("evict");
    let other = if *a.1.ip() == WEB10 {
        WEB11_SLOT
    } else {
        WEB10_SLOT
    };
    let mine = if *a.1.ip() == WEB10 {
        WEB10_SLOT
    } else {
        WEB11_SLOT
    };
    assert_eq!(active(&f, mine), 1, "not seen by the data plane");
    f.bal
        .dp
        .maps
        .active
        .set(other.0, u64::MAX, 0)
        .expect("drift");
    assert_eq!(active(&f, other), 0, "below zero reads as none");
    let fixed = recount::correct(&mut f.bal.dp.maps).expect("recount");
    assert_eq!(fixed, 3, "a's server, b's server and the total");
    assert_eq!((active(&f, mine), active(&f, other)), (0, 1));
    assert_eq!(total(&f), 1);
    // An idle flow past its timeout no longer counts either (expiry is lazy).
    let idle = lb_common::clock::ticks_from_ms(31_000);
    let kb = tcp_key(ep(CLIENT, 49001), vip());
    let (fb, _) = f.entry(&kb).expect("entry");
    f.age(&kb, idle);
    f.age(&fb.mirror_key(lb_common::PROTO_TCP), idle);
    recount::correct(&mut f.bal.dp.maps).expect("recount");
    assert_eq!(active(&f, other), 0);
    assert_eq!(
        recount::correct(&mut f.bal.dp.maps).expect("recount"),
        0,
        "stable"
    );
    let _ = b;
}

#[test]
fn maxconn_sends_new_flows_to_a_server_with_room_then_drops_them() {
    let mut f = fixture("roundrobin", ", maxconn = 1", ", maxconn = 2");
    let first = open(&mut f, 50000);
    assert_eq!(*first.1.ip(), WEB10);
    // Round robin would alternate; web10 is full, so web11 takes the rest of its room.
    let who: Vec<_> = (50001..50003).map(|p| *open(&mut f, p).1.ip()).collect();
    assert_eq!(who, [WEB11, WEB11]);
    // Every server full: the SYN is dropped and counted, and no state is made.
    let before = f.counts();
    let syn = Pkt::tcp(ep(CLIENT, 50003), vip())
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &syn.build());
    assert_eq!(action_name(action), "XDP_DROP");
    assert_eq!(f.reason(Reason::DropMaxconn), 1);
    assert_eq!(f.counts(), before);
    // A flow of web10 closes: its room comes back, the retransmitted SYN gets in.
    close(&mut f, 50000, first);
    let again = open(&mut f, 50003);
    assert_eq!(*again.1.ip(), WEB10);
}

#[test]
fn first_fills_servers_in_config_order() {
    let mut f = fixture("first", ", maxconn = 2", ", maxconn = 2");
    let who: Vec<_> = (51000..51004).map(|p| *open(&mut f, p).1.ip()).collect();
    assert_eq!(who, [WEB10, WEB10, WEB11, WEB11]);
    let syn = Pkt::tcp(ep(CLIENT, 51004), vip())
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    assert_eq!(action_name(f.run(f.dpc, &syn.build()).0), "XDP_DROP");
    assert_eq!(f.reason(Reason::DropMaxconn), 1);
    // Without maxconn the first server takes everything.
    let mut g = fixture("first", "", "");
    let who: Vec<_> = (51100..51105).map(|p| short(&mut g, p)).collect();
    assert!(who.iter().all(|s| *s == WEB10), "{who:?}");
}

#[test]
fn random_draws_by_weight_and_keeps_the_less_loaded() {
    // The less loaded of two draws wins: once web10 holds its maxconn, every flow goes to
    // web11.
    let mut f = fixture("random", ", maxconn = 1", "");
    let who: Vec<_> = (52000..52010).map(|p| *open(&mut f, p).1.ip()).collect();
    assert_eq!(who.iter().filter(|s| **s == WEB10).count(), 1, "{who:?}");
    // Equal servers, no limit: both are used.
    let mut g = fixture("random", "", "");
    let who: Vec<_> = (52100..52140).map(|p| short(&mut g, p)).collect();
    let on10 = who.iter().filter(|s| **s == WEB10).count();
    assert!((5..=35).contains(&on10), "{on10} of 40 on web10");
}

#[test]
fn the_global_maxconn_caps_the_instance() {
    let cfg = config("roundrobin", "", "", "maxconn = 2");
    let mut f = Fixture::with(&cfg, LoadOptions::default());
    let a = open(&mut f, 53000);
    open(&mut f, 53001);
    let syn = Pkt::tcp(ep(CLIENT, 53002), vip())
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    assert_eq!(action_name(f.run(f.dpc, &syn.build()).0), "XDP_DROP");
    assert_eq!(f.reason(Reason::DropGlobalMaxconn), 1);
    close(&mut f, 53000, a);
    open(&mut f, 53002);
}

#[test]
fn refused_connections_count_in_a_row_until_one_is_accepted() {
    let mut f = fixture("roundrobin", "", "");
    let refusals = |f: &Fixture| f.bal.dp.maps.refusals.get(&WEB10_SLOT.0, 0).expect("map");
    for (n, port) in [(1u64, 54000u16), (2, 54001)] {
        f.rewind(dp_fixture::HOGE, WEB10_SLOT);
        let syn = Pkt::tcp(ep(CLIENT, port), vip())
            .flags(SYN)
            .macs(MAC_CLIENT, MAC_DPC);
        let (_, out) = f.run(f.dpc, &syn.build());
        let (lb_side, server) = lb_testbed::packet::endpoints(&out);
        assert_eq!(*server.ip(), WEB10);
        let rst = Pkt::tcp(server, lb_side)
            .flags(RST | ACK)
            .macs(MAC_WEB10, MAC_DPB);
        f.run(f.dpb, &rst.build());
        assert_eq!(refusals(&f), n);
    }
    // One it accepts clears the row; `econ` keeps them all.
    f.rewind(dp_fixture::HOGE, WEB10_SLOT);
    assert_eq!(*open(&mut f, 54002).1.ip(), WEB10);
    assert_eq!(refusals(&f), 0);
    let c = f.bal.dp.maps.server_counters(WEB10_SLOT).expect("counters");
    assert_eq!(c.refused, 2);
}
