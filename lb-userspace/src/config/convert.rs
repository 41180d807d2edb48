//! `lb convert`: the model written back as native TOML, which [`super::native::parse`] reads
//! into the same model (origins aside). Every backend is written in full, without a
//! `[defaults]` table, so nothing depends on inheritance.
use std::{fmt::Write, time::Duration};

use super::model::*;

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table key: bare when TOML allows it, quoted otherwise.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        q(s)
    }
}

fn path(p: &std::path::Path) -> String {
    q(&p.to_string_lossy())
}

/// A duration in HAProxy's units, exact: the largest unit that divides it.
pub fn duration(d: Duration) -> String {
    let us = d.as_micros();
    const UNITS: &[(u128, &str)] = &[
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "m"),
        (1_000_000, "s"),
        (1_000, "ms"),
    ];
    if us == 0 {
        return "0".into();
    }
    for &(per, unit) in UNITS {
        if us.is_multiple_of(per) {
            return format!("{}{unit}", us / per);
        }
    }
    format!("{us}us")
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Tcp => "tcp",
        Mode::Http => "http",
    }
}

fn level(l: ApiLevel) -> &'static str {
    match l {
        ApiLevel::User => "user",
        ApiLevel::Operator => "operator",
        ApiLevel::Admin => "admin",
    }
}

fn stats_socket(s: &StatsSocket) -> String {
    let mut o = match &s.addr {
        ApiAddr::Unix(p) => format!("{{ path = {}", path(p)),
        ApiAddr::Tcp(a) => format!("{{ address = {}", q(&a.to_string())),
    };
    if let Some(m) = s.mode {
        let _ = write!(o, ", mode = {}", q(&format!("{m:o}")));
    }
    let _ = write!(o, ", level = {} }}", q(level(s.level)));
    o
}

fn stats_http(h: &StatsHttp) -> String {
    let mut o = format!(
        "{{ name = {}, bind = {}",
        q(&h.name),
        list(&h.binds, |b| q(&b.to_string()))
    );
    if let Some(u) = &h.uri {
        let _ = write!(o, ", uri = {}", q(u));
    }
    if !h.auth.is_empty() {
        let _ = write!(
            o,
            ", auth = {}",
            list(&h.auth, |(u, p)| q(&format!("{u}:{p}")))
        );
    }
    let _ = write!(o, ", realm = {}", q(&h.realm));
    if let Some(r) = h.refresh {
        let _ = write!(o, ", refresh = {}", q(&duration(r)));
    }
    match &h.metrics {
        Some(PathMatch::Exact(p)) => {
            let _ = write!(o, ", metrics = {}", q(p));
        }
        Some(PathMatch::Prefix(p)) => {
            let _ = write!(o, ", metrics_prefix = {}", q(p));
        }
        None => {}
    }
    o.push_str(" }");
    o
}

fn log_target(l: &LogTarget) -> String {
    let target = match &l.dest {
        LogDest::Udp(a) => a.to_string(),
        LogDest::Unix(p) => p.to_string_lossy().into_owned(),
        LogDest::Stderr => "stderr".into(),
        LogDest::Stdout => "stdout".into(),
    };
    let mut s = format!(
        "{{ target = {}, facility = {}, level = {}",
        q(&target),
        q(l.facility.name()),
        q(l.max_level.name())
    );
    if let Some(m) = l.min_level {
        let _ = write!(s, ", minlevel = {}", q(m.name()));
    }
    s.push_str(" }");
    s
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let v: Vec<String> = items.iter().map(f).collect();
    format!("[{}]", v.join(", "))
}

