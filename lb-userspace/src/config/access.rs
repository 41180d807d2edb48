//! L4 access rules: HAProxy's `tcp-request connection accept|reject [if|unless COND]` on the
//! client address (`src`) and the port it connected to (`dst_port`). The data plane enforces
//! them on each new TCP connection before any state exists (`dataplane::access` compiles them
//! into `LB_ACCESS`, an LPM trie). Pure logic: the condition language, its parser and its
//! evaluation.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::model::{Family, Origin};

/// What a rule decides when its condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
}

/// One `tcp-request connection` rule. The first rule whose condition holds decides; none:
/// accepted (HAProxy's rule).
#[derive(Clone, Debug, PartialEq)]
pub struct AccessRule {
    pub verdict: Verdict,
    pub cond: Cond,
    pub origin: Origin,
}

/// HAProxy's condition: terms side by side must all hold, `||` separates alternatives;
/// `unless` negates the whole. No alternative at all: the rule has no condition.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Cond {
    pub unless: bool,
    pub any: Vec<Vec<Term>>,
}

/// A test, maybe negated (`!`).
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub not: bool,
    pub test: Test,
}

/// The criteria lb can evaluate before a connection carries any data.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// The client address is in one of these networks.
    Src(Vec<Net>),
    /// The destination port is in one of these inclusive ranges.
    DstPort(Vec<(u16, u16)>),
}

/// An IPv4 or IPv6 network; its host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    /// Every address of family `f`.
    pub fn all(f: Family) -> Net {
        Net {
            addr: f.any(),
            len: 0,
        }
    }

    pub fn new(addr: IpAddr, len: u8) -> Net {
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Net { addr, len }
    }

    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// The longest prefix of its family (32 or 128).
    fn host_len(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Whether every address of `other` is in this network (never across families).
    pub fn covers(&self, other: &Net) -> bool {
        self.family() == other.family()
            && self.len <= other.len
            && Net::new(other.addr, self.len) == *self
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == self.host_len() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl Test {
    /// Whether the test holds for every client in `region` connecting to `port`. Exact when
    /// `region` is one of the rules' networks (or all addresses) and the addresses meant are
    /// those no longer network of the rules contains: each network then contains all of
    /// them or none (see `dataplane::access`).
    fn holds(&self, region: &Net, port: u16) -> bool {
        match self {
            Test::Src(nets) => nets.iter().any(|n| n.covers(region)),
            Test::DstPort(ranges) => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)),
        }
    }

    pub fn criterion(&self) -> &'static str {
        match self {
            Test::Src(_) => "src",
            Test::DstPort(_) => "dst_port",
        }
    }

    /// Both tests on one criterion, as one: several `acl` lines of a name add values.
    pub fn merge(self, other: Test) -> Result<Test, Test> {
        match (self, other) {
            (Test::Src(mut a), Test::Src(b)) => {
                a.extend(b);
                Ok(Test::Src(a))
            }
            (Test::DstPort(mut a), Test::DstPort(b)) => {
                a.extend(b);
                Ok(Test::DstPort(a))
            }
            (a, _) => Err(a),
        }
    }

    /// Every network the test names.
    pub fn nets(&self) -> &[Net] {
        match self {
            Test::Src(nets) => nets,
            Test::DstPort(_) => &[],
        }
    }
}

impl Cond {
    pub fn holds(&self, region: &Net, port: u16) -> bool {
        let any = self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|t| t.test.holds(region, port) != t.not));
        any != self.unless
    }
}

/// What the rules decide for the clients of `region` (see [`Test::holds`]) on `port`.
pub fn decide(rules: &[AccessRule], region: &Net, port: u16) -> Verdict {
    rules
        .iter()
        .find(|r| r.cond.holds(region, port))
        .map_or(Verdict::Accept, |r| r.verdict)
}

