//! The one table of keywords, as HAProxy's `cfg_kw_list`: each keyword's name, the sections
//! it is valid in, and what reads it. Adding a keyword is one line in [`KEYWORDS`] (plus its
//! reader, when it does more than warn or refuse), and "did you mean" suggestions come from
//! the same table.
use std::collections::HashMap;

use super::{
    bind, checks,
    diags::{Diags, show},
    global, options, proxy, server,
    state::{Env, Kind, Kwm, ProxySettings},
    stats,
    suggest::did_you_mean,
    timeouts,
};
use crate::config::model::{Bind, Global, Server};

/// What the reader of a `global` keyword works on.
pub(super) struct GlobalCtx<'a> {
    pub d: &'a mut Diags,
    /// The line's words; a `no` / `default` prefix is taken off into `kwm`.
    pub args: &'a [String],
    pub kwm: Kwm,
    pub global: &'a mut Global,
    pub env: &'a mut Env,
    /// First line of settings HAProxy refuses to set twice (`pidfile`, ...).
    pub once: &'a mut HashMap<&'static str, usize>,
}

/// What the reader of a proxy keyword works on.
pub(super) struct ProxyCtx<'a> {
    pub d: &'a mut Diags,
    /// The line's words; a `no` / `default` prefix is taken off into `kwm`.
    pub args: &'a [String],
    pub kwm: Kwm,
    pub kind: Kind,
    /// The proxy's name; empty in `defaults`.
    pub name: &'a str,
    pub s: &'a mut ProxySettings,
    /// The proxy's own binds and servers; `None` in `defaults`, which has neither.
    pub binds: Option<&'a mut Vec<Bind>>,
    pub servers: Option<&'a mut Vec<Server>>,
    /// Listening addresses in the file so far (see `MAX_TOTAL_BINDS`).
    pub total_binds: &'a mut usize,
}

impl<'a> GlobalCtx<'a> {
    /// Word `i` of the line.
    pub fn arg(&self, i: usize) -> Option<&'a str> {
        self.args.get(i).map(String::as_str)
    }
}

impl<'a> ProxyCtx<'a> {
    /// Word `i` of the line.
    pub fn arg(&self, i: usize) -> Option<&'a str> {
        self.args.get(i).map(String::as_str)
    }
}

/// A set of sections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Sections(u8);

impl Sections {
    const GLOBAL: Sections = Sections(1);
    const DEFAULTS: Sections = Sections(1 << 1);
    const FRONTEND: Sections = Sections(1 << 2);
    const BACKEND: Sections = Sections(1 << 3);
    const LISTEN: Sections = Sections(1 << 4);

    const fn or(self, other: Sections) -> Sections {
        Sections(self.0 | other.0)
    }

    fn meets(self, other: Sections) -> bool {
        self.0 & other.0 != 0
    }

    fn of(kind: Kind) -> Sections {
        match kind {
            Kind::Defaults => Sections::DEFAULTS,
            Kind::Frontend => Sections::FRONTEND,
            Kind::Backend => Sections::BACKEND,
            Kind::Listen => Sections::LISTEN,
        }
    }
}

const GLOBAL: Sections = Sections::GLOBAL;
/// Proxies with a frontend side. Outside them, a proxy keyword gets HAProxy's messages: an
/// alert in `defaults`, a warning ("no frontend capability") in a backend.
const FE: Sections = Sections::FRONTEND.or(Sections::LISTEN);
/// `FE`, and `defaults` for them.
const FE_DEF: Sections = FE.or(Sections::DEFAULTS);
const BE: Sections = Sections::BACKEND.or(Sections::LISTEN);
const BE_DEF: Sections = BE.or(Sections::DEFAULTS);
/// Every proxy section.
const PROXY: Sections = FE_DEF.or(BE_DEF);

