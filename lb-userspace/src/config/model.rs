//! The one internal model every config front end (native TOML, haproxy.cfg) produces.
//! Defaults are HAProxy's unless noted.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

/// Where a definition came from, for messages: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// Names the bpffs pin directory (`/sys/fs/bpf/lb/<instance>`) and the instance in logs.
    pub instance: String,
    pub logs: Vec<LogTarget>,
    /// The syslog tag (HAProxy `log-tag`).
    pub log_tag: String,
    /// `stats socket` lines: the runtime API's listeners.
    pub stats_sockets: Vec<StatsSocket>,
    pub maxconn: Option<u32>,
    pub pidfile: Option<PathBuf>,
    pub daemon: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub chroot: Option<PathBuf>,
    /// Connection-tracking capacity (flows), for each direction.
    pub conntrack_entries: u32,
    /// Half-open capacity (flows whose handshake is under way): what a SYN flood can fill.
    pub halfopen_entries: u32,
    /// `server-state-file`, and `server-state-base` (where relative state files live).
    pub server_state_file: Option<PathBuf>,
    pub server_state_base: Option<PathBuf>,
    /// Full-NAT source ports. Keep it clear of `net.ipv4.ip_local_port_range` so translated
    /// flows never collide with the LB's own connections (health checks).
    pub snat_ports: (u16, u16),
    /// Interfaces to attach to besides the ones found from binds and routes.
    pub interfaces: Vec<String>,
    /// HTTP listeners serving the stats page and Prometheus metrics (native `stats_http`,
    /// haproxy.cfg `listen stats` sections).
    pub stats_http: Vec<StatsHttp>,
    /// `ssl-server-verify`: the `verify` of servers that do not say.
    pub ssl_server_verify: Verify,
    /// Several lb nodes: each VIP's `/32` is kept in this kernel routing table while it has a
    /// server UP, for the node's routing daemon (BIRD) to announce (`daemon::announce`).
    pub announce_table: Option<u32>,
    /// `resolvers` sections: DNS servers asked, while running, for the addresses of servers
    /// that name one (`resolvers NAME` on the server line).
    pub resolvers: Vec<Resolvers>,
}

impl Global {
    pub fn resolvers(&self, name: &str) -> Option<&Resolvers> {
        self.resolvers.iter().find(|r| r.name == name)
    }

    /// The flows the connection-tracking table holds: `conntrack_entries`, raised to the
    /// global `maxconn` so that the limit on active flows, not the LRU evicting live ones,
    /// is what turns connections away.
    pub fn flow_capacity(&self) -> u32 {
        self.conntrack_entries.max(self.maxconn.unwrap_or(0))
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            instance: "lb".into(),
            logs: Vec::new(),
            log_tag: "lb".into(),
            stats_sockets: Vec::new(),
            maxconn: None,
            pidfile: None,
            daemon: false,
            user: None,
            group: None,
            chroot: None,
            conntrack_entries: lb_common::DEFAULT_CONNTRACK_ENTRIES,
            halfopen_entries: lb_common::DEFAULT_HALFOPEN_ENTRIES,
            server_state_file: None,
            server_state_base: None,
            snat_ports: (1024, 32767),
            interfaces: Vec::new(),
            stats_http: Vec::new(),
            ssl_server_verify: Verify::Required,
            announce_table: None,
            resolvers: Vec::new(),
        }
    }
}

/// A `resolvers` section (HAProxy 2.6 configuration.txt 5.3.2), with HAProxy's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolvers {
    pub name: String,
    /// Queried all at once; the first useful answer wins.
    pub nameservers: Vec<Nameserver>,
    pub hold: Hold,
    /// Queries sent for one resolution before it ends in a timeout.
    pub resolve_retries: u32,
    /// How often each name is resolved again.
    pub timeout_resolve: Duration,
    /// How long a query waits for its answer before it is sent again.
    pub timeout_retry: Duration,
    /// The EDNS0 payload size announced (512: no EDNS0 record).
    pub accepted_payload_size: u16,
    pub origin: Origin,
}

impl Resolvers {
    pub fn new(name: &str, origin: Origin) -> Resolvers {
        Resolvers {
            name: name.into(),
            nameservers: Vec::new(),
            hold: Hold::default(),
            resolve_retries: 3,
            timeout_resolve: Duration::from_secs(1),
            timeout_retry: Duration::from_secs(1),
            accepted_payload_size: 512,
            origin,
        }
    }
}