/// The networks of family `f` the rules name and all its addresses, sorted, once each: the
/// regions whose clients the rules treat alike (see [`Test::holds`]).
pub fn regions(rules: &[AccessRule], f: Family) -> Vec<Net> {
    let mut nets: Vec<Net> = rules
        .iter()
        .flat_map(|r| r.cond.any.iter().flatten())
        .flat_map(|t| t.test.nets().iter().copied())
        .filter(|n| n.family() == f)
        .chain([Net::all(f)])
        .collect();
    nets.sort();
    nets.dedup();
    nets
}

/// `src` and `dst_port` with their values (ACL flags `-m ip`, `-m int`, `--` allowed).
pub fn parse_test(criterion: &str, words: &[&str]) -> Result<Test, String> {
    let mut values = Vec::new();
    let mut it = words.iter();
    while let Some(&w) = it.next() {
        match w {
            "--" => values.extend(it.by_ref().copied()),
            "-m" => match (criterion, it.next().copied()) {
                ("src", Some("ip")) | ("dst_port", Some("int")) => {}
                (_, m) => {
                    return Err(format!(
                        "match method '-m {}' is not supported by lb for '{criterion}'.",
                        m.unwrap_or("")
                    ));
                }
            },
            _ if w.starts_with('-') && w.len() > 1 => {
                return Err(format!(
                    "ACL flag '{w}' is not supported by lb (values are written in the rule)."
                ));
            }
            _ => values.push(w),
        }
    }
    if values.is_empty() {
        return Err(format!("'{criterion}' expects at least one value."));
    }
    match criterion {
        "src" => values
            .iter()
            .map(|v| net(v))
            .collect::<Result<_, _>>()
            .map(Test::Src),
        "dst_port" => ports(&values).map(Test::DstPort),
        _ => Err(format!(
            "'{criterion}' cannot be tested by lb: its access rules decide on the client address ('src') and the port ('dst_port') when a connection starts, before any data."
        )),
    }
}

/// `ADDR`, `ADDR/LEN` or `ADDR/MASK`.
fn net(v: &str) -> Result<Net, String> {
    let (a, len) = v.split_once('/').map_or((v, None), |(a, l)| (a, Some(l)));
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("'{v}' is not an IP address or network."))?;
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = match len {
        None => max,
        Some(l) => match (l.parse::<u8>(), l.parse::<Ipv4Addr>(), addr) {
            (Ok(n), _, _) if n <= max => n,
            (_, Ok(m), IpAddr::V4(_))
                if u32::from(m).leading_ones() + u32::from(m).trailing_zeros() == 32 =>
            {
                u32::from(m).leading_ones() as u8
            }
            _ => return Err(format!("'{v}': '{l}' is not a prefix length or netmask.")),
        },
    };
    Ok(Net::new(addr, len))
}

/// Ports, `LO:HI` ranges, or one operator (`eq`, `ge`, `gt`, `le`, `lt`) and a port.
fn ports(values: &[&str]) -> Result<Vec<(u16, u16)>, String> {
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("'{s}' is not a port number."))
    };
    if let [op @ ("eq" | "ge" | "gt" | "le" | "lt"), p] = values {
        let p = port(p)?;
        let range = match *op {
            "eq" => Some((p, p)),
            "ge" => Some((p, u16::MAX)),
            "gt" => p.checked_add(1).map(|lo| (lo, u16::MAX)),
            "le" => Some((0, p)),
            _ => p.checked_sub(1).map(|hi| (0, hi)),
        };
        return Ok(range.into_iter().collect());
    }
    values
        .iter()
        .map(|v| match v.split_once(':') {
            Some((lo, hi)) => Ok((port(lo)?, port(hi)?)),
            None => port(v).map(|p| (p, p)),
        })
        .collect()
}

