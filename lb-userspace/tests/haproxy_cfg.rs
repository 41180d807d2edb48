//! haproxy.cfg front end against the seed, a corpus of broken files and the native format.
//!
//! Corpus: `tests/config_corpus/NAME.cfg` (or `.toml`) and `NAME.expected`, the exact lines
//! `lb check` prints for it (host checks aside). `LB_BLESS=1 cargo test` rewrites the
//! `.expected` files; review the diff before committing.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use lb::config::{
    self,
    access::{AccessRule, Cond, Net, Term, Test, Verdict},
    convert, native, *,
};
use proptest::prelude::*;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Origins say where a definition was written; two front ends never agree on them.
fn normalise(mut c: Config) -> Config {
    for l in &mut c.global.logs {
        l.origin = Origin::default();
    }
    for s in &mut c.global.stats_sockets {
        s.origin = Origin::default();
    }
    for h in &mut c.global.stats_http {
        h.origin = Origin::default();
    }
    for f in &mut c.frontends {
        f.origin = Origin::default();
        f.default_backend_at = Origin::default();
        for b in &mut f.binds {
            b.origin = Origin::default();
        }
        for r in &mut f.access {
            r.origin = Origin::default();
        }
    }
    for b in &mut c.backends {
        b.origin = Origin::default();
        for s in &mut b.servers {
            s.origin = Origin::default();
        }
    }
    c
}

/// What `lb check -c NAME` prints, minus the checks against this host's interfaces.
fn check_output(name: &str, bytes: &[u8]) -> Vec<String> {
    match config::parse_bytes(name, bytes, name.ends_with(".toml")) {
        Ok(l) => l
            .warnings
            .iter()
            .map(ToString::to_string)
            .chain(["Configuration file is valid".to_string()])
            .collect(),
        Err(e) => e
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .chain(["[ALERT] config : Fatal errors found in configuration.".to_string()])
            .collect(),
    }
}

fn load_seed() -> Loaded {
    let bytes = read(&repo("configs/haproxy.cfg"));
    config::parse_bytes("haproxy.cfg", &bytes, false).unwrap_or_else(|e| panic!("{e}"))
}

const SEED_WARNINGS: &[&str] = &[
    "[WARNING] parsing [haproxy.cfg:36] : 'option httplog' has no effect in lb (L4): lb never parses HTTP, so there is no HTTP request to log.",
    "[WARNING] parsing [haproxy.cfg:42] : 'option http-server-close' has no effect in lb (L4): connection reuse is between client and server at L4, lb does not close either side.",
    "[WARNING] parsing [haproxy.cfg:43] : 'option forwardfor' has no effect in lb (L4): lb does not add X-Forwarded-For; to let servers see the client address use 'source 0.0.0.0 usesrc clientip' (nat dnat).",
    "[WARNING] parsing [haproxy.cfg:46] : 'timeout http-request' has no effect in lb (L4): lb never waits for an HTTP request, it forwards the connection as soon as it opens.",
    "[WARNING] parsing [haproxy.cfg:51] : 'timeout http-keep-alive' has no effect in lb (L4): keep-alive is between client and server, lb does not see requests.",
    "[WARNING] parsing [haproxy.cfg:53] : 'maxconn' has no effect in lb: lb limits active flows per server (a server's 'maxconn') and in all (the global 'maxconn'), not per proxy.",
    "[WARNING] parsing [haproxy.cfg:58] : frontend 'main' is in 'mode http': lb balances at L4, connections are forwarded as TCP",
    "[WARNING] parsing [haproxy.cfg:64] : backend 'hoge' is in 'mode http': lb balances at L4, connections are forwarded as TCP",
    "[WARNING] parsing [haproxy.cfg:64] : backend 'hoge': 'timeout queue' has no effect in lb: lb has no queue: a new connection that finds every server at its 'maxconn' is dropped (counted as drop_maxconn in 'lb show stats') and the client's SYN retransmission tries again",
];

