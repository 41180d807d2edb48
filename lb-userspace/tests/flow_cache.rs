//! Each CPU's flow cache (`LB_FLOW_CACHE`, rules in `lb_common::flow_cache`) through the real
//! XDP program (BPF_PROG_TEST_RUN): which packets make a copy, that a copy serves with the
//! same bytes as the flow's entry, and every way a copy goes (news for the flow, its short
//! life, a new flow on its tuple, the daemon ending flows). Copies are per CPU, so each test
//! pins its thread to one CPU.
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::time::Duration;

use dp_fixture::*;
use lb::dataplane::{
    ids::{PoolSlot, ServerSlot},
    layout::addr_be,
    testrun::{XDP_PASS, XDP_REDIRECT},
};
use lb_common::{CachedFlow, FLOW_CACHE_TTL, FlowKey, Reason, clock::ms_from_ticks};
use lb_testbed::packet::{ACK, FIN, Pkt};

// The fixture's `dns` backend and its server: second backend, third server declared.
const DNS: PoolSlot = PoolSlot(1);
const DNS10: ServerSlot = ServerSlot(2);

/// Keeps this test's thread (and so its BPF_PROG_TEST_RUN) on CPU 0.
fn pin_to_one_cpu() {
    // SAFETY: a plain syscall on this thread with a set built by libc's own macros.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

/// Where CPU `cpu`'s copy of `key` would be in `LB_FLOW_CACHE`.
fn index(cpu: u32, key: &FlowKey) -> u32 {
    let slot = lb_common::flow_cache::flow_cache_slot(key);
    lb_common::flow_cache::flow_cache_index(cpu, slot)
}

/// Every CPU's live copy of `key`.
fn copies(f: &Fixture, key: &FlowKey) -> Vec<CachedFlow> {
    let cache = &f.bal.dp.maps.flow_cache;
    let cpus = lb::dataplane::maps::possible_cpus();
    assert_eq!(
        cache.len(),
        lb_common::flow_cache::flow_cache_entries(cpus),
        "a region per possible CPU"
    );
    (0..cpus)
        .map(|cpu| cache.get(&index(cpu, key), 0).expect("cache slot"))
        .filter(|c| c.key == *key)
        .collect()
}

/// Removes a flow's entries from the tables the way an LRU eviction does: behind the
/// cache's back (not through `Fixture::edit`, which drops the copies as the daemon would).
fn evict(f: &mut Fixture, keys: &[FlowKey]) {
    for k in keys {
        let _ = f.bal.dp.maps.flows.remove(k);
        let _ = f.bal.dp.maps.halfopen.remove(k);
    }
}

/// Which of the fixture's interfaces a packet arrives on.
enum Side {
    Client,
    Server,
}

/// Feeds `frame` (a packet of the flow at `key`, forwarded each time) until this CPU holds
/// a copy of that flow: a copy is made of a flow busy within a clock tick or two, so the
/// first packet after a pause (the handshake, on a loaded machine) may only make it busy.
/// A few tries at most.
#[track_caller]
fn make_busy(f: &mut Fixture, side: Side, frame: &Pkt, key: &FlowKey) {
    let ifindex = match side {
        Side::Client => f.dpc,
        Side::Server => f.dpb,
    };
    for _ in 0..5 {
        let (action, _) = f.run(ifindex, &frame.build());
        assert_eq!(action, XDP_REDIRECT, "a packet of a confirmed flow");
        if !copies(f, key).is_empty() {
            return;
        }
    }
    panic!("no copy of {key:?} after 5 packets in a row");
}

/// A confirmed TCP flow from the client at `port` to the VIP whose client direction this CPU
/// holds a copy of: its key and the data packet (carrying `payload`) that made it busy.
fn copied_client_flow(f: &mut Fixture, port: u16, payload: &[u8]) -> (FlowKey, Pkt) {
    let (c, vip) = (ep(CLIENT, port), ep(VIP, 80));
    f.handshake(c, vip);
    let fwd = tcp_key(c, vip);
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(payload)
        .macs(MAC_CLIENT, MAC_DPC);
    make_busy(f, Side::Client, &data, &fwd);
    (fwd, data)
}

/// A copy's lifetime as the program was loaded here: this kernel's HZ (and the HZ).
fn kernel_ttl() -> (u32, u32) {
    let hz = lb::dataplane::kernel_hz::kernel_hz().expect("the kernel's HZ");
    (lb_common::flow_cache::flow_cache_ttl(hz), hz)
}

/// Lets every copy made so far outlive its life.
fn outlive_copies() {
    std::thread::sleep(Duration::from_millis(ms_from_ticks(FLOW_CACHE_TTL) + 20));
}

#[test]
fn an_established_flow_is_served_from_its_copy_with_the_same_bytes() {
    pin_to_one_cpu();
    let mut f = Fixture::new();
    let c = ep(CLIENT, 41000);
    let vip = ep(VIP, 80);
    let (lb_side, server) = f.handshake(c, vip);
    let fwd = tcp_key(c, vip);
    let reply = tcp_key(server, lb_side);
    // The handshake's packets are news or half-open: no copy yet.
    assert!(copies(&f, &fwd).is_empty(), "copy of a half-open flow");
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(b"GET /")
        .macs(MAC_CLIENT, MAC_DPC);
    let want = full_nat(&data, WEB10, MAC_WEB10, nth_port(0), 80);
    f.expect(
        "first data packet, from the entry",
        f.dpc,
        &data,
        XDP_REDIRECT,
        &want,
    );
    make_busy(&mut f, Side::Client, &data, &fwd);
    let made = copies(&f, &fwd);
    assert_eq!(made.len(), 1, "one copy, on this CPU");
    assert_eq!(
        (made[0].dst, made[0].dport, made[0].reply),
        (addr_be(*server.ip()), server.port().to_be(), 0)
    );
    let answer = Pkt::tcp(server, lb_side)
        .flags(ACK)
        .payload(b"200 OK")
        .macs(MAC_WEB10, MAC_DPB);
    let back = answer
        .clone()
        .tuple(lb_side_vip(), c)
        .macs(MAC_DPC, MAC_CLIENT);
    f.expect(
        "server's answer, from the entry",
        f.dpb,
        &answer,
        XDP_REDIRECT,
        &back,
    );
    make_busy(&mut f, Side::Server, &answer, &reply);
    assert_eq!(copies(&f, &reply).len(), 1, "the reply direction's copy");

    // The entries go (evicted behind the cache's back): within its life the copy alone
    // serves both directions, byte for byte as the entries did, and counts them.
    evict(&mut f, &[fwd, reply]);
    let before = f.bal.dp.maps.server_counters(HOGE_WEB10).expect("counters");
    f.expect("served from the copy", f.dpc, &data, XDP_REDIRECT, &want);
    f.expect("answer from the copy", f.dpb, &answer, XDP_REDIRECT, &back);
    let after = f.bal.dp.maps.server_counters(HOGE_WEB10).expect("counters");
    assert_eq!(
        (
            after.packets_in - before.packets_in,
            after.packets_out - before.packets_out
        ),
        (1, 1)
    );
    // Past its life the packet takes the whole path, which finds no flow.
    outlive_copies();
    f.expect_untouched("no copy, no entry", &data.build());
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
}

/// The kernel's `jiffies` now (low 32 bits, as copies are stamped), from /proc/timer_list.
fn jiffies() -> u32 {
    let text = std::fs::read_to_string("/proc/timer_list").expect("/proc/timer_list");
    let j: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("jiffies: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a jiffies line");
    j as u32
}

/// Restamps this CPU's (CPU 0's) copy of `key` as made at `stamp` (jiffies).
fn restamp(f: &mut Fixture, key: &FlowKey, stamp: u32) {
    let cache = &mut f.bal.dp.maps.flow_cache;
    let mut c = cache.get(&index(0, key), 0).expect("cache slot");
    assert!(c.key == *key, "CPU 0 holds the copy");
    c.stamp = stamp;
    cache.set(index(0, key), c, 0).expect("restamp");
}

#[test]
fn a_copy_lives_a_hundred_milliseconds_of_this_kernels_jiffies() {
    pin_to_one_cpu();
    let (ttl, hz) = kernel_ttl();
    let mut f = Fixture::new();
    let (fwd, data) = copied_client_flow(&mut f, 41050, b"GET /");
    evict(&mut f, &[fwd]);
    let want = full_nat(&data, WEB10, MAC_WEB10, nth_port(0), 80);
    // Made 20 ms short of its life (5 jiffies at 250 Hz: the slack for the clock moving on
    // while this runs): it serves. The lifetime the program was loaded with is this
    // kernel's, not the 10 jiffies it is built with (which would end it here above 100 Hz).
    let slack = (hz / 50).max(1);
    restamp(&mut f, &fwd, jiffies().wrapping_sub(ttl - slack));
    f.expect("a copy within its life", f.dpc, &data, XDP_REDIRECT, &want);
    // Made a whole life ago: it no longer serves (and the entry is gone).
    restamp(&mut f, &fwd, jiffies().wrapping_sub(ttl));
    f.expect_untouched("a copy past its life", &data.build());
    assert_eq!(f.reason(Reason::PassNoFlow), 1);
}

#[test]
fn a_live_copy_keeps_its_slot_from_another_busy_flow() {
    pin_to_one_cpu();
    let vip = ep(VIP, 80);
    // Two clients' flows whose copies would share a slot.
    let slot_of = |port| lb_common::flow_cache::flow_cache_slot(&tcp_key(ep(CLIENT, port), vip));
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (20000..u16::MAX)
        .find_map(|q| seen.insert(slot_of(q), q).map(|p| (p, q)))
        .map(|(p, q)| (ep(CLIENT, p), ep(CLIENT, q)))
        .expect("two ports sharing a slot");
    let mut f = Fixture::new();
    f.handshake(a, vip);
    f.handshake(b, vip);
    let data = |c| {
        Pkt::tcp(c, vip)
            .flags(ACK)
            .payload(b"x")
            .macs(MAC_CLIENT, MAC_DPC)
    };
    let (ka, kb) = (tcp_key(a, vip), tcp_key(b, vip));
    make_busy(&mut f, Side::Client, &data(a), &ka);
    // B is as busy, and forwarded from its entry each time, but A's live copy keeps the slot
    // (evicting each other, neither would be served from it).
    for _ in 0..5 {
        let (action, _) = f.run(f.dpc, &data(b).build());
        assert_eq!(action, XDP_REDIRECT);
    }
    assert!(copies(&f, &kb).is_empty(), "B took A's slot");
    assert_eq!(copies(&f, &ka).len(), 1, "A's copy");
    // Once A's copy is past its life, B takes the slot.
    let (ttl, _) = kernel_ttl();
    restamp(&mut f, &ka, jiffies().wrapping_sub(ttl));
    make_busy(&mut f, Side::Client, &data(b), &kb);
    assert!(copies(&f, &ka).is_empty());
}

/// The VIP as the client sees it (the reply's new source).
fn lb_side_vip() -> std::net::SocketAddrV4 {
    ep(VIP, 80)
}

#[test]
fn news_for_a_flow_drops_its_copies_before_the_whole_path_sees_it() {
    pin_to_one_cpu();
    let mut f = Fixture::new();
    let c = ep(CLIENT, 41100);
    let vip = ep(VIP, 80);
    let (lb_side, server) = f.handshake(c, vip);
    let (fwd, reply) = (tcp_key(c, vip), tcp_key(server, lb_side));
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(b"x")
        .macs(MAC_CLIENT, MAC_DPC);
    make_busy(&mut f, Side::Client, &data, &fwd);
    let answer = Pkt::tcp(server, lb_side)
        .flags(ACK)
        .payload(b"y")
        .macs(MAC_WEB10, MAC_DPB);
    make_busy(&mut f, Side::Server, &answer, &reply);
    assert_eq!((copies(&f, &fwd).len(), copies(&f, &reply).len()), (1, 1));

    // The client's FIN: its direction's copies go (every CPU's), so its next packets (the
    // ACK of the server's FIN, with the timestamps the lifecycle keeps) meet the entry.
    let fin = Pkt::tcp(c, vip)
        .flags(FIN | ACK)
        .seq(2000)
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &fin.build());
    assert!(
        copies(&f, &fwd).is_empty(),
        "the client's copy after its FIN"
    );
    // A closing flow is not copied again.
    f.run(f.dpc, &data.build());
    assert!(copies(&f, &fwd).is_empty(), "a copy of a closing flow");
    // The server's side goes with its own FIN.
    assert_eq!(copies(&f, &reply).len(), 1);
    let sfin = Pkt::tcp(server, lb_side)
        .flags(FIN | ACK)
        .macs(MAC_WEB10, MAC_DPB);
    f.run(f.dpb, &sfin.build());
    assert!(
        copies(&f, &reply).is_empty(),
        "the server's copy after its FIN"
    );
}

