//! Semantic checks on the model, whichever front end produced it.
use std::collections::{HashMap, HashSet};

use lb_common::{MAX_FRONTENDS, MAX_POOLS, MAX_SERVERS, MAX_SERVICES, TABLE_SIZE};

use super::{
    diag::{ConfigError, Diagnostic},
    model::*,
};

/// Checks that need nothing but the config. Returns warnings, or every alert found.
pub fn config(c: &Config) -> Result<Vec<Diagnostic>, ConfigError> {
    let mut alerts = Vec::new();
    let mut warnings = Vec::new();
    if c.frontends.is_empty() {
        alerts.push(Diagnostic::alert(
            None,
            "no frontend defined: nothing to balance (add a frontend with a bind and a default_backend)",
        ));
    }
    let mut alert = |o: &Origin, m: String| alerts.push(Diagnostic::alert(Some(o), m));

    let mut seen = HashMap::new();
    for f in &c.frontends {
        if let Some(prev) = seen.insert(f.name.as_str(), &f.origin) {
            alert(
                &f.origin,
                format!(
                    "frontend '{}' has the same name as the frontend declared at {prev}",
                    f.name
                ),
            );
        }
    }
    let mut seen = HashMap::new();
    for b in &c.backends {
        if let Some(prev) = seen.insert(b.name.as_str(), &b.origin) {
            alert(
                &b.origin,
                format!(
                    "backend '{}' has the same name as the backend declared at {prev}",
                    b.name
                ),
            );
        }
    }
    let mut binds: HashMap<(Option<std::net::Ipv4Addr>, u16, Proto), &str> = HashMap::new();
    for f in &c.frontends {
        if f.binds.is_empty() {
            alert(&f.origin, format!("frontend '{}' has no bind", f.name));
        }
        if c.backend(&f.default_backend).is_none() {
            alert(
                &f.origin,
                format!(
                    "frontend '{}': unable to find required default_backend: '{}'",
                    f.name, f.default_backend
                ),
            );
        }
        for b in &f.binds {
            if let Some(other) = binds.insert((b.addr, b.port, b.proto), &f.name) {
                alert(
                    &b.origin,
                    format!(
                        "frontend '{}': bind {b} is already used by frontend '{other}'",
                        f.name
                    ),
                );
            }
        }
    }
    for f in &c.frontends {
        // A `listen` section is one proxy: its backend half already gets the warning below.
        let listen = c
            .backends
            .iter()
            .any(|b| b.origin == f.origin && b.name == f.name && b.mode == Mode::Http);
        if f.mode == Mode::Http && !listen {
            warnings.push(Diagnostic::warning(
                Some(&f.origin),
                format!(
                    "frontend '{}' is in 'mode http': lb balances at L4, connections are forwarded as TCP",
                    f.name
                ),
            ));
        }
    }
    let mut total_servers = 0usize;
    for b in &c.backends {
        if b.servers.is_empty() {
            alert(&b.origin, format!("backend '{}' has no server", b.name));
        }
        let mut names = HashSet::new();
        for s in &b.servers {
            total_servers += 1;
            if !names.insert(s.name.as_str()) {
                alert(
                    &s.origin,
                    format!("backend '{}': server '{}' is defined twice", b.name, s.name),
                );
            }
            if s.fall == 0 {
                alert(
                    &s.origin,
                    format!("server '{}/{}': 'fall' must be at least 1", b.name, s.name),
                );
            }
            if s.rise == 0 {
                alert(
                    &s.origin,
                    format!("server '{}/{}': 'rise' must be at least 1", b.name, s.name),
                );
            }
            if s.weight > Server::MAX_WEIGHT {
                alert(
                    &s.origin,
                    format!(
                        "server '{}/{}': weight {} is out of range (0-{})",
                        b.name,
                        s.name,
                        s.weight,
                        Server::MAX_WEIGHT
                    ),
                );
            }
            if s.inter.is_zero() {
                alert(
                    &s.origin,
                    format!("server '{}/{}': 'inter' must be positive", b.name, s.name),
                );
            }
        }
        if b.servers.len() > TABLE_SIZE as usize {
            alert(
                &b.origin,
                format!(
                    "backend '{}' has {} servers, at most {TABLE_SIZE} are supported",
                    b.name,
                    b.servers.len()
                ),
            );
        }
        if b.mode == Mode::Http {
            warnings.push(Diagnostic::warning(
                Some(&b.origin),
                format!(
                    "backend '{}' is in 'mode http': lb balances at L4, connections are forwarded as TCP",
                    b.name
                ),
            ));
        }
    }
    let limits = [
        (c.frontends.len(), MAX_FRONTENDS, "frontends"),
        (c.backends.len(), MAX_POOLS, "backends"),
        (total_servers, MAX_SERVERS, "servers"),
        (
            c.frontends.iter().map(|f| f.binds.len()).sum(),
            MAX_SERVICES,
            "binds",
        ),
    ];
    for (n, max, what) in limits {
        if n > max as usize {
            alerts.push(Diagnostic::alert(
                None,
                format!("{n} {what} configured, the data plane holds at most {max}"),
            ));
        }
    }
    if alerts.is_empty() {
        Ok(warnings)
    } else {
        alerts.extend(warnings);
        Err(ConfigError {
            diagnostics: alerts,
        })
    }
}