#[test]
fn seed_parses_with_the_expected_warnings() {
    let l = load_seed();
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w, SEED_WARNINGS);
}

#[test]
fn seed_is_the_model_of_lb_toml() {
    let seed = normalise(load_seed().config);
    let toml = read(&repo("configs/lb.toml"));
    let native = normalise(
        config::parse_bytes("lb.toml", &toml, true)
            .unwrap_or_else(|e| panic!("{e}"))
            .config,
    );

    // The differences that are inherent, each checked, then carried over (see lb.toml's
    // header): lb.toml states the L4 truth ('mode tcp') where the seed says 'mode http'
    // (lb runs both the same way, only the warnings differ), and it keeps lb's own process
    // settings: its own pidfile and runtime API socket (admin level, for `lb` commands and
    // the testbed), no chroot/user/group/daemon since lb needs CAP_BPF/CAP_NET_ADMIN.
    let mut seed = seed;
    assert_eq!(seed.frontends[0].mode, Mode::Http);
    assert_eq!(seed.backends[0].mode, Mode::Http);
    seed.frontends[0].mode = Mode::Tcp;
    seed.backends[0].mode = Mode::Tcp;
    let g = &mut seed.global;
    assert_eq!(
        g.pidfile.as_deref(),
        Some(Path::new("/var/run/haproxy.pid"))
    );
    assert_eq!(g.chroot.as_deref(), Some(Path::new("/var/lib/haproxy")));
    assert_eq!(g.user.as_deref(), Some("haproxy"));
    assert_eq!(g.group.as_deref(), Some("haproxy"));
    assert!(g.daemon);
    let [sock] = g.stats_sockets.as_slice() else {
        panic!("one stats socket: {:?}", g.stats_sockets)
    };
    assert_eq!(sock.addr, ApiAddr::Unix("/var/lib/haproxy/stats".into()));
    assert_eq!((sock.mode, sock.level), (None, ApiLevel::Operator));
    g.pidfile = native.global.pidfile.clone();
    g.stats_sockets = native.global.stats_sockets.clone();
    (g.chroot, g.user, g.group, g.daemon) = (None, None, None, false);

    assert_eq!(seed, native);
}

#[test]
fn testbed_copy_moves_only_addresses() {
    let bytes = read(&repo("configs/haproxy-testbed.cfg"));
    let l =
        config::parse_bytes("haproxy-testbed.cfg", &bytes, false).unwrap_or_else(|e| panic!("{e}"));
    let c = &l.config;
    assert_eq!(c.frontends[0].binds.len(), 1);
    assert_eq!(
        c.frontends[0].binds[0].addr,
        IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1))
    );
    assert_eq!(c.frontends[0].binds[0].port, 80);
    let addrs: Vec<_> = c.backends[0]
        .servers
        .iter()
        .map(|s| (s.addr, s.port))
        .collect();
    assert_eq!(
        addrs,
        [
            (IpAddr::V4(Ipv4Addr::new(10, 200, 10, 10)), 80),
            (IpAddr::V4(Ipv4Addr::new(10, 200, 11, 11)), 80)
        ]
    );
    let mut seed = normalise(load_seed().config);
    let mut tb = normalise(l.config);
    seed.frontends[0].binds.clear();
    tb.frontends[0].binds.clear();
    for s in seed.backends[0]
        .servers
        .iter_mut()
        .chain(tb.backends[0].servers.iter_mut())
    {
        s.addr = Ipv4Addr::UNSPECIFIED.into();
    }
    assert_eq!(seed, tb);
    assert_eq!(l.warnings.len(), SEED_WARNINGS.len());
}