#[test]
fn the_daemon_ending_flows_drops_their_copies() {
    pin_to_one_cpu();
    let mut f = Fixture::new();
    let (fwd, data) = copied_client_flow(&mut f, 41200, b"x");
    // `shutdown sessions` on the flow's server.
    let s = HOGE_WEB10.0 as u16;
    let ended = f
        .bal
        .dp
        .maps
        .forget_flows(|fl| fl.server == s)
        .expect("forget");
    assert_eq!(ended, 1);
    assert!(copies(&f, &fwd).is_empty());
    f.expect_untouched("the flow is over at once", &data.build());
}

#[test]
fn a_new_udp_flow_on_a_reused_port_is_never_answered_the_old_way() {
    pin_to_one_cpu();
    let mut f = Fixture::new();
    let vip = ep(VIP, 53);
    let port = nth_port(0);
    // Client A's UDP flow, confirmed both ways and copied both ways.
    let a = ep(CLIENT, 5000);
    let qa = Pkt::udp(a, vip).payload(b"qa").macs(MAC_CLIENT, MAC_DPC);
    let ans = Pkt::udp(ep(WEB10, 53), ep(LB_B, port))
        .payload(b"an")
        .macs(MAC_WEB10, MAC_DPB);
    // New, replied, active: then served from the confirmed entries, and copied.
    for _ in 0..2 {
        f.run(f.dpc, &qa.build());
        f.run(f.dpb, &ans.build());
    }
    let (fwd_a, reply) = (udp_key(a, vip), udp_key(ep(WEB10, 53), ep(LB_B, port)));
    make_busy(&mut f, Side::Server, &ans, &reply);
    make_busy(&mut f, Side::Client, &qa, &fwd_a);
    // A's entries are evicted (a full table) and the server's next port is the same one:
    // client B's new flow takes the reply tuple A's copy still names.
    evict(&mut f, &[fwd_a, reply]);
    f.rewind(DNS, DNS10);
    let b = ep(CLIENT, 5001);
    let qb = Pkt::udp(b, vip).payload(b"qb").macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "client B's query",
        f.dpc,
        &qb,
        XDP_REDIRECT,
        &full_nat(&qb, WEB10, MAC_WEB10, port, 53),
    );
    assert!(
        copies(&f, &reply).is_empty(),
        "A's copy of the reused tuple"
    );
    // The server's answer on that tuple is B's, and goes to B.
    f.expect(
        "the answer goes to B",
        f.dpb,
        &ans,
        XDP_REDIRECT,
        &ans.clone().tuple(vip, b).macs(MAC_DPC, MAC_CLIENT),
    );
}

