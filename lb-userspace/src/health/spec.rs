//! What one check does, from the configuration: where it connects, over TLS or not, what it
//! sends and expects, and its time budget. Pure: no I/O.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio::time::Instant;

use super::state::CheckStatus;
use crate::config::{Backend, CheckKind, HttpCheck, Server, TcpCheck, TcpRule, Verify};

/// What a check does once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing: connecting (and the TLS handshake, over TLS) is the check.
    Tcp,
    /// An HTTP request, and a match on the response.
    Http(HttpCheck),
    /// `tcp-check` rules (the user's, or a protocol check's); `ssl`: the first connect,
    /// when the rules do not start with their own, speaks TLS (`check-ssl`).
    Rules { check: TcpCheck, ssl: bool },
}

/// How a check speaks TLS (`check-ssl` or `http-check connect ssl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSpec {
    /// Sent in the handshake, and then the name the certificate must carry; `None` sends no
    /// SNI and, as HAProxy, checks no name.
    pub sni: Option<String>,
    pub verify: Verify,
    pub ca_file: Option<PathBuf>,
}

/// HAProxy's time budget of a check (`tcpcheck_eval_connect`; "timeout check" in its
/// manual): with `timeout check` unset, `inter` bounds the whole check from its start; with
/// it set, connecting (TCP, then TLS when used) gets min(`timeout connect`, `inter`) and the
/// answer gets `timeout check` from the moment the connection is established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The check's own interval (`inter`, `agent-inter`), never `fastinter`/`downinter`.
    pub inter: Duration,
    pub timeout_connect: Option<Duration>,
    pub timeout_check: Option<Duration>,
}

/// The longest wait used anywhere (HAProxy's intervals and timeouts are ints of ms, under 25
/// days); keeps `Instant` arithmetic from overflowing on absurd configurations.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn after(from: Instant, d: Duration) -> Instant {
    from + d.min(MAX_WAIT)
}

impl Budget {
    /// How long connecting may take.
    pub fn connect_timeout(&self) -> Duration {
        match (self.timeout_check, self.timeout_connect) {
            (Some(_), Some(c)) => c.min(self.inter),
            _ => self.inter,
        }
    }

    /// When a check started at `start` and now in `phase` runs out of time.
    pub fn deadline(&self, start: Instant, phase: Phase) -> Instant {
        match (phase, self.timeout_check) {
            (Phase::Connected(at), Some(t)) => after(at, t),
            (Phase::Connected(_), None) => after(start, self.inter),
            (Phase::Connecting | Phase::Handshaking, _) => after(start, self.connect_timeout()),
        }
    }
}

/// Where a check stands, which decides what running out of time means (HAProxy's
/// `chk_report_conn_err`: `CO_FL_WAIT_L4_CONN`, `CO_FL_WAIT_L6_CONN`, then connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connection is not established.
    Connecting,
    /// TCP is up, the TLS handshake is under way.
    Handshaking,
    /// Connected (TCP, and TLS when used) at this instant; waiting for the answer.
    Connected(Instant),
}

impl Phase {
    /// The status of a check that runs out of time in this phase.
    pub fn timeout(self) -> CheckStatus {
        match self {
            Phase::Connecting => CheckStatus::L4Tout,
            Phase::Handshaking => CheckStatus::L6Tout,
            Phase::Connected(_) => CheckStatus::L7Tout,
        }
    }
}

/// Everything one health check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// The server's address, or its `addr`/`port` check overrides, or the `http-check
    /// connect` port.
    pub addr: SocketAddr,
    pub probe: Probe,
    pub tls: Option<TlsSpec>,
    pub budget: Budget,
}

