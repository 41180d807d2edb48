//! `server NAME ADDR:PORT [params]` and `default-server [params]`.
use std::net::{IpAddr, Ipv4Addr};

use super::{
    diags::{Diags, clean, show},
    keywords::{CONN_PER_CLIENT, L7_GENERIC, ProxyCtx},
    state::Kind,
    suggest::did_you_mean,
    values::{bad_char, int_arg, ip_arg, time_arg},
};
use crate::config::{model::*, units};

/// Server parameters, in the order they are offered as suggestions.
pub(super) const SERVER_KW: &[&str] = &[
    "check",
    "no-check",
    "inter",
    "fastinter",
    "downinter",
    "fall",
    "rise",
    "weight",
    "backup",
    "no-backup",
    "disabled",
    "enabled",
    "port",
    "addr",
    "maxconn",
    "id",
    "cookie",
    "slowstart",
    "maxqueue",
    "minconn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "error-limit",
    "init-addr",
    "resolvers",
    "resolve-prefer",
    "resolve-net",
    "ssl",
    "no-ssl",
    "verify",
    "sni",
    "ca-file",
    "crl-file",
    "verifyhost",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "crt",
    "check-ssl",
    "no-check-ssl",
    "check-sni",
    "alpn",
    "send-proxy",
    "send-proxy-v2",
    "check-send-proxy",
    "track",
    "agent-check",
    "no-agent-check",
    "agent-port",
    "agent-inter",
    "agent-send",
    "agent-addr",
    "redir",
    "source",
    "tfo",
    "pool-max-conn",
    "pool-purge-delay",
    "proto",
    "ws",
    "namespace",
];

/// Why TLS tuning of a server has no effect.
const TLS_SETTINGS: &str =
    "lb's TLS health checks use rustls's own versions (TLS 1.2 and 1.3) and cipher suites";

/// Server parameters lb accepts and ignores: (number of values, why).
fn no_effect(kw: &str) -> Option<(usize, &'static str)> {
    Some(match kw {
        "id" => (1, "lb numbers servers in declaration order"),
        "cookie" => (1, L7_GENERIC),
        "maxqueue" => (1, NO_QUEUE),
        "minconn" => (
            1,
            "lb's 'maxconn' is a fixed limit, there is no 'fullconn' to scale it from 'minconn'",
        ),
        "tfo" => (0, "lb does not open connections to servers itself"),
        "pool-max-conn" | "pool-purge-delay" => (1, CONN_PER_CLIENT),
        "no-ssl" => (0, "lb never speaks TLS to servers anyway"),
        "crl-file" => (
            1,
            "lb's TLS health checks do not read certificate revocation lists",
        ),
        "verifyhost" => (
            1,
            "lb's TLS health checks match the certificate against the name sent ('check-sni')",
        ),
        "ciphers" | "ciphersuites" | "ssl-min-ver" | "ssl-max-ver" | "curves" | "sigalgs" => {
            (1, TLS_SETTINGS)
        }
        "no-sslv3" | "no-tlsv10" | "no-tlsv11" | "no-tlsv12" | "no-tlsv13" | "force-sslv3"
        | "force-tlsv10" | "force-tlsv11" | "force-tlsv12" | "force-tlsv13" | "no-ssl-reuse"
        | "no-tls-tickets" | "tls-tickets" | "ssl-reuse" => (0, TLS_SETTINGS),
        _ => return None,
    })
}

/// What lb does instead of queueing (`maxqueue`, `timeout queue`).
pub(super) const NO_QUEUE: &str = "lb has no queue: a new connection that finds every server at its 'maxconn' is dropped (counted as drop_maxconn in 'lb show stats') and the client's SYN retransmission tries again";

/// Server parameters for features whose absence breaks the traffic or the checks: alerts.
fn unsupported(kw: &str) -> Option<(usize, &'static str)> {
    Some(match kw {
        "ssl" | "sni" | "crt" | "alpn" => (
            if kw == "ssl" { 0 } else { 1 },
            "lb forwards the client's bytes as they are and never speaks TLS to servers (its health checks may: 'check-ssl')",
        ),
        "send-proxy" | "send-proxy-v2" | "check-send-proxy" => (
            0,
            "lb forwards the client's bytes as they are and cannot add a PROXY protocol header; with nat dnat servers see the client address",
        ),
        "track" => (1, "lb checks every server itself"),
        "redir" => (1, L7_GENERIC),
        "source" => (
            1,
            "lb picks the source address per backend ('source' in the backend)",
        ),
        "proto" | "ws" => (1, L7_GENERIC),
        "namespace" => (1, "lb forwards in the namespace it is attached in"),
        _ => return None,
    })
}

