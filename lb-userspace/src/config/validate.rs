//! Semantic checks on the model, whichever front end produced it.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use lb_common::{
    MAX_ACCESS_ENTRIES, MAX_FRONTENDS, MAX_POOLS, MAX_SERVERS, MAX_SERVICES, TABLE_SIZE,
};

use super::{
    diag::{ConfigError, Diagnostic, Severity},
    model::*,
};

/// A check of the configuration alone: it adds the alerts and warnings it finds.
type Rule = fn(&Config, &mut Vec<Diagnostic>);

/// Every check, in the order their messages are printed (alerts first, then warnings).
const RULES: &[Rule] = &[
    a_frontend_exists,
    frontend_names_are_unique,
    backend_names_are_unique,
    frontends_are_wired,
    families_have_servers,
    http_frontends_run_at_l4,
    backends_have_sound_servers,
    direct_return_keeps_ports,
    checks_can_run,
    http_backends_run_at_l4,
    data_plane_holds_it,
    access_rules_apply,
    a_flood_leaves_ports_free,
    nothing_waits_in_a_queue,
    observed_servers_are_checked,
    several_nodes_agree,
    servers_find_their_resolvers,
];

/// Checks that need nothing but the config. Returns warnings, or every alert found.
pub fn config(c: &Config) -> Result<Vec<Diagnostic>, ConfigError> {
    let mut found = Vec::new();
    for rule in RULES {
        rule(c, &mut found);
    }
    let (mut alerts, warnings): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|d| d.severity == Severity::Alert);
    if alerts.is_empty() {
        Ok(warnings)
    } else {
        alerts.extend(warnings);
        Err(ConfigError {
            diagnostics: alerts,
        })
    }
}

/// An alert about what was declared `at`.
fn alert(out: &mut Vec<Diagnostic>, at: &Origin, message: String) {
    out.push(Diagnostic::alert(Some(at), message));
}

fn a_frontend_exists(c: &Config, out: &mut Vec<Diagnostic>) {
    if c.frontends.is_empty() {
        out.push(Diagnostic::alert(
            None,
            "no frontend defined: nothing to balance (add a frontend with a bind and a default_backend)",
        ));
    }
}

fn frontend_names_are_unique(c: &Config, out: &mut Vec<Diagnostic>) {
    let names = c.frontends.iter().map(|f| (f.name.as_str(), &f.origin));
    names_are_unique("frontend", names, out);
}

fn backend_names_are_unique(c: &Config, out: &mut Vec<Diagnostic>) {
    let names = c.backends.iter().map(|b| (b.name.as_str(), &b.origin));
    names_are_unique("backend", names, out);
}

fn names_are_unique<'a>(
    what: &str,
    names: impl Iterator<Item = (&'a str, &'a Origin)>,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen = HashMap::new();
    for (name, origin) in names {
        if let Some(prev) = seen.insert(name, origin) {
            alert(
                out,
                origin,
                format!("{what} '{name}' has the same name as the {what} declared at {prev}"),
            );
        }
    }
}

/// Every frontend listens somewhere no other frontend does, and sends to a backend that
/// exists.
fn frontends_are_wired(c: &Config, out: &mut Vec<Diagnostic>) {
    // Per family served: a dual-stack `:::80` and a `*:80` both take IPv4's port 80.
    let mut binds: HashMap<(Family, Option<IpAddr>, u16, Proto), &str> = HashMap::new();
    for f in &c.frontends {
        if f.binds.is_empty() {
            alert(out, &f.origin, format!("frontend '{}' has no bind", f.name));
        }
        if c.backend(&f.default_backend).is_none() {
            alert(
                out,
                &f.default_backend_at,
                format!(
                    "frontend '{}': unable to find required default_backend: '{}'",
                    f.name, f.default_backend
                ),
            );
        }
        for b in &f.binds {
            let addr = (!b.is_wildcard()).then_some(b.addr);
            let mut taken = None;
            for &fam in b.families() {
                if let Some(other) = binds.insert((fam, addr, b.port, b.proto), &f.name) {
                    taken = Some(other);
                }
            }
            if let Some(other) = taken {
                alert(
                    out,
                    &b.origin,
                    format!(
                        "frontend '{}': bind {b} is already used by frontend '{other}'",
                        f.name
                    ),
                );
            }
        }
    }
}

