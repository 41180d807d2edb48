//! What the parser keeps between lines: the section being read, the defaults sections,
//! the proxies so far, and the environment `"$VAR"` sees.
use std::{collections::HashMap, net::Ipv4Addr};

use super::{checks::CheckCfg, diags::Diags, stats::StatsCfg};
use crate::config::{
    access::{AccessRule, Test},
    model::*,
};

/// A proxy section's kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }
    /// Has a frontend side (HAProxy's `PR_CAP_FE`).
    pub fn fe(self) -> bool {
        self != Kind::Backend
    }
    /// Has a backend side (HAProxy's `PR_CAP_BE`).
    pub fn be(self) -> bool {
        self != Kind::Frontend
    }
}

/// A keyword's `no` / `default` prefix (HAProxy's `KWM_*`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kwm {
    Std,
    No,
    Default,
}

/// The section lines are read into.
pub(super) enum Sect {
    None,
    Global,
    Defaults(usize),
    Proxy(usize),
    /// A `resolvers` section, by its index in `global.resolvers`.
    Resolvers(usize),
    /// A section lb skips (`userlist`, `peers`, ...).
    Other,
}

/// What a proxy inherits from its defaults section (not lb_common's `Settings`).
#[derive(Clone, Debug)]
pub(super) struct ProxySettings {
    pub mode: Mode,
    pub balance: Balance,
    pub hash_type: HashType,
    pub nat: NatMode,
    pub redispatch: bool,
    pub log_health_checks: bool,
    pub tcplog: bool,
    /// `option dontlognull`, `dontlog-normal`, `log-separate-errors`, where written.
    pub log_filters: Vec<(String, Origin)>,
    pub allbackups: bool,
    pub retries: u32,
    pub timeouts: Timeouts,
    pub load_state: LoadState,
    pub state_file_name: Option<String>,
    /// `default-server` values, as a server template.
    pub default_server: Server,
    pub check: CheckCfg,
    /// `stats ...` and the prometheus exporter.
    pub stats: StatsCfg,
    /// `default_backend`, and the line that named it.
    pub default_backend: Option<(String, Origin)>,
    /// `default_backend` was written in this section (not inherited).
    pub default_backend_own: bool,
    /// The first `use_backend` without a condition: it takes every connection, before any
    /// `default_backend`.
    pub use_backend: Option<(String, Origin)>,
    /// Named ACLs (`acl NAME CRITERION VALUES`), one entry per line.
    pub acls: Vec<NamedAcl>,
    /// `tcp-request connection` rules, in order.
    pub access: Vec<AccessRule>,
}

/// One `acl` line: its test, or why lb cannot evaluate it (said where a rule uses it).
#[derive(Clone, Debug)]
pub(super) struct NamedAcl {
    pub name: String,
    pub test: Result<Test, String>,
    pub origin: Origin,
    /// A rule reads it (an ACL nothing reads gets a warning).
    pub used: std::cell::Cell<bool>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            mode: Mode::Tcp,
            balance: Balance::RoundRobin,
            hash_type: HashType::MapBased,
            nat: NatMode::FullNat,
            redispatch: false,
            log_health_checks: false,
            tcplog: false,
            log_filters: Vec::new(),
            allbackups: false,
            retries: 3,
            timeouts: Timeouts::default(),
            load_state: LoadState::None,
            state_file_name: None,
            default_server: Server::new("", Ipv4Addr::UNSPECIFIED.into(), 0, Origin::default()),
            check: CheckCfg::default(),
            stats: StatsCfg::default(),
            default_backend: None,
            default_backend_own: false,
            use_backend: None,
            acls: Vec::new(),
            access: Vec::new(),
        }
    }
}

/// A `frontend`, `backend` or `listen` section as read so far.
#[derive(Debug)]
pub(super) struct Proxy {
    pub kind: Kind,
    pub name: String,
    pub origin: Origin,
    pub s: ProxySettings,
    pub binds: Vec<Bind>,
    pub servers: Vec<Server>,
}

/// Environment seen by `"$VAR"`: the process environment, changed by `setenv` & co in
/// `global` as HAProxy does while it reads the file.
#[derive(Default)]
pub(super) struct Env {
    pub set: HashMap<String, Option<String>>,
    /// After `resetenv`: only these names of the process environment remain.
    pub reset_keep: Option<Vec<String>>,
}

impl Env {
    pub fn get(&self, name: &str) -> Option<String> {
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

pub(super) struct Parser {
    pub d: Diags,
    pub env: Env,
    pub sect: Sect,
    /// Name of the current section for `${.SECTION}`.
    pub sect_name: String,
    pub global: Global,
    /// First line of settings HAProxy refuses to set twice (`pidfile`, ...).
    pub global_once: HashMap<&'static str, usize>,
    /// `defaults` sections: name (may be empty), settings, where it starts.
    pub defaults: Vec<(String, ProxySettings, Origin)>,
    pub last_defaults: Option<usize>,
    pub proxies: Vec<Proxy>,
    /// Listening addresses in the file so far (see `MAX_TOTAL_BINDS`).
    pub total_binds: usize,
    /// Where the current section starts, and the alerts counted before it.
    pub sect_start: (usize, usize),
    /// Line ranges of the sections that had an alert.
    pub damaged: Vec<std::ops::RangeInclusive<usize>>,
}

impl Parser {
    /// A section ends before line `next`: it is damaged if it had an alert.
    pub fn close_section(&mut self, next: usize) {
        let (start, fatal) = self.sect_start;
        if self.d.fatal > fatal && next > start {
            self.damaged.push(start..=next - 1);
        }
        self.sect_start = (next, self.d.fatal);
    }

    pub fn new(file: &str) -> Parser {
        Parser {
            d: Diags::new(file),
            env: Env::default(),
            sect: Sect::None,
            sect_name: String::new(),
            global: Global::default(),
            global_once: HashMap::new(),
            defaults: Vec::new(),
            last_defaults: None,
            proxies: Vec::new(),
            total_binds: 0,
            sect_start: (1, 0),
            damaged: Vec::new(),
        }
    }
}
