//! Readers of the `global` section's keywords (see the table in `keywords.rs`).
use super::{
    diags::{clean, show},
    keywords::GlobalCtx,
    state::Kwm,
    suggest::did_you_mean,
    values::{int_arg, time_arg},
};
use std::net::{Ipv4Addr, SocketAddr};

use crate::config::{model::*, native, units};

impl GlobalCtx<'_> {
    /// True the first time `kw` is set; later ones get HAProxy's warning and are ignored.
    fn once(&mut self, kw: &'static str) -> bool {
        if let Some(first) = self.once.get(kw) {
            self.d.warn(format!(
                "'{kw}' already specified (line {first}), this one is ignored."
            ));
            return false;
        }
        self.once.insert(kw, self.d.line);
        true
    }
}

/// `log <target> [len N] [format F] [sample R:S] <facility> [<level> [<minlevel>]]`.
pub(super) fn log(c: &mut GlobalCtx) {
    if c.kwm == Kwm::No {
        c.global.logs.clear();
        return;
    }
    let Some(target) = c.arg(1) else {
        c.d.alert("'log' expects either <address[:port]> and <facility> or 'global' as arguments.");
        return;
    };
    if target == "global" {
        c.d.alert(
            "'log global' is only allowed in defaults, frontend, backend and listen sections.",
        );
        return;
    }
    let target = match strip_log_prefix(target) {
        Ok(t) => t,
        Err(e) => {
            c.d.alert(format!("'log {}': {e}", show(target)));
            return;
        }
    };
    let i = log_options(c);
    let Some(facility) = c.arg(i) else {
        c.d.alert("'log' expects <facility> after the address.");
        return;
    };
    if c.d.too_many(c.args, i, 2) {
        return;
    }
    let here = c.d.here();
    match native::log_target_from_words(&target, facility, c.arg(i + 1), c.arg(i + 2), &here) {
        Ok(t) => c.global.logs.push(t),
        Err(e) => c.d.alert(format!("'log': {}", clean(&e))),
    }
}

/// The `len`, `format` and `sample` options after a log target, which lb ignores (with a
/// warning); returns the index of the word after them.
fn log_options(c: &mut GlobalCtx) -> usize {
    let mut i = 2;
    loop {
        match c.arg(i) {
            Some("len") => c.d.warn(
                "'log ... len' has no effect in lb: lb's log lines are short and never truncated.",
            ),
            Some("format") => {
                let f = c.arg(i + 1).unwrap_or("");
                if !matches!(f, "rfc3164" | "legacy") {
                    c.d.warn(format!(
                        "'log ... format {}' has no effect in lb: lb sends RFC 3164 syslog lines.",
                        show(f)
                    ));
                }
            }
            Some("sample") => {
                c.d.warn("'log ... sample' has no effect in lb: every line is sent.")
            }
            _ => return i,
        }
        i += 2;
    }
}

/// `udp@`, `ipv4@`, `ipv6@`, `unix@` prefixes of log targets (the address says its family).
fn strip_log_prefix(t: &str) -> Result<String, String> {
    if let Some((prefix, rest)) = t.split_once('@') {
        match prefix {
            "udp" | "udp4" | "ipv4" | "udp6" | "ipv6" => Ok(rest.to_string()),
            "unix" => Ok(rest.to_string()),
            _ => Err(format!(
                "lb sends logs over UDP, to a UNIX socket, stdout or stderr only, not to '{}@'",
                show(prefix)
            )),
        }
    } else {
        Ok(t.to_string())
    }
}

pub(super) fn log_tag(c: &mut GlobalCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    match c.arg(1) {
        Some(t) if !t.is_empty() => c.global.log_tag = t.to_string(),
        _ => c.d.alert("'log-tag' expects a tag for use in syslog."),
    }
}

/// `announce-table <id>`: lb's own keyword (HAProxy has no routing to do), see
/// `daemon::announce`.
pub(super) fn announce_table(c: &mut GlobalCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    let Some(n) = int_arg(c.d, "'announce-table'", c.arg(1)) else {
        return;
    };
    match crate::config::native::announce_table(n) {
        Ok(t) => c.global.announce_table = Some(t),
        Err(e) => c.d.alert(format!("'announce-table': {e}")),
    }
}

pub(super) fn maxconn(c: &mut GlobalCtx) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    if let Some(n) = int_arg(c.d, "'maxconn'", c.arg(1))
        && c.once("maxconn")
    {
        c.global.maxconn = Some(n);
    }
}

