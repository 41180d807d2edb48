//! `lb trace on|off [--vip ADDR[:PORT]]` (runtime API `trace xdp on|off [vip ...]`): the
//! data plane says why it passed, dropped or rewrote each packet, and the daemon prints it.
//!
//! Tracing is a constant of the loaded program (`lb_common::trace`): turning it on loads a
//! copy of the running object with tracing set, on the same pinned maps, and points every
//! interface's XDP link at it (one atomic update each, flows go on); turning it off points
//! them back and drops the copy. The program that runs untraced never pays for it.
//!
//! The copy writes one aya-log record per packet; [`TraceLog`] prints each as a line with
//! the server's name:
//!
//! ```text
//! [TRACE] redirect new-flow tcp 10.200.0.2:41000 > 10.200.0.1:80 => 10.200.10.1:1024 > 10.200.10.10:80 hoge/web10
//! [TRACE] drop drop_maxconn tcp 10.200.0.2:41001 > 10.200.0.1:80
//! ```
//!
//! IPv4 packets only: the trace records hold IPv4 tuples, and the IPv6 path is not traced.
use std::{
    net::{IpAddr, SocketAddr, SocketAddrV4},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow};
use tokio::{io::unix::AsyncFd, sync::watch, task::JoinHandle};

use lb_common::{
    PROTO_UDP, Reason,
    trace::{REWRITE_NONE, TRACE_NONE, rewrite_name},
};

use super::flowlog::{self, Names};
use crate::{
    dataplane::{
        Dataplane, TraceFilter,
        layout::{addr_be, addr_of},
    },
    logs::Logger,
};

/// The aya-log target of the data plane's trace records.
pub const TARGET: &str = "lb::trace";

/// Why an IPv6 VIP cannot be traced.
pub const IPV4_ONLY: &str = "lb trace shows IPv4 packets only (IPv6 packets are not traced)";

/// Reads `vip ADDR[:PORT]` (`None`: every packet).
pub fn filter(vip: Option<&str>) -> Result<TraceFilter, String> {
    let Some(v) = vip else {
        return Ok(TraceFilter::default());
    };
    if matches!(v.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
        || matches!(v.parse::<SocketAddr>(), Ok(SocketAddr::V6(_)))
    {
        return Err(format!("'{v}': {IPV4_ONLY}"));
    }
    let (addr, port) = match v.parse::<SocketAddrV4>() {
        Ok(sa) => (*sa.ip(), sa.port()),
        Err(_) => match v.parse() {
            Ok(a) => (a, 0),
            Err(_) => return Err(format!("'{v}' is not ADDRESS or ADDRESS:PORT (IPv4)")),
        },
    };
    Ok(TraceFilter {
        vip: addr_be(addr),
        port: port.to_be(),
    })
}

/// A trace running: the tracing copy and the tasks reading it.
pub struct Tracing {
    dp: Dataplane,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracing {
    /// Starts printing the records of `dp`, a tracing copy of `main`'s program
    /// (`Dataplane::tracing_copy`), and swaps it in on every interface.
    pub fn start(
        main: &mut Dataplane,
        mut dp: Dataplane,
        names: watch::Receiver<Arc<Names>>,
        flow_logger: watch::Receiver<Arc<Logger>>,
    ) -> Result<Tracing> {
        let logger = dp.trace_logger(TraceLog {
            names: names.clone(),
        })?;
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = print(logger).await {
                eprintln!("[WARNING] lb trace: no more trace lines: {e:#}");
            }
        })];
        // The copy has its own `option tcplog` ring: read it too while it runs.
        if let Some(ring) = dp.events.take() {
            tasks.push(tokio::spawn(async move {
                let _ = flowlog::run(ring, names, flow_logger).await;
            }));
        }
        main.run_program_of(Some(&mut dp))?;
        Ok(Tracing { dp, tasks })
    }

    /// Points the interfaces back at `main`'s own program and drops the copy.
    pub fn stop(self, main: &mut Dataplane) -> Result<()> {
        let back = main.run_program_of(None);
        for t in &self.tasks {
            t.abort();
        }
        drop(self.dp);
        back
    }
}

/// Prints the records as they come, until the task is aborted.
async fn print(logger: aya_log::EbpfLogger<TraceLog>) -> Result<()> {
    // SAFETY: the logger owns its ring buffer's fd for as long as the AsyncFd owns the logger.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("polling the trace records: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await.context("trace records")?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Prints the data plane's trace records on stderr, with the servers' names.
pub struct TraceLog {
    names: watch::Receiver<Arc<Names>>,
}

impl log::Log for TraceLog {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == TARGET
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let names = self.names.borrow().clone();
            eprintln!("[TRACE] {}", line(&record.args().to_string(), &names));
        }
    }

    fn flush(&self) {}
}