/// lb does not translate between IPv4 and IPv6 (no NAT46/NAT64): a client of one family is
/// balanced over the backend's servers of that family. A bind whose every family has no
/// server there is refused; a dual-stack bind (`:::80`) to a backend with servers of one
/// family serves that family, with a warning saying the other's clients are not balanced.
/// A server given by host name may turn out either family: its backend is judged once the
/// names are resolved ([`host`]).
fn families_have_servers(c: &Config, out: &mut Vec<Diagnostic>) {
    family_rule(c, out, false);
}

/// [`families_have_servers`] for the backends with (`named`) or without host names.
fn family_rule(c: &Config, out: &mut Vec<Diagnostic>, named: bool) {
    for f in &c.frontends {
        let Some(be) = c.backend(&f.default_backend) else {
            continue;
        };
        if be.servers.is_empty() || be.servers.iter().any(|s| s.fqdn.is_some()) != named {
            continue;
        }
        for b in &f.binds {
            let fams = b.families();
            let missing: Vec<Family> = fams
                .iter()
                .copied()
                .filter(|&fam| !be.has_family(fam))
                .collect();
            let Some(&first) = missing.first() else {
                continue;
            };
            let names = |v: &[Family]| v.iter().map(|f| f.name()).collect::<Vec<_>>().join(" and ");
            if missing.len() == fams.len() {
                alert(
                    out,
                    &b.origin,
                    format!(
                        "frontend '{}': bind {b} serves {} clients, but backend '{}' has no {} server (lb does not translate between IPv4 and IPv6).",
                        f.name,
                        names(fams),
                        be.name,
                        names(&missing)
                    ),
                );
            } else {
                out.push(Diagnostic::warning(
                    Some(&b.origin),
                    format!(
                        "frontend '{}': bind {b} serves IPv4 and IPv6 clients, but backend '{}' has no {} server: {} clients are not balanced (lb does not translate between IPv4 and IPv6; their packets go to this host's own stack).",
                        f.name,
                        be.name,
                        first.name(),
                        first.name()
                    ),
                ));
            }
        }
    }
}

fn http_frontends_run_at_l4(c: &Config, out: &mut Vec<Diagnostic>) {
    for f in &c.frontends {
        // A `listen` section is one proxy: its backend half already gets the warning.
        let listen = c
            .backends
            .iter()
            .any(|b| b.origin == f.origin && b.name == f.name && b.mode == Mode::Http);
        if f.mode == Mode::Http && !listen {
            runs_at_l4(out, "frontend", &f.name, &f.origin);
        }
    }
}

/// Every backend has servers, as many as its table holds, each named once and passing
/// [`SERVER_RULES`].
fn backends_have_sound_servers(c: &Config, out: &mut Vec<Diagnostic>) {
    for b in &c.backends {
        if b.servers.is_empty() && c.frontends.iter().any(|f| f.default_backend == b.name) {
            // HAProxy accepts it too; its connections fail as when every server is DOWN.
            let fate = match b.on_empty {
                OnEmpty::Drop => "dropped",
                OnEmpty::Pass => "passed to this host's own stack",
            };
            out.push(Diagnostic::warning(
                Some(&b.origin),
                format!(
                    "backend '{}' has no server: the connections sent to it are {fate}, as when all of a backend's servers are DOWN.",
                    b.name
                ),
            ));
        }
        let mut names = HashSet::new();
        for s in &b.servers {
            if !names.insert(s.name.as_str()) {
                alert(
                    out,
                    &s.origin,
                    format!("backend '{}': server '{}' is defined twice", b.name, s.name),
                );
            }
            for rule in SERVER_RULES {
                if let Some(problem) = rule(s) {
                    alert(
                        out,
                        &s.origin,
                        format!("server '{}/{}': {problem}", b.name, s.name),
                    );
                }
            }
        }
        if b.servers.len() > TABLE_SIZE as usize {
            alert(
                out,
                &b.origin,
                format!(
                    "backend '{}' has {} servers, at most {TABLE_SIZE} are supported",
                    b.name,
                    b.servers.len()
                ),
            );
        }
    }
}

