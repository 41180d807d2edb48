//! Value syntaxes shared by the config front ends, with HAProxy's rules.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

/// HAProxy time: a number with an optional unit `us`, `ms`, `s`, `m`, `h`, `d`; bare numbers
/// are milliseconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    match duration_lenient(s)? {
        (d, None) => Ok(d),
        (_, Some(c)) => Err(format!(
            "unexpected character '{c}' in time '{}' (units are us, ms, s, m, h, d)",
            s.trim()
        )),
    }
}

/// [`duration`] as HAProxy 2.6 reads it: characters after a known unit are ignored (it
/// warns), so `15min` is 15 minutes. Returns the first ignored character, if any.
pub fn duration_lenient(s: &str) -> Result<(Duration, Option<char>), String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a time (expected a number with an optional unit us, ms, s, m, h or d)"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("time '{s}' is too large"))?;
    // As HAProxy's parse_time_err: the unit is read from its first letters only.
    let (per_unit_us, len): (u64, usize) = if unit.is_empty() {
        (1_000, 0)
    } else if unit.starts_with("us") {
        (1, 2)
    } else if unit.starts_with("ms") {
        (1_000, 2)
    } else {
        match unit.as_bytes()[0] {
            b's' => (1_000_000, 1),
            b'm' => (60_000_000, 1),
            b'h' => (3_600_000_000, 1),
            b'd' => (86_400_000_000, 1),
            _ => {
                return Err(format!(
                    "unexpected character '{}' in time '{s}' (units are us, ms, s, m, h, d)",
                    unit.chars().next().unwrap_or(' ')
                ));
            }
        }
    };
    let d = n
        .checked_mul(per_unit_us)
        .map(Duration::from_micros)
        .ok_or_else(|| format!("time '{s}' is too large"))?;
    Ok((d, unit[len..].chars().next()))
}

/// A hexadecimal string as bytes (`tcp-check send-binary`, `expect binary`).
pub fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A TCP/UDP port, 1..=65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range (1-65535)")),
        Err(_) => Err(format!("'{s}' is not a port number")),
    }
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))
}

/// A DNS host name (`app.example`, `db-1`): labels of letters, digits, '-' and '_', at least
/// one letter (so a mistyped dotted quad stays an address error).
/// `NET[,NET...]` (`resolve-net`): IPv4 networks (`10.0.0.0/8`, or an address: /32). The
/// error is the first word that is not one.
pub fn networks(v: &str) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    v.split(',')
        .map(|n| {
            let (ip, len) = n.split_once('/').unwrap_or((n, "32"));
            match (ipv4(ip), len.parse::<u8>()) {
                (Ok(ip), Ok(len)) if len <= 32 => Ok((ip, len)),
                _ => Err(n.to_string()),
            }
        })
        .collect()
}

pub fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.contains(|c: char| c.is_ascii_alphabetic())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// An IPv4 or IPv6 address (`10.0.0.1`, `2001:db8::1`, `[2001:db8::1]`).
pub fn ip(s: &str) -> Result<IpAddr, String> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse()
        .map_err(|_| format!("'{s}' is not an IP address"))
}

/// HAProxy's `ADDR:PORT`: the port is what follows the LAST colon (so `2001:db8::1:80` is
/// `2001:db8::1` port 80, and `fd00::10` is `fd00:` port 10), unless the address is in
/// brackets (`[fd00::10]`, `[fd00::10]:80`). The port is `None` when there is none.
pub fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("missing ']' in '{s}'"));
        };
        return match after {
            "" => Ok((host, None)),
            a => match a.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err(format!("unexpected '{a}' after ']' in '{s}'")),
            },
        };
    }
    Ok(match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    })
}

/// A hint for an address that is not one because its last colon was read as the port
/// (`fd00::10`, `2001:db8::1`): how to write it so that it is.
pub fn v6_port_hint(whole: &str, host: &str) -> String {
    hint(whole, host, true)
}

/// [`v6_port_hint`] where no port may be given (`addr`): bracketing is the only way.
pub fn v6_bracket_hint(whole: &str, host: &str) -> String {
    hint(whole, host, false)
}

fn hint(whole: &str, host: &str, port_ok: bool) -> String {
    if !(host.ends_with(':') && whole.parse::<Ipv6Addr>().is_ok()) {
        return String::new();
    }
    let or_port = if port_ok {
        format!(" or '{whole}:PORT'")
    } else {
        String::new()
    };
    format!(" (as in HAProxy, what follows the last colon is the port: write '[{whole}]'{or_port})")
}