/// `nameserver ID ADDR:PORT` (UDP).
#[derive(Clone, Debug, PartialEq)]
pub struct Nameserver {
    pub id: String,
    pub addr: std::net::SocketAddrV4,
    pub origin: Origin,
}

/// `hold STATUS PERIOD`: how long the last valid answer stands after a resolution ends in
/// STATUS (`nx`, `refused`, `timeout`, `other`) before its servers go to maintenance; how
/// long an address missing from newer answers is still used (`obsolete`); how long a valid
/// answer is fresh enough to be reused without asking again (`valid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub valid: Duration,
    pub nx: Duration,
    pub refused: Duration,
    pub timeout: Duration,
    pub other: Duration,
    pub obsolete: Duration,
}

impl Default for Hold {
    /// HAProxy 2.6's (`resolvers_new`): 10s valid, 0 obsolete, 30s for the rest.
    fn default() -> Self {
        let s30 = Duration::from_secs(30);
        Hold {
            valid: Duration::from_secs(10),
            nx: s30,
            refused: s30,
            timeout: s30,
            other: s30,
            obsolete: Duration::ZERO,
        }
    }
}

/// How a server given by host name follows DNS while running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerDns {
    /// `resolvers NAME`.
    pub resolvers: Option<String>,
    /// `resolve-prefer`: which family a host name's address is taken from when it has both.
    /// lb's default is IPv4, not HAProxy's ipv6 (see [`super::resolve`]).
    pub prefer: Family,
    /// `resolve-net`: addresses in these networks are chosen first.
    pub nets: Vec<(Ipv4Addr, u8)>,
}