/// `server NAME ADDR[:PORT] [params]`, starting from the `default-server` template.
pub(super) fn server(c: &mut ProxyCtx) {
    let backend = if c.kind == Kind::Defaults { "" } else { c.name };
    let Some(servers) = c.servers.as_deref_mut() else {
        return;
    };
    if let Some(srv) = server_line(c.d, backend, &c.s.default_server, c.args) {
        servers.push(srv);
    }
}

/// `server-template PREFIX NUM|FIRST-LAST FQDN[:PORT] [params]`: servers PREFIXFIRST..PREFIXLAST
/// given by the same name. Without `resolvers` they share the one address the name resolves
/// to at start-up; with it they are spread over the DNS answers at run time (`daemon::dns`).
pub(super) fn server_template(c: &mut ProxyCtx) {
    let backend = if c.kind == Kind::Defaults { "" } else { c.name };
    let Some(servers) = c.servers.as_deref_mut() else {
        return;
    };
    let args = c.args;
    let (Some(prefix), Some(range), Some(addr)) = (args.get(1), args.get(2), args.get(3)) else {
        c.d.alert("'server-template' expects <prefix> <nb | range> <addr>[:<port>] as arguments.");
        return;
    };
    let Some((first, last)) = template_range(range) else {
        c.d.alert(format!(
            "'server-template {}' : invalid range '{}', expected a number of servers or FIRST-LAST (1 or more).",
            show(prefix),
            show(range)
        ));
        return;
    };
    // One server read with its messages, the others copied from it under their names.
    let mut line: Vec<String> = vec!["server".into(), format!("{prefix}{first}"), addr.clone()];
    line.extend(args[4..].iter().cloned());
    let Some(srv) = server_line(c.d, backend, &c.s.default_server, &line) else {
        return;
    };
    if let Some(name) = srv.fqdn.as_ref().filter(|_| srv.dns.resolvers.is_none()) {
        c.d.warn(format!(
            "'server-template {}' : without 'resolvers', servers {prefix}{first} to {prefix}{last} all get the one address '{}' resolves to at start-up, as in HAProxy; add 'resolvers' to spread them over the DNS answers.",
            show(prefix),
            show(name)
        ));
    }
    for i in first..=last {
        let mut s = srv.clone();
        s.name = format!("{prefix}{i}");
        servers.push(s);
    }
}

/// `NUM` (1..=NUM) or `FIRST-LAST`.
fn template_range(r: &str) -> Option<(u32, u32)> {
    let (first, last) = match r.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => (1, r.parse().ok()?),
    };
    (first >= 1 && first <= last).then_some((first, last))
}

/// `default-server [params]`: the template of the servers declared after it.
pub(super) fn default_server(c: &mut ProxyCtx) {
    server_params(c.d, "'default-server'", &mut c.s.default_server, c.args, 1);
}

fn server_line(d: &mut Diags, backend: &str, tpl: &Server, args: &[String]) -> Option<Server> {
    let (Some(name), Some(addr)) = (
        args.get(1).filter(|a| !a.is_empty()),
        args.get(2).filter(|a| !a.is_empty()),
    ) else {
        d.alert("'server' expects <name> and <addr>[:<port>] as arguments.");
        return None;
    };
    let ctx = format!("'server {backend}/{}'", show(name));
    if let Some(c) = bad_char(name) {
        d.alert(format!(
            "character '{}' is not permitted in server name '{}'.",
            show(&c.to_string()),
            show(name)
        ));
        return None;
    }
    let (host, port) = match server_addr(addr) {
        Ok(p) => p,
        Err(e) => {
            d.alert(format!("{ctx} : {}", clean(&e)));
            return None;
        }
    };
    let mut srv = tpl.clone();
    srv.name = name.clone();
    // A host name is resolved when the configuration is put to work (config::resolve).
    (srv.addr, srv.fqdn) = match host {
        Host::Ip(ip) => (ip, None),
        Host::Name(n) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(n)),
    };
    srv.port = port;
    srv.origin = d.here();
    server_params(d, &ctx, &mut srv, args, 3);
    Some(srv)
}

