//! `lb trace` in the data plane (BPF_PROG_TEST_RUN): the tracing copy of the program, loaded
//! on the same pinned maps, reports each packet's decision through aya-log; the program that
//! runs untraced reports nothing; the VIP filter keeps other services' packets out. IPv6
//! packets are traced by the copy's own `lb_xdp6`, which goes into the tail-call table when
//! the copy is swapped in.
#[path = "support/dp6_fixture.rs"]
mod dp6_fixture;
#[path = "support/dp_fixture.rs"]
mod dp_fixture;

use std::sync::{Arc, Mutex};

use dp_fixture::*;
use lb::{
    daemon::{flowlog::Names, tracing},
    dataplane::{LoadOptions, TraceFilter, testrun},
};
use lb_testbed::packet::{ACK, Pkt, Pkt6, SYN};

/// Collects the trace records' text.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl log::Log for Lines {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == tracing::TARGET
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata())
            && let Ok(mut l) = self.0.lock()
        {
            l.push(r.args().to_string());
        }
    }

    fn flush(&self) {}
}

impl Lines {
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// The fixture with its maps pinned (a tracing copy shares them through the pins), in a pin
/// directory of its own, removed at the end.
struct Pinned {
    f: Fixture,
    dir: std::path::PathBuf,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pinned() -> Pinned {
    pinned_with(|opts| Fixture::with(CONFIG, opts))
}

/// [`pinned`] with the IPv6 program and services (`dp6_fixture`).
fn pinned6() -> Pinned {
    pinned_with(dp6_fixture::with_ipv6)
}

fn pinned_with(fixture: impl FnOnce(LoadOptions) -> Fixture) -> Pinned {
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/lb-test-trace-{}",
        lb_testbed::unique_tag()
    ));
    let f = fixture(LoadOptions {
        pin_dir: Some(dir.clone()),
        ..LoadOptions::default()
    });
    Pinned { f, dir }
}

fn names(f: &Fixture) -> Names {
    let mut servers = vec![(String::new(), String::new()); 8];
    for (p, s) in f.bal.layout().servers() {
        servers[s.slot.index()] = (p.name.clone(), s.name.clone());
    }
    Names {
        frontends: Vec::new(),
        servers,
    }
}

#[test]
fn the_tracing_copy_says_why_and_the_running_program_says_nothing() {
    let mut p = pinned();
    let f = &mut p.f;
    let untraced = Lines::default();
    let mut quiet = f.bal.dp.trace_logger(untraced.clone()).expect("logger");
    let mut copy = f
        .bal
        .dp
        .tracing_copy(TraceFilter::default())
        .expect("tracing copy verifies");
    let traced = Lines::default();
    let mut logger = copy.trace_logger(traced.clone()).expect("logger");

    // The untraced program forwards and reports nothing.
    let c = ep(CLIENT, 45000);
    let vip = ep(VIP, 80);
    let syn = Pkt::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    f.expect(
        "SYN, untraced",
        f.dpc,
        &syn,
        testrun::XDP_REDIRECT,
        &full_nat(&syn, WEB10, MAC_WEB10, nth_port(0), 80),
    );
    quiet.flush();
    assert_eq!(untraced.take(), Vec::<String>::new());

    // The copy takes the same decisions on the same maps, and says them (swapped in as
    // `lb trace` does: the whole IPv4 path it tail-calls is its own too).
    f.bal.dp.run_program_of(Some(&mut copy)).expect("swap in");
    let run = |copy: &mut lb::dataplane::Dataplane, ifindex: u32, frame: &[u8]| {
        testrun::run(copy.lb_program().expect("program"), ifindex, frame, 1).expect("run")
    };
    let data = Pkt::tcp(c, vip)
        .flags(ACK)
        .payload(b"x")
        .macs(MAC_CLIENT, MAC_DPC);
    let o = run(&mut copy, f.dpc, &data.build());
    assert_eq!(
        o.frame,
        full_nat(&data, WEB10, MAC_WEB10, nth_port(0), 80).build()
    );
    let c2 = ep(CLIENT, 45001);
    let syn2 = Pkt::tcp(c2, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &syn2.build());
    let other = Pkt::tcp(c, ep(VIP, 22)).flags(SYN).build();
    assert_eq!(run(&mut copy, f.dpc, &other).action, testrun::XDP_PASS);
    logger.flush();
    let n = names(f);
    let lines: Vec<String> = traced.take().iter().map(|r| tracing::line(r, &n)).collect();
    assert_eq!(
        lines,
        [
            "redirect forward tcp 10.0.0.2:45000 > 10.0.0.1:80 => 10.1.0.1:1024 > 10.1.0.10:80 hoge/web10",
            "redirect new-flow tcp 10.0.0.2:45001 > 10.0.0.1:80 => 10.1.0.1:1024 > 10.1.0.11:80 hoge/web11",
            "pass pass_not_service tcp 10.0.0.2:45000 > 10.0.0.1:22",
        ]
    );
}