#[test]
fn seed_round_trips_through_native_toml() {
    let seed = load_seed().config;
    let text = convert::to_toml(&seed);
    let back = native::parse("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(normalise(back), normalise(seed));
}

#[test]
fn corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_corpus");
    let bless = std::env::var_os("LB_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg" || e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "corpus has {} files", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let got = check_output(&name, &read(case)).join("\n") + "\n";
        let exp_path = case.with_extension("expected");
        if bless {
            std::fs::write(&exp_path, &got).expect("write expected");
            continue;
        }
        let want = String::from_utf8(read(&exp_path)).expect("utf-8 expected");
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// 10 MB of servers: read in one pass, refused by the data-plane limits, not by a crash.
#[test]
fn ten_megabytes_of_servers() {
    let mut text = String::from("frontend f\n    bind :80\n    default_backend big\nbackend big\n");
    let mut n = 0u32;
    while text.len() < 10 << 20 {
        n += 1;
        text.push_str(&format!(
            "    server s{n} 10.{}.{}.{}:8080 check inter 3000 fall 2 rise 2\n",
            (n >> 16) & 255,
            (n >> 8) & 255,
            n & 255
        ));
    }
    let out = check_output("big.cfg", text.as_bytes());
    assert_eq!(
        out,
        [
            format!(
                "[ALERT] parsing [big.cfg:4] : backend 'big' has {n} servers, at most 4096 are supported"
            ),
            format!("[ALERT] config : {n} servers configured, the data plane holds at most 4096"),
            "[ALERT] config : Fatal errors found in configuration.".to_string(),
        ]
    );
}

/// 10 MB of junk: HAProxy's rule, stop after 50 fatal errors.
#[test]
fn ten_megabytes_of_junk_stops_after_fifty_errors() {
    let line = "xx\u{7f}yy zz 'q\n";
    let text = line.repeat((10 << 20) / line.len() + 1);
    let out = check_output("junk.cfg", text.as_bytes());
    assert_eq!(out.len(), 52, "{out:?}");
    assert_eq!(
        out[0],
        "[ALERT] parsing [junk.cfg:1] : unmatched quote at position 10"
    );
    assert_eq!(
        out[50],
        "[ALERT] parsing [junk.cfg:51] : too many fatal errors (50), stopping now."
    );
}

// ---------------------------------------------------------------------------------------
// Property: any model the native format expresses survives to_toml -> native::parse.
// ---------------------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:\\- \"\\\\é]{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn dur() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..100_000).prop_map(Duration::from_millis),
        (1u64..1000).prop_map(Duration::from_secs),
        (1u64..10_000_000_000).prop_map(Duration::from_micros),
    ]
}

fn ip4() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..=254, any::<u8>(), any::<u8>(), 1u8..=254)
        .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b, c, d))
}

/// Either family, where lb takes both (servers, binds, checks, access rules).
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (1u8..=254, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        (0xfd00u16..=0xfdff, any::<u16>(), 1u16..=0xffff)
            .prop_map(|(a, b, h)| IpAddr::V6(Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, h))),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    1u16..=65535
}

fn origin() -> Origin {
    Origin::default()
}

fn log_target() -> impl Strategy<Value = LogTarget> {
    let dest = prop_oneof![
        (ip4(), port()).prop_map(|(a, p)| LogDest::Udp(SocketAddr::new(a.into(), p))),
        "/[a-z/]{1,12}".prop_map(|p| LogDest::Unix(p.into())),
        Just(LogDest::Stderr),
        Just(LogDest::Stdout),
    ];
    (
        dest,
        prop::sample::select(Facility::ALL),
        prop::sample::select(Level::ALL),
        prop::option::of(prop::sample::select(Level::ALL)),
    )
        .prop_map(|(dest, facility, max_level, min_level)| LogTarget {
            dest,
            facility,
            max_level,
            min_level,
            origin: origin(),
        })
}

