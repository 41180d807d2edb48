//! haproxy.cfg front end: HAProxy 2.6's grammar (sections, tokenizer, `no`/`default`
//! prefixes, defaults inheritance) for the L4 subset lb implements, mapped onto the one
//! [`Config`] model the native TOML front end also produces.
//!
//! Rules of thumb, so `lb check` reads like `haproxy -c`:
//! - every problem is collected in one pass; alerts make the file unusable, warnings do not;
//! - unknown keywords are alerts with HAProxy's "did you mean" suggestion;
//! - HTTP-only (L7) directives get exactly one warning each saying why they have no effect
//!   at L4; HAProxy features lb lacks and whose absence changes what traffic reaches which
//!   server (ACL switching, persistence, TLS, access rules) are alerts.
//!
//! HAProxy 2.6 has no line continuation: a trailing backslash is kept as a literal `\` in
//! the last word (its tokenizer only treats `\` as an escape before a known character).
use crate::fuzzy::Fingerprint;
use std::{collections::HashMap, net::Ipv4Addr, sync::Arc, time::Duration};

use super::{
    diag::{ConfigError, Diagnostic},
    model::*,
    native, units,
};

pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// HAProxy's `MAX_LINE_ARGS`.
pub const MAX_LINE_ARGS: usize = 64;
/// HAProxy stops reading a file after this many fatal errors.
const MAX_FATAL: usize = 50;
/// Listening addresses (after port-range expansion) accepted in one file; the data plane
/// holds far fewer, this only keeps `bind :1-65535` repeated a million times from eating RAM.
const MAX_TOTAL_BINDS: usize = 1 << 16;
/// HAProxy timers are signed 32-bit milliseconds.
const MAX_TIMER_MS: u128 = 2_147_483_647;

// ---------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------

/// Why a line could not be cut into words; `pos` is 1-based, in bytes from the start of the
/// raw line (as HAProxy counts it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    UnmatchedQuote { pos: usize },
    BadHex { pos: usize },
    VarName { pos: usize },
    Brace { pos: usize },
    WrongExpand { pos: usize },
    TooMany,
    NotUtf8 { word: usize },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::UnmatchedQuote { pos } => write!(f, "unmatched quote at position {pos}"),
            TokenError::BadHex { pos } => write!(
                f,
                "truncated or invalid hexadecimal sequence at position {pos}"
            ),
            TokenError::VarName { pos } => write!(
                f,
                "forbidden first char in environment variable name at position {pos}"
            ),
            TokenError::Brace { pos } => write!(
                f,
                "unmatched brace in environment variable name at position {pos}"
            ),
            TokenError::WrongExpand { pos } => write!(
                f,
                "truncated or invalid word expansion sequence at position {pos}"
            ),
            TokenError::TooMany => {
                write!(f, "too many words on the line (at most {MAX_LINE_ARGS})")
            }
            TokenError::NotUtf8 { word } => write!(
                f,
                "word {word} is not valid UTF-8 once unescaped (check its \\x escapes)"
            ),
        }
    }
}

/// What an environment variable lookup gives: `Err(())` for an unknown pseudo-variable
/// (`${.FOO}`), which HAProxy refuses.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ()>;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

/// Cuts one configuration line into words exactly as HAProxy 2.6's `parse_line()` does with
/// the options `readcfgfile()` passes: `#` comments, `"weak"` and `'strong'` quoting,
/// backslash escapes (`\ `, `\\`, `\#`, `\'`, `\"`, `\t`, `\n`, `\r`, `\xNN`, and `\$` inside
/// double quotes; any other backslash is kept as is), and `$VAR` / `${VAR}` / `${VAR-default}`
/// / `${VAR[*]}` expansion inside double quotes only.
pub fn tokenize(line: &str, env: EnvLookup) -> Result<Vec<String>, TokenError> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    // A word exists once it has a character or an opening quote (`""` is an empty word).
    let mut started = false;
    let (mut squote, mut dquote) = (false, false);
    let mut quote_pos = 0;
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    let push = |words: &mut Vec<Vec<u8>>, cur: &mut Vec<u8>| -> Result<(), TokenError> {
        if words.len() >= MAX_LINE_ARGS {
            return Err(TokenError::TooMany);
        }
        words.push(std::mem::take(cur));
        Ok(())
    };
    while i < b.len() {
        let c = b[i];
        if c == b'\n' || c == b'\r' || c == 0 {
            break;
        }
        if c == b'#' && !squote && !dquote {
            break;
        }
        if c == b'"' && !squote {
            dquote = !dquote;
            quote_pos = i;
            started = true;
            i += 1;
            continue;
        }
        if c == b'\'' && !dquote {
            squote = !squote;
            quote_pos = i;
            started = true;
            i += 1;
            continue;
        }
        if c == b'\\' && !squote {
            let next = b.get(i + 1).copied();
            started = true;
            match next {
                Some(b' ') | Some(b'\\') | Some(b'#') | Some(b'\'') | Some(b'"') => {
                    cur.push(b[i + 1]);
                    i += 2;
                }
                Some(b't') => {
                    cur.push(b'\t');
                    i += 2;
                }
                Some(b'n') => {
                    cur.push(b'\n');
                    i += 2;
                }
                Some(b'r') => {
                    cur.push(b'\r');
                    i += 2;
                }
                Some(b'$') if dquote => {
                    cur.push(b'$');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = |k: usize| b.get(k).and_then(|&h| (h as char).to_digit(16));
                    match (hex(i + 2), hex(i + 3)) {
                        (Some(h), Some(l)) => {
                            cur.push((h * 16 + l) as u8);
                            i += 4;
                        }
                        _ => return Err(TokenError::BadHex { pos: i + 1 }),
                    }
                }
                _ => {
                    // Not an escape sequence (this includes a backslash at the end of the
                    // line: HAProxy has no line continuation): the backslash stays.
                    cur.push(b'\\');
                    i += 1;
                }
            }
            continue;
        }
        if is_space(c) && !squote && !dquote {
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            if started {
                push(&mut words, &mut cur)?;
                started = false;
            }
            continue;
        }
        if c == b'$' && dquote {
            i += 1;
            let mut brace = None;
            if b.get(i) == Some(&b'{') {
                brace = Some(i);
                i += 1;
            }
            let first = b.get(i).copied().unwrap_or(0);
            if !(first.is_ascii_alphabetic() || first == b'_' || first == b'.') {
                return Err(TokenError::VarName { pos: i + 1 });
            }
            let name_start = i;
            if first == b'.' {
                i += 1;
            }
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = &line[name_start..i];
            let mut value = match env(name) {
                Ok(v) => v,
                Err(()) => {
                    return Err(TokenError::VarName {
                        pos: name_start + 1,
                    });
                }
            };
            let mut expand = false;
            if brace.is_some() && b.get(i) == Some(&b'[') {
                let at = i;
                if b.get(i + 1) != Some(&b'*') || b.get(i + 2) != Some(&b']') {
                    return Err(TokenError::WrongExpand { pos: at + 1 });
                }
                expand = true;
                i += 3;
            }
            if let Some(open) = brace {
                if b.get(i) == Some(&b'-') {
                    let start = i + 1;
                    let Some(len) = b[start..].iter().position(|&c| c == b'}') else {
                        return Err(TokenError::Brace { pos: open + 1 });
                    };
                    if value.is_none() {
                        value = Some(line[start..start + len].to_string());
                    }
                    i = start + len;
                } else if b.get(i) != Some(&b'}') {
                    return Err(TokenError::Brace { pos: open + 1 });
                }
                i += 1;
            }
            started = true;
            if let Some(v) = value {
                let vb = v.as_bytes();
                let mut k = 0;
                while k < vb.len() {
                    if expand && vb[k].is_ascii_whitespace() {
                        push(&mut words, &mut cur)?;
                        while k < vb.len() && vb[k].is_ascii_whitespace() {
                            k += 1;
                        }
                    } else {
                        cur.push(vb[k]);
                        k += 1;
                    }
                }
            }
            continue;
        }
        cur.push(c);
        started = true;
        i += 1;
    }
    if squote || dquote {
        return Err(TokenError::UnmatchedQuote { pos: quote_pos + 1 });
    }
    if started {
        push(&mut words, &mut cur)?;
    }
    words
        .into_iter()
        .enumerate()
        .map(|(n, w)| String::from_utf8(w).map_err(|_| TokenError::NotUtf8 { word: n + 1 }))
        .collect()
}

// ---------------------------------------------------------------------------------------
// "did you mean": HAProxy's word fingerprints (letter-pair counts), not an edit distance.
// ---------------------------------------------------------------------------------------

/// The candidate closest to `word`, or `None` when nothing is close enough (HAProxy's
/// `cfg_find_best_match()` rule: distance at most twice the length of either word).
pub fn best_match<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let fw = Fingerprint::of(word);
    let mut best: Option<(&str, usize)> = None;
    for &cand in candidates {
        let dist = fw.distance(&Fingerprint::of(cand)) as usize;
        if best.is_none_or(|(_, d)| dist < d) {
            best = Some((cand, dist));
        }
    }
    let (cand, dist) = best?;
    if dist > 2 * word.len() || dist > 2 * cand.len() {
        None
    } else {
        Some(cand)
    }
}

fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match best_match(word, candidates) {
        Some(b) => format!("; did you mean '{b}' maybe ?"),
        None => String::new(),
    }
}

/// A message that may quote words from the file: control characters escaped, length capped.
fn clean(m: &str) -> String {
    printable(m, 400)
}

/// A word from the file, made safe to print: control characters escaped, long words cut.
fn show(w: &str) -> String {
    printable(w, 80)
}

fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max_chars {
            out.push_str("...");
            break;
        }
        if c == '\u{feff}' {
            out.push_str("\\u{feff}");
        } else if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Keyword tables
// ---------------------------------------------------------------------------------------

const SECTIONS: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];

/// Sections HAProxy has and lb has no use for: their contents are skipped with one warning.
const OTHER_SECTIONS: &[&str] = &[
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "log-forward",
    "fcgi-app",
];

const GLOBAL_KW: &[&str] = &[
    "log",
    "log-tag",
    "maxconn",
    "pidfile",
    "daemon",
    "user",
    "group",
    "uid",
    "gid",
    "chroot",
    "stats",
    "setenv",
    "presetenv",
    "unsetenv",
    "resetenv",
    "nbthread",
    "nbproc",
    "cpu-map",
    "thread-groups",
    "ssl-default-bind-ciphers",
    "ssl-default-bind-ciphersuites",
    "ssl-default-bind-options",
    "ssl-default-server-ciphers",
    "ssl-default-server-ciphersuites",
    "ssl-default-server-options",
    "ssl-dh-param-file",
    "ssl-server-verify",
    "ca-base",
    "crt-base",
    "hard-stop-after",
    "grace",
    "description",
    "node",
    "log-send-hostname",
    "ulimit-n",
    "maxsslconn",
    "maxconnrate",
    "maxsessrate",
    "maxsslrate",
    "maxpipes",
    "spread-checks",
    "max-spread-checks",
    "server-state-file",
    "server-state-base",
    "master-worker",
    "mworker-max-reloads",
    "noepoll",
    "nopoll",
    "nosplice",
    "nogetaddrinfo",
    "noreuseport",
    "busy-polling",
    "set-dumpable",
    "strict-limits",
    "localpeer",
    "expose-experimental-directives",
    "insecure-fork-wanted",
    "numa-cpu-mapping",
    "quiet",
    "zero-warning",
    "h1-case-adjust",
    "h1-case-adjust-file",
    "lua-load",
    "lua-prepend-path",
    "unix-bind",
    "external-check",
    "default-path",
    "listen",
    "frontend",
    "backend",
    "defaults",
];

