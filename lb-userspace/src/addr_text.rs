//! Addresses as HAProxy prints them, for either family (pure). HAProxy has two forms, and
//! which one a place uses is part of its output (see `scripts/haproxy-ipv6-reference.sh`):
//! - log lines (`%ci:%cp`), `srv_addr`, `show servers conn`: the address as `inet_ntop`
//!   writes it, then `:port` without brackets: `fd00:16::2:33906`;
//! - `show stat`'s `addr`: bracketed for IPv6, `[fd00:16::10]:8000` (`sa2str`).
//!
//! Rust's `Display` for `Ipv6Addr` follows RFC 5952 as glibc's `inet_ntop` does, but for
//! one case: an IPv4-compatible address (`::a.b.c.d`, deprecated but still printed so by
//! glibc), which Rust writes in hex. [`ip`] is `inet_ntop`.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use lb_common::{Addr6, addr6_octets};

/// An address as `inet_ntop` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

/// `inet_ntop` text of `a`.
pub fn ip(a: impl Into<IpAddr>) -> Ip {
    Ip(a.into())
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => a.fmt(f),
            IpAddr::V6(a) => {
                let s = a.segments();
                // glibc prints the last 32 bits dotted when the six words before them are
                // zero (and they are not `::` or `::1`-like, whose zero run is longer).
                if s[..6] == [0; 6] && s[6] != 0 {
                    let o = a.octets();
                    write!(f, "::{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]))
                } else {
                    a.fmt(f)
                }
            }
        }
    }
}

/// `ADDR:PORT` as HAProxy's log lines and `show servers conn` put it: never bracketed, so an
/// IPv6 address is followed by one more colon and the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogAddrPort(pub SocketAddr);

impl fmt::Display for LogAddrPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", ip(self.0.ip()), self.0.port())
    }
}

/// `ADDR:PORT` as `show stat`'s `addr` column puts it: `[v6]:port` for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatAddrPort(pub SocketAddr);

impl fmt::Display for StatAddrPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ip() {
            IpAddr::V4(_) => write!(f, "{}:{}", ip(self.0.ip()), self.0.port()),
            IpAddr::V6(_) => write!(f, "[{}]:{}", ip(self.0.ip()), self.0.port()),
        }
    }
}

/// An IPv6 address as the maps hold it (`Addr6`, packet order).
pub fn ipv6_of(a: Addr6) -> Ipv6Addr {
    Ipv6Addr::from(addr6_octets(a))
}

/// An address as the maps hold it, of either family (`u32` or `Addr6`, packet order), so
/// code that reads both families' tables is written once.
pub trait MapAddr: Copy {
    fn ip(self) -> IpAddr;

    /// With a port as the maps hold it (network byte order).
    fn with_port(self, port_be: u16) -> SocketAddr {
        SocketAddr::new(self.ip(), u16::from_be(port_be))
    }
}

impl MapAddr for u32 {
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.to_ne_bytes()))
    }
}

impl MapAddr for Addr6 {
    fn ip(self) -> IpAddr {
        IpAddr::V6(ipv6_of(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn log_form_is_haproxy_tcplog_client() {
        // From haproxy-2.6-ipv6-datagrams.txt: `fd00:16::2:33906 [...]`, and an IPv4 client
        // on a dual-stack socket: `::ffff:127.0.0.1:32982`.
        assert_eq!(
            LogAddrPort(sa("[fd00:16::2]:33906")).to_string(),
            "fd00:16::2:33906"
        );
        assert_eq!(
            LogAddrPort(sa("[::ffff:127.0.0.1]:32982")).to_string(),
            "::ffff:127.0.0.1:32982"
        );
        assert_eq!(
            LogAddrPort(sa("10.200.0.2:49342")).to_string(),
            "10.200.0.2:49342"
        );
    }

    #[test]
    fn stat_form_brackets_ipv6_only() {
        // `show stat` addr column of the captures: `[fd00:16::10]:8000`, `127.0.0.1:18081`.
        assert_eq!(
            StatAddrPort(sa("[fd00:16::10]:8000")).to_string(),
            "[fd00:16::10]:8000"
        );
        assert_eq!(
            StatAddrPort(sa("127.0.0.1:18081")).to_string(),
            "127.0.0.1:18081"
        );
    }

    #[test]
    fn ip_is_glibc_inet_ntop() {
        let t = |s: &str| ip(s.parse::<IpAddr>().expect("ip")).to_string();
        assert_eq!(t("fd00:16::10"), "fd00:16::10");
        assert_eq!(t("::1"), "::1");
        assert_eq!(t("::"), "::");
        assert_eq!(t("::ffff:127.0.0.1"), "::ffff:127.0.0.1");
        // IPv4-compatible: glibc prints it dotted, Rust's Display in hex.
        assert_eq!(t("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(t("::0.0.1.2"), "::102");
        // RFC 5952: the first longest zero run, never a single zero word.
        assert_eq!(t("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(t("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(t("FD00::ABCD"), "fd00::abcd");
    }

    #[test]
    fn map_addresses_read_in_packet_order() {
        let a = "fd00:16::2".parse::<Ipv6Addr>().expect("v6");
        assert_eq!(ipv6_of(lb_common::addr6_from_octets(a.octets())), a);
        assert_eq!(
            lb_common::addr6_from_octets(a.octets()).with_port(8000u16.to_be()),
            sa("[fd00:16::2]:8000")
        );
        assert_eq!(
            u32::from_ne_bytes([10, 200, 0, 2]).with_port(80u16.to_be()),
            sa("10.200.0.2:80")
        );
    }
}
