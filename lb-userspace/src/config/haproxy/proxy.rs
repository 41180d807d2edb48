//! Readers of the smaller proxy keywords (see the table in `keywords.rs`); `bind`,
//! `server`, `option`, `timeout` and the checks have files of their own.
use super::{
    diags::show,
    keywords::{L7_GENERIC, ProxyCtx},
    state::{Kind, Kwm, NamedAcl},
    suggest::did_you_mean,
    values::{bad_name, int_arg, ip_arg},
};
use crate::config::{
    access::{self, Test},
    model::*,
    units,
};

pub(super) fn mode(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    match c.arg(1) {
        Some("tcp") => c.s.mode = Mode::Tcp,
        Some("http") => c.s.mode = Mode::Http,
        Some("health") => {
            c.d.alert("'mode health' is not supported by lb (it answers no requests itself).")
        }
        Some(m) => c.d.alert(format!("unknown proxy mode '{}'.", show(m))),
        None => c.d.alert("'mode' expects 'tcp' or 'http' as an argument."),
    }
}

pub(super) fn default_backend(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    match c.arg(1).filter(|a| !a.is_empty()) {
        Some(b) => {
            if bad_name(c.d, "backend", b) {
                return;
            }
            c.s.default_backend = Some((b.to_string(), c.d.here()));
            c.s.default_backend_own = true;
        }
        None => c.d.alert("'default_backend' expects a backend name."),
    }
}

/// `use_backend NAME [if|unless COND]`. Without a condition it takes every connection (before
/// `default_backend`, as in HAProxy); with one it is content switching, which lb lacks.
pub(super) fn use_backend(c: &mut ProxyCtx) {
    let Some(name) = c.arg(1).filter(|a| !a.is_empty()) else {
        c.d.alert("'use_backend' expects a backend name.");
        return;
    };
    match c.arg(2) {
        None => {}
        Some(cond @ ("if" | "unless")) => {
            c.d.alert(format!(
                "'use_backend {} {cond} ...' is not supported: choosing a backend by a condition is content switching (ACLs), which lb does not have; send the frontend's connections to one backend with 'default_backend' (or 'use_backend' without a condition).",
                show(name)
            ));
            return;
        }
        Some(other) => {
            c.d.alert(format!(
                "unexpected keyword '{}' after switching rule, only 'if' and 'unless' are allowed.",
                show(other)
            ));
            return;
        }
    }
    if name.contains("%[") {
        c.d.alert(format!(
            "'use_backend {}' is not supported: a backend named by a sample expression is content switching, which lb does not have.",
            show(name)
        ));
        return;
    }
    if bad_name(c.d, "backend", name) {
        return;
    }
    if let Some((first, at)) = &c.s.use_backend {
        c.d.warn(format!(
            "'use_backend {}' is never used: 'use_backend {first}' (line {}) takes every connection before it.",
            show(name),
            at.line
        ));
        return;
    }
    c.s.use_backend = Some((name.to_string(), c.d.here()));
}

/// Algorithms HAProxy knows, for suggestions.
const BALANCE_ALGORITHMS: &[&str] = &[
    "roundrobin",
    "static-rr",
    "leastconn",
    "first",
    "source",
    "uri",
    "url_param",
    "hdr",
    "random",
    "rdp-cookie",
    "hash",
];

/// The algorithms lb balances with, for messages.
const LB_ALGORITHMS: &str = "roundrobin, static-rr, leastconn, first, random and source";