/// What a server's address names.
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A server's `[ipv4@|ipv6@]ADDR[:PORT]` or `NAME[:PORT]`. As HAProxy, the port is what
/// follows the last colon (`fd00::10:80`), unless the address is bracketed (`[fd00::10]`).
fn server_addr(addr: &str) -> Result<(Host, u16), String> {
    use crate::config::model::Family;
    let (family, a) = match addr.split_once('@') {
        Some(("ipv4", r)) => (Some(Family::V4), r),
        Some(("ipv6", r)) => (Some(Family::V6), r),
        None => (None, addr),
        Some(_) => {
            return Err(format!(
                "'{}': lb forwards to IP addresses only",
                show(addr)
            ));
        }
    };
    if a.starts_with('/') {
        return Err(format!(
            "'{}': lb forwards to IP addresses only",
            show(addr)
        ));
    }
    // Without a port, connections keep the port the client connected to (HAProxy's rule).
    let (ip, port) = units::split_host_port(a)?;
    let port = port.unwrap_or("");
    if port.starts_with(['+', '-']) {
        return Err(format!(
            "address '{}': port offsets are not supported by lb (give a port, or none for the client's)",
            show(addr)
        ));
    }
    let any = matches!(ip, "*" | "" | "0.0.0.0" | "::");
    if any {
        return Err(format!(
            "address '{}' is not supported by lb: HAProxy connects such a server to the address the client connected to, which is lb's own (the VIP); give the server's address",
            show(addr)
        ));
    }
    let host = if units::is_host_name(ip) {
        Host::Name(ip.to_string())
    } else {
        let got = ip_arg(ip).map_err(|e| format!("{e}{}", units::v6_port_hint(a, ip)))?;
        if family.is_some_and(|f| f != Family::of(got)) {
            return Err(format!("invalid address: '{got}' in '{}'", show(addr)));
        }
        Host::Ip(got)
    };
    if port.is_empty() {
        return Ok((host, 0));
    }
    let port = units::port(port).map_err(|e| format!("in '{}': {e}", show(addr)))?;
    Ok((host, port))
}

/// Server (and `default-server`) parameters from `args[start..]`; `ctx` names the line in
/// messages.
fn server_params(d: &mut Diags, ctx: &str, srv: &mut Server, args: &[String], start: usize) {
    let mut i = start;
    while let Some(k) = args.get(i) {
        match server_param(d, ctx, srv, k, args.get(i + 1).map(String::as_str)) {
            Some(words) => i += words,
            None => return,
        }
    }
}