/// A check of one server's settings: what is wrong with them, if anything.
type ServerRule = fn(&Server) -> Option<String>;

/// Every check of one server, in the order their messages are printed.
const SERVER_RULES: &[ServerRule] = &[
    fall_is_positive,
    rise_is_positive,
    weight_is_in_range,
    inter_is_positive,
];

/// A server's `resolvers NAME` names a section (HAProxy: `resolvers_finalize`); a server
/// given by address has nothing to resolve (HAProxy ignores the keyword there too, lb says so).
fn servers_find_their_resolvers(c: &Config, out: &mut Vec<Diagnostic>) {
    for r in &c.global.resolvers {
        let used = c
            .backends
            .iter()
            .flat_map(|b| &b.servers)
            .any(|s| s.dns.resolvers.as_deref() == Some(r.name.as_str()));
        if used && r.nameservers.is_empty() {
            out.push(Diagnostic::warning(
                Some(&r.origin),
                format!(
                    "resolvers '{}' has no nameserver: the servers that use it keep the address they start with.",
                    r.name
                ),
            ));
        }
    }
    for b in &c.backends {
        for s in &b.servers {
            let Some(name) = &s.dns.resolvers else {
                continue;
            };
            if c.global.resolvers(name).is_none() {
                alert(
                    out,
                    &s.origin,
                    format!(
                        "'server {}/{}' : unable to find required resolvers '{name}'.",
                        b.name, s.name
                    ),
                );
            } else if s.fqdn.is_none() {
                out.push(Diagnostic::warning(
                    Some(&s.origin),
                    format!(
                        "'server {}/{}' : 'resolvers {name}' has no effect: the server is given by address, there is no name to resolve.",
                        b.name, s.name
                    ),
                ));
            }
        }
    }
}

fn fall_is_positive(s: &Server) -> Option<String> {
    (s.fall == 0).then(|| "'fall' must be at least 1".into())
}

fn rise_is_positive(s: &Server) -> Option<String> {
    (s.rise == 0).then(|| "'rise' must be at least 1".into())
}

fn weight_is_in_range(s: &Server) -> Option<String> {
    (s.weight > Server::MAX_WEIGHT).then(|| {
        format!(
            "weight {} is out of range (0-{})",
            s.weight,
            Server::MAX_WEIGHT
        )
    })
}

fn inter_is_positive(s: &Server) -> Option<String> {
    s.inter.is_zero().then(|| "'inter' must be positive".into())
}