fn stats_http() -> impl Strategy<Value = StatsHttp> {
    let addr = prop_oneof![
        (ip4(), any::<u16>()).prop_map(|(a, p)| SocketAddr::new(a.into(), p)),
        Just("[::1]:9100".parse::<SocketAddr>().expect("v6")),
    ];
    let simple = addr
        .clone()
        .prop_map(|a| StatsHttp::simple(a, Origin::default()));
    let full = (
        "[a-z]{1,8}",
        prop::collection::vec(addr, 1..3),
        prop::option::of("/[a-z?;]{0,10}"),
        prop::collection::vec(("[a-z]{1,6}", "[a-z:0-9]{0,8}"), 0..3),
        text(),
        prop::option::of(dur()),
        prop::option::of(prop_oneof![
            "/[a-z]{0,8}".prop_map(PathMatch::Exact),
            "/[a-z]{0,8}".prop_map(PathMatch::Prefix),
        ]),
    )
        .prop_map(
            |(name, binds, uri, auth, realm, refresh, metrics)| StatsHttp {
                name,
                binds,
                uri,
                auth,
                realm,
                refresh,
                metrics,
                origin: Origin::default(),
            },
        );
    prop_oneof![simple, full]
}

fn global() -> impl Strategy<Value = Global> {
    (
        (
            "[a-z][a-z0-9_-]{0,10}",
            prop::collection::vec(log_target(), 0..3),
            text(),
            prop::collection::vec(
                (
                    prop_oneof![
                        "/[a-z/]{1,12}".prop_map(|p| ApiAddr::Unix(p.into())),
                        (ip4(), 1u16..=65535)
                            .prop_map(|(a, p)| ApiAddr::Tcp(SocketAddr::new(a.into(), p))),
                    ],
                    prop::option::of(0u32..=0o7777),
                    prop::sample::select(vec![ApiLevel::User, ApiLevel::Operator, ApiLevel::Admin]),
                ),
                0..3,
            ),
            prop::option::of(any::<u32>()),
            prop::option::of("/[a-z/.]{1,12}"),
            any::<bool>(),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of("/[a-z/]{1,12}"),
            (
                1024u32..10_000_000,
                1024u32..10_000_000,
                prop::option::of("/[a-z/]{1,12}"),
                prop::option::of("/[a-z/]{1,12}"),
            ),
            (1u16..=65535, 1u16..=65535),
            prop::collection::vec("[a-z0-9]{1,8}", 0..3),
            prop::collection::vec(stats_http(), 0..3),
            verify(),
        ),
        prop::option::of(1u32..253),
    )
        .prop_map(
            |(
                (instance, logs, log_tag, sock, maxconn, pidfile, daemon),
                (
                    user,
                    group,
                    chroot,
                    (conntrack_entries, halfopen_entries, state_file, state_base),
                    (a, b),
                    interfaces,
                    stats_http,
                    ssl_server_verify,
                ),
                announce_table,
            )| Global {
                instance,
                logs,
                log_tag,
                stats_sockets: sock
                    .into_iter()
                    .map(|(addr, mode, level)| StatsSocket {
                        addr,
                        mode,
                        level,
                        origin: origin(),
                    })
                    .collect(),
                maxconn,
                pidfile: pidfile.map(Into::into),
                daemon,
                user,
                group,
                chroot: chroot.map(Into::into),
                conntrack_entries,
                halfopen_entries,
                server_state_file: state_file.map(Into::into),
                server_state_base: state_base.map(Into::into),
                snat_ports: (a.min(b), a.max(b)),
                interfaces,
                stats_http,
                ssl_server_verify,
                announce_table,
                resolvers: Vec::new(),
            },
        )
}

fn verify() -> impl Strategy<Value = Verify> {
    prop_oneof![Just(Verify::Required), Just(Verify::None)]
}

