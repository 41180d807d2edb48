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
//! [TRACE] redirect new-flow tcp [fd00:16::2]:41000 > [fd00:16::1]:80 => [fd00:16::1]:1024 > [fd00:16::10]:80 hoge/web10
//! ```
//!
//! Addresses of either family print as `lb show flows` and `show stat` print them.
use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result, anyhow};
use tokio::{io::unix::AsyncFd, sync::watch, task::JoinHandle};

use lb_common::{
    PROTO_UDP, Reason,
    trace::{REWRITE_NONE, TRACE_NONE, rewrite_name},
};

use super::flowlog::{self, Names};
use crate::{
    addr_text::{MapAddr, StatAddrPort},
    dataplane::{Dataplane, TraceFilter},
    logs::Logger,
};

/// The aya-log target of the data plane's trace records.
pub const TARGET: &str = "lb::trace";

/// Reads `vip ADDR[:PORT]` (`None`: every packet): `10.0.0.1`, `10.0.0.1:80`, `fd00::1`,
/// `[fd00::1]:80` (an IPv6 address with a port is bracketed: `fd00::1:80` is an address).
pub fn filter(vip: Option<&str>) -> Result<TraceFilter, String> {
    let Some(v) = vip else {
        return Ok(TraceFilter::default());
    };
    let (addr, port) = match v.parse::<SocketAddr>() {
        Ok(sa) => (sa.ip(), sa.port()),
        Err(_) => match v.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(a) => (a, 0),
            Err(_) => {
                return Err(format!(
                    "'{v}' is not ADDRESS or ADDRESS:PORT ([ADDRESS]:PORT for IPv6)"
                ));
            }
        },
    };
    Ok(TraceFilter {
        vip: Some(addr),
        port,
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

/// A record as the data plane writes it (`lb-ebpf/src/trace.rs`: action, reason, rewrite,
/// protocol, the tuple as it arrived and as it left, the server slot; 13 numbers for IPv4,
/// 25 for IPv6, whose addresses are 4 words each) made into a line: the outgoing tuple only
/// when it differs, the server by name.
pub fn line(record: &str, names: &Names) -> String {
    let n: Vec<u32> = record
        .split(' ')
        .map_while(|w| w.parse::<u32>().ok())
        .collect();
    let Some(r) = Record::of(&n) else {
        return record.to_string();
    };
    let mut words: Vec<String> = vec![action_name(r.action).to_string()];
    if let Some(reason) = Reason::ALL.get(r.reason as usize) {
        words.push(reason.name().to_string());
    }
    if r.rewrite != REWRITE_NONE {
        words.push(rewrite_name(r.rewrite).to_string());
    }
    if r.proto != 0 {
        words.push(
            if u8::try_from(r.proto) == Ok(PROTO_UDP) {
                "udp"
            } else {
                "tcp"
            }
            .into(),
        );
        let tuple = |[a, b]: [SocketAddr; 2]| format!("{} > {}", StatAddrPort(a), StatAddrPort(b));
        let (arrived, left) = (tuple(r.arrived), tuple(r.left));
        words.push(arrived.clone());
        if left != arrived {
            words.push(format!("=> {left}"));
        }
    }
    if let Some((b, s)) = names
        .servers
        .get(r.slot as usize)
        .filter(|(b, _)| r.slot != TRACE_NONE && !b.is_empty())
    {
        words.push(format!("{b}/{s}"));
    }
    words.join(" ")
}

/// A trace record's numbers, read.
struct Record {
    action: u32,
    reason: u32,
    rewrite: u32,
    proto: u32,
    /// Source and destination as the packet arrived ...
    arrived: [SocketAddr; 2],
    /// ... and as it left.
    left: [SocketAddr; 2],
    slot: u32,
}

impl Record {
    /// IPv4's 13 numbers or IPv6's 25, else `None`.
    fn of(n: &[u32]) -> Option<Record> {
        let (&[action, reason, rewrite, proto], rest) = n.split_first_chunk::<4>()?;
        let (&slot, ends) = rest.split_last()?;
        // Each end: the address (1 or 4 words), then the port (network order).
        let ends: Vec<SocketAddr> = match ends.len() {
            8 => ends
                .chunks_exact(2)
                .map(|e| e[0].with_port(e[1] as u16))
                .collect(),
            20 => ends
                .chunks_exact(5)
                .map(|e| [e[0], e[1], e[2], e[3]].with_port(e[4] as u16))
                .collect(),
            _ => return None,
        };
        let [src, dst, osrc, odst] = ends[..] else {
            return None;
        };
        Some(Record {
            action,
            reason,
            rewrite,
            proto,
            arrived: [src, dst],
            left: [osrc, odst],
            slot,
        })
    }
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

    /// A record as the data plane writes it, of either family: each address as the maps
    /// hold it (1 word or 4), then its port in network order.
    fn record(
        action: u32,
        reason: u32,
        rewrite: u32,
        tuples: [(&str, u16); 4],
        slot: u32,
    ) -> String {
        let mut n = vec![action, reason, rewrite, 6];
        for (a, p) in tuples {
            match a.parse().expect("ip") {
                std::net::IpAddr::V4(ip) => n.push(u32::from_ne_bytes(ip.octets())),
                std::net::IpAddr::V6(ip) => {
                    n.extend(lb_common::addr6_from_octets(ip.octets()));
                }
            }
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
        // A record of neither size is shown as it came.
        assert_eq!(line("4 1 3 6 5 80 6 80 1", &n), "4 1 3 6 5 80 6 80 1");
    }

    #[test]
    fn ipv6_records_print_addresses_as_show_stat_does() {
        let n = names();
        let new_flow = record(
            4,
            TRACE_NONE,
            lb_common::trace::REWRITE_NEW,
            [
                ("fd00:16::2", 41000),
                ("fd00:16::1", 80),
                ("fd01::1", 1024),
                ("fd01::10", 80),
            ],
            0,
        );
        assert_eq!(
            line(&new_flow, &n),
            "redirect new-flow tcp [fd00:16::2]:41000 > [fd00:16::1]:80 => [fd01::1]:1024 > [fd01::10]:80 hoge/web10"
        );
        // inet_ntop's text: an IPv4-compatible address dotted, as HAProxy prints it.
        let passed = record(
            2,
            Reason::PassNotService as u32,
            REWRITE_NONE,
            [
                ("::10.0.0.2", 22),
                ("fd00:16::1", 22),
                ("::10.0.0.2", 22),
                ("fd00:16::1", 22),
            ],
            TRACE_NONE,
        );
        assert_eq!(
            line(&passed, &n),
            "pass pass_not_service tcp [::10.0.0.2]:22 > [fd00:16::1]:22"
        );
        // Not a TCP/UDP packet lb parsed (an ICMPv6 error, say): no tuple.
        let icmp = format!(
            "2 {} 0 0{} {TRACE_NONE}",
            Reason::PassNotService as u32,
            " 0".repeat(20)
        );
        assert_eq!(line(&icmp, &n), "pass pass_not_service");
    }

    #[test]
    fn the_vip_filter_reads_an_address_of_either_family_and_maybe_a_port() {
        assert_eq!(filter(None), Ok(TraceFilter::default()));
        let f = |v: &str| filter(Some(v)).map(|f| (f.vip.map(|a| a.to_string()), f.port));
        assert_eq!(f("10.0.0.1:80"), Ok((Some("10.0.0.1".into()), 80)));
        assert_eq!(f("10.0.0.1"), Ok((Some("10.0.0.1".into()), 0)));
        assert_eq!(f("[fd00:16::1]:80"), Ok((Some("fd00:16::1".into()), 80)));
        assert_eq!(f("fd00:16::1"), Ok((Some("fd00:16::1".into()), 0)));
        assert_eq!(f("[fd00:16::1]"), Ok((Some("fd00:16::1".into()), 0)));
        for bad in ["web", "10.0.0.1:http", "[10.0.0.1]:80"] {
            assert!(f(bad).is_err(), "{bad}");
        }
    }
}
