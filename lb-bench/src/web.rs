//! The bed of the HTTP benchmarks: the seed's topology with the servers routed through the LB
//! namespace (`Routing::ViaLb`, so that going straight to a server and DNAT both work), nginx
//! on both servers, and a client tuned for many short connections. What sits in the LB
//! namespace between them is a [`Balancer`] started on it, in turn.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::Result;
use lb_testbed::{
    netns::Netns,
    servers::WebServer,
    topo::{Routing, Topology},
    wrk::Wrk,
};

use crate::{
    Args,
    balancer::{Balancer, Via},
};

pub struct WebBed {
    pub topo: Topology,
    _web: Vec<WebServer>,
    lb_bin: PathBuf,
}

impl WebBed {
    pub fn new(args: &Args) -> Result<WebBed> {
        let lb_bin = args.lb()?;
        let topo = Topology::seed(Routing::ViaLb)?;
        let web = WebServer::nginx_all(&topo)?;
        topo.lb.sysctl("net.ipv4.ip_forward", "1")?;
        // Connection per request: TIME_WAIT would otherwise exhaust the client's default port
        // range and collide (SYN retransmits). The LB namespace keeps its default range
        // (32768-60999) for HAProxy's connections: it must stay clear of lb's full-NAT ports
        // (1024-32767), or the servers' TIME_WAIT entries from HAProxy's connections would
        // refuse lb's SYNs in the runs that follow.
        topo.client
            .sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        topo.client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        let bed = WebBed {
            topo,
            _web: web,
            lb_bin,
        };
        // Warm up the servers and the namespaces' neighbour tables (not measured).
        Wrk {
            connections: 50,
            secs: 1,
            close: false,
        }
        .run(&bed.topo.client, bed.direct())?;
        Ok(bed)
    }

    /// The server the client reaches when nothing balances.
    pub fn direct(&self) -> Ipv4Addr {
        self.topo.backends[0].addr
    }

    pub fn client(&self) -> &Netns {
        &self.topo.client
    }

    /// Starts `via` in the LB namespace. lb's instance is named after its NAT mode and keeps
    /// its pinned maps across restarts, as `lb run` does in production; they go with the bed.
    pub fn start(&self, via: Via) -> Result<Balancer> {
        Balancer::start(&self.topo, &self.lb_bin, via, self.direct())
    }

    /// The client's retransmission counters so far.
    pub fn client_retrans(&self) -> Result<Retrans> {
        Retrans::of(&self.topo.client)
    }

    /// The LB namespace's (HAProxy's own connections to the servers).
    pub fn lb_retrans(&self) -> Result<Retrans> {
        Retrans::of(&self.topo.lb)
    }
}

impl Drop for WebBed {
    fn drop(&mut self) {
        for via in crate::balancer::VIAS {
            if let Some(p) = crate::balancer::pin_dir(&self.topo, via) {
                let _ = std::fs::remove_dir_all(Path::new(&p));
            }
        }
    }
}

/// TCP retransmission counters of a namespace (`nstat`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Retrans {
    /// `TcpExtTCPSynRetrans`: SYNs sent again (connections that were not answered).
    pub syn: u64,
    /// `TcpRetransSegs`: every segment sent again.
    pub segments: u64,
}

impl Retrans {
    pub fn of(ns: &Netns) -> Result<Retrans> {
        Ok(Retrans {
            syn: ns.nstat("TcpExtTCPSynRetrans")?,
            segments: ns.nstat("TcpRetransSegs")?,
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(self, before: Retrans) -> Retrans {
        Retrans {
            syn: self.syn.saturating_sub(before.syn),
            segments: self.segments.saturating_sub(before.segments),
        }
    }
}
