//! The native TOML format. Keys mirror HAProxy's keywords so the file reads like the
//! haproxy.cfg it replaces; see `configs/lb.toml` for the seed's setup.
//!
//! Unknown keys are errors (with the line), never silently ignored.
use std::{sync::Arc, time::Duration};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::{
    access,
    diag::{ConfigError, Diagnostic},
    model::*,
    units,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileT {
    #[serde(default)]
    global: GlobalT,
    #[serde(default)]
    defaults: ProxyT,
    #[serde(default)]
    frontend: IndexMap<String, Spanned<FrontendT>>,
    #[serde(default)]
    backend: IndexMap<String, Spanned<ProxyT>>,
    /// `[resolvers.NAME]`: HAProxy's `resolvers` sections.
    #[serde(default)]
    resolvers: IndexMap<String, Spanned<ResolversT>>,
}

/// A `resolvers` section: `nameservers = { ns1 = "10.0.0.53:53" }`, HAProxy's settings
/// under their names (`hold = { nx = "3s" }`, `timeout = { resolve = "1s" }`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolversT {
    #[serde(default)]
    nameservers: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    parse_resolv_conf: bool,
    resolve_retries: Option<Spanned<u32>>,
    accepted_payload_size: Option<Spanned<u32>>,
    #[serde(default)]
    timeout: ResolverTimeoutsT,
    #[serde(default)]
    hold: HoldT,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolverTimeoutsT {
    resolve: Option<Spanned<Time>>,
    retry: Option<Spanned<Time>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HoldT {
    valid: Option<Spanned<Time>>,
    nx: Option<Spanned<Time>>,
    refused: Option<Spanned<Time>>,
    timeout: Option<Spanned<Time>>,
    other: Option<Spanned<Time>>,
    obsolete: Option<Spanned<Time>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GlobalT {
    instance: Option<Spanned<String>>,
    #[serde(default)]
    log: Vec<Spanned<LogT>>,
    log_tag: Option<String>,
    /// One socket, or a list of them.
    stats_socket: Option<Spanned<OneOrMany<StatsSocketT>>>,
    maxconn: Option<u32>,
    pidfile: Option<String>,
    #[serde(default)]
    daemon: bool,
    user: Option<String>,
    group: Option<String>,
    chroot: Option<String>,
    conntrack_entries: Option<Spanned<u32>>,
    /// Half-open flows (handshakes under way) the data plane tracks apart.
    halfopen_entries: Option<Spanned<u32>>,
    server_state_file: Option<String>,
    server_state_base: Option<String>,
    snat_ports: Option<Spanned<String>>,
    #[serde(default)]
    interfaces: Vec<String>,
    /// `"ADDR:PORT"` (page at `/`, metrics at `/metrics`), or tables of HAProxy's stats
    /// settings.
    stats_http: Option<Spanned<StatsHttpT>>,
    /// The `verify` of servers that do not say (`none` or `required`).
    ssl_server_verify: Option<Spanned<String>>,
    /// Several lb nodes: the kernel routing table where lb keeps each VIP it may take, for
    /// BIRD to announce.
    announce_table: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogT {
    /// `127.0.0.1`, `127.0.0.1:514`, `/dev/log`, `stderr`, `stdout`.
    target: String,
    facility: String,
    level: Option<String>,
    minlevel: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatsHttpT {
    Addr(String),
    Tables(OneOrMany<StatsHttpTableT>),
}

/// A stats listener as a `listen stats` section has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsHttpTableT {
    name: Option<String>,
    bind: Vec<String>,
    /// `stats uri`; without it, no page.
    uri: Option<String>,
    /// `stats auth`, `USER:PASSWORD` each.
    #[serde(default)]
    auth: Vec<String>,
    realm: Option<String>,
    /// (No `Spanned` inside an untagged enum: serde buffers it, toml's spans do not survive.)
    refresh: Option<Time>,
    /// The exporter's exact path, or its prefix.
    metrics: Option<String>,
    metrics_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn items(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsSocketT {
    /// A UNIX socket's path...
    path: Option<String>,
    /// ... or a TCP socket's `ADDRESS:PORT`.
    address: Option<String>,
    mode: Option<String>,
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontendT {
    mode: Option<Spanned<String>>,
    bind: Vec<Spanned<String>>,
    default_backend: Spanned<String>,
    /// A log line per new connection (HAProxy's `option tcplog`).
    #[serde(default)]
    tcplog: bool,
    /// `tcp-request connection` rules: `"reject unless { src 10.0.0.0/8 }"`.
    #[serde(default)]
    tcp_request_connection: Vec<Spanned<String>>,
}

/// `[defaults]` and `[backend.NAME]` share their keys; a backend inherits what it leaves out.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ProxyT {
    mode: Option<Spanned<String>>,
    balance: Option<Spanned<String>>,
    /// `consistent` or `map-based` (HAProxy's `hash-type`).
    hash_type: Option<Spanned<String>>,
    /// Entries of the Maglev table of a hashing backend: a prime up to 65537.
    hash_table_size: Option<Spanned<u32>>,
    nat: Option<Spanned<String>>,
    on_empty: Option<Spanned<String>>,
    redispatch: Option<bool>,
    log_health_checks: Option<bool>,
    allbackups: Option<bool>,
    retries: Option<u32>,
    timeout: Option<TimeoutsT>,
    /// `load-server-state-from-file`: "global", "local" or "none".
    load_server_state: Option<Spanned<String>>,
    server_state_file_name: Option<String>,
    /// An HTTP health check; without one (here or in `[defaults]`) checks are TCP connects.
    http_check: Option<Spanned<HttpCheckT>>,
    /// Force TCP connect checks even if `[defaults]` has `http_check`.
    tcp_check: Option<bool>,
    /// One of HAProxy's protocol checks (`option redis-check` & co).
    protocol_check: Option<Spanned<ProtocolCheckT>>,
    /// `option tcp-check` with these `tcp-check` rules.
    tcp_check_rules: Option<Spanned<Vec<TcpRuleT>>>,
    default_server: Option<ServerT>,
    #[serde(default)]
    server: Vec<Spanned<ServerT>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct TimeoutsT {
    connect: Option<Spanned<Time>>,
    client: Option<Spanned<Time>>,
    server: Option<Spanned<Time>>,
    tunnel: Option<Spanned<Time>>,
    client_fin: Option<Spanned<Time>>,
    server_fin: Option<Spanned<Time>>,
    check: Option<Spanned<Time>>,
    queue: Option<Spanned<Time>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct HttpCheckT {
    method: Option<String>,
    uri: Option<String>,
    version: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
    body: Option<String>,
    /// One match at most. `"200"`, `"200,301-399"`; default: 200-399 pass.
    expect_status: Option<Spanned<String>>,
    /// A regular expression the status code must match.
    expect_rstatus: Option<Spanned<String>>,
    /// Text the body must contain.
    expect_string: Option<Spanned<String>>,
    /// A regular expression the body must match.
    expect_rstring: Option<Spanned<String>>,
    /// The match must fail (HAProxy's `!`).
    expect_negate: Option<bool>,
    /// Where and how to connect instead of the server's check settings.
    connect: Option<Spanned<ConnectT>>,
    /// A 404 puts an UP server in NOLB (HAProxy's `http-check disable-on-404`).
    #[serde(default)]
    disable_on_404: bool,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ProtocolCheckT {
    /// `redis`, `mysql`, `pgsql`, `smtp`, `ldap` or `ssl-hello`.
    check: String,
    /// mysql (optional), pgsql (required).
    user: Option<String>,
    /// mysql: the pre-4.1 login packet.
    #[serde(default)]
    pre41: bool,
    /// smtp: `HELO domain` or `EHLO domain` (default `HELO localhost`).
    hello: Option<String>,
}

/// One `tcp-check` rule: `comment`, `connect`, `send`, `send_binary` or `expect` (with
/// `pattern`), plus the options HAProxy's rule has.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct TcpRuleT {
    comment: Option<String>,
    connect: Option<TcpConnectT>,
    send: Option<String>,
    /// Hexadecimal.
    send_binary: Option<String>,
    /// `string`, `rstring`, `binary` (hexadecimal pattern) or `rbinary`.
    expect: Option<String>,
    pattern: Option<String>,
    #[serde(default)]
    negate: bool,
    min_recv: Option<u32>,
    ok_status: Option<String>,
    error_status: Option<String>,
    tout_status: Option<String>,
    on_success: Option<String>,
    on_error: Option<String>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct TcpConnectT {
    port: Option<u32>,
    #[serde(default)]
    ssl: bool,
    sni: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ConnectT {
    port: Option<Spanned<u32>>,
    #[serde(default)]
    ssl: bool,
    sni: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ServerT {
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    /// HAProxy's `init-addr` list, for an address given as a host name: "last,libc,none".
    init_addr: Option<Spanned<String>>,
    /// A `resolvers` section that keeps the host name resolved while lb runs.
    resolvers: Option<String>,
    /// "ipv4" or "ipv6" (HAProxy's default).
    resolve_prefer: Option<Spanned<String>>,
    /// "10.0.0.0/8,192.168.0.0/16": addresses in these networks are chosen first.
    resolve_net: Option<Spanned<String>>,
    check: Option<bool>,
    inter: Option<Spanned<Time>>,
    fastinter: Option<Spanned<Time>>,
    downinter: Option<Spanned<Time>>,
    fall: Option<Spanned<u32>>,
    rise: Option<Spanned<u32>>,
    /// Health-check port override.
    port: Option<Spanned<u32>>,
    /// Health-check address override.
    addr: Option<Spanned<String>>,
    /// Health checks over TLS.
    check_ssl: Option<bool>,
    check_sni: Option<Spanned<String>>,
    /// `none` or `required` (the certificate must lead to `ca_file`).
    verify: Option<Spanned<String>>,
    ca_file: Option<String>,
    agent_check: Option<bool>,
    agent_port: Option<Spanned<u32>>,
    agent_inter: Option<Spanned<Time>>,
    agent_send: Option<String>,
    agent_addr: Option<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    backup: Option<bool>,
    disabled: Option<bool>,
    maxconn: Option<u32>,
    slowstart: Option<Spanned<Time>>,
    /// "layer4" (HAProxy's "layer7" needs HTTP parsing lb does not do).
    observe: Option<Spanned<String>>,
    /// "fastinter", "fail-check", "sudden-death" or "mark-down".
    on_error: Option<Spanned<String>>,
    error_limit: Option<Spanned<u32>>,
    /// "shutdown-sessions"
    on_marked_down: Option<Spanned<String>>,
    /// "shutdown-backup-sessions"
    on_marked_up: Option<Spanned<String>>,
}

/// Times are HAProxy strings (`"3s"`) or bare milliseconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Time {
    Ms(u64),
    Text(String),
}

/// Turns byte spans into `file:line` origins.
struct Src<'a> {
    file: Arc<str>,
    text: &'a str,
}

impl Src<'_> {
    fn at(&self, offset: usize) -> Origin {
        let upto = &self.text.as_bytes()[..offset.min(self.text.len())];
        Origin {
            file: self.file.clone(),
            line: upto.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    }

    fn of<T>(&self, s: &Spanned<T>) -> Origin {
        self.at(s.span().start)
    }
}

/// Collects every problem instead of stopping at the first.
struct Ctx<'a> {
    src: Src<'a>,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, at: Origin, msg: impl Into<String>) {
        self.diags.push(Diagnostic::alert(Some(&at), msg));
    }

    fn time(&mut self, t: &Option<Spanned<Time>>, what: &str) -> Option<Duration> {
        let t = t.as_ref()?;
        let parsed = match t.get_ref() {
            Time::Ms(ms) => Ok(Duration::from_millis(*ms)),
            Time::Text(s) => units::duration(s),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                let at = self.src.of(t);
                self.err(at, format!("'{what}': {e}"));
                None
            }
        }
    }

    fn word<T>(
        &mut self,
        v: &Option<Spanned<String>>,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T>
    where
        T: Copy,
    {
        let v = v.as_ref()?;
        match choices.iter().find(|(name, _)| *name == v.get_ref()) {
            Some((_, t)) => Some(*t),
            None => {
                let at = self.src.of(v);
                let names: Vec<_> = choices.iter().map(|(n, _)| format!("'{n}'")).collect();
                self.err(
                    at,
                    format!(
                        "'{what}' is '{}', expected one of {}",
                        v.get_ref(),
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

/// Parses a native config. `file` is used in messages only.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let src = Src {
        file: Arc::from(file),
        text,
    };
    let raw: FileT = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let origin = e.span().map(|s| src.at(s.start));
            let msg = e.message().trim().to_string();
            return Err(ConfigError::single(Diagnostic::alert(origin.as_ref(), msg)));
        }
    };
    let mut cx = Ctx {
        src,
        diags: Vec::new(),
    };
    let mut global = global(&mut cx, &raw.global);
    global.resolvers = raw
        .resolvers
        .iter()
        .map(|(name, r)| resolvers(&mut cx, name, r))
        .collect();
    let defaults = raw.defaults;
    let frontends = raw
        .frontend
        .iter()
        .map(|(name, f)| frontend(&mut cx, name, f, &defaults))
        .collect();
    let backends = raw
        .backend
        .iter()
        .map(|(name, b)| backend(&mut cx, name, b, &defaults))
        .collect();
    if cx.diags.is_empty() {
        Ok(Config {
            global,
            frontends,
            backends,
        })
    } else {
        Err(ConfigError {
            diagnostics: cx.diags,
        })
    }
}

fn resolvers(cx: &mut Ctx, name: &str, r: &Spanned<ResolversT>) -> Resolvers {
    let mut out = Resolvers::new(name, cx.src.of(r));
    let r = r.get_ref();
    for (id, addr) in &r.nameservers {
        let at = cx.src.of(addr);
        let parsed = units::endpoint(addr.get_ref()).ok().and_then(|(ip, port)| {
            Some(std::net::SocketAddrV4::new(ip?, port)).filter(|_| port != 0)
        });
        match parsed {
            Some(a) => out.nameservers.push(Nameserver {
                id: id.clone(),
                addr: a,
                origin: at,
            }),
            None => cx.err(
                at,
                format!(
                    "resolvers '{name}': nameserver '{id}': '{}' is not IPV4:PORT (lb asks name servers over UDP, by IPv4 address)",
                    addr.get_ref()
                ),
            ),
        }
    }
    if r.parse_resolv_conf {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if w.next() == Some("nameserver")
                && let Some(a) = w.next()
                && let Ok(ip) = units::ipv4(a)
                && !out.nameservers.iter().any(|n| n.id == a)
            {
                out.nameservers.push(Nameserver {
                    id: a.to_string(),
                    addr: std::net::SocketAddrV4::new(ip, 53),
                    origin: out.origin.clone(),
                });
            }
        }
    }
    if let Some(n) = &r.resolve_retries {
        match *n.get_ref() {
            0 => {
                let at = cx.src.of(n);
                cx.err(
                    at,
                    format!("resolvers '{name}': resolve_retries must be 1 or more"),
                );
            }
            v => out.resolve_retries = v,
        }
    }
    if let Some(n) = &r.accepted_payload_size {
        match u16::try_from(*n.get_ref()) {
            Ok(v) if v >= 12 => out.accepted_payload_size = v,
            _ => {
                let at = cx.src.of(n);
                cx.err(
                    at,
                    format!(
                        "resolvers '{name}': accepted_payload_size must be between 12 and 65535"
                    ),
                );
            }
        }
    }
    let ms1 = Duration::from_millis(1);
    if let Some(t) = cx.time(&r.timeout.resolve, "timeout.resolve") {
        out.timeout_resolve = t.max(ms1);
    }
    if let Some(t) = cx.time(&r.timeout.retry, "timeout.retry") {
        out.timeout_retry = t.max(ms1);
    }
    let h = &r.hold;
    for (slot, t, what) in [
        (&mut out.hold.valid, &h.valid, "hold.valid"),
        (&mut out.hold.nx, &h.nx, "hold.nx"),
        (&mut out.hold.refused, &h.refused, "hold.refused"),
        (&mut out.hold.timeout, &h.timeout, "hold.timeout"),
        (&mut out.hold.other, &h.other, "hold.other"),
        (&mut out.hold.obsolete, &h.obsolete, "hold.obsolete"),
    ] {
        if let Some(t) = cx.time(t, what) {
            *slot = t;
        }
    }
    out
}

fn global(cx: &mut Ctx, g: &GlobalT) -> Global {
    let mut out = Global::default();
    if let Some(i) = &g.instance {
        if i.get_ref().is_empty()
            || !i
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            let at = cx.src.of(i);
            cx.err(at, "'instance' may only hold letters, digits, '-' and '_'");
        } else {
            out.instance = i.get_ref().clone();
        }
    }
    for l in &g.log {
        let at = cx.src.of(l);
        match log_target(l.get_ref(), &at) {
            Ok(t) => out.logs.push(t),
            Err(e) => cx.err(at, e),
        }
    }
    if let Some(tag) = &g.log_tag {
        out.log_tag = tag.clone();
    }
    if let Some(s) = &g.stats_socket {
        let at = cx.src.of(s);
        for one in s.get_ref().items() {
            match stats_socket(one, &at) {
                Ok(s) => out.stats_sockets.push(s),
                Err(e) => cx.err(at.clone(), e),
            }
        }
    }
    out.maxconn = g.maxconn;
    out.pidfile = g.pidfile.as_ref().map(Into::into);
    out.daemon = g.daemon;
    out.user = g.user.clone();
    out.group = g.group.clone();
    out.chroot = g.chroot.as_ref().map(Into::into);
    if let Some(n) = &g.conntrack_entries {
        if *n.get_ref() < 1024 {
            let at = cx.src.of(n);
            cx.err(at, "'conntrack_entries' must be at least 1024");
        } else {
            out.conntrack_entries = *n.get_ref();
        }
    }
    if let Some(n) = &g.halfopen_entries {
        if *n.get_ref() < 1024 {
            let at = cx.src.of(n);
            cx.err(at, "'halfopen_entries' must be at least 1024");
        } else {
            out.halfopen_entries = *n.get_ref();
        }
    }
    out.server_state_file = g.server_state_file.as_ref().map(Into::into);
    out.server_state_base = g.server_state_base.as_ref().map(Into::into);
    if let Some(r) = &g.snat_ports {
        match units::port_range(r.get_ref()) {
            Ok(r) => out.snat_ports = r,
            Err(e) => {
                let at = cx.src.of(r);
                cx.err(at, format!("'snat_ports': {e}"));
            }
        }
    }
    out.interfaces = g.interfaces.clone();
    if let Some(t) = &g.announce_table {
        match announce_table(*t.get_ref()) {
            Ok(t) => out.announce_table = Some(t),
            Err(e) => {
                let at = cx.src.of(t);
                cx.err(at, format!("'announce_table': {e}"));
            }
        }
    }
    if let Some(v) = cx.word(&g.ssl_server_verify, "ssl_server_verify", VERIFY) {
        out.ssl_server_verify = v;
    }
    if let Some(sh) = &g.stats_http {
        let at = cx.src.of(sh);
        match sh.get_ref() {
            StatsHttpT::Addr(a) => match stats_http_addr(a) {
                Some(addr) => out.stats_http.push(StatsHttp::simple(addr, at)),
                None => cx.err(
                    at,
                    format!("'stats_http': '{a}' is not ADDRESS:PORT or PORT"),
                ),
            },
            StatsHttpT::Tables(t) => {
                for one in t.items() {
                    if let Some(h) = stats_http_table(cx, one, &at) {
                        out.stats_http.push(h);
                    }
                }
            }
        }
    }
    out
}

fn stats_http_table(cx: &mut Ctx, t: &StatsHttpTableT, at: &Origin) -> Option<StatsHttp> {
    let mut binds = Vec::new();
    for b in &t.bind {
        match stats_http_addr(b) {
            Some(a) => binds.push(a),
            None => {
                cx.err(
                    at.clone(),
                    format!("'stats_http' bind '{b}' is not ADDRESS:PORT or PORT"),
                );
                return None;
            }
        }
    }
    let mut auth = Vec::new();
    for a in &t.auth {
        match a.split_once(':') {
            Some((u, p)) if !u.is_empty() => auth.push((u.to_string(), p.to_string())),
            _ => {
                cx.err(
                    at.clone(),
                    format!("'stats_http' auth '{a}' is not USER:PASSWORD"),
                );
                return None;
            }
        }
    }
    let metrics = match (&t.metrics, &t.metrics_prefix) {
        (Some(p), None) => Some(PathMatch::Exact(p.clone())),
        (None, Some(p)) => Some(PathMatch::Prefix(p.clone())),
        (None, None) => None,
        (Some(_), Some(_)) => {
            cx.err(
                at.clone(),
                "'stats_http' takes 'metrics' (a path) or 'metrics_prefix', not both",
            );
            return None;
        }
    };
    Some(StatsHttp {
        name: t.name.clone().unwrap_or_else(|| "stats_http".into()),
        binds,
        uri: t.uri.clone(),
        auth,
        realm: t
            .realm
            .clone()
            .unwrap_or_else(|| StatsHttp::DEFAULT_REALM.into()),
        refresh: match &t.refresh {
            None => None,
            Some(Time::Ms(ms)) => Some(Duration::from_millis(*ms)),
            Some(Time::Text(s)) => match units::duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    cx.err(at.clone(), format!("'stats_http' refresh: {e}"));
                    return None;
                }
            },
        },
        metrics,
        origin: at.clone(),
    })
}

/// `target` as in HAProxy's `log <target> <facility> [<level> [<minlevel>]]`.
pub fn log_target_from_words(
    target: &str,
    facility: &str,
    level: Option<&str>,
    minlevel: Option<&str>,
    origin: &Origin,
) -> Result<LogTarget, String> {
    let dest = match target {
        "stderr" => LogDest::Stderr,
        "stdout" => LogDest::Stdout,
        t if t.starts_with('/') => LogDest::Unix(t.into()),
        t => {
            let t = t.strip_prefix("udp@").unwrap_or(t);
            // As HAProxy's `str2sa_range`: the last colon before any `]` starts the port, so
            // an IPv6 address with a port is bracketed (`[::1]:514`) or ends in one (`::1:514`).
            let (addr, port) = match t.rsplit_once(':') {
                Some(_) if t.ends_with(']') => (t, 514),
                Some((a, p)) => (a, units::port(p)?),
                None => (t, 514),
            };
            let bare = addr
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(addr);
            let ip = if bare.contains(':') {
                std::net::IpAddr::V6(
                    bare.parse()
                        .map_err(|_| format!("'{addr}' is not an IPv6 address"))?,
                )
            } else {
                std::net::IpAddr::V4(units::ipv4(bare)?)
            };
            LogDest::Udp(std::net::SocketAddr::new(ip, port))
        }
    };
    let facility = Facility::parse(facility).ok_or_else(|| {
        format!("unknown log facility '{facility}' (kern, user, daemon, local0..local7, ...)")
    })?;
    let level_of = |l: &str| {
        Level::parse(l).ok_or_else(|| {
            format!(
                "unknown log level '{l}' (emerg, alert, crit, err, warning, notice, info, debug)"
            )
        })
    };
    Ok(LogTarget {
        dest,
        facility,
        max_level: level.map(level_of).transpose()?.unwrap_or(Level::Debug),
        min_level: minlevel.map(level_of).transpose()?,
        origin: origin.clone(),
    })
}

fn log_target(l: &LogT, at: &Origin) -> Result<LogTarget, String> {
    log_target_from_words(
        &l.target,
        &l.facility,
        l.level.as_deref(),
        l.minlevel.as_deref(),
        at,
    )
}

/// `stats_http`: `ADDRESS:PORT`, or a bare `PORT` (`:PORT`) which listens on 127.0.0.1 only:
/// the page and the metrics are not for the Internet unless asked for.
pub fn stats_http_addr(s: &str) -> Option<std::net::SocketAddr> {
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Some(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            p,
        )));
    }
    s.parse().ok()
}

/// A routing table lb may fill: not `main`, `local` or `default` (which route this host's
/// own traffic), nor 0.
pub fn announce_table(t: u32) -> Result<u32, String> {
    match t {
        0 | 253..=255 => Err(format!(
            "{t} is a table the host routes with (0, 253 default, 254 main, 255 local): use a table of its own, e.g. 100"
        )),
        t => Ok(t),
    }
}

pub fn api_level(s: &str) -> Result<ApiLevel, String> {
    match s {
        "user" => Ok(ApiLevel::User),
        "operator" => Ok(ApiLevel::Operator),
        "admin" => Ok(ApiLevel::Admin),
        other => Err(format!(
            "unknown stats socket level '{other}' (user, operator, admin)"
        )),
    }
}

pub fn file_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal file mode"))
}

fn stats_socket(s: &StatsSocketT, at: &Origin) -> Result<StatsSocket, String> {
    let addr = match (&s.path, &s.address) {
        (Some(p), None) => ApiAddr::Unix(p.into()),
        (None, Some(a)) => match units::endpoint(a)? {
            (Some(ip), port) => ApiAddr::Tcp(std::net::SocketAddr::from((ip, port))),
            (None, port) => ApiAddr::Tcp(std::net::SocketAddr::from((
                std::net::Ipv4Addr::UNSPECIFIED,
                port,
            ))),
        },
        _ => return Err("'stats_socket' takes either 'path' (UNIX) or 'address' (TCP)".into()),
    };
    Ok(StatsSocket {
        addr,
        mode: s.mode.as_deref().map(file_mode).transpose()?,
        // HAProxy's default access level for a stats socket is "operator".
        level: s
            .level
            .as_deref()
            .map(api_level)
            .transpose()?
            .unwrap_or(ApiLevel::Operator),
        origin: at.clone(),
    })
}

const MODES: &[(&str, Mode)] = &[("tcp", Mode::Tcp), ("http", Mode::Http)];

const VERIFY: &[(&str, Verify)] = &[("none", Verify::None), ("required", Verify::Required)];

fn frontend(cx: &mut Ctx, name: &str, f: &Spanned<FrontendT>, d: &ProxyT) -> Frontend {
    let origin = cx.src.of(f);
    let f = f.get_ref();
    let mode = cx
        .word(&f.mode, "mode", MODES)
        .or_else(|| cx.word(&d.mode, "mode", MODES))
        .unwrap_or(Mode::Tcp);
    let mut binds = Vec::new();
    for b in &f.bind {
        let at = cx.src.of(b);
        match bind(b.get_ref(), &at) {
            Ok(b) => binds.push(b),
            Err(e) => cx.err(at, format!("'bind': {e}")),
        }
    }
    let mut access = Vec::new();
    for r in &f.tcp_request_connection {
        let at = cx.src.of(r);
        let words: Vec<&str> = r.get_ref().split_whitespace().collect();
        match access::parse_rule(&words, &no_named_acls, at.clone()) {
            Ok(rule) => access.push(rule),
            Err(e) => cx.err(at, format!("'tcp_request_connection': {e}")),
        }
    }
    Frontend {
        name: name.into(),
        mode,
        binds,
        default_backend: f.default_backend.get_ref().clone(),
        default_backend_at: cx.src.of(&f.default_backend),
        tcplog: f.tcplog,
        access,
        origin,
    }
}

fn no_named_acls(name: &str) -> Result<access::Test, String> {
    Err(format!(
        "'{name}': lb.toml has no named ACLs, write the test in braces: '{{ src 10.0.0.0/8 }}'."
    ))
}

/// `ADDR:PORT[/tcp|/udp][ v6only|v4v6]`, ADDR an IPv4 or (bracketed or not) IPv6 address,
/// `*` (every local IPv4 address) or `::` (every local IPv6 address and, without `v6only`,
/// every IPv4 one).
pub fn bind(s: &str, origin: &Origin) -> Result<Bind, String> {
    let (s, v6only) = match s.split_once(' ') {
        None => (s, false),
        Some((a, "v6only")) => (a, true),
        Some((a, "v4v6")) => (a, false),
        Some((_, w)) => {
            return Err(format!(
                "unknown bind option '{}' (v6only or v4v6)",
                w.trim()
            ));
        }
    };
    let (ep, proto) = match s.rsplit_once('/') {
        Some((ep, "tcp")) => (ep, Proto::Tcp),
        Some((ep, "udp")) => (ep, Proto::Udp),
        Some((_, p)) => return Err(format!("unknown protocol '{p}' (tcp or udp)")),
        None => (s, Proto::Tcp),
    };
    let (addr, port) = units::ip_endpoint(ep)?;
    if v6only && !(addr.is_ipv6() && addr.is_unspecified()) {
        return Err(format!(
            "'v6only' only applies to '::' (every local IPv6 address), not to '{ep}'"
        ));
    }
    Ok(Bind {
        addr,
        port,
        proto,
        v6only,
        origin: origin.clone(),
    })
}

/// Backend value `own`, else the `[defaults]` value.
fn pick<'a, T>(own: &'a Option<T>, def: &'a Option<T>) -> &'a Option<T> {
    if own.is_some() { own } else { def }
}

fn backend(cx: &mut Ctx, name: &str, b: &Spanned<ProxyT>, d: &ProxyT) -> Backend {
    let origin = cx.src.of(b);
    let b = b.get_ref();
    let mode = cx
        .word(pick(&b.mode, &d.mode), "mode", MODES)
        .unwrap_or(Mode::Tcp);
    let balance = match pick(&b.balance, &d.balance) {
        Some(v) => match Balance::parse(v.get_ref()) {
            Ok(b) => b,
            Err(e) => {
                let at = cx.src.of(v);
                cx.err(
                    at,
                    format!(
                        "'balance': {e}; expected 'roundrobin', 'static-rr', 'leastconn', 'first', 'random', 'random(<draws>)' or 'source'"
                    ),
                );
                Balance::default()
            }
        },
        None => Balance::default(),
    };
    let hash_type = cx
        .word(
            pick(&b.hash_type, &d.hash_type),
            "hash_type",
            &[
                ("map-based", HashType::MapBased),
                ("consistent", HashType::Consistent),
            ],
        )
        .unwrap_or_default();
    let hash_table_size = match pick(&b.hash_table_size, &d.hash_table_size) {
        Some(n) if !lb_common::maglev::valid_size(*n.get_ref()) => {
            let at = cx.src.of(n);
            cx.err(
                at,
                format!(
                    "'hash_table_size' is {}: it must be a prime number up to {} (e.g. 251, 1021, 4093, 16381, 65537)",
                    n.get_ref(),
                    lb_common::maglev::MAGLEV_MAX_SIZE
                ),
            );
            lb_common::maglev::MAGLEV_DEFAULT_SIZE
        }
        Some(n) => *n.get_ref(),
        None => lb_common::maglev::MAGLEV_DEFAULT_SIZE,
    };
    let nat = cx
        .word(
            pick(&b.nat, &d.nat),
            "nat",
            &[
                ("full-nat", NatMode::FullNat),
                ("dnat", NatMode::Dnat),
                ("dsr-ipip", NatMode::DsrIpip),
            ],
        )
        .unwrap_or_default();
    let on_empty = cx
        .word(
            pick(&b.on_empty, &d.on_empty),
            "on_empty",
            &[("drop", OnEmpty::Drop), ("pass", OnEmpty::Pass)],
        )
        .unwrap_or_default();
    let none = TimeoutsT::default();
    let (bt, dt) = (
        b.timeout.as_ref().unwrap_or(&none),
        d.timeout.as_ref().unwrap_or(&none),
    );
    let timeouts = Timeouts {
        connect: cx.time(pick(&bt.connect, &dt.connect), "timeout.connect"),
        client: cx.time(pick(&bt.client, &dt.client), "timeout.client"),
        server: cx.time(pick(&bt.server, &dt.server), "timeout.server"),
        tunnel: cx.time(pick(&bt.tunnel, &dt.tunnel), "timeout.tunnel"),
        client_fin: cx.time(pick(&bt.client_fin, &dt.client_fin), "timeout.client_fin"),
        server_fin: cx.time(pick(&bt.server_fin, &dt.server_fin), "timeout.server_fin"),
        check: cx.time(pick(&bt.check, &dt.check), "timeout.check"),
        queue: cx.time(pick(&bt.queue, &dt.queue), "timeout.queue"),
    };
    // The backend's own choice first, then its defaults'.
    let own_rules = b.protocol_check.is_some() || b.tcp_check_rules.is_some();
    let check = if b.tcp_check == Some(true) {
        CheckKind::Tcp
    } else if b.http_check.is_some() || (!own_rules && d.http_check.is_some()) {
        match pick(&b.http_check, &d.http_check) {
            Some(h) => CheckKind::Http(http_check(cx, h)),
            None => CheckKind::Tcp,
        }
    } else if let Some(p) = b.protocol_check.as_ref().or(d.protocol_check.as_ref()) {
        protocol_check(cx, p).map_or(CheckKind::Tcp, CheckKind::Rules)
    } else if let Some(r) = b.tcp_check_rules.as_ref().or(d.tcp_check_rules.as_ref()) {
        match tcp_check_rules(cx, r) {
            Some(rules) if !rules.is_empty() => CheckKind::Rules(TcpCheck::Generic(rules)),
            _ => CheckKind::Tcp,
        }
    } else {
        CheckKind::Tcp
    };
    let no_defaults = ServerT::default();
    let sdef = b
        .default_server
        .as_ref()
        .or(d.default_server.as_ref())
        .unwrap_or(&no_defaults);
    let servers = b
        .server
        .iter()
        .filter_map(|s| server(cx, s, sdef))
        .collect();
    Backend {
        name: name.into(),
        mode,
        balance,
        hash_type,
        hash_table_size,
        nat,
        on_empty,
        check,
        redispatch: b.redispatch.or(d.redispatch).unwrap_or(false),
        log_health_checks: b.log_health_checks.or(d.log_health_checks).unwrap_or(false),
        allbackups: b.allbackups.or(d.allbackups).unwrap_or(false),
        retries: b.retries.or(d.retries).unwrap_or(3),
        timeouts,
        load_state: cx
            .word(
                pick(&b.load_server_state, &d.load_server_state),
                "load_server_state",
                &[
                    ("none", LoadState::None),
                    ("global", LoadState::Global),
                    ("local", LoadState::Local),
                ],
            )
            .unwrap_or_default(),
        state_file_name: b
            .server_state_file_name
            .clone()
            .or(d.server_state_file_name.clone()),
        servers,
        origin,
    }
}

fn protocol_check(cx: &mut Ctx, p: &Spanned<ProtocolCheckT>) -> Option<TcpCheck> {
    let at = cx.src.of(p);
    let p = p.get_ref();
    let check = match p.check.as_str() {
        "redis" => TcpCheck::Redis,
        "ldap" => TcpCheck::Ldap,
        "ssl-hello" => TcpCheck::SslHello,
        "mysql" => TcpCheck::Mysql {
            user: p.user.clone(),
            pre41: p.pre41,
        },
        "pgsql" => match &p.user {
            Some(u) => TcpCheck::Pgsql { user: u.clone() },
            None => {
                cx.err(at, "protocol_check 'pgsql' needs a 'user'");
                return None;
            }
        },
        "smtp" => TcpCheck::Smtp {
            hello: p.hello.clone().unwrap_or_else(|| "HELO localhost".into()),
        },
        other => {
            cx.err(
                at,
                format!(
                    "unknown protocol_check '{other}' (redis, mysql, pgsql, smtp, ldap, ssl-hello)"
                ),
            );
            return None;
        }
    };
    Some(check)
}

fn tcp_check_rules(cx: &mut Ctx, r: &Spanned<Vec<TcpRuleT>>) -> Option<Vec<TcpRule>> {
    let at = cx.src.of(r);
    let mut out = Vec::new();
    for t in r.get_ref() {
        match tcp_rule(t) {
            Ok(rule) => out.push(rule),
            Err(e) => {
                cx.err(at, format!("tcp_check_rules: {e}"));
                return None;
            }
        }
    }
    Some(out)
}

fn tcp_rule(t: &TcpRuleT) -> Result<TcpRule, String> {
    let hex = |s: &str| -> Result<Vec<u8>, String> {
        units::hex_bytes(s).ok_or_else(|| format!("'{s}' is not a hexadecimal string"))
    };
    let status = |s: &Option<String>| -> Result<Option<String>, String> {
        match s {
            Some(n) if crate::health::tcp_rules::status_named(n).is_none() => {
                Err(format!("unknown check status '{n}'"))
            }
            other => Ok(other.clone()),
        }
    };
    let kinds = [
        t.connect.is_some(),
        t.send.is_some(),
        t.send_binary.is_some(),
        t.expect.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => {
            return t.comment.clone().map(TcpRule::Comment).ok_or_else(|| {
                "a rule is 'connect', 'send', 'send_binary', 'expect' or 'comment'".into()
            });
        }
        1 => {}
        _ => return Err("one of 'connect', 'send', 'send_binary', 'expect' per rule".into()),
    }
    if let Some(c) = &t.connect {
        let port = c.port.map(|p| units::port(&p.to_string())).transpose()?;
        return Ok(TcpRule::Connect {
            port,
            ssl: c.ssl,
            sni: c.sni.clone(),
            comment: t.comment.clone(),
        });
    }
    if let Some(s) = &t.send {
        return Ok(TcpRule::Send {
            data: s.as_bytes().to_vec(),
            comment: t.comment.clone(),
        });
    }
    if let Some(s) = &t.send_binary {
        return Ok(TcpRule::Send {
            data: hex(s)?,
            comment: t.comment.clone(),
        });
    }
    let kind = t.expect.as_deref().unwrap_or_default();
    let p = t
        .pattern
        .clone()
        .ok_or_else(|| format!("expect '{kind}' needs a 'pattern'"))?;
    let pattern = match kind {
        "string" => TcpPattern::String(p),
        "binary" => TcpPattern::Binary(hex(&p)?),
        "rstring" | "rbinary" => {
            units::regex(&p)?;
            if kind == "rstring" {
                TcpPattern::Regex(p)
            } else {
                TcpPattern::BinaryRegex(p)
            }
        }
        other => {
            return Err(format!(
                "unknown expect '{other}' (string, rstring, binary, rbinary)"
            ));
        }
    };
    Ok(TcpRule::Expect(TcpExpect {
        pattern,
        negate: t.negate,
        min_recv: t.min_recv,
        ok_status: status(&t.ok_status)?,
        error_status: status(&t.error_status)?,
        tout_status: status(&t.tout_status)?,
        on_success: t.on_success.clone(),
        on_error: t.on_error.clone(),
        comment: t.comment.clone(),
    }))
}

fn http_check(cx: &mut Ctx, h: &Spanned<HttpCheckT>) -> HttpCheck {
    let raw = h.get_ref();
    let mut out = HttpCheck::default();
    out.set_request_line(
        raw.method.as_deref(),
        raw.uri.as_deref(),
        raw.version.as_deref(),
    );
    out.headers = raw.headers.clone();
    for hdr in &raw.headers {
        if !hdr.contains(':') || hdr.contains(['\r', '\n']) {
            let at = cx.src.of(h);
            cx.err(
                at,
                format!("http_check header '{hdr}' must be one 'Name: value' line"),
            );
        }
    }
    out.body = raw.body.clone().unwrap_or_default();
    out.disable_on_404 = raw.disable_on_404;
    if let Some(e) = http_expect(cx, raw) {
        out.expect = e;
    }
    if let Some(c) = &raw.connect {
        let at = cx.src.of(c);
        let c = c.get_ref();
        let port = c
            .port
            .as_ref()
            .and_then(|p| match units::port(&p.get_ref().to_string()) {
                Ok(p) => Some(p),
                Err(e) => {
                    cx.err(at.clone(), format!("http_check connect 'port': {e}"));
                    None
                }
            });
        out.connect = Some(CheckConnect {
            port,
            ssl: c.ssl,
            sni: c.sni.clone(),
        });
    }
    out
}

/// The one `expect_*` key of an `http_check`, if any; `None` also after an error.
fn http_expect(cx: &mut Ctx, raw: &HttpCheckT) -> Option<HttpExpect> {
    let negate = raw.expect_negate.unwrap_or(false);
    let given: Vec<(&str, &Spanned<String>)> = [
        ("expect_status", &raw.expect_status),
        ("expect_rstatus", &raw.expect_rstatus),
        ("expect_string", &raw.expect_string),
        ("expect_rstring", &raw.expect_rstring),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.as_ref()?)))
    .collect();
    let (key, v) = match given.as_slice() {
        [] => return None,
        [one] => *one,
        [(a, _), (b, v), ..] => {
            let at = cx.src.of(v);
            cx.err(
                at,
                format!("'{a}' and '{b}': an http_check expects one match"),
            );
            return None;
        }
    };
    let at = cx.src.of(v);
    let text = v.get_ref().clone();
    let fail = |cx: &mut Ctx, e: String| {
        cx.err(at.clone(), format!("'{key}': {e}"));
        None
    };
    match key {
        "expect_status" => match units::status_ranges(&text) {
            Ok(r) if negate => match units::status_complement(&r) {
                c if c.is_empty() => fail(cx, "negated, it would fail every check".into()),
                c => Some(HttpExpect::Status(c)),
            },
            Ok(r) => Some(HttpExpect::Status(r)),
            Err(e) => fail(cx, e),
        },
        "expect_string" if text.is_empty() => fail(cx, "the text must not be empty".into()),
        "expect_string" => Some(HttpExpect::Body { text, negate }),
        _ => match units::regex(&text) {
            Err(e) => fail(cx, e),
            Ok(_) if key == "expect_rstatus" => Some(HttpExpect::StatusRegex {
                pattern: text,
                negate,
            }),
            Ok(_) => Some(HttpExpect::BodyRegex {
                pattern: text,
                negate,
            }),
        },
    }
}