pub(super) fn balance(c: &mut ProxyCtx) {
    let Some(a) = c.arg(1) else {
        c.d.alert("'balance' expects an algorithm ('roundrobin').");
        return;
    };
    let base = a.split('(').next().unwrap_or(a);
    match Balance::parse(a) {
        Ok(b) => {
            c.d.too_many(c.args, 0, 1);
            c.s.balance = b;
        }
        Err(e) if base == "random" => c.d.alert(format!("balance {e}")),
        Err(_) if matches!(base, "uri" | "url_param" | "hdr" | "rdp-cookie") => {
            c.d.alert(format!(
                "balance '{}' is not supported by lb: it hashes the request's content, which lb (L4) never reads (lb balances {LB_ALGORITHMS})",
                show(a)
            ))
        }
        Err(_) if BALANCE_ALGORITHMS.contains(&base) => c.d.alert(format!(
            "balance '{}' is not supported yet (lb balances {LB_ALGORITHMS})",
            show(a)
        )),
        Err(_) => c.d.alert(format!(
            "unknown balance algorithm '{}'{}",
            show(a),
            did_you_mean(a, BALANCE_ALGORITHMS, "")
        )),
    }
}

/// `hash-type <method> [<function>] [<modifier>]`: the method counts; lb has one hash
/// function, the same on every node.
pub(super) fn hash_type(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 3) {
        return;
    }
    match c.arg(1) {
        Some("consistent") => c.s.hash_type = HashType::Consistent,
        Some("map-based") => {
            c.s.hash_type = HashType::MapBased;
            c.d.warn(
                "'hash-type map-based' has no effect in lb: 'balance source' always hashes consistently (a server that goes or comes moves only its own clients), and 'roundrobin' stays round robin.",
            );
        }
        Some(m) => {
            c.d.alert(format!(
                "'hash-type' expects 'map-based' or 'consistent' as method, got '{}'.",
                show(m)
            ));
            return;
        }
        None => {
            c.d.alert("'hash-type' expects 'map-based' or 'consistent' as method.");
            return;
        }
    }
    for extra in [c.arg(2), c.arg(3)].into_iter().flatten() {
        match extra {
            "sdbm" | "djb2" | "wt6" | "crc32" | "none" | "avalanche" => c.d.warn(format!(
                "'hash-type ... {}' has no effect in lb: lb hashes with its own function, the same on every lb node.",
                show(extra)
            )),
            other => {
                c.d.alert(format!(
                    "'hash-type': unknown hash function or modifier '{}' (sdbm, djb2, wt6, crc32, none, avalanche).",
                    show(other)
                ));
            }
        }
    }
}

/// `nat full-nat|dnat|dsr-ipip`: lb's own keyword (HAProxy does not know it), for what
/// HAProxy cannot express, direct server return. `source 0.0.0.0 usesrc clientip` remains
/// the HAProxy way to ask for DNAT.
pub(super) fn nat(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    c.s.nat = match c.arg(1) {
        Some("full-nat") => NatMode::FullNat,
        Some("dnat") => NatMode::Dnat,
        Some("dsr-ipip") => NatMode::DsrIpip,
        Some(m) => {
            c.d.alert(format!(
                "'nat' expects 'full-nat', 'dnat' or 'dsr-ipip', got '{}'.",
                show(m)
            ));
            return;
        }
        None => {
            c.d.alert("'nat' expects 'full-nat', 'dnat' or 'dsr-ipip'.");
            return;
        }
    };
}

/// `load-server-state-from-file global|local|none`.
pub(super) fn load_server_state(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    c.s.load_state = match c.arg(1) {
        Some("global") => LoadState::Global,
        Some("local") => LoadState::Local,
        Some("none") => LoadState::None,
        _ => {
            c.d.alert("'load-server-state-from-file' expects 'global', 'local' or 'none'. Got no argument.");
            return;
        }
    };
}

/// `server-state-file-name [use-backend-name|<file>]`.
pub(super) fn server_state_file_name(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    c.s.state_file_name = match c.arg(1) {
        None | Some("use-backend-name") => None,
        Some(f) => Some(f.to_string()),
    };
}

pub(super) fn retries(c: &mut ProxyCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    if let Some(n) = int_arg(c.d, "'retries'", c.arg(1)) {
        c.s.retries = n;
    }
}

