//! The runtime API's text protocol, pure: how requests are cut out of what a client sent,
//! split into words, matched against the command table, checked against the session's level,
//! and what HAProxy answers when something is wrong.
//!
//! Mirrors HAProxy 2.6 `src/cli.c` (`cli_io_handler`, `cli_parse_request`, `cli_find_kw`,
//! `cli_gen_usage_msg`, `cli_has_level`, `cli_parse_set_lvl`), `src/server.c`
//! (`cli_find_server`, `cli_parse_set_server`, `server_parse_weight_change_request`) and
//! `src/tools.c` (`update_word_fingerprint`, `word_fingerprint_distance`):
//! - a request ends at an unescaped `\n` or `;` (so `show info; show stat` is two); a
//!   trailing `\r` is dropped; a request longer than HAProxy's buffer (16 kB) or one never
//!   finished closes the session without an answer;
//! - words are separated by spaces and tabs, `\` escapes the next character;
//! - every answer is followed by an empty line (`\n`), or by `\n> ` in interactive mode
//!   (`prompt`); without `prompt` the session ends once no complete request is left.
use std::net::{IpAddr, SocketAddr};

use crate::config::ApiLevel;
use crate::fuzzy::Fingerprint;

/// HAProxy's `tune.bufsize`: the longest request it reads (one byte goes to a NUL).
pub const MAX_REQUEST: usize = 16384 - 1;
/// `MAX_CLI_ARGS`.
pub const MAX_ARGS: usize = 64;
/// Words of a keyword HAProxy matches (`CLI_PREFIX_KW_NB`).
const PREFIX_KW_NB: usize = 5;
/// Fuzzy suggestions for an unknown command (`CLI_MAX_MATCHES`).
const MAX_MATCHES: usize = 5;

/// `cli_permission_denied_msg`.
pub const PERMISSION_DENIED: &str = "Permission denied\n";
pub const REQUIRE_BACKEND_SERVER: &str = "Require 'backend/server'.\n";
/// `set weight` on a static-rr backend, to anything but 0% and 100% (HAProxy 2.6's answer).
pub const STATIC_WEIGHT: &str =
    "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n";
pub const NO_SUCH_SERVER: &str = "No such server.\n";
pub const NO_SUCH_BACKEND: &str = "No such backend.\n";
pub const CANT_FIND_BACKEND: &str = "Can't find backend.\n";
pub const STATE_EXPECTS: &str = "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n";
pub const HEALTH_EXPECTS: &str = "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n";
pub const HEALTH_NOT_CONFIGURED: &str =
    "Health check was not configured on this server, cannot enable.\n";

/// What a client sent so far, cut into requests.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// A complete request (without its delimiter and `\r`), and how many bytes it used.
    Request(&'a [u8], usize),
    /// No delimiter yet: wait for more.
    Partial,
    /// No delimiter within [`MAX_REQUEST`] bytes: HAProxy closes the session.
    TooLong,
}

/// Cuts the first request out of `buf` (`co_getdelim(.., "\n;", '\\')`).
pub fn next_request(buf: &[u8]) -> Next<'_> {
    let mut i = 0;
    while i < buf.len() && i < MAX_REQUEST {
        match buf[i] {
            b'\\' => i += 2,
            b'\n' | b';' => {
                let mut line = &buf[..i];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                return Next::Request(line, i + 1);
            }
            _ => i += 1,
        }
    }
    if buf.len() >= MAX_REQUEST {
        Next::TooLong
    } else {
        Next::Partial
    }
}

/// Splits a request into words (`cli_parse_request`): spaces and tabs separate, `\x` is `x`
/// (so `\ ` and `\;` are kept in a word), at most [`MAX_ARGS`] words. A NUL ends the request,
/// as it does for HAProxy's C strings.
pub fn words(line: &[u8]) -> Vec<String> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(n) => &line[..n],
        None => line,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < MAX_ARGS && i < line.len() {
        while i < line.len() && matches!(line[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut word = Vec::new();
        while i < line.len() && !matches!(line[i], b' ' | b'\t') {
            if line[i] == b'\\' {
                i += 1;
                if i >= line.len() {
                    break;
                }
            }
            word.push(line[i]);
            i += 1;
        }
        out.push(String::from_utf8_lossy(&word).into_owned());
    }
    out
}

/// A command lb knows: its keyword words and HAProxy's usage line (verbatim from HAProxy
/// 2.6's `help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyword {
    pub words: &'static [&'static str],
    pub usage: &'static str,
    pub cmd: Kw,
}

/// Which command a [`Keyword`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kw {
    DisableHealth,
    DisableServer,
    EnableHealth,
    EnableServer,
    GetWeight,
    Operator,
    SetServer,
    SetWeight,
    ShowBackend,
    ShowCliLevel,
    ShowInfo,
    ShowServersState,
    ShowStat,
    ShowVersion,
    ShutdownSessions,
    Trace,
    User,
    Help,
    Prompt,
    Quit,
}