/// Every health and agent check can run: an agent has a port, a TLS check has what its
/// `verify` needs (HAProxy refuses the same at startup), and an HTTP check that goes through
/// the HTTP client is one it can send.
fn checks_can_run(c: &Config, out: &mut Vec<Diagnostic>) {
    use crate::health::{CheckSpec, Probe, tls};
    for b in &c.backends {
        for s in &b.servers {
            let mut problem = |m: String| {
                alert(
                    out,
                    &s.origin,
                    format!("server '{}/{}': {m}", b.name, s.name),
                );
            };
            if s.agent.enabled && s.agent.port.or(s.check_port).is_none() {
                problem(format!(
                    "server {} does not have agent port ('agent-port', or the check 'port'). Agent check has been disabled.",
                    s.name
                ));
            }
            if !s.check {
                continue;
            }
            let connect_port = match &b.check {
                CheckKind::Http(h) => h.connect.as_ref().and_then(|c| c.port),
                // A first `tcp-check connect port N` gives every connection its port.
                CheckKind::Rules(TcpCheck::Generic(rules)) => {
                    match rules.iter().find(|r| !matches!(r, TcpRule::Comment(_))) {
                        Some(TcpRule::Connect { port, .. }) => *port,
                        _ => None,
                    }
                }
                CheckKind::Tcp | CheckKind::Rules(_) => None,
            };
            if s.port == 0 && s.check_port.is_none() && connect_port.is_none() {
                // HAProxy's words.
                alert(
                    out,
                    &s.origin,
                    format!(
                        "backend '{}': server '{}' has neither service port nor check port.",
                        b.name, s.name
                    ),
                );
                continue;
            }
            let spec = CheckSpec::new(b, s, c.global.ssl_server_verify);
            if let Some(t) = &spec.tls {
                match (&t.ca_file, t.verify) {
                    (None, Verify::Required) if c.global.ssl_server_verify == Verify::Required => {
                        problem("verify is enabled by default but no CA file specified. If you're running on a LAN where you're certain to trust the server's certificate, please set an explicit 'verify none' statement on the 'server' line, or use 'ssl-server-verify none' in the global section to disable server-side verifications by default.".into())
                    }
                    (None, Verify::Required) => {
                        problem("verify is enabled but no CA file specified.".into())
                    }
                    (Some(f), Verify::Required) => {
                        if let Err(e) = tls::read_ca_file(f) {
                            problem(e);
                        }
                    }
                    (_, Verify::None) => {}
                }
                if let Err(e) = tls::server_name(t, spec.addr.ip()) {
                    problem(e);
                }
            }
            if let Probe::Rules { check, ssl } = &spec.probe
                && let Err(e) = crate::health::tcp_rules::Program::of(check, *ssl, None)
            {
                problem(format!("'option {}': {e}", check.option()));
            }
            if let Probe::Http(h) = &spec.probe
                && !spec.sends_exact_bytes()
            {
                // What the HTTP client sends: the seed's exact bytes go out another way.
                if !matches!(h.version.as_str(), "HTTP/1.0" | "HTTP/1.1") {
                    problem(format!(
                        "HTTP checks over TLS or matching the body are sent as HTTP/1.0 or HTTP/1.1, not '{}'",
                        h.version
                    ));
                }
                if !h.uri.starts_with('/') {
                    problem(format!(
                        "HTTP/1.1 checks, and HTTP checks over TLS or matching the body, need a URI starting with '/', not '{}'",
                        h.uri
                    ));
                }
            }
        }
    }
}

fn http_backends_run_at_l4(c: &Config, out: &mut Vec<Diagnostic>) {
    for b in c.backends.iter().filter(|b| b.mode == Mode::Http) {
        runs_at_l4(out, "backend", &b.name, &b.origin);
    }
}

/// `mode http` is accepted, and forwards at L4 all the same.
fn runs_at_l4(out: &mut Vec<Diagnostic>, what: &str, name: &str, at: &Origin) {
    out.push(Diagnostic::warning(
        Some(at),
        format!(
            "{what} '{name}' is in 'mode http': lb balances at L4, connections are forwarded as TCP"
        ),
    ));
}

/// With direct server return the server answers from the address and port the client
/// connected to: it must listen on the bind's port (lb cannot translate a port it does not
/// see coming back).
fn direct_return_keeps_ports(c: &Config, out: &mut Vec<Diagnostic>) {
    for b in c.backends.iter().filter(|b| b.nat == NatMode::DsrIpip) {
        for f in c.frontends.iter().filter(|f| f.default_backend == b.name) {
            for bind in &f.binds {
                for s in b.servers.iter().filter(|s| s.port != bind.port) {
                    alert(
                        out,
                        &s.origin,
                        format!(
                            "server '{}/{}' listens on port {} but frontend '{}' binds {bind}: with 'nat dsr-ipip' the server answers the client from the VIP's own address and port, so it must listen on port {}",
                            b.name, s.name, s.port, f.name, bind.port
                        ),
                    );
                }
            }
        }
    }
}