impl Default for ServerDns {
    fn default() -> Self {
        ServerDns {
            resolvers: None,
            prefer: Family::V4,
            nets: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogTarget {
    pub dest: LogDest,
    pub facility: Facility,
    /// Messages above this severity (numerically greater) are not sent.
    pub max_level: Level,
    /// Messages more severe than this are sent at this level (HAProxy's `minlevel`).
    pub min_level: Option<Level>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDest {
    Udp(SocketAddr),
    Unix(PathBuf),
    Stderr,
    Stdout,
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal = $num:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn code(self) -> u8 {
                match self { $($name::$variant => $num,)* }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

named_enum!(
    /// Syslog facilities (RFC 5424 numbering).
    Facility {
        Kern = "kern" = 0, User = "user" = 1, Mail = "mail" = 2, Daemon = "daemon" = 3,
        Auth = "auth" = 4, Syslog = "syslog" = 5, Lpr = "lpr" = 6, News = "news" = 7,
        Uucp = "uucp" = 8, Cron = "cron" = 9, Auth2 = "auth2" = 10, Ftp = "ftp" = 11,
        Ntp = "ntp" = 12, Audit = "audit" = 13, Alert = "alert" = 14, Cron2 = "cron2" = 15,
        Local0 = "local0" = 16, Local1 = "local1" = 17, Local2 = "local2" = 18,
        Local3 = "local3" = 19, Local4 = "local4" = 20, Local5 = "local5" = 21,
        Local6 = "local6" = 22, Local7 = "local7" = 23,
    }
);

named_enum!(
    /// Syslog severities; lower is more severe.
    Level {
        Emerg = "emerg" = 0, Alert = "alert" = 1, Crit = "crit" = 2, Err = "err" = 3,
        Warning = "warning" = 4, Notice = "notice" = 5, Info = "info" = 6, Debug = "debug" = 7,
    }
);

/// Runtime API privilege (`stats socket ... level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiLevel {
    User,
    Operator,
    Admin,
}

/// Where a runtime API socket listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAddr {
    /// A UNIX socket (HAProxy's usual `stats socket /run/haproxy/admin.sock`).
    Unix(PathBuf),
    /// A TCP socket (`stats socket ipv4@127.0.0.1:9999`).
    Tcp(SocketAddr),
}

impl std::fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAddr::Unix(p) => write!(f, "{}", p.display()),
            ApiAddr::Tcp(a) => write!(f, "ipv4@{a}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StatsSocket {
    pub addr: ApiAddr,
    /// File mode of a UNIX socket, octal as written (`mode 600`).
    pub mode: Option<u32>,
    pub level: ApiLevel,
    pub origin: Origin,
}

/// An HTTP listener of the daemon's serving the stats page and the Prometheus metrics: the
/// native `stats_http`, or a haproxy.cfg `frontend`/`listen` section with `stats enable` (or
/// `stats uri`, `http-request use-service prometheus-exporter`) and no server.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsHttp {
    /// The section's name (`stats_http` in the native format), for messages.
    pub name: String,
    pub binds: Vec<SocketAddr>,
    /// `stats uri`: where the page is, a prefix of the request's path and query, as HAProxy
    /// matches it (its CSV is at `URI;csv`); `None`: no page.
    pub uri: Option<String>,
    /// `stats auth USER:PASSWORD`: who may see the page (HTTP basic); empty: anyone.
    pub auth: Vec<(String, String)>,
    /// `stats realm`.
    pub realm: String,
    /// `stats refresh`: the page reloads itself this often; `None`: never.
    pub refresh: Option<Duration>,
    /// Where the Prometheus metrics are served (`http-request use-service
    /// prometheus-exporter if { path /metrics }`); `None`: nowhere. As in HAProxy, `stats
    /// auth` does not cover them.
    pub metrics: Option<PathMatch>,
    pub origin: Origin,
}

impl StatsHttp {
    /// HAProxy's default `stats uri`.
    pub const DEFAULT_URI: &'static str = "/haproxy?stats";
    /// HAProxy's default `stats realm`.
    pub const DEFAULT_REALM: &'static str = "HAProxy Statistics";

    /// The native `stats_http = "ADDR:PORT"`: the page at `/` (refreshed every 5 s), the
    /// metrics at `/metrics`, no authentication.
    pub fn simple(addr: SocketAddr, origin: Origin) -> StatsHttp {
        StatsHttp {
            name: "stats_http".into(),
            binds: vec![addr],
            uri: Some("/".into()),
            auth: Vec::new(),
            realm: StatsHttp::DEFAULT_REALM.into(),
            refresh: Some(Duration::from_secs(5)),
            metrics: Some(PathMatch::Exact("/metrics".into())),
            origin,
        }
    }
}

/// A request path condition (`{ path X }`, `{ path_beg X }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    /// Accepted from haproxy.cfg; runs as L4 (HTTP-only directives are warned about).
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => lb_common::PROTO_TCP,
            Proto::Udp => lb_common::PROTO_UDP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub default_backend: String,
    /// Where the backend was named (`default_backend`, `use_backend`; the section's line for
    /// a `listen` section sending to itself).
    pub default_backend_at: Origin,
    /// `option tcplog`: a line per new connection (client, frontend, backend/server).
    pub tcplog: bool,
    /// `tcp-request connection` rules, in order: who may connect (TCP binds only).
    pub access: Vec<super::access::AccessRule>,
    pub origin: Origin,
}

impl Frontend {
    /// The ports of its TCP binds, once each.
    pub fn tcp_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .binds
            .iter()
            .filter(|b| b.proto == Proto::Tcp)
            .map(|b| b.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether some bind serves clients of family `f`.
    pub fn serves(&self, f: Family) -> bool {
        self.binds.iter().any(|b| b.families().contains(&f))
    }

    /// How many `LB_ACCESS` (IPv4) or `LB6_ACCESS` (IPv6) entries its rules take
    /// (`dataplane::access`): none for a family no bind serves.
    pub fn access_entries(&self, f: Family) -> usize {
        if self.access.is_empty() || !self.serves(f) {
            return 0;
        }
        super::access::regions(&self.access, f).len() * self.tcp_ports().len()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bind {
    /// An unspecified address is a wildcard: `*:80` (`0.0.0.0`) every local IPv4 address,
    /// `:::80` (`::`) every local IPv6 address and, unless `v6only`, every IPv4 one too.
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// `v6only` on a `::` bind: IPv6 clients only. Without it `:::80` is dual-stack, as
    /// HAProxy's socket is on Linux by default (`net.ipv6.bindv6only=0`, or `v4v6`).
    pub v6only: bool,
    pub origin: Origin,
}

/// An address family, as a bind serves and a server belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The wildcard (unspecified) address of the family.
    pub fn any(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl Bind {
    /// A wildcard bind: every local address of the families it serves.
    pub fn is_wildcard(&self) -> bool {
        self.addr.is_unspecified()
    }

    /// The client families it serves: its address's, and IPv4 too for a dual-stack `::`.
    pub fn families(&self) -> &'static [Family] {
        match self.addr {
            IpAddr::V4(_) => &[Family::V4],
            IpAddr::V6(a) if a.is_unspecified() && !self.v6only => &[Family::V4, Family::V6],
            IpAddr::V6(_) => &[Family::V6],
        }
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(a) if a.is_unspecified() => write!(f, "*:{}", self.port)?,
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port)?,
            IpAddr::V6(a) if a.is_unspecified() => write!(f, ":::{}", self.port)?,
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port)?,
        }
        if self.proto == Proto::Udp {
            write!(f, "/udp")?;
        }
        if self.v6only {
            write!(f, " v6only")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NatMode {
    /// Destination and source rewritten; works whatever the servers' default route.
    #[default]
    FullNat,
    /// Destination only; servers see the client and must route replies through the LB.
    Dnat,
    /// Direct server return: packets go to the server unchanged inside IPIP; the server
    /// (an `ipip` interface, the VIP on `lo`) answers the client directly. Servers listen on
    /// the VIP's port.
    DsrIpip,
}

impl NatMode {
    pub fn name(self) -> &'static str {
        match self {
            NatMode::FullNat => "full-nat",
            NatMode::Dnat => "dnat",
            NatMode::DsrIpip => "dsr-ipip",
        }
    }
}

/// What VIP traffic gets when a backend has no usable server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnEmpty {
    #[default]
    Drop,
    /// Hand it to the local stack (e.g. a local "sorry" server listening on the VIP).
    Pass,
}

/// A backend's `balance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Servers in turn, weights as repetitions; weights may change on the fly (slow start).
    #[default]
    RoundRobin,
    /// As round robin, but static: weights are the config's, and `set weight` only takes
    /// 0% or 100% (HAProxy's rule); no slow start.
    StaticRr,
    /// The fewest active flows for the weight.
    LeastConn,
    /// The first server (in config order) with room under its `maxconn`; weights ignored.
    First,
    /// The least loaded (for its weight) of `draws` servers drawn at random by weight.
    Random { draws: u32 },
    /// A hash of the client's address: its connections all go to one server, the same
    /// server on every lb node.
    Source,
}

impl Balance {
    /// HAProxy's name (`show stat`'s `algo`, `lb convert`).
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::StaticRr => "static-rr",
            Balance::LeastConn => "leastconn",
            Balance::First => "first",
            Balance::Random { .. } => "random",
            Balance::Source => "source",
        }
    }