/// lb's commands, in the order HAProxy lists them (its `help` sorts by usage).
pub const KEYWORDS: &[Keyword] = &[
    Keyword {
        words: &["disable", "health"],
        usage: "disable health                          : disable health checks",
        cmd: Kw::DisableHealth,
    },
    Keyword {
        words: &["disable", "server"],
        usage: "disable server (DEPRECATED)             : disable a server for maintenance (use 'set server' instead)",
        cmd: Kw::DisableServer,
    },
    Keyword {
        words: &["enable", "health"],
        usage: "enable health                           : enable health checks",
        cmd: Kw::EnableHealth,
    },
    Keyword {
        words: &["enable", "server"],
        usage: "enable server  (DEPRECATED)             : enable a disabled server (use 'set server' instead)",
        cmd: Kw::EnableServer,
    },
    Keyword {
        words: &["get", "weight"],
        usage: "get weight <bk>/<srv>                   : report a server's current weight",
        cmd: Kw::GetWeight,
    },
    Keyword {
        words: &["operator"],
        usage: "operator                                : lower the level of the current CLI session to operator",
        cmd: Kw::Operator,
    },
    Keyword {
        words: &["set", "server"],
        usage: "set server <bk>/<srv> [opts]            : change a server's state, weight, address or ssl",
        cmd: Kw::SetServer,
    },
    Keyword {
        words: &["set", "weight"],
        usage: "set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use 'set server' instead)",
        cmd: Kw::SetWeight,
    },
    Keyword {
        words: &["show", "backend"],
        usage: "show backend                            : list backends in the current running config",
        cmd: Kw::ShowBackend,
    },
    Keyword {
        words: &["show", "cli", "level"],
        usage: "show cli level                          : display the level of the current CLI session",
        cmd: Kw::ShowCliLevel,
    },
    Keyword {
        words: &["show", "info"],
        usage: "show info [desc|json|typed|float]*      : report information about the running process",
        cmd: Kw::ShowInfo,
    },
    Keyword {
        words: &["show", "servers", "state"],
        usage: "show servers state [<backend>]          : dump volatile server information (all or for a single backend)",
        cmd: Kw::ShowServersState,
    },
    Keyword {
        words: &["show", "stat"],
        usage: "show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server",
        cmd: Kw::ShowStat,
    },
    Keyword {
        words: &["show", "version"],
        usage: "show version                            : show version of the current process",
        cmd: Kw::ShowVersion,
    },
    Keyword {
        words: &["shutdown", "sessions", "server"],
        usage: "shutdown sessions server <bk>/<srv>     : kill sessions on a server",
        cmd: Kw::ShutdownSessions,
    },
    Keyword {
        words: &["trace", "xdp"],
        usage: "trace xdp on [vip <addr>[:<port>]]|off  : print why the data plane passes, drops or rewrites packets (lb)",
        cmd: Kw::Trace,
    },
    Keyword {
        words: &["user"],
        usage: "user                                    : lower the level of the current CLI session to user",
        cmd: Kw::User,
    },
];

/// Commands HAProxy always appends to its help (they have no usage of their own).
const ALWAYS: &[(&str, Kw)] = &[
    ("help", Kw::Help),
    ("prompt", Kw::Prompt),
    ("quit", Kw::Quit),
];

const ALWAYS_USAGE: &str = "  help [<command>]                        : list matching or all commands\n  \
     prompt                                  : toggle interactive mode with prompt\n  \
     quit                                    : disconnect\n";

/// `cli_find_kw`: the first command whose every keyword word equals the request's word at
/// the same place.
pub fn find(args: &[String]) -> Option<Kw> {
    let matches = |kw: &[&str]| {
        kw.iter()
            .enumerate()
            .all(|(i, w)| args.get(i).map(String::as_str) == Some(*w))
    };
    ALWAYS
        .iter()
        .find(|(w, _)| matches(&[w]))
        .map(|&(_, k)| k)
        .or_else(|| KEYWORDS.iter().find(|k| matches(k.words)).map(|k| k.cmd))
}

/// How far a request's words (from `from` on) are from a keyword's (HAProxy's fuzzy match),
/// with the sum of the lengths of both, which bounds what counts as similar.
pub fn distance(args: &[String], kw: &[&str], from: usize) -> (u32, usize) {
    let mut a = Fingerprint::default();
    let mut b = Fingerprint::default();
    let mut total = 0;
    for w in args.iter().take(PREFIX_KW_NB).skip(from) {
        if w.is_empty() {
            break;
        }
        a.add(w);
        total += w.len();
    }
    for w in kw.iter().take(PREFIX_KW_NB).skip(from) {
        b.add(w);
        total += w.len();
    }
    (a.distance(&b), total)
}