/// One parameter `k` (with `v`, the word after it): how many words it took, or `None`
/// when the rest of the line cannot be read.
fn server_param(
    d: &mut Diags,
    ctx: &str,
    srv: &mut Server,
    k: &str,
    v: Option<&str>,
) -> Option<usize> {
    match k {
        "check" => srv.check = true,
        "no-check" => srv.check = false,
        "backup" => srv.backup = true,
        "no-backup" => srv.backup = false,
        "disabled" => srv.disabled = true,
        "enabled" => srv.disabled = false,
        "inter" | "fastinter" | "downinter" | "fall" | "rise" | "weight" | "port" | "addr"
        | "maxconn" | "on-marked-down" | "on-marked-up" | "slowstart" | "observe" | "on-error"
        | "error-limit" => {
            let Some(v) = v.filter(|v| !v.is_empty()) else {
                let what = match k {
                    "inter" | "fastinter" | "downinter" | "slowstart" => "<time>",
                    "observe" => "'none', 'layer4' or 'layer7'",
                    "on-error" => "'fastinter', 'fail-check', 'sudden-death' or 'mark-down'",
                    "addr" => "<ip address>",
                    "on-marked-down" => "'shutdown-sessions'",
                    "on-marked-up" => "'shutdown-backup-sessions'",
                    _ => "an integer",
                };
                d.alert(format!("{ctx} : '{k}' expects {what} as argument."));
                return None;
            };
            set_value(d, ctx, srv, k, v);
            return Some(2);
        }
        "check-ssl" => srv.check_tls.ssl = true,
        "no-check-ssl" => srv.check_tls.ssl = false,
        "agent-check" => srv.agent.enabled = true,
        "no-agent-check" => srv.agent.enabled = false,
        "resolvers" | "resolve-prefer" | "resolve-net" => {
            let Some(v) = v.filter(|v| !v.is_empty()) else {
                let what = match k {
                    "resolvers" => "<resolvers name> as argument.".to_string(),
                    "resolve-prefer" => "either ipv4 or ipv6 as argument.".to_string(),
                    _ => "a list of networks.".to_string(),
                };
                d.alert(format!("{ctx} : '{k}' expects {what}"));
                return None;
            };
            match k {
                "resolvers" => srv.dns.resolvers = Some(v.to_string()),
                "resolve-prefer" => match v {
                    "ipv4" => srv.dns.prefer = Family::V4,
                    "ipv6" => srv.dns.prefer = Family::V6,
                    _ => d.alert(format!(
                        "{ctx} : 'resolve-prefer' expects either ipv4 or ipv6 as argument."
                    )),
                },
                _ => match units::networks(v) {
                    Ok(nets) => srv.dns.nets = nets,
                    Err(bad) => d.alert(format!(
                        "{ctx} : 'resolve-net' invalid network '{}'.",
                        show(&bad)
                    )),
                },
            }
            return Some(2);
        }
        "init-addr" => {
            let Some(v) = v.filter(|v| !v.is_empty()) else {
                d.alert(format!(
                    "{ctx} : 'init-addr' expects <method>[,<method>...] as argument."
                ));
                return None;
            };
            match InitAddr::parse_list(v) {
                Ok(l) => srv.init_addr = l,
                Err(e) => d.alert(format!("{ctx} : 'init-addr' : {}", clean(&e))),
            }
            return Some(2);
        }
        "check-sni" | "verify" | "ca-file" | "agent-port" | "agent-inter" | "agent-send"
        | "agent-addr" => {
            check_value(d, ctx, srv, k, v)?;
            return Some(2);
        }
        _ => return other_param(d, ctx, k, v),
    }
    Some(1)
}

/// A health or agent check parameter that takes a value; `None` when the value is missing
/// (the rest of the line cannot be read).
fn check_value(d: &mut Diags, ctx: &str, srv: &mut Server, k: &str, v: Option<&str>) -> Option<()> {
    let Some(v) = v else {
        d.alert(format!("{ctx} : '{k}' expects an argument."));
        return None;
    };
    match k {
        "check-sni" if v.is_empty() => d.alert(format!("{ctx} : 'check-sni' : missing SNI.")),
        "check-sni" => srv.check_tls.sni = Some(v.to_string()),
        "verify" => match v {
            "none" => srv.check_tls.verify = Some(Verify::None),
            "required" => srv.check_tls.verify = Some(Verify::Required),
            other => d.alert(format!(
                "{ctx} : 'verify' : unknown verify method '{}', only 'none' and 'required' are supported.",
                show(other)
            )),
        },
        "ca-file" if v.is_empty() => d.alert(format!("{ctx} : 'ca-file' : missing CAfile path.")),
        "ca-file" => srv.check_tls.ca_file = Some(v.into()),
        "agent-port" => match units::port(v) {
            Ok(p) => srv.agent.port = Some(p),
            Err(e) => d.alert(format!("{ctx} : 'agent-port': {}", clean(&e))),
        },
        "agent-inter" => match time_arg(d, &format!("{ctx} : 'agent-inter'"), Some(v)) {
            Some(t) if t.is_zero() => d.alert(format!(
                "{ctx} : invalid value 0 for argument 'agent-inter' of server {}.",
                srv.name
            )),
            Some(t) => srv.agent.inter = Some(t),
            None => {}
        },
        "agent-send" => srv.agent.send = v.to_string(),
        _ => match ip_arg(v) {
            Ok(a) => srv.agent.addr = Some(a),
            Err(e) => d.alert(format!("{ctx} : 'agent-addr': {e}")),
        },
    }
    Some(())
}

