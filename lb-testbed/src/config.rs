//! `lb run`'s native (TOML) config for the seed topology, built in one place for every test
//! and benchmark: frontend `main` on the VIP's port 80, backend `hoge` round robin over web10
//! and web11. Tests add what they are about (NAT mode, `[global]` and `[defaults]` lines,
//! server keys, whole sections) and nothing else.
use std::fmt;

use crate::topo::VIP;

/// The seed's two servers, as `lb run` reaches them in the topology.
pub const SEED_SERVERS: [(&str, &str); 2] =
    [("web10", "10.200.10.10:80"), ("web11", "10.200.11.11:80")];

/// The seed's health checks as `[defaults]` lines: logged, `GET /health_check.html`
/// HTTP/1.0 with HAProxy's `User-agent: Proxy-Check`.
pub const SEED_CHECK_DEFAULTS: &str = "log_health_checks = true
http_check = { method = \"GET\", uri = \"/health_check.html\", version = \"HTTP/1.0\", headers = [\"User-agent: Proxy-Check\"] }";

#[derive(Clone, Debug)]
pub struct SeedConfig {
    global: Vec<String>,
    defaults: Vec<String>,
    frontend: String,
    bind: String,
    backend: String,
    nat: Option<String>,
    /// (name, address, extra keys) per server.
    servers: Vec<(String, String, String)>,
    sections: Vec<String>,
}

impl SeedConfig {
    /// The seed's layout for instance `instance` (no `instance` line when empty).
    pub fn new(instance: &str) -> SeedConfig {
        let global = if instance.is_empty() {
            vec![]
        } else {
            vec![format!("instance = \"{instance}\"")]
        };
        SeedConfig {
            global,
            defaults: vec![],
            frontend: "main".into(),
            bind: format!("{VIP}:80"),
            backend: "hoge".into(),
            nat: None,
            servers: SEED_SERVERS
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string(), String::new()))
                .collect(),
            sections: vec![],
        }
    }

    /// The backend's `nat` (lb's default when never called).
    pub fn nat(mut self, nat: &str) -> Self {
        self.nat = Some(nat.into());
        self
    }

    /// The frontend's one bind (`VIP:80` by default).
    pub fn bind(mut self, bind: &str) -> Self {
        self.bind = bind.into();
        self
    }

    /// Other names for the frontend and the backend.
    pub fn names(mut self, frontend: &str, backend: &str) -> Self {
        self.frontend = frontend.into();
        self.backend = backend.into();
        self
    }

    /// Lines added to `[global]` (empty ones are skipped).
    pub fn global(mut self, lines: &str) -> Self {
        if !lines.trim().is_empty() {
            self.global.push(lines.into());
        }
        self
    }

    /// Lines added to `[defaults]` (empty ones are skipped).
    pub fn defaults(mut self, lines: &str) -> Self {
        if !lines.trim().is_empty() {
            self.defaults.push(lines.into());
        }
        self
    }

    /// Keys added to every server (`check = true, inter = 300`).
    pub fn server_keys(mut self, keys: &str) -> Self {
        for s in &mut self.servers {
            add_keys(&mut s.2, keys);
        }
        self
    }

    /// Keys added to the `i`-th server only (0: web10, 1: web11).
    pub fn server_keys_of(mut self, i: usize, keys: &str) -> Self {
        if let Some(s) = self.servers.get_mut(i) {
            add_keys(&mut s.2, keys);
        }
        self
    }

    /// The servers' addresses, when they are not the topology's (web servers on loopback).
    pub fn addresses(mut self, addrs: [&str; 2]) -> Self {
        for (s, a) in self.servers.iter_mut().zip(addrs) {
            s.1 = a.into();
        }
        self
    }

    /// A whole section (or several) appended at the end.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.into());
        self
    }
}

fn add_keys(to: &mut String, keys: &str) {
    if !keys.trim().is_empty() {
        to.push_str(", ");
        to.push_str(keys);
    }
}

impl fmt::Display for SeedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[global]")?;
        for l in &self.global {
            writeln!(f, "{l}")?;
        }
        if !self.defaults.is_empty() {
            writeln!(f, "\n[defaults]")?;
            for l in &self.defaults {
                writeln!(f, "{l}")?;
            }
        }
        writeln!(f, "\n[frontend.{}]", self.frontend)?;
        writeln!(f, "bind = [\"{}\"]", self.bind)?;
        writeln!(f, "default_backend = \"{}\"", self.backend)?;
        writeln!(f, "\n[backend.{}]", self.backend)?;
        if let Some(nat) = &self.nat {
            writeln!(f, "nat = \"{nat}\"")?;
        }
        writeln!(f, "server = [")?;
        for (name, addr, keys) in &self.servers {
            writeln!(f, "  {{ name = \"{name}\", address = \"{addr}\"{keys} }},")?;
        }
        writeln!(f, "]")?;
        for s in &self.sections {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_layout_with_what_a_test_adds() {
        let c = SeedConfig::new("t1")
            .nat("dnat")
            .global("stats_socket = { path = \"/tmp/s\" }")
            .global("")
            .defaults("log_health_checks = true")
            .server_keys("check = true")
            .server_keys_of(1, "weight = 3")
            .section("[backend.more]\nserver = []")
            .to_string();
        assert_eq!(
            c,
            "[global]\ninstance = \"t1\"\nstats_socket = { path = \"/tmp/s\" }\n\n\
             [defaults]\nlog_health_checks = true\n\n\
             [frontend.main]\nbind = [\"10.200.0.1:80\"]\ndefault_backend = \"hoge\"\n\n\
             [backend.hoge]\nnat = \"dnat\"\nserver = [\n\
             \x20 { name = \"web10\", address = \"10.200.10.10:80\", check = true },\n\
             \x20 { name = \"web11\", address = \"10.200.11.11:80\", check = true, weight = 3 },\n\
             ]\n[backend.more]\nserver = []\n"
        );
    }

    #[test]
    fn an_empty_instance_and_no_defaults_leave_no_lines() {
        let c = SeedConfig::new("").to_string();
        assert!(c.starts_with("[global]\n\n[frontend.main]"), "{c}");
        assert!(!c.contains("[defaults]") && !c.contains("nat ="), "{c}");
    }
}