/// Checks against this host: every concrete VIP must be a local address (someone has to
/// answer ARP for it), and full-NAT source ports should not overlap the local ephemeral range.
pub fn host(
    c: &Config,
    local: &[std::net::Ipv4Addr],
    ephemeral: Option<(u16, u16)>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for f in &c.frontends {
        for b in &f.binds {
            if let Some(a) = b.addr
                && !local.contains(&a)
            {
                out.push(Diagnostic::alert(
                    Some(&b.origin),
                    format!(
                        "frontend '{}': bind {b}: {a} is not an address of any local interface",
                        f.name
                    ),
                ));
            }
        }
    }
    let full_nat = c.backends.iter().any(|b| b.nat == NatMode::FullNat);
    if let (true, Some((lo, hi))) = (full_nat, ephemeral) {
        let (a, b) = c.global.snat_ports;
        if a <= hi && lo <= b {
            out.push(Diagnostic::warning(
                None,
                format!(
                    "snat_ports {a}-{b} overlap net.ipv4.ip_local_port_range {lo}-{hi}: translated flows may collide with this host's own connections (health checks)"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native;

    fn check(text: &str) -> Result<Vec<Diagnostic>, Vec<String>> {
        let c = native::parse("t.toml", text).expect("parses");
        config(&c).map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect())
    }

    const OK: &str = "[frontend.f]\nbind = ['10.0.0.1:80']\ndefault_backend = 'b'\n\n[backend.b]\nserver = [{ name = 's', address = '10.0.1.1:80' }]\n";

    #[test]
    fn minimal_is_valid() {
        assert_eq!(check(OK), Ok(vec![]));
    }

    #[test]
    fn missing_default_backend() {
        let e =
            check(&OK.replace("default_backend = 'b'", "default_backend = 'nope'")).unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:1] : frontend 'f': unable to find required default_backend: 'nope'"
            ]
        );
    }

    #[test]
    fn backend_without_servers() {
        let e = check(
            "[frontend.f]\nbind=['*:80']\ndefault_backend='b'\n[backend.b]\nbalance='roundrobin'\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            ["[ALERT] parsing [t.toml:4] : backend 'b' has no server"]
        );
    }

    #[test]
    fn duplicate_servers_and_zero_fall_rise() {
        let e = check(&OK.replace(
            "server = [{ name = 's', address = '10.0.1.1:80' }]",
            "server = [{ name = 's', address = '10.0.1.1:80' },\n{ name = 's', address = '10.0.1.2:80', fall = 0, rise = 0, weight = 300 }]",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:7] : backend 'b': server 's' is defined twice",
                "[ALERT] parsing [t.toml:7] : server 'b/s': 'fall' must be at least 1",
                "[ALERT] parsing [t.toml:7] : server 'b/s': 'rise' must be at least 1",
                "[ALERT] parsing [t.toml:7] : server 'b/s': weight 300 is out of range (0-256)",
            ]
        );
    }

    #[test]
    fn duplicate_bind() {
        let text = format!("{OK}\n[frontend.g]\nbind = ['10.0.0.1:80']\ndefault_backend = 'b'\n");
        let e = check(&text).unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:9] : frontend 'g': bind 10.0.0.1:80 is already used by frontend 'f'"
            ]
        );
    }

    #[test]
    fn no_frontend() {
        let e =
            check("[backend.b]\nserver = [{ name = 's', address = '10.0.1.1:80' }]\n").unwrap_err();
        assert!(
            e[0].starts_with("[ALERT] config : no frontend defined"),
            "{e:?}"
        );
    }

    #[test]
    fn vip_must_be_local() {
        let c = native::parse("t.toml", OK).expect("parses");
        let d = host(&c, &["10.0.0.2".parse().expect("ip")], None);
        assert_eq!(
            d[0].to_string(),
            "[ALERT] parsing [t.toml:2] : frontend 'f': bind 10.0.0.1:80: 10.0.0.1 is not an address of any local interface"
        );
        assert!(host(&c, &["10.0.0.1".parse().expect("ip")], None).is_empty());
    }

    #[test]
    fn snat_overlap_warns() {
        let c = native::parse("t.toml", OK).expect("parses");
        let d = host(&c, &["10.0.0.1".parse().expect("ip")], Some((32768, 60999)));
        assert!(d.is_empty());
        let d = host(&c, &["10.0.0.1".parse().expect("ip")], Some((1024, 65535)));
        assert!(
            d[0].to_string()
                .contains("overlap net.ipv4.ip_local_port_range")
        );
    }
}