/// `pidfile`, `chroot`, `user` and `group` take one value (`what` says what it should
/// be), which HAProxy lets be set once: `set` stores it unless an alert or warning says
/// why not.
fn set_once(c: &mut GlobalCtx, kw: &'static str, what: &str, set: fn(&mut Global, &str)) {
    if c.d.too_many(c.args, 0, 1) {
        return;
    }
    let Some(v) = c.arg(1).filter(|v| !v.is_empty()) else {
        c.d.alert(format!("'{kw}' expects {what} as an argument."));
        return;
    };
    if c.once(kw) {
        set(c.global, v);
    }
}

pub(super) fn pidfile(c: &mut GlobalCtx) {
    set_once(c, "pidfile", "a file name", |g, v| {
        g.pidfile = Some(v.into())
    });
}

pub(super) fn server_state_file(c: &mut GlobalCtx) {
    set_once(c, "server-state-file", "a file name", |g, v| {
        g.server_state_file = Some(v.into())
    });
}

pub(super) fn server_state_base(c: &mut GlobalCtx) {
    set_once(c, "server-state-base", "a directory", |g, v| {
        g.server_state_base = Some(v.into())
    });
}

pub(super) fn chroot(c: &mut GlobalCtx) {
    set_once(c, "chroot", "a directory", |g, v| g.chroot = Some(v.into()));
}

pub(super) fn user(c: &mut GlobalCtx) {
    set_once(c, "user", "a user name", |g, v| g.user = Some(v.into()));
}

pub(super) fn group(c: &mut GlobalCtx) {
    set_once(c, "group", "a group name", |g, v| g.group = Some(v.into()));
}

pub(super) fn daemon(c: &mut GlobalCtx) {
    if !c.d.too_many(c.args, 0, 0) {
        c.global.daemon = true;
    }
}

/// `uid` and `gid`: lb drops privileges by name only.
pub(super) fn uid_gid(c: &mut GlobalCtx) {
    let kw = c.args[0].as_str();
    c.d.alert(format!(
        "'{kw}' is not supported by lb: use '{}' with a name.",
        if kw == "uid" { "user" } else { "group" }
    ));
}

/// `setenv NAME VALUE`, and `presetenv NAME VALUE` (which keeps a value already set).
pub(super) fn setenv(c: &mut GlobalCtx) {
    let kw = c.args[0].as_str();
    if c.d.too_many(c.args, 0, 2) {
        return;
    }
    let (Some(name), Some(value)) = (c.arg(1), c.arg(2)) else {
        c.d.alert(format!("'{kw}' expects a name and a value."));
        return;
    };
    if kw == "setenv" || c.env.get(name).is_none() {
        c.env.set.insert(name.to_string(), Some(value.to_string()));
    }
}

pub(super) fn unsetenv(c: &mut GlobalCtx) {
    if c.args.len() < 2 {
        c.d.alert("'unsetenv' expects at least one variable name.");
    }
    for a in &c.args[1..] {
        c.env.set.insert(a.clone(), None);
    }
}

pub(super) fn resetenv(c: &mut GlobalCtx) {
    c.env.set.clear();
    c.env.reset_keep = Some(c.args[1..].to_vec());
}

/// `stats socket PATH [mode OCTAL] [level user|operator|admin] ...`, `stats timeout T`.
pub(super) fn stats(c: &mut GlobalCtx) {
    match c.arg(1) {
        Some("socket") => stats_socket(c),
        Some("timeout") => {
            if !c.d.too_many(c.args, 1, 1) {
                // Accepted and ignored: lb's runtime API answers one command per
                // connection and closes it.
                let _ = time_arg(c.d, "'stats timeout'", c.arg(2));
            }
        }
        Some(sub @ ("maxconn" | "bind-process")) => c.d.warn(format!(
            "'stats {sub}' has no effect in lb: lb's runtime API serves one command per connection."
        )),
        other => c.d.alert(format!(
            "'stats' expects 'socket', 'maxconn', 'timeout' or 'bind-process' in 'global' section (got '{}').",
            show(other.unwrap_or(""))
        )),
    }
}