/// Global keywords lb accepts and ignores: process tuning for HAProxy's own event loop,
/// threads and TLS stack, which an XDP data plane does not have.
fn global_no_effect(kw: &str) -> Option<&'static str> {
    let why = match kw {
        "nbthread" | "nbproc" | "cpu-map" | "thread-groups" | "numa-cpu-mapping" => {
            "the XDP data plane runs on every CPU that receives packets"
        }
        "maxconnrate" | "maxsessrate" | "maxsslrate" | "maxsslconn" | "maxpipes" | "ulimit-n" => {
            "lb does not terminate connections, so there is nothing to rate-limit or count here"
        }
        "spread-checks" | "max-spread-checks" => "lb spaces health checks its own way",
        "hard-stop-after" | "grace" | "master-worker" | "mworker-max-reloads" => {
            "lb reloads by replacing maps, without old processes to drain"
        }
        "noepoll"
        | "nopoll"
        | "nosplice"
        | "nogetaddrinfo"
        | "noreuseport"
        | "busy-polling"
        | "set-dumpable"
        | "strict-limits"
        | "quiet"
        | "zero-warning"
        | "insecure-fork-wanted"
        | "expose-experimental-directives"
        | "unix-bind"
        | "default-path" => "it tunes HAProxy's own process",
        "description" | "node" | "log-send-hostname" | "localpeer" => {
            "lb does not use it in logs or stats"
        }
        "server-state-file" | "server-state-base" => "lb keeps server state in its pinned maps",
        "h1-case-adjust" | "h1-case-adjust-file" | "lua-load" | "lua-prepend-path" => {
            "it is an HTTP (L7) feature and lb forwards connections at L4"
        }
        "ca-base" | "crt-base" => "lb does not terminate TLS",
        "external-check" => "lb runs no external check programs",
        k if k.starts_with("ssl-") => "lb does not terminate TLS",
        k if k.starts_with("tune.") => "it tunes HAProxy's own buffers and event loop",
        k if k.starts_with("profiling.") || k.starts_with("httpclient.") => {
            "it tunes HAProxy's own process"
        }
        _ => return None,
    };
    Some(why)
}

const PROXY_KW: &[&str] = &[
    "acl",
    "backlog",
    "balance",
    "bind",
    "bind-process",
    "capture",
    "compression",
    "cookie",
    "declare",
    "default-server",
    "default_backend",
    "description",
    "disabled",
    "dispatch",
    "email-alert",
    "enabled",
    "errorfile",
    "errorfiles",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "error-log-format",
    "external-check",
    "filter",
    "force-persist",
    "fullconn",
    "hash-type",
    "hash-balance-factor",
    "http-after-response",
    "http-check",
    "http-error",
    "http-request",
    "http-response",
    "http-reuse",
    "http-send-name-header",
    "id",
    "ignore-persist",
    "load-server-state-from-file",
    "log",
    "log-format",
    "log-format-sd",
    "log-tag",
    "max-keep-alive-queue",
    "maxconn",
    "mode",
    "monitor",
    "monitor-uri",
    "option",
    "persist",
    "rate-limit",
    "redirect",
    "retries",
    "retry-on",
    "server",
    "server-state-file-name",
    "server-template",
    "source",
    "stats",
    "stick",
    "stick-table",
    "tcp-check",
    "tcp-request",
    "tcp-response",
    "timeout",
    "transparent",
    "unique-id-format",
    "unique-id-header",
    "use_backend",
    "use-fcgi-app",
    "use-server",
    "clitcpka-cnt",
    "clitcpka-idle",
    "clitcpka-intvl",
    "srvtcpka-cnt",
    "srvtcpka-idle",
    "srvtcpka-intvl",
    "contimeout",
    "clitimeout",
    "srvtimeout",
    "listen",
    "frontend",
    "backend",
    "defaults",
    "global",
];

const L7_GENERIC: &str =
    "it is an HTTP (L7) feature and lb forwards connections at L4 without parsing HTTP";

/// Proxy keywords that are HTTP-only: one warning each.
fn proxy_l7(kw: &str) -> Option<&'static str> {
    let why = match kw {
        "capture" | "declare" => "lb never parses HTTP, so there is nothing to capture",
        "cookie" => {
            "cookie persistence needs HTTP parsing; lb keeps each connection on its server, not each client"
        }
        "compression" => "lb never modifies the payload",
        "errorfile" | "errorfiles" | "errorloc" | "errorloc302" | "errorloc303" | "http-error" => {
            "lb never answers HTTP itself (with no server left, connections are dropped)"
        }
        "http-response" | "http-after-response" => "lb never parses or modifies HTTP responses",
        "http-reuse" => "server connections belong to the client's connection at L4",
        "http-send-name-header" | "unique-id-format" | "unique-id-header" => {
            "lb never adds HTTP headers"
        }
        "monitor" | "monitor-uri" => "lb never answers HTTP itself",
        "redirect" => "lb never answers HTTP itself, so it cannot redirect",
        "stats" => {
            "HAProxy's stats page is served over HTTP by the proxy; lb's is the global 'stats_http' of the native format"
        }
        "filter" => "filters work on HTTP streams",
        _ => return None,
    };
    Some(why)
}

/// Proxy keywords lb accepts and ignores (they tune HAProxy's own connection handling).
fn proxy_no_effect(kw: &str) -> Option<&'static str> {
    let why = match kw {
        "backlog" | "rate-limit" | "maxconn" | "fullconn" | "max-keep-alive-queue" => {
            "the XDP data plane does not queue or count a proxy's connections"
        }
        "bind-process" => "the XDP data plane runs on every CPU",
        "description" | "id" | "log-tag" | "log-format" | "log-format-sd" | "error-log-format" => {
            "lb logs no individual connections"
        }
        "email-alert" => "lb sends no mail",
        "hash-type" | "hash-balance-factor" => "lb balances roundrobin only",
        "load-server-state-from-file" | "server-state-file-name" => {
            "lb keeps server state in its pinned maps"
        }
        "retry-on" => "lb does not retry connections itself",
        "clitcpka-cnt" | "clitcpka-idle" | "clitcpka-intvl" | "srvtcpka-cnt" | "srvtcpka-idle"
        | "srvtcpka-intvl" => "TCP keep-alive is between client and server at L4",
        _ => return None,
    };
    Some(why)
}

/// Proxy keywords for HAProxy features lb lacks and whose absence would change where
/// traffic goes or who may connect: alerts.
fn proxy_unsupported(kw: &str) -> Option<&'static str> {
    let why = match kw {
        "dispatch" | "transparent" => "lb sends connections to the servers of the backend only",
        "force-persist" | "ignore-persist" | "persist" | "stick" | "stick-table" => {
            "lb has no persistence (stick tables): every new connection is balanced"
        }
        "use-server" => "lb has no ACLs to choose a server with",
        "server-template" => "lb has no DNS-driven servers; declare each 'server'",
        "use-fcgi-app" => "lb does not speak FastCGI",
        "external-check" => "lb runs no external check programs",
        "tcp-response" => "lb does not inspect the data it forwards",
        _ => return None,
    };
    Some(why)
}

