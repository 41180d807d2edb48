//! `option tcplog`: reads the data plane's new-flow events and logs a line for each flow of a
//! frontend that asked for it. Runs beside the serve loop; the packet path only pays when some
//! frontend has tcplog (one branch otherwise). `LB_EVENTS` carries the records of both
//! families: an item's size says which one it is.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use lb_common::{EVENT_F_REDISPATCHED, FlowEvent, FlowEvent6};
use tokio::{io::unix::AsyncFd, sync::watch};

use crate::{
    addr_text::ipv6_of,
    config::{Config, Level},
    dataplane::layout::{Layout, addr_of},
    logs::{
        Logger,
        tcplog::{LogTime, new_flow_line},
    },
};

/// A new flow, of either family, as the log line needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewFlow {
    pub client: SocketAddr,
    /// The VIP's port (host order).
    pub vip_port: u16,
    pub frontend: u16,
    /// `ServerSlot` index.
    pub server: u16,
    /// `EVENT_F_*`.
    pub flags: u8,
}

impl NewFlow {
    /// Reads one `LB_EVENTS` item: a [`FlowEvent`] or a [`FlowEvent6`], told apart by the
    /// item's size (the program reserves exactly one record). `None` for any other size.
    pub fn read(item: &[u8]) -> Option<NewFlow> {
        if item.len() == std::mem::size_of::<FlowEvent6>() {
            // SAFETY: the length is a whole `FlowEvent6` (plain integers); read unaligned
            // from the ring.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent6>()) };
            Some(NewFlow {
                client: SocketAddr::new(IpAddr::V6(ipv6_of(e.client)), u16::from_be(e.client_port)),
                vip_port: u16::from_be(e.vip_port),
                frontend: e.frontend,
                server: e.server,
                flags: e.flags,
            })
        } else if item.len() == std::mem::size_of::<FlowEvent>() {
            // SAFETY: as above, a whole `FlowEvent`.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
            Some(NewFlow {
                client: SocketAddr::new(IpAddr::V4(addr_of(e.client)), u16::from_be(e.client_port)),
                vip_port: u16::from_be(e.vip_port),
                frontend: e.frontend,
                server: e.server,
                flags: e.flags,
            })
        } else {
            None
        }
    }
}

/// What a frontend's lines need.
#[derive(Debug, Default)]
pub struct FrontendLog {
    pub name: String,
    pub tcplog: bool,
    /// Ports of its dual-stack `:::PORT` binds with no IPv4 bind beside: HAProxy's socket
    /// there sees an IPv4 client as IPv4-mapped and logs `::ffff:a.b.c.d`, so lb does too.
    pub mapped_ports: Vec<u16>,
}

/// Names as the data plane's events give them: by frontend id and server slot.
#[derive(Debug, Default)]
pub struct Names {
    /// By frontend id.
    pub frontends: Vec<FrontendLog>,
    /// (backend, server) by `ServerSlot`.
    pub servers: Vec<(String, String)>,
}

impl Names {
    pub fn of(cfg: &Config, layout: &Layout) -> Arc<Names> {
        let mut servers = Vec::new();
        for (p, s) in layout.servers() {
            let slot = s.slot.index();
            if servers.len() <= slot {
                servers.resize(slot + 1, (String::new(), String::new()));
            }
            servers[slot] = (p.name.clone(), s.name.clone());
        }
        Arc::new(Names {
            frontends: cfg
                .frontends
                .iter()
                .map(|f| FrontendLog {
                    name: f.name.clone(),
                    tcplog: f.tcplog,
                    mapped_ports: f
                        .binds
                        .iter()
                        .filter(|b| b.addr.is_ipv6() && b.families().len() == 2)
                        .map(|b| b.port)
                        .filter(|&p| !f.binds.iter().any(|b| b.addr.is_ipv4() && b.port == p))
                        .collect(),
                })
                .collect(),
            servers,
        })
    }

    /// The line for an event, or `None` when its frontend does not log connections.
    pub fn line(&self, e: &NewFlow, at: LogTime) -> Option<String> {
        let f = self.frontends.get(e.frontend as usize)?;
        if !f.tcplog {
            return None;
        }
        let (backend, server) = self.servers.get(e.server as usize)?;
        let client = match e.client {
            SocketAddr::V4(c) if f.mapped_ports.contains(&e.vip_port) => {
                SocketAddr::new(IpAddr::V6(c.ip().to_ipv6_mapped()), c.port())
            }
            c => c,
        };
        Some(new_flow_line(
            client,
            at,
            &f.name,
            backend,
            server,
            e.flags & EVENT_F_REDISPATCHED != 0,
        ))
    }
}

