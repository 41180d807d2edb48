//! `tcp-request connection` rules as `LB_ACCESS` entries (pure): per frontend and TCP port,
//! one prefix for each network the rules name and one for all addresses, each holding what
//! the rules decide for the addresses it is the longest match of. Inside such a region every
//! network of the rules contains all addresses or none, so the decision is one value
//! (`config::access::decide`), and the trie's longest match is HAProxy's first matching rule.
use std::net::IpAddr;

use lb_common::{ACCESS_ACCEPT, ACCESS_FIXED_BITS, ACCESS_REJECT, AccessKeyOf, addr6_from_octets};

use super::layout::addr_be;
use crate::config::{
    Family, Frontend,
    access::{Verdict, decide, regions},
};

/// One `LB_ACCESS` (`A = u32`) or `LB6_ACCESS` (`A = Addr6`) entry: prefix length (over the
/// whole key), key, value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessEntryOf<A> {
    pub prefix: u32,
    pub key: AccessKeyOf<A>,
    pub value: u32,
}

pub type AccessEntry = AccessEntryOf<u32>;
pub type AccessEntry6 = AccessEntryOf<lb_common::Addr6>;

/// The IPv4 entries for frontend number `fid`; none when it has no rule (no entry:
/// accepted) or no bind serving IPv4.
pub fn entries(fid: u32, f: &Frontend) -> Vec<AccessEntry> {
    entries_of(fid, f, Family::V4, |a| match a {
        IpAddr::V4(a) => addr_be(a),
        IpAddr::V6(_) => 0,
    })
}

/// The IPv6 entries for frontend number `fid` (`LB6_ACCESS`).
pub fn entries6(fid: u32, f: &Frontend) -> Vec<AccessEntry6> {
    entries_of(fid, f, Family::V6, |a| match a {
        IpAddr::V6(a) => addr6_from_octets(a.octets()),
        IpAddr::V4(_) => [0; 4],
    })
}

fn entries_of<A>(
    fid: u32,
    f: &Frontend,
    family: Family,
    key_addr: impl Fn(IpAddr) -> A,
) -> Vec<AccessEntryOf<A>> {
    if f.access.is_empty() || !f.serves(family) {
        return Vec::new();
    }
    let nets = regions(&f.access, family);
    let ports = f.tcp_ports();
    let mut out = Vec::with_capacity(ports.len() * nets.len());
    for port in ports {
        for net in &nets {
            let value = match decide(&f.access, net, port) {
                Verdict::Accept => ACCESS_ACCEPT,
                Verdict::Reject => ACCESS_REJECT,
            };
            out.push(AccessEntryOf {
                prefix: ACCESS_FIXED_BITS + u32::from(net.len),
                key: AccessKeyOf::new(fid, port.to_be(), key_addr(net.addr)),
                value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native;

    fn frontend(rules: &str) -> Frontend {
        let toml = format!(
            r#"
[frontend.web]
bind = ["10.0.0.1:80", "10.0.0.1:22", "10.0.0.1:53/udp"]
default_backend = "b"
tcp_request_connection = [{rules}]

[backend.b]
server = [{{ name = "s", address = "10.1.0.10:80" }}]
"#
        );
        let cfg = native::parse("t.toml", &toml).expect("config");
        cfg.frontends[0].clone()
    }

    /// What the trie answers for `addr` on `port`: the longest matching entry's value.
    fn lookup(es: &[AccessEntry], addr: [u8; 4], port: u16) -> Option<u32> {
        let a = u32::from_be_bytes(addr);
        es.iter()
            .filter(|e| e.key.port == port.to_be())
            .filter(|e| {
                let len = e.prefix - ACCESS_FIXED_BITS;
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from_be(e.key.addr) == a & mask
            })
            .max_by_key(|e| e.prefix)
            .map(|e| e.value)
    }

    #[test]
    fn longest_match_is_the_first_matching_rule() {
        let es = entries(
            3,
            &frontend(
                r#""accept if { src 10.1.0.0/16 }", "reject if { src 10.0.0.0/8 } { dst_port 22 }", "reject if { src 192.168.0.0/16 }""#,
            ),
        );
        // Two TCP ports (the UDP bind takes no rule) times three networks and "all".
        assert_eq!(es.len(), 8);
        assert!(es.iter().all(|e| e.key.frontend == 3u16.to_be()));
        let reject = Some(ACCESS_REJECT);
        let accept = Some(ACCESS_ACCEPT);
        assert_eq!(lookup(&es, [10, 1, 2, 3], 22), accept);
        assert_eq!(lookup(&es, [10, 2, 2, 3], 22), reject);
        assert_eq!(lookup(&es, [10, 2, 2, 3], 80), accept);
        assert_eq!(lookup(&es, [192, 168, 9, 9], 80), reject);
        assert_eq!(lookup(&es, [8, 8, 8, 8], 80), accept);
    }

    #[test]
    fn unless_rejects_the_rest() {
        let es = entries(
            0,
            &frontend(r#""reject unless { src 10.0.0.0/8 127.0.0.1 }""#),
        );
        assert_eq!(lookup(&es, [10, 9, 9, 9], 80), Some(ACCESS_ACCEPT));
        assert_eq!(lookup(&es, [127, 0, 0, 1], 80), Some(ACCESS_ACCEPT));
        assert_eq!(lookup(&es, [127, 0, 0, 2], 80), Some(ACCESS_REJECT));
        assert!(entries(0, &frontend("")).is_empty());
    }
}