/// `option` names: (name, what lb does with it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Redispatch,
    AllBackups,
    LogHealthChecks,
    HttpChk,
    TcpCheck,
    /// Accepted without a word: lb's behaviour already is what the option asks for.
    Quiet,
    L7(&'static str),
    NoEffect(&'static str),
    TcpLog,
    Unsupported(&'static str),
}

const OPTIONS: &[(&str, Opt)] = &[
    ("redispatch", Opt::Redispatch),
    ("allbackups", Opt::AllBackups),
    ("log-health-checks", Opt::LogHealthChecks),
    ("httpchk", Opt::HttpChk),
    ("tcp-check", Opt::TcpCheck),
    // lb logs no individual connections, so null ones are never logged either.
    ("dontlognull", Opt::Quiet),
    (
        "httplog",
        Opt::L7("lb never parses HTTP, so there is no HTTP request to log"),
    ),
    (
        "httpslog",
        Opt::L7("lb never parses HTTP, so there is no HTTP request to log"),
    ),
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
    (
        "http-server-close",
        Opt::L7(
            "connection reuse is between client and server at L4, lb does not close either side",
        ),
    ),
    (
        "httpclose",
        Opt::L7(
            "connection reuse is between client and server at L4, lb does not close either side",
        ),
    ),
    (
        "http-keep-alive",
        Opt::L7("keep-alive is between client and server at L4"),
    ),
    (
        "http-pretend-keepalive",
        Opt::L7("keep-alive is between client and server at L4"),
    ),
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
    (
        "dontlog-normal",
        Opt::NoEffect("lb logs no individual connections"),
    ),
    (
        "log-separate-errors",
        Opt::NoEffect("lb logs no individual connections"),
    ),
    (
        "logasap",
        Opt::NoEffect("lb logs no individual connections"),
    ),
    (
        "contstats",
        Opt::NoEffect("lb counts packets in the data plane"),
    ),
    (
        "socket-stats",
        Opt::NoEffect("lb counts packets in the data plane"),
    ),
    (
        "tcpka",
        Opt::NoEffect("TCP keep-alive is between client and server at L4"),
    ),
    (
        "clitcpka",
        Opt::NoEffect("TCP keep-alive is between client and server at L4"),
    ),
    (
        "srvtcpka",
        Opt::NoEffect("TCP keep-alive is between client and server at L4"),
    ),
    (
        "splice-auto",
        Opt::NoEffect("lb forwards packets, it never copies data between sockets"),
    ),
    (
        "splice-request",
        Opt::NoEffect("lb forwards packets, it never copies data between sockets"),
    ),
    (
        "splice-response",
        Opt::NoEffect("lb forwards packets, it never copies data between sockets"),
    ),
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
    (
        "ssl-hello-chk",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "smtpchk",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "mysql-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "pgsql-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "redis-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "ldap-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "spop-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "external-check",
        Opt::Unsupported("lb checks servers with a TCP connect or 'option httpchk' only"),
    ),
    (
        "transparent",
        Opt::Unsupported("lb sends connections to the servers of the backend only"),
    ),
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

const SERVER_KW: &[&str] = &[
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
    "crt",
    "check-ssl",
    "check-sni",
    "alpn",
    "send-proxy",
    "send-proxy-v2",
    "check-send-proxy",
    "track",
    "agent-check",
    "agent-port",
    "agent-inter",
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

/// Server options lb accepts and ignores: (name, number of values, why).
fn server_no_effect(kw: &str) -> Option<(usize, &'static str)> {
    Some(match kw {
        "id" => (1, "lb numbers servers in declaration order"),
        "cookie" => (1, L7_GENERIC),
        "slowstart" => (1, "lb gives a server its full weight as soon as it is UP"),
        "maxqueue" | "minconn" => (1, "the XDP data plane has no connection queue"),
        "observe" | "error-limit" | "on-error" => (1, "lb judges servers by health checks only"),
        "on-marked-down" | "on-marked-up" => (
            1,
            "lb keeps established flows on a server that goes DOWN until they end",
        ),
        "init-addr" | "resolve-prefer" | "resolve-net" => {
            (1, "lb takes IPv4 addresses only, it resolves no names")
        }
        "tfo" => (0, "lb does not open connections to servers itself"),
        "pool-max-conn" | "pool-purge-delay" => (
            1,
            "server connections belong to the client's connection at L4",
        ),
        "no-ssl" => (0, "lb never speaks TLS to servers anyway"),
        "agent-port" | "agent-inter" | "agent-addr" => (1, "lb has no agent checks"),
        _ => return None,
    })
}

/// Server options for features whose absence breaks the traffic or the checks: alerts.
fn server_unsupported(kw: &str) -> Option<(usize, &'static str)> {
    Some(match kw {
        "ssl" | "verify" | "sni" | "ca-file" | "crt" | "alpn" | "check-ssl" | "check-sni" => (
            if matches!(kw, "ssl" | "check-ssl") {
                0
            } else {
                1
            },
            "lb forwards the client's bytes as they are and never speaks TLS to servers",
        ),
        "send-proxy" | "send-proxy-v2" | "check-send-proxy" => (
            0,
            "lb forwards the client's bytes as they are and cannot add a PROXY protocol header; with nat dnat servers see the client address",
        ),
        "track" => (1, "lb checks every server itself"),
        "agent-check" => (0, "lb has no agent checks"),
        "resolvers" => (1, "lb takes IPv4 addresses only, it resolves no names"),
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

const BIND_KW: &[&str] = &[
    "name",
    "id",
    "nice",
    "process",
    "thread",
    "backlog",
    "maxconn",
    "mss",
    "tfo",
    "defer-accept",
    "v4v6",
    "v6only",
    "transparent",
    "interface",
    "namespace",
    "ssl",
    "crt",
    "crt-list",
    "ca-file",
    "verify",
    "alpn",
    "npn",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "strict-sni",
    "accept-proxy",
    "accept-netscaler-cip",
    "proto",
    "level",
    "severity-output",
    "expose-fd",
    "user",
    "group",
    "uid",
    "gid",
    "mode",
];

fn bind_param(kw: &str) -> Option<(usize, Result<&'static str, &'static str>)> {
    Some(match kw {
        "name" | "id" | "nice" | "process" | "thread" | "backlog" | "maxconn" | "mss"
        | "interface" | "namespace" => (
            1,
            Ok("lb answers the VIP in its XDP program, there is no listening socket to tune"),
        ),
        "tfo" | "defer-accept" | "v4v6" | "v6only" | "transparent" => (
            0,
            Ok("lb answers the VIP in its XDP program, there is no listening socket to tune"),
        ),
        "ssl" | "strict-sni" | "npn" => (
            0,
            Err("lb forwards the client's bytes as they are and cannot terminate TLS"),
        ),
        "crt" | "crt-list" | "ca-file" | "verify" | "alpn" | "ciphers" | "ciphersuites"
        | "ssl-min-ver" | "ssl-max-ver" => (
            1,
            Err("lb forwards the client's bytes as they are and cannot terminate TLS"),
        ),
        "accept-proxy" | "accept-netscaler-cip" => (
            if kw == "accept-proxy" { 0 } else { 1 },
            Err(
                "lb forwards the client's bytes as they are and cannot strip a PROXY protocol header",
            ),
        ),
        "proto" => (1, Err(L7_GENERIC)),
        "level" | "severity-output" | "expose-fd" | "user" | "group" | "uid" | "gid" | "mode" => {
            (1, Err("it only applies to stats sockets"))
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Parser state
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }
    fn fe(self) -> bool {
        self != Kind::Backend
    }
    fn be(self) -> bool {
        self != Kind::Frontend
    }
}

/// `http-check send` as written: unset parts keep the `option httpchk` request's.
#[derive(Clone, Debug)]
struct SendSpec {
    meth: Option<String>,
    uri: Option<String>,
    ver: Option<String>,
    hdrs: Vec<String>,
    body: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct CheckCfg {
    /// The request of `option httpchk`; `None` is a TCP connect check.
    http: Option<HttpCheck>,
    send: Option<(SendSpec, Origin)>,
    send_own: bool,
    expect: Option<(Vec<(u16, u16)>, Origin)>,
    expect_own: bool,
}

/// What a proxy inherits from its defaults section.
#[derive(Clone, Debug)]
struct Settings {
    mode: Mode,
    nat: NatMode,
    redispatch: bool,
    log_health_checks: bool,
    tcplog: bool,
    allbackups: bool,
    retries: u32,
    timeouts: Timeouts,
    /// `default-server` values, as a server template.
    default_server: Server,
    check: CheckCfg,
    default_backend: Option<String>,
    /// `default_backend` was written in this section (not inherited).
    default_backend_own: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Tcp,
            nat: NatMode::FullNat,
            redispatch: false,
            log_health_checks: false,
            tcplog: false,
            allbackups: false,
            retries: 3,
            timeouts: Timeouts {
                connect: None,
                client: None,
                server: None,
                check: None,
                queue: None,
            },
            default_server: Server::new("", Ipv4Addr::UNSPECIFIED, 0, Origin::default()),
            check: CheckCfg::default(),
            default_backend: None,
            default_backend_own: false,
        }
    }
}

#[derive(Debug)]
struct Proxy {
    kind: Kind,
    name: String,
    origin: Origin,
    s: Settings,
    binds: Vec<Bind>,
    servers: Vec<Server>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kwm {
    Std,
    No,
    Default,
}

enum Sect {
    None,
    Global,
    Defaults(usize),
    Proxy(usize),
    Other,
}

/// Where lines' problems go.
struct Diags {
    file: Arc<str>,
    line: usize,
    list: Vec<Diagnostic>,
    fatal: usize,
}

impl Diags {
    fn here(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line,
        }
    }
    fn alert(&mut self, msg: impl Into<String>) {
        let o = self.here();
        self.list.push(Diagnostic::alert(Some(&o), msg));
        self.fatal += 1;
    }
    fn warn(&mut self, msg: impl Into<String>) {
        let o = self.here();
        self.list.push(Diagnostic::warning(Some(&o), msg));
    }
    fn warn_at(&mut self, o: &Origin, msg: impl Into<String>) {
        self.list.push(Diagnostic::warning(Some(o), msg));
    }
    fn alert_at(&mut self, o: &Origin, msg: impl Into<String>) {
        self.list.push(Diagnostic::alert(Some(o), msg));
        self.fatal += 1;
    }
    /// `'kw' cannot handle unexpected argument 'x'.` when `args` has more than `max`
    /// values after the first `idx + 1` words.
    fn too_many(&mut self, args: &[String], idx: usize, max: usize) -> bool {
        match args.get(idx + 1 + max) {
            Some(extra) => {
                let kw = args[..=idx.min(args.len() - 1)].join(" ");
                self.alert(format!(
                    "'{}' cannot handle unexpected argument '{}'.",
                    show(&kw),
                    show(extra)
                ));
                true
            }
            None => false,
        }
    }
}

/// Environment seen by `"$VAR"`: the process environment, changed by `setenv` & co in
/// `global` as HAProxy does while it reads the file.
#[derive(Default)]
struct Env {
    set: HashMap<String, Option<String>>,
    /// After `resetenv`: only these names of the process environment remain.
    reset_keep: Option<Vec<String>>,
}

impl Env {
    fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.set.get(name) {
            return v.clone();
        }
        if let Some(keep) = &self.reset_keep
            && !keep.iter().any(|k| k == name)
        {
            return None;
        }
        std::env::var(name).ok()
    }
}

struct Parser {
    d: Diags,
    env: Env,
    sect: Sect,
    /// Name of the current section for `${.SECTION}`.
    sect_name: String,
    global: Global,
    /// First line of settings HAProxy refuses to set twice (`pidfile`, ...).
    global_once: HashMap<&'static str, usize>,
    defaults: Vec<(String, Settings, Origin)>,
    last_defaults: Option<usize>,
    proxies: Vec<Proxy>,
    total_binds: usize,
}

/// Parses haproxy.cfg text. `name` is the file name used in messages.
pub fn parse(name: &str, text: &str) -> Result<Parsed, ConfigError> {
    let mut p = Parser {
        d: Diags {
            file: Arc::from(name),
            line: 0,
            list: Vec::new(),
            fatal: 0,
        },
        env: Env::default(),
        sect: Sect::None,
        sect_name: String::new(),
        global: Global::default(),
        global_once: HashMap::new(),
        defaults: Vec::new(),
        last_defaults: None,
        proxies: Vec::new(),
        total_binds: 0,
    };
    if text.is_empty() {
        p.d.list.push(Diagnostic::alert(
            None,
            format!("'{name}' is empty: no global, defaults, frontend or backend section"),
        ));
        return Err(ConfigError {
            diagnostics: p.d.list,
        });
    }
    let mut lines = text.split('\n').peekable();
    let mut n = 0;
    while let Some(raw) = lines.next() {
        n += 1;
        p.d.line = n;
        if lines.peek().is_none() {
            if raw.is_empty() {
                break;
            }
            p.d.warn(format!(
                "Missing LF on last line, file might have been truncated at position {}.",
                raw.len() + 1
            ));
        }
        if p.d.fatal >= MAX_FATAL {
            p.d.alert(format!(
                "too many fatal errors ({}), stopping now.",
                p.d.fatal
            ));
            break;
        }
        p.line(raw);
    }
    p.finish()
}

impl Parser {
    fn line(&mut self, raw: &str) {
        if let Some(pos) = raw.find('\0') {
            self.d
                .alert(format!("Stray NUL character at position {}.", pos + 1));
            return;
        }
        let trimmed = raw.trim_start_matches([' ', '\t', '\x0b', '\x0c']);
        if trimmed.starts_with('[') {
            // `[scope]` lines only change how HAProxy prefixes its messages.
            return;
        }
        let (file, line, section) = (self.d.file.clone(), self.d.line, self.sect_name.clone());
        let env = &self.env;
        let lookup = |name: &str| -> Result<Option<String>, ()> {
            match name {
                ".LINE" => Ok(Some(line.to_string())),
                ".FILE" => Ok(Some(file.to_string())),
                ".SECTION" => Ok(Some(section.clone())),
                n if n.starts_with('.') => Err(()),
                n => Ok(env.get(n)),
            }
        };
        let mut args = match tokenize(raw, &lookup) {
            Ok(a) => a,
            Err(e) => {
                self.d.alert(e.to_string());
                return;
            }
        };
        if args.is_empty() {
            return;
        }
        let trailing = raw.trim_end_matches([' ', '\t', '\r']);
        let backslashes = trailing.len() - trailing.trim_end_matches('\\').len();
        if backslashes % 2 == 1 && args.last().is_some_and(|w| w.ends_with('\\')) {
            self.d.warn(
                "line ends with a backslash: HAProxy has no line continuation, the backslash is part of the last word and the next line is a statement of its own.",
            );
        }
        if args[0].starts_with('.') {
            self.directive(&args);
            return;
        }
        let mut kwm = Kwm::Std;
        if args[0] == "no" || args[0] == "default" {
            kwm = if args[0] == "no" {
                Kwm::No
            } else {
                Kwm::Default
            };
            args.remove(0);
            let ok = args.first().is_some_and(|a| {
                matches!(
                    a.as_str(),
                    "option"
                        | "log"
                        | "busy-polling"
                        | "set-dumpable"
                        | "strict-limits"
                        | "insecure-fork-wanted"
                        | "numa-cpu-mapping"
                )
            });
            if !ok {
                self.d.alert(
                    "negation/default currently supported only for options, log, busy-polling, set-dumpable, strict-limits, insecure-fork-wanted and numa-cpu-mapping.",
                );
                return;
            }
        }
        let kw = args[0].as_str();
        if SECTIONS.contains(&kw) {
            self.section(&args);
            return;
        }
        if OTHER_SECTIONS.contains(&kw) {
            self.sect = Sect::Other;
            self.sect_name = args.get(1).cloned().unwrap_or_else(|| kw.to_string());
            self.d.warn(format!(
                "'{kw}' section has no effect in lb: lb does not use it, its contents are ignored"
            ));
            return;
        }
        match self.sect {
            Sect::None => {
                self.d
                    .alert(format!("unknown keyword '{}' out of section.", show(kw)));
            }
            Sect::Other => {}
            Sect::Global => self.global_kw(&args, kwm),
            Sect::Defaults(i) => {
                let s = &mut self.defaults[i].1;
                proxy_kw(
                    &mut self.d,
                    Kind::Defaults,
                    "",
                    s,
                    None,
                    &args,
                    kwm,
                    &mut self.total_binds,
                );
            }
            Sect::Proxy(i) => {
                let p = &mut self.proxies[i];
                proxy_kw(
                    &mut self.d,
                    p.kind,
                    &p.name,
                    &mut p.s,
                    Some((&mut p.binds, &mut p.servers)),
                    &args,
                    kwm,
                    &mut self.total_binds,
                );
            }
        }
    }

    /// `.if` & co, `.warning`, `.alert`, `.notice`, `.diag`.
    fn directive(&mut self, args: &[String]) {
        let kw = args[0].as_str();
        match kw {
            ".alert" | ".warning" | ".notice" | ".diag" => {
                if let Some(extra) = args.get(2) {
                    self.d.alert(format!(
                        "Unexpected argument '{}' for '{kw}'. Use quotes if the message should contain spaces.",
                        show(extra)
                    ));
                    return;
                }
                let msg = format!("'{}'.", show(args.get(1).map_or("", |s| s.as_str())));
                match kw {
                    ".alert" => self.d.alert(msg),
                    ".warning" => self.d.warn(msg),
                    _ => {}
                }
            }
            ".if" | ".elif" | ".else" | ".endif" => {
                self.d.alert(format!(
                    "conditional blocks ('{kw}') are not supported by lb yet; keep one configuration per file"
                ));
            }
            _ => self.d.alert(format!("unknown directive '{}'.", show(kw))),
        }
    }

    fn section(&mut self, args: &[String]) {
        let kw = args[0].as_str();
        self.sect_name = args.get(1).cloned().unwrap_or_else(|| kw.to_string());
        let origin = self.d.here();
        match kw {
            "global" => {
                self.d.too_many(args, 0, 0);
                self.sect = Sect::Global;
            }
            "defaults" => {
                // `defaults [NAME] [from OTHER]`, also `defaults from OTHER`.
                let (name, from) = match args.get(1).map(String::as_str) {
                    None => (String::new(), None),
                    Some("from") if args.len() == 3 => (String::new(), Some(&args[2])),
                    Some(n) => match args.get(2).map(String::as_str) {
                        None => (n.to_string(), None),
                        Some("from") if args.len() >= 4 => (n.to_string(), Some(&args[3])),
                        Some(_) => {
                            self.d.too_many(args, 1, 0);
                            (n.to_string(), None)
                        }
                    },
                };
                if args.len() > 4 {
                    self.d.too_many(args, 0, 3);
                }
                let base = match from {
                    Some(f) => self.named_defaults(f, "defaults", &name),
                    None => Settings::default(),
                };
                self.defaults.push((name, base, origin));
                let i = self.defaults.len() - 1;
                self.last_defaults = Some(i);
                self.sect = Sect::Defaults(i);
            }
            _ => {
                let kind = match kw {
                    "frontend" => Kind::Frontend,
                    "backend" => Kind::Backend,
                    _ => Kind::Listen,
                };
                let Some(name) = args.get(1) else {
                    self.d.alert(format!("'{kw}' expects an <id> argument"));
                    self.sect = Sect::Other;
                    return;
                };
                // The file is refused then; later messages still print the name safely.
                let display = if bad_name(&mut self.d, kw, name) {
                    show(name)
                } else {
                    name.clone()
                };
                let mut addresses = None;
                let mut from = None;
                match args.get(2).map(String::as_str) {
                    None => {}
                    Some("from") if args.len() == 4 => from = Some(&args[3]),
                    Some(a) if kind.fe() && args.len() == 3 => addresses = Some(a.to_string()),
                    Some(_) => {
                        if kind.fe() {
                            self.d.alert(format!(
                                "'{kw} {}' cannot handle unexpected arguments after the name (one listening address list, or 'from DEFAULTS').",
                                show(name)
                            ));
                        } else {
                            self.d.too_many(args, 1, 0);
                        }
                    }
                }
                let s = match from {
                    Some(f) => self.named_defaults(f, kw, name),
                    None => self
                        .last_defaults
                        .map(|i| self.defaults[i].1.clone())
                        .unwrap_or_default(),
                };
                let mut s = s;
                s.check.send_own = false;
                s.check.expect_own = false;
                s.default_backend_own = false;
                let mut px = Proxy {
                    kind,
                    name: display,
                    origin,
                    s,
                    binds: Vec::new(),
                    servers: Vec::new(),
                };
                if let Some(a) = addresses {
                    // HAProxy 1.x: `frontend main *:80`, as the seed config has it.
                    bind_list(&mut self.d, &a, &mut px.binds, &mut self.total_binds);
                }
                self.proxies.push(px);
                self.sect = Sect::Proxy(self.proxies.len() - 1);
            }
        }
    }

    fn named_defaults(&mut self, name: &str, kw: &str, who: &str) -> Settings {
        let found: Vec<usize> = (0..self.defaults.len())
            .filter(|&i| self.defaults[i].0 == name)
            .collect();
        match found.as_slice() {
            [] => {
                self.d.alert(format!(
                    "defaults section '{}' not found for {kw} '{}'.",
                    show(name),
                    show(who)
                ));
                Settings::default()
            }
            [i] => self.defaults[*i].1.clone(),
            [a, b, ..] => {
                let (oa, ob) = (self.defaults[*a].2.clone(), self.defaults[*b].2.clone());
                self.d.alert(format!(
                    "ambiguous defaults section name '{}' referenced by {kw} '{}' exists at least at {oa} and {ob}.",
                    show(name),
                    show(who)
                ));
                self.defaults[*a].1.clone()
            }
        }
    }

    fn once(&mut self, kw: &'static str) -> bool {
        if let Some(first) = self.global_once.get(kw) {
            self.d.warn(format!(
                "'{kw}' already specified (line {first}), this one is ignored."
            ));
            return false;
        }
        self.global_once.insert(kw, self.d.line);
        true
    }

    fn global_kw(&mut self, args: &[String], kwm: Kwm) {
        let kw = args[0].as_str();
        let arg1 = args.get(1).map(String::as_str);
        match kw {
            "log" => self.global_log(args, kwm),
            "log-tag" => {
                if self.d.too_many(args, 0, 1) {
                    return;
                }
                match arg1 {
                    Some(t) if !t.is_empty() => self.global.log_tag = t.to_string(),
                    _ => self.d.alert("'log-tag' expects a tag for use in syslog."),
                }
            }
            "maxconn" => {
                if self.d.too_many(args, 0, 1) {
                    return;
                }
                if let Some(n) = int_arg(&mut self.d, "'maxconn'", arg1)
                    && self.once("maxconn")
                {
                    self.global.maxconn = Some(n);
                }
            }
            "pidfile" | "chroot" | "user" | "group" => {
                if self.d.too_many(args, 0, 1) {
                    return;
                }
                let Some(v) = arg1.filter(|v| !v.is_empty()) else {
                    let what = match kw {
                        "pidfile" => "a file name",
                        "chroot" => "a directory",
                        "user" => "a user name",
                        _ => "a group name",
                    };
                    self.d
                        .alert(format!("'{kw}' expects {what} as an argument."));
                    return;
                };
                let key: &'static str = match kw {
                    "pidfile" => "pidfile",
                    "chroot" => "chroot",
                    "user" => "user",
                    _ => "group",
                };
                if !self.once(key) {
                    return;
                }
                match kw {
                    "pidfile" => self.global.pidfile = Some(v.into()),
                    "chroot" => self.global.chroot = Some(v.into()),
                    "user" => self.global.user = Some(v.to_string()),
                    _ => self.global.group = Some(v.to_string()),
                }
            }
            "daemon" => {
                if !self.d.too_many(args, 0, 0) {
                    self.global.daemon = true;
                }
            }
            "uid" | "gid" => self.d.alert(format!(
                "'{kw}' is not supported by lb: use '{}' with a name.",
                if kw == "uid" { "user" } else { "group" }
            )),
            "stats" => self.global_stats(args),
            "setenv" | "presetenv" => {
                if self.d.too_many(args, 0, 2) {
                    return;
                }
                let (Some(name), Some(value)) = (arg1, args.get(2)) else {
                    self.d.alert(format!("'{kw}' expects a name and a value."));
                    return;
                };
                if kw == "setenv" || self.env.get(name).is_none() {
                    self.env
                        .set
                        .insert(name.to_string(), Some(value.to_string()));
                }
            }
            "unsetenv" => {
                if args.len() < 2 {
                    self.d
                        .alert("'unsetenv' expects at least one variable name.");
                }
                for a in &args[1..] {
                    self.env.set.insert(a.clone(), None);
                }
            }
            "resetenv" => {
                self.env.set.clear();
                self.env.reset_keep = Some(args[1..].to_vec());
            }
            _ => {
                if let Some(why) = global_no_effect(kw) {
                    self.d.warn(format!("'{kw}' has no effect in lb: {why}."));
                } else {
                    self.d.alert(format!(
                        "unknown keyword '{}' in 'global' section{}",
                        show(kw),
                        did_you_mean(kw, GLOBAL_KW)
                    ));
                }
            }
        }
    }

    /// `log <target> [len N] [format F] [sample R:S] <facility> [<level> [<minlevel>]]`.
    fn global_log(&mut self, args: &[String], kwm: Kwm) {
        if kwm == Kwm::No {
            self.global.logs.clear();
            return;
        }
        let Some(target) = args.get(1) else {
            self.d.alert(
                "'log' expects either <address[:port]> and <facility> or 'global' as arguments.",
            );
            return;
        };
        if target == "global" {
            self.d.alert(
                "'log global' is only allowed in defaults, frontend, backend and listen sections.",
            );
            return;
        }
        let target = match strip_log_prefix(target) {
            Ok(t) => t,
            Err(e) => {
                self.d.alert(format!("'log {}': {e}", show(target)));
                return;
            }
        };
        let mut i = 2;
        loop {
            match args.get(i).map(String::as_str) {
                Some("len") => {
                    self.d.warn(
                        "'log ... len' has no effect in lb: lb's log lines are short and never truncated.",
                    );
                    i += 2;
                }
                Some("format") => {
                    let f = args.get(i + 1).map_or("", String::as_str);
                    if !matches!(f, "rfc3164" | "legacy") {
                        self.d.warn(format!(
                            "'log ... format {}' has no effect in lb: lb sends RFC 3164 syslog lines.",
                            show(f)
                        ));
                    }
                    i += 2;
                }
                Some("sample") => {
                    self.d
                        .warn("'log ... sample' has no effect in lb: every line is sent.");
                    i += 2;
                }
                _ => break,
            }
        }
        let Some(facility) = args.get(i) else {
            self.d.alert("'log' expects <facility> after the address.");
            return;
        };
        let level = args.get(i + 1).map(String::as_str);
        let minlevel = args.get(i + 2).map(String::as_str);
        if self.d.too_many(args, i, 2) {
            return;
        }
        let here = self.d.here();
        match native::log_target_from_words(&target, facility, level, minlevel, &here) {
            Ok(t) => self.global.logs.push(t),
            Err(e) => self.d.alert(format!("'log': {}", clean(&e))),
        }
    }

    /// `stats socket PATH [mode OCTAL] [level user|operator|admin] ...`, `stats timeout T`.
    fn global_stats(&mut self, args: &[String]) {
        match args.get(1).map(String::as_str) {
            Some("socket") => {}
            Some("timeout") => {
                if !self.d.too_many(args, 1, 1) {
                    // Accepted and ignored: lb's runtime API answers one command per
                    // connection and closes it.
                    let _ = time_arg(&mut self.d, "'stats timeout'", args.get(2));
                }
                return;
            }
            Some("maxconn") | Some("bind-process") => {
                self.d.warn(format!(
                    "'stats {}' has no effect in lb: lb's runtime API serves one command per connection.",
                    args[1]
                ));
                return;
            }
            other => {
                self.d.alert(format!(
                    "'stats' expects 'socket', 'maxconn', 'timeout' or 'bind-process' in 'global' section (got '{}').",
                    show(other.unwrap_or(""))
                ));
                return;
            }
        }
        let Some(path) = args.get(2).filter(|p| !p.is_empty()) else {
            self.d
                .alert("'stats socket' expects a path to a UNIX socket.");
            return;
        };
        let path = path.strip_prefix("unix@").unwrap_or(path);
        if !path.starts_with('/') {
            self.d.alert(format!(
                "'stats socket {}': lb's runtime API listens on a UNIX socket only (an absolute path).",
                show(path)
            ));
            return;
        }
        if let Some(prev) = &self.global.stats_socket {
            self.d.alert(format!(
                "'stats socket': lb serves one runtime API socket, already declared at {}.",
                prev.origin
            ));
            return;
        }
        let mut sock = StatsSocket {
            path: path.into(),
            mode: None,
            level: ApiLevel::Operator,
            origin: self.d.here(),
        };
        let mut i = 3;
        let mut ok = true;
        while let Some(p) = args.get(i) {
            let p = p.as_str();
            let takes = match p {
                "mode" | "level" | "user" | "group" | "uid" | "gid" | "expose-fd"
                | "severity-output" | "name" | "process" | "thread" => 1,
                _ => 0,
            };
            let v = args.get(i + 1).map_or("", String::as_str);
            if takes == 1 && args.get(i + 1).is_none() {
                self.d
                    .alert(format!("'stats socket' : '{p}' expects an argument."));
                ok = false;
                break;
            }
            match p {
                "mode" => match native::file_mode(v) {
                    Ok(m) => sock.mode = Some(m),
                    Err(e) => {
                        self.d
                            .alert(format!("'stats socket' : 'mode': {}", clean(&e)));
                        ok = false;
                    }
                },
                "level" => match native::api_level(v) {
                    Ok(l) => sock.level = l,
                    Err(e) => {
                        self.d.alert(format!("'stats socket' : {}", clean(&e)));
                        ok = false;
                    }
                },
                "user" | "group" | "uid" | "gid" | "expose-fd" | "severity-output" | "name"
                | "process" | "thread" => {
                    self.d.warn(format!(
                        "'stats socket ... {p}' has no effect in lb: the socket belongs to the user lb runs as; use 'mode' to open it to others."
                    ));
                }
                _ => {
                    self.d.alert(format!(
                        "'stats socket' : unknown keyword '{}'{}",
                        show(p),
                        did_you_mean(
                            p,
                            &["mode", "level", "user", "group", "uid", "gid", "expose-fd"]
                        )
                    ));
                    ok = false;
                    break;
                }
            }
            i += 1 + takes;
        }
        if ok {
            self.global.stats_socket = Some(sock);
        }
    }

    fn finish(self) -> Result<Parsed, ConfigError> {
        let mut d = self.d;
        let mut frontends = Vec::new();
        let mut backends = Vec::new();
        for p in self.proxies {
            if p.kind.fe() {
                if let (Kind::Listen, Some(b), false) =
                    (p.kind, &p.s.default_backend, p.s.default_backend_own)
                    && *b != p.name
                    && !p.servers.is_empty()
                {
                    // HAProxy does the same, which surprises: say so.
                    d.warn_at(
                        &p.origin,
                        format!(
                            "listen '{}' sends its connections to default_backend '{b}' inherited from the defaults section, not to its own servers.",
                            p.name
                        ),
                    );
                }
                let default_backend = match (&p.s.default_backend, p.kind) {
                    (Some(b), _) => b.clone(),
                    (None, Kind::Listen) => p.name.clone(),
                    (None, _) => {
                        d.alert_at(
                            &p.origin,
                            format!(
                                "frontend '{}' has no 'default_backend': lb has no content switching, every frontend sends its connections to its default_backend.",
                                p.name
                            ),
                        );
                        String::new()
                    }
                };
                frontends.push(Frontend {
                    name: p.name.clone(),
                    mode: p.s.mode,
                    binds: p.binds.clone(),
                    default_backend,
                    tcplog: p.s.tcplog,
                    origin: p.origin.clone(),
                });
            }
            if p.kind.be() {
                let check = finish_check(&mut d, &p.s.check);
                backends.push(Backend {
                    name: p.name,
                    mode: p.s.mode,
                    balance: Balance::RoundRobin,
                    nat: p.s.nat,
                    on_empty: OnEmpty::Drop,
                    check,
                    redispatch: p.s.redispatch,
                    log_health_checks: p.s.log_health_checks,
                    allbackups: p.s.allbackups,
                    retries: p.s.retries,
                    timeouts: p.s.timeouts,
                    servers: p.servers,
                    origin: p.origin,
                });
            }
        }
        if d.fatal > 0 {
            return Err(ConfigError {
                diagnostics: d.list,
            });
        }
        Ok(Parsed {
            config: Config {
                global: self.global,
                frontends,
                backends,
            },
            warnings: d.list,
        })
    }
}

fn finish_check(d: &mut Diags, c: &CheckCfg) -> CheckKind {
    match &c.http {
        Some(base) => {
            let mut h = base.clone();
            if let Some((s, _)) = &c.send {
                if let Some(m) = &s.meth {
                    h.method = m.clone();
                }
                if let Some(u) = &s.uri {
                    h.uri = u.clone();
                }
                if let Some(v) = &s.ver {
                    h.version = v.clone();
                }
                // As HAProxy: the headers of `http-check send` replace the ones hidden in
                // the `option httpchk` version string.
                h.headers = s.hdrs.clone();
                if let Some(b) = &s.body {
                    h.body = b.clone();
                }
            }
            if let Some((e, _)) = &c.expect {
                h.expect_status = e.clone();
            }
            CheckKind::Http(h)
        }
        None => {
            if let (Some((_, o)), true) = (&c.send, c.send_own) {
                d.warn_at(
                    o,
                    "'http-check send' has no effect without 'option httpchk': checks stay TCP connects.",
                );
            }
            if let (Some((_, o)), true) = (&c.expect, c.expect_own) {
                d.warn_at(
                    o,
                    "'http-check expect' has no effect without 'option httpchk': checks stay TCP connects.",
                );
            }
            CheckKind::Tcp
        }
    }
}

/// HAProxy's proxy name rule (letters, digits, '-', '_', '.', ':'); alerts and returns
/// true when `name` breaks it.
fn bad_name(d: &mut Diags, kw: &str, name: &str) -> bool {
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        Some(c) => {
            d.alert(format!(
                "character '{}' is not permitted in '{kw}' name '{}'.",
                show(&c.to_string()),
                show(name)
            ));
            true
        }
        None => false,
    }
}

/// `udp@`, `ipv4@`, `unix@` prefixes of log targets.
fn strip_log_prefix(t: &str) -> Result<String, String> {
    if let Some((prefix, rest)) = t.split_once('@') {
        match prefix {
            "udp" | "udp4" | "ipv4" => Ok(rest.to_string()),
            "unix" => Ok(rest.to_string()),
            "udp6" | "ipv6" => Err("lb sends logs over IPv4 or to a UNIX socket only".into()),
            _ => Err(format!(
                "lb sends logs over UDP (IPv4), to a UNIX socket, stdout or stderr only, not to '{}@'",
                show(prefix)
            )),
        }
    } else {
        Ok(t.to_string())
    }
}

/// `what` is the keyword as messages name it, quotes included (`'maxconn'`).
fn int_arg(d: &mut Diags, what: &str, v: Option<&str>) -> Option<u32> {
    match v {
        None | Some("") => {
            d.alert(format!("{what} expects an integer argument."));
            None
        }
        Some(v) => match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                d.alert(format!(
                    "{what} expects an integer argument, got '{}'.",
                    show(v)
                ));
                None
            }
        },
    }
}

/// `what` is the keyword as messages name it, quotes included (`'timeout connect'`).
fn time_arg(d: &mut Diags, what: &str, v: Option<&String>) -> Option<Duration> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        d.alert(format!("{what} expects <time> as argument."));
        return None;
    };
    match units::duration(v) {
        Ok(t) if t.as_millis() > MAX_TIMER_MS => {
            d.alert(format!(
                "timer overflow in argument '{}' to {what} (maximum value is 2147483647 ms or ~24.8 days)",
                show(v)
            ));
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            d.alert(format!("{what}: {}", clean(&e)));
            None
        }
    }
}

/// `ADDR:PORT[-PORT][,ADDR:PORT...]` as in `bind` (and HAProxy 1.x section lines).
fn bind_list(d: &mut Diags, list: &str, out: &mut Vec<Bind>, total: &mut usize) {
    let here = d.here();
    for item in list.split(',') {
        match bind_addr(item) {
            Ok((addr, lo, hi, proto)) => {
                let n = (hi - lo) as usize + 1;
                if *total + n > MAX_TOTAL_BINDS {
                    d.alert(format!(
                        "'{}': too many listening addresses (more than {MAX_TOTAL_BINDS} in the file).",
                        show(item)
                    ));
                    return;
                }
                *total += n;
                for port in lo..=hi {
                    out.push(Bind {
                        addr,
                        port,
                        proto,
                        origin: here.clone(),
                    });
                }
            }
            Err(e) => d.alert(format!("'bind {}' : {}", show(item), clean(&e))),
        }
    }
}

fn bind_addr(item: &str) -> Result<(Option<Ipv4Addr>, u16, u16, Proto), String> {
    let (proto, rest) = match item.split_once('@') {
        None => (Proto::Tcp, item),
        Some(("ipv4" | "tcp" | "tcp4", r)) => (Proto::Tcp, r),
        // lb extension: HAProxy has no UDP proxies, lb balances UDP too.
        Some(("udp" | "udp4", r)) => (Proto::Udp, r),
        Some(("ipv6" | "tcp6" | "udp6" | "quic6", _)) => {
            return Err("lb balances IPv4 only".into());
        }
        Some((p, _)) => {
            return Err(format!(
                "lb listens on IPv4 addresses only, not on '{}@' sockets",
                show(p)
            ));
        }
    };
    if rest.starts_with('/') {
        return Err("lb listens on IPv4 addresses only, not on UNIX sockets".into());
    }
    if rest.matches(':').count() > 1 || rest.starts_with('[') {
        return Err("lb balances IPv4 only".into());
    }
    let Some((addr, ports)) = rest.rsplit_once(':') else {
        return Err(format!("missing port specification in '{}'", show(rest)));
    };
    let addr = match addr {
        "" | "*" | "0.0.0.0" => None,
        a => Some(ip_arg(a)?),
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (units::port(a)?, units::port(b)?);
            if a > b {
                return Err(format!("invalid port range '{a}-{b}'"));
            }
            (a, b)
        }
        None => {
            let p = units::port(ports)?;
            (p, p)
        }
    };
    Ok((addr, lo, hi, proto))
}