#[test]
fn a_vip_filter_traces_that_service_only_both_ways() {
    let mut p = pinned();
    let f = &mut p.f;
    // No IPv6 service here: no IPv6 path to trace, and the answer says so.
    let v6 = tracing::filter(Some("fd00::1")).expect("filter");
    let refused = f
        .bal
        .dp
        .tracing_copy(v6)
        .map(drop)
        .map_err(|e| e.to_string());
    assert_eq!(
        refused,
        Err("fd00::1: this instance has no IPv6 service, so no IPv6 packet path to trace".into())
    );
    let filter = tracing::filter(Some("10.0.0.1:53")).expect("filter");
    let mut copy = f.bal.dp.tracing_copy(filter).expect("tracing copy");
    f.bal.dp.run_program_of(Some(&mut copy)).expect("swap in");
    let traced = Lines::default();
    let mut logger = copy.trace_logger(traced.clone()).expect("logger");
    let run = |copy: &mut lb::dataplane::Dataplane, ifindex: u32, frame: &[u8]| {
        testrun::run(copy.lb_program().expect("program"), ifindex, frame, 1).expect("run")
    };
    let c = ep(CLIENT, 5300);
    let q = Pkt::udp(c, ep(VIP, 53))
        .payload(b"q")
        .macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &q.build());
    let answer = Pkt::udp(ep(WEB10, 53), ep(LB_B, nth_port(0)))
        .payload(b"a")
        .macs(MAC_WEB10, MAC_DPB);
    run(&mut copy, f.dpb, &answer.build());
    // Another service of the same VIP: not traced.
    let syn = Pkt::tcp(ep(CLIENT, 45100), ep(VIP, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &syn.build());
    logger.flush();
    let n = names(f);
    let lines: Vec<String> = traced.take().iter().map(|r| tracing::line(r, &n)).collect();
    assert_eq!(
        lines,
        [
            "redirect new-flow udp 10.0.0.2:5300 > 10.0.0.1:53 => 10.1.0.1:1024 > 10.1.0.10:53 dns/dns10",
            "redirect reply udp 10.1.0.10:53 > 10.1.0.1:1024 => 10.0.0.1:53 > 10.0.0.2:5300 dns/dns10",
        ]
    );
}

#[test]
fn ipv6_packets_are_traced_and_an_ipv6_vip_filters_them() {
    use dp6_fixture::{CLIENT6, LB_B6, VIP6, WEB10_6, ep6};
    let mut p = pinned6();
    let f = &mut p.f;
    let untraced = Lines::default();
    let mut quiet = f.bal.dp.trace_logger(untraced.clone()).expect("logger");
    let filter = tracing::filter(Some("[fd00::1]:80")).expect("filter");
    let mut copy = f
        .bal
        .dp
        .tracing_copy(filter)
        .expect("tracing copy verifies");
    let traced = Lines::default();
    let mut logger = copy.trace_logger(traced.clone()).expect("logger");

    // Loaded, not yet swapped in: the running program's IPv6 path is its own, untraced.
    f.rewind(HOGE, HOGE_WEB10);
    let (c, vip) = (ep6(CLIENT6, 45000), ep6(VIP6, 80));
    let (lb_side, server) = (ep6(LB_B6, nth_port(0)), ep6(WEB10_6, 80));
    let syn = Pkt6::tcp(c, vip).flags(SYN).macs(MAC_CLIENT, MAC_DPC);
    let (action, _) = f.run(f.dpc, &syn.build());
    assert_eq!(action, testrun::XDP_REDIRECT, "SYN, untraced");
    quiet.flush();
    logger.flush();
    assert_eq!(untraced.take(), Vec::<String>::new());
    assert_eq!(traced.take(), Vec::<String>::new());

    f.bal.dp.run_program_of(Some(&mut copy)).expect("swap in");
    let run = |copy: &mut lb::dataplane::Dataplane, ifindex: u32, frame: &[u8]| {
        testrun::run(copy.lb_program().expect("program"), ifindex, frame, 1).expect("run")
    };
    let synack = Pkt6::tcp(server, lb_side)
        .flags(SYN | ACK)
        .seq(SERVER_ISN)
        .ack(1001)
        .macs(MAC_WEB10, MAC_DPB);
    let want = synack.clone().tuple(vip, c).macs(MAC_DPC, MAC_CLIENT);
    assert_eq!(run(&mut copy, f.dpb, &synack.build()).frame, want.build());
    let ack = Pkt6::tcp(c, vip)
        .flags(ACK)
        .seq(1001)
        .ack(SERVER_ISN + 1)
        .macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &ack.build());
    // Mid-stream, no flow: passed, and why.
    let stray = Pkt6::tcp(ep6(CLIENT6, 45001), vip)
        .flags(ACK)
        .macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &stray.build());
    // Not the traced VIP:port: another port, and the IPv4 VIP (its family's path is silent).
    let other = Pkt6::tcp(c, ep6(VIP6, 22))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    run(&mut copy, f.dpc, &other.build());
    let v4 = Pkt::tcp(ep(CLIENT, 45000), ep(VIP, 80))
        .flags(SYN)
        .macs(MAC_CLIENT, MAC_DPC);
    assert_eq!(
        run(&mut copy, f.dpc, &v4.build()).action,
        testrun::XDP_REDIRECT
    );
    logger.flush();
    let n = names(f);
    let lines: Vec<String> = traced.take().iter().map(|r| tracing::line(r, &n)).collect();
    assert_eq!(
        lines,
        [
            "redirect reply tcp [fd01::10]:80 > [fd01::1]:1024 => [fd00::1]:80 > [fd00::2]:45000 hoge/web10",
            "redirect forward tcp [fd00::2]:45000 > [fd00::1]:80 => [fd01::1]:1024 > [fd01::10]:80 hoge/web10",
            "pass pass_no_flow tcp [fd00::2]:45001 > [fd00::1]:80",
        ]
    );

    // Swapped back: IPv6 packets go through the running program's own `lb_xdp6` again.
    f.bal.dp.run_program_of(None).expect("swap back");
    let (action, _) = f.run(f.dpc, &ack.clone().seq(1002).build());
    assert_eq!(action, testrun::XDP_REDIRECT);
    logger.flush();
    quiet.flush();
    assert_eq!(traced.take(), Vec::<String>::new(), "the copy is out");
    assert_eq!(untraced.take(), Vec::<String>::new());
}
