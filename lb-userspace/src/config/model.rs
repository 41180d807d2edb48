//! The one internal model every config front end (native TOML, haproxy.cfg) produces.
//! Defaults are HAProxy's unless noted.
use std::{
    net::{Ipv4Addr, SocketAddr},
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
    pub stats_socket: Option<StatsSocket>,
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
    /// Prometheus metrics and the HTML stats page.
    pub stats_http: Option<SocketAddr>,
    /// `ssl-server-verify`: the `verify` of servers that do not say.
    pub ssl_server_verify: Verify,
    /// Several lb nodes: each VIP's `/32` is kept in this kernel routing table while it has a
    /// server UP, for the node's routing daemon (BIRD) to announce (`daemon::announce`).
    pub announce_table: Option<u32>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            instance: "lb".into(),
            logs: Vec::new(),
            log_tag: "lb".into(),
            stats_socket: None,
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
            stats_http: None,
            ssl_server_verify: Verify::Required,
            announce_table: None,
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

#[derive(Clone, Debug, PartialEq)]
pub struct StatsSocket {
    pub path: PathBuf,
    /// File mode, octal as written (`mode 600`).
    pub mode: Option<u32>,
    pub level: ApiLevel,
    pub origin: Origin,
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
    /// `option tcplog`: a line per new connection (client, frontend, backend/server).
    pub tcplog: bool,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bind {
    /// `None` is `*`: every local IPv4 address.
    pub addr: Option<Ipv4Addr>,
    pub port: u16,
    pub proto: Proto,
    pub origin: Origin,
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{a}:{}", self.port)?,
            None => write!(f, "*:{}", self.port)?,
        }
        if self.proto == Proto::Udp {
            write!(f, "/udp")?;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// A hash of the client's address: its connections all go to one server, the same
    /// server on every lb node.
    Source,
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

impl Balance {
    /// HAProxy's name (`balance`, `show stat`'s `algo`).
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::Source => "source",
        }
    }
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
        self.balance == Balance::Source || self.hash_type == HashType::Consistent
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub enum CheckKind {
    /// Connect only (HAProxy's default without `option httpchk`).
    #[default]
    Tcp,
    Http(HttpCheck),
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
    pub addr: Option<Ipv4Addr>,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub check: bool,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub fall: u32,
    pub rise: u32,
    /// Health checks go to this port/address instead of the server's.
    pub check_port: Option<u16>,
    pub check_addr: Option<Ipv4Addr>,
    /// TLS for the health checks.
    pub check_tls: CheckTls,
    pub agent: AgentCheck,
    /// 0..=256; 0 takes no new flows (DRAIN).
    pub weight: u32,
    pub backup: bool,
    /// Starts in maintenance (`disabled`).
    pub disabled: bool,
    pub maxconn: Option<u32>,
    pub on_marked_down: OnMarkedDown,
    pub on_marked_up: OnMarkedUp,
    pub origin: Origin,
}

impl Server {
    pub const DEFAULT_INTER: Duration = Duration::from_millis(2000);
    pub const DEFAULT_FALL: u32 = 3;
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_WEIGHT: u32 = 1;
    pub const MAX_WEIGHT: u32 = 256;

    /// A server with HAProxy's defaults.
    pub fn new(name: &str, addr: Ipv4Addr, port: u16, origin: Origin) -> Server {
        Server {
            name: name.into(),
            addr,
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
            on_marked_down: OnMarkedDown::Keep,
            on_marked_up: OnMarkedUp::Keep,
            origin,
        }
    }
}