pub(super) fn log(c: &mut ProxyCtx) {
    if c.kwm == Kwm::No {
        c.d.warn("'no log' has no effect in lb: health-check and server state logs go to the global 'log' targets.");
        return;
    }
    match c.arg(1) {
        Some("global") => {
            c.d.too_many(c.args, 0, 1);
        }
        Some(_) => c.d.warn(
            "'log <target>' in a proxy has no effect in lb: lb logs to the global 'log' targets only (use 'log global').",
        ),
        None => c.d.alert(
            "'log' expects either <address[:port]> and <facility> or 'global' as arguments.",
        ),
    }
}

pub(super) fn http_request(c: &mut ProxyCtx) {
    let action = c.arg(1).unwrap_or("");
    if action == "use-service" {
        super::stats::use_service(c);
        return;
    }
    if matches!(
        action,
        "deny" | "reject" | "tarpit" | "auth" | "silent-drop"
    ) {
        c.d.alert(format!(
            "'http-request {}' is not supported: lb forwards connections at L4 without parsing HTTP, so this access rule would never be applied.",
            show(action)
        ));
    } else {
        c.d.warn(format!(
            "'http-request' has no effect in lb (L4): {L7_GENERIC}."
        ));
    }
}

pub(super) fn tcp_request(c: &mut ProxyCtx) {
    match c.arg(1) {
        Some("inspect-delay") => c.d.warn(
            "'tcp-request inspect-delay' has no effect in lb: lb does not inspect the data it forwards.",
        ),
        Some("connection") => tcp_request_connection(c),
        Some(r) => c.d.alert(format!(
            "'tcp-request {}' rules are not supported: lb forwards in XDP without reading the data, so this rule would never be applied; lb applies 'tcp-request connection accept|reject' on 'src' and 'dst_port'.",
            show(r)
        )),
        None => c.d.alert("'tcp-request' expects 'connection', 'content' or 'inspect-delay'."),
    }
}

/// `tcp-request connection accept|reject|silent-drop [if|unless COND]`.
fn tcp_request_connection(c: &mut ProxyCtx) {
    if c.kind == Kind::Defaults {
        c.d.alert(
            "'tcp-request connection' in a defaults section is not supported by lb: write the rules in each frontend or listen section.",
        );
        return;
    }
    if !c.kind.fe() {
        c.d.warn(format!(
            "'tcp-request connection' has no effect in backend '{}': connections are accepted or refused by their frontend.",
            c.name
        ));
        return;
    }
    let words: Vec<&str> = c.args[2..].iter().map(String::as_str).collect();
    let acls = &c.s.acls;
    let named = |name: &str| named_acl(acls, name);
    match access::parse_rule(&words, &named, c.d.here()) {
        Ok(rule) => c.s.access.push(rule),
        Err(e) => c.d.alert(format!("'tcp-request connection': {e}")),
    }
}

/// The test of the ACL `name`: the union of its lines, which must test one criterion lb
/// can evaluate.
fn named_acl(acls: &[NamedAcl], name: &str) -> Result<Test, String> {
    let mut merged: Option<Test> = None;
    for a in acls.iter().filter(|a| a.name == name) {
        a.used.set(true);
        let test = a.test.clone().map_err(|e| format!("ACL '{name}': {e}"))?;
        merged = Some(match merged {
            None => test,
            Some(m) => m.merge(test).map_err(|m| {
                format!(
                    "ACL '{name}' tests both '{}' and '{}'; lb reads an ACL of one criterion only: give each its own name.",
                    m.criterion(),
                    a.test.as_ref().map_or("", Test::criterion)
                )
            })?,
        });
    }
    merged.ok_or_else(|| format!("no such ACL : '{}'.", show(name)))
}