/// `if|unless TERMS`: `{ CRITERION VALUES }` anonymous tests and named ACLs (`named` reads
/// them), each maybe negated with `!`, side by side (and), alternatives separated by `||`
/// or `or`. No words: no condition.
pub fn parse_cond(
    words: &[&str],
    named: &dyn Fn(&str) -> Result<Test, String>,
) -> Result<Cond, String> {
    let Some((&kw, mut rest)) = words.split_first() else {
        return Ok(Cond::default());
    };
    let unless = match kw {
        "if" => false,
        "unless" => true,
        w => {
            return Err(format!(
                "expects 'if' or 'unless' followed by a condition, not '{w}'."
            ));
        }
    };
    let mut any = vec![Vec::new()];
    let mut not = false;
    while let Some((&w, tail)) = rest.split_first() {
        rest = tail;
        if matches!(w, "||" | "or") {
            if not || any.last().is_some_and(Vec::is_empty) {
                return Err(format!("'{w}' must stand between two conditions."));
            }
            any.push(Vec::new());
            continue;
        }
        let word = w.trim_start_matches('!');
        not ^= (w.len() - word.len()) % 2 == 1;
        let test = match word {
            "" => continue, // `! { ... }`: the negation stands alone
            "{" => {
                let Some(end) = rest.iter().position(|&w| w == "}") else {
                    return Err("missing '}' after an anonymous ACL.".into());
                };
                let (inner, after) = rest.split_at(end);
                rest = &after[1..];
                let Some((crit, values)) = inner.split_first() else {
                    return Err(
                        "an anonymous ACL needs a criterion and values: '{ src 10.0.0.0/8 }'."
                            .into(),
                    );
                };
                parse_test(crit, values)?
            }
            name => named(name)?,
        };
        if let Some(all) = any.last_mut() {
            all.push(Term { not, test });
        }
        not = false;
    }
    if not || any.iter().any(Vec::is_empty) {
        return Err(format!("'{kw}' expects a condition."));
    }
    Ok(Cond { unless, any })
}

/// `accept|reject|silent-drop [if|unless COND]`, the words after `tcp-request connection`.
/// `silent-drop` is `reject` in lb: XDP drops the SYN either way.
pub fn parse_rule(
    words: &[&str],
    named: &dyn Fn(&str) -> Result<Test, String>,
    origin: Origin,
) -> Result<AccessRule, String> {
    let verdict = match words.first() {
        Some(&"accept") => Verdict::Accept,
        Some(&("reject" | "silent-drop")) => Verdict::Reject,
        Some(a) => {
            return Err(format!(
                "'{a}' is not supported by lb: its connection rules are 'accept', 'reject' and 'silent-drop' on 'src' and 'dst_port'."
            ));
        }
        None => return Err("expects 'accept', 'reject' or 'silent-drop'.".into()),
    };
    let cond = parse_cond(&words[1..], named)?;
    Ok(AccessRule {
        verdict,
        cond,
        origin,
    })
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ {}", self.criterion())?;
        match self {
            Test::Src(nets) => nets.iter().try_for_each(|n| write!(f, " {n}"))?,
            Test::DstPort(ranges) => ranges.iter().try_for_each(|&(lo, hi)| {
                if lo == hi {
                    write!(f, " {lo}")
                } else {
                    write!(f, " {lo}:{hi}")
                }
            })?,
        }
        write!(f, " }}")
    }
}

