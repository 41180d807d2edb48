//! Server addresses given as host names, resolved when a configuration is put to work (at
//! start-up and on every reload; while running, servers with `resolvers` follow DNS through
//! `daemon::dns`), with HAProxy's `init-addr` methods:
//! the address the server state file recorded (`last`), the system's resolver (`libc`), a
//! fixed address, or none (the server starts in maintenance). Parsing keeps the name; this
//! step fills in the address, so the model stays free of I/O.
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use super::{
    diag::{ConfigError, Diagnostic, Severity},
    model::{Config, Family, InitAddr},
};

/// Looks a host name up; the error says why it has no IPv4 address.
pub trait Resolve {
    fn ipv4(&self, name: &str) -> Result<Ipv4Addr, String>;

    /// An address of the `prefer`red family, else of the other (`resolve-prefer`).
    fn ip(&self, name: &str, prefer: Family) -> Result<IpAddr, String> {
        let _ = prefer;
        self.ipv4(name).map(IpAddr::V4)
    }
}

/// libc's getaddrinfo (/etc/hosts, then DNS), through `std`. It blocks: call it before the
/// async runtime starts or from `spawn_blocking`.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn ipv4(&self, name: &str) -> Result<Ipv4Addr, String> {
        let addrs: Vec<SocketAddr> = (name, 0)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .collect();
        first_ipv4(&addrs)
    }

    fn ip(&self, name: &str, prefer: Family) -> Result<IpAddr, String> {
        let addrs: Vec<SocketAddr> = (name, 0)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .collect();
        preferred(&addrs, prefer)
    }
}

/// The first address of family `prefer` in an answer, else its first address. HAProxy 2.6's
/// `init-addr libc` takes getaddrinfo's first answer whatever `resolve-prefer` says (that
/// steers its DNS resolvers); lb cannot translate between families, so it picks the family
/// on purpose: IPv4 unless the server says `resolve-prefer ipv6`.
fn preferred(addrs: &[SocketAddr], prefer: Family) -> Result<IpAddr, String> {
    addrs
        .iter()
        .find(|a| Family::of(a.ip()) == prefer)
        .or(addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| "no address".to_string())
}

/// The first IPv4 address of an answer; an answer with IPv6 addresses only is an error, lb
/// balances IPv4.
fn first_ipv4(addrs: &[SocketAddr]) -> Result<Ipv4Addr, String> {
    addrs
        .iter()
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            if addrs.is_empty() {
                "no address".to_string()
            } else {
                "IPv6 addresses only, lb balances IPv4".to_string()
            }
        })
}