    /// HAProxy's `BE_LB_PROP_DYN`: weights may change while running, so a slow start ramps
    /// them and `set weight` takes any value (static-rr only 0% and 100%).
    pub fn dynamic(self) -> bool {
        self != Balance::StaticRr
    }

    /// Reads `roundrobin`, `static-rr`, `leastconn`, `first`, `random`, `random(N)` or
    /// `source`.
    pub fn parse(s: &str) -> Result<Balance, String> {
        Ok(match s {
            "roundrobin" => Balance::RoundRobin,
            "static-rr" => Balance::StaticRr,
            "leastconn" => Balance::LeastConn,
            "first" => Balance::First,
            "source" => Balance::Source,
            "random" => Balance::Random {
                draws: Balance::DEFAULT_DRAWS,
            },
            _ => match s.strip_prefix("random(") {
                Some(rest) => Balance::Random {
                    draws: random_draws(rest)?,
                },
                None => return Err(format!("unknown balance algorithm '{s}'")),
            },
        })
    }

    /// HAProxy's default `random` draws.
    pub const DEFAULT_DRAWS: u32 = 2;
}

/// The draws of `random(<draws>)`, from what follows `random(`, read as HAProxy's
/// `backend_parse_balance` reads it (its messages too).
fn random_draws(rest: &str) -> Result<u32, String> {
    if rest.starts_with(')') {
        return Ok(Balance::DEFAULT_DRAWS);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = rest[..digits].parse().unwrap_or(0);
    match rest[digits..].chars().next() {
        Some(')') => {}
        Some(c) => {
            return Err(format!(
                "random : unexpected character '{c}' after argument."
            ));
        }
        None => return Err("random : missing closing parenthesis.".into()),
    }
    if n < 1 {
        return Err("random : number of draws must be at least 1.".into());
    }
    if n > u64::from(lb_common::MAX_DRAWS) {
        return Err(format!(
            "random : lb draws at most {} servers.",
            lb_common::MAX_DRAWS
        ));
    }
    Ok(n as u32)
}

/// HAProxy's `hash-type`: how hashing algorithms map hashes to servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashType {
    /// HAProxy's default. lb has no map-based hashing: `balance source` hashes consistently
    /// whatever this says, and `roundrobin` stays round robin.
    #[default]
    MapBased,
    /// A Maglev table (`lb_common::maglev`): a server that goes or comes moves only its own
    /// share of the clients. With `balance roundrobin` (lb's reading; HAProxy ignores
    /// hash-type there) each connection's 5-tuple is hashed, so several lb nodes pick the
    /// same server for a connection: roundrobin's cursor cannot be shared between nodes.
    Consistent,
}