/// A record as the data plane writes it (13 numbers, see `lb-ebpf/src/trace.rs`: action,
/// reason, rewrite, protocol, the tuple as it arrived and as it left, the server slot) made
/// into a line: the outgoing tuple only when it differs, the server by name.
pub fn line(record: &str, names: &Names) -> String {
    let n: Vec<u32> = record
        .split(' ')
        .map_while(|w| w.parse::<u32>().ok())
        .collect();
    let [
        action,
        reason,
        rewrite,
        proto,
        src,
        sport,
        dst,
        dport,
        osrc,
        osport,
        odst,
        odport,
        slot,
    ] = n[..]
    else {
        return record.to_string();
    };
    let mut words: Vec<String> = vec![action_name(action).to_string()];
    if let Some(r) = Reason::ALL.get(reason as usize) {
        words.push(r.name().to_string());
    }
    if rewrite != REWRITE_NONE {
        words.push(rewrite_name(rewrite).to_string());
    }
    if proto != 0 {
        let tuple = |a, p| format!("{}:{}", addr_of(a), u16::from_be(p as u16));
        words.push(
            if u8::try_from(proto) == Ok(PROTO_UDP) {
                "udp"
            } else {
                "tcp"
            }
            .into(),
        );
        let arrived = format!("{} > {}", tuple(src, sport), tuple(dst, dport));
        let left = format!("{} > {}", tuple(osrc, osport), tuple(odst, odport));
        words.push(arrived.clone());
        if left != arrived {
            words.push(format!("=> {left}"));
        }
    }
    if let Some((b, s)) = names
        .servers
        .get(slot as usize)
        .filter(|(b, _)| slot != TRACE_NONE && !b.is_empty())
    {
        words.push(format!("{b}/{s}"));
    }
    words.join(" ")
}

/// An XDP action's name.
fn action_name(action: u32) -> &'static str {
    match action {
        0 => "aborted",
        1 => "drop",
        2 => "pass",
        3 => "tx",
        4 => "redirect",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            frontends: Vec::new(),
            servers: vec![
                ("hoge".into(), "web10".into()),
                ("hoge".into(), "web11".into()),
            ],
        }
    }

    /// A record as the data plane writes it.
    fn record(
        action: u32,
        reason: u32,
        rewrite: u32,
        tuples: [(&str, u16); 4],
        slot: u32,
    ) -> String {
        let mut n = vec![action, reason, rewrite, 6];
        for (a, p) in tuples {
            let ip: std::net::Ipv4Addr = a.parse().expect("ip");
            n.push(addr_be(ip));
            n.push(u32::from(p.to_be()));
        }
        n.push(slot);
        n.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn records_become_lines_with_names() {
        let n = names();
        let new_flow = record(
            4,
            TRACE_NONE,
            lb_common::trace::REWRITE_NEW,
            [
                ("10.0.0.2", 41000),
                ("10.0.0.1", 80),
                ("10.1.0.1", 1024),
                ("10.1.0.11", 80),
            ],
            1,
        );
        assert_eq!(
            line(&new_flow, &n),
            "redirect new-flow tcp 10.0.0.2:41000 > 10.0.0.1:80 => 10.1.0.1:1024 > 10.1.0.11:80 hoge/web11"
        );
        let dropped = record(
            1,
            Reason::DropMaxconn as u32,
            REWRITE_NONE,
            [
                ("10.0.0.2", 41001),
                ("10.0.0.1", 80),
                ("10.0.0.2", 41001),
                ("10.0.0.1", 80),
            ],
            TRACE_NONE,
        );
        assert_eq!(
            line(&dropped, &n),
            "drop drop_maxconn tcp 10.0.0.2:41001 > 10.0.0.1:80"
        );
        // Rewritten and passed to the kernel (unknown neighbour): both the reason and the
        // rewrite.
        let passed = record(
            2,
            Reason::PassNoNeigh as u32,
            lb_common::trace::REWRITE_IN,
            [
                ("10.0.0.2", 4),
                ("10.0.0.1", 80),
                ("10.1.0.1", 1024),
                ("10.1.0.12", 80),
            ],
            0,
        );
        assert_eq!(
            line(&passed, &n),
            "pass pass_no_neigh forward tcp 10.0.0.2:4 > 10.0.0.1:80 => 10.1.0.1:1024 > 10.1.0.12:80 hoge/web10"
        );
        assert_eq!(line("something else", &n), "something else");
    }

    #[test]
    fn the_vip_filter_reads_an_address_and_maybe_a_port() {
        assert_eq!(filter(None), Ok(TraceFilter::default()));
        let f = filter(Some("10.0.0.1:80")).expect("filter");
        assert_eq!(
            (f.vip, u16::from_be(f.port)),
            (addr_be([10, 0, 0, 1].into()), 80)
        );
        let f = filter(Some("10.0.0.1")).expect("filter");
        assert_eq!(f.port, 0);
        assert!(filter(Some("web")).is_err());
        for v6 in ["fd00:16::1", "[fd00:16::1]:80"] {
            assert_eq!(filter(Some(v6)), Err(format!("'{v6}': {IPV4_ONLY}")));
        }
    }
}