fn global(out: &mut String, g: &Global) {
    let d = Global::default();
    out.push_str("[global]\n");
    let _ = writeln!(out, "instance = {}", q(&g.instance));
    if !g.logs.is_empty() {
        out.push_str("log = [\n");
        for l in &g.logs {
            let _ = writeln!(out, "  {},", log_target(l));
        }
        out.push_str("]\n");
    }
    let _ = writeln!(out, "log_tag = {}", q(&g.log_tag));
    let sockets: Vec<String> = g.stats_sockets.iter().map(stats_socket).collect();
    match sockets.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "stats_socket = {one}");
        }
        many => {
            let _ = writeln!(out, "stats_socket = [{}]", many.join(", "));
        }
    }
    if let Some(m) = g.maxconn {
        let _ = writeln!(out, "maxconn = {m}");
    }
    if let Some(p) = &g.pidfile {
        let _ = writeln!(out, "pidfile = {}", path(p));
    }
    if g.daemon {
        out.push_str("daemon = true\n");
    }
    if let Some(u) = &g.user {
        let _ = writeln!(out, "user = {}", q(u));
    }
    if let Some(gr) = &g.group {
        let _ = writeln!(out, "group = {}", q(gr));
    }
    if let Some(c) = &g.chroot {
        let _ = writeln!(out, "chroot = {}", path(c));
    }
    if let Some(t) = g.announce_table {
        let _ = writeln!(out, "announce_table = {t}");
    }
    if g.conntrack_entries != d.conntrack_entries {
        let _ = writeln!(out, "conntrack_entries = {}", g.conntrack_entries);
    }
    if g.halfopen_entries != d.halfopen_entries {
        let _ = writeln!(out, "halfopen_entries = {}", g.halfopen_entries);
    }
    if let Some(f) = &g.server_state_file {
        let _ = writeln!(out, "server_state_file = {}", path(f));
    }
    if let Some(b) = &g.server_state_base {
        let _ = writeln!(out, "server_state_base = {}", path(b));
    }
    if g.snat_ports != d.snat_ports {
        let _ = writeln!(
            out,
            "snat_ports = {}",
            q(&format!("{}-{}", g.snat_ports.0, g.snat_ports.1))
        );
    }
    if !g.interfaces.is_empty() {
        let _ = writeln!(out, "interfaces = {}", list(&g.interfaces, |i| q(i)));
    }
    let simple = |h: &StatsHttp| match h.binds.as_slice() {
        [a] if *h == StatsHttp::simple(*a, h.origin.clone()) => Some(*a),
        _ => None,
    };
    match g.stats_http.as_slice() {
        [] => {}
        [one] if simple(one).is_some() => {
            let _ = writeln!(out, "stats_http = {}", q(&one.binds[0].to_string()));
        }
        many => {
            let tables: Vec<String> = many.iter().map(stats_http).collect();
            let _ = writeln!(out, "stats_http = [{}]", tables.join(", "));
        }
    }
    if g.ssl_server_verify != d.ssl_server_verify {
        let _ = writeln!(out, "ssl_server_verify = {}", q(g.ssl_server_verify.name()));
    }
}

fn server(s: &Server) -> String {
    // An IPv6 address is bracketed: unbracketed, its last group would read as the port.
    let host = s.fqdn.clone().unwrap_or_else(|| match s.addr {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    });
    let mut o = format!(
        "{{ name = {}, address = {}, check = {}, inter = {}",
        q(&s.name),
        q(&match s.port {
            0 => host,
            p => format!("{host}:{p}"),
        }),
        s.check,
        q(&duration(s.inter))
    );
    if s.init_addr != InitAddr::DEFAULT {
        let _ = write!(
            o,
            ", init_addr = {}",
            q(&InitAddr::list_to_string(&s.init_addr))
        );
    }
    // Read by the start-up resolution too, not only by resolvers.
    if s.dns.prefer == Family::V6 {
        let _ = write!(o, ", resolve_prefer = \"ipv6\"");
    }
    if let Some(r) = &s.dns.resolvers {
        let _ = write!(o, ", resolvers = {}", q(r));
        if !s.dns.nets.is_empty() {
            let nets: Vec<String> = s.dns.nets.iter().map(|(a, l)| format!("{a}/{l}")).collect();
            let _ = write!(o, ", resolve_net = {}", q(&nets.join(",")));
        }
    }
    if let Some(t) = s.fastinter {
        let _ = write!(o, ", fastinter = {}", q(&duration(t)));
    }
    if let Some(t) = s.downinter {
        let _ = write!(o, ", downinter = {}", q(&duration(t)));
    }
    let _ = write!(o, ", fall = {}, rise = {}", s.fall, s.rise);
    if let Some(p) = s.check_port {
        let _ = write!(o, ", port = {p}");
    }
    if let Some(a) = s.check_addr {
        let _ = write!(o, ", addr = {}", q(&a.to_string()));
    }
    check_tls(&mut o, &s.check_tls);
    agent(&mut o, &s.agent);
    let _ = write!(o, ", weight = {}", s.weight);
    if s.backup {
        o.push_str(", backup = true");
    }
    if s.disabled {
        o.push_str(", disabled = true");
    }
    if let Some(m) = s.maxconn {
        let _ = write!(o, ", maxconn = {m}");
    }
    if let Some(t) = s.slowstart {
        let _ = write!(o, ", slowstart = {}", q(&duration(t)));
    }
    if s.observe == Observe::Layer4 {
        o.push_str(", observe = \"layer4\"");
    }
    if s.on_error != OnError::default() {
        let _ = write!(o, ", on_error = {}", q(s.on_error.name()));
    }
    if s.error_limit != Server::DEFAULT_ERROR_LIMIT {
        let _ = write!(o, ", error_limit = {}", s.error_limit);
    }
    if s.on_marked_down == OnMarkedDown::ShutdownSessions {
        o.push_str(", on_marked_down = \"shutdown-sessions\"");
    }
    if s.on_marked_up == OnMarkedUp::ShutdownBackupSessions {
        o.push_str(", on_marked_up = \"shutdown-backup-sessions\"");
    }
    o.push_str(" }");
    o
}