impl HashType {
    pub fn name(self) -> &'static str {
        match self {
            HashType::MapBased => "map-based",
            HashType::Consistent => "consistent",
        }
    }
}

impl Backend {
    /// Whether new flows are hashed into a Maglev table rather than taken in turn.
    pub fn hashes(&self) -> bool {
        // HAProxy ignores `hash-type` for the algorithms that weigh load; lb reads it for
        // round robin, whose cursor several nodes could not share.
        self.balance == Balance::Source
            || (self.hash_type == HashType::Consistent && self.balance == Balance::RoundRobin)
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub enum CheckKind {
    /// Connect only (HAProxy's default without `option httpchk`).
    #[default]
    Tcp,
    Http(HttpCheck),
    /// `option tcp-check` with `tcp-check` rules, or one of HAProxy's protocol checks built
    /// on them (`option redis-check`, `mysql-check`...).
    Rules(TcpCheck),
}

/// A check made of `tcp-check` rules: the user's, or a protocol's (HAProxy builds those from
/// the same rules; `health::tcpcheck` does the same from these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCheck {
    /// `option tcp-check` and its `tcp-check connect|send|expect|comment` lines.
    Generic(Vec<TcpRule>),
    /// `option redis-check`: PING, expect `+PONG`.
    Redis,
    /// `option mysql-check [user U [post-41|pre-41]]`: the server's greeting, and with a user
    /// a login attempt and its answer.
    Mysql { user: Option<String>, pre41: bool },
    /// `option pgsql-check user U`: a startup message, expect an authentication request.
    Pgsql { user: String },
    /// `option smtpchk [EHLO|HELO domain]`: the greeting, then `HELO localhost` by default.
    Smtp { hello: String },
    /// `option ldap-check`: an anonymous bind.
    Ldap,
    /// `option ssl-hello-chk`: an SSLv3 client hello, expect a handshake or alert record.
    SslHello,
}

impl TcpCheck {
    /// HAProxy's option name.
    pub fn option(&self) -> &'static str {
        match self {
            TcpCheck::Generic(_) => "tcp-check",
            TcpCheck::Redis => "redis-check",
            TcpCheck::Mysql { .. } => "mysql-check",
            TcpCheck::Pgsql { .. } => "pgsql-check",
            TcpCheck::Smtp { .. } => "smtpchk",
            TcpCheck::Ldap => "ldap-check",
            TcpCheck::SslHello => "ssl-hello-chk",
        }
    }
}

/// One `tcp-check` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpRule {
    /// `tcp-check connect [port N] [ssl] [sni S] [linger] [comment C]`.
    Connect {
        port: Option<u16>,
        ssl: bool,
        sni: Option<String>,
        comment: Option<String>,
    },
    /// `tcp-check send STRING` / `send-binary HEX`.
    Send {
        data: Vec<u8>,
        comment: Option<String>,
    },
    Expect(TcpExpect),
    /// `tcp-check comment C`: names the rules after it in messages.
    Comment(String),
}

/// `tcp-check expect [min-recv N] [ok-status S] [error-status S] [tout-status S]
/// [on-success TEXT] [on-error TEXT] [comment C] [!] MATCH PATTERN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpExpect {
    pub pattern: TcpPattern,
    pub negate: bool,
    /// Bytes to wait for before judging; `None` waits for a match until the answer ends.
    pub min_recv: Option<u32>,
    /// HAProxy's status names (`L7OK`, `L7STS`...).
    pub ok_status: Option<String>,
    pub error_status: Option<String>,
    pub tout_status: Option<String>,
    /// The `info` of a check that passes or fails here (literal text).
    pub on_success: Option<String>,
    pub on_error: Option<String>,
    pub comment: Option<String>,
}

