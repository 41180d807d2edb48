//! A real `lb run` in the seed's topology with two nginx servers, for the end-to-end tests of
//! the flow lifecycle (floods, churn, expiry, servers going down), and what they read from it
//! (`lb show ... --json`).
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::{SocketAddr, SocketAddrV4},
    path::Path,
};

use lb_testbed::{
    config::SeedConfig,
    daemon::Daemon,
    servers::WebServer,
    topo::{Routing, Topology, VIP},
};

pub const LB: &str = env!("CARGO_BIN_EXE_lb");

pub struct Bed {
    pub lb: Daemon,
    pub web: Vec<WebServer>,
    pub topo: Topology,
}

/// `[global]` and `[defaults]` lines the tests add to the base config.
#[derive(Default)]
pub struct Extra<'a> {
    pub global: &'a str,
    pub defaults: &'a str,
    /// Whole sections appended at the end.
    pub sections: &'a str,
    /// Keys added to each server of `hoge` (`check = true, inter = 300`).
    pub server: &'a str,
}

/// VIP:80 round robin over web10 and web11 (backend `hoge`), with `nat`.
pub fn config(instance: &str, nat: &str, x: &Extra) -> String {
    SeedConfig::new(instance)
        .nat(nat)
        .global(x.global)
        .defaults(x.defaults)
        .server_keys(x.server)
        .section(x.sections)
        .to_string()
}

impl Bed {
    /// The topology, nginx on both servers and `lb run` with `config(instance)`, ready.
    pub fn start(routing: Routing, prefix: &str, config: impl FnOnce(&str) -> String) -> Bed {
        let topo = Topology::seed(routing).expect("topology");
        let web = WebServer::nginx_all(&topo).expect("nginx");
        let instance = format!("{prefix}{}", topo.tag);
        let mut lb = Daemon::start(
            Path::new(LB),
            &topo.lb,
            &instance,
            &config(&instance),
            "toml",
        )
        .expect("start lb");
        lb.wait_ready().expect("lb ready");
        Bed { lb, web, topo }
    }

    /// `lb show WHAT --json` (plus `args`), parsed.
    pub fn show(&self, what: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["show", what, "--json", "--instance", &self.lb.instance];
        all.extend_from_slice(args);
        let out = self.topo.lb.exec(LB, &all).expect("lb show");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("lb show {what}: {e}: {out}"))
    }

    /// `lb show stats`' pass/drop reasons that are not zero.
    pub fn reasons(&self) -> BTreeMap<String, u64> {
        let stats = self.show("stats", &[]);
        stats["reasons"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_u64()?)))
                    .filter(|(_, n)| *n > 0)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// New flows over every server (`lb show backends`).
    pub fn new_flows(&self) -> u64 {
        self.show("backends", &[])
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["new_flows"].as_u64()).sum())
            .unwrap_or(0)
    }

    /// Frames the client's veth dropped on transmit: its peer (lb's veth, whose XDP program
    /// takes frames from a ring) had no room.
    pub fn client_tx_dropped(&self) -> u64 {
        let out = self
            .topo
            .client
            .exec(
                "ip",
                &["-s", "-j", "link", "show", "dev", &self.topo.client_if],
            )
            .expect("ip -s link");
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
        v[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
    }

    /// A server's state in `lb show backends` (`UP`, `DOWN`...).
    pub fn state_of(&self, server: &str) -> String {
        self.show("backends", &[])
            .as_array()
            .and_then(|r| r.iter().find(|r| r["server"] == server))
            .and_then(|r| r["state"].as_str())
            .unwrap_or("?")
            .to_string()
    }
}

pub fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

pub fn vip4() -> SocketAddrV4 {
    SocketAddrV4::new(VIP, 80)
}

/// Which server answered: the page names it.
pub fn served_by(body: &str) -> &'static str {
    if body.contains("backend web10") {
        "web10"
    } else if body.contains("backend web11") {
        "web11"
    } else {
        "?"
    }
}

/// `reasons` as `name n, ...` for messages.
pub fn fmt_reasons(r: &BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