/// The data plane's maps have room for every frontend, backend, server and bind.
fn data_plane_holds_it(c: &Config, out: &mut Vec<Diagnostic>) {
    // A backend IPv6 clients reach takes a second pool (and ring) for its IPv6 servers.
    let reached6 = |b: &Backend| {
        c.frontends
            .iter()
            .any(|f| f.default_backend == b.name && f.serves(Family::V6))
    };
    let pools = |b: &Backend| 1 + usize::from(reached6(b));
    let limits = [
        (c.frontends.len(), MAX_FRONTENDS, "frontends"),
        (
            c.backends.iter().map(pools).sum(),
            MAX_POOLS,
            "backend pools (one per backend, and one more for the IPv6 servers of a backend IPv6 clients reach)",
        ),
        (
            c.backends.iter().map(|b| b.servers.len()).sum(),
            MAX_SERVERS,
            "servers",
        ),
        (
            c.frontends.iter().map(|f| f.binds.len()).sum(),
            MAX_SERVICES,
            "binds",
        ),
        (
            c.frontends
                .iter()
                .map(|f| {
                    f.access_entries(Family::V4)
                        .max(f.access_entries(Family::V6))
                })
                .sum(),
            MAX_ACCESS_ENTRIES,
            "access rule prefixes (networks named by 'tcp-request connection' rules, plus one, per frontend and TCP port)",
        ),
        (
            c.backends.iter().filter(|b| b.hashes()).map(pools).sum(),
            lb_common::MAGLEV_RINGS,
            "hashing backends ('balance source' or 'hash-type consistent')",
        ),
    ];
    for (n, max, what) in limits {
        if n > max as usize {
            out.push(Diagnostic::alert(
                None,
                format!("{n} {what} configured, the data plane holds at most {max}"),
            ));
        }
    }
}

/// `tcp-request connection` rules judge TCP connections: say so where a frontend also takes
/// UDP, which they let through.
fn access_rules_apply(c: &Config, out: &mut Vec<Diagnostic>) {
    for f in c.frontends.iter().filter(|f| !f.access.is_empty()) {
        if let Some(b) = f.binds.iter().find(|b| b.proto == Proto::Udp) {
            out.push(Diagnostic::warning(
                Some(&b.origin),
                format!(
                    "frontend '{}': 'tcp-request connection' rules judge TCP connections only; UDP to '{b}' is not filtered",
                    f.name
                ),
            ));
        }
    }
}

/// A SYN flood fills the half-open table, each flow holding a full-NAT source port of its
/// server: a table bigger than half a server's port range lets a flood take most ports, and
/// real clients' SYNs then find none (`drop_snat_exhausted`).
fn a_flood_leaves_ports_free(c: &Config, out: &mut Vec<Diagnostic>) {
    let (lo, hi) = c.global.snat_ports;
    let ports = u32::from(hi.saturating_sub(lo)) + 1;
    let full_nat = c.backends.iter().any(|b| b.nat == NatMode::FullNat);
    if full_nat && c.global.halfopen_entries > ports / 2 {
        out.push(Diagnostic::warning(
            None,
            format!(
                "'halfopen_entries' {} is more than half the {ports} full-NAT source ports \
                 of a server: a SYN flood can hold most of them and turn real clients away \
                 (drop_snat_exhausted); lower it or widen 'snat_ports'",
                c.global.halfopen_entries
            ),
        ));
    }
}

/// lb has no queue: `timeout queue` (kept for `lb convert`) would never fire.
fn nothing_waits_in_a_queue(c: &Config, out: &mut Vec<Diagnostic>) {
    for b in c.backends.iter().filter(|b| b.timeouts.queue.is_some()) {
        out.push(Diagnostic::warning(
            Some(&b.origin),
            format!(
                "backend '{}': 'timeout queue' has no effect in lb: lb has no queue: a new connection that finds every server at its 'maxconn' is dropped (counted as drop_maxconn in 'lb show stats') and the client's SYN retransmission tries again",
                b.name
            ),
        ));
    }
}