impl CheckSpec {
    /// The health check of `server`; `verify` is the global default (`ssl-server-verify`).
    pub fn new(backend: &Backend, server: &Server, verify: Verify) -> CheckSpec {
        let ip = server.check_addr.unwrap_or(server.addr);
        let own_port = server.check_port.unwrap_or(server.port);
        let t = &server.check_tls;
        let tls = |ssl: bool, sni: &Option<String>| {
            ssl.then(|| TlsSpec {
                sni: sni.clone(),
                verify: t.verify.unwrap_or(verify),
                ca_file: t.ca_file.clone(),
            })
        };
        let (port, tls, probe) = match &backend.check {
            CheckKind::Tcp => (own_port, tls(t.ssl, &t.sni), Probe::Tcp),
            CheckKind::Rules(r) => {
                // TLS settings whenever a connection may use them: the server's `check-ssl`
                // (the implicit connect's) or a rule's `connect ssl`.
                let rule_ssl = matches!(r, TcpCheck::Generic(rules)
                    if rules.iter().any(|x| matches!(x, TcpRule::Connect { ssl: true, .. })));
                (
                    own_port,
                    tls(t.ssl || rule_ssl, &t.sni),
                    Probe::Rules {
                        check: r.clone(),
                        ssl: t.ssl,
                    },
                )
            }
            CheckKind::Http(h) => match &h.connect {
                // A connect rule replaces the server's port, check-ssl and check-sni.
                Some(c) => (
                    c.port.unwrap_or(own_port),
                    tls(c.ssl, &c.sni),
                    Probe::Http(h.clone()),
                ),
                None => (own_port, tls(t.ssl, &t.sni), Probe::Http(h.clone())),
            },
        };
        CheckSpec {
            addr: SocketAddr::new(ip, port),
            probe,
            tls,
            budget: Budget {
                inter: server.inter,
                timeout_connect: backend.timeouts.connect,
                timeout_check: backend.timeouts.check,
            },
        }
    }

    /// The request must go out byte for byte as configured (see [`exact_request`]): plain
    /// HTTP, a version other than HTTP/1.1, and a match on the status line only.
    pub fn sends_exact_bytes(&self) -> bool {
        match &self.probe {
            Probe::Http(h) => {
                self.tls.is_none() && h.version != "HTTP/1.1" && !h.expect.needs_body()
            }
            Probe::Tcp | Probe::Rules { .. } => false,
        }
    }
}

/// The bytes of an HTTP check request sent as configured: `METHOD URI VERSION\r\n`, each
/// configured header line and `\r\n`, an empty line, the body. Nothing is added (no Host, no
/// Connection), as HAProxy 1.x sent its `option httpchk` string; the one exception is a body
/// without a configured `Content-Length`, which gets one so the server can tell where it
/// ends.
pub fn exact_request(h: &HttpCheck) -> Vec<u8> {
    let mut r = String::new();
    r.push_str(&h.method);
    r.push(' ');
    r.push_str(&h.uri);
    if !h.version.is_empty() {
        r.push(' ');
        r.push_str(&h.version);
    }
    r.push_str("\r\n");
    for hdr in &h.headers {
        r.push_str(hdr);
        r.push_str("\r\n");
    }
    if !h.body.is_empty() && !has_header(h, "content-length") {
        r.push_str(&format!("Content-Length: {}\r\n", h.body.len()));
    }
    r.push_str("\r\n");
    r.push_str(&h.body);
    r.into_bytes()
}

/// A header named `name` (any case) is configured.
pub fn has_header(h: &HttpCheck, name: &str) -> bool {
    h.headers.iter().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

/// Everything one agent check needs (`agent-check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// `agent-addr` (else the check address) and `agent-port` (else the check `port`).
    pub addr: SocketAddr,
    /// `agent-send`, written once connected.
    pub send: Vec<u8>,
    /// `inter` is `agent-inter` (else the server's `inter`).
    pub budget: Budget,
}