/// `ADDR:PORT` or `[ADDR]:PORT`, where ADDR may be `*`, empty, `0.0.0.0` or `::` for "any
/// address" (the unspecified address of its family; `*` and empty are IPv4's).
pub fn ip_endpoint(s: &str) -> Result<(IpAddr, u16), String> {
    let (addr, p) = split_host_port(s)?;
    let Some(p) = p else {
        return Err(format!("'{s}' has no port (expected ADDRESS:PORT)"));
    };
    let port = port(p).map_err(|e| format!("in '{s}': {e}"))?;
    match addr {
        "" | "*" => Ok((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        a => Ok((
            ip(a).map_err(|e| format!("{e}{}", v6_port_hint(s, a)))?,
            port,
        )),
    }
}

/// `ADDR:PORT` (IPv4), where ADDR may be `*` or empty for "any" (`None`).
pub fn endpoint(s: &str) -> Result<(Option<Ipv4Addr>, u16), String> {
    let Some((addr, p)) = s.rsplit_once(':') else {
        return Err(format!("'{s}' has no port (expected ADDRESS:PORT)"));
    };
    let port = port(p).map_err(|e| format!("in '{s}': {e}"))?;
    match addr {
        "" | "*" | "0.0.0.0" => Ok((None, port)),
        a => Ok((Some(ipv4(a)?), port)),
    }
}

/// `MIN-MAX` ports, both inclusive.
pub fn port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range (expected MIN-MAX)"))?;
    let (a, b) = (port(a.trim())?, port(b.trim())?);
    if a > b {
        return Err(format!("port range '{s}' is empty (MIN > MAX)"));
    }
    Ok((a, b))
}

/// Status list as in `http-check expect status 200,301-399`.
pub fn status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> {
        match c.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(format!("'{c}' is not an HTTP status code (100-599)")),
        }
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b {
                    Err(format!("status range '{part}' is empty"))
                } else {
                    Ok((a, b))
                }
            }
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

/// Status codes 100-599 not in `r`.
pub fn status_complement(r: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = 100u16;
    let mut sorted = r.to_vec();
    sorted.sort_unstable();
    for (a, b) in sorted {
        if a > start {
            out.push((start, a - 1));
        }
        start = start.max(b.saturating_add(1));
    }
    if start <= 599 {
        out.push((start, 599));
    }
    out
}

/// A regular expression of `http-check expect rstatus|rstring`, compiled. Searched anywhere
/// in the subject, like HAProxy's `regex_exec`. HAProxy uses PCRE; this is the `regex` crate's
/// syntax, the same for everything but look-around and back-references.
pub fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        // Config regexes are small; a pathological one is refused rather than built.
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The crate's message spans lines (pattern, caret, error); keep the error.
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text.lines().last().unwrap_or_default())
                .to_string();
            format!("regex '{pattern}' is invalid: {why}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_haproxy_units() {
        assert_eq!(duration("3000"), Ok(Duration::from_millis(3000)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(
            duration("10x")
                .unwrap_err()
                .contains("unexpected character 'x'")
        );
        assert!(duration("s").unwrap_err().contains("not a time"));
        // HAProxy 2.6 reads the unit's first letters and ignores the rest (with a warning).
        let min = Duration::from_secs(15 * 60);
        assert_eq!(duration_lenient("15min"), Ok((min, Some('i'))));
        assert_eq!(
            duration_lenient("10sec"),
            Ok((Duration::from_secs(10), Some('e')))
        );
        assert_eq!(
            duration_lenient("5mss"),
            Ok((Duration::from_millis(5), Some('s')))
        );
        assert_eq!(duration_lenient("10s"), Ok((Duration::from_secs(10), None)));
        assert!(duration_lenient("3u").is_err() && duration_lenient("1x").is_err());
        assert!(
            duration("15min")
                .unwrap_err()
                .contains("unexpected character 'i'")
        );
        assert!(duration("").is_err());
        assert!(
            duration("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn ip_endpoints_take_the_port_after_the_last_colon() {
        let v6 = |s: &str| IpAddr::V6(s.parse().expect("v6"));
        assert_eq!(ip_endpoint(":::80"), Ok((v6("::"), 80)));
        assert_eq!(ip_endpoint("[::]:80"), Ok((v6("::"), 80)));
        assert_eq!(ip_endpoint("2001:db8::1:80"), Ok((v6("2001:db8::1"), 80)));
        assert_eq!(ip_endpoint("[2001:db8::1]:80"), Ok((v6("2001:db8::1"), 80)));
        assert_eq!(
            ip_endpoint("*:80"),
            Ok((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80))
        );
        assert!(ip_endpoint("[::1]").unwrap_err().contains("no port"));
        assert!(ip_endpoint("[::1:80").unwrap_err().contains("missing ']'"));
        assert_eq!(
            ip_endpoint("fd00::10").unwrap_err(),
            "'fd00:' is not an IP address (as in HAProxy, what follows the last colon is the port: write '[fd00::10]' or 'fd00::10:PORT')"
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("*:80"), Ok((None, 80)));
        assert_eq!(endpoint(":80"), Ok((None, 80)));
        assert_eq!(
            endpoint("10.0.0.1:8080"),
            Ok((Some(Ipv4Addr::new(10, 0, 0, 1)), 8080))
        );
        assert!(endpoint("10.0.0.1").unwrap_err().contains("no port"));
        assert!(
            endpoint("10.0.0.300:80")
                .unwrap_err()
                .contains("not an IPv4 address")
        );
        assert!(endpoint("10.0.0.1:0").unwrap_err().contains("port 0"));
        assert!(
            endpoint("10.0.0.1:70000")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            endpoint("10.0.0.1:http")
                .unwrap_err()
                .contains("not a port number")
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(port_range("10000-32767"), Ok((10000, 32767)));
        assert!(port_range("5-4").is_err());
        assert_eq!(status_ranges("200"), Ok(vec![(200, 200)]));
        assert_eq!(
            status_ranges("200,301-399"),
            Ok(vec![(200, 200), (301, 399)])
        );
        assert!(status_ranges("99").is_err());
        assert!(status_ranges("399-301").is_err());
    }
}