fn server(cx: &mut Ctx, s: &Spanned<ServerT>, d: &ServerT) -> Option<Server> {
    let origin = cx.src.of(s);
    let s = s.get_ref();
    let Some(name) = &s.name else {
        cx.err(origin, "server has no 'name'");
        return None;
    };
    let Some(address) = &s.address else {
        cx.err(
            origin,
            format!("server '{}' has no 'address'", name.get_ref()),
        );
        return None;
    };
    // Without a port, the client's destination port (HAProxy's rule). As HAProxy, the
    // port follows the last colon, unless an IPv6 address is bracketed.
    let text = address.get_ref();
    let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let mut fqdn = None;
    let parsed = match units::split_host_port(text) {
        Err(e) => Err(e),
        Ok((host, port_text)) => {
            let port = match port_text {
                None => Ok(0),
                Some(p) => units::port(p).map_err(|e| format!("in '{text}': {e}")),
            };
            if units::is_host_name(host) {
                fqdn = Some(host.to_string());
                port.map(|p| (any, p))
            } else {
                match units::ip(host) {
                    Ok(a) => port.map(|p| (a, p)),
                    Err(e) => Err(format!("{e}{}", units::v6_port_hint(text, host))),
                }
            }
        }
    };
    let (addr, port) = match parsed {
        Ok((a, _)) if a.is_unspecified() && fqdn.is_none() => {
            let at = cx.src.of(address);
            cx.err(
                at,
                format!(
                    "server '{}': address '{}' must be a concrete IP address",
                    name.get_ref(),
                    address.get_ref()
                ),
            );
            return None;
        }
        Ok(p) => p,
        Err(e) => {
            let at = cx.src.of(address);
            cx.err(at, format!("server '{}': {e}", name.get_ref()));
            return None;
        }
    };
    let mut out = Server::new(name.get_ref(), addr, port, origin);
    out.fqdn = fqdn;
    if let Some(v) = pick(&s.init_addr, &d.init_addr) {
        match InitAddr::parse_list(v.get_ref()) {
            Ok(l) => out.init_addr = l,
            Err(e) => {
                let at = cx.src.of(v);
                cx.err(at, format!("server '{}': init_addr: {e}", out.name));
            }
        }
    }
    out.dns.resolvers = pick(&s.resolvers, &d.resolvers).clone();
    if let Some(v) = pick(&s.resolve_prefer, &d.resolve_prefer) {
        match v.get_ref().as_str() {
            "ipv4" => out.dns.prefer = Family::V4,
            "ipv6" => out.dns.prefer = Family::V6,
            other => {
                let at = cx.src.of(v);
                cx.err(
                    at,
                    format!(
                        "server '{}': resolve_prefer: '{other}' is not 'ipv4' or 'ipv6'",
                        out.name
                    ),
                );
            }
        }
    }
    if let Some(v) = pick(&s.resolve_net, &d.resolve_net) {
        match units::networks(v.get_ref()) {
            Ok(nets) => out.dns.nets = nets,
            Err(bad) => {
                let at = cx.src.of(v);
                cx.err(
                    at,
                    format!(
                        "server '{}': resolve_net: '{bad}' is not an IPv4 network",
                        out.name
                    ),
                );
            }
        }
    }
    out.check = s.check.or(d.check).unwrap_or(false);
    if let Some(t) = cx.time(pick(&s.inter, &d.inter), "inter") {
        out.inter = t;
    }
    out.fastinter = cx.time(pick(&s.fastinter, &d.fastinter), "fastinter");
    out.downinter = cx.time(pick(&s.downinter, &d.downinter), "downinter");
    if let Some(f) = pick(&s.fall, &d.fall) {
        out.fall = *f.get_ref();
    }
    if let Some(r) = pick(&s.rise, &d.rise) {
        out.rise = *r.get_ref();
    }
    if let Some(p) = pick(&s.port, &d.port) {
        match units::port(&p.get_ref().to_string()) {
            Ok(p) => out.check_port = Some(p),
            Err(e) => {
                let at = cx.src.of(p);
                cx.err(at, format!("server '{}': check 'port': {e}", out.name));
            }
        }
    }
    if let Some(a) = pick(&s.addr, &d.addr) {
        match units::ip(a.get_ref()) {
            Ok(a) => out.check_addr = Some(a),
            Err(e) => {
                let at = cx.src.of(a);
                cx.err(at, format!("server '{}': check 'addr': {e}", out.name));
            }
        }
    }
    check_tls(cx, &mut out, s, d);
    agent(cx, &mut out, s, d);
    if let Some(w) = pick(&s.weight, &d.weight) {
        out.weight = *w.get_ref();
    }
    out.backup = s.backup.or(d.backup).unwrap_or(false);
    out.disabled = s.disabled.or(d.disabled).unwrap_or(false);
    out.maxconn = s.maxconn.or(d.maxconn);
    out.slowstart = cx.time(pick(&s.slowstart, &d.slowstart), "slowstart");
    observe(cx, &mut out, s, d);
    out.on_marked_down = cx
        .word(
            pick(&s.on_marked_down, &d.on_marked_down),
            "on_marked_down",
            &[("shutdown-sessions", OnMarkedDown::ShutdownSessions)],
        )
        .unwrap_or_default();
    out.on_marked_up = cx
        .word(
            pick(&s.on_marked_up, &d.on_marked_up),
            "on_marked_up",
            &[(
                "shutdown-backup-sessions",
                OnMarkedUp::ShutdownBackupSessions,
            )],
        )
        .unwrap_or_default();
    Some(out)
}