fn ip_arg(a: &str) -> Result<Ipv4Addr, String> {
    units::ipv4(a).map_err(|_| {
        if a.contains(|c: char| c.is_ascii_alphabetic()) {
            format!(
                "'{}' is not an IPv4 address (lb resolves no host names)",
                show(a)
            )
        } else {
            format!("'{}' is not an IPv4 address", show(a))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Proxy sections (defaults, frontend, backend, listen)
// ---------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn proxy_kw(
    d: &mut Diags,
    kind: Kind,
    name: &str,
    s: &mut Settings,
    own: Option<(&mut Vec<Bind>, &mut Vec<Server>)>,
    args: &[String],
    kwm: Kwm,
    total_binds: &mut usize,
) {
    let kw = args[0].as_str();
    let arg1 = args.get(1).map(String::as_str);
    // HAProxy's warnifnotcap(): a keyword for the other side of the proxy is ignored.
    let not_cap = |d: &mut Diags, what: &str, need_fe: bool| -> bool {
        let ok = if need_fe { kind.fe() } else { kind.be() };
        if !ok {
            d.warn(format!(
                "'{what}' ignored because {} '{}' has no {} capability.",
                kind.word(),
                name,
                if need_fe { "frontend" } else { "backend" }
            ));
        }
        !ok
    };
    let not_in_defaults = |d: &mut Diags, what: &str| -> bool {
        if kind == Kind::Defaults {
            d.alert(format!("'{what}' not allowed in 'defaults' section."));
        }
        kind == Kind::Defaults
    };
    match kw {
        "mode" => {
            if d.too_many(args, 0, 1) {
                return;
            }
            match arg1 {
                Some("tcp") => s.mode = Mode::Tcp,
                Some("http") => s.mode = Mode::Http,
                Some("health") => d.alert(
                    "'mode health' is not supported by lb (it answers no requests itself).",
                ),
                Some(m) => d.alert(format!("unknown proxy mode '{}'.", show(m))),
                None => d.alert("'mode' expects 'tcp' or 'http' as an argument."),
            }
        }
        "bind" => {
            if not_in_defaults(d, kw) || not_cap(d, kw, true) {
                return;
            }
            let Some((binds, _)) = own else { return };
            let Some(list) = arg1.filter(|a| !a.is_empty()) else {
                d.alert("'bind' expects {<path>|[addr1]:port1[-end1]}{,[addr]:port[-end]}... as arguments.");
                return;
            };
            bind_list(d, list, binds, total_binds);
            let mut i = 2;
            while let Some(p) = args.get(i) {
                match bind_param(p) {
                    Some((n, verdict)) => {
                        if n == 1 && args.get(i + 1).is_none() {
                            d.alert(format!(
                                "'bind {}' : '{p}' expects an argument.",
                                show(list)
                            ));
                            return;
                        }
                        match verdict {
                            Ok(why) => {
                                d.warn(format!("'bind ... {p}' has no effect in lb: {why}."))
                            }
                            Err(why) => d.alert(format!(
                                "'bind ... {p}' is not supported by lb: {why}."
                            )),
                        }
                        i += 1 + n;
                    }
                    None => {
                        d.alert(format!(
                            "'bind {}' in section '{}': unknown keyword '{}'{}",
                            show(list),
                            kind.word(),
                            show(p),
                            match best_match(p, BIND_KW) {
                                Some(b) => format!("; did you mean '{b}' maybe ?"),
                                None => ".".into(),
                            }
                        ));
                        return;
                    }
                }
            }
        }
        "default_backend" => {
            if not_cap(d, kw, true) || d.too_many(args, 0, 1) {
                return;
            }
            match arg1.filter(|a| !a.is_empty()) {
                Some(b) => {
                    if bad_name(d, "backend", b) {
                        return;
                    }
                    s.default_backend = Some(b.to_string());
                    s.default_backend_own = true;
                }
                None => d.alert("'default_backend' expects a backend name."),
            }
        }
        "use_backend" => d.alert(
            "'use_backend' is not supported: lb has no ACLs (content switching); send the frontend's connections to one backend with 'default_backend'.",
        ),
        "balance" => {
            if not_cap(d, kw, false) {
                return;
            }
            match arg1 {
                Some("roundrobin") => {
                    d.too_many(args, 0, 1);
                }
                Some(a) => {
                    let base = a.split('(').next().unwrap_or(a);
                    const KNOWN: &[&str] = &[
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
                    if KNOWN.contains(&base) {
                        d.alert(format!(
                            "balance '{}' is not supported yet (lb balances roundrobin only)",
                            show(a)
                        ));
                    } else {
                        d.alert(format!(
                            "unknown balance algorithm '{}'{}",
                            show(a),
                            match best_match(a, KNOWN) {
                                Some(b) => format!("; did you mean '{b}' maybe ?"),
                                None => " (lb balances roundrobin only)".into(),
                            }
                        ));
                    }
                }
                None => d.alert("'balance' expects an algorithm ('roundrobin')."),
            }
        }
        "retries" => {
            if not_cap(d, kw, false) || d.too_many(args, 0, 1) {
                return;
            }
            if let Some(n) = int_arg(d, "'retries'", arg1) {
                s.retries = n;
            }
        }
        "timeout" => timeout_kw(d, kind, name, s, args),
        "contimeout" | "clitimeout" | "srvtimeout" => d.alert(format!(
            "the '{kw}' directive is not supported anymore since HAProxy 2.1. Use 'timeout {}' instead.",
            match kw {
                "contimeout" => "connect",
                "clitimeout" => "client",
                _ => "server",
            }
        )),
        "option" => option_kw(d, kind, name, s, args, kwm),
        "http-check" => {
            if not_cap(d, kw, false) {
                return;
            }
            http_check_kw(d, s, args);
        }
        "server" | "default-server" => {
            if kw == "server" && not_in_defaults(d, kw) {
                return;
            }
            if not_cap(d, kw, false) {
                return;
            }
            let backend = if kind == Kind::Defaults { "" } else { name };
            if kw == "default-server" {
                let mut tpl = s.default_server.clone();
                server_params(d, &format!("'{kw}'"), &mut tpl, args, 1);
                s.default_server = tpl;
                return;
            }
            let Some((_, servers)) = own else { return };
            if let Some(srv) = server_line(d, backend, &s.default_server, args) {
                servers.push(srv);
            }
        }
        "source" => {
            if not_cap(d, kw, false) {
                return;
            }
            source_kw(d, s, args);
        }
        "log" => {
            if kwm == Kwm::No {
                d.warn("'no log' has no effect in lb: health-check and server state logs go to the global 'log' targets.");
                return;
            }
            match arg1 {
                Some("global") => {
                    d.too_many(args, 0, 1);
                }
                Some(_) => d.warn(
                    "'log <target>' in a proxy has no effect in lb: lb logs to the global 'log' targets only (use 'log global').",
                ),
                None => d.alert("'log' expects either <address[:port]> and <facility> or 'global' as arguments."),
            }
        }
        "acl" => d.warn(
            "'acl' has no effect in lb: lb has no ACLs, nothing evaluates this one.",
        ),
        "http-request" => {
            let action = arg1.unwrap_or("");
            if matches!(
                action,
                "deny" | "reject" | "tarpit" | "auth" | "silent-drop"
            ) {
                d.alert(format!(
                    "'http-request {}' is not supported: lb forwards connections at L4 without parsing HTTP, so this access rule would never be applied.",
                    show(action)
                ));
            } else {
                d.warn(format!("'http-request' has no effect in lb (L4): {L7_GENERIC}."));
            }
        }
        "tcp-request" => {
            if arg1 == Some("inspect-delay") {
                d.warn("'tcp-request inspect-delay' has no effect in lb: lb does not inspect the data it forwards.");
            } else {
                d.alert(
                    "'tcp-request' rules are not supported: lb accepts or refuses no connections by rule, so these rules would never be applied.",
                );
            }
        }
        "tcp-check" => {
            if arg1 == Some("comment") {
                return;
            }
            d.alert(
                "'tcp-check' rules are not supported: lb's TCP checks are connects only ('option tcp-check' with no rules), or use 'option httpchk'.",
            );
        }
        "disabled" => d.alert(
            "'disabled' proxies are not supported by lb: remove or comment out the section.",
        ),
        "enabled" => {
            d.too_many(args, 0, 0);
        }
        _ => {
            if let Some(why) = proxy_l7(kw) {
                d.warn(format!("'{kw}' has no effect in lb (L4): {why}."));
            } else if let Some(why) = proxy_no_effect(kw) {
                d.warn(format!("'{kw}' has no effect in lb: {why}."));
            } else if let Some(why) = proxy_unsupported(kw) {
                d.alert(format!("'{kw}' is not supported by lb: {why}."));
            } else {
                d.alert(format!(
                    "unknown keyword '{}' in '{}' section{}",
                    show(kw),
                    kind.word(),
                    did_you_mean(kw, PROXY_KW)
                ));
            }
        }
    }
}

fn timeout_kw(d: &mut Diags, kind: Kind, name: &str, s: &mut Settings, args: &[String]) {
    let Some(which) = args.get(1) else {
        d.alert("'timeout' expects 'client', 'server', 'connect', 'check', 'queue', 'http-keep-alive', 'http-request', 'tunnel', 'tarpit', 'client-fin' or 'server-fin'.");
        return;
    };
    let kwname = format!("timeout {}", show(which));
    let quoted = format!("'{kwname}'");
    let (slot, be): (Option<&mut Option<Duration>>, bool) = match which.as_str() {
        "connect" => (Some(&mut s.timeouts.connect), true),
        "server" => (Some(&mut s.timeouts.server), true),
        "check" => (Some(&mut s.timeouts.check), true),
        "queue" => (Some(&mut s.timeouts.queue), true),
        "client" => (Some(&mut s.timeouts.client), false),
        "http-request" | "http-keep-alive" | "tarpit" | "tunnel" | "client-fin" | "server-fin" => {
            (None, false)
        }
        other => {
            d.alert(format!(
                "'timeout' supports 'client', 'server', 'connect', 'check', 'queue', 'http-keep-alive', 'http-request', 'tarpit', 'tunnel', 'client-fin' and 'server-fin' (got '{}')",
                show(other)
            ));
            return;
        }
    };
    if d.too_many(args, 1, 1) {
        return;
    }
    let Some(t) = time_arg(d, &quoted, args.get(2)) else {
        return;
    };
    match which.as_str() {
        "http-request" => {
            d.warn("'timeout http-request' has no effect in lb (L4): lb never waits for an HTTP request, it forwards the connection as soon as it opens.");
            return;
        }
        "http-keep-alive" => {
            d.warn("'timeout http-keep-alive' has no effect in lb (L4): keep-alive is between client and server, lb does not see requests.");
            return;
        }
        "tarpit" => {
            d.warn(format!(
                "'timeout tarpit' has no effect in lb (L4): {L7_GENERIC}."
            ));
            return;
        }
        "tunnel" | "client-fin" | "server-fin" => {
            d.warn(format!(
                "'timeout {which}' has no effect in lb: the data plane applies 'timeout client' and 'timeout server' to whole flows."
            ));
            return;
        }
        _ => {}
    }
    if be && !kind.be() {
        d.warn(format!(
            "'{kwname}' ignored because {} '{name}' has no backend capability.",
            kind.word()
        ));
        return;
    }
    if !be && kind == Kind::Frontend {
        // lb keeps `timeout client` with the backend (as the native format does).
        d.warn(format!(
            "'timeout client' in frontend '{name}' has no effect in lb: lb applies the backend's 'timeout client'; set it in 'defaults' or in the backend."
        ));
        return;
    }
    if let Some(slot) = slot {
        *slot = Some(t);
    }
}

fn option_kw(d: &mut Diags, kind: Kind, name: &str, s: &mut Settings, args: &[String], kwm: Kwm) {
    let Some(opt) = args.get(1) else {
        d.alert("'option' expects an option name.");
        return;
    };
    let Some(&(_, what)) = OPTIONS.iter().find(|(n, _)| n == opt) else {
        let names: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
        let best = best_match(opt, &names);
        match best {
            Some(b) => d.alert(format!(
                "unknown option '{}'; did you mean '{b}' maybe ?",
                show(opt)
            )),
            None => d.alert(format!("unknown option '{}'.", show(opt))),
        }
        return;
    };
    if kwm != Kwm::Std && !invertible(opt) {
        d.alert(format!(
            "negation/default is not supported for option '{}'.",
            show(opt)
        ));
        return;
    }
    let on = kwm == Kwm::Std;
    let be_only = matches!(
        what,
        Opt::Redispatch | Opt::AllBackups | Opt::LogHealthChecks | Opt::HttpChk | Opt::TcpCheck
    );
    if be_only && !kind.be() {
        d.warn(format!(
            "'option {opt}' ignored because {} '{name}' has no backend capability.",
            kind.word()
        ));
        return;
    }
    match what {
        Opt::Redispatch => {
            // `option redispatch <interval>`: lb redispatches on the first failure.
            if args.len() > 2 && on {
                if d.too_many(args, 1, 1) {
                    return;
                }
                d.warn("'option redispatch <interval>' has no effect in lb beyond 'option redispatch': a connection whose server is DOWN is redispatched at once.");
            }
            s.redispatch = on;
        }
        Opt::AllBackups => {
            if !d.too_many(args, 1, 0) {
                s.allbackups = on;
            }
        }
        Opt::LogHealthChecks => {
            if !d.too_many(args, 1, 0) {
                s.log_health_checks = on;
            }
        }
        Opt::TcpLog => {
            if !d.too_many(args, 1, 0) {
                s.tcplog = on;
            }
        }
        Opt::TcpCheck => {
            if !d.too_many(args, 1, 0) {
                s.check.http = None;
                drop_inherited_rules(&mut s.check);
            }
        }
        Opt::HttpChk => {
            if d.too_many(args, 1, 3) {
                return;
            }
            if let Some(req) = httpchk_request(d, &args[2..]) {
                s.check.http = Some(req);
                drop_inherited_rules(&mut s.check);
            }
        }
        Opt::Quiet => {
            d.too_many(args, 1, 0);
        }
        Opt::L7(why) => {
            if on {
                d.warn(format!("'option {opt}' has no effect in lb (L4): {why}."));
            }
        }
        Opt::NoEffect(why) => {
            if on {
                d.warn(format!("'option {opt}' has no effect in lb: {why}."));
            }
        }
        Opt::Unsupported(why) => {
            if on {
                d.alert(format!("'option {opt}' is not supported by lb: {why}."));
            }
        }
    }
}

/// A new check type in a proxy starts a new rule set, as in HAProxy: `http-check` rules
/// inherited from the defaults section no longer apply (the proxy's own ones still do).
fn drop_inherited_rules(c: &mut CheckCfg) {
    if !c.send_own {
        c.send = None;
    }
    if !c.expect_own {
        c.expect = None;
    }
}

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `option httpchk [[METH] URI [VER]]`; VER may hide headers after `\r\n` and a body after
/// `\r\n\r\n` (the old form the seed uses).
fn httpchk_request(d: &mut Diags, a: &[String]) -> Option<HttpCheck> {
    let mut h = HttpCheck::default();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    match a.as_slice() {
        [] => {}
        [uri] => h.uri = uri.to_string(),
        [meth, uri] => {
            h.method = meth.to_string();
            h.uri = uri.to_string();
        }
        [meth, uri, ver, ..] => {
            h.method = meth.to_string();
            h.uri = uri.to_string();
            let (ver, rest) = match ver.find("\r\n") {
                Some(i) => (&ver[..i], Some(&ver[i..])),
                None => (*ver, None),
            };
            h.version = ver.to_string();
            if let Some(rest) = rest {
                let (hdrs, body) = match rest.find("\r\n\r\n") {
                    Some(i) => (&rest[..i], Some(&rest[i + 4..])),
                    None => (rest, None),
                };
                for line in hdrs.split("\r\n").filter(|l| !l.is_empty()) {
                    let parsed = line.split_once(':').and_then(|(n, v)| {
                        let v = v.trim_matches([' ', '\t']);
                        (token_ok(n) && !v.contains(['\r', '\n'])).then(|| format!("{n}: {v}"))
                    });
                    match parsed {
                        Some(hdr) => h.headers.push(hdr),
                        None => {
                            d.alert(format!(
                                "'option httpchk' : unable to parse the request '{}'.",
                                show(rest)
                            ));
                            return None;
                        }
                    }
                }
                if let Some(b) = body {
                    h.body = b.to_string();
                }
            }
        }
    }
    for (what, v) in [
        ("method", &h.method),
        ("uri", &h.uri),
        ("version", &h.version),
    ] {
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
            d.alert(format!(
                "'option httpchk' : the {what} '{}' would break the request line (no spaces or line breaks allowed).",
                show(v)
            ));
            return None;
        }
    }
    Some(h)
}

/// `http-check send|expect|comment|...`.
fn http_check_kw(d: &mut Diags, s: &mut Settings, args: &[String]) {
    let here = d.here();
    match args.get(1).map(String::as_str) {
        Some("send") => {
            if s.check.send_own {
                d.alert("only one 'http-check send' per backend is supported by lb (HAProxy would chain send/expect steps).");
                return;
            }
            let mut spec = SendSpec {
                meth: None,
                uri: None,
                ver: None,
                hdrs: Vec::new(),
                body: None,
            };
            let mut i = 2;
            while let Some(k) = args.get(i) {
                let n = if k == "hdr" { 2 } else { 1 };
                let vals: Vec<&String> = args.iter().skip(i + 1).take(n).collect();
                if vals.len() < n {
                    d.alert(format!(
                        "'http-check send' : '{}' expects {}.",
                        show(k),
                        if n == 2 { "<name> and <value>" } else { "an argument" }
                    ));
                    return;
                }
                let v = vals[0].clone();
                match k.as_str() {
                    "meth" => spec.meth = Some(v),
                    "uri" => spec.uri = Some(v),
                    "ver" => spec.ver = Some(v),
                    "body" => spec.body = Some(v),
                    "comment" => {}
                    "hdr" => {
                        let value = match log_format_literal(vals[1]) {
                            Ok(v) => v,
                            Err(()) => {
                                d.alert(format!(
                                    "'http-check send' : header value '{}' uses log-format variables, which lb does not support (write '%%' for a '%').",
                                    show(vals[1])
                                ));
                                return;
                            }
                        };
                        if !token_ok(&v) || value.contains(['\r', '\n']) {
                            d.alert(format!(
                                "'http-check send' : invalid header '{}'.",
                                show(&v)
                            ));
                            return;
                        }
                        spec.hdrs.push(format!("{v}: {value}"));
                    }
                    "uri-lf" | "body-lf" => {
                        d.alert(format!(
                            "'http-check send' : '{k}' (log-format) is not supported by lb; use '{}'.",
                            k.trim_end_matches("-lf")
                        ));
                        return;
                    }
                    other => {
                        d.alert(format!(
                            "'http-check send' : unknown keyword '{}'{}",
                            show(other),
                            match best_match(
                                other,
                                &["meth", "uri", "uri-lf", "ver", "hdr", "body", "body-lf", "comment"]
                            ) {
                                Some(b) => format!("; did you mean '{b}' maybe ?"),
                                None => " (meth, uri, ver, hdr, body, comment).".into(),
                            }
                        ));
                        return;
                    }
                }
                i += 1 + n;
            }
            for (what, v) in [("meth", &spec.meth), ("uri", &spec.uri), ("ver", &spec.ver)] {
                if let Some(v) = v
                    && (v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()))
                {
                    d.alert(format!(
                        "'http-check send' : '{what} {}' would break the request line (no spaces or line breaks allowed).",
                        show(v)
                    ));
                    return;
                }
            }
            s.check.send = Some((spec, here));
            s.check.send_own = true;
        }
        Some("expect") => {
            if s.check.expect_own {
                d.alert("only one 'http-check expect' per backend is supported by lb (HAProxy would chain send/expect steps).");
                return;
            }
            let mut i = 2;
            let mut negate = false;
            loop {
                match args.get(i).map(String::as_str) {
                    Some("comment") => i += 2,
                    Some(
                        o @ ("min-recv" | "ok-status" | "error-status" | "tout-status"
                        | "on-success" | "on-error" | "status-code"),
                    ) => {
                        d.alert(format!(
                            "'http-check expect {o}' is not supported by lb: a check passes when the status matches."
                        ));
                        return;
                    }
                    Some("!") => {
                        negate = !negate;
                        i += 1;
                    }
                    _ => break,
                }
            }
            let Some(m) = args.get(i) else {
                d.alert("'http-check expect' expects a match ('status <codes>').");
                return;
            };
            let (m, neg2) = match m.strip_prefix('!') {
                Some(rest) => (rest, true),
                None => (m.as_str(), false),
            };
            let negate = negate ^ neg2;
            match m {
                "status" => {}
                "rstatus" | "string" | "rstring" | "hdr" | "fhdr" | "string-lf" | "custom" => {
                    d.alert(format!(
                        "'http-check expect {m}' is not supported by lb: lb's HTTP checks match the status only ('http-check expect status 200,301-399')."
                    ));
                    return;
                }
                other => {
                    d.alert(format!(
                        "'http-check expect' : unknown match '{}'{}",
                        show(other),
                        match best_match(
                            other,
                            &["status", "rstatus", "string", "rstring", "hdr", "fhdr"]
                        ) {
                            Some(b) => format!("; did you mean '{b}' maybe ?"),
                            None => ".".into(),
                        }
                    ));
                    return;
                }
            }
            let Some(codes) = args.get(i + 1) else {
                d.alert("'http-check expect status' expects <codes> (e.g. 200 or 200,301-399).");
                return;
            };
            if d.too_many(args, i + 1, 0) {
                return;
            }
            match units::status_ranges(codes) {
                Ok(r) => {
                    let r = if negate { complement(&r) } else { r };
                    if r.is_empty() {
                        d.alert(format!(
                            "'http-check expect ! status {}' would fail every check.",
                            show(codes)
                        ));
                        return;
                    }
                    s.check.expect = Some((r, here));
                    s.check.expect_own = true;
                }
                Err(e) => d.alert(format!("'http-check expect status': {}", clean(&e))),
            }
        }
        Some("comment") => {}
        Some("send-state") => d.warn(
            "'http-check send-state' has no effect in lb: lb does not send the X-Haproxy-Server-State header.",
        ),
        Some("disable-on-404") => d.alert(
            "'http-check disable-on-404' is not supported by lb yet: a 404 would mark the server DOWN instead of draining it.",
        ),
        Some(o @ ("connect" | "set-var" | "unset-var")) => d.alert(format!(
            "'http-check {o}' is not supported by lb: checks go to the server's address (or its 'addr'/'port')."
        )),
        other => d.alert(format!(
            "'http-check' only supports 'disable-on-404', 'send-state', 'comment', 'connect', 'send', 'expect'. but got '{}'",
            show(other.unwrap_or(""))
        )),
    }
}

/// A log-format string with no variables, `%%` unescaped; `Err` if it has variables.
fn log_format_literal(s: &str) -> Result<String, ()> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            if it.next() == Some('%') {
                out.push('%');
            } else {
                return Err(());
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Status codes 100-599 not in `r`.
fn complement(r: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = 100u16;
    let mut sorted = r.to_vec();
    sorted.sort_unstable();
    for (a, b) in sorted {
        if a > start {
            out.push((start, a - 1));
        }
        start = start.max(b.saturating_add(1));
    }
    if start <= 599 {
        out.push((start, 599));
    }
    out
}

/// `source ADDR[:PORT] [usesrc clientip|client|ADDR] [interface NAME]`.
fn source_kw(d: &mut Diags, s: &mut Settings, args: &[String]) {
    let Some(addr) = args.get(1) else {
        d.alert("'source' expects <addr>[:<port>] as argument.");
        return;
    };
    let ip = addr.rsplit_once(':').map_or(addr.as_str(), |(a, _)| a);
    let any = matches!(ip, "0.0.0.0" | "*" | "");
    if !any && let Err(e) = ip_arg(ip) {
        d.alert(format!("'source': {e}"));
        return;
    }
    let mut i = 2;
    let mut usesrc = None;
    while let Some(k) = args.get(i) {
        let Some(v) = args.get(i + 1) else {
            d.alert(format!("'source' : '{}' expects an argument.", show(k)));
            return;
        };
        match k.as_str() {
            "usesrc" => usesrc = Some(v.as_str()),
            "interface" => d.warn(
                "'source ... interface' has no effect in lb: lb sends through the interface of the route to the server.",
            ),
            other => {
                d.alert(format!(
                    "'source' only supports optional keywords 'usesrc' and 'interface' (got '{}').",
                    show(other)
                ));
                return;
            }
        }
        i += 2;
    }
    match usesrc {
        Some("clientip" | "client") => s.nat = NatMode::Dnat,
        Some(u) if u.starts_with("hdr_ip(") => d.alert(format!(
            "'usesrc {}' is not supported by lb (L4): {L7_GENERIC}.",
            show(u)
        )),
        Some(u) => d.alert(format!(
            "'usesrc {}' is not supported by lb: servers see either the LB's address (default, full-nat) or the client's ('usesrc clientip', nat dnat).",
            show(u)
        )),
        None => {
            s.nat = NatMode::FullNat;
            if !any {
                d.warn(format!(
                    "'source {}' has no effect in lb: lb picks the source address from the route to each server (full-nat).",
                    show(addr)
                ));
            }
        }
    }
}

/// `server NAME ADDR[:PORT] [params]`, starting from the `default-server` template.
fn server_line(d: &mut Diags, backend: &str, tpl: &Server, args: &[String]) -> Option<Server> {
    let (Some(name), Some(addr)) = (
        args.get(1).filter(|a| !a.is_empty()),
        args.get(2).filter(|a| !a.is_empty()),
    ) else {
        d.alert("'server' expects <name> and <addr>[:<port>] as arguments.");
        return None;
    };
    let ctx = format!("'server {backend}/{}'", show(name));
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        d.alert(format!(
            "character '{}' is not permitted in server name '{}'.",
            show(&c.to_string()),
            show(name)
        ));
        return None;
    }
    let parsed = (|| -> Result<(Ipv4Addr, u16), String> {
        let a = addr.strip_prefix("ipv4@").unwrap_or(addr);
        if a.contains('@') || a.starts_with('/') {
            return Err(format!(
                "'{}': lb forwards to IPv4 addresses only",
                show(addr)
            ));
        }
        if a.matches(':').count() > 1 || a.starts_with('[') {
            return Err(format!("'{}': lb balances IPv4 only", show(addr)));
        }
        let Some((ip, port)) = a.rsplit_once(':') else {
            return Err(format!(
                "address '{}' has no port: lb needs one (HAProxy would reuse the port the client connected to)",
                show(addr)
            ));
        };
        if port.is_empty() || port.starts_with(['+', '-']) {
            return Err(format!(
                "address '{}' has no fixed port: lb needs one (port offsets are not supported)",
                show(addr)
            ));
        }
        let ip = ip_arg(ip)?;
        if ip.is_unspecified() {
            return Err(format!(
                "address '{}' must be a concrete IPv4 address",
                show(addr)
            ));
        }
        let port = units::port(port).map_err(|e| format!("in '{}': {e}", show(addr)))?;
        Ok((ip, port))
    })();
    let (ip, port) = match parsed {
        Ok(p) => p,
        Err(e) => {
            d.alert(format!("{ctx} : {}", clean(&e)));
            return None;
        }
    };
    let mut srv = tpl.clone();
    srv.name = name.clone();
    srv.addr = ip;
    srv.port = port;
    srv.origin = d.here();
    server_params(d, &ctx, &mut srv, args, 3);
    Some(srv)
}

/// Server (and `default-server`) options from `args[start..]`.
fn server_params(d: &mut Diags, ctx: &str, srv: &mut Server, args: &[String], start: usize) {
    let mut i = start;
    while let Some(k) = args.get(i) {
        let k = k.as_str();
        let v = args.get(i + 1);
        let takes = match k {
            "check" | "no-check" | "backup" | "no-backup" | "disabled" | "enabled" => 0,
            "inter" | "fastinter" | "downinter" | "fall" | "rise" | "weight" | "port" | "addr"
            | "maxconn" => 1,
            _ => {
                if let Some((n, why)) = server_no_effect(k) {
                    if n == 1 && v.is_none() {
                        d.alert(format!("{ctx} : '{k}' expects an argument."));
                        return;
                    }
                    d.warn(format!("{ctx} : '{k}' has no effect in lb: {why}."));
                    i += 1 + n;
                    continue;
                }
                if let Some((n, why)) = server_unsupported(k) {
                    d.alert(format!("{ctx} : '{k}' is not supported by lb: {why}."));
                    i += 1 + n;
                    continue;
                }
                d.alert(format!(
                    "{ctx} : unknown keyword '{}'{}",
                    show(k),
                    match best_match(k, SERVER_KW) {
                        Some(b) => format!("; did you mean '{b}' maybe ?"),
                        None => ".".into(),
                    }
                ));
                return;
            }
        };
        if takes == 1 && v.is_none_or(|v| v.is_empty()) {
            let what = match k {
                "inter" | "fastinter" | "downinter" => "<time>",
                "addr" => "<ipv4 address>",
                _ => "an integer",
            };
            d.alert(format!("{ctx} : '{k}' expects {what} as argument."));
            return;
        }
        let v = v.map_or("", String::as_str);
        match k {
            "check" => srv.check = true,
            "no-check" => srv.check = false,
            "backup" => srv.backup = true,
            "no-backup" => srv.backup = false,
            "disabled" => srv.disabled = true,
            "enabled" => srv.disabled = false,
            "inter" | "fastinter" | "downinter" => {
                if let Some(t) = time_arg(d, &format!("{ctx} : '{k}'"), Some(&v.to_string())) {
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
            "port" => match units::port(v) {
                Ok(p) => srv.check_port = Some(p),
                Err(e) => d.alert(format!("{ctx} : 'port': {}", clean(&e))),
            },
            "addr" => match ip_arg(v) {
                Ok(a) => srv.check_addr = Some(a),
                Err(e) => d.alert(format!("{ctx} : 'addr': {e}")),
            },
            _ => {}
        }
        i += 1 + takes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokenize(line, &|_| Ok(None)).expect("tokenizes")
    }

    fn env_words(line: &str) -> Result<Vec<String>, TokenError> {
        tokenize(line, &|n: &str| match n {
            "HOST" => Ok(Some("10.0.0.1".into())),
            "LIST" => Ok(Some("a b  c".into())),
            "EMPTY" => Ok(Some(String::new())),
            n if n.starts_with('.') => Err(()),
            _ => Ok(None),
        })
    }

    #[test]
    fn seed_httpchk_line() {
        let w = words(
            r"    option httpchk GET /health_check.html HTTP/1.0\r\nUser-agent:\ Proxy-Check",
        );
        assert_eq!(
            w,
            [
                "option",
                "httpchk",
                "GET",
                "/health_check.html",
                "HTTP/1.0\r\nUser-agent: Proxy-Check"
            ]
        );
        let mut d = Diags {
            file: "t".into(),
            line: 1,
            list: Vec::new(),
            fatal: 0,
        };
        let h = httpchk_request(&mut d, &w[2..]).expect("valid request");
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
            ("GET", "/health_check.html", "HTTP/1.0")
        );
        assert_eq!(h.headers, ["User-agent: Proxy-Check"]);
        assert!(h.body.is_empty() && h.expect_status.is_empty());
        assert!(d.list.is_empty());
    }

    #[test]
    fn comments_and_spaces() {
        assert_eq!(words("  global#this is the global section"), ["global"]);
        assert_eq!(words("mode             http   # or tcp"), ["mode", "http"]);
        assert_eq!(words("a\tb\x0bc"), ["a", "b", "c"]);
        assert!(words("   # only a comment").is_empty());
        assert!(words("").is_empty());
        assert_eq!(words("a#b"), ["a"]);
        assert_eq!(words("a\r\nignored"), ["a"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(
            words(r#"log-format "%{+Q}o %t"' %s'\ %{-Q}r"#),
            ["log-format", "%{+Q}o %t %s %{-Q}r"]
        );
        assert_eq!(
            words(r##"a "#not a comment" 'b # c'"##),
            ["a", "#not a comment", "b # c"]
        );
        assert_eq!(words(r#"a "" b"#), ["a", "", "b"]);
        assert_eq!(words(r#"'it''s'"#), ["its"]);
        assert_eq!(
            words(r#""single ' inside" 'double " inside'"#),
            ["single ' inside", "double \" inside"]
        );
        // No escapes inside strong quotes.
        assert_eq!(words(r"'a\nb'"), [r"a\nb"]);
        assert_eq!(
            tokenize(r#"option "unterminated"#, &|_| Ok(None)),
            Err(TokenError::UnmatchedQuote { pos: 8 })
        );
        assert_eq!(
            tokenize("  x 'open", &|_| Ok(None)),
            Err(TokenError::UnmatchedQuote { pos: 5 })
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r"a\#b"), ["a#b"]);
        assert_eq!(words(r"a\\b"), [r"a\b"]);
        assert_eq!(words(r#"\'\""#), [r#"'""#]);
        assert_eq!(words(r"\t\r\n"), ["\t\r\n"]);
        assert_eq!(words(r"\x41\x62"), ["Ab"]);
        assert_eq!(words(r#""\x41 \$""#), ["A $"]);
        // Unknown escapes and `\$` outside double quotes keep the backslash.
        assert_eq!(words(r"\1 \$x \q"), [r"\1", r"\$x", r"\q"]);
        // A trailing backslash is a literal character: no line continuation.
        assert_eq!(
            words(r"server a 1.2.3.4:80 \"),
            ["server", "a", "1.2.3.4:80", r"\"]
        );
        assert_eq!(words(r"check\"), [r"check\"]);
        assert_eq!(
            tokenize(r"a \x4", &|_| Ok(None)),
            Err(TokenError::BadHex { pos: 3 })
        );
        assert_eq!(
            tokenize(r"a \xzz", &|_| Ok(None)),
            Err(TokenError::BadHex { pos: 3 })
        );
        assert_eq!(
            tokenize(r"\xff", &|_| Ok(None)),
            Err(TokenError::NotUtf8 { word: 1 })
        );
    }

    #[test]
    fn environment() {
        assert_eq!(
            env_words(r#"bind "$HOST:80""#),
            Ok(vec!["bind".into(), "10.0.0.1:80".into()])
        );
        assert_eq!(env_words(r#""${HOST}x""#), Ok(vec!["10.0.0.1x".into()]));
        assert_eq!(
            env_words(r#""${NOPE-1.2.3.4}:80""#),
            Ok(vec!["1.2.3.4:80".into()])
        );
        assert_eq!(env_words(r#""${EMPTY-dflt}""#), Ok(vec!["".into()]));
        assert_eq!(
            env_words(r#"x "${LIST[*]}""#),
            Ok(vec!["x".into(), "a".into(), "b".into(), "c".into()])
        );
        assert_eq!(env_words(r#"$HOST"#), Ok(vec!["$HOST".into()]));
        assert_eq!(env_words(r#"'$HOST'"#), Ok(vec!["$HOST".into()]));
        assert_eq!(env_words(r#""$1""#), Err(TokenError::VarName { pos: 3 }));
        assert_eq!(env_words(r#""${HOST""#), Err(TokenError::Brace { pos: 3 }));
        assert_eq!(
            env_words(r#""${HOST[x]}""#),
            Err(TokenError::WrongExpand { pos: 8 })
        );
        assert_eq!(
            env_words(r#""${.NOPE}""#),
            Err(TokenError::VarName { pos: 4 })
        );
    }

    #[test]
    fn too_many_words() {
        let line = vec!["w"; MAX_LINE_ARGS].join(" ");
        assert_eq!(words(&line).len(), MAX_LINE_ARGS);
        assert_eq!(
            tokenize(&format!("{line} x"), &|_| Ok(None)),
            Err(TokenError::TooMany)
        );
    }

    #[test]
    fn suggestions_follow_haproxy() {
        assert_eq!(best_match("serverr", PROXY_KW), Some("server"));
        assert_eq!(
            best_match("defualt_backend", PROXY_KW),
            Some("default_backend")
        );
        assert_eq!(best_match("balanc", PROXY_KW), Some("balance"));
        assert_eq!(best_match("chek", SERVER_KW), Some("check"));
        assert_eq!(best_match("zzzzzzzzzzzzz", PROXY_KW), None);
    }

    fn ok(text: &str) -> Parsed {
        match parse("t.cfg", text) {
            Ok(p) => p,
            Err(e) => panic!("should parse:\n{e}"),
        }
    }

    fn alerts(text: &str) -> Vec<String> {
        match parse("t.cfg", text) {
            Ok(_) => panic!("should fail"),
            Err(e) => e.alerts().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn sections_and_inheritance() {
        let p = ok(
            "defaults\n  mode tcp\n  timeout connect 5s\n  default-server inter 1s fall 5\n  option redispatch\n\
                    frontend f\n  bind 10.0.0.1:80,:8080\n  default_backend b\n\
                    backend b\n  server s1 10.0.1.1:80 check\n  default-server rise 7\n  server s2 10.0.1.2:80 weight 0 backup\n\
                    defaults\n  retries 5\n\
                    listen l 10.0.0.2:53\n  server s 10.0.2.1:53\n",
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let c = p.config;
        assert_eq!(c.frontends.len(), 2);
        assert_eq!(c.frontends[0].binds.len(), 2);
        assert_eq!(c.frontends[0].binds[1].addr, None);
        assert_eq!(c.frontends[0].binds[1].port, 8080);
        assert_eq!(c.frontends[1].name, "l");
        assert_eq!(c.frontends[1].default_backend, "l");
        let b = c.backend("b").expect("b");
        assert_eq!(b.timeouts.connect, Some(Duration::from_secs(5)));
        assert!(b.redispatch);
        let (s1, s2) = (&b.servers[0], &b.servers[1]);
        assert_eq!(
            (s1.inter, s1.fall, s1.rise, s1.check),
            (Duration::from_secs(1), 5, 2, true)
        );
        // default-server applies to the servers declared after it.
        assert_eq!(
            (s2.rise, s2.weight, s2.backup, s2.check),
            (7, 0, true, false)
        );
        // A later `defaults` replaces the earlier one.
        let l = c.backend("l").expect("l");
        assert_eq!(l.retries, 5);
        assert!(!l.redispatch);
        assert_eq!(l.timeouts.connect, None);
    }

    #[test]
    fn named_defaults_and_from() {
        let c = ok("defaults base\n  retries 9\ndefaults other\n  retries 1\n\
                    backend b from base\n  server s 10.0.0.1:80\n\
                    backend c\n  server s 10.0.0.1:80\n\
                    frontend f\n  bind :80\n  default_backend b\n")
        .config;
        assert_eq!(c.backend("b").expect("b").retries, 9);
        assert_eq!(c.backend("c").expect("c").retries, 1);
        assert_eq!(
            alerts("backend b from nope\n  server s 10.0.0.1:80\n"),
            ["[ALERT] parsing [t.cfg:1] : defaults section 'nope' not found for backend 'b'."]
        );
    }

    #[test]
    fn http_check_send_and_expect() {
        let c = ok("backend b\n  option httpchk\n  http-check send meth HEAD uri /ping ver HTTP/1.1 hdr Host example.com\n  \
                    http-check expect status 200,301-302\n  server s 10.0.0.1:80 check\n\
                    frontend f\n  bind :80\n  default_backend b\n")
        .config;
        let CheckKind::Http(h) = &c.backends[0].check else {
            panic!("http check")
        };
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
            ("HEAD", "/ping", "HTTP/1.1")
        );
        assert_eq!(h.headers, ["Host: example.com"]);
        assert_eq!(h.expect_status, [(200, 200), (301, 302)]);
        // Negated status lists become the complement.
        let c = ok("backend b\n  option httpchk\n  http-check expect ! status 500-599\n  server s 10.0.0.1:80\n\
                    frontend f\n  bind :80\n  default_backend b\n")
        .config;
        let CheckKind::Http(h) = &c.backends[0].check else {
            panic!("http check")
        };
        assert_eq!(h.expect_status, [(100, 499)]);
    }

    #[test]
    fn source_usesrc_clientip_is_dnat() {
        let c = ok(
            "defaults\n  source 0.0.0.0 usesrc clientip\nbackend b\n  server s 10.0.0.1:80\n\
                    frontend f\n  bind :80\n  default_backend b\n",
        )
        .config;
        assert_eq!(c.backends[0].nat, NatMode::Dnat);
        let p = ok(
            "backend b\n  source 10.0.0.9\n  server s 10.0.0.1:80\nfrontend f\n  bind :80\n  default_backend b\n",
        );
        assert_eq!(p.config.backends[0].nat, NatMode::FullNat);
        assert_eq!(
            p.warnings[0].to_string(),
            "[WARNING] parsing [t.cfg:2] : 'source 10.0.0.9' has no effect in lb: lb picks the source address from the route to each server (full-nat)."
        );
    }

    #[test]
    fn unknown_keywords_suggest() {
        assert_eq!(
            alerts("backend b\n  serverr s 10.0.0.1:80\n"),
            [
                "[ALERT] parsing [t.cfg:2] : unknown keyword 'serverr' in 'backend' section; did you mean 'server' maybe ?"
            ]
        );
        assert_eq!(
            alerts("backend b\n  server s 10.0.0.1:80 chek\n"),
            [
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : unknown keyword 'chek'; did you mean 'check' maybe ?"
            ]
        );
        assert_eq!(
            alerts("maxconn 10\n"),
            ["[ALERT] parsing [t.cfg:1] : unknown keyword 'maxconn' out of section."]
        );
    }

    #[test]
    fn no_and_default_prefixes() {
        let c = ok("defaults\n  option redispatch\n  option allbackups\nbackend b\n  no option redispatch\n  default option allbackups\n  server s 10.0.0.1:80\n\
                    frontend f\n  bind :80\n  default_backend b\n")
        .config;
        assert!(!c.backends[0].redispatch && !c.backends[0].allbackups);
        assert_eq!(
            alerts("backend b\n  no retries 3\n"),
            [
                "[ALERT] parsing [t.cfg:2] : negation/default currently supported only for options, log, busy-polling, set-dumpable, strict-limits, insecure-fork-wanted and numa-cpu-mapping."
            ]
        );
    }

    #[test]
    fn every_error_in_one_pass() {
        let e = alerts(
            "global\n  maxconn lots\nbackend b\n  balance leastconn\n  server s 10.0.0.300:80\n  timeout connect 10x\n",
        );
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.cfg:2] : 'maxconn' expects an integer argument, got 'lots'.",
                "[ALERT] parsing [t.cfg:4] : balance 'leastconn' is not supported yet (lb balances roundrobin only)",
                "[ALERT] parsing [t.cfg:5] : 'server b/s' : '10.0.0.300' is not an IPv4 address",
                "[ALERT] parsing [t.cfg:6] : 'timeout connect': unexpected character 'x' in time '10x' (units are us, ms, s, m, h, d)",
            ]
        );
    }

    #[test]
    fn missing_lf_and_empty() {
        let p =
            ok("backend b\n  server s 10.0.0.1:80\nfrontend f\n  bind :80\n  default_backend b");
        assert_eq!(
            p.warnings[0].to_string(),
            "[WARNING] parsing [t.cfg:5] : Missing LF on last line, file might have been truncated at position 20."
        );
        assert!(parse("t.cfg", "").is_err());
    }
}