/// Gives every server named by host name its address. `last` answers the address the server
/// state file recorded for (backend, server), if lb loads one. The warnings are returned;
/// a server no method gives an address is an alert (with the warnings) and the configuration
/// cannot be used.
pub fn resolve(
    cfg: &mut Config,
    r: &dyn Resolve,
    last: &dyn Fn(&str, &str) -> Option<IpAddr>,
) -> Result<Vec<Diagnostic>, ConfigError> {
    let mut out = Vec::new();
    for b in &mut cfg.backends {
        for s in &mut b.servers {
            let Some(name) = s.fqdn.clone() else {
                continue;
            };
            let ctx = format!("'server {}/{}'", b.name, s.name);
            let mut why = None;
            let mut found = None;
            let mut parked = false;
            for m in &s.init_addr {
                match m {
                    InitAddr::Last => found = last(&b.name, &s.name),
                    InitAddr::Libc => match r.ip(&name, s.dns.prefer) {
                        Ok(a) => found = Some(a),
                        Err(e) => why = Some(e),
                    },
                    InitAddr::Ip(a) => found = Some(*a),
                    InitAddr::None => {
                        // As HAProxy: no address, the server in maintenance.
                        s.disabled = true;
                        parked = true;
                        out.push(Diagnostic::warning(
                            Some(&s.origin),
                            format!(
                                "{ctx} : could not resolve address '{name}'{}, disabling server.",
                                reason(&why)
                            ),
                        ));
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            match found {
                Some(a) => {
                    s.addr = a;
                    if let (Some(r), true) = (&s.dns.resolvers, a.is_ipv6()) {
                        // The DNS client asks A records only, and a server keeps its family.
                        out.push(Diagnostic::warning(
                            Some(&s.origin),
                            format!(
                                "{ctx} : 'resolvers {r}' has no effect on this server: its address {a} is IPv6 and lb's resolvers ask for IPv4 (A) records only; it keeps this address until a reload."
                            ),
                        ));
                    }
                }
                None if parked => {}
                None => out.push(Diagnostic::alert(
                    Some(&s.origin),
                    format!(
                        "{ctx} : could not resolve address '{name}'{}.",
                        reason(&why)
                    ),
                )),
            }
        }
    }
    if out.iter().any(|d| d.severity == Severity::Alert) {
        return Err(ConfigError { diagnostics: out });
    }
    Ok(out)
}

fn reason(why: &Option<String>) -> String {
    why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Answers from a table, as /etc/hosts would.
    struct Fake(BTreeMap<&'static str, Ipv4Addr>);

    impl Resolve for Fake {
        fn ipv4(&self, name: &str) -> Result<Ipv4Addr, String> {
            self.0
                .get(name)
                .copied()
                .ok_or_else(|| "Name or service not known".into())
        }
    }

    fn fake() -> Fake {
        Fake(BTreeMap::from([(
            "app.example",
            Ipv4Addr::new(10, 0, 0, 7),
        )]))
    }

    fn cfg(server_line: &str) -> Config {
        let text = format!(
            "frontend f\n  bind 10.1.0.1:80\n  default_backend b\nbackend b\n  {server_line}\n"
        );
        match crate::config::parse_bytes("t.cfg", text.as_bytes(), false) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        }
    }

    fn no_state(_: &str, _: &str) -> Option<IpAddr> {
        None
    }

    fn messages(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parsing_keeps_the_name_and_the_default_methods() {
        let c = cfg("server web1 app.example:80");
        let s = &c.backends[0].servers[0];
        assert_eq!(s.fqdn.as_deref(), Some("app.example"));
        assert!(s.addr.is_unspecified());
        assert_eq!(s.port, 80);
        assert_eq!(s.init_addr, InitAddr::DEFAULT);
        let c = cfg("server web1 10.0.0.1:80");
        assert_eq!(c.backends[0].servers[0].fqdn, None);
    }

    #[test]
    fn libc_resolves_by_default() {
        let mut c = cfg("server web1 app.example:80");
        let w = resolve(&mut c, &fake(), &no_state).expect("resolves");
        assert!(w.is_empty());
        assert_eq!(c.backends[0].servers[0].addr, Ipv4Addr::new(10, 0, 0, 7));
    }

    #[test]
    fn an_unknown_name_is_an_error_at_its_line() {
        let mut c = cfg("server web1 nowhere.example:80");
        let e = resolve(&mut c, &fake(), &no_state).expect_err("refused");
        assert_eq!(
            messages(&e.diagnostics),
            [
                "[ALERT] parsing [t.cfg:5] : 'server b/web1' : could not resolve address 'nowhere.example' (Name or service not known)."
            ]
        );
    }

    #[test]
    fn resolvers_say_they_do_not_follow_an_ipv6_address() {
        let text = "resolvers dns\n  nameserver ns1 10.0.0.53:53\nfrontend f\n  bind :::80\n  default_backend b\nbackend b\n  server web1 app.example:80 resolvers dns\n";
        let mut c = match crate::config::parse_bytes("t.cfg", text.as_bytes(), false) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let last = |_: &str, _: &str| "fd00::7".parse::<IpAddr>().ok();
        let w = resolve(&mut c, &fake(), &last).expect("from the state file");
        assert_eq!(
            messages(&w),
            [
                "[WARNING] parsing [t.cfg:7] : 'server b/web1' : 'resolvers dns' has no effect on this server: its address fd00::7 is IPv6 and lb's resolvers ask for IPv4 (A) records only; it keeps this address until a reload."
            ]
        );
    }

    #[test]
    fn last_takes_the_state_files_address_first() {
        let mut c = cfg("server web1 nowhere.example:80");
        let last = |b: &str, s: &str| {
            (b == "b" && s == "web1").then_some(IpAddr::from(Ipv4Addr::new(10, 9, 9, 9)))
        };
        resolve(&mut c, &fake(), &last).expect("from the state file");
        assert_eq!(c.backends[0].servers[0].addr, Ipv4Addr::new(10, 9, 9, 9));
        // `init-addr libc` alone does not look at the file.
        let mut c = cfg("server web1 nowhere.example:80 init-addr libc");
        assert!(resolve(&mut c, &fake(), &last).is_err());
    }

    #[test]
    fn none_starts_the_server_in_maintenance_with_a_warning() {
        let mut c = cfg("server web1 nowhere.example:80 init-addr libc,none");
        let w = resolve(&mut c, &fake(), &no_state).expect("accepted");
        assert_eq!(
            messages(&w),
            [
                "[WARNING] parsing [t.cfg:5] : 'server b/web1' : could not resolve address 'nowhere.example' (Name or service not known), disabling server."
            ]
        );
        let s = &c.backends[0].servers[0];
        assert!(s.disabled && s.addr.is_unspecified());
    }

    #[test]
    fn an_explicit_address_and_default_server() {
        let text = "frontend f\n  bind 10.1.0.1:80\n  default_backend b\nbackend b\n  default-server init-addr libc,10.0.0.9\n  server web1 nowhere.example:80\n  server web2 app.example:80\n";
        let mut c = match crate::config::parse_bytes("t.cfg", text.as_bytes(), false) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        resolve(&mut c, &fake(), &no_state).expect("resolves");
        let addrs: Vec<IpAddr> = c.backends[0].servers.iter().map(|s| s.addr).collect();
        assert_eq!(
            addrs,
            [IpAddr::from([10, 0, 0, 9]), IpAddr::from([10, 0, 0, 7])]
        );
    }

    #[test]
    fn a_server_template_gives_each_server_the_name() {
        let mut c = cfg("server-template web 2-3 app.example:80 check init-addr libc");
        resolve(&mut c, &fake(), &no_state).expect("resolves");
        let got: Vec<(&str, IpAddr, bool)> = c.backends[0]
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.addr, s.check))
            .collect();
        let a = IpAddr::from([10, 0, 0, 7]);
        assert_eq!(got, [("web2", a, true), ("web3", a, true)]);
        assert!(
            c.backends[0]
                .servers
                .iter()
                .all(|s| s.init_addr == [InitAddr::Libc])
        );
    }

    #[test]
    fn a_bad_method_is_refused_at_parse_time() {
        let text = "frontend f\n  bind 10.1.0.1:80\n  default_backend b\nbackend b\n  server web1 app.example:80 init-addr libc,dns\n";
        let e = crate::config::parse_bytes("t.cfg", text.as_bytes(), false).expect_err("refused");
        assert!(
            e.to_string().contains(
                "[t.cfg:5] : 'server b/web1' : 'init-addr' : 'dns' is not a valid init-addr method"
            ),
            "{e}"
        );
    }

    #[test]
    fn ipv6_only_answers_are_refused() {
        let v6: SocketAddr = "[::1]:0".parse().expect("literal");
        let v4: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        assert_eq!(first_ipv4(&[v6, v4]), Ok(Ipv4Addr::LOCALHOST));
        assert_eq!(
            first_ipv4(&[v6]),
            Err("IPv6 addresses only, lb balances IPv4".into())
        );
    }

    #[test]
    fn resolve_prefer_picks_the_family_else_takes_the_other() {
        let v6: SocketAddr = "[fd00::5]:0".parse().expect("literal");
        let v4: SocketAddr = "10.0.0.5:0".parse().expect("literal");
        assert_eq!(preferred(&[v6, v4], Family::V4), Ok(v4.ip()));
        assert_eq!(preferred(&[v6, v4], Family::V6), Ok(v6.ip()));
        assert_eq!(preferred(&[v6], Family::V4), Ok(v6.ip()));
        assert_eq!(preferred(&[], Family::V4), Err("no address".into()));
    }

    #[test]
    fn the_system_resolver_reads_etc_hosts() {
        // `localhost` is in /etc/hosts: no network needed.
        let mut c = cfg("server web1 localhost:80 init-addr libc");
        resolve(&mut c, &SystemResolver, &no_state).expect("localhost resolves");
        assert!(c.backends[0].servers[0].addr.is_loopback());
    }
}