fn http_expect() -> impl Strategy<Value = HttpExpect> {
    let pattern = "[a-z0-9^$.]{1,8}";
    prop_oneof![
        prop::collection::vec(
            (100u16..=599, 0u16..50).prop_map(|(a, w)| (a, (a + w).min(599))),
            0..3,
        )
        .prop_map(HttpExpect::Status),
        (pattern, any::<bool>())
            .prop_map(|(pattern, negate)| HttpExpect::StatusRegex { pattern, negate }),
        ("\\PC{1,16}", any::<bool>()).prop_map(|(text, negate)| HttpExpect::Body { text, negate }),
        (pattern, any::<bool>())
            .prop_map(|(pattern, negate)| HttpExpect::BodyRegex { pattern, negate }),
    ]
}

fn http_check() -> impl Strategy<Value = HttpCheck> {
    (
        "[A-Z]{1,7}",
        "/[ -~]{0,20}",
        "HTTP/1\\.[01]",
        prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,16}", 0..3),
        text(),
        http_expect(),
        prop::option::of(
            (
                prop::option::of(port()),
                any::<bool>(),
                prop::option::of("[a-z.]{1,12}"),
            )
                .prop_map(|(port, ssl, sni)| CheckConnect { port, ssl, sni }),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(method, uri, version, headers, body, expect, connect, disable_on_404)| HttpCheck {
                method,
                uri,
                version,
                headers,
                body,
                expect,
                connect,
                disable_on_404,
            },
        )
}

fn check_tls() -> impl Strategy<Value = CheckTls> {
    (
        any::<bool>(),
        prop::option::of("[a-z.]{1,12}"),
        prop::option::of(verify()),
        prop::option::of("/[a-z/.]{1,12}"),
    )
        .prop_map(|(ssl, sni, verify, ca_file)| CheckTls {
            ssl,
            sni,
            verify,
            ca_file: ca_file.map(Into::into),
        })
}

fn agent() -> impl Strategy<Value = AgentCheck> {
    (
        any::<bool>(),
        prop::option::of(port()),
        prop::option::of(dur()),
        text(),
        prop::option::of(ip()),
    )
        .prop_map(|(enabled, port, inter, send, addr)| AgentCheck {
            enabled,
            port,
            inter,
            send,
            addr,
        })
}

fn server() -> impl Strategy<Value = Server> {
    (
        (
            name(),
            ip(),
            port(),
            any::<bool>(),
            dur(),
            prop::option::of(dur()),
            prop::option::of(dur()),
        ),
        (
            0u32..10,
            0u32..10,
            prop::option::of(port()),
            prop::option::of(ip()),
            0u32..=300,
            any::<bool>(),
            any::<bool>(),
            prop::option::of(any::<u32>()),
            check_tls(),
            agent(),
        ),
        (
            prop_oneof![
                Just(OnMarkedDown::Keep),
                Just(OnMarkedDown::ShutdownSessions)
            ],
            prop_oneof![
                Just(OnMarkedUp::Keep),
                Just(OnMarkedUp::ShutdownBackupSessions)
            ],
            prop::option::of(dur()),
            prop_oneof![Just(Observe::None), Just(Observe::Layer4)],
            prop::sample::select(OnError::ALL.iter().map(|(_, o)| *o).collect::<Vec<_>>()),
            1u32..100,
        ),
    )
        .prop_map(
            |(
                (name, addr, port, check, inter, fastinter, downinter),
                (
                    fall,
                    rise,
                    check_port,
                    check_addr,
                    weight,
                    backup,
                    disabled,
                    maxconn,
                    check_tls,
                    agent,
                ),
                (on_marked_down, on_marked_up, slowstart, observe, on_error, error_limit),
            )| Server {
                name,
                addr,
                fqdn: None,
                init_addr: lb::config::InitAddr::DEFAULT.to_vec(),
                dns: lb::config::ServerDns::default(),
                port,
                check,
                inter,
                fastinter,
                downinter,
                fall,
                rise,
                check_port,
                check_addr,
                check_tls,
                agent,
                weight,
                backup,
                disabled,
                maxconn,
                slowstart,
                on_marked_down,
                on_marked_up,
                observe,
                on_error,
                error_limit,
                origin: origin(),
            },
        )
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Tcp), Just(Mode::Http)]
}