/// `observe`, `on_error`, `error_limit`.
fn observe(cx: &mut Ctx, out: &mut Server, s: &ServerT, d: &ServerT) {
    out.observe = cx
        .word(
            pick(&s.observe, &d.observe),
            "observe",
            &[("layer4", Observe::Layer4)],
        )
        .unwrap_or_default();
    out.on_error = cx
        .word(pick(&s.on_error, &d.on_error), "on_error", OnError::ALL)
        .unwrap_or_default();
    if let Some(n) = pick(&s.error_limit, &d.error_limit) {
        if *n.get_ref() == 0 {
            let at = cx.src.of(n);
            cx.err(
                at,
                format!("server '{}': 'error_limit' must be > 0", out.name),
            );
        } else {
            out.error_limit = *n.get_ref();
        }
    }
}

/// `check_ssl`, `check_sni`, `verify`, `ca_file`.
fn check_tls(cx: &mut Ctx, out: &mut Server, s: &ServerT, d: &ServerT) {
    out.check_tls.ssl = s.check_ssl.or(d.check_ssl).unwrap_or(false);
    if let Some(sni) = pick(&s.check_sni, &d.check_sni) {
        if sni.get_ref().is_empty() {
            let at = cx.src.of(sni);
            cx.err(at, format!("server '{}': 'check_sni' is empty", out.name));
        } else {
            out.check_tls.sni = Some(sni.get_ref().clone());
        }
    }
    out.check_tls.verify = cx.word(pick(&s.verify, &d.verify), "verify", VERIFY);
    out.check_tls.ca_file = pick(&s.ca_file, &d.ca_file).as_ref().map(Into::into);
}

