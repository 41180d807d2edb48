//! `bind ADDR:PORT[-PORT][,...] [params]`, and the address lists HAProxy 1.x allowed on
//! the section line (`frontend main *:80`).
use std::net::IpAddr;

use super::{
    diags::{Diags, clean, show},
    keywords::{L7_GENERIC, ProxyCtx},
    suggest::did_you_mean,
};
use crate::config::{model::*, units};

/// Listening addresses (after port-range expansion) accepted in one file; the data plane
/// holds far fewer, this only keeps `bind :1-65535` repeated a million times from eating RAM.
const MAX_TOTAL_BINDS: usize = 1 << 16;

/// Bind parameters, in the order they are offered as suggestions.
const BIND_KW: &[&str] = &[
    "name",
    "id",
    "nice",
    "process",
    "thread",
    "backlog",
    "maxconn",
    "mss",
    "tfo",
    "defer-accept",
    "v4v6",
    "v6only",
    "transparent",
    "interface",
    "namespace",
    "ssl",
    "crt",
    "crt-list",
    "ca-file",
    "verify",
    "alpn",
    "npn",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "strict-sni",
    "accept-proxy",
    "accept-netscaler-cip",
    "proto",
    "level",
    "severity-output",
    "expose-fd",
    "user",
    "group",
    "uid",
    "gid",
    "mode",
];

const NO_SOCKET: &str =
    "lb answers the VIP in its XDP program, there is no listening socket to tune";
const NO_TLS: &str = "lb forwards the client's bytes as they are and cannot terminate TLS";

/// A bind parameter: (number of values, `Ok(why it has no effect)` or `Err(why it is
/// refused)`).
fn bind_param(kw: &str) -> Option<(usize, Result<&'static str, &'static str>)> {
    Some(match kw {
        "name" | "id" | "nice" | "process" | "thread" | "backlog" | "maxconn" | "mss"
        | "interface" | "namespace" => (1, Ok(NO_SOCKET)),
        "tfo" | "defer-accept" | "transparent" => (0, Ok(NO_SOCKET)),
        "ssl" | "strict-sni" | "npn" => (0, Err(NO_TLS)),
        "crt" | "crt-list" | "ca-file" | "verify" | "alpn" | "ciphers" | "ciphersuites"
        | "ssl-min-ver" | "ssl-max-ver" => (1, Err(NO_TLS)),
        "accept-proxy" | "accept-netscaler-cip" => (
            if kw == "accept-proxy" { 0 } else { 1 },
            Err(
                "lb forwards the client's bytes as they are and cannot strip a PROXY protocol header",
            ),
        ),
        "proto" => (1, Err(L7_GENERIC)),
        "level" | "severity-output" | "expose-fd" | "user" | "group" | "uid" | "gid" | "mode" => {
            (1, Err("it only applies to stats sockets"))
        }
        _ => return None,
    })
}

pub(super) fn bind(c: &mut ProxyCtx) {
    let Some(binds) = c.binds.as_deref_mut() else {
        return;
    };
    let Some(list) = c.args.get(1).filter(|a| !a.is_empty()) else {
        c.d.alert(
            "'bind' expects {<path>|[addr1]:port1[-end1]}{,[addr]:port[-end]}... as arguments.",
        );
        return;
    };
    let args = c.args;
    let arg = |i: usize| args.get(i).map(String::as_str);
    let first = binds.len();
    bind_list(c.d, list, binds, c.total_binds);
    let mut i = 2;
    while let Some(p) = arg(i) {
        if let Some(v6only) = match p {
            "v6only" => Some(true),
            "v4v6" => Some(false),
            _ => None,
        } {
            family_param(c.d, list, p, v6only, &mut binds[first..]);
            i += 1;
            continue;
        }
        let Some((n, verdict)) = bind_param(p) else {
            c.d.alert(format!(
                "'bind {}' in section '{}': unknown keyword '{}'{}",
                show(list),
                c.kind.word(),
                show(p),
                did_you_mean(p, BIND_KW, ".")
            ));
            return;
        };
        if n == 1 && arg(i + 1).is_none() {
            c.d.alert(format!(
                "'bind {}' : '{p}' expects an argument.",
                show(list)
            ));
            return;
        }
        match verdict {
            Ok(why) => {
                c.d.warn(format!("'bind ... {p}' has no effect in lb: {why}."))
            }
            Err(why) => {
                c.d.alert(format!("'bind ... {p}' is not supported by lb: {why}."))
            }
        }
        i += 1 + n;
    }
}