/// What lb does with a keyword.
#[derive(Clone, Copy)]
pub(super) enum Read {
    /// A `global` keyword, read by this function.
    Global(fn(&mut GlobalCtx)),
    /// A proxy keyword, read by this function.
    Proxy(fn(&mut ProxyCtx)),
    /// Accepted and ignored: one warning saying why it changes nothing in lb.
    NoEffect(&'static str),
    /// HTTP-only (L7): one warning saying why it has no effect at L4.
    L7(&'static str),
    /// A feature lb lacks whose absence would change where traffic goes or who may
    /// connect: an alert.
    Unsupported(&'static str),
}

pub(super) struct Keyword {
    /// The keyword; a name ending in `*` stands for every keyword starting with the rest
    /// (and is never offered as a suggestion).
    pub name: &'static str,
    pub sections: Sections,
    pub read: Read,
}

impl Keyword {
    fn matches(&self, word: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => word.starts_with(prefix),
            None => self.name == word,
        }
    }
}

const fn kw(name: &'static str, sections: Sections, read: Read) -> Keyword {
    Keyword {
        name,
        sections,
        read,
    }
}

// Why keywords have no effect or are refused; several keywords share each reason.
pub(super) const L7_GENERIC: &str =
    "it is an HTTP (L7) feature and lb forwards connections at L4 without parsing HTTP";
const FIXED_CONN_LINES: &str = "lb's connection lines ('option tcplog') have one fixed format";
pub(super) const TCP_KEEPALIVE: &str = "TCP keep-alive is between client and server at L4";
pub(super) const BACKEND_SERVERS_ONLY: &str =
    "lb sends connections to the servers of the backend only";
pub(super) const CONN_PER_CLIENT: &str =
    "server connections belong to the client's connection at L4";
const EVERY_CPU: &str = "the XDP data plane runs on every CPU that receives packets";
const NOTHING_TO_COUNT: &str =
    "lb does not terminate connections, so there is nothing to rate-limit or count here";
const SPACES_CHECKS: &str = "lb spaces health checks its own way";
const NO_OLD_PROCESSES: &str = "lb reloads by replacing maps, without old processes to drain";
const OWN_PROCESS: &str = "it tunes HAProxy's own process";
const NOT_IN_LOGS: &str = "lb does not use it in logs or stats";
const L7_FEATURE: &str = "it is an HTTP (L7) feature and lb forwards connections at L4";
const NO_TLS: &str = "lb does not terminate TLS";
const NO_EXTERNAL_CHECKS: &str = "lb runs no external check programs";
const NO_ACCEPT_QUEUE: &str =
    "lb accepts no connections itself: there is no accept queue to size or to rate-limit";
const NO_PROXY_LIMIT: &str = "lb limits active flows per server (a server's 'maxconn') and in all (the global 'maxconn'), not per proxy";
const NO_FULLCONN: &str =
    "lb's 'maxconn' is a fixed limit per server, there is no 'minconn' to scale from";
const NO_REQUEST_QUEUE: &str = "lb never queues requests (L4)";
const NOTHING_TO_CAPTURE: &str = "lb never parses HTTP, so there is nothing to capture";
const NO_ERROR_PAGES: &str =
    "lb never answers HTTP itself (with no server left, connections are dropped)";
const NO_RESPONSES: &str = "lb never parses or modifies HTTP responses";
const NO_HEADERS: &str = "lb never adds HTTP headers";
const NO_HTTP_ANSWERS: &str = "lb never answers HTTP itself";
const NO_BOUNDED_LOAD: &str = "lb's consistent hashing has no bounded load: every lb node must pick alike without counting connections";
const NO_PERSISTENCE: &str =
    "lb has no persistence (stick tables): every new connection is balanced";

use Read::{L7, NoEffect, Unsupported};

/// Every keyword. Suggestions are offered in this order, and of equally close candidates
/// the first wins, so the order is HAProxy's lists' (`global` first).
pub(super) const KEYWORDS: &[Keyword] = &[
    kw("log", GLOBAL, Read::Global(global::log)),
    kw("log-tag", GLOBAL, Read::Global(global::log_tag)),
    kw("maxconn", GLOBAL, Read::Global(global::maxconn)),
    kw(
        "announce-table",
        GLOBAL,
        Read::Global(global::announce_table),
    ),
    kw("pidfile", GLOBAL, Read::Global(global::pidfile)),
    kw("daemon", GLOBAL, Read::Global(global::daemon)),
    kw("user", GLOBAL, Read::Global(global::user)),
    kw("group", GLOBAL, Read::Global(global::group)),
    kw("uid", GLOBAL, Read::Global(global::uid_gid)),
    kw("gid", GLOBAL, Read::Global(global::uid_gid)),
    kw("chroot", GLOBAL, Read::Global(global::chroot)),
    kw("stats", GLOBAL, Read::Global(global::stats)),
    kw("setenv", GLOBAL, Read::Global(global::setenv)),
    kw("presetenv", GLOBAL, Read::Global(global::setenv)),
    kw("unsetenv", GLOBAL, Read::Global(global::unsetenv)),
    kw("resetenv", GLOBAL, Read::Global(global::resetenv)),
    kw("nbthread", GLOBAL, NoEffect(EVERY_CPU)),
    kw("nbproc", GLOBAL, NoEffect(EVERY_CPU)),
    kw("cpu-map", GLOBAL, NoEffect(EVERY_CPU)),
    kw("thread-groups", GLOBAL, NoEffect(EVERY_CPU)),
    kw("ssl-default-bind-ciphers", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-default-bind-ciphersuites", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-default-bind-options", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-default-server-ciphers", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-default-server-ciphersuites", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-default-server-options", GLOBAL, NoEffect(NO_TLS)),
    kw("ssl-dh-param-file", GLOBAL, NoEffect(NO_TLS)),
    kw(
        "ssl-server-verify",
        GLOBAL,
        Read::Global(checks::ssl_server_verify),
    ),
    kw("ca-base", GLOBAL, NoEffect(NO_TLS)),
    kw("crt-base", GLOBAL, NoEffect(NO_TLS)),
    kw("hard-stop-after", GLOBAL, NoEffect(NO_OLD_PROCESSES)),
    kw("grace", GLOBAL, NoEffect(NO_OLD_PROCESSES)),
    kw("description", GLOBAL, NoEffect(NOT_IN_LOGS)),
    kw("node", GLOBAL, NoEffect(NOT_IN_LOGS)),
    kw("log-send-hostname", GLOBAL, NoEffect(NOT_IN_LOGS)),
    kw("ulimit-n", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("maxsslconn", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("maxconnrate", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("maxsessrate", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("maxsslrate", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("maxpipes", GLOBAL, NoEffect(NOTHING_TO_COUNT)),
    kw("spread-checks", GLOBAL, NoEffect(SPACES_CHECKS)),
    kw("max-spread-checks", GLOBAL, NoEffect(SPACES_CHECKS)),
    kw(
        "server-state-file",
        GLOBAL,
        Read::Global(global::server_state_file),
    ),
    kw(
        "server-state-base",
        GLOBAL,
        Read::Global(global::server_state_base),
    ),
    kw("master-worker", GLOBAL, NoEffect(NO_OLD_PROCESSES)),
    kw("mworker-max-reloads", GLOBAL, NoEffect(NO_OLD_PROCESSES)),
    kw("noepoll", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("nopoll", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("nosplice", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("nogetaddrinfo", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("noreuseport", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("busy-polling", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("set-dumpable", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("strict-limits", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("localpeer", GLOBAL, NoEffect(NOT_IN_LOGS)),
    kw(
        "expose-experimental-directives",
        GLOBAL,
        NoEffect(OWN_PROCESS),
    ),
    kw("insecure-fork-wanted", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("numa-cpu-mapping", GLOBAL, NoEffect(EVERY_CPU)),
    kw("quiet", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("zero-warning", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("h1-case-adjust", GLOBAL, NoEffect(L7_FEATURE)),
    kw("h1-case-adjust-file", GLOBAL, NoEffect(L7_FEATURE)),
    kw("lua-load", GLOBAL, NoEffect(L7_FEATURE)),
    kw("lua-prepend-path", GLOBAL, NoEffect(L7_FEATURE)),
    kw("unix-bind", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("external-check", GLOBAL, NoEffect(NO_EXTERNAL_CHECKS)),
    kw("default-path", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("ssl-*", GLOBAL, NoEffect(NO_TLS)),
    kw(
        "tune.*",
        GLOBAL,
        NoEffect("it tunes HAProxy's own buffers and event loop"),
    ),
    kw("profiling.*", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("httpclient.*", GLOBAL, NoEffect(OWN_PROCESS)),
    kw("acl", PROXY, Read::Proxy(proxy::acl)),
    kw("backlog", PROXY, NoEffect(NO_ACCEPT_QUEUE)),
    kw("balance", BE_DEF, Read::Proxy(proxy::balance)),
    kw("bind", FE, Read::Proxy(bind::bind)),
    kw(
        "bind-process",
        PROXY,
        NoEffect("the XDP data plane runs on every CPU"),
    ),
    kw("capture", PROXY, L7(NOTHING_TO_CAPTURE)),
    kw("compression", PROXY, L7("lb never modifies the payload")),
    kw(
        "cookie",
        PROXY,
        L7(
            "cookie persistence needs HTTP parsing; lb keeps each connection on its server, not each client",
        ),
    ),
    kw("declare", PROXY, L7(NOTHING_TO_CAPTURE)),
    kw(
        "default-server",
        BE_DEF,
        Read::Proxy(server::default_server),
    ),
    kw(
        "default_backend",
        FE_DEF,
        Read::Proxy(proxy::default_backend),
    ),
    kw(
        "description",
        PROXY,
        NoEffect("lb shows no proxy descriptions, on its stats page or elsewhere"),
    ),
    kw("disabled", PROXY, Read::Proxy(proxy::disabled)),
    kw("dispatch", PROXY, Unsupported(BACKEND_SERVERS_ONLY)),
    kw("email-alert", PROXY, NoEffect("lb sends no mail")),
    kw("enabled", PROXY, Read::Proxy(proxy::enabled)),
    kw("errorfile", PROXY, L7(NO_ERROR_PAGES)),
    kw("errorfiles", PROXY, L7(NO_ERROR_PAGES)),
    kw("errorloc", PROXY, L7(NO_ERROR_PAGES)),
    kw("errorloc302", PROXY, L7(NO_ERROR_PAGES)),
    kw("errorloc303", PROXY, L7(NO_ERROR_PAGES)),
    kw(
        "error-log-format",
        PROXY,
        NoEffect("lb logs no connection errors, it never sees a connection fail"),
    ),
    kw("external-check", PROXY, Unsupported(NO_EXTERNAL_CHECKS)),
    kw("filter", PROXY, L7("filters work on HTTP streams")),
    kw("force-persist", PROXY, Unsupported(NO_PERSISTENCE)),
    kw("fullconn", PROXY, NoEffect(NO_FULLCONN)),
    kw("hash-type", BE_DEF, Read::Proxy(proxy::hash_type)),
    kw("hash-balance-factor", PROXY, NoEffect(NO_BOUNDED_LOAD)),
    kw("http-after-response", PROXY, L7(NO_RESPONSES)),
    kw("http-check", BE_DEF, Read::Proxy(checks::http_check)),
    kw("http-error", PROXY, L7(NO_ERROR_PAGES)),
    kw("http-request", PROXY, Read::Proxy(proxy::http_request)),
    kw("http-response", PROXY, L7(NO_RESPONSES)),
    kw("http-reuse", PROXY, L7(CONN_PER_CLIENT)),
    kw("http-send-name-header", PROXY, L7(NO_HEADERS)),
    kw(
        "id",
        PROXY,
        NoEffect("lb numbers proxies in declaration order"),
    ),
    kw("ignore-persist", PROXY, Unsupported(NO_PERSISTENCE)),
    kw(
        "load-server-state-from-file",
        BE_DEF,
        Read::Proxy(proxy::load_server_state),
    ),
    kw("log", PROXY, Read::Proxy(proxy::log)),
    kw("log-format", PROXY, NoEffect(FIXED_CONN_LINES)),
    kw("log-format-sd", PROXY, NoEffect(FIXED_CONN_LINES)),
    kw(
        "log-tag",
        PROXY,
        NoEffect("lb tags every line with the global 'log-tag'"),
    ),
    kw("max-keep-alive-queue", PROXY, NoEffect(NO_REQUEST_QUEUE)),
    kw("maxconn", PROXY, NoEffect(NO_PROXY_LIMIT)),
    kw("mode", PROXY, Read::Proxy(proxy::mode)),
    kw("monitor", PROXY, L7(NO_HTTP_ANSWERS)),
    kw("monitor-uri", PROXY, L7(NO_HTTP_ANSWERS)),
    kw("nat", BE_DEF, Read::Proxy(proxy::nat)),
    kw("option", PROXY, Read::Proxy(options::option)),
    kw("persist", PROXY, Unsupported(NO_PERSISTENCE)),
    kw("rate-limit", PROXY, NoEffect(NO_ACCEPT_QUEUE)),
    kw(
        "redirect",
        PROXY,
        L7("lb never answers HTTP itself, so it cannot redirect"),
    ),
    kw("retries", BE_DEF, Read::Proxy(proxy::retries)),
    kw(
        "retry-on",
        PROXY,
        NoEffect("lb does not retry connections itself"),
    ),
    kw("server", BE, Read::Proxy(server::server)),
    kw(
        "server-state-file-name",
        BE_DEF,
        Read::Proxy(proxy::server_state_file_name),
    ),
    kw("server-template", BE, Read::Proxy(server::server_template)),
    kw("source", BE_DEF, Read::Proxy(proxy::source)),
    kw("stats", PROXY, Read::Proxy(stats::stats)),
    kw("stick", PROXY, Unsupported(NO_PERSISTENCE)),
    kw("stick-table", PROXY, Unsupported(NO_PERSISTENCE)),
    kw("tcp-check", PROXY, Read::Proxy(checks::tcp_check)),
    kw("tcp-request", PROXY, Read::Proxy(proxy::tcp_request)),
    kw(
        "tcp-response",
        PROXY,
        Unsupported("lb does not inspect the data it forwards"),
    ),
    kw("timeout", PROXY, Read::Proxy(timeouts::timeout)),
    kw("transparent", PROXY, Unsupported(BACKEND_SERVERS_ONLY)),
    kw("unique-id-format", PROXY, L7(NO_HEADERS)),
    kw("unique-id-header", PROXY, L7(NO_HEADERS)),
    kw("use_backend", FE, Read::Proxy(proxy::use_backend)),
    kw(
        "use-fcgi-app",
        PROXY,
        Unsupported("lb does not speak FastCGI"),
    ),
    kw(
        "use-server",
        PROXY,
        Unsupported("lb has no ACLs to choose a server with"),
    ),
    kw("clitcpka-cnt", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("clitcpka-idle", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("clitcpka-intvl", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("srvtcpka-cnt", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("srvtcpka-idle", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("srvtcpka-intvl", PROXY, NoEffect(TCP_KEEPALIVE)),
    kw("contimeout", PROXY, Read::Proxy(timeouts::removed)),
    kw("clitimeout", PROXY, Read::Proxy(timeouts::removed)),
    kw("srvtimeout", PROXY, Read::Proxy(timeouts::removed)),
];

/// Section words a misspelt keyword may have meant, offered after the section's keywords
/// (HAProxy's lists end with them; `global` is not offered inside `global`).
const SECTION_WORDS: &[&str] = &["listen", "frontend", "backend", "defaults", "global"];

fn lookup(word: &str, class: Sections) -> Option<&'static Keyword> {
    KEYWORDS
        .iter()
        .find(|k| k.sections.meets(class) && k.matches(word))
}

/// What an unknown keyword of a `class` section is compared with, in order.
fn candidates(class: Sections) -> Vec<&'static str> {
    let keywords = KEYWORDS
        .iter()
        .filter(|k| k.sections.meets(class) && !k.name.ends_with('*'))
        .map(|k| k.name);
    let sections = SECTION_WORDS
        .iter()
        .copied()
        .filter(|&w| !(class == GLOBAL && w == "global"));
    keywords.chain(sections).collect()
}

/// The one warning or alert of a keyword lb has no reader for. (Readers are called by
/// `global_keyword` and `proxy_keyword`; one listed for the wrong kind of section would
/// be a mistake of the table, which `readers_match_their_sections` catches.)
fn verdict(d: &mut Diags, kw: &str, read: Read) {
    match read {
        NoEffect(why) => d.warn(format!("'{kw}' has no effect in lb: {why}.")),
        L7(why) => d.warn(format!("'{kw}' has no effect in lb (L4): {why}.")),
        Unsupported(why) => d.alert(format!("'{kw}' is not supported by lb: {why}.")),
        Read::Global(_) | Read::Proxy(_) => {}
    }
}

/// Reads a line of the `global` section.
pub(super) fn global_keyword(c: &mut GlobalCtx) {
    let kw = c.args[0].as_str();
    match lookup(kw, GLOBAL).map(|k| k.read) {
        Some(Read::Global(read)) => read(c),
        Some(v @ (NoEffect(_) | L7(_) | Unsupported(_))) => verdict(c.d, kw, v),
        Some(Read::Proxy(_)) | None => c.d.alert(format!(
            "unknown keyword '{}' in 'global' section{}",
            show(kw),
            did_you_mean(kw, &candidates(GLOBAL), "")
        )),
    }
}

/// Reads a line of a `defaults`, `frontend`, `backend` or `listen` section.
pub(super) fn proxy_keyword(c: &mut ProxyCtx) {
    let kw = c.args[0].as_str();
    let Some(k) = lookup(kw, PROXY) else {
        c.d.alert(format!(
            "unknown keyword '{}' in '{}' section{}",
            show(kw),
            c.kind.word(),
            did_you_mean(kw, &candidates(PROXY), "")
        ));
        return;
    };
    if !k.sections.meets(Sections::of(c.kind)) {
        misplaced(c, kw);
        return;
    }
    match k.read {
        Read::Proxy(read) => read(c),
        v => verdict(c.d, kw, v),
    }
}

/// A proxy keyword outside the sections it is valid in: an alert in `defaults`, otherwise
/// HAProxy's `warnifnotcap()` (the keyword is for the other side of the proxy).
fn misplaced(c: &mut ProxyCtx, kw: &str) {
    if c.kind == Kind::Defaults {
        c.d.alert(format!("'{kw}' not allowed in 'defaults' section."));
        return;
    }
    let missing = if c.kind.fe() { "backend" } else { "frontend" };
    c.d.warn(format!(
        "'{kw}' ignored because {} '{}' has no {missing} capability.",
        c.kind.word(),
        c.name
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::haproxy::{best_match, server::SERVER_KW};

    #[test]
    fn suggestions_follow_haproxy() {
        let proxy_kw = candidates(PROXY);
        assert_eq!(best_match("serverr", &proxy_kw), Some("server"));
        assert_eq!(
            best_match("defualt_backend", &proxy_kw),
            Some("default_backend")
        );
        assert_eq!(best_match("balanc", &proxy_kw), Some("balance"));
        assert_eq!(best_match("chek", SERVER_KW), Some("check"));
        assert_eq!(best_match("zzzzzzzzzzzzz", &proxy_kw), None);
    }

    /// A reader of one kind of section listed for the other would never run.
    #[test]
    fn readers_match_their_sections() {
        for k in KEYWORDS {
            match k.read {
                Read::Global(_) => assert_eq!(k.sections, GLOBAL, "{}", k.name),
                Read::Proxy(_) => assert!(!k.sections.meets(GLOBAL), "{}", k.name),
                _ => assert!(k.sections == GLOBAL || !k.sections.meets(GLOBAL)),
            }
        }
    }

    /// Every keyword lb accepts either has its effect or says it has none: the keywords that
    /// only warn or refuse are walked here, each on a line of its own in a section where it
    /// is valid, and must produce their message with their reason at that line; those with
    /// a reader must appear in some config the tests parse (the corpus or these tests).
    #[test]
    fn every_keyword_is_applied_or_says_why_not() {
        let tested: String = {
            let root = env!("CARGO_MANIFEST_DIR");
            let mut all = String::new();
            // The corpus, the integration tests, the parser's own unit tests, the shipped
            // configs and the testbed: every place a test config is written.
            for (dir, ext) in [
                ("tests/config_corpus", "cfg"),
                ("tests", "rs"),
                ("src/config", "rs"),
                ("src/config/haproxy", "rs"),
                ("../configs", "cfg"),
                ("../lb-testbed/src", "rs"),
            ] {
                let dir = format!("{root}/{dir}");
                for e in std::fs::read_dir(&dir).expect("test sources").flatten() {
                    if e.path().extension().is_some_and(|x| x == ext) {
                        // Some corpus files hold invalid bytes on purpose.
                        let bytes = std::fs::read(e.path()).expect("test source");
                        all.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            }
            all
        };
        let mut unexercised = Vec::new();
        for k in KEYWORDS {
            let name = k.name.replace('*', "x");
            let line = format!("    {name} 1");
            let text = if k.sections == GLOBAL {
                format!("global\n{line}\n")
            } else if k.sections.meets(Sections::BACKEND) {
                format!("backend b\n{line}\n    server s 10.0.1.1:80\n")
            } else if k.sections.meets(Sections::FRONTEND) {
                format!(
                    "frontend f\n    bind 10.0.0.1:80\n{line}\n    default_backend b\n\
                     backend b\n    server s 10.0.1.1:80\n"
                )
            } else {
                format!("defaults\n{line}\n")
            };
            let said = |want: String| {
                let out: Vec<String> = match super::super::parse("t.cfg", &text) {
                    Ok(p) => p.warnings.iter().map(ToString::to_string).collect(),
                    Err(e) => e.alerts().map(ToString::to_string).collect(),
                };
                assert!(
                    out.iter().any(|m| m.contains(":2] :") && m.contains(&want)),
                    "{name}: no {want:?} at its line in {out:?}"
                );
            };
            match k.read {
                NoEffect(why) => said(format!("'{name}' has no effect in lb: {why}.")),
                L7(why) => said(format!("'{name}' has no effect in lb (L4): {why}.")),
                Unsupported(why) => said(format!("'{name}' is not supported by lb: {why}.")),
                Read::Global(_) | Read::Proxy(_) => {
                    // Lines of files, and of configs written as one-line strings in tests.
                    let used = tested.lines().flat_map(|l| l.split("\\n")).any(|l| {
                        let l = l.trim_start().trim_start_matches('"').trim_start();
                        l.starts_with(&format!("{} ", k.name)) || l == k.name
                    });
                    if !used {
                        unexercised.push(k.name);
                    }
                }
            }
        }
        assert!(
            unexercised.is_empty(),
            "keywords with a reader that no test config uses: {unexercised:?}"
        );
    }

    /// A name listed twice for the same sections would hide the second entry.
    #[test]
    fn names_are_unique_per_class() {
        for class in [GLOBAL, PROXY] {
            let names = candidates(class);
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{names:?}");
        }
    }
}
