//! `resolvers NAME` sections (HAProxy 2.6 configuration.txt 5.3.2): the DNS servers lb asks
//! while running for the addresses of servers that name the section. Messages are HAProxy's
//! (`cfg_parse_resolvers` in src/resolvers.c).
use std::{net::SocketAddrV4, time::Duration};

use super::{
    diags::{Diags, show},
    values::{bad_char, bad_name},
};
use crate::config::{
    model::{Nameserver, Resolvers},
    units,
};

/// HAProxy's `DNS_HEADER_SIZE` and `DNS_MAX_UDP_MESSAGE`: bounds of `accepted_payload_size`.
const DNS_HEADER_SIZE: u32 = 12;
const DNS_MAX_UDP_MESSAGE: u32 = 65535;

/// The keywords of the section, for suggestions.
pub(super) const RESOLVERS_KW: &[&str] = &[
    "nameserver",
    "parse-resolv-conf",
    "hold",
    "resolve_retries",
    "timeout",
    "accepted_payload_size",
];

/// `resolvers NAME`: a new section, unless its name is bad or taken.
pub(super) fn open(d: &mut Diags, list: &mut Vec<Resolvers>, args: &[String]) -> Option<usize> {
    let Some(name) = args.get(1).filter(|n| !n.is_empty()) else {
        d.alert("missing name for resolvers section.");
        return None;
    };
    if bad_name(d, "resolvers", name) {
        return None;
    }
    if let Some(other) = list.iter().find(|r| &r.name == name) {
        let (file, line) = (other.origin.file.clone(), other.origin.line);
        d.alert(format!(
            "resolvers '{}' has same name as another resolvers (declared at {file}:{line}).",
            show(name)
        ));
        return None;
    }
    d.too_many(args, 1, 0);
    list.push(Resolvers::new(name, d.here()));
    Some(list.len() - 1)
}

/// One line of a `resolvers` section.
pub(super) fn keyword(d: &mut Diags, r: &mut Resolvers, args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).filter(|a| !a.is_empty());
    match args[0].as_str() {
        "nameserver" => nameserver(d, r, args),
        "parse-resolv-conf" => {
            d.too_many(args, 0, 0);
            match std::fs::read_to_string("/etc/resolv.conf") {
                Ok(text) => resolv_conf(d, r, &text),
                Err(_) => d.alert("failed to open /etc/resolv.conf."),
            }
        }
        "hold" => {
            let (Some(event), Some(time)) = (arg(1), arg(2)) else {
                d.alert(
                    "'hold' expects an <event> and a <time> as arguments. <event> can be either 'valid', 'nx', 'refused', 'timeout', or 'other'",
                );
                return;
            };
            let Some(t) = time_value(d, time, event, "hold") else {
                return;
            };
            let slot = match event {
                "nx" => &mut r.hold.nx,
                "other" => &mut r.hold.other,
                "refused" => &mut r.hold.refused,
                "timeout" => &mut r.hold.timeout,
                "valid" => {
                    d.warn(
                        "'hold valid' has no effect in lb: HAProxy 2.6 uses it only to let a new request for a name (do-resolve, 'set server fqdn') reuse a recent answer, which lb has no use for; lb asks again every 'timeout resolve'.",
                    );
                    &mut r.hold.valid
                }
                "obsolete" => &mut r.hold.obsolete,
                other => {
                    d.alert(format!(
                        "'hold' unknown <event>: '{}', expects either 'nx', 'timeout', 'valid', 'obsolete' or 'other'.",
                        show(other)
                    ));
                    return;
                }
            };
            *slot = t;
        }
        "resolve_retries" => match arg(1) {
            // HAProxy reads it with atoi(): what is not a number is 0, which lb refuses
            // rather than never asking.
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => r.resolve_retries = n,
                _ => d.alert(format!(
                    "'resolve_retries' expects a number of queries of 1 or more (was '{}').",
                    show(v)
                )),
            },
            None => d.alert("'resolve_retries' expects <nb> as argument."),
        },
        "timeout" => {
            let Some(event) = arg(1) else {
                d.alert("'timeout' expects 'retry' or 'resolve' and <time> as arguments.");
                return;
            };
            if event != "retry" && event != "resolve" {
                d.alert(format!(
                    "'timeout' expects 'retry' or 'resolve' and <time> as arguments got '{}'.",
                    show(event)
                ));
                return;
            }
            let Some(time) = arg(2) else {
                d.alert(format!("'timeout {event}' expects <time> as argument."));
                return;
            };
            let Some(t) = time_value(d, time, time, &format!("timeout {event}")) else {
                return;
            };
            // HAProxy accepts 0 and then spins; lb asks at least every millisecond.
            let t = t.max(Duration::from_millis(1));
            if event == "retry" {
                r.timeout_retry = t;
            } else {
                r.timeout_resolve = t;
            }
        }
        "accepted_payload_size" => {
            let Some(v) = arg(1) else {
                d.alert("'accepted_payload_size' expects <nb> as argument.");
                return;
            };
            match v.parse::<u32>() {
                Ok(n) if (DNS_HEADER_SIZE..=DNS_MAX_UDP_MESSAGE).contains(&n) => {
                    r.accepted_payload_size = n as u16
                }
                _ => d.alert(format!(
                    "'accepted_payload_size' must be between {DNS_HEADER_SIZE} and {DNS_MAX_UDP_MESSAGE} inclusive (was {}).",
                    show(v)
                )),
            }
        }
        "resolution_pool_size" => d.alert(
            "'resolution_pool_size' directive is not supported anymore (it never appeared in a stable release).",
        ),
        kw => {
            let hint = super::suggest::did_you_mean(kw, RESOLVERS_KW, "");
            d.alert(format!(
                "unknown keyword '{}' in 'resolvers' section{hint}",
                show(kw)
            ));
        }
    }
}