impl AgentSpec {
    /// The agent check of `server`, if it has one and a port to reach it on.
    pub fn new(backend: &Backend, server: &Server) -> Option<AgentSpec> {
        let a = &server.agent;
        if !a.enabled {
            return None;
        }
        // HAProxy: "if agent-port was never set, we can use port" (the check port).
        let port = a.port.or(server.check_port)?;
        let ip = a.addr.or(server.check_addr).unwrap_or(server.addr);
        Some(AgentSpec {
            addr: SocketAddr::new(ip, port),
            send: a.send.as_bytes().to_vec(),
            budget: Budget {
                inter: a.inter.unwrap_or(server.inter),
                timeout_connect: backend.timeouts.connect,
                timeout_check: backend.timeouts.check,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpExpect;

    #[test]
    fn seed_request_bytes() {
        let h = HttpCheck {
            method: "GET".into(),
            uri: "/health_check.html".into(),
            version: "HTTP/1.0".into(),
            headers: vec!["User-agent: Proxy-Check".into()],
            ..HttpCheck::default()
        };
        assert_eq!(
            exact_request(&h),
            b"GET /health_check.html HTTP/1.0\r\nUser-agent: Proxy-Check\r\n\r\n"
        );
        assert_eq!(
            exact_request(&HttpCheck::default()),
            b"OPTIONS / HTTP/1.0\r\n\r\n"
        );
        let with_body = HttpCheck {
            method: "POST".into(),
            body: "ping".into(),
            ..HttpCheck::default()
        };
        assert_eq!(
            exact_request(&with_body),
            b"POST / HTTP/1.0\r\nContent-Length: 4\r\n\r\nping"
        );
        let own_length = HttpCheck {
            headers: vec!["content-length : 4".into()],
            ..with_body
        };
        assert_eq!(
            exact_request(&own_length),
            b"POST / HTTP/1.0\r\ncontent-length : 4\r\n\r\nping"
        );
    }

    #[test]
    fn budgets() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut b = Budget {
            inter: ms(3000),
            timeout_connect: Some(ms(10000)),
            timeout_check: None,
        };
        // `timeout check` unset: `inter` for everything, from the start.
        assert_eq!(b.connect_timeout(), ms(3000));
        let connected = Phase::Connected(start + ms(100));
        assert_eq!(b.deadline(start, connected), start + ms(3000));
        b.timeout_check = Some(ms(10000));
        assert_eq!(b.connect_timeout(), ms(3000));
        b.timeout_connect = Some(ms(500));
        assert_eq!(b.connect_timeout(), ms(500));
        assert_eq!(b.deadline(start, Phase::Handshaking), start + ms(500));
        // Then `timeout check` from the moment the connection is established.
        assert_eq!(b.deadline(start, connected), start + ms(10100));
        b.timeout_connect = None;
        assert_eq!(b.connect_timeout(), ms(3000));
        assert_eq!(Phase::Connecting.timeout(), CheckStatus::L4Tout);
        assert_eq!(Phase::Handshaking.timeout(), CheckStatus::L6Tout);
        assert_eq!(connected.timeout(), CheckStatus::L7Tout);
    }

    #[test]
    fn ipv6_servers_and_check_addresses() {
        let c = crate::config::parse_bytes(
            "t.cfg",
            b"frontend f\n  bind :::80\n  default_backend b\nbackend b\n  server s1 [fd00::10]:80 check\n  server s2 fd00::11:80 check addr [fd00::99] port 8080 agent-check agent-port 9000\n  server s3 10.0.0.3:80 check addr [fd00::98] agent-check agent-port 9000 agent-addr 10.0.0.97\n",
            false,
        )
        .expect("parses")
        .config;
        let b = &c.backends[0];
        let spec = |i: usize| CheckSpec::new(b, &b.servers[i], Verify::None).addr;
        assert_eq!(spec(0), "[fd00::10]:80".parse().expect("addr"));
        assert_eq!(spec(1), "[fd00::99]:8080".parse().expect("addr"));
        // A check address of the other family is the user's choice, taken as given.
        assert_eq!(spec(2), "[fd00::98]:80".parse().expect("addr"));
        let agent = |i: usize| AgentSpec::new(b, &b.servers[i]).expect("agent").addr;
        assert_eq!(agent(1), "[fd00::99]:9000".parse().expect("addr"));
        assert_eq!(agent(2), "10.0.0.97:9000".parse().expect("addr"));
    }

    #[test]
    fn specs_from_the_config() {
        let c = crate::config::native::parse(
            "t.toml",
            r#"
[defaults]
timeout = { connect = "5s", check = "2s" }
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b"
[backend.b]
http_check = { version = "HTTP/1.1", headers = ["Host: web.test"], connect = { port = 8443, ssl = true, sni = "web.test" } }
server = [
  { name = "w1", address = "10.0.1.1:80", check = true, check_ssl = true, check_sni = "ignored.test", ca_file = "/ca.pem", agent_check = true, agent_port = 9001, agent_send = "ping\n" },
  { name = "w2", address = "10.0.1.2:80", check = true, port = 81, agent_check = true, agent_inter = "500ms" },
  { name = "w3", address = "10.0.1.3:80", check = true, agent_check = true, verify = "none" },
]
[backend.plain]
server = [{ name = "p", address = "10.0.2.1:80", check = true, check_ssl = true, port = 8443, check_sni = "p.test" }]
"#,
        )
        .expect("parses");
        let b = &c.backends[0];
        let s1 = CheckSpec::new(b, &b.servers[0], Verify::Required);
        assert_eq!(s1.addr, "10.0.1.1:8443".parse().expect("addr"));
        let tls = s1.tls.as_ref().expect("connect ssl");
        assert_eq!(
            tls.sni.as_deref(),
            Some("web.test"),
            "the connect rule's SNI"
        );
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.verify, Verify::Required);
        assert_eq!(s1.budget.timeout_check, Some(Duration::from_secs(2)));
        assert!(!s1.sends_exact_bytes());
        let a1 = AgentSpec::new(b, &b.servers[0]).expect("agent");
        assert_eq!(a1.addr, "10.0.1.1:9001".parse().expect("addr"));
        assert_eq!(
            (a1.send.as_slice(), a1.budget.inter),
            (&b"ping\n"[..], Duration::from_secs(2))
        );
        // No agent-port: the check port stands in.
        let a2 = AgentSpec::new(b, &b.servers[1]).expect("agent");
        assert_eq!(a2.addr, "10.0.1.2:81".parse().expect("addr"));
        assert_eq!(a2.budget.inter, Duration::from_millis(500));
        // Neither: no agent check (validation refuses the config).
        assert_eq!(AgentSpec::new(b, &b.servers[2]), None);
        assert_eq!(
            CheckSpec::new(b, &b.servers[2], Verify::None)
                .tls
                .map(|t| t.verify),
            Some(Verify::None)
        );

        let p = &c.backends[1];
        let sp = CheckSpec::new(p, &p.servers[0], Verify::None);
        assert_eq!(sp.addr, "10.0.2.1:8443".parse().expect("addr"));
        assert_eq!(sp.probe, Probe::Tcp);
        assert_eq!(
            sp.tls.as_ref().and_then(|t| t.sni.as_deref()),
            Some("p.test")
        );
    }

    #[test]
    fn exact_bytes_only_where_reqwest_cannot_send_them() {
        let spec = |version: &str, expect: HttpExpect, tls: bool| CheckSpec {
            addr: "127.0.0.1:80".parse().expect("addr"),
            probe: Probe::Http(HttpCheck {
                version: version.into(),
                expect,
                ..HttpCheck::default()
            }),
            tls: tls.then_some(TlsSpec {
                sni: None,
                verify: Verify::None,
                ca_file: None,
            }),
            budget: Budget {
                inter: Duration::from_secs(2),
                timeout_connect: None,
                timeout_check: None,
            },
        };
        let body = HttpExpect::Body {
            text: "OK".into(),
            negate: false,
        };
        assert!(spec("HTTP/1.0", HttpExpect::default(), false).sends_exact_bytes());
        assert!(!spec("HTTP/1.1", HttpExpect::default(), false).sends_exact_bytes());
        assert!(!spec("HTTP/1.0", body, false).sends_exact_bytes());
        assert!(!spec("HTTP/1.0", HttpExpect::default(), true).sends_exact_bytes());
    }
}
