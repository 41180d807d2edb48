//! The parser as a whole: sections, inheritance, and messages across keywords.
use std::time::Duration;

use super::*;
use crate::config::model::*;

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
    assert!(c.frontends[0].binds[1].addr.is_ipv4() && c.frontends[0].binds[1].is_wildcard());
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
    assert_eq!(h.expect, HttpExpect::Status(vec![(200, 200), (301, 302)]));
    // Negated status lists become the complement.
    let c = ok("backend b\n  option httpchk\n  http-check expect ! status 500-599\n  server s 10.0.0.1:80\n\
                frontend f\n  bind :80\n  default_backend b\n")
    .config;
    let CheckKind::Http(h) = &c.backends[0].check else {
        panic!("http check")
    };
    assert_eq!(h.expect, HttpExpect::Status(vec![(100, 499)]));
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
fn source_and_consistent_hashing() {
    let p = ok(
        "defaults\n  hash-type consistent\nbackend a\n  balance source\n  server s 10.0.0.1:80\n\
         backend b\n  server s 10.0.0.1:80\nbackend c\n  balance roundrobin\n  hash-type map-based sdbm avalanche\n  server s 10.0.0.1:80\n",
    );
    let c = &p.config;
    let kinds: Vec<_> = c
        .backends
        .iter()
        .map(|b| (b.balance, b.hash_type, b.hashes()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Balance::Source, HashType::Consistent, true),
            (Balance::RoundRobin, HashType::Consistent, true),
            (Balance::RoundRobin, HashType::MapBased, false),
        ]
    );
    let w: Vec<_> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "[WARNING] parsing [t.cfg:10] : 'hash-type map-based' has no effect in lb: 'balance source' always hashes consistently (a server that goes or comes moves only its own clients), and 'roundrobin' stays round robin.",
            "[WARNING] parsing [t.cfg:10] : 'hash-type ... sdbm' has no effect in lb: lb hashes with its own function, the same on every lb node.",
            "[WARNING] parsing [t.cfg:10] : 'hash-type ... avalanche' has no effect in lb: lb hashes with its own function, the same on every lb node.",
        ]
    );
    assert_eq!(
        alerts("backend b\n  hash-type ring\n  balance source 1\n"),
        [
            "[ALERT] parsing [t.cfg:2] : 'hash-type' expects 'map-based' or 'consistent' as method, got 'ring'.",
            "[ALERT] parsing [t.cfg:3] : 'balance' cannot handle unexpected argument '1'.",
        ]
    );
}

#[test]
fn nat_is_lbs_own_keyword() {
    let p = ok(
        "defaults\n  nat dsr-ipip\nbackend a\n  server s 10.0.0.1:80\nbackend b\n  nat dnat\n  server s 10.0.0.1:80\n",
    );
    let nats: Vec<_> = p.config.backends.iter().map(|b| b.nat).collect();
    assert_eq!(nats, [NatMode::DsrIpip, NatMode::Dnat]);
    assert_eq!(
        alerts("backend b\n  nat dsr\n"),
        ["[ALERT] parsing [t.cfg:2] : 'nat' expects 'full-nat', 'dnat' or 'dsr-ipip', got 'dsr'."]
    );
}

#[test]
fn every_error_in_one_pass() {
    let e = alerts(
        "global\n  maxconn lots\nbackend b\n  balance rdp-cookie\n  server s 10.0.0.300:80\n  timeout connect 10x\n",
    );
    assert_eq!(
        e,
        [
            "[ALERT] parsing [t.cfg:2] : 'maxconn' expects an integer argument, got 'lots'.",
            "[ALERT] parsing [t.cfg:4] : balance 'rdp-cookie' is not supported by lb: it hashes the request's content, which lb (L4) never reads (lb balances roundrobin, static-rr, leastconn, first, random and source)",
            "[ALERT] parsing [t.cfg:5] : 'server b/s' : '10.0.0.300' is not an IP address",
            "[ALERT] parsing [t.cfg:6] : 'timeout connect': unexpected character 'x' in time '10x' (units are us, ms, s, m, h, d)",
        ]
    );
}

#[test]
fn missing_lf_and_empty() {
    let p = ok("backend b\n  server s 10.0.0.1:80\nfrontend f\n  bind :80\n  default_backend b");
    assert_eq!(
        p.warnings[0].to_string(),
        "[WARNING] parsing [t.cfg:5] : Missing LF on last line, file might have been truncated at position 20."
    );
    assert!(parse("t.cfg", "").is_err());
}