/// `v6only` (IPv6 clients only) or `v4v6` (both families; Linux's default) on the binds of
/// one line. They only mean something on `::` (HAProxy sets the socket option on any IPv6
/// socket; on an exact IPv6 address only IPv6 clients arrive anyway).
fn family_param(d: &mut Diags, list: &str, p: &str, v6only: bool, binds: &mut [Bind]) {
    let mut used = false;
    for b in binds.iter_mut() {
        if b.addr.is_ipv6() && b.is_wildcard() {
            b.v6only = v6only;
            used = true;
        }
    }
    if !used && !binds.is_empty() {
        d.warn(format!(
            "'bind {} {p}' has no effect: it only changes which clients a ':::PORT' bind serves.",
            show(list)
        ));
    }
}

/// `ADDR:PORT[-PORT][,ADDR:PORT...]` as in `bind` (and HAProxy 1.x section lines).
pub(super) fn bind_list(d: &mut Diags, list: &str, out: &mut Vec<Bind>, total: &mut usize) {
    let here = d.here();
    for item in list.split(',') {
        match bind_addr(item) {
            Ok((addr, lo, hi, proto)) => {
                let n = (hi - lo) as usize + 1;
                if *total + n > MAX_TOTAL_BINDS {
                    d.alert(format!(
                        "'{}': too many listening addresses (more than {MAX_TOTAL_BINDS} in the file).",
                        show(item)
                    ));
                    return;
                }
                *total += n;
                for port in lo..=hi {
                    out.push(Bind {
                        addr,
                        port,
                        proto,
                        v6only: false,
                        origin: here.clone(),
                    });
                }
            }
            Err(e) => d.alert(format!("'bind {}' : {}", show(item), clean(&e))),
        }
    }
}

/// One `[family@]ADDR:PORT[-PORT]` of a bind line. As HAProxy: the port follows the last
/// colon (`:::80` is `::` port 80), an IPv6 address may be bracketed (`[::]:80`), `*` or
/// nothing is IPv4's any address (`ipv6@:80` IPv6's).
fn bind_addr(item: &str) -> Result<(IpAddr, u16, u16, Proto), String> {
    use crate::config::model::Family;
    let (family, proto, rest) = match item.split_once('@') {
        None => (None, Proto::Tcp, item),
        Some(("ipv4" | "tcp" | "tcp4", r)) => (Some(Family::V4), Proto::Tcp, r),
        Some(("ipv6" | "tcp6", r)) => (Some(Family::V6), Proto::Tcp, r),
        // lb extension: HAProxy has no UDP proxies, lb balances UDP too.
        Some(("udp" | "udp4", r)) => (Some(Family::V4), Proto::Udp, r),
        Some(("udp6", r)) => (Some(Family::V6), Proto::Udp, r),
        Some((p, _)) => {
            return Err(format!(
                "lb listens on IP addresses only, not on '{}@' sockets",
                show(p)
            ));
        }
    };
    if rest.starts_with('/') {
        return Err("lb listens on IP addresses only, not on UNIX sockets".into());
    }
    let (addr, ports) = units::split_host_port(rest)?;
    let Some(ports) = ports else {
        return Err(format!("missing port specification in '{}'", show(rest)));
    };
    let addr = match addr {
        "" | "*" => family.unwrap_or(Family::V4).any(),
        a => units::ip(a).map_err(|e| format!("{e}{}", units::v6_port_hint(rest, a)))?,
    };
    if family.is_some_and(|f| f != Family::of(addr)) {
        return Err(format!("invalid address: '{addr}' in '{}'", show(item)));
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (units::port(a)?, units::port(b)?);
            if a > b {
                return Err(format!("invalid port range '{a}-{b}'"));
            }
            (a, b)
        }
        None => {
            let p = units::port(ports)?;
            (p, p)
        }
    };
    Ok((addr, lo, hi, proto))
}