/// `agent_check` and its `agent_*` settings.
fn agent(cx: &mut Ctx, out: &mut Server, s: &ServerT, d: &ServerT) {
    out.agent.enabled = s.agent_check.or(d.agent_check).unwrap_or(false);
    if let Some(p) = pick(&s.agent_port, &d.agent_port) {
        match units::port(&p.get_ref().to_string()) {
            Ok(p) => out.agent.port = Some(p),
            Err(e) => {
                let at = cx.src.of(p);
                cx.err(at, format!("server '{}': 'agent_port': {e}", out.name));
            }
        }
    }
    out.agent.inter = cx.time(pick(&s.agent_inter, &d.agent_inter), "agent_inter");
    out.agent.send = pick(&s.agent_send, &d.agent_send)
        .clone()
        .unwrap_or_default();
    if let Some(a) = pick(&s.agent_addr, &d.agent_addr) {
        match units::ip(a.get_ref()) {
            Ok(a) => out.agent.addr = Some(a),
            Err(e) => {
                let at = cx.src.of(a);
                cx.err(at, format!("server '{}': 'agent_addr': {e}", out.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("t.toml", text)
            .expect_err("should fail")
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const SEED: &str = include_str!("../../../configs/lb.toml");

    #[test]
    fn log_targets_of_either_family() {
        let at = Origin::default();
        let dest = |t: &str| log_target_from_words(t, "local6", None, None, &at).map(|l| l.dest);
        let udp = |s: &str| Ok(LogDest::Udp(s.parse().expect("sa")));
        // HAProxy's capture logged to `[::1]:5514` (scripts/haproxy-ipv6-reference.sh).
        assert_eq!(dest("[::1]:5514"), udp("[::1]:5514"));
        assert_eq!(dest("udp@[::1]:5514"), udp("[::1]:5514"));
        assert_eq!(dest("[fd00::1]"), udp("[fd00::1]:514"));
        assert_eq!(dest("fd00::1:514"), udp("[fd00::1]:514"));
        assert_eq!(dest("127.0.0.1"), udp("127.0.0.1:514"));
        assert_eq!(
            dest("[fd00::zz]:514"),
            Err("'[fd00::zz]' is not an IPv6 address".into())
        );
        assert_eq!(
            dest("10.0.0.300"),
            Err("'10.0.0.300' is not an IPv4 address".into())
        );
    }

    #[test]
    fn stats_http_port_alone_is_loopback() {
        let lo = |p| {
            Some(std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                p,
            )))
        };
        assert_eq!(stats_http_addr("8404"), lo(8404));
        assert_eq!(stats_http_addr(":8404"), lo(8404));
        assert_eq!(
            stats_http_addr("0.0.0.0:8404"),
            Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8404)))
        );
        assert_eq!(stats_http_addr("nope"), None);
        let e = errors("[global]\nstats_http = \"x:y\"\n");
        assert!(e[0].contains("is not ADDRESS:PORT or PORT"), "{e:?}");
    }

    #[test]
    fn seed_equivalent_parses() {
        let c = parse("lb.toml", SEED).expect("configs/lb.toml parses");
        assert_eq!(c.frontends.len(), 1);
        let f = &c.frontends[0];
        assert_eq!(f.name, "main");
        assert!(f.binds[0].addr.is_ipv4() && f.binds[0].is_wildcard());
        assert_eq!(f.binds[0].port, 80);
        assert_eq!(f.default_backend, "hoge");
        let b = c.backend("hoge").expect("backend hoge");
        assert_eq!(b.balance, Balance::RoundRobin);
        assert!(b.redispatch && b.log_health_checks);
        assert_eq!(b.retries, 3);
        assert_eq!(b.timeouts.check, Some(Duration::from_secs(10)));
        let CheckKind::Http(h) = &b.check else {
            panic!("http check expected")
        };
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
            ("GET", "/health_check.html", "HTTP/1.0")
        );
        assert_eq!(h.headers, ["User-agent: Proxy-Check"]);
        let names: Vec<_> = b.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web10", "web11"]);
        let s = &b.servers[1];
        assert_eq!(s.addr, std::net::Ipv4Addr::new(192, 168, 33, 11));
        assert_eq!((s.port, s.check, s.fall, s.rise), (80, true, 2, 2));
        assert_eq!(s.inter, Duration::from_millis(3000));
        assert_eq!(c.global.logs[0].facility, Facility::Local6);
        assert_eq!(c.global.logs[0].max_level, Level::Debug);
    }

    #[test]
    fn server_host_names_and_init_addr() {
        let c = parse(
            "t.toml",
            "[frontend.f]\nbind=['10.0.0.1:80']\ndefault_backend='b'\n[backend.b]\nserver=[{name='s',address='app.example:80',init_addr='libc,10.0.0.9'},{name='t',address='app.example'}]\n",
        )
        .expect("parses");
        let s = &c.backends[0].servers;
        assert_eq!(s[0].fqdn.as_deref(), Some("app.example"));
        assert_eq!((s[0].port, s[1].port), (80, 0));
        assert_eq!(
            s[0].init_addr,
            [
                InitAddr::Libc,
                InitAddr::Ip(std::net::Ipv4Addr::new(10, 0, 0, 9).into())
            ]
        );
        assert_eq!(s[1].init_addr, InitAddr::DEFAULT);
        let e =
            errors("[backend.b]\nserver=[{name='s',address='app.example:80',init_addr='dns'}]\n");
        assert!(
            e[0].contains("init_addr: 'dns' is not a valid init-addr method"),
            "{e:?}"
        );
    }

    #[test]
    fn hashing_backends() {
        let c = parse(
            "t.toml",
            "[defaults]\nhash_type='consistent'\n[backend.a]\nbalance='source'\nhash_table_size=251\n[backend.b]\nhash_type='map-based'\n",
        )
        .expect("parses");
        let (a, b) = (&c.backends[0], &c.backends[1]);
        assert_eq!(
            (a.balance, a.hash_type, a.hash_table_size),
            (Balance::Source, HashType::Consistent, 251)
        );
        assert_eq!(
            (b.hash_type, b.hash_table_size),
            (HashType::MapBased, 65537)
        );
        assert!(a.hashes() && !b.hashes());
        let e = errors("[backend.a]\nhash_table_size=65536\n");
        assert!(e[0].contains("must be a prime number up to 65537"), "{e:?}");
        let e = errors("[backend.a]\nbalance='hdr'\n");
        assert!(e[0].contains("'random(<draws>)' or 'source'"), "{e:?}");
        // hash-type applies to round robin only, as HAProxy ignores it for leastconn.
        let c = parse(
            "t.toml",
            "[defaults]\nhash_type='consistent'\n[backend.a]\nbalance='leastconn'\n",
        )
        .expect("parses");
        assert!(!c.backends[0].hashes());
    }

    #[test]
    fn haproxy_defaults_apply() {
        let c = parse(
            "t.toml",
            "[frontend.f]\nbind=['10.0.0.1:80']\ndefault_backend='b'\n[backend.b]\nserver=[{name='s',address='10.0.1.1:80'}]\n",
        )
        .expect("parses");
        let s = &c.backends[0].servers[0];
        assert_eq!(
            (s.inter, s.fall, s.rise, s.weight),
            (Duration::from_secs(2), 3, 2, 1)
        );
        assert!(!s.check);
        assert_eq!(c.backends[0].check, CheckKind::Tcp);
        assert_eq!(c.backends[0].nat, NatMode::FullNat);
        assert_eq!(c.frontends[0].mode, Mode::Tcp);
    }

    #[test]
    fn unknown_key_names_line() {
        let e = errors("[global]\nmaxconn = 10\n\n[backend.b]\nserverr = []\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("[ALERT] parsing [t.toml:5] : unknown field `serverr`"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_address_names_line_and_server() {
        let e = errors(
            "[backend.b]\nserver = [\n  { name = 'a', address = '10.0.0.1:80' },\n  { name = 'web', address = '10.0.0.300:80' },\n]\n",
        );
        assert_eq!(
            e,
            ["[ALERT] parsing [t.toml:4] : server 'web': '10.0.0.300' is not an IP address"]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let e = errors(
            "[backend.b]\nnat = 'snat'\nserver = [{ name = 'a', address = '1.2.3.4:0', inter = '3x' }]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("[t.toml:2] : 'nat' is 'snat', expected one of 'full-nat', 'dnat'"));
        assert!(e[1].contains("[t.toml:3] : server 'a': in '1.2.3.4:0': port 0 is not allowed"));
    }

    #[test]
    fn syntax_error_names_line() {
        let e = errors("[global]\nmaxconn = \n");
        assert!(e[0].starts_with("[ALERT] parsing [t.toml:2] :"), "{e:?}");
    }

    #[test]
    fn udp_bind() {
        let b = bind("10.0.0.1:53/udp", &Origin::default()).expect("valid");
        assert_eq!(b.proto, Proto::Udp);
        assert!(bind("10.0.0.1:53/sctp", &Origin::default()).is_err());
    }

    #[test]
    fn check_tls_agent_and_expect_keys() {
        let c = parse(
            "t.toml",
            r#"
[global]
ssl_server_verify = "none"
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b"
[backend.b]
http_check = { version = "HTTP/1.1", headers = ["Host: web.test"], expect_rstring = "^OK", expect_negate = true, connect = { port = 8443, ssl = true, sni = "web.test" } }
default_server = { agent_port = 9001, verify = "required" }
server = [{ name = "s", address = "10.0.1.1:80", check = true, check_ssl = true, check_sni = "web.test", ca_file = "/ca.pem", agent_check = true, agent_inter = "1s", agent_send = "ping\n", agent_addr = "10.0.1.9" }]
"#,
        )
        .expect("parses");
        assert_eq!(c.global.ssl_server_verify, Verify::None);
        let b = &c.backends[0];
        let CheckKind::Http(h) = &b.check else {
            panic!("http check")
        };
        assert_eq!(
            h.expect,
            HttpExpect::BodyRegex {
                pattern: "^OK".into(),
                negate: true
            }
        );
        assert_eq!(
            h.connect,
            Some(CheckConnect {
                port: Some(8443),
                ssl: true,
                sni: Some("web.test".into())
            })
        );
        let s = &b.servers[0];
        assert_eq!(s.check_tls.verify, Some(Verify::Required));
        assert_eq!(s.check_tls.sni.as_deref(), Some("web.test"));
        assert_eq!(s.agent.port, Some(9001));
        assert_eq!(s.agent.send, "ping\n");
        // A negated status list is its complement.
        let c = parse(
            "t.toml",
            "[backend.b]\nhttp_check = { expect_status = '100-599', expect_negate = true }\nserver = []\n",
        )
        .expect_err("every code");
        assert!(
            c.diagnostics[0]
                .to_string()
                .contains("negated, it would fail every check")
        );
        let e = errors(
            "[backend.b]\nhttp_check = { expect_status = '200', expect_string = 'x' }\nserver = [{ name = 's', address = '10.0.0.1:80', verify = 'sometimes' }]\n",
        );
        assert_eq!(
            e,
            [
                "[ALERT] parsing [t.toml:2] : 'expect_status' and 'expect_string': an http_check expects one match",
                "[ALERT] parsing [t.toml:3] : 'verify' is 'sometimes', expected one of 'none', 'required'",
            ]
        );
        let e = errors("[backend.b]\nhttp_check = { expect_rstatus = '(' }\nserver = []\n");
        assert_eq!(
            e,
            ["[ALERT] parsing [t.toml:2] : 'expect_rstatus': regex '(' is invalid: unclosed group"]
        );
    }
}
