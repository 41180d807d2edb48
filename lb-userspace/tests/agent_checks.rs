//! `agent-check` end to end: lb and HAProxy 2.6 side by side in the seed topology, each with
//! its own agent answering the same replies in the same order (health, admin and weight
//! words, an empty answer, weight 0 while UP). Every line about the server must be the same,
//! in the same order, durations aside: `Agent check` lines, and the state changes the agent
//! asks for (drain, maintenance, DOWN, UP) with their counts.
#[path = "support/side_by_side.rs"]
mod side_by_side;

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lb_testbed::{
    netns::Netns,
    topo::{Routing, Topology},
};
use side_by_side::{Haproxy, LogSink, per_server, start_lb};

const REPLIES: &[&str] = &[
    "up\n",
    "75%\n",
    "drain\n",
    "ready\n",
    "down # disk full\n",
    "up 100%\n",
    "maint\n",
    "ready up\n",
    "fail\n",
    "stopped\n",
    "up\n",
    "bogus\n",
    // Closed without a word.
    "",
    "up\n",
    "down\n",
    "up 0%\n",
    "100%\n",
    "up\n",
];

/// An agent in `ns` on `port`: each connection gets the next reply (the last one once they
/// run out). Counts the connections served.
struct Agent {
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Agent {
    fn start(ns: &Netns, port: u16) -> Agent {
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (served.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        ns.spawn(move || -> anyhow::Result<()> {
            let l = TcpListener::bind(("10.200.10.10", port))?;
            l.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                let n = count.fetch_add(1, Ordering::Relaxed);
                let reply = REPLIES[n.min(REPLIES.len() - 1)];
                let _ = s.write_all(reply.as_bytes());
            }
            Ok(())
        })
        .expect("agent thread");
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("agent listening");
        Agent { served, stop }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(log_port: u16, agent_port: u16) -> String {
    format!(
        "global
    log 127.0.0.1:{log_port} local6

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 5s
    timeout client 50s
    timeout server 50s

frontend main
    bind 10.200.0.1:80
    default_backend hoge

backend hoge
    server web10 10.200.10.10:80 agent-check agent-port {agent_port} agent-inter 300 agent-send \"ping\\n\" weight 4
    server web11 10.200.11.11:80
"
    )
}

#[test]
fn agent_checks_log_as_haproxy_does() {
    lb_testbed::require_root();
    let topo = Topology::seed(Routing::Isolated).expect("topology");
    let web10 = &topo.backend("web10").ns;
    let (lb_agent, haproxy_agent) = (Agent::start(web10, 9001), Agent::start(web10, 9002));
    let lb_log = LogSink::start(&topo.lb, 5514);
    let haproxy_log = LogSink::start(&topo.lb, 5515);
    let _haproxy = Haproxy::start(&topo.lb, "agent", &config(5515, 9002));
    let instance = format!("agent{}", topo.tag);
    let _lb = start_lb(&topo, &instance, &config(5514, 9001), 5514);
    // Every reply served to both, and one more (steady) round for the last lines to land.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (lb_agent.served() <= REPLIES.len() || haproxy_agent.served() <= REPLIES.len())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let servers = ["hoge/web10"];
    let got = per_server(&lb_log.lines(), &servers, |_| true);
    let want = per_server(&haproxy_log.lines(), &servers, |_| true);
    for l in &want["hoge/web10"] {
        println!("haproxy: {l}");
    }
    assert!(
        want["hoge/web10"].len() >= 15,
        "HAProxy's run is incomplete: {want:#?}"
    );
    side_by_side::assert_same("agent", &got, &want);
}
