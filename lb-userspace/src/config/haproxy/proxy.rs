//! Readers of the smaller proxy keywords (see the table in `keywords.rs`); `bind`,
//! `server`, `option`, `timeout` and the checks have files of their own.
use super::{
    diags::show,
    keywords::{L7_GENERIC, ProxyCtx},
    state::Kwm,
    suggest::did_you_mean,
    values::{bad_name, int_arg, ip_arg},
};
use crate::config::model::*;

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
            c.s.default_backend = Some(b.to_string());
            c.s.default_backend_own = true;
        }
        None => c.d.alert("'default_backend' expects a backend name."),
    }
}

pub(super) fn use_backend(c: &mut ProxyCtx) {
    c.d.alert(
        "'use_backend' is not supported: lb has no ACLs (content switching); send the frontend's connections to one backend with 'default_backend'.",
    );
}

/// Algorithms HAProxy knows; lb balances with `roundrobin` and `source`.
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

const SUPPORTED: &str = " (lb balances roundrobin and source)";

pub(super) fn balance(c: &mut ProxyCtx) {
    match c.arg(1) {
        Some("roundrobin") => {
            c.d.too_many(c.args, 0, 1);
            c.s.balance = Balance::RoundRobin;
        }
        Some("source") => {
            c.d.too_many(c.args, 0, 1);
            c.s.balance = Balance::Source;
        }
        Some(a) => {
            let base = a.split('(').next().unwrap_or(a);
            if BALANCE_ALGORITHMS.contains(&base) {
                c.d.alert(format!(
                    "balance '{}' is not supported yet{SUPPORTED}",
                    show(a)
                ));
            } else {
                c.d.alert(format!(
                    "unknown balance algorithm '{}'{}",
                    show(a),
                    did_you_mean(a, BALANCE_ALGORITHMS, SUPPORTED)
                ));
            }
        }
        None => {
            c.d.alert("'balance' expects an algorithm ('roundrobin' or 'source').")
        }
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
    if c.arg(1) == Some("inspect-delay") {
        c.d.warn("'tcp-request inspect-delay' has no effect in lb: lb does not inspect the data it forwards.");
    } else {
        c.d.alert(
            "'tcp-request' rules are not supported: lb accepts or refuses no connections by rule, so these rules would never be applied.",
        );
    }
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
    let ip = addr.rsplit_once(':').map_or(addr, |(a, _)| a);
    let any = matches!(ip, "0.0.0.0" | "*" | "");
    if !any && let Err(e) = ip_arg(ip) {
        c.d.alert(format!("'source': {e}"));
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