/// `nameserver ID ADDR:PORT`. lb asks over UDP; `tcp@` (DNS over TCP) is refused.
fn nameserver(d: &mut Diags, r: &mut Resolvers, args: &[String]) {
    let (Some(id), Some(addr)) = (
        args.get(1).filter(|a| !a.is_empty()),
        args.get(2).filter(|a| !a.is_empty()),
    ) else {
        d.alert("'nameserver' expects <name> and <addr>[:<port>] as arguments.");
        return;
    };
    if let Some(c) = bad_char(id) {
        d.alert(format!(
            "character '{}' is not permitted in server name '{}'.",
            show(&c.to_string()),
            show(id)
        ));
        return;
    }
    if let Some(other) = r.nameservers.iter().find(|n| &n.id == id) {
        let (file, line) = (other.origin.file.clone(), other.origin.line);
        d.alert(format!(
            "nameserver '{}' has same name as another nameserver (declared at {file}:{line}).",
            show(id)
        ));
        return;
    }
    if addr.starts_with("tcp@") || addr.starts_with("tcp4@") || addr.starts_with("tcp6@") {
        d.alert(format!(
            "'nameserver {}' : lb asks name servers over UDP only; DNS over TCP ('{}') is not supported.",
            show(id),
            show(addr)
        ));
        return;
    }
    let plain = ["udp@", "udp4@", "ipv4@"]
        .iter()
        .find_map(|p| addr.strip_prefix(p))
        .unwrap_or(addr);
    match parse_addr(plain) {
        Ok(a) => {
            d.too_many(args, 2, 0);
            r.nameservers.push(Nameserver {
                id: id.clone(),
                addr: a,
                origin: d.here(),
            });
        }
        Err(e) => d.alert(format!("'nameserver {}' : {e}", show(id))),
    }
}

/// `IPV4:PORT`; the port is mandatory, as in HAProxy.
fn parse_addr(a: &str) -> Result<SocketAddrV4, String> {
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!("missing port specification in '{}'", show(a)));
    };
    let ip = units::ipv4(host).map_err(|_| {
        format!(
            "'{}' : lb asks name servers by IPv4 address only",
            show(host)
        )
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port '{}'", show(port)))?;
    Ok(SocketAddrV4::new(ip, port))
}

/// The `nameserver` lines of /etc/resolv.conf, named after their address as HAProxy does;
/// port 53. Unusable lines are warnings about /etc/resolv.conf.
fn resolv_conf(d: &mut Diags, r: &mut Resolvers, text: &str) {
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(address) = words.next() else {
            d.warn(format!(
                "parsing [/etc/resolv.conf:{n}] : nameserver line is missing address."
            ));
            continue;
        };
        if r.nameservers.iter().any(|ns| ns.id == address) {
            d.warn(format!(
                "parsing [/etc/resolv.conf:{n}] : generated name for /etc/resolv.conf nameserver '{}' conflicts with another nameserver, it appears to be a duplicate and will be excluded.",
                show(address)
            ));
            continue;
        }
        match units::ipv4(address) {
            Ok(ip) => r.nameservers.push(Nameserver {
                id: address.to_string(),
                addr: SocketAddrV4::new(ip, 53),
                origin: d.here(),
            }),
            Err(_) => d.warn(format!(
                "parsing [/etc/resolv.conf:{n}] : address '{}' could not be recognized, nameserver will be excluded (lb asks IPv4 name servers only).",
                show(address)
            )),
        }
    }
}