/// Logs new flows until the ring buffer fails (the daemon exits).
pub async fn run(
    events: RingBuf<MapData>,
    names: watch::Receiver<Arc<Names>>,
    logger: watch::Receiver<Arc<Logger>>,
) -> Result<()> {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling LB_EVENTS: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await.context("LB_EVENTS")?;
        let ring = guard.get_inner_mut();
        let names = names.borrow().clone();
        let logger = logger.borrow().clone();
        while let Some(item) = ring.next() {
            let Some(e) = NewFlow::read(&item) else {
                continue;
            };
            if let Some(line) = names.line(&e, LogTime::now()) {
                logger.send(Level::Info, &line);
            }
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::addr6_from_octets;
    use std::net::Ipv6Addr;

    /// The bytes the program puts in the ring for `e`.
    fn bytes_of<T: Copy>(e: &T) -> Vec<u8> {
        // SAFETY: `T` is a `repr(C)` record of integers; its bytes are what the ring holds.
        unsafe {
            std::slice::from_raw_parts((e as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn names() -> Names {
        Names {
            frontends: vec![
                FrontendLog {
                    name: "main".into(),
                    tcplog: true,
                    mapped_ports: vec![8080],
                },
                FrontendLog {
                    name: "quiet".into(),
                    ..FrontendLog::default()
                },
            ],
            servers: vec![
                ("hoge".into(), "web10".into()),
                ("hoge".into(), "web11".into()),
            ],
        }
    }

    fn at() -> LogTime {
        LogTime {
            year: 2026,
            month: 10,
            day: 29,
            hour: 15,
            minute: 21,
            second: 36,
            millis: 719,
        }
    }

    #[test]
    fn an_ipv6_record_reads_back_as_the_line_haproxy_prints() {
        let client: Ipv6Addr = "fd00:16::2".parse().expect("v6");
        let e = FlowEvent6 {
            client: addr6_from_octets(client.octets()),
            vip: addr6_from_octets("fd00:16::1".parse::<Ipv6Addr>().expect("v6").octets()),
            client_port: 33906u16.to_be(),
            vip_port: 80u16.to_be(),
            server: 1,
            frontend: 0,
            proto: 6,
            flags: 0,
            _pad: 0,
        };
        let flow = NewFlow::read(&bytes_of(&e)).expect("a FlowEvent6");
        assert_eq!(flow.client, "[fd00:16::2]:33906".parse().expect("sa"));
        assert_eq!((flow.frontend, flow.server, flow.flags), (0, 1, 0));
        // The head of the capture's `fd00:16::2:33906 [29/Nov/2026:15:21:36.719] main
        // hoge/web11 1/0/4 190 -- 1/1/0/0/0 0/0`.
        assert_eq!(
            names().line(&flow, at()).as_deref(),
            Some("fd00:16::2:33906 [29/Nov/2026:15:21:36.719] main hoge/web11")
        );
    }

    #[test]
    fn an_ipv4_record_still_reads_as_before() {
        let e = FlowEvent {
            client: u32::from_ne_bytes([10, 200, 0, 2]),
            vip: u32::from_ne_bytes([10, 200, 0, 1]),
            client_port: 49342u16.to_be(),
            vip_port: 80u16.to_be(),
            server: 0,
            frontend: 0,
            proto: 6,
            flags: EVENT_F_REDISPATCHED,
            _pad: 0,
        };
        let flow = NewFlow::read(&bytes_of(&e)).expect("a FlowEvent");
        assert_eq!(flow.client, "10.200.0.2:49342".parse().expect("sa"));
        assert_eq!(
            names().line(&flow, at()).as_deref(),
            Some("10.200.0.2:49342 [29/Nov/2026:15:21:36.719] main hoge/web10 (redispatched)")
        );
        // On a dual-stack `:::8080`, as HAProxy's capture: `::ffff:127.0.0.1:32982 [...`.
        let mapped = NewFlow {
            client: "127.0.0.1:32982".parse().expect("sa"),
            vip_port: 8080,
            ..flow
        };
        assert_eq!(
            names().line(&mapped, at()).as_deref(),
            Some(
                "::ffff:127.0.0.1:32982 [29/Nov/2026:15:21:36.719] main hoge/web10 (redispatched)"
            )
        );
        let quiet = NewFlow {
            frontend: 1,
            ..flow
        };
        assert_eq!(
            names().line(&quiet, at()),
            None,
            "its frontend has no tcplog"
        );
    }

    #[test]
    fn items_of_other_sizes_are_skipped() {
        let e6 = bytes_of(&FlowEvent6::default());
        let e4 = bytes_of(&FlowEvent::default());
        assert_ne!(e6.len(), e4.len(), "the sizes must tell the records apart");
        for n in [0, 1, e4.len() - 1, e4.len() + 1, e6.len() - 1, e6.len() + 1] {
            let item = vec![0u8; n];
            assert_eq!(NewFlow::read(&item), None, "{n} bytes");
        }
    }
}