fn backend(name: String) -> impl Strategy<Value = Backend> {
    let opt_dur = || prop::option::of(dur());
    (
        (
            mode(),
            prop_oneof![Just(NatMode::FullNat), Just(NatMode::Dnat)],
            prop_oneof![Just(OnEmpty::Drop), Just(OnEmpty::Pass)],
            prop_oneof![Just(CheckKind::Tcp), http_check().prop_map(CheckKind::Http)],
            any::<(bool, bool, bool)>(),
            any::<u32>(),
            prop_oneof![
                Just(Balance::RoundRobin),
                Just(Balance::StaticRr),
                Just(Balance::LeastConn),
                Just(Balance::First),
                (1u32..=lb_common::MAX_DRAWS).prop_map(|draws| Balance::Random { draws }),
                Just(Balance::Source),
            ],
        ),
        (opt_dur(), opt_dur(), opt_dur(), opt_dur(), opt_dur()),
        (opt_dur(), opt_dur(), opt_dur()),
        (
            prop_oneof![
                Just(LoadState::None),
                Just(LoadState::Global),
                Just(LoadState::Local)
            ],
            prop::option::of("[a-z]{1,8}"),
        ),
        prop::collection::vec(server(), 0..4),
        (
            prop_oneof![Just(HashType::MapBased), Just(HashType::Consistent)],
            prop_oneof![Just(65537u32), Just(251), Just(4093)],
        ),
    )
        .prop_map(
            move |(
                (
                    mode,
                    nat,
                    on_empty,
                    check,
                    (redispatch, log_health_checks, allbackups),
                    retries,
                    balance,
                ),
                (connect, client, srv, chk, queue),
                (tunnel, client_fin, server_fin),
                (load_state, state_file_name),
                servers,
                (hash_type, hash_table_size),
            )| Backend {
                name: name.clone(),
                mode,
                balance,
                hash_type,
                hash_table_size,
                nat,
                on_empty,
                check,
                redispatch,
                log_health_checks,
                allbackups,
                retries,
                timeouts: Timeouts {
                    connect,
                    client,
                    server: srv,
                    tunnel,
                    client_fin,
                    server_fin,
                    check: chk,
                    queue,
                },
                load_state,
                state_file_name,
                servers,
                origin: origin(),
            },
        )
}

fn bind() -> impl Strategy<Value = Bind> {
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    (
        prop_oneof![Just(any4), Just(any6), ip()],
        port(),
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)],
        any::<bool>(),
    )
        .prop_map(|(addr, port, proto, v6only)| Bind {
            v6only: v6only && addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            addr,
            port,
            proto,
            origin: origin(),
        })
}

fn access_test() -> impl Strategy<Value = Test> {
    prop_oneof![
        prop::collection::vec((ip(), 0u8..=128), 1..3).prop_map(|nets| {
            let nets = nets
                .into_iter()
                .map(|(a, l)| (a, if a.is_ipv4() { l.min(32) } else { l }));
            Test::Src(nets.into_iter().map(|(a, l)| Net::new(a, l)).collect())
        }),
        prop::collection::vec((port(), port()), 1..3).prop_map(Test::DstPort),
    ]
}

fn access_rule() -> impl Strategy<Value = AccessRule> {
    let term = (any::<bool>(), access_test()).prop_map(|(not, test)| Term { not, test });
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(term, 1..3), 0..3),
    )
        .prop_map(|(accept, unless, any)| AccessRule {
            verdict: if accept {
                Verdict::Accept
            } else {
                Verdict::Reject
            },
            cond: Cond {
                unless: unless && !any.is_empty(),
                any,
            },
            origin: origin(),
        })
}