/// `cli_gen_usage_msg`, over any command table given as `(words, usage)`: `help [words]`,
/// or the answer to an unknown command (`args` is the request, `help` included if it is
/// one). Commands that share the request's leading words are listed, or, when more words
/// follow, the (at most 5) closest ones; then help, prompt and quit.
pub fn usage_over(table: &[(&[&str], &str)], args: &[String]) -> String {
    let (ishelp, args) = match args.first().map(String::as_str) {
        Some("help") => (true, &args[1..]),
        _ => (false, args),
    };
    let prefix_len = |kw: &[&str]| {
        kw.iter()
            .take(PREFIX_KW_NB)
            .zip(args)
            .take_while(|(k, a)| !a.is_empty() && **k == a.as_str())
            .count()
    };
    let length = table
        .iter()
        .map(|(kw, _)| prefix_len(kw))
        .max()
        .unwrap_or(0);
    let mut out = String::from(if ishelp {
        "The following commands are valid at this level:\n"
    } else if length == 0 && args.first().is_none_or(|a| a.is_empty()) {
        "Unknown command. Please enter one of the following commands only:\n"
    } else {
        "Unknown command, but maybe one of the following ones is a better match:\n"
    });
    // Fuzzy matches on the words after the common prefix, best first; on equal distances
    // the earlier command keeps its place.
    let mut matches: Vec<(u32, &str)> = Vec::new();
    if args.get(length).is_some_and(|a| !a.is_empty()) {
        for (kw, usage) in table {
            if prefix_len(kw) < length || kw.len() < length {
                continue;
            }
            let (d, total) = distance(args, kw, length);
            let worst = if matches.len() < MAX_MATCHES {
                u32::MAX
            } else {
                matches[MAX_MATCHES - 1].0
            };
            if (d as usize) < 5 * total / 2 && d < worst {
                let at = matches.partition_point(|(m, _)| *m <= d);
                matches.insert(at, (d, usage));
                matches.truncate(MAX_MATCHES);
            }
        }
    }
    let mut entries: Vec<&str> = if let Some(&(best, _)) = matches.first() {
        matches
            .iter()
            .take_while(|(d, _)| *d <= 5 * best / 2)
            .map(|(_, u)| *u)
            .collect()
    } else {
        table
            .iter()
            .filter(|(kw, _)| prefix_len(kw) >= length && kw.len() >= length)
            .map(|(_, u)| *u)
            .collect()
    };
    entries.sort_unstable();
    for e in entries {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(ALWAYS_USAGE);
    out
}

/// [`usage_over`] lb's own commands.
pub fn usage(args: &[String]) -> String {
    let table: Vec<(&[&str], &str)> = KEYWORDS.iter().map(|k| (k.words, k.usage)).collect();
    usage_over(&table, args)
}

/// `cli_has_level`: `None` when allowed, else HAProxy's answer.
pub fn require(have: ApiLevel, need: ApiLevel) -> Option<&'static str> {
    (have < need).then_some(PERMISSION_DENIED)
}

pub fn level_name(l: ApiLevel) -> &'static str {
    match l {
        ApiLevel::User => "user",
        ApiLevel::Operator => "operator",
        ApiLevel::Admin => "admin",
    }
}

/// `cli_find_server`'s first step: `backend/server` split at the first `/`.
pub fn backend_server(arg: Option<&String>) -> Result<(String, String), &'static str> {
    let arg = arg.map(String::as_str).unwrap_or("");
    match arg.split_once('/') {
        Some((b, s)) if !b.is_empty() && !s.is_empty() => Ok((b.to_string(), s.to_string())),
        _ => Err(REQUIRE_BACKEND_SERVER),
    }
}

/// Administrative state, as `set server ... state` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

/// A change an operator asks for, once the words are understood. Errors that HAProxy
/// reports only after finding the server are carried along (`Invalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    State(AdminState),
    /// The weight as written (absolute, or `N%` of the initial weight).
    Weight(String),
    /// `set server ... health up|down`.
    Health(bool),
    /// `enable|disable health`.
    Checks(bool),
    /// `shutdown sessions server`: end the server's established flows.
    Shutdown,
    /// `set server ... addr <ip> [port <port>]`.
    Addr(AddrChange),
    /// Found the server, then answer this.
    Invalid(String),
}

/// `set server <b>/<s> addr <ip> [port <port>]`, understood as HAProxy reads it: the address
/// numerically, either family, IPv6 bracketed or not (`str2ip2` without resolution); the port
/// with `strtol` into 16 bits (`99999` is 34463), its error answered after the address's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrChange {
    pub ip: IpAddr,
    /// The address as written: HAProxy's answer quotes it so (`'[fd00:16::13]'`).
    pub written: String,
    /// `port` given: the port, or what HAProxy answers about it.
    pub port: Option<Result<u16, String>>,
}

/// What `set server ... addr` answers without an address.
pub const ADDR_REQUIRED: &str =
    "set server <b>/<s> addr requires an address and optionally a port.\n";

fn parse_addr_change(addr: &str, kw: &str, port: &str) -> Action {
    if addr.is_empty() {
        return Action::Invalid(ADDR_REQUIRED.into());
    }
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Action::Invalid(format!("Invalid addr '{addr}' by 'stats socket command'\n"));
    };
    Action::Addr(AddrChange {
        ip,
        written: addr.to_string(),
        port: (kw == "port").then(|| strtol_port(port)),
    })
}

/// `(uint16_t)strtol(s, &end, 10)` as HAProxy converts a port: leading digits (after spaces
/// and a sign) taken modulo 2^16; none is an error.
fn strtol_port(s: &str) -> Result<u16, String> {
    let t = s.trim_start();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("problem converting port '{s}' to an int"));
    }
    let n = body[..digits].bytes().fold(0i64, |n, d| {
        n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    });
    // strtol saturates at LONG_MAX with ERANGE, which HAProxy reports too.
    if n == i64::MAX {
        return Err(format!("problem converting port '{s}' to an int"));
    }
    Ok((if neg { -n } else { n }) as u16)
}