/// `check_ssl`, `check_sni`, `verify`, `ca_file`, when set.
fn check_tls(o: &mut String, t: &CheckTls) {
    if t.ssl {
        o.push_str(", check_ssl = true");
    }
    if let Some(sni) = &t.sni {
        let _ = write!(o, ", check_sni = {}", q(sni));
    }
    if let Some(v) = t.verify {
        let _ = write!(o, ", verify = {}", q(v.name()));
    }
    if let Some(f) = &t.ca_file {
        let _ = write!(o, ", ca_file = {}", path(f));
    }
}

/// `agent_check` and its settings, when set.
fn agent(o: &mut String, a: &AgentCheck) {
    if a.enabled {
        o.push_str(", agent_check = true");
    }
    if let Some(p) = a.port {
        let _ = write!(o, ", agent_port = {p}");
    }
    if let Some(t) = a.inter {
        let _ = write!(o, ", agent_inter = {}", q(&duration(t)));
    }
    if !a.send.is_empty() {
        let _ = write!(o, ", agent_send = {}", q(&a.send));
    }
    if let Some(ad) = a.addr {
        let _ = write!(o, ", agent_addr = {}", q(&ad.to_string()));
    }
}

/// The `expect_*` key of an `http_check` (nothing for the default).
fn http_expect(out: &mut String, e: &HttpExpect) {
    let (key, value, negate) = match e {
        HttpExpect::Status(r) if r.is_empty() => return,
        HttpExpect::Status(r) => ("expect_status", status_ranges(r), false),
        HttpExpect::StatusRegex { pattern, negate } => ("expect_rstatus", pattern.clone(), *negate),
        HttpExpect::Body { text, negate } => ("expect_string", text.clone(), *negate),
        HttpExpect::BodyRegex { pattern, negate } => ("expect_rstring", pattern.clone(), *negate),
    };
    let _ = write!(out, ", {key} = {}", q(&value));
    if negate {
        out.push_str(", expect_negate = true");
    }
}

fn status_ranges(r: &[(u16, u16)]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(",")
}