/// `acl NAME CRITERION [FLAGS] VALUES`: kept for the `tcp-request connection` rules that
/// name it.
pub(super) fn acl(c: &mut ProxyCtx) {
    let (Some(name), Some(crit)) = (c.arg(1), c.arg(2)) else {
        c.d.alert("'acl' expects an ACL name, a criterion and values.");
        return;
    };
    let values: Vec<&str> = c.args[3..].iter().map(String::as_str).collect();
    let test = if matches!(crit, "src" | "dst_port") {
        access::parse_test(crit, &values).map_err(|e| {
            c.d.alert(format!("'acl {}': {e}", show(name)));
            "its line has an error.".to_string()
        })
    } else {
        c.d.warn(format!(
            "'acl' on '{}' has no effect in lb: lb evaluates ACLs on 'src' and 'dst_port' in 'tcp-request connection' rules only, nothing evaluates this one.",
            show(crit)
        ));
        access::parse_test(crit, &values)
    };
    c.s.acls.push(NamedAcl {
        name: name.to_string(),
        test,
        origin: c.d.here(),
        used: Default::default(),
    });
}

pub(super) fn disabled(c: &mut ProxyCtx) {
    c.d.alert("'disabled' proxies are not supported by lb: remove or comment out the section.");
}

pub(super) fn enabled(c: &mut ProxyCtx) {
    c.d.too_many(c.args, 0, 0);
}

/// `source ADDR[:PORT] [usesrc clientip|client|ADDR] [interface NAME]`.
pub(super) fn source(c: &mut ProxyCtx) {
    let Some(addr) = c.arg(1) else {
        c.d.alert("'source' expects <addr>[:<port>] as argument.");
        return;
    };
    // HAProxy's ADDR[:PORT]: the port follows the last colon (`source ::` is address `:`,
    // refused as HAProxy refuses it), unless the address is bracketed (`[::]`).
    let ip = match units::split_host_port(addr) {
        Ok((ip, _)) => ip,
        Err(e) => {
            c.d.alert(format!("'source': {e}"));
            return;
        }
    };
    let any = matches!(ip, "0.0.0.0" | "*" | "" | "::");
    if !any && let Err(e) = ip_arg(ip) {
        c.d.alert(format!("'source': {e}{}", units::v6_port_hint(addr, ip)));
        return;
    }
    let Some(usesrc) = source_options(c) else {
        return;
    };
    match usesrc {
        Some("clientip" | "client") => c.s.nat = NatMode::Dnat,
        Some(u) if u.starts_with("hdr_ip(") => c.d.alert(format!(
            "'usesrc {}' is not supported by lb (L4): {L7_GENERIC}.",
            show(u)
        )),
        Some(u) => c.d.alert(format!(
            "'usesrc {}' is not supported by lb: servers see either the LB's address (default, full-nat) or the client's ('usesrc clientip', nat dnat).",
            show(u)
        )),
        None => {
            c.s.nat = NatMode::FullNat;
            if !any {
                c.d.warn(format!(
                    "'source {}' has no effect in lb: lb picks the source address from the route to each server (full-nat).",
                    show(addr)
                ));
            }
        }
    }
}

/// The `usesrc` and `interface` options of `source`: `Some(usesrc)`, or `None` after an
/// alert.
fn source_options<'a>(c: &mut ProxyCtx<'a>) -> Option<Option<&'a str>> {
    let mut i = 2;
    let mut usesrc = None;
    while let Some(k) = c.arg(i) {
        let Some(v) = c.arg(i + 1) else {
            c.d.alert(format!("'source' : '{}' expects an argument.", show(k)));
            return None;
        };
        match k {
            "usesrc" => usesrc = Some(v),
            "interface" => c.d.warn(
                "'source ... interface' has no effect in lb: lb sends through the interface of the route to the server.",
            ),
            other => {
                c.d.alert(format!(
                    "'source' only supports optional keywords 'usesrc' and 'interface' (got '{}').",
                    show(other)
                ));
                return None;
            }
        }
        i += 2;
    }
    Some(usesrc)
}