/// What `set server ... addr` does to a server at `current`: HAProxy's answer, and the
/// address to apply when it changes (`to`). lb changes the address only: a port change is
/// refused (flows and checks are keyed by it), and so is a change of family (a server's
/// family decides its pool slot and maps) and a server without an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrPlan {
    pub to: Option<IpAddr>,
    pub answer: String,
}

/// The tail of every answer, as HAProxy words it.
const BY_SOCKET: &str = " by 'stats socket command'\n";

pub fn plan_addr_change(current: SocketAddr, c: &AddrChange) -> AddrPlan {
    let refuse = |answer: String| AddrPlan { to: None, answer };
    if current.ip().is_unspecified() {
        // A server whose name resolves to nothing: HAProxy's answer for an address of no
        // family.
        return refuse(format!(
            "Update for the current server address family is only supported through configuration file{BY_SOCKET}"
        ));
    }
    let changes = c.ip != current.ip();
    if changes && c.ip.is_ipv4() != current.is_ipv4() {
        return refuse(ADDR_FAMILY.into());
    }
    let mut msg = if changes {
        format!(
            "IP changed from '{}' to '{}'",
            crate::addr_text::ip(current.ip()),
            c.written
        )
    } else {
        "no need to change the addr".to_string()
    };
    match &c.port {
        None => {}
        Some(Err(e)) => {
            msg.push_str(", ");
            msg.push_str(e);
        }
        Some(Ok(p)) if *p == current.port() => msg.push_str(", no need to change the port"),
        Some(Ok(_)) => return refuse(ADDR_PORT.into()),
    }
    msg.push_str(BY_SOCKET);
    AddrPlan {
        to: changes.then_some(c.ip),
        answer: msg,
    }
}

/// Why lb does not move a server to another family at run time.
pub const ADDR_FAMILY: &str = "lb: a server's address family cannot change at run time (its family decides its pool and maps); change it in the configuration and reload.\n";
/// Why lb does not change a server's port at run time.
pub const ADDR_PORT: &str = "lb: changing a server's port at run time is not supported; change it in the configuration and reload.\n";

/// A state-changing command for one server: the serve loop finds the server (answering
/// [`NO_SUCH_BACKEND`] / [`NO_SUCH_SERVER`]), then applies the action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCmd {
    pub backend: String,
    pub server: String,
    pub action: Action,
}

/// `trace xdp`: tracing on (for packets of `vip`, if given) or off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceCmd {
    pub on: bool,
    /// `ADDR` or `ADDR:PORT`, as written.
    pub vip: Option<String>,
}

/// What `trace xdp` answers to words it does not understand.
pub const TRACE_EXPECTS: &str = "'trace xdp' expects 'on [vip <addr>[:<port>]]' or 'off'.\n";

/// `show stat` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatOpts {
    /// `up`: hide servers that are not UP (and maintenance).
    pub hide_down: bool,
    /// `no-maint`: hide servers in maintenance.
    pub hide_maint: bool,
    /// `{<iid>|<proxy>} <type> <sid>`: only this proxy (by name or id, `-1` for all), these
    /// row types (bits: 1 frontend, 2 backend, 4 server, `-1` for all), this server id.
    pub bound: Option<(ProxySel, i64, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxySel {
    Name(String),
    Id(i64),
}

/// A request, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help(Vec<String>),
    Prompt,
    Quit,
    /// `operator` / `user`; `quiet` (`user -`) skips the trailing empty line.
    SetLevel {
        level: ApiLevel,
        quiet: bool,
    },
    ShowCliLevel,
    ShowVersion,
    ShowInfo,
    ShowStat(StatOpts),
    ShowServersState(Option<String>),
    ShowBackend,
    GetWeight(String, String),
    Admin(AdminCmd),
    /// `trace xdp on [vip ADDR[:PORT]]` / `trace xdp off`.
    Trace(TraceCmd),
    /// Answer this text (errors found while parsing, usage for unknown commands).
    Reply(String),
}

/// What HAProxy answers to an option lb does not offer.
fn unsupported(what: &str) -> String {
    format!("lb: '{what}' is not supported by lb.\n")
}