/// A time as HAProxy's `parse_time_err` reads it for this section: no trailing characters,
/// at most 2147483647 ms.
fn time_value(d: &mut Diags, v: &str, arg: &str, kw: &str) -> Option<Duration> {
    match units::duration_lenient(v) {
        Ok((t, None)) if t.as_millis() <= i32::MAX as u128 => Some(t),
        Ok((_, None)) => {
            d.alert(format!(
                "timer overflow in argument <{}> to <{kw}>, maximum value is 2147483647 ms (~24.8 days).",
                show(arg)
            ));
            None
        }
        Ok((_, Some(c))) => {
            d.alert(format!(
                "unexpected character '{}' in argument to <{kw}>.",
                show(&c.to_string())
            ));
            None
        }
        Err(e) => {
            // A number with a unit it does not know: HAProxy names the unit's first letter.
            match v
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .chars()
                .next()
            {
                Some(c) if v.starts_with(|c: char| c.is_ascii_digit()) => d.alert(format!(
                    "unexpected character '{}' in argument to <{kw}>.",
                    show(&c.to_string())
                )),
                _ => d.alert(format!("<{kw}>: {e}")),
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{self, Family, Hold};
    use std::time::Duration;

    fn read(text: &str) -> Result<config::Config, Vec<String>> {
        match config::parse_bytes("t.cfg", text.as_bytes(), false) {
            Ok(l) => Ok(l.config),
            Err(e) => Err(e.diagnostics.iter().map(ToString::to_string).collect()),
        }
    }

    const PROXIES: &str = "frontend f\n  bind 10.1.0.1:80\n  default_backend b\nbackend b\n  server web1 app.example:80 resolvers dns resolve-prefer ipv4 resolve-net 10.0.0.0/8,192.168.0.0/16 init-addr none\n";

    #[test]
    fn a_section_and_its_settings() {
        let text = format!(
            "resolvers dns\n  nameserver ns1 10.0.0.53:53\n  nameserver ns2 udp@10.0.0.54:5353\n  resolve_retries 2\n  timeout resolve 500ms\n  timeout retry 200\n  hold valid 5s\n  hold nx 3s\n  hold obsolete 1s\n  accepted_payload_size 1232\n{PROXIES}"
        );
        let c = read(&text).expect("valid");
        let r = c.global.resolvers("dns").expect("the section");
        assert_eq!(r.nameservers.len(), 2);
        assert_eq!(r.nameservers[1].addr.to_string(), "10.0.0.54:5353");
        assert_eq!(r.nameservers[1].origin.line, 3);
        assert_eq!(r.resolve_retries, 2);
        assert_eq!(r.timeout_resolve, Duration::from_millis(500));
        assert_eq!(r.timeout_retry, Duration::from_millis(200));
        assert_eq!(
            r.hold,
            Hold {
                valid: Duration::from_secs(5),
                nx: Duration::from_secs(3),
                obsolete: Duration::from_secs(1),
                ..Hold::default()
            }
        );
        assert_eq!(r.accepted_payload_size, 1232);
        let s = &c.backends[0].servers[0];
        assert_eq!(s.dns.resolvers.as_deref(), Some("dns"));
        assert_eq!(s.dns.prefer, Family::V4);
        assert_eq!(
            s.dns.nets,
            vec![
                ("10.0.0.0".parse().unwrap(), 8),
                ("192.168.0.0".parse().unwrap(), 16)
            ]
        );
    }

    #[test]
    fn haproxy_defaults() {
        let c = read(&format!(
            "resolvers dns\n  nameserver ns1 10.0.0.53:53\n{PROXIES}"
        ))
        .expect("valid");
        let r = &c.global.resolvers[0];
        assert_eq!(r.resolve_retries, 3);
        assert_eq!(r.timeout_resolve, Duration::from_secs(1));
        assert_eq!(r.timeout_retry, Duration::from_secs(1));
        assert_eq!(r.hold.valid, Duration::from_secs(10));
        assert_eq!(r.hold.nx, Duration::from_secs(30));
        assert_eq!(r.hold.obsolete, Duration::ZERO);
        assert_eq!(r.accepted_payload_size, 512);
    }

    #[test]
    fn haproxy_messages_at_their_lines() {
        let text = format!(
            "resolvers dns\n  nameserver ns1 tcp@10.0.0.53:53\n  nameserver ns2 10.0.0.53\n  hold forever 1s\n  hold nx 3x\n  timeout query 1s\n  accepted_payload_size 9\n  resolution_pool_size 10\n  nameservr ns3 10.0.0.1:53\n  nameserver ns4 10.0.0.1:53\n  nameserver ns4 10.0.0.2:53\nresolvers dns\n{PROXIES}"
        );
        let e = read(&text).expect_err("refused");
        assert_eq!(
            e,
            vec![
                "[ALERT] parsing [t.cfg:2] : 'nameserver ns1' : lb asks name servers over UDP only; DNS over TCP ('tcp@10.0.0.53:53') is not supported.",
                "[ALERT] parsing [t.cfg:3] : 'nameserver ns2' : missing port specification in '10.0.0.53'",
                "[ALERT] parsing [t.cfg:4] : 'hold' unknown <event>: 'forever', expects either 'nx', 'timeout', 'valid', 'obsolete' or 'other'.",
                "[ALERT] parsing [t.cfg:5] : unexpected character 'x' in argument to <hold>.",
                "[ALERT] parsing [t.cfg:6] : 'timeout' expects 'retry' or 'resolve' and <time> as arguments got 'query'.",
                "[ALERT] parsing [t.cfg:7] : 'accepted_payload_size' must be between 12 and 65535 inclusive (was 9).",
                "[ALERT] parsing [t.cfg:8] : 'resolution_pool_size' directive is not supported anymore (it never appeared in a stable release).",
                "[ALERT] parsing [t.cfg:9] : unknown keyword 'nameservr' in 'resolvers' section; did you mean 'nameserver' maybe ?",
                "[ALERT] parsing [t.cfg:11] : nameserver 'ns4' has same name as another nameserver (declared at t.cfg:10).",
                "[ALERT] parsing [t.cfg:12] : resolvers 'dns' has same name as another resolvers (declared at t.cfg:1).",
            ]
        );
    }

    #[test]
    fn a_section_without_nameserver_is_said() {
        let text = format!("resolvers dns\n  resolve_retries 2\n{PROXIES}");
        let l = config::parse_bytes("t.cfg", text.as_bytes(), false).expect("valid");
        let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
        assert!(
            w.contains(&"[WARNING] parsing [t.cfg:1] : resolvers 'dns' has no nameserver: the servers that use it keep the address they start with.".to_string()),
            "{w:?}"
        );
    }

    #[test]
    fn a_server_naming_a_missing_section_is_refused() {
        let e = read(PROXIES).expect_err("refused");
        assert_eq!(
            e,
            vec![
                "[ALERT] parsing [t.cfg:5] : 'server b/web1' : unable to find required resolvers 'dns'."
            ]
        );
    }

    #[test]
    fn lb_convert_carries_sections_and_server_keys_to_toml() {
        let text = format!(
            "resolvers dns\n  nameserver ns1 10.0.0.53:53\n  hold nx 3s\n  timeout resolve 500ms\n{PROXIES}"
        );
        let c = read(&text).expect("valid");
        let toml = config::convert::to_toml(&c);
        let n = config::native::parse("t.toml", &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let (a, b) = (&c.global.resolvers[0], &n.global.resolvers[0]);
        assert_eq!(
            (&a.name, a.hold, a.timeout_resolve, a.resolve_retries),
            (&b.name, b.hold, b.timeout_resolve, b.resolve_retries)
        );
        assert_eq!(a.nameservers[0].addr, b.nameservers[0].addr);
        assert_eq!(a.nameservers[0].id, b.nameservers[0].id);
        assert_eq!(c.backends[0].servers[0].dns, n.backends[0].servers[0].dns);
    }

    #[test]
    fn resolv_conf_nameservers() {
        let mut d = super::Diags::new("t.cfg");
        d.line = 3;
        let mut r = config::Resolvers::new("dns", d.here());
        super::resolv_conf(
            &mut d,
            &mut r,
            "# comment\nsearch example\nnameserver 10.0.0.53\nnameserver\nnameserver fe80::1\nnameserver 10.0.0.53\n",
        );
        assert_eq!(r.nameservers.len(), 1);
        assert_eq!(r.nameservers[0].id, "10.0.0.53");
        assert_eq!(r.nameservers[0].addr.to_string(), "10.0.0.53:53");
        let msgs: Vec<String> = d.list.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("[/etc/resolv.conf:4] : nameserver line is missing address."));
    }
}