fn backend(out: &mut String, b: &Backend) {
    let _ = writeln!(out, "\n[backend.{}]", key(&b.name));
    let _ = writeln!(out, "mode = {}", q(mode(b.mode)));
    let balance = match b.balance {
        Balance::Random { draws } if draws != Balance::DEFAULT_DRAWS => {
            format!("random({draws})")
        }
        other => other.name().to_string(),
    };
    let _ = writeln!(out, "balance = {}", q(&balance));
    if b.hash_type != HashType::default() {
        let _ = writeln!(out, "hash_type = {}", q(b.hash_type.name()));
    }
    if b.hash_table_size != lb_common::maglev::MAGLEV_DEFAULT_SIZE {
        let _ = writeln!(out, "hash_table_size = {}", b.hash_table_size);
    }
    let _ = writeln!(out, "nat = {}", q(b.nat.name()));
    let _ = writeln!(
        out,
        "on_empty = {}",
        q(match b.on_empty {
            OnEmpty::Drop => "drop",
            OnEmpty::Pass => "pass",
        })
    );
    let _ = writeln!(out, "redispatch = {}", b.redispatch);
    let _ = writeln!(out, "log_health_checks = {}", b.log_health_checks);
    let _ = writeln!(out, "allbackups = {}", b.allbackups);
    let _ = writeln!(out, "retries = {}", b.retries);
    let t = &b.timeouts;
    let timeouts: Vec<String> = [
        ("connect", t.connect),
        ("client", t.client),
        ("server", t.server),
        ("tunnel", t.tunnel),
        ("client_fin", t.client_fin),
        ("server_fin", t.server_fin),
        ("check", t.check),
        ("queue", t.queue),
    ]
    .iter()
    .filter_map(|(n, v)| v.map(|d| format!("{n} = {}", q(&duration(d)))))
    .collect();
    if !timeouts.is_empty() {
        let _ = writeln!(out, "timeout = {{ {} }}", timeouts.join(", "));
    }
    match b.load_state {
        LoadState::None => {}
        LoadState::Global => out.push_str("load_server_state = \"global\"\n"),
        LoadState::Local => out.push_str("load_server_state = \"local\"\n"),
    }
    if let Some(f) = &b.state_file_name {
        let _ = writeln!(out, "server_state_file_name = {}", q(f));
    }
    if let CheckKind::Http(h) = &b.check {
        let _ = write!(
            out,
            "http_check = {{ method = {}, uri = {}, version = {}, headers = {}",
            q(&h.method),
            q(&h.uri),
            q(&h.version),
            list(&h.headers, |x| q(x))
        );
        if !h.body.is_empty() {
            let _ = write!(out, ", body = {}", q(&h.body));
        }
        http_expect(out, &h.expect);
        if let Some(c) = &h.connect {
            out.push_str(", connect = {");
            let mut parts = Vec::new();
            if let Some(p) = c.port {
                parts.push(format!(" port = {p}"));
            }
            if c.ssl {
                parts.push(" ssl = true".to_string());
            }
            if let Some(sni) = &c.sni {
                parts.push(format!(" sni = {}", q(sni)));
            }
            out.push_str(&parts.join(","));
            out.push_str(" }");
        }
        if h.disable_on_404 {
            out.push_str(", disable_on_404 = true");
        }
        out.push_str(" }\n");
    }
    if let CheckKind::Rules(r) = &b.check {
        tcp_check(out, r);
    }
    if b.servers.is_empty() {
        out.push_str("server = []\n");
    } else {
        out.push_str("server = [\n");
        for s in &b.servers {
            let _ = writeln!(out, "  {},", server(s));
        }
        out.push_str("]\n");
    }
}

/// The model as native TOML.
pub fn to_toml(cfg: &Config) -> String {
    let mut out = String::from(
        "# Written by lb convert: the native form of the configuration, every setting explicit.\n\n",
    );
    global(&mut out, &cfg.global);
    for f in &cfg.frontends {
        let _ = writeln!(out, "\n[frontend.{}]", key(&f.name));
        let _ = writeln!(out, "mode = {}", q(mode(f.mode)));
        let _ = writeln!(out, "bind = {}", list(&f.binds, |b| q(&b.to_string())));
        let _ = writeln!(out, "default_backend = {}", q(&f.default_backend));
        let _ = writeln!(out, "tcplog = {}", f.tcplog);
        let _ = writeln!(
            out,
            "tcp_request_connection = {}",
            list(&f.access, |r| q(&r.to_string()))
        );
    }
    for b in &cfg.backends {
        backend(&mut out, b);
    }
    for r in &cfg.global.resolvers {
        resolvers(&mut out, r);
    }
    out
}

/// `[resolvers.NAME]`: the name servers (those `parse-resolv-conf` found included) and
/// every setting.
fn resolvers(out: &mut String, r: &Resolvers) {
    let _ = writeln!(out, "\n[resolvers.{}]", key(&r.name));
    let ns: Vec<String> = r
        .nameservers
        .iter()
        .map(|n| format!("{} = {}", key(&n.id), q(&n.addr.to_string())))
        .collect();
    let _ = writeln!(out, "nameservers = {{ {} }}", ns.join(", "));
    let _ = writeln!(out, "resolve_retries = {}", r.resolve_retries);
    let _ = writeln!(out, "accepted_payload_size = {}", r.accepted_payload_size);
    let _ = writeln!(
        out,
        "timeout = {{ resolve = {}, retry = {} }}",
        q(&duration(r.timeout_resolve)),
        q(&duration(r.timeout_retry))
    );
    let h = &r.hold;
    let _ = writeln!(
        out,
        "hold = {{ valid = {}, nx = {}, refused = {}, timeout = {}, other = {}, obsolete = {} }}",
        q(&duration(h.valid)),
        q(&duration(h.nx)),
        q(&duration(h.refused)),
        q(&duration(h.timeout)),
        q(&duration(h.other)),
        q(&duration(h.obsolete))
    );
}