/// A parameter that takes a value.
fn set_value(d: &mut Diags, ctx: &str, srv: &mut Server, k: &str, v: &str) {
    match k {
        "inter" | "fastinter" | "downinter" => {
            let Some(t) = time_arg(d, &format!("{ctx} : '{k}'"), Some(v)) else {
                return;
            };
            if t.is_zero() && k != "inter" {
                // `inter 0` is reported by validate.rs with the server's name.
                d.alert(format!("{ctx} : '{k}' has to be > 0."));
            }
            match k {
                "inter" => srv.inter = t,
                "fastinter" => srv.fastinter = Some(t),
                _ => srv.downinter = Some(t),
            }
        }
        "fall" | "rise" | "weight" | "maxconn" => {
            if let Some(n) = int_arg(d, &format!("{ctx} : '{k}'"), Some(v)) {
                match k {
                    "fall" => srv.fall = n,
                    "rise" => srv.rise = n,
                    "weight" => srv.weight = n,
                    _ => srv.maxconn = Some(n),
                }
            }
        }
        "slowstart" => {
            if let Some(t) = time_arg(d, &format!("{ctx} : 'slowstart'"), Some(v)) {
                srv.slowstart = Some(t);
            }
        }
        // As HAProxy's srv_parse_observe, srv_parse_on_error, srv_parse_error_limit.
        "observe" => match v {
            "none" => srv.observe = Observe::None,
            "layer4" => srv.observe = Observe::Layer4,
            "layer7" => d.warn(format!(
                "{ctx} : 'observe layer7' has no effect in lb: lb never reads HTTP responses; 'observe layer4' judges servers by the connections they refuse."
            )),
            other => d.alert(format!(
                "{ctx} : 'observe' expects one of 'none', 'layer4', 'layer7' but got '{}'.",
                clean(other)
            )),
        },
        "on-error" => match OnError::ALL.iter().find(|(n, _)| *n == v) {
            Some((_, o)) => srv.on_error = *o,
            None => d.alert(format!(
                "{ctx} : 'on-error' expects one of 'fastinter', 'fail-check', 'sudden-death' or 'mark-down' but got '{}'.",
                clean(v)
            )),
        },
        "error-limit" => match v.parse::<u32>() {
            Ok(n) if n > 0 => srv.error_limit = n,
            _ => d.alert(format!("{ctx} : error-limit has to be > 0.")),
        },
        "port" => match units::port(v) {
            Ok(p) => srv.check_port = Some(p),
            Err(e) => d.alert(format!("{ctx} : 'port': {}", clean(&e))),
        },
        // HAProxy reads ADDR[:PORT] here: `addr fd00::99` is `fd00:` port 99 (refused);
        // `[fd00::99]` is the address. lb takes the check port from `port` only.
        "addr" => match units::split_host_port(v).and_then(|(host, port)| {
            let ip = ip_arg(host).map_err(|e| format!("{e}{}", units::v6_bracket_hint(v, host)))?;
            match port {
                None => Ok(ip),
                Some(_) => Err(format!(
                    "'{}': lb takes the check port from 'port', not from 'addr'",
                    show(v)
                )),
            }
        }) {
            Ok(a) => srv.check_addr = Some(a),
            Err(e) => d.alert(format!("{ctx} : 'addr': {e}")),
        },
        // As HAProxy's srv_parse_on_marked_{down,up}.
        "on-marked-down" if v == "shutdown-sessions" => {
            srv.on_marked_down = OnMarkedDown::ShutdownSessions;
        }
        "on-marked-up" if v == "shutdown-backup-sessions" => {
            srv.on_marked_up = OnMarkedUp::ShutdownBackupSessions;
        }
        "on-marked-down" | "on-marked-up" => d.alert(format!(
            "{ctx} : '{k}' expects '{}' but got '{}'",
            if k == "on-marked-down" {
                "shutdown-sessions"
            } else {
                "shutdown-backup-sessions"
            },
            clean(v)
        )),
        _ => {}
    }
}

/// A parameter lb ignores, refuses, or does not know.
fn other_param(d: &mut Diags, ctx: &str, k: &str, v: Option<&str>) -> Option<usize> {
    if let Some((n, why)) = no_effect(k) {
        if n == 1 && v.is_none() {
            d.alert(format!("{ctx} : '{k}' expects an argument."));
            return None;
        }
        d.warn(format!("{ctx} : '{k}' has no effect in lb: {why}."));
        return Some(1 + n);
    }
    if let Some((n, why)) = unsupported(k) {
        d.alert(format!("{ctx} : '{k}' is not supported by lb: {why}."));
        return Some(1 + n);
    }
    d.alert(format!(
        "{ctx} : unknown keyword '{}'{}",
        show(k),
        did_you_mean(k, SERVER_KW, ".")
    ));
    None
}