/// The rule as written after `tcp-request connection` (named ACLs written out).
impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
        })?;
        if self.cond.any.is_empty() {
            return Ok(());
        }
        f.write_str(if self.cond.unless { " unless" } else { " if" })?;
        for (i, all) in self.cond.any.iter().enumerate() {
            if i > 0 {
                f.write_str(" ||")?;
            }
            for t in all {
                write!(f, " {}{}", if t.not { "!" } else { "" }, t.test)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_names(n: &str) -> Result<Test, String> {
        Err(format!("no such ACL : '{n}'"))
    }

    fn rule(s: &str) -> Result<AccessRule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        parse_rule(&words, &no_names, Origin::default())
    }

    fn net_of(s: &str) -> Net {
        net(s).expect("net")
    }

    #[test]
    fn conditions_read_and_print_back() {
        for s in [
            "reject",
            "accept if { src 10.0.0.0/8 192.168.1.7 }",
            "reject unless { src 10.0.0.0/8 } !{ dst_port 22 1024:2048 } || { dst_port 443 }",
        ] {
            assert_eq!(rule(s).expect(s).to_string(), s);
        }
        assert_eq!(
            rule("silent-drop if ! { src 10.1.2.3/255.255.0.0 }")
                .expect("mask")
                .to_string(),
            "reject if !{ src 10.1.0.0/16 }"
        );
        assert_eq!(
            rule("accept if { dst_port gt 1023 }")
                .expect("op")
                .to_string(),
            "accept if { dst_port 1024:65535 }"
        );
    }

    #[test]
    fn bad_conditions_say_why() {
        for (s, want) in [
            ("track-sc0 src", "'track-sc0' is not supported"),
            ("reject if", "'if' expects a condition"),
            ("reject when { src 1.2.3.4 }", "expects 'if' or 'unless'"),
            ("reject if { src 1.2.3.4", "missing '}'"),
            ("reject if { src 2001:db8::/129 }", "not a prefix length"),
            (
                "reject if { src 2001:db8::/255.0.0.0 }",
                "not a prefix length",
            ),
            ("reject if { src 10.0.0.0/33 }", "not a prefix length"),
            ("reject if { src -f /etc/list }", "ACL flag '-f'"),
            ("reject if { path /x }", "'path' cannot be tested by lb"),
            ("reject if { src 1.2.3.4 } ||", "'if' expects a condition"),
            ("reject if local", "no such ACL : 'local'"),
        ] {
            let e = rule(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn ipv6_networks_are_their_own_regions() {
        let rules: Vec<AccessRule> = [
            "accept if { src 2001:db8:1::/48 }",
            "reject if { src 2001:db8::/32 10.0.0.0/8 }",
        ]
        .iter()
        .map(|r| rule(r).expect(r))
        .collect();
        let v6 = regions(&rules, Family::V6);
        let shown: Vec<String> = v6.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["::/0", "2001:db8::/32", "2001:db8:1::/48"]);
        assert_eq!(regions(&rules, Family::V4).len(), 2);
        let at = |n: &str| decide(&rules, &net(n).expect(n), 80);
        assert_eq!(at("2001:db8:1::/48"), Verdict::Accept);
        assert_eq!(at("2001:db8::/32"), Verdict::Reject);
        assert_eq!(at("::/0"), Verdict::Accept);
        // An IPv4 network never covers an IPv6 one, nor the reverse.
        assert!(
            !net("0.0.0.0/0")
                .expect("v4")
                .covers(&net("::/0").expect("v6"))
        );
        assert_eq!(net("2001:db8::1").expect("host").to_string(), "2001:db8::1");
    }

    #[test]
    fn first_matching_rule_decides_per_region() {
        let rules: Vec<AccessRule> = [
            "accept if { src 10.1.0.0/16 }",
            "reject if { src 10.0.0.0/8 } { dst_port 80 }",
            "reject unless { src 10.0.0.0/8 192.168.0.0/16 }",
        ]
        .iter()
        .map(|s| rule(s).expect(s))
        .collect();
        let at = |n: &str, port| decide(&rules, &net_of(n), port);
        assert_eq!(at("10.1.0.0/16", 80), Verdict::Accept);
        assert_eq!(at("10.0.0.0/8", 80), Verdict::Reject);
        assert_eq!(at("10.0.0.0/8", 443), Verdict::Accept);
        assert_eq!(at("192.168.0.0/16", 80), Verdict::Accept);
        assert_eq!(at("0.0.0.0/0", 443), Verdict::Reject);
    }
}
