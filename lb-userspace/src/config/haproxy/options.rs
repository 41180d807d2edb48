//! `option NAME`, with its `no` / `default` forms.
use crate::config::model::TcpCheck;

use super::{
    checks::{RulesSel, drop_inherited_rules, httpchk_request},
    diags::show,
    keywords::{BACKEND_SERVERS_ONLY, L7_GENERIC, ProxyCtx, TCP_KEEPALIVE},
    state::Kwm,
    suggest::did_you_mean,
};

/// What lb does with an option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Redispatch,
    AllBackups,
    LogHealthChecks,
    HttpChk,
    TcpCheck,
    /// `redis-check`, `mysql-check`, ...: HAProxy's protocol checks.
    Protocol,
    /// Accepted without a word: lb's behaviour already is what the option asks for.
    Quiet,
    L7(&'static str),
    NoEffect(&'static str),
    TcpLog,
    /// Keeps some connections out of the logs; lb logs a connection as it starts, before
    /// knowing what it will be, so with `option tcplog` these cannot hold (`finish.rs` warns).
    LogFilter,
    Unsupported(&'static str),
}

const NO_HTTP_LOG: &str = "lb never parses HTTP, so there is no HTTP request to log";
const NO_CLOSE: &str =
    "connection reuse is between client and server at L4, lb does not close either side";
const HTTP_KEEPALIVE: &str = "keep-alive is between client and server at L4";
const DATA_PLANE_COUNTS: &str = "lb counts packets in the data plane";
const NO_SPLICE: &str = "lb forwards packets, it never copies data between sockets";
const CHECK_KINDS: &str = "lb runs no external check programs";

/// Option names, in the order they are offered as suggestions.
const OPTIONS: &[(&str, Opt)] = &[
    ("redispatch", Opt::Redispatch),
    ("allbackups", Opt::AllBackups),
    ("log-health-checks", Opt::LogHealthChecks),
    ("httpchk", Opt::HttpChk),
    ("tcp-check", Opt::TcpCheck),
    ("dontlognull", Opt::LogFilter),
    ("httplog", Opt::L7(NO_HTTP_LOG)),
    ("httpslog", Opt::L7(NO_HTTP_LOG)),
    (
        "forwardfor",
        Opt::L7(
            "lb does not add X-Forwarded-For; to let servers see the client address use 'source 0.0.0.0 usesrc clientip' (nat dnat)",
        ),
    ),
    (
        "originalto",
        Opt::L7(
            "lb does not add X-Original-To at L4; with nat dnat servers see the original destination",
        ),
    ),
    ("http-server-close", Opt::L7(NO_CLOSE)),
    ("httpclose", Opt::L7(NO_CLOSE)),
    ("http-keep-alive", Opt::L7(HTTP_KEEPALIVE)),
    ("http-pretend-keepalive", Opt::L7(HTTP_KEEPALIVE)),
    ("http-buffer-request", Opt::L7(L7_GENERIC)),
    ("http-ignore-probes", Opt::L7(L7_GENERIC)),
    ("http-no-delay", Opt::L7(L7_GENERIC)),
    ("http-use-proxy-header", Opt::L7(L7_GENERIC)),
    ("http-restrict-req-hdr-names", Opt::L7(L7_GENERIC)),
    ("http_proxy", Opt::L7(L7_GENERIC)),
    ("accept-invalid-http-request", Opt::L7(L7_GENERIC)),
    ("accept-invalid-http-response", Opt::L7(L7_GENERIC)),
    ("h1-case-adjust-bogus-client", Opt::L7(L7_GENERIC)),
    ("h1-case-adjust-bogus-server", Opt::L7(L7_GENERIC)),
    ("checkcache", Opt::L7(L7_GENERIC)),
    ("disable-h2-upgrade", Opt::L7(L7_GENERIC)),
    ("idle-close-on-response", Opt::L7(L7_GENERIC)),
    ("tcplog", Opt::TcpLog),
    ("dontlog-normal", Opt::LogFilter),
    ("log-separate-errors", Opt::LogFilter),
    // lb logs every connection as it starts already ('option tcplog').
    ("logasap", Opt::Quiet),
    ("contstats", Opt::NoEffect(DATA_PLANE_COUNTS)),
    ("socket-stats", Opt::NoEffect(DATA_PLANE_COUNTS)),
    ("tcpka", Opt::NoEffect(TCP_KEEPALIVE)),
    ("clitcpka", Opt::NoEffect(TCP_KEEPALIVE)),
    ("srvtcpka", Opt::NoEffect(TCP_KEEPALIVE)),
    ("splice-auto", Opt::NoEffect(NO_SPLICE)),
    ("splice-request", Opt::NoEffect(NO_SPLICE)),
    ("splice-response", Opt::NoEffect(NO_SPLICE)),
    (
        "abortonclose",
        Opt::NoEffect("lb has no queue of pending connections"),
    ),
    (
        "nolinger",
        Opt::NoEffect("connections end between client and server at L4"),
    ),
    (
        "independent-streams",
        Opt::NoEffect("timeouts are not applied per direction by the data plane"),
    ),
    (
        "prefer-last-server",
        Opt::NoEffect("lb balances each new connection roundrobin"),
    ),
    (
        "tcp-smart-accept",
        Opt::NoEffect("lb does not accept connections itself"),
    ),
    (
        "tcp-smart-connect",
        Opt::NoEffect("lb does not open connections to servers itself"),
    ),
    (
        "persist",
        Opt::NoEffect(
            "lb has no persistence, a DOWN server's connections are redispatched per 'option redispatch'",
        ),
    ),
    ("ssl-hello-chk", Opt::Protocol),
    ("smtpchk", Opt::Protocol),
    ("mysql-check", Opt::Protocol),
    ("pgsql-check", Opt::Protocol),
    ("redis-check", Opt::Protocol),
    ("ldap-check", Opt::Protocol),
    (
        "spop-check",
        Opt::Unsupported("lb has no SPOE agents to check"),
    ),
    ("external-check", Opt::Unsupported(CHECK_KINDS)),
    ("transparent", Opt::Unsupported(BACKEND_SERVERS_ONLY)),
];

/// Options that HAProxy lets you invert with `no` / reset with `default` (the "(*)" ones).
fn invertible(name: &str) -> bool {
    !matches!(
        name,
        "httpchk"
            | "tcp-check"
            | "httplog"
            | "httpslog"
            | "forwardfor"
            | "originalto"
            | "tcplog"
            | "tcpka"
            | "http-restrict-req-hdr-names"
            | "ssl-hello-chk"
            | "smtpchk"
            | "mysql-check"
            | "pgsql-check"
            | "redis-check"
            | "ldap-check"
            | "spop-check"
            | "external-check"
    )
}

pub(super) fn option(c: &mut ProxyCtx) {
    let Some(opt) = c.arg(1) else {
        c.d.alert("'option' expects an option name.");
        return;
    };
    let Some(&(_, what)) = OPTIONS.iter().find(|(n, _)| *n == opt) else {
        let names: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
        c.d.alert(format!(
            "unknown option '{}'{}",
            show(opt),
            did_you_mean(opt, &names, ".")
        ));
        return;
    };
    if c.kwm != Kwm::Std && !invertible(opt) {
        c.d.alert(format!(
            "negation/default is not supported for option '{}'.",
            show(opt)
        ));
        return;
    }
    let be_only = matches!(
        what,
        Opt::Redispatch
            | Opt::AllBackups
            | Opt::LogHealthChecks
            | Opt::HttpChk
            | Opt::TcpCheck
            | Opt::Protocol
    );
    if be_only && !c.kind.be() {
        c.d.warn(format!(
            "'option {opt}' ignored because {} '{}' has no backend capability.",
            c.kind.word(),
            c.name
        ));
        return;
    }
    set(c, opt, what);
}

/// Applies a known option that is valid here.
fn set(c: &mut ProxyCtx, opt: &str, what: Opt) {
    let on = c.kwm == Kwm::Std;
    match what {
        Opt::Redispatch => {
            // `option redispatch <interval>`: lb redispatches on the first failure.
            if c.args.len() > 2 && on {
                if c.d.too_many(c.args, 1, 1) {
                    return;
                }
                c.d.warn("'option redispatch <interval>' has no effect in lb beyond 'option redispatch': a connection whose server is DOWN is redispatched at once.");
            }
            c.s.redispatch = on;
        }
        Opt::AllBackups => {
            if alone(c) {
                c.s.allbackups = on;
            }
        }
        Opt::LogHealthChecks => {
            if alone(c) {
                c.s.log_health_checks = on;
            }
        }
        Opt::TcpLog => {
            if alone(c) {
                c.s.tcplog = on;
            }
        }
        Opt::TcpCheck => {
            if alone(c) {
                c.s.check.http = None;
                c.s.check.rules = Some(RulesSel::Generic);
                drop_inherited_rules(&mut c.s.check);
            }
        }
        Opt::Protocol => {
            if let Some(p) = protocol_check(c, opt) {
                c.s.check.http = None;
                c.s.check.rules = Some(RulesSel::Protocol(p));
                drop_inherited_rules(&mut c.s.check);
            }
        }
        Opt::HttpChk => {
            if c.d.too_many(c.args, 1, 3) {
                return;
            }
            if let Some(req) = httpchk_request(c.d, &c.args[2..]) {
                c.s.check.http = Some(req);
                c.s.check.rules = None;
                drop_inherited_rules(&mut c.s.check);
            }
        }
        Opt::Quiet => {
            alone(c);
        }
        Opt::LogFilter => {
            if alone(c) {
                c.s.log_filters.retain(|(n, _)| n != opt);
                if on {
                    c.s.log_filters.push((opt.to_string(), c.d.here()));
                }
            }
        }
        Opt::L7(_) | Opt::NoEffect(_) | Opt::Unsupported(_) if !on => {}
        Opt::L7(why) => {
            c.d.warn(format!("'option {opt}' has no effect in lb (L4): {why}."))
        }
        Opt::NoEffect(why) => {
            c.d.warn(format!("'option {opt}' has no effect in lb: {why}."))
        }
        Opt::Unsupported(why) => {
            c.d.alert(format!("'option {opt}' is not supported by lb: {why}."))
        }
    }
}

/// True when the option has no value after its name (otherwise an alert).
fn alone(c: &mut ProxyCtx) -> bool {
    !c.d.too_many(c.args, 1, 0)
}

/// `option redis-check|ldap-check|ssl-hello-chk`, `option mysql-check [user U [post-41|
/// pre-41]]`, `option pgsql-check user U`, `option smtpchk [EHLO|HELO domain]`, with
/// HAProxy's messages; `None` after an alert.
fn protocol_check(c: &mut ProxyCtx, opt: &str) -> Option<TcpCheck> {
    let args = c.args;
    let a = |i: usize| args.get(i).map(String::as_str).filter(|v| !v.is_empty());
    match opt {
        "redis-check" | "ldap-check" | "ssl-hello-chk" => {
            if !alone(c) {
                return None;
            }
            Some(match opt {
                "redis-check" => TcpCheck::Redis,
                "ldap-check" => TcpCheck::Ldap,
                _ => TcpCheck::SslHello,
            })
        }
        "mysql-check" => {
            if c.d.too_many(c.args, 1, 3) {
                return None;
            }
            let Some(kw) = a(2) else {
                return Some(TcpCheck::Mysql {
                    user: None,
                    pre41: false,
                });
            };
            if kw != "user" {
                c.d.alert(format!(
                    "'option mysql-check' only supports optional values: 'user' (got '{}').",
                    show(kw)
                ));
                return None;
            }
            let Some(user) = a(3) else {
                c.d.alert("'option mysql-check user' expects <username> as argument.");
                return None;
            };
            let pre41 = match a(4) {
                None | Some("post-41") => false,
                Some("pre-41") => true,
                Some(other) => {
                    c.d.alert(format!(
                        "keyword 'user' only supports 'post-41' and 'pre-41' (got '{}').",
                        show(other)
                    ));
                    return None;
                }
            };
            Some(TcpCheck::Mysql {
                user: Some(user.to_string()),
                pre41,
            })
        }
        "pgsql-check" => {
            if c.d.too_many(c.args, 1, 2) {
                return None;
            }
            match (a(2), a(3)) {
                (Some("user"), Some(u)) => Some(TcpCheck::Pgsql {
                    user: u.to_string(),
                }),
                (Some("user"), None) | (None, _) => {
                    c.d.alert("'option pgsql-check' expects 'user <username>' as argument.");
                    None
                }
                (Some(other), _) => {
                    c.d.alert(format!(
                        "'option pgsql-check' only supports optional values: 'user' (got '{}').",
                        show(other)
                    ));
                    None
                }
            }
        }
        _ => {
            if c.d.too_many(c.args, 1, 2) {
                return None;
            }
            // As HAProxy: `EHLO|HELO domain`, anything else is the default.
            let hello = match (a(2), a(3)) {
                (Some(w @ ("EHLO" | "HELO")), Some(d)) => format!("{w} {d}"),
                _ => "HELO localhost".to_string(),
            };
            Some(TcpCheck::Smtp { hello })
        }
    }
}
