//! `option tcplog`: reads the data plane's new-flow events and logs a line for each flow of a
//! frontend that asked for it. Runs beside the serve loop; the packet path only pays when some
//! frontend has tcplog (one branch otherwise).
use std::{net::SocketAddrV4, sync::Arc};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use lb_common::{EVENT_F_REDISPATCHED, FlowEvent};
use tokio::{io::unix::AsyncFd, sync::watch};

use crate::{
    config::{Config, Level},
    dataplane::layout::{Layout, addr_of},
    logs::{
        Logger,
        tcplog::{LogTime, new_flow_line},
    },
};

/// Names as the data plane's events give them: by frontend id and server slot.
#[derive(Debug, Default)]
pub struct Names {
    /// (name, tcplog) per frontend id.
    pub frontends: Vec<(String, bool)>,
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
                .map(|f| (f.name.clone(), f.tcplog))
                .collect(),
            servers,
        })
    }

    /// The line for an event, or `None` when its frontend does not log connections.
    pub fn line(&self, e: &FlowEvent, at: LogTime) -> Option<String> {
        let (frontend, tcplog) = self.frontends.get(e.frontend as usize)?;
        if !tcplog {
            return None;
        }
        let (backend, server) = self.servers.get(e.server as usize)?;
        let client = SocketAddrV4::new(addr_of(e.client), u16::from_be(e.client_port));
        Some(new_flow_line(
            client,
            at,
            frontend,
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
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            // SAFETY: the program writes whole `FlowEvent`s; read unaligned from the ring.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) };
            if let Some(line) = names.line(&e, LogTime::now()) {
                logger.send(Level::Info, &line);
            }
        }
        guard.clear_ready();
    }
}