#[test]
fn client_timers_come_from_frontends() {
    let p = ok(
        "defaults\n  timeout client 30s\n  timeout server 20s\n  timeout client-fin 5s\n\
                frontend f\n  bind :80\n  timeout client 15min\n  default_backend b\n\
                backend b\n  timeout client 1s\n  server s 10.0.0.1:80\n\
                backend unused\n  server s 10.0.0.2:80\n\
                listen l\n  bind :81\n  timeout client 2m\n  server s 10.0.0.3:80\n",
    );
    let c = p.config;
    let b = c.backend("b").expect("b");
    // The frontend's, not the backend's own (HAProxy ignores it) nor the defaults'.
    assert_eq!(b.timeouts.client, Some(Duration::from_secs(900)));
    assert_eq!(b.timeouts.client_fin, Some(Duration::from_secs(5)));
    assert_eq!(b.timeouts.server, Some(Duration::from_secs(20)));
    assert_eq!(c.backend("unused").expect("unused").timeouts.client, None);
    assert_eq!(
        c.backend("l").expect("l").timeouts.client,
        Some(Duration::from_secs(120))
    );
}

#[test]
fn unconditional_use_backend_is_the_backend() {
    let p = ok(
        "frontend f\n  bind :80\n  use_backend b\n  default_backend c\n\
                backend b\n  server s 10.0.0.1:80\nbackend c\n  server s 10.0.0.2:80\n",
    );
    let f = &p.config.frontends[0];
    assert_eq!(f.default_backend, "b");
    assert_eq!(f.default_backend_at.line, 3);
}

#[test]
fn tcp_check_rules_inherit_and_convert() {
    let text = "defaults\n  option tcp-check\n  tcp-check send PING\\r\\n\n  tcp-check expect string +PONG\n\
                backend own\n  tcp-check comment role\n  tcp-check connect port 6379 ssl\n  tcp-check expect ! rstring ^-ERR min-recv 4 on-error down\n  server s 10.0.0.1:6379 check\n\
                backend inherits\n  server s 10.0.0.2:6379 check\n\
                backend mysql\n  option mysql-check user haproxy pre-41\n  server s 10.0.0.3:3306 check\n\
                frontend f\n  bind :6379\n  default_backend own\n";
    let c = ok(text).config;
    let rules = |b: &str| match &c.backend(b).expect("backend").check {
        CheckKind::Rules(TcpCheck::Generic(r)) => r.clone(),
        other => panic!("{b}: {other:?}"),
    };
    assert_eq!(rules("inherits").len(), 2);
    let own = rules("own");
    assert_eq!(own.len(), 3, "own rules replace the defaults' ones");
    assert_eq!(
        own[1],
        TcpRule::Connect {
            port: Some(6379),
            ssl: true,
            sni: None,
            comment: None
        }
    );
    let TcpRule::Expect(e) = &own[2] else {
        panic!("expect")
    };
    assert!(e.negate && e.min_recv == Some(4) && e.on_error.as_deref() == Some("down"));
    assert_eq!(
        c.backend("mysql").expect("mysql").check,
        CheckKind::Rules(TcpCheck::Mysql {
            user: Some("haproxy".into()),
            pre41: true
        })
    );
    // The native format says the same.
    let toml = crate::config::convert::to_toml(&c);
    let back = crate::config::native::parse("t.toml", &toml).expect("converted");
    for (a, b) in c.backends.iter().zip(&back.backends) {
        assert_eq!(a.check, b.check, "{}", a.name);
    }
}

#[test]
fn log_targets_may_be_ipv6() {
    let p = ok("global\n  log ipv6@[::1]:5514 local6 debug\n  log [fd00::1] local0\n");
    let dests: Vec<_> = p
        .config
        .global
        .logs
        .iter()
        .map(|l| l.dest.clone())
        .collect();
    assert_eq!(
        dests,
        [
            LogDest::Udp("[::1]:5514".parse().expect("sa")),
            LogDest::Udp("[fd00::1]:514".parse().expect("sa")),
        ]
    );
    assert_eq!(
        alerts("global\n  log tcp@[::1]:514 local0\n"),
        [
            "[ALERT] parsing [t.cfg:2] : 'log tcp@[::1]:514': lb sends logs over UDP, to a UNIX socket, stdout or stderr only, not to 'tcp@'"
        ]
    );
}