impl TcpExpect {
    /// An expect rule with `pattern` and none of the options.
    pub fn new(pattern: TcpPattern) -> TcpExpect {
        TcpExpect {
            pattern,
            negate: false,
            min_recv: None,
            ok_status: None,
            error_status: None,
            tout_status: None,
            on_success: None,
            on_error: None,
            comment: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpPattern {
    /// `string`: the answer contains these bytes.
    String(String),
    /// `rstring`: the answer matches the regular expression.
    Regex(String),
    /// `binary`: the answer contains these bytes (written in hex).
    Binary(Vec<u8>),
    /// `rbinary`: the answer's hex dump (upper case) matches the regular expression.
    BinaryRegex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub uri: String,
    pub version: String,
    /// Header lines exactly as configured (`User-agent: Proxy-Check`).
    pub headers: Vec<String>,
    pub body: String,
    /// What the response must show (`http-check expect`).
    pub expect: HttpExpect,
    /// `http-check connect`: where and how to connect instead of the server's check
    /// settings.
    pub connect: Option<CheckConnect>,
    /// `http-check disable-on-404`: a 404 from a server that is UP puts it in NOLB (it keeps
    /// its flows and takes no new ones) until a check passes again.
    pub disable_on_404: bool,
}

impl Default for HttpCheck {
    fn default() -> Self {
        // HAProxy's request when `option httpchk` has no argument.
        HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            version: "HTTP/1.0".into(),
            headers: Vec::new(),
            body: String::new(),
            expect: HttpExpect::default(),
            connect: None,
            disable_on_404: false,
        }
    }
}

impl HttpCheck {
    /// Replaces the parts of the request line that are given (both front ends let a
    /// configuration change the method, URI or version alone).
    pub fn set_request_line(
        &mut self,
        method: Option<&str>,
        uri: Option<&str>,
        version: Option<&str>,
    ) {
        for (part, new) in [
            (&mut self.method, method),
            (&mut self.uri, uri),
            (&mut self.version, version),
        ] {
            if let Some(v) = new {
                *part = v.to_string();
            }
        }
    }
}

/// `http-check expect`: one match on the response (HAProxy's `status`, `rstatus`, `string`,
/// `rstring`), possibly negated with `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpExpect {
    /// The status code is in one of these ranges; empty means HAProxy's default, 200-399. A
    /// negated `status` is stored as the complement (100-599 outside the codes).
    Status(Vec<(u16, u16)>),
    /// The status code, as its three digits, matches the regular expression.
    StatusRegex { pattern: String, negate: bool },
    /// The body contains the text.
    Body { text: String, negate: bool },
    /// The body matches the regular expression.
    BodyRegex { pattern: String, negate: bool },
}

impl Default for HttpExpect {
    fn default() -> Self {
        HttpExpect::Status(Vec::new())
    }
}

impl HttpExpect {
    /// The match reads the body, not just the status line.
    pub fn needs_body(&self) -> bool {
        matches!(self, HttpExpect::Body { .. } | HttpExpect::BodyRegex { .. })
    }

    /// The regular expression it holds, if any.
    pub fn pattern(&self) -> Option<&str> {
        match self {
            HttpExpect::StatusRegex { pattern, .. } | HttpExpect::BodyRegex { pattern, .. } => {
                Some(pattern)
            }
            _ => None,
        }
    }
}

/// `http-check connect [port N] [ssl] [sni NAME]`: the check's connection, instead of the
/// server's `port`, `check-ssl` and `check-sni` (HAProxy ignores those once a connect rule is
/// written).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckConnect {
    /// Unset: the server's check `port`, else its own port.
    pub port: Option<u16>,
    pub ssl: bool,
    pub sni: Option<String>,
}

/// How a TLS health check treats the server's certificate (`verify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verify {
    /// The chain must lead to `ca-file`, and match the SNI when one is sent.
    #[default]
    Required,
    /// Any certificate is accepted.
    None,
}

impl Verify {
    pub fn name(self) -> &'static str {
        match self {
            Verify::Required => "required",
            Verify::None => "none",
        }
    }
}

/// How health checks speak TLS to a server: `check-ssl`, `check-sni`, `verify`, `ca-file`.
/// (lb never speaks TLS on the traffic itself, so these only concern the checks.)
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckTls {
    /// `check-ssl`: the checks run over TLS.
    pub ssl: bool,
    /// `check-sni`: the name sent in the handshake, and then the name the certificate must
    /// carry. Unset: no SNI, and (as HAProxy) no name check.
    pub sni: Option<String>,
    /// `verify`; unset: the global `ssl-server-verify`.
    pub verify: Option<Verify>,
    /// `ca-file`: the certificates a verified chain must lead to.
    pub ca_file: Option<PathBuf>,
}