#[test]
fn what_takes_no_copy() {
    pin_to_one_cpu();
    // A flow whose timeout a copy could outlive (client 150 ms here) is never copied.
    let short = CONFIG.replace(r#"client = "30s""#, r#"client = "150ms""#);
    let mut f = Fixture::with(&short, Default::default());
    let c = ep(CLIENT, 41300);
    let vip = ep(VIP, 80);
    f.handshake(c, vip);
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(b"x")
        .macs(MAC_CLIENT, MAC_DPC);
    // Packets in a row, busy by any measure.
    for _ in 0..5 {
        let (action, _) = f.run(f.dpc, &data.build());
        assert_eq!(action, XDP_REDIRECT);
    }
    assert!(
        copies(&f, &tcp_key(c, vip)).is_empty(),
        "copy of a 150 ms flow"
    );
    // A flow heard from less than every tick or two is not copied; busy again, it is.
    let mut f = Fixture::new();
    let c = ep(CLIENT, 41301);
    f.handshake(c, vip);
    let key = tcp_key(c, vip);
    f.age(&key, 10);
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(b"x")
        .macs(MAC_CLIENT, MAC_DPC);
    f.run(f.dpc, &data.build());
    assert!(
        copies(&f, &key).is_empty(),
        "copy of a flow quiet for 10 ticks"
    );
    make_busy(&mut f, Side::Client, &data, &key);
    // Traffic that is not lb's is passed by the entry with the whole path's reason.
    let other = Pkt::tcp(c, ep(VIP, 22)).flags(ACK).build();
    f.expect_frame("other port", f.dpc, &other, XDP_PASS, &other);
    assert_eq!(f.reason(Reason::PassNotService), 1);
}

/// Pins left by another build of lb, as an upgrade meets them: its flow cache (stamped on
/// another clock) is replaced without asking, since `LB_FLOWS` makes copies again within
/// 100 ms; its flow table holds live connections and is kept unless the operator says so.
#[test]
fn another_builds_cache_is_replaced_and_its_flow_table_kept() {
    use lb::dataplane::{Dataplane, LoadOptions};
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/lb-test-pins-{}",
        lb_testbed::unique_tag()
    ));
    let opts = |discard_state| LoadOptions {
        pin_dir: Some(dir.clone()),
        discard_state,
        ..LoadOptions::default()
    };
    let pin = |name: &str| dir.join(name);
    let load = |discard| Dataplane::load(&opts(discard)).map(|dp| dp.notes);
    load(false).expect("first start");
    // The cache as yesterday's build pinned it.
    std::fs::rename(pin("LB_FLOW_CACHE_v3"), pin("LB_FLOW_CACHE_v2")).expect("rename");
    let notes = load(false).expect("a start over another build's cache");
    assert!(!pin("LB_FLOW_CACHE_v2").exists() && pin("LB_FLOW_CACHE_v3").exists());
    assert!(
        notes.iter().all(|n| !n.contains("LB_FLOW_CACHE")),
        "{notes:?}"
    );
    // A flow table of another build is refused, and stays where it was.
    std::fs::rename(pin("LB_FLOWS_v3"), pin("LB_FLOWS_v2")).expect("rename");
    let refused = load(false).expect_err("another build's flow table");
    let why = format!("{refused:#}");
    assert!(
        why.contains("LB_FLOWS_v2") && why.contains("--discard-state"),
        "{why}"
    );
    assert!(pin("LB_FLOWS_v2").exists());
    let notes = load(true).expect("with --discard-state");
    assert!(!pin("LB_FLOWS_v2").exists(), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("LB_FLOWS_v2")), "{notes:?}");
    std::fs::remove_dir_all(&dir).expect("removing the pins");
}