/// With `announce_table`, several lb nodes share the VIPs and the router may move a client's
/// connection from one to another (a node stops, comes back, or the router rehashes). Only
/// direct server return with a hash lets the new node carry it on: every node names the same
/// server, and the server's replies never needed the first node.
fn several_nodes_agree(c: &Config, out: &mut Vec<Diagnostic>) {
    if c.global.announce_table.is_none() {
        return;
    }
    for f in &c.frontends {
        for b in f.binds.iter().filter(|b| b.is_wildcard()) {
            out.push(Diagnostic::warning(
                Some(&b.origin),
                format!(
                    "frontend '{}': bind {b} is not announced ('announce_table'): a wildcard has no one address to announce",
                    f.name
                ),
            ));
        }
    }
    for b in &c.backends {
        let why = match (b.nat, b.hashes()) {
            (NatMode::DsrIpip, true) => continue,
            (NatMode::DsrIpip, false) => {
                "round robin cannot tell the new node which server has it; add 'hash-type consistent' (or 'balance source')"
            }
            (NatMode::FullNat, _) => {
                "the new node has no state for it and its server answers the node that chose its source port; use 'nat dsr-ipip' with 'hash-type consistent'"
            }
            (NatMode::Dnat, _) => {
                "the new node has no state for it and its server answers through its own gateway; use 'nat dsr-ipip' with 'hash-type consistent'"
            }
        };
        out.push(Diagnostic::warning(
            Some(&b.origin),
            format!(
                "backend '{}' ('nat {}') behind several lb nodes ('announce_table'): a connection the router moves to another node is reset: {why}",
                b.name,
                b.nat.name()
            ),
        ));
    }
}

/// `observe layer4` acts through the health checks (`on-error` fails a check, speeds them
/// up or marks the server DOWN): a server without them has nothing to act on.
fn observed_servers_are_checked(c: &Config, out: &mut Vec<Diagnostic>) {
    for b in &c.backends {
        for s in b
            .servers
            .iter()
            .filter(|s| s.observe != Observe::None && !s.check)
        {
            out.push(Diagnostic::warning(
                Some(&s.origin),
                format!(
                    "server '{}/{}': 'observe layer4' has no effect without 'check': its 'on-error' acts on the health checks",
                    b.name, s.name
                ),
            ));
        }
    }
}

/// What the host checks are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostUse {
    /// `lb run` (and reloads): this host runs the file.
    Run,
    /// `lb check`: the file may be meant for another machine (a CI step checking the
    /// production file), so what only this host lacks is a warning.
    Check,
}