/// `agent-check` and its settings (HAProxy's agent protocol: the server's agent answers a
/// line such as `up 75%` or `drain`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AgentCheck {
    pub enabled: bool,
    /// `agent-port`; unset: the server's check `port`.
    pub port: Option<u16>,
    /// `agent-inter`; unset: the server's `inter`.
    pub inter: Option<Duration>,
    /// `agent-send`: written once connected; nothing when empty.
    pub send: String,
    /// `agent-addr`; unset: the check address.
    pub addr: Option<IpAddr>,
}

/// A backend's timers, as HAProxy names them. The flow ones (`connect`, `client`, `server`,
/// `tunnel`, `client-fin`, `server-fin`) become the data plane's per-state idle timeouts
/// (`lb_common::conntrack::Timeouts`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    /// Replaces `client`/`server` once a connection is established (long-lived tunnels).
    pub tunnel: Option<Duration>,
    /// Half-closed connections (one side sent a FIN).
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
    /// `timeout check`: unset means `inter` is the check timeout.
    pub check: Option<Duration>,
    pub queue: Option<Duration>,
}

impl Timeouts {
    /// The data plane's timeouts for these timers.
    pub fn flows(&self) -> lb_common::Timeouts {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        lb_common::Timeouts::from_ms(lb_common::conntrack::TimeoutsMs {
            connect: ms(self.connect),
            client: ms(self.client),
            server: ms(self.server),
            tunnel: ms(self.tunnel),
            client_fin: ms(self.client_fin),
            server_fin: ms(self.server_fin),
        })
    }
}

/// What happens to a server's established flows when it goes DOWN (`on-marked-down`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnMarkedDown {
    /// They stay (HAProxy's default): a server failing its checks often still serves them.
    #[default]
    Keep,
    /// `shutdown-sessions`: they are ended.
    ShutdownSessions,
}

/// What happens to backup servers' flows when this (non-backup) server comes UP
/// (`on-marked-up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnMarkedUp {
    #[default]
    Keep,
    /// `shutdown-backup-sessions`: the backup servers' flows are ended.
    ShutdownBackupSessions,
}

/// `observe`: what traffic tells about a server's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Observe {
    #[default]
    None,
    /// `layer4`: connections the server refuses count as errors, accepted ones clear them.
    Layer4,
}

/// `on-error`: what `error-limit` consecutive errors do (HAProxy's default `fail-check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Checks go to `fastinter`.
    FastInter,
    /// As one failed check.
    #[default]
    FailCheck,
    /// As one failed check that leaves one more before DOWN.
    SuddenDeath,
    /// The server is marked DOWN at once.
    MarkDown,
}

impl OnError {
    pub const ALL: &'static [(&'static str, OnError)] = &[
        ("fastinter", OnError::FastInter),
        ("fail-check", OnError::FailCheck),
        ("sudden-death", OnError::SuddenDeath),
        ("mark-down", OnError::MarkDown),
    ];

    pub fn name(self) -> &'static str {
        OnError::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("fail-check", |(n, _)| n)
    }
}

/// `load-server-state-from-file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LoadState {
    #[default]
    None,
    /// From the global `server-state-file`.
    Global,
    /// From the backend's own file (`server-state-file-name`, else the backend's name) in
    /// `server-state-base`.
    Local,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub name: String,
    pub mode: Mode,
    pub balance: Balance,
    pub hash_type: HashType,
    /// Entries of the Maglev table when the backend hashes (a prime, see
    /// `lb_common::maglev::valid_size`).
    pub hash_table_size: u32,
    pub nat: NatMode,
    pub on_empty: OnEmpty,
    pub check: CheckKind,
    pub redispatch: bool,
    pub log_health_checks: bool,
    pub allbackups: bool,
    pub retries: u32,
    pub timeouts: Timeouts,
    /// `load-server-state-from-file`, and the local file's name (`server-state-file-name`).
    pub load_state: LoadState,
    pub state_file_name: Option<String>,
    pub servers: Vec<Server>,
    pub origin: Origin,
}