/// Parses one request's words at session level `level`. Level checks happen here, in
/// HAProxy's order (before looking the server up).
pub fn parse(args: &[String], level: ApiLevel) -> Command {
    // An empty request is an unknown command too: HAProxy lists every command.
    let Some(kw) = find(args) else {
        return Command::Reply(usage(args));
    };
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let need_admin = |c: Command| match require(level, ApiLevel::Admin) {
        Some(denied) => Command::Reply(denied.into()),
        None => c,
    };
    let server_cmd = |at: usize, action: Action| match backend_server(args.get(at)) {
        Ok((backend, server)) => Command::Admin(AdminCmd {
            backend,
            server,
            action,
        }),
        Err(e) => Command::Reply(e.into()),
    };
    match kw {
        Kw::Help => Command::Help(args.to_vec()),
        Kw::Prompt => Command::Prompt,
        Kw::Quit => Command::Quit,
        Kw::Operator | Kw::User => {
            let want = if kw == Kw::Operator {
                ApiLevel::Operator
            } else {
                ApiLevel::User
            };
            match require(level, want) {
                Some(denied) => Command::Reply(denied.into()),
                None => Command::SetLevel {
                    level: want,
                    quiet: arg(1) == "-",
                },
            }
        }
        Kw::ShowCliLevel => Command::ShowCliLevel,
        Kw::ShowVersion => Command::ShowVersion,
        Kw::ShowInfo => {
            for a in &args[2..] {
                match a.as_str() {
                    "float" => {}
                    "desc" | "json" | "typed" => {
                        return Command::Reply(unsupported(&format!("show info {a}")));
                    }
                    _ => {}
                }
            }
            Command::ShowInfo
        }
        Kw::ShowStat => parse_show_stat(&args[2..]),
        Kw::ShowServersState => Command::ShowServersState(args.get(3).cloned()),
        Kw::ShowBackend => Command::ShowBackend,
        Kw::GetWeight => match backend_server(args.get(2)) {
            Ok((b, s)) => Command::GetWeight(b, s),
            Err(e) => Command::Reply(e.into()),
        },
        Kw::DisableServer => need_admin(server_cmd(2, Action::State(AdminState::Maint))),
        Kw::EnableServer => need_admin(server_cmd(2, Action::State(AdminState::Ready))),
        Kw::DisableHealth => need_admin(server_cmd(2, Action::Checks(false))),
        Kw::EnableHealth => need_admin(server_cmd(2, Action::Checks(true))),
        Kw::SetWeight => need_admin(server_cmd(2, Action::Weight(arg(3).to_string()))),
        Kw::SetServer => need_admin(server_cmd(
            2,
            match arg(3) {
                "addr" => parse_addr_change(arg(4), arg(5), arg(6)),
                opt => set_server_action(opt, arg(4)),
            },
        )),
        Kw::ShutdownSessions => need_admin(server_cmd(3, Action::Shutdown)),
        Kw::Trace => need_admin(match (arg(2), arg(3), args.get(4), args.len()) {
            ("on", "", _, 3) => Command::Trace(TraceCmd {
                on: true,
                vip: None,
            }),
            ("on", "vip", Some(v), 5) => Command::Trace(TraceCmd {
                on: true,
                vip: Some(v.clone()),
            }),
            ("off", "", _, 3) => Command::Trace(TraceCmd {
                on: false,
                vip: None,
            }),
            _ => Command::Reply(TRACE_EXPECTS.into()),
        }),
    }
}

fn set_server_action(opt: &str, value: &str) -> Action {
    match opt {
        "weight" => Action::Weight(value.to_string()),
        "state" => match value {
            "ready" => Action::State(AdminState::Ready),
            "drain" => Action::State(AdminState::Drain),
            "maint" => Action::State(AdminState::Maint),
            _ => Action::Invalid(STATE_EXPECTS.into()),
        },
        "health" => match value {
            "up" => Action::Health(true),
            "down" => Action::Health(false),
            // An L4 balancer has no NOLB state: 'stopping' is refused rather than faked.
            "stopping" => Action::Invalid(unsupported("set server <srv> health stopping")),
            _ => Action::Invalid(HEALTH_EXPECTS.into()),
        },
        "agent" | "agent-addr" | "agent-port" | "agent-send" | "check-addr" | "check-port"
        | "fqdn" | "ssl" => Action::Invalid(unsupported(&format!("set server <srv> {opt}"))),
        _ => Action::Invalid(
            "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | \
             agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n"
                .into(),
        ),
    }
}

fn parse_show_stat(rest: &[String]) -> Command {
    let mut opts = StatOpts::default();
    let mut rest = rest;
    if rest.first().map(String::as_str) == Some("domain") {
        match rest.get(1).map(String::as_str) {
            Some("proxy") => rest = &rest[2..],
            Some("resolvers") => return Command::Reply(unsupported("show stat domain resolvers")),
            _ => return Command::Reply("Invalid statistics domain.\n".into()),
        }
    }
    if rest.len() >= 3 && rest[..3].iter().all(|a| !a.is_empty()) {
        // HAProxy tries the name first, then atoi(); 0 means "No such proxy."
        let sel = match rest[0].parse::<i64>() {
            Ok(0) => return Command::Reply("No such proxy.\n".into()),
            Ok(n) => ProxySel::Id(n),
            Err(_) => ProxySel::Name(rest[0].clone()),
        };
        opts.bound = Some((sel, atoi(&rest[1]), atoi(&rest[2])));
        rest = &rest[3..];
    }
    for a in rest {
        match a.as_str() {
            "up" => opts.hide_down = true,
            "no-maint" => opts.hide_maint = true,
            "typed" | "json" | "desc" => {
                return Command::Reply(unsupported(&format!("show stat {a}")));
            }
            _ => {}
        }
    }
    Command::ShowStat(opts)
}

/// C's `atoi`: leading digits (with a sign), 0 when none.
pub fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg { -n } else { n }
}