/// Checks against this host: every concrete VIP must be a local address (someone has to
/// answer ARP for it), and full-NAT source ports should not overlap the local ephemeral range.
pub fn host(
    c: &Config,
    local: &[IpAddr],
    ephemeral: Option<(u16, u16)>,
    usage: HostUse,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Host names are resolved by now.
    family_rule(c, &mut out, true);
    for f in &c.frontends {
        for b in &f.binds {
            let a = b.addr;
            if !b.is_wildcard() && !local.contains(&a) {
                let msg = format!(
                    "frontend '{}': bind {b}: {a} is not an address of any local interface",
                    f.name
                );
                out.push(match usage {
                    HostUse::Run => Diagnostic::alert(Some(&b.origin), msg),
                    HostUse::Check => Diagnostic::warning(
                        Some(&b.origin),
                        format!("{msg} of this machine ('lb run' refuses it here)"),
                    ),
                });
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
    fn several_nodes_want_direct_return_and_a_hash() {
        let multi = format!("[global]\nannounce_table = 100\n{OK}");
        let w = |text: &str| -> Vec<String> {
            check(text)
                .expect("valid")
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            w(&multi),
            [
                "[WARNING] parsing [t.toml:7] : backend 'b' ('nat full-nat') behind several lb nodes ('announce_table'): a connection the router moves to another node is reset: the new node has no state for it and its server answers the node that chose its source port; use 'nat dsr-ipip' with 'hash-type consistent'"
            ]
        );
        let dsr = multi.replace("[backend.b]\n", "[backend.b]\nnat = 'dsr-ipip'\n");
        assert!(w(&dsr)[0].contains("round robin cannot tell the new node"));
        let good = dsr.replace("[backend.b]\n", "[backend.b]\nhash_type = 'consistent'\n");
        assert_eq!(w(&good), Vec::<String>::new());
        let wild = good.replace("10.0.0.1:80", "*:80");
        assert!(
            w(&wild)[0].contains("bind *:80 is not announced"),
            "{:?}",
            w(&wild)
        );
        // An IPv6 VIP is announced as an IPv4 one is: the one warning left is full-NAT's,
        // which resets moved connections the same.
        let v6 = multi
            .replace("10.0.0.1:80", "[2001:db8::1]:80")
            .replace("10.0.1.1:80", "[fd00::10]:80");
        let v6w = w(&v6);
        assert_eq!(v6w.len(), 1, "{v6w:?}");
        assert!(v6w[0].contains("backend 'b' ('nat full-nat') behind several lb nodes"));
        // IPv6 servers return directly as IPv4 ones do (IPv6-in-IPv6), with the same rule.
        let v6_dsr = v6.replace("[backend.b]\n", "[backend.b]\nnat = 'dsr-ipip'\n");
        assert!(w(&v6_dsr)[0].contains("round robin cannot tell the new node"));
        let v6_good = v6_dsr.replace("[backend.b]\n", "[backend.b]\nhash_type = 'consistent'\n");
        assert_eq!(w(&v6_good), Vec::<String>::new());
        // The dual-stack wildcard is not announced.
        assert!(
            w(&v6.replace("[2001:db8::1]:80", ":::80"))
                .iter()
                .any(|m| m.contains("bind :::80 is not announced"))
        );
    }

    #[test]
    fn direct_server_return_keeps_the_port() {
        let dsr = OK.replace("[backend.b]\n", "[backend.b]\nnat = 'dsr-ipip'\n");
        assert_eq!(check(&dsr), Ok(vec![]));
        let e = check(&dsr.replace("10.0.1.1:80", "10.0.1.1:8080")).unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:7] : server 'b/s' listens on port 8080 but frontend 'f' binds 10.0.0.1:80: with 'nat dsr-ipip' the server answers the client from the VIP's own address and port, so it must listen on port 80"
            ]
        );
    }

    #[test]
    fn missing_default_backend() {
        let e =
            check(&OK.replace("default_backend = 'b'", "default_backend = 'nope'")).unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:3] : frontend 'f': unable to find required default_backend: 'nope'"
            ]
        );
    }

    #[test]
    fn backend_without_servers() {
        let w = check(
            "[frontend.f]\nbind=['*:80']\ndefault_backend='b'\n[backend.b]\nbalance='roundrobin'\n",
        )
        .expect("a warning only");
        assert_eq!(
            w.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "[WARNING] parsing [t.toml:4] : backend 'b' has no server: the connections sent to it are dropped, as when all of a backend's servers are DOWN."
            ]
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
    fn host_names_are_judged_by_family_once_resolved() {
        let toml = "[frontend.f]\nbind = ['*:80']\ndefault_backend = 'b'\n[backend.b]\nserver = [{ name = 's', address = 'app.example:80', resolve_prefer = 'ipv6' }]\n";
        let mut c = native::parse("t.toml", toml).expect("parses: the name could be IPv4");
        assert!(config(&c).expect("no alert before resolution").is_empty());
        c.backends[0].servers[0].addr = "fd00::10".parse().expect("ip");
        let d = host(&c, &[], None, HostUse::Run);
        assert_eq!(
            d[0].to_string(),
            "[ALERT] parsing [t.toml:2] : frontend 'f': bind *:80 serves IPv4 clients, but backend 'b' has no IPv4 server (lb does not translate between IPv4 and IPv6)."
        );
    }

    #[test]
    fn vip_must_be_local() {
        let c = native::parse("t.toml", OK).expect("parses");
        let other = ["10.0.0.2".parse().expect("ip")];
        let d = host(&c, &other, None, HostUse::Run);
        assert_eq!(
            d[0].to_string(),
            "[ALERT] parsing [t.toml:2] : frontend 'f': bind 10.0.0.1:80: 10.0.0.1 is not an address of any local interface"
        );
        let d = host(&c, &other, None, HostUse::Check);
        assert_eq!(
            d[0].to_string(),
            "[WARNING] parsing [t.toml:2] : frontend 'f': bind 10.0.0.1:80: 10.0.0.1 is not an address of any local interface of this machine ('lb run' refuses it here)"
        );
        let here = ["10.0.0.1".parse().expect("ip")];
        assert!(host(&c, &here, None, HostUse::Run).is_empty());
    }

    #[test]
    fn snat_overlap_warns() {
        let c = native::parse("t.toml", OK).expect("parses");
        let d = host(
            &c,
            &["10.0.0.1".parse().expect("ip")],
            Some((32768, 60999)),
            HostUse::Run,
        );
        assert!(d.is_empty());
        let d = host(
            &c,
            &["10.0.0.1".parse().expect("ip")],
            Some((1024, 65535)),
            HostUse::Run,
        );
        assert!(
            d[0].to_string()
                .contains("overlap net.ipv4.ip_local_port_range")
        );
    }

    #[test]
    fn a_half_open_table_bigger_than_half_the_ports_warns() {
        assert_eq!(check(OK), Ok(vec![]), "the defaults leave ports free");
        let text = format!("[global]\nhalfopen_entries = 20000\n{OK}");
        let d = check(&text).expect("a warning only");
        assert_eq!(
            d.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "[WARNING] config : 'halfopen_entries' 20000 is more than half the 31744 full-NAT source ports of a server: a SYN flood can hold most of them and turn real clients away (drop_snat_exhausted); lower it or widen 'snat_ports'"
            ]
        );
        let wide = format!("[global]\nhalfopen_entries = 20000\nsnat_ports = '1024-60999'\n{OK}");
        assert_eq!(check(&wide), Ok(vec![]));
        let dnat = text.replace("[backend.b]", "[backend.b]\nnat = 'dnat'");
        assert_eq!(check(&dnat), Ok(vec![]), "DNAT takes no ports");
    }

    #[test]
    fn checks_that_cannot_run() {
        let servers = |extra: &str, s: &str| {
            format!(
                "[frontend.f]\nbind = ['10.0.0.1:80']\ndefault_backend = 'b'\n{extra}\n[backend.b]\nserver = [{s}]\n"
            )
        };
        let e = check(&servers(
            "",
            "{ name = 's', address = '10.0.1.1:80', agent_check = true }",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:6] : server 'b/s': server s does not have agent port ('agent-port', or the check 'port'). Agent check has been disabled."
            ]
        );
        assert!(
            check(&servers(
                "",
                "{ name = 's', address = '10.0.1.1:80', agent_check = true, port = 81 }"
            ))
            .is_ok()
        );
        let e = check(&servers(
            "",
            "{ name = 's', address = '10.0.1.1:80', check = true, check_ssl = true }",
        ))
        .unwrap_err();
        assert!(e[0].ends_with("server 'b/s': verify is enabled by default but no CA file specified. If you're running on a LAN where you're certain to trust the server's certificate, please set an explicit 'verify none' statement on the 'server' line, or use 'ssl-server-verify none' in the global section to disable server-side verifications by default."), "{e:?}");
        let none = "[global]\nssl_server_verify = 'none'\n";
        assert!(
            check(&servers(
                none,
                "{ name = 's', address = '10.0.1.1:80', check = true, check_ssl = true }"
            ))
            .is_ok()
        );
        let e = check(&servers(
            none,
            "{ name = 's', address = '10.0.1.1:80', check = true, check_ssl = true, verify = 'required', ca_file = '/nonexistent/ca.pem', check_sni = 'a b' }",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:8] : server 'b/s': Couldn't open the ca-file '/nonexistent/ca.pem' (No such file or directory).",
                "[ALERT] parsing [t.toml:8] : server 'b/s': 'a b' is not a valid TLS server name",
            ]
        );
        // Without `check`, the TLS settings are not used.
        assert!(
            check(&servers(
                "",
                "{ name = 's', address = '10.0.1.1:80', check_ssl = true }"
            ))
            .is_ok()
        );
        let e = check(&format!(
            "{}http_check = {{ version = 'HTTP/2', uri = 'x', expect_string = 'OK' }}\n",
            servers("", "{ name = 's', address = '10.0.1.1:80', check = true }")
        ))
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].ends_with("are sent as HTTP/1.0 or HTTP/1.1, not 'HTTP/2'"),
            "{e:?}"
        );
        assert!(
            e[1].ends_with("need a URI starting with '/', not 'x'"),
            "{e:?}"
        );
    }
}