impl Backend {
    /// Whether some server is of family `f`: a pool of that family has servers.
    pub fn has_family(&self, f: Family) -> bool {
        self.servers.iter().any(|s| s.family() == f)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    /// With `fqdn`, unspecified until the name is resolved (see [`super::resolve`]).
    pub addr: IpAddr,
    /// The host name the address was given as (HAProxy's `srv_fqdn`).
    pub fqdn: Option<String>,
    /// `init-addr`: where a host name's address comes from at start-up, tried in order.
    pub init_addr: Vec<InitAddr>,
    /// Re-resolution while running (`resolvers`, `resolve-prefer`, `resolve-net`).
    pub dns: ServerDns,
    /// 0: none given, the client's destination port is used (HAProxy's rule).
    pub port: u16,
    pub check: bool,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub fall: u32,
    pub rise: u32,
    /// Health checks go to this port/address instead of the server's.
    pub check_port: Option<u16>,
    pub check_addr: Option<IpAddr>,
    /// TLS for the health checks.
    pub check_tls: CheckTls,
    pub agent: AgentCheck,
    /// 0..=256; 0 takes no new flows (DRAIN).
    pub weight: u32,
    pub backup: bool,
    /// Starts in maintenance (`disabled`).
    pub disabled: bool,
    /// At most this many active flows; a new flow beyond goes to another server with room.
    pub maxconn: Option<u32>,
    /// `slowstart`: after coming back UP, the weight (and `maxconn`) ramp up over this.
    pub slowstart: Option<Duration>,
    pub on_marked_down: OnMarkedDown,
    pub on_marked_up: OnMarkedUp,
    pub observe: Observe,
    pub on_error: OnError,
    /// `error-limit`: consecutive errors that trigger `on_error` (HAProxy's default 10).
    pub error_limit: u32,
    pub origin: Origin,
}

/// One `init-addr` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitAddr {
    /// The address recorded in the server state file.
    Last,
    /// The system's resolver (getaddrinfo: /etc/hosts, then DNS).
    Libc,
    /// No address: the server starts in maintenance.
    None,
    Ip(IpAddr),
}

impl InitAddr {
    /// HAProxy's default, `last,libc`.
    pub const DEFAULT: [InitAddr; 2] = [InitAddr::Last, InitAddr::Libc];

    /// `last,libc,none,10.0.0.1`.
    pub fn parse_list(s: &str) -> Result<Vec<InitAddr>, String> {
        s.split(',')
            .map(|m| match m {
                "last" => Ok(InitAddr::Last),
                "libc" => Ok(InitAddr::Libc),
                "none" => Ok(InitAddr::None),
                other => other.parse().map(InitAddr::Ip).map_err(|_| {
                    format!("'{other}' is not a valid init-addr method ('last', 'libc', 'none' or an IP address)")
                }),
            })
            .collect()
    }

    pub fn list_to_string(l: &[InitAddr]) -> String {
        let names: Vec<String> = l
            .iter()
            .map(|m| match m {
                InitAddr::Last => "last".into(),
                InitAddr::Libc => "libc".into(),
                InitAddr::None => "none".into(),
                InitAddr::Ip(a) => a.to_string(),
            })
            .collect();
        names.join(",")
    }
}

impl Server {
    /// The family of its address (a host name's, once resolved).
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    pub const DEFAULT_INTER: Duration = Duration::from_millis(2000);
    pub const DEFAULT_FALL: u32 = 3;
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_WEIGHT: u32 = 1;
    pub const MAX_WEIGHT: u32 = 256;
    pub const DEFAULT_ERROR_LIMIT: u32 = 10;

    /// A server with HAProxy's defaults.
    pub fn new(name: &str, addr: IpAddr, port: u16, origin: Origin) -> Server {
        Server {
            name: name.into(),
            addr,
            fqdn: None,
            init_addr: InitAddr::DEFAULT.to_vec(),
            dns: ServerDns::default(),
            port,
            check: false,
            inter: Self::DEFAULT_INTER,
            fastinter: None,
            downinter: None,
            fall: Self::DEFAULT_FALL,
            rise: Self::DEFAULT_RISE,
            check_port: None,
            check_addr: None,
            check_tls: CheckTls::default(),
            agent: AgentCheck::default(),
            weight: Self::DEFAULT_WEIGHT,
            backup: false,
            disabled: false,
            maxconn: None,
            slowstart: None,
            on_marked_down: OnMarkedDown::Keep,
            on_marked_up: OnMarkedUp::Keep,
            observe: Observe::None,
            on_error: OnError::FailCheck,
            error_limit: Self::DEFAULT_ERROR_LIMIT,
            origin,
        }
    }
}