fn stats_socket(c: &mut GlobalCtx) {
    let Some(raw) = c.arg(2).filter(|p| !p.is_empty()) else {
        c.d.alert("'stats socket' expects a path to a UNIX socket or an IPv4 address:port.");
        return;
    };
    let addr = match api_addr(raw) {
        Ok(a) => a,
        Err(e) => {
            c.d.alert(format!("'stats socket {}': {e}", show(raw)));
            return;
        }
    };
    if let Some(prev) = c.global.stats_sockets.iter().find(|s| s.addr == addr) {
        c.d.alert(format!(
            "'stats socket {}': already declared at {}.",
            show(raw),
            prev.origin
        ));
        return;
    }
    let mut sock = StatsSocket {
        addr,
        mode: None,
        level: ApiLevel::Operator,
        origin: c.d.here(),
    };
    if socket_params(c, &mut sock) {
        c.global.stats_sockets.push(sock);
    }
}

/// Where `stats socket` listens: a path (`unix@` optional) or an IPv4 `ADDR:PORT`
/// (`ipv4@` or `tcp@` optional), as HAProxy's address syntax.
fn api_addr(raw: &str) -> Result<ApiAddr, String> {
    let (family, rest) = match raw.split_once('@') {
        Some((f, r)) => (Some(f), r),
        None => (None, raw),
    };
    match family {
        Some("unix") => return unix_path(rest),
        None if rest.starts_with('/') => return unix_path(rest),
        None | Some("ipv4" | "tcp" | "tcp4") => {}
        Some("ipv6" | "tcp6") => return Err("lb's runtime API listens on IPv4 only.".into()),
        Some(f) => {
            return Err(format!(
                "lb's runtime API listens on a UNIX socket or on IPv4 TCP, not on '{}@'.",
                show(f)
            ));
        }
    }
    match units::endpoint(rest) {
        Ok((ip, port)) => Ok(ApiAddr::Tcp(SocketAddr::from((
            ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port,
        )))),
        Err(e) => Err(format!("{}.", clean(&e))),
    }
}

fn unix_path(p: &str) -> Result<ApiAddr, String> {
    if p.starts_with('/') {
        Ok(ApiAddr::Unix(p.into()))
    } else {
        Err("a UNIX socket needs an absolute path.".into())
    }
}

/// Why a `stats socket` option lb reads has no effect.
fn socket_param_reason(p: &str) -> &'static str {
    match p {
        "user" | "group" | "uid" | "gid" => {
            "the socket belongs to the user lb runs as; use 'mode' to open it to others"
        }
        "expose-fd" => {
            "lb hands no listening sockets over: a reload keeps the same process and its sockets"
        }
        "process" | "thread" => "one task of lb's single daemon serves every socket",
        "severity-output" => "lb's runtime API answers carry no severity prefix",
        _ => "lb does not name listeners",
    }
}

/// The options after `stats socket PATH`; false after an alert.
fn socket_params(c: &mut GlobalCtx, sock: &mut StatsSocket) -> bool {
    let mut i = 3;
    let mut ok = true;
    while let Some(p) = c.arg(i) {
        let takes = match p {
            "mode" | "level" | "user" | "group" | "uid" | "gid" | "expose-fd"
            | "severity-output" | "name" | "process" | "thread" => 1,
            _ => 0,
        };
        let v = c.arg(i + 1).unwrap_or("");
        if takes == 1 && c.arg(i + 1).is_none() {
            c.d.alert(format!("'stats socket' : '{p}' expects an argument."));
            return false;
        }
        match p {
            "mode" if matches!(sock.addr, ApiAddr::Tcp(_)) => c.d.warn(
                "'stats socket ... mode' has no effect in lb on a TCP socket: anyone who can connect to it may use it.",
            ),
            "mode" => match native::file_mode(v) {
                Ok(m) => sock.mode = Some(m),
                Err(e) => {
                    c.d.alert(format!("'stats socket' : 'mode': {}", clean(&e)));
                    ok = false;
                }
            },
            "level" => match native::api_level(v) {
                Ok(l) => sock.level = l,
                Err(e) => {
                    c.d.alert(format!("'stats socket' : {}", clean(&e)));
                    ok = false;
                }
            },
            "user" | "group" | "uid" | "gid" | "expose-fd" | "severity-output" | "name"
            | "process" | "thread" => {
                c.d.warn(format!(
                    "'stats socket ... {p}' has no effect in lb: {}.",
                    socket_param_reason(p)
                ));
            }
            _ => {
                c.d.alert(format!(
                    "'stats socket' : unknown keyword '{}'{}",
                    show(p),
                    did_you_mean(
                        p,
                        &["mode", "level", "user", "group", "uid", "gid", "expose-fd"],
                        ""
                    )
                ));
                return false;
            }
        }
        i += 1 + takes;
    }
    ok
}