/// `protocol_check = { ... }` or `tcp_check_rules = [ ... ]`.
fn tcp_check(out: &mut String, r: &TcpCheck) {
    let user = |u: &Option<String>| {
        u.as_ref()
            .map_or(String::new(), |u| format!(", user = {}", q(u)))
    };
    let proto = match r {
        TcpCheck::Generic(rules) => {
            let v: Vec<String> = rules.iter().map(tcp_rule).collect();
            let _ = writeln!(out, "tcp_check_rules = [\n  {},\n]", v.join(",\n  "));
            return;
        }
        TcpCheck::Redis => "check = \"redis\"".to_string(),
        TcpCheck::Ldap => "check = \"ldap\"".to_string(),
        TcpCheck::SslHello => "check = \"ssl-hello\"".to_string(),
        TcpCheck::Mysql { user: u, pre41 } => {
            format!("check = \"mysql\"{}, pre41 = {pre41}", user(u))
        }
        TcpCheck::Pgsql { user: u } => format!("check = \"pgsql\", user = {}", q(u)),
        TcpCheck::Smtp { hello } => format!("check = \"smtp\", hello = {}", q(hello)),
    };
    let _ = writeln!(out, "protocol_check = {{ {proto} }}");
}

fn tcp_rule(r: &TcpRule) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let comment = |c: &Option<String>| {
        c.as_ref()
            .map_or(String::new(), |c| format!(", comment = {}", q(c)))
    };
    match r {
        TcpRule::Comment(c) => format!("{{ comment = {} }}", q(c)),
        TcpRule::Connect {
            port,
            ssl,
            sni,
            comment: c,
        } => {
            let mut parts = Vec::new();
            if let Some(p) = port {
                parts.push(format!("port = {p}"));
            }
            parts.push(format!("ssl = {ssl}"));
            if let Some(s) = sni {
                parts.push(format!("sni = {}", q(s)));
            }
            format!("{{ connect = {{ {} }}{} }}", parts.join(", "), comment(c))
        }
        TcpRule::Send { data, comment: c } => match std::str::from_utf8(data) {
            Ok(text) => format!("{{ send = {}{} }}", q(text), comment(c)),
            Err(_) => format!("{{ send_binary = {}{} }}", q(&hex(data)), comment(c)),
        },
        TcpRule::Expect(e) => {
            let (kind, pattern) = match &e.pattern {
                TcpPattern::String(s) => ("string", s.clone()),
                TcpPattern::Regex(s) => ("rstring", s.clone()),
                TcpPattern::Binary(b) => ("binary", hex(b)),
                TcpPattern::BinaryRegex(s) => ("rbinary", s.clone()),
            };
            let mut o = format!("{{ expect = {}, pattern = {}", q(kind), q(&pattern));
            if e.negate {
                o.push_str(", negate = true");
            }
            if let Some(m) = e.min_recv {
                let _ = write!(o, ", min_recv = {m}");
            }
            for (k, v) in [
                ("ok_status", &e.ok_status),
                ("error_status", &e.error_status),
                ("tout_status", &e.tout_status),
                ("on_success", &e.on_success),
                ("on_error", &e.on_error),
            ] {
                if let Some(v) = v {
                    let _ = write!(o, ", {k} = {}", q(v));
                }
            }
            o.push_str(&comment(&e.comment));
            o.push_str(" }");
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact() {
        assert_eq!(duration(Duration::from_millis(3000)), "3s");
        assert_eq!(duration(Duration::from_secs(60)), "1m");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_micros(7)), "7us");
        assert_eq!(duration(Duration::from_secs(86400 * 2)), "2d");
        assert_eq!(duration(Duration::ZERO), "0");
        for d in ["3s", "1m", "1500ms", "7us", "2d", "0"] {
            assert_eq!(
                crate::config::units::duration(&duration(
                    crate::config::units::duration(d).expect("valid")
                )),
                crate::config::units::duration(d)
            );
        }
    }

    #[test]
    fn keys_and_strings() {
        assert_eq!(key("hoge"), "hoge");
        assert_eq!(key("a.b"), "\"a.b\"");
        assert_eq!(q("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