/// `server_parse_weight_change_request`: an absolute weight 0..=256, or `N%` of the initial
/// weight (capped at 256).
pub fn parse_weight(s: &str, initial: u32) -> Result<u32, &'static str> {
    if s.is_empty() {
        return Err("Require <weight> or <weight%>.\n");
    }
    // strtol: optional spaces and sign, then digits.
    let t = s.trim_start();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ndigits = body.bytes().take_while(u8::is_ascii_digit).count();
    if ndigits == 0 {
        return Err("Empty weight string empty or preceded by garbage");
    }
    let magnitude = body[..ndigits].bytes().fold(0i64, |n, d| {
        n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    });
    let w = if neg { -magnitude } else { magnitude };
    let end = &body[ndigits..];
    if end == "%" {
        if w < 0 {
            return Err("Relative weight must be positive.\n");
        }
        let w = w.min(25600);
        return Ok((i64::from(initial) * w / 100).min(256) as u32);
    }
    if !(0..=256).contains(&w) {
        return Err("Absolute weight can only be between 0 and 256 inclusive.\n");
    }
    if !end.is_empty() {
        return Err("Trailing garbage in weight string");
    }
    Ok(w as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s.as_bytes())
    }

    #[test]
    fn requests_end_at_newline_or_semicolon() {
        assert_eq!(
            next_request(b"show info; show stat\n"),
            Next::Request(b"show info", 10)
        );
        assert_eq!(
            next_request(b" show stat\n"),
            Next::Request(b" show stat", 11)
        );
        assert_eq!(
            next_request(b"show stat\r\n"),
            Next::Request(b"show stat", 11)
        );
        assert_eq!(next_request(b"show st"), Next::Partial);
        assert_eq!(
            next_request(b"a\\;b;c"),
            Next::Request(b"a\\;b", 5),
            "an escaped ; does not end the request"
        );
        assert_eq!(next_request(&vec![b'x'; MAX_REQUEST + 10]), Next::TooLong);
        assert_eq!(next_request(&vec![b'x'; MAX_REQUEST - 1]), Next::Partial);
    }

    #[test]
    fn words_and_escapes() {
        assert_eq!(
            w("  set  server\thoge/web11 state drain "),
            ["set", "server", "hoge/web11", "state", "drain"]
        );
        assert_eq!(w("a\\ b c\\\\d e\\;"), ["a b", "c\\d", "e;"]);
        assert_eq!(w("show stat\0garbage"), ["show", "stat"]);
        assert!(w("").is_empty());
        assert_eq!(words(&[b'a'; 10].repeat(100)).len(), 1);
        let many = "x ".repeat(100);
        assert_eq!(w(&many).len(), MAX_ARGS);
        assert_eq!(words(&[0xff, 0xfe, b' ', b'a']), ["\u{fffd}\u{fffd}", "a"]);
    }

    #[test]
    fn finds_commands_by_their_words() {
        assert_eq!(find(&w("show stat")), Some(Kw::ShowStat));
        assert_eq!(find(&w("show stat up")), Some(Kw::ShowStat));
        assert_eq!(
            find(&w("show servers state hoge")),
            Some(Kw::ShowServersState)
        );
        assert_eq!(find(&w("show servers")), None);
        assert_eq!(find(&w("help")), Some(Kw::Help));
        assert_eq!(find(&w("quit")), Some(Kw::Quit));
        assert_eq!(find(&w("set weight hoge/web10 3")), Some(Kw::SetWeight));
        assert_eq!(find(&w("bogus")), None);
    }

    #[test]
    fn help_lists_lbs_commands_like_haproxy() {
        let h = usage(&w("help"));
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "The following commands are valid at this level:");
        assert_eq!(lines.len(), 1 + KEYWORDS.len() + 3);
        let mut sorted = lines[1..=KEYWORDS.len()].to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            lines[1..=KEYWORDS.len()].to_vec(),
            "sorted by usage"
        );
        assert!(h.ends_with(ALWAYS_USAGE));
        // `help show` lists the show commands only.
        let show = usage(&w("help show"));
        assert!(
            show.lines()
                .skip(1)
                .take(6)
                .all(|l| l.starts_with("  show ")),
            "{show}"
        );
        assert!(!show.contains("set weight"));
    }

    /// HAProxy 2.6's own table, from its `help` in the reference capture: the fuzzy matcher
    /// must pick what HAProxy picked for `bogus command`.
    #[test]
    fn fuzzy_suggestions_match_haproxys_over_haproxys_table() {
        let capture = include_str!("testdata/haproxy-2.6-runtime-api.txt");
        let help: Vec<&str> = capture
            .split("### help\n")
            .nth(1)
            .expect("help section")
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| &l[2..])
            .collect();
        assert_eq!(help.len(), 103);
        // The keyword words are the usage's leading plain words (HAProxy spells one
        // differently from its usage: "new ssl crlfile" is the keyword "crl-file").
        let kws: Vec<Vec<&str>> = help
            .iter()
            .map(|u| {
                let mut ws: Vec<&str> = u
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .take_while(|w| {
                        w.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
                            && w.bytes()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    })
                    .collect();
                if ws == ["new", "ssl", "crlfile"] {
                    ws[2] = "crl-file";
                }
                ws
            })
            .collect();
        // help, prompt and quit are not keywords with a usage.
        let table: Vec<(&[&str], &str)> = kws[..100]
            .iter()
            .zip(&help[..100])
            .map(|(k, u)| (k.as_slice(), *u))
            .collect();
        let want = capture
            .split("### bogus command\n")
            .nth(1)
            .expect("bogus section")
            .split("\n\n")
            .next()
            .expect("block");
        let got = usage_over(&table, &w("bogus command"));
        let want_set: std::collections::BTreeSet<&str> = want.lines().skip(1).collect();
        // Ties at the cut are decided by HAProxy's registration order (its link order),
        // which a sorted table does not reproduce: check the distances instead. Every
        // suggestion HAProxy made is within the fifth best distance, every other command
        // at or beyond it.
        let args = w("bogus command");
        let mut dists: Vec<(u32, &str)> = table
            .iter()
            .map(|(k, u)| (distance(&args, k, 0).0, *u))
            .collect();
        dists.sort();
        let cut = dists[MAX_MATCHES - 1].0;
        for (d, u) in &dists {
            let line = format!("  {u}");
            if want_set.contains(line.as_str()) {
                assert!(*d <= cut, "{u}: {d} > {cut}");
            } else {
                assert!(*d >= cut, "{u}: {d} < {cut} but HAProxy did not suggest it");
            }
        }
        // And with HAProxy's order for the tie ("show backend" registered before "add acl"),
        // the whole block is HAProxy's, byte for byte.
        let mut ordered = table.clone();
        let sb = ordered
            .iter()
            .position(|(k, _)| *k == ["show", "backend"])
            .expect("show backend");
        let e = ordered.remove(sb);
        ordered.insert(0, e);
        assert_eq!(usage_over(&ordered, &args), format!("{want}\n"));
        assert!(got.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ));
    }

    #[test]
    fn unknown_commands_suggest_lbs_closest() {
        let u = usage(&w("show stats"));
        assert!(u.starts_with("Unknown command, but maybe"), "{u}");
        assert!(
            u.contains("  show stat [desc|json|no-maint|typed|up]*"),
            "{u}"
        );
        assert!(usage(&[]).starts_with("Unknown command. Please enter one"));
    }

    #[test]
    fn levels_are_enforced_before_finding_the_server() {
        let denied = Command::Reply(PERMISSION_DENIED.into());
        for cmd in [
            "disable server hoge/web11",
            "enable server hoge/web11",
            "set server hoge/web11 state drain",
            "set weight hoge/web11 3",
            "disable health nope",
        ] {
            assert_eq!(parse(&w(cmd), ApiLevel::User), denied, "{cmd}");
            assert_eq!(parse(&w(cmd), ApiLevel::Operator), denied, "{cmd}");
        }
        assert_eq!(
            parse(&w("show stat"), ApiLevel::User),
            Command::ShowStat(StatOpts::default())
        );
        assert_eq!(
            parse(&w("get weight hoge/web10"), ApiLevel::User),
            Command::GetWeight("hoge".into(), "web10".into())
        );
        assert_eq!(parse(&w("operator"), ApiLevel::User), denied);
        assert_eq!(
            parse(&w("user"), ApiLevel::Admin),
            Command::SetLevel {
                level: ApiLevel::User,
                quiet: false
            }
        );
    }

    /// HAProxy's answer to `title` in the IPv6 capture (`### set server ...`).
    fn ipv6_answer(title: &str, nth: usize) -> &'static str {
        include_str!("testdata/haproxy-2.6-ipv6-runtime-api.txt")
            .split(&format!("### {title}\n"))
            .nth(nth)
            .expect("section")
            .split_inclusive('\n')
            .next()
            .expect("answer")
    }

    /// What lb answers to `set server hoge/web10 ...` while web10 is at `current`.
    fn addr_answer(cmd: &str, current: &str) -> String {
        let Command::Admin(AdminCmd { action, .. }) = parse(&w(cmd), ApiLevel::Admin) else {
            panic!("{cmd}: not a server command");
        };
        match action {
            Action::Addr(c) => plan_addr_change(current.parse().expect("sa"), &c).answer,
            Action::Invalid(text) => text,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    #[test]
    fn set_server_addr_reads_either_family_as_haproxy_does() {
        let set = |rest: &str| format!("set server hoge/web10 addr{rest}");
        // Answers that change nothing, or refuse the words: HAProxy's, byte for byte.
        for (rest, current, nth) in [
            (" fd00:16::12", "[fd00:16::10]:8000", 1),
            (" [fd00:16::13]", "[fd00:16::12]:8000", 1),
            (" ::ffff:127.0.0.1", "[fd00:16::10]:8000", 1),
            (" fd00:16::12", "[fd00:16::12]:8000", 2),
            (" fd00:16::zz", "[fd00:16::10]:8000", 1),
            (" fd00:16::10 port abc", "[fd00:16::10]:8000", 1),
            ("", "[fd00:16::10]:8000", 1),
        ] {
            assert_eq!(
                addr_answer(&set(rest), current),
                ipv6_answer(&set(rest), nth),
                "{rest}"
            );
        }
        // Either family, bracketed or not, parses; a change within the family is planned, a
        // change of family refused with lb's reason.
        for (rest, ip, to) in [
            (" fd00:16::12", "fd00:16::12", None),
            (" [fd00:16::13]", "fd00:16::13", None),
            (" 127.0.0.5", "127.0.0.5", Some("127.0.0.5")),
            (" ::ffff:127.0.0.1", "::ffff:127.0.0.1", None),
        ] {
            let Command::Admin(AdminCmd {
                action: Action::Addr(c),
                ..
            }) = parse(&w(&set(rest)), ApiLevel::Admin)
            else {
                panic!("{rest}");
            };
            assert_eq!(c.ip, ip.parse::<IpAddr>().expect("ip"));
            assert_eq!(c.written, rest.trim());
            let plan = plan_addr_change("10.0.0.1:80".parse().expect("sa"), &c);
            assert_eq!(plan.to, to.map(|t| t.parse::<IpAddr>().expect("ip")));
            if to.is_none() {
                assert_eq!(plan.answer, ADDR_FAMILY);
            } else {
                assert_eq!(
                    plan.answer,
                    format!("IP changed from '10.0.0.1' to '{}'{BY_SOCKET}", rest.trim())
                );
            }
        }
        // The port as HAProxy converts it: `port 99999` became 34463 in the capture.
        assert!(ipv6_answer(&set(" fd00:16::10 port 99999"), 1).contains("to '34463'"));
        assert_eq!(strtol_port("99999"), Ok(34463));
        assert_eq!(strtol_port("8001"), Ok(8001));
        assert_eq!(
            strtol_port(""),
            Err("problem converting port '' to an int".into())
        );
        assert_eq!(
            addr_answer(&set(" fd00:16::10 port 8000"), "[fd00:16::10]:8000"),
            "no need to change the addr, no need to change the port by 'stats socket command'\n"
        );
        assert_eq!(
            addr_answer(&set(" fd00:16::10 port 8001"), "[fd00:16::10]:8000"),
            ADDR_PORT
        );
        // Only admin sockets may ask.
        assert_eq!(
            parse(&w(&set(" fd00:16::12")), ApiLevel::Operator),
            Command::Reply(
                require(ApiLevel::Operator, ApiLevel::Admin)
                    .expect("denied")
                    .into()
            )
        );
    }

    #[test]
    fn server_commands() {
        let a = ApiLevel::Admin;
        let cmd = |b: &str, s: &str, action| {
            Command::Admin(AdminCmd {
                backend: b.into(),
                server: s.into(),
                action,
            })
        };
        assert_eq!(
            parse(&w("disable server hoge/web11"), a),
            cmd("hoge", "web11", Action::State(AdminState::Maint))
        );
        assert_eq!(
            parse(&w("set server hoge/web11 state drain"), a),
            cmd("hoge", "web11", Action::State(AdminState::Drain))
        );
        assert_eq!(
            parse(&w("set server hoge/web11 state bogus"), a),
            cmd("hoge", "web11", Action::Invalid(STATE_EXPECTS.into()))
        );
        assert_eq!(
            parse(&w("set server hoge/web11 weight 5"), a),
            cmd("hoge", "web11", Action::Weight("5".into()))
        );
        assert_eq!(
            parse(&w("set server hoge/web11 addr 10.0.0.9 port 80"), a),
            cmd(
                "hoge",
                "web11",
                Action::Addr(AddrChange {
                    ip: "10.0.0.9".parse().expect("ip"),
                    written: "10.0.0.9".into(),
                    port: Some(Ok(80)),
                })
            )
        );
        assert_eq!(
            parse(&w("set server hoge/web11 addr"), a),
            cmd("hoge", "web11", Action::Invalid(ADDR_REQUIRED.into()))
        );
        assert_eq!(
            parse(&w("set weight hoge/web10 300"), a),
            cmd("hoge", "web10", Action::Weight("300".into()))
        );
        for bad in [
            "disable server hoge",
            "disable server /web11",
            "disable server hoge/",
            "set weight",
        ] {
            assert_eq!(
                parse(&w(bad), a),
                Command::Reply(REQUIRE_BACKEND_SERVER.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn weights_parse_like_haproxy() {
        assert_eq!(parse_weight("0", 1), Ok(0));
        assert_eq!(parse_weight("256", 1), Ok(256));
        assert_eq!(
            parse_weight("300", 1),
            Err("Absolute weight can only be between 0 and 256 inclusive.\n")
        );
        assert_eq!(
            parse_weight("-1", 1),
            Err("Absolute weight can only be between 0 and 256 inclusive.\n")
        );
        assert_eq!(parse_weight("50%", 10), Ok(5));
        assert_eq!(parse_weight("1000%", 50), Ok(256));
        assert_eq!(
            parse_weight("-5%", 10),
            Err("Relative weight must be positive.\n")
        );
        assert_eq!(parse_weight("", 1), Err("Require <weight> or <weight%>.\n"));
        assert_eq!(
            parse_weight("x", 1),
            Err("Empty weight string empty or preceded by garbage")
        );
        assert_eq!(
            parse_weight("3x", 1),
            Err("Trailing garbage in weight string")
        );
        assert!(parse_weight("99999999999999999999999", 1).is_err());
    }

    #[test]
    fn show_stat_options() {
        let a = ApiLevel::User;
        assert_eq!(
            parse(&w("show stat hoge 4 -1"), a),
            Command::ShowStat(StatOpts {
                bound: Some((ProxySel::Name("hoge".into()), 4, -1)),
                ..StatOpts::default()
            })
        );
        assert_eq!(
            parse(&w("show stat -1 2 -1 up"), a),
            Command::ShowStat(StatOpts {
                bound: Some((ProxySel::Id(-1), 2, -1)),
                hide_down: true,
                ..StatOpts::default()
            })
        );
        assert!(matches!(parse(&w("show stat json"), a), Command::Reply(_)));
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("-1"), -1);
        assert_eq!(atoi("x"), 0);
    }
}