fn frontend(name: String) -> impl Strategy<Value = Frontend> {
    (
        mode(),
        prop::collection::vec(bind(), 0..3),
        text(),
        any::<bool>(),
        prop::collection::vec(access_rule(), 0..3),
    )
        .prop_map(
            move |(mode, binds, default_backend, tcplog, access)| Frontend {
                name: name.clone(),
                mode,
                binds,
                default_backend,
                default_backend_at: origin(),
                tcplog,
                access,
                origin: origin(),
            },
        )
}

fn model() -> impl Strategy<Value = Config> {
    (
        global(),
        prop::collection::btree_set(name(), 0..3),
        prop::collection::btree_set(name(), 0..3),
    )
        .prop_flat_map(|(global, fnames, bnames)| {
            let fronts: Vec<_> = fnames.into_iter().map(frontend).collect();
            let backs: Vec<_> = bnames.into_iter().map(backend).collect();
            (Just(global), fronts, backs)
        })
        .prop_map(|(global, frontends, backends)| Config {
            global,
            frontends,
            backends,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn native_round_trip(c in model()) {
        let text = convert::to_toml(&c);
        let back = native::parse("converted.toml", &text);
        prop_assert!(back.is_ok(), "{:?}\n{}", back.err(), text);
        prop_assert_eq!(normalise(back.expect("checked")), normalise(c));
    }
}

/// Lines made of real keywords, values and junk: the parser answers, never panics, and
/// every alert names a line.
fn cfg_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "global",
            "defaults",
            "frontend",
            "backend",
            "listen",
            "server",
            "default-server",
            "bind",
            "mode",
            "http",
            "tcp",
            "option",
            "httpchk",
            "http-check",
            "send",
            "expect",
            "status",
            "!",
            "hdr",
            "meth",
            "uri",
            "ver",
            "timeout",
            "connect",
            "check",
            "inter",
            "fall",
            "rise",
            "weight",
            "backup",
            "port",
            "addr",
            "balance",
            "roundrobin",
            "source",
            "usesrc",
            "clientip",
            "log",
            "global",
            "stats",
            "socket",
            "level",
            "mode",
            "no",
            "default",
            "from",
            "default_backend",
            "use_backend",
            "retries",
            "maxconn",
            "10s",
            "3000",
            "0",
            "-1",
            "99999",
            "*:80",
            ":80,:81",
            "10.0.0.1:80",
            "1.2.3.4",
            "a:b:c",
            "\"",
            "'",
            "\\",
            "\\x4",
            "\"${X-1}\"",
            "#",
            "\\r\\n",
            "200-399",
            "foo",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
        "[\\x00-\\x1f]{0,3}",
    ];
    (
        prop::sample::select(vec!["", "    ", "\t"]),
        prop::collection::vec(word, 0..8),
    )
        .prop_map(|(indent, w)| format!("{indent}{}", w.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn haproxy_parser_never_panics(lines in prop::collection::vec(cfg_line(), 0..40)) {
        let text = lines.join("\n");
        match config::parse_bytes("fuzz.cfg", text.as_bytes(), false) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(e.alerts().count() > 0);
                for d in e.diagnostics {
                    let s = d.to_string();
                    prop_assert!(!s.contains('\n') && !s.contains('\0'), "{s:?}");
                }
            }
        }
    }
}

/// `lb check` as a CI step: a bind address this machine does not have is a warning (the
/// file is for another machine), which `lb run` would refuse.
#[test]
fn lb_check_takes_files_for_other_machines() {
    let dir = std::env::temp_dir().join(format!("lb-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("prod.cfg");
    std::fs::write(
        &path,
        "frontend main\n    bind 203.0.113.7:80\n    default_backend app\nbackend app\n    server a1 192.0.2.10:80\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("lb check");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "[WARNING] parsing [{}:2] : frontend 'main': bind 203.0.113.7:80: 203.0.113.7 is not an address of any local interface of this machine ('lb run' refuses it here)",
            path.display()
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Configuration file is valid\n"
    );
}
