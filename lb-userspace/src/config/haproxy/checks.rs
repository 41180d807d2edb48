//! Health checks: the request of `option httpchk`, the `http-check connect` / `send` /
//! `expect` rules that change it, `tcp-check`, how they combine into a backend's
//! [`CheckKind`], and the global `ssl-server-verify`.
use super::{
    diags::{Diags, clean, show},
    keywords::GlobalCtx,
    keywords::ProxyCtx,
    suggest::did_you_mean,
};
use crate::config::{model::*, units};

/// `http-check connect` / `tcp-check connect` options, in HAProxy's order, for suggestions.
const CONNECT_OPTIONS: &[&str] = &[
    "default",
    "port",
    "addr",
    "send-proxy",
    "via-socks4",
    "ssl",
    "sni",
    "alpn",
    "linger",
    "proto",
    "comment",
];
/// `http-check send` as written: unset parts keep the `option httpchk` request's.
#[derive(Clone, Debug, Default)]
pub(super) struct SendSpec {
    meth: Option<String>,
    uri: Option<String>,
    ver: Option<String>,
    hdrs: Vec<String>,
    body: Option<String>,
}

/// Which `tcp-check` rules a proxy checks with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RulesSel {
    /// `option tcp-check`: the `tcp-check` lines.
    Generic,
    /// A protocol check (`option redis-check`...): HAProxy's own rules for it.
    Protocol(TcpCheck),
}

/// A proxy's check settings, as inherited and then changed by its own lines.
#[derive(Clone, Debug, Default)]
pub(super) struct CheckCfg {
    /// The request of `option httpchk`; `None` is a TCP connect check, or `rules`.
    pub http: Option<HttpCheck>,
    /// `option tcp-check` or a protocol check (with `http` unset).
    pub rules: Option<RulesSel>,
    /// `tcp-check` lines: the proxy's own, or those of its defaults section.
    pub tcp_rules: Vec<TcpRule>,
    /// `tcp_rules` were written in this section (not inherited), from this line on.
    pub tcp_rules_own: Option<Origin>,
    pub send: Option<(SendSpec, Origin)>,
    /// `send` was written in this section (not inherited).
    pub send_own: bool,
    pub expect: Option<(HttpExpect, Origin)>,
    /// `expect` was written in this section (not inherited).
    pub expect_own: bool,
    pub connect: Option<(CheckConnect, Origin)>,
    /// `connect` was written in this section (not inherited).
    pub connect_own: bool,
    /// `http-check disable-on-404`, where written (a proxy option: inherited as is).
    pub disable_on_404: Option<Origin>,
    /// `disable-on-404` was written in this section (not inherited).
    pub disable_on_404_own: bool,
}

impl CheckCfg {
    /// The settings as a proxy inherits them: none of the rules is its own yet.
    pub fn inherited(&mut self) {
        self.send_own = false;
        self.expect_own = false;
        self.connect_own = false;
        self.disable_on_404_own = false;
        self.tcp_rules_own = None;
    }

    /// The backend's check (`who` names it in messages): `option httpchk`'s request changed
    /// by the `http-check` rules, `tcp-check` rules, a protocol check, or a TCP connect. Rules
    /// written in this backend that its check does not use get a warning.
    pub fn finish(&self, d: &mut Diags, who: &str) -> CheckKind {
        // HAProxy's words, whatever the check is instead.
        let unused_tcp_rules = |d: &mut Diags| {
            if let Some(o) = &self.tcp_rules_own {
                d.warn_at(
                    o,
                    format!("{who} uses tcp-check rules without 'option tcp-check', so the rules are ignored."),
                );
            }
        };
        let base = match (&self.http, &self.rules) {
            (Some(h), _) => {
                unused_tcp_rules(d);
                h
            }
            (None, Some(RulesSel::Protocol(p))) => {
                unused_tcp_rules(d);
                self.http_rules_unused(d, "");
                return CheckKind::Rules(p.clone());
            }
            (None, Some(RulesSel::Generic)) => {
                self.http_rules_unused(d, "");
                if self.tcp_rules.is_empty() {
                    // HAProxy's implicit connect alone: a connect check.
                    return CheckKind::Tcp;
                }
                return CheckKind::Rules(TcpCheck::Generic(self.tcp_rules.clone()));
            }
            (None, None) => {
                unused_tcp_rules(d);
                self.http_rules_unused(d, ": checks stay TCP connects");
                return CheckKind::Tcp;
            }
        };
        let mut h = base.clone();
        if let Some((s, _)) = &self.send {
            h.set_request_line(s.meth.as_deref(), s.uri.as_deref(), s.ver.as_deref());
            // As HAProxy: the headers of `http-check send` replace the ones hidden in the
            // `option httpchk` version string.
            h.headers = s.hdrs.clone();
            if let Some(b) = &s.body {
                h.body = b.clone();
            }
        }
        if let Some((e, _)) = &self.expect {
            h.expect = e.clone();
        }
        h.connect = self.connect.as_ref().map(|(c, _)| c.clone());
        h.disable_on_404 = self.disable_on_404.is_some();
        CheckKind::Http(h)
    }

    /// The `http-check` rules of a check that is not `option httpchk`: a warning for each
    /// written in this section; `then` says what the checks are instead.
    fn http_rules_unused(&self, d: &mut Diags, then: &str) {
        let own = [
            (self.send.as_ref().map(|(_, o)| o), self.send_own, "send"),
            (
                self.expect.as_ref().map(|(_, o)| o),
                self.expect_own,
                "expect",
            ),
            (
                self.connect.as_ref().map(|(_, o)| o),
                self.connect_own,
                "connect",
            ),
            (
                self.disable_on_404.as_ref(),
                self.disable_on_404_own,
                "disable-on-404",
            ),
        ];
        for (at, mine, what) in own {
            if let (Some(o), true) = (at, mine) {
                d.warn_at(
                    o,
                    format!("'http-check {what}' has no effect without 'option httpchk'{then}."),
                );
            }
        }
    }
}

/// A new check type in a proxy starts a new rule set, as in HAProxy: `http-check` rules
/// inherited from the defaults section no longer apply (the proxy's own ones still do).
pub(super) fn drop_inherited_rules(c: &mut CheckCfg) {
    if !c.send_own {
        c.send = None;
    }
    if !c.expect_own {
        c.expect = None;
    }
    if !c.connect_own {
        c.connect = None;
    }
}

/// An HTTP token (header names).
fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A method, URI or version that cannot break the request line.
fn request_word_ok(v: &str) -> bool {
    !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// `option httpchk [[METH] URI [VER]]`; VER may hide headers after `\r\n` and a body after
/// `\r\n\r\n` (the old form the seed uses).
pub(super) fn httpchk_request(d: &mut Diags, a: &[String]) -> Option<HttpCheck> {
    let mut h = HttpCheck::default();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    match a.as_slice() {
        [] => {}
        [uri] => h.uri = uri.to_string(),
        [meth, uri] => {
            h.method = meth.to_string();
            h.uri = uri.to_string();
        }
        [meth, uri, ver, ..] => {
            h.method = meth.to_string();
            h.uri = uri.to_string();
            let (ver, rest) = match ver.find("\r\n") {
                Some(i) => (&ver[..i], Some(&ver[i..])),
                None => (*ver, None),
            };
            h.version = ver.to_string();
            if let Some(rest) = rest {
                hidden_headers_and_body(d, rest, &mut h)?;
            }
        }
    }
    for (what, v) in [
        ("method", &h.method),
        ("uri", &h.uri),
        ("version", &h.version),
    ] {
        if !request_word_ok(v) {
            d.alert(format!(
                "'option httpchk' : the {what} '{}' would break the request line (no spaces or line breaks allowed).",
                show(v)
            ));
            return None;
        }
    }
    Some(h)
}

/// `\r\nName: value...[\r\n\r\nbody]` after the version of `option httpchk`.
fn hidden_headers_and_body(d: &mut Diags, rest: &str, h: &mut HttpCheck) -> Option<()> {
    let (hdrs, body) = match rest.find("\r\n\r\n") {
        Some(i) => (&rest[..i], Some(&rest[i + 4..])),
        None => (rest, None),
    };
    for line in hdrs.split("\r\n").filter(|l| !l.is_empty()) {
        let parsed = line.split_once(':').and_then(|(n, v)| {
            let v = v.trim_matches([' ', '\t']);
            (token_ok(n) && !v.contains(['\r', '\n'])).then(|| format!("{n}: {v}"))
        });
        let Some(hdr) = parsed else {
            d.alert(format!(
                "'option httpchk' : unable to parse the request '{}'.",
                show(rest)
            ));
            return None;
        };
        h.headers.push(hdr);
    }
    if let Some(b) = body {
        h.body = b.to_string();
    }
    Some(())
}

/// `http-check connect|send|expect|comment|...`.
pub(super) fn http_check(c: &mut ProxyCtx) {
    match c.arg(1) {
        Some("connect") => connect(c),
        Some("send") => send(c),
        Some("expect") => expect(c),
        Some("comment") => {}
        Some("send-state") => c.d.warn(
            "'http-check send-state' has no effect in lb: lb does not send the X-Haproxy-Server-State header.",
        ),
        Some("disable-on-404") => {
            if !c.d.too_many(c.args, 1, 0) {
                c.s.check.disable_on_404 = Some(c.d.here());
                c.s.check.disable_on_404_own = true;
            }
        }
        Some(o @ ("set-var" | "unset-var")) => c.d.alert(format!(
            "'http-check {o}' is not supported by lb: lb's checks have no variables."
        )),
        other => c.d.alert(format!(
            "'http-check' only supports 'disable-on-404', 'send-state', 'comment', 'connect', 'send', 'expect'. but got '{}'",
            show(other.unwrap_or(""))
        )),
    }
}

/// `http-check send [meth M] [uri U] [ver V] [hdr NAME VALUE]... [body B]`.
fn send(c: &mut ProxyCtx) {
    if c.s.check.send_own {
        c.d.alert("only one 'http-check send' per backend is supported by lb (HAProxy would chain send/expect steps).");
        return;
    }
    let mut spec = SendSpec::default();
    let mut i = 2;
    while let Some(k) = c.arg(i) {
        let n = if k == "hdr" { 2 } else { 1 };
        let vals: Vec<&str> = c
            .args
            .iter()
            .skip(i + 1)
            .take(n)
            .map(String::as_str)
            .collect();
        if vals.len() < n {
            c.d.alert(format!(
                "'http-check send' : '{}' expects {}.",
                show(k),
                if n == 2 {
                    "<name> and <value>"
                } else {
                    "an argument"
                }
            ));
            return;
        }
        if send_param(c.d, &mut spec, k, &vals).is_none() {
            return;
        }
        i += 1 + n;
    }
    for (what, v) in [("meth", &spec.meth), ("uri", &spec.uri), ("ver", &spec.ver)] {
        if let Some(v) = v
            && !request_word_ok(v)
        {
            c.d.alert(format!(
                "'http-check send' : '{what} {}' would break the request line (no spaces or line breaks allowed).",
                show(v)
            ));
            return;
        }
    }
    c.s.check.send = Some((spec, c.d.here()));
    c.s.check.send_own = true;
}

/// One `KEY VALUE` (`hdr NAME VALUE`) of `http-check send`; `None` after an alert.
fn send_param(d: &mut Diags, spec: &mut SendSpec, k: &str, vals: &[&str]) -> Option<()> {
    let v = vals[0].to_string();
    match k {
        "meth" => spec.meth = Some(v),
        "uri" => spec.uri = Some(v),
        "ver" => spec.ver = Some(v),
        "body" => spec.body = Some(v),
        "comment" => {}
        "hdr" => spec.hdrs.push(send_header(d, &v, vals[1])?),
        "uri-lf" | "body-lf" => {
            d.alert(format!(
                "'http-check send' : '{k}' (log-format) is not supported by lb; use '{}'.",
                k.trim_end_matches("-lf")
            ));
            return None;
        }
        other => {
            d.alert(format!(
                "'http-check send' : unknown keyword '{}'{}",
                show(other),
                did_you_mean(
                    other,
                    &[
                        "meth", "uri", "uri-lf", "ver", "hdr", "body", "body-lf", "comment"
                    ],
                    " (meth, uri, ver, hdr, body, comment)."
                )
            ));
            return None;
        }
    }
    Some(())
}

/// `hdr NAME VALUE` of `http-check send`, as a header line.
fn send_header(d: &mut Diags, name: &str, value: &str) -> Option<String> {
    let Ok(literal) = log_format_literal(value) else {
        d.alert(format!(
            "'http-check send' : header value '{}' uses log-format variables, which lb does not support (write '%%' for a '%').",
            show(value)
        ));
        return None;
    };
    if !token_ok(name) || literal.contains(['\r', '\n']) {
        d.alert(format!(
            "'http-check send' : invalid header '{}'.",
            show(name)
        ));
        return None;
    }
    Some(format!("{name}: {literal}"))
}

/// A log-format string with no variables, `%%` unescaped; `Err` if it has variables.
fn log_format_literal(s: &str) -> Result<String, ()> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            if it.next() == Some('%') {
                out.push('%');
            } else {
                return Err(());
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `http-check connect [port N] [ssl] [sni NAME] [comment C] [linger]`: where the check
/// connects, instead of the server's `port`, `check-ssl` and `check-sni`.
fn connect(c: &mut ProxyCtx) {
    if c.s.check.connect_own {
        c.d.alert("only one 'http-check connect' per backend is supported by lb (HAProxy would chain several connections).");
        return;
    }
    if c.s.check.send_own || c.s.check.expect_own {
        c.d.alert("'http-check connect' must come before 'http-check send' and 'http-check expect': lb makes one connection per check.");
        return;
    }
    let mut rule = CheckConnect::default();
    let mut i = 2;
    while let Some(k) = c.arg(i) {
        let value = c.arg(i + 1);
        match k {
            "ssl" => rule.ssl = true,
            // HAProxy's way to avoid RSTs on close; lb's checks close with a FIN anyway.
            "linger" => {}
            "port" | "sni" | "comment" => {
                let Some(v) = value.filter(|v| !v.is_empty()) else {
                    c.d.alert(format!("'http-check connect' : '{k}' expects an argument."));
                    return;
                };
                match k {
                    "port" => match units::port(v) {
                        Ok(p) => rule.port = Some(p),
                        Err(e) => {
                            c.d.alert(format!("'http-check connect' : 'port': {}", clean(&e)));
                            return;
                        }
                    },
                    "sni" => rule.sni = Some(v.to_string()),
                    _ => {}
                }
                i += 1;
            }
            o @ ("default" | "addr" | "alpn" | "proto" | "send-proxy" | "via-socks4") => {
                c.d.alert(format!(
                    "'http-check connect {o}' is not supported by lb: its connect rule takes 'port', 'ssl', 'sni', 'linger' and 'comment'."
                ));
                return;
            }
            other => {
                c.d.alert(format!(
                    "'http-check connect' : unknown keyword '{}'{}",
                    show(other),
                    did_you_mean(other, CONNECT_OPTIONS, ".")
                ));
                return;
            }
        }
        i += 1;
    }
    c.s.check.connect = Some((rule, c.d.here()));
    c.s.check.connect_own = true;
}

/// `http-check expect [comment C] [!] status|rstatus|string|rstring PATTERN`.
fn expect(c: &mut ProxyCtx) {
    if c.s.check.expect_own {
        c.d.alert("only one 'http-check expect' per backend is supported by lb (HAProxy would chain send/expect steps).");
        return;
    }
    let Some((i, negate)) = expect_options(c) else {
        return;
    };
    let Some(m) = c.arg(i) else {
        c.d.alert("'http-check expect' expects a match ('status <codes>', 'rstatus <regex>', 'string <text>' or 'rstring <regex>').");
        return;
    };
    let (m, negate) = match m.strip_prefix('!') {
        Some(rest) => (rest, !negate),
        None => (m, negate),
    };
    if !known_match(c.d, m) {
        return;
    }
    let Some(pattern) = c.arg(i + 1) else {
        c.d.alert(format!(
            "'http-check expect {m}' expects a pattern as argument."
        ));
        return;
    };
    if c.d.too_many(c.args, i + 1, 0) {
        return;
    }
    let Some(e) = expect_match(c.d, m, pattern, negate) else {
        return;
    };
    c.s.check.expect = Some((e, c.d.here()));
    c.s.check.expect_own = true;
}

/// The match `m` (known) with its pattern; `None` after an alert.
fn expect_match(d: &mut Diags, m: &str, pattern: &str, negate: bool) -> Option<HttpExpect> {
    match m {
        "status" => match units::status_ranges(pattern) {
            Ok(r) => {
                let r = if negate {
                    units::status_complement(&r)
                } else {
                    r
                };
                if r.is_empty() {
                    d.alert(format!(
                        "'http-check expect ! status {}' would fail every check.",
                        show(pattern)
                    ));
                    return None;
                }
                Some(HttpExpect::Status(r))
            }
            Err(e) => {
                d.alert(format!("'http-check expect status': {}", clean(&e)));
                None
            }
        },
        "string" if pattern.is_empty() => {
            d.alert("'http-check expect string' expects a non-empty string.");
            None
        }
        "string" => Some(HttpExpect::Body {
            text: pattern.to_string(),
            negate,
        }),
        _ => {
            if let Err(e) = units::regex(pattern) {
                d.alert(format!("'http-check expect {m}' : {}", clean(&e)));
                return None;
            }
            let pattern = pattern.to_string();
            Some(if m == "rstatus" {
                HttpExpect::StatusRegex { pattern, negate }
            } else {
                HttpExpect::BodyRegex { pattern, negate }
            })
        }
    }
}

/// The words before the match of `http-check expect`: `comment C` and `!`. Returns where
/// the match is and whether it is negated, or `None` after an alert.
fn expect_options(c: &mut ProxyCtx) -> Option<(usize, bool)> {
    let mut i = 2;
    let mut negate = false;
    loop {
        match c.arg(i) {
            Some("comment") => i += 2,
            Some(
                o @ ("min-recv" | "ok-status" | "error-status" | "tout-status" | "on-success"
                | "on-error" | "status-code"),
            ) => {
                c.d.alert(format!(
                    "'http-check expect {o}' is not supported by lb: a check passes when its one match does."
                ));
                return None;
            }
            Some("!") => {
                negate = !negate;
                i += 1;
            }
            _ => return Some((i, negate)),
        }
    }
}

/// True for the matches lb has; the others get an alert.
fn known_match(d: &mut Diags, m: &str) -> bool {
    match m {
        "status" | "rstatus" | "string" | "rstring" => return true,
        "hdr" | "fhdr" | "string-lf" | "custom" => {
            d.alert(format!(
                "'http-check expect {m}' is not supported by lb: lb's HTTP checks match the status ('status', 'rstatus') or the body ('string', 'rstring')."
            ));
        }
        other => {
            d.alert(format!(
                "'http-check expect' : unknown match '{}'{}",
                show(other),
                did_you_mean(
                    other,
                    &["status", "rstatus", "string", "rstring", "hdr", "fhdr"],
                    "."
                )
            ));
        }
    }
    false
}

/// `ssl-server-verify none|required`: the `verify` of servers that do not say.
pub(super) fn ssl_server_verify(c: &mut GlobalCtx) {
    if c.d.too_many(c.args, 1, 0) {
        return;
    }
    match c.arg(1) {
        Some("none") => c.global.ssl_server_verify = Verify::None,
        Some("required") => c.global.ssl_server_verify = Verify::Required,
        _ => {
            c.d.alert("'ssl-server-verify' expects 'none' or 'required' as argument.")
        }
    }
}

/// `tcp-check connect|send|send-binary|expect|comment ...`: the rules `option tcp-check`
/// runs.
pub(super) fn tcp_check(c: &mut ProxyCtx) {
    let Some(rule) = tcp_rule(c) else {
        return;
    };
    if c.s.check.tcp_rules_own.is_none() {
        // A section's own rules replace its defaults section's.
        c.s.check.tcp_rules.clear();
        c.s.check.tcp_rules_own = Some(c.d.here());
    }
    c.s.check.tcp_rules.push(rule);
}

/// One `tcp-check` line as a rule; `None` after an alert.
fn tcp_rule(c: &mut ProxyCtx) -> Option<TcpRule> {
    let what = c.arg(1).unwrap_or("");
    match what {
        "comment" => match c.arg(2) {
            Some(t) => {
                if c.d.too_many(c.args, 2, 0) {
                    return None;
                }
                Some(TcpRule::Comment(t.to_string()))
            }
            None => {
                c.d.alert("'tcp-check comment' expects a string as argument.");
                None
            }
        },
        "connect" => tcp_connect(c),
        "send" | "send-binary" => {
            let Some(v) = c.arg(2).filter(|v| !v.is_empty()) else {
                c.d.alert(format!(
                    "'tcp-check {what}' expects a {} as argument.",
                    if what == "send" {
                        "string"
                    } else {
                        "hexadecimal string"
                    }
                ));
                return None;
            };
            let comment = match (c.arg(3), c.arg(4)) {
                (None, _) => None,
                (Some("comment"), Some(t)) => Some(t.to_string()),
                (Some(other), _) => {
                    c.d.alert(format!(
                        "'tcp-check {what}' only supports 'comment' after its data (got '{}').",
                        show(other)
                    ));
                    return None;
                }
            };
            let data = if what == "send" {
                v.as_bytes().to_vec()
            } else {
                match units::hex_bytes(v) {
                    Some(b) => b,
                    None => {
                        c.d.alert(format!(
                            "'tcp-check send-binary' : '{}' is not a hexadecimal string.",
                            show(v)
                        ));
                        return None;
                    }
                }
            };
            Some(TcpRule::Send { data, comment })
        }
        "send-lf" | "send-binary-lf" => {
            c.d.alert(format!(
                "'tcp-check {what}' (log-format) is not supported by lb; use '{}'.",
                what.trim_end_matches("-lf")
            ));
            None
        }
        "expect" => tcp_expect(c),
        w if w.starts_with("set-var") || w.starts_with("unset-var") => {
            c.d.alert(format!(
                "'tcp-check {}' is not supported by lb: lb's checks have no variables.",
                show(w)
            ));
            None
        }
        other => {
            c.d.alert(format!(
                "'tcp-check' only supports 'comment', 'connect', 'send', 'send-binary', 'expect'. but got '{}'",
                show(other)
            ));
            None
        }
    }
}

/// `tcp-check connect [default] [port N] [ssl] [sni NAME] [linger] [comment C]`.
fn tcp_connect(c: &mut ProxyCtx) -> Option<TcpRule> {
    let (mut port, mut ssl, mut sni, mut comment) = (None, false, None, None);
    let mut i = 2;
    while let Some(k) = c.arg(i) {
        match k {
            "default" | "linger" => {}
            "ssl" => ssl = true,
            "port" | "sni" | "comment" => {
                let Some(v) = c.arg(i + 1).filter(|v| !v.is_empty()) else {
                    c.d.alert(format!("'tcp-check connect' : '{k}' expects an argument."));
                    return None;
                };
                match k {
                    "port" => match units::port(v) {
                        Ok(p) => port = Some(p),
                        Err(e) => {
                            c.d.alert(format!("'tcp-check connect' : 'port': {}", clean(&e)));
                            return None;
                        }
                    },
                    "sni" => sni = Some(v.to_string()),
                    _ => comment = Some(v.to_string()),
                }
                i += 1;
            }
            o @ ("addr" | "alpn" | "proto" | "send-proxy" | "via-socks4") => {
                c.d.alert(format!(
                    "'tcp-check connect {o}' is not supported by lb: its connect rule takes 'port', 'ssl', 'sni', 'linger' and 'comment'."
                ));
                return None;
            }
            other => {
                c.d.alert(format!(
                    "'tcp-check connect' : unknown keyword '{}'{}",
                    show(other),
                    did_you_mean(other, CONNECT_OPTIONS, ".")
                ));
                return None;
            }
        }
        i += 1;
    }
    Some(TcpRule::Connect {
        port,
        ssl,
        sni,
        comment,
    })
}

/// `tcp-check expect [options] [!] string|rstring|binary|rbinary PATTERN`.
fn tcp_expect(c: &mut ProxyCtx) -> Option<TcpRule> {
    // The pattern is replaced by the one read below.
    let mut e = TcpExpect::new(TcpPattern::String(String::new()));
    // Options may come before or after the pattern, as in HAProxy.
    let mut i = 2;
    let mut pattern = None;
    loop {
        let Some(k) = c.arg(i) else {
            if pattern.is_none() {
                c.d.alert("'tcp-check expect' expects 'string', 'rstring', 'binary' or 'rbinary' followed by a pattern.");
                return None;
            }
            break;
        };
        let (k, neg) = match k.strip_prefix('!') {
            Some(rest) if !rest.is_empty() => (rest, true),
            _ => (k, false),
        };
        match k {
            "!" => e.negate = !e.negate,
            "min-recv" | "comment" | "ok-status" | "error-status" | "tout-status"
            | "on-success" | "on-error" | "status-code" => {
                let Some(v) = c.arg(i + 1) else {
                    c.d.alert(format!("'tcp-check expect' : '{k}' expects an argument."));
                    return None;
                };
                let status = |c: &mut ProxyCtx, v: &str| -> Option<String> {
                    if crate::health::tcp_rules::status_named(v).is_some() {
                        Some(v.to_string())
                    } else {
                        c.d.alert(format!(
                            "'tcp-check expect' : '{k}' expects a check status (L7OK, L7OKC, L6OK, L4OK, L7RSP, L7STS, L6RSP, L4CON, L7TOUT, L6TOUT, L4TOUT), not '{}'.",
                            show(v)
                        ));
                        None
                    }
                };
                match k {
                    "min-recv" => match v.parse::<u32>() {
                        Ok(n) => e.min_recv = Some(n),
                        Err(_) => {
                            c.d.alert(format!(
                                "'tcp-check expect' : 'min-recv' expects an integer, not '{}'.",
                                show(v)
                            ));
                            return None;
                        }
                    },
                    "comment" => e.comment = Some(v.to_string()),
                    "ok-status" => e.ok_status = Some(status(c, v)?),
                    "error-status" => e.error_status = Some(status(c, v)?),
                    "tout-status" => e.tout_status = Some(status(c, v)?),
                    "on-success" | "on-error" => {
                        let Ok(text) = log_format_literal(v) else {
                            c.d.alert(format!(
                                "'tcp-check expect' : '{k}' uses log-format variables, which lb does not support (write '%%' for a '%').",
                            ));
                            return None;
                        };
                        if k == "on-success" {
                            e.on_success = Some(text);
                        } else {
                            e.on_error = Some(text);
                        }
                    }
                    _ => {
                        c.d.alert("'tcp-check expect' : 'status-code' (a sample expression) is not supported by lb.");
                        return None;
                    }
                }
                i += 2;
                continue;
            }
            "string" | "rstring" | "binary" | "rbinary" => {
                if pattern.is_some() {
                    c.d.alert(format!(
                        "'tcp-check expect' : only one pattern expected (got a second one, '{k}')."
                    ));
                    return None;
                }
                e.negate ^= neg;
                let Some(p) = c.arg(i + 1).filter(|p| !p.is_empty()) else {
                    c.d.alert(format!(
                        "'tcp-check expect {k}' expects a pattern as argument."
                    ));
                    return None;
                };
                pattern = Some(match k {
                    "string" => TcpPattern::String(p.to_string()),
                    "binary" => match units::hex_bytes(p) {
                        Some(b) => TcpPattern::Binary(b),
                        None => {
                            c.d.alert(format!(
                                "'tcp-check expect binary' : '{}' is not a hexadecimal string.",
                                show(p)
                            ));
                            return None;
                        }
                    },
                    _ => {
                        if let Err(err) = units::regex(p) {
                            c.d.alert(format!("'tcp-check expect {k}' : {}", clean(&err)));
                            return None;
                        }
                        if k == "rstring" {
                            TcpPattern::Regex(p.to_string())
                        } else {
                            TcpPattern::BinaryRegex(p.to_string())
                        }
                    }
                });
                i += 2;
                continue;
            }
            "string-lf" | "binary-lf" => {
                c.d.alert(format!(
                    "'tcp-check expect {k}' (log-format) is not supported by lb; use '{}'.",
                    k.trim_end_matches("-lf")
                ));
                return None;
            }
            other => {
                c.d.alert(format!(
                    "'tcp-check expect' : unknown match '{}'{}",
                    show(other),
                    did_you_mean(other, &["string", "rstring", "binary", "rbinary"], ".")
                ));
                return None;
            }
        }
        i += 1;
    }
    e.pattern = pattern?;
    Some(TcpRule::Expect(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::haproxy::tokenize;

    #[test]
    fn seed_httpchk_line() {
        let w = tokenize(
            r"    option httpchk GET /health_check.html HTTP/1.0\r\nUser-agent:\ Proxy-Check",
            &|_| Ok(None),
        )
        .expect("tokenizes");
        assert_eq!(
            w,
            [
                "option",
                "httpchk",
                "GET",
                "/health_check.html",
                "HTTP/1.0\r\nUser-agent: Proxy-Check"
            ]
        );
        let mut d = Diags::new("t");
        d.line = 1;
        let h = httpchk_request(&mut d, &w[2..]).expect("valid request");
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.version.as_str()),
            ("GET", "/health_check.html", "HTTP/1.0")
        );
        assert_eq!(h.headers, ["User-agent: Proxy-Check"]);
        assert!(h.body.is_empty() && h.expect == HttpExpect::default());
        assert!(d.list.is_empty());
    }

    fn config(text: &str) -> Config {
        match crate::config::haproxy::parse("t.cfg", text) {
            Ok(p) => p.config,
            Err(e) => panic!("should parse:\n{e}"),
        }
    }

    fn alerts(text: &str) -> Vec<String> {
        match crate::config::haproxy::parse("t.cfg", text) {
            Ok(_) => panic!("should fail"),
            Err(e) => e.alerts().map(ToString::to_string).collect(),
        }
    }

    const FRONT: &str = "frontend f\n  bind :80\n  default_backend b\n";

    fn http(rules: &str) -> HttpCheck {
        let c = config(&format!(
            "backend b\n  option httpchk\n{rules}  server s 10.0.0.1:80 check\n{FRONT}"
        ));
        match &c.backends[0].check {
            CheckKind::Http(h) => h.clone(),
            other => panic!("http check, not {other:?}"),
        }
    }

    #[test]
    fn expect_matches_and_negations() {
        let e = |rule: &str| http(&format!("  http-check expect {rule}\n")).expect;
        assert_eq!(
            e("rstatus ^2"),
            HttpExpect::StatusRegex {
                pattern: "^2".into(),
                negate: false
            }
        );
        assert_eq!(
            e("! string hello"),
            HttpExpect::Body {
                text: "hello".into(),
                negate: true
            }
        );
        assert_eq!(
            e("comment why !rstring h[e]llo\\ w.rld"),
            HttpExpect::BodyRegex {
                pattern: "h[e]llo w.rld".into(),
                negate: true
            }
        );
        assert_eq!(
            e("! status 200"),
            HttpExpect::Status(vec![(100, 199), (201, 599)])
        );
        assert_eq!(
            alerts(&format!(
                "backend b\n  option httpchk\n  http-check expect rstring (\n  server s 10.0.0.1:80\n{FRONT}"
            ))[0],
            "[ALERT] parsing [t.cfg:3] : 'http-check expect rstring' : regex '(' is invalid: unclosed group"
        );
        assert_eq!(
            alerts(&format!(
                "backend b\n  option httpchk\n  http-check expect hdr name X-Up\n  server s 10.0.0.1:80\n{FRONT}"
            ))[0],
            "[ALERT] parsing [t.cfg:3] : 'http-check expect hdr' is not supported by lb: lb's HTTP checks match the status ('status', 'rstatus') or the body ('string', 'rstring')."
        );
    }

    #[test]
    fn connect_rule() {
        let h = http(
            "  http-check connect port 8443 ssl sni web.test linger comment tls\n  http-check send meth GET uri /h ver HTTP/1.1 hdr Host web.test\n",
        );
        assert_eq!(
            h.connect,
            Some(CheckConnect {
                port: Some(8443),
                ssl: true,
                sni: Some("web.test".into())
            })
        );
        assert_eq!(h.headers, ["Host: web.test"]);
        let a = alerts(&format!(
            "backend b\n  option httpchk\n  http-check send uri /h\n  http-check connect ssl\n  http-check connect\n  http-check connect default\n  server s 10.0.0.1:80\n{FRONT}"
        ));
        assert_eq!(
            a[..3],
            [
                "[ALERT] parsing [t.cfg:4] : 'http-check connect' must come before 'http-check send' and 'http-check expect': lb makes one connection per check.",
                "[ALERT] parsing [t.cfg:5] : 'http-check connect' must come before 'http-check send' and 'http-check expect': lb makes one connection per check.",
                "[ALERT] parsing [t.cfg:6] : 'http-check connect' must come before 'http-check send' and 'http-check expect': lb makes one connection per check.",
            ]
        );
        let a = alerts(&format!(
            "backend b\n  option httpchk\n  http-check connect default\n  server s 10.0.0.1:80\n{FRONT}"
        ));
        assert_eq!(
            a[0],
            "[ALERT] parsing [t.cfg:3] : 'http-check connect default' is not supported by lb: its connect rule takes 'port', 'ssl', 'sni', 'linger' and 'comment'."
        );
        // An inherited connect rule goes with the other inherited rules.
        let c = config(&format!(
            "defaults\n  option httpchk\n  http-check connect ssl\nbackend b\n  option httpchk GET /\n  server s 10.0.0.1:80\n{FRONT}"
        ));
        let CheckKind::Http(h) = &c.backends[0].check else {
            panic!("http check")
        };
        assert_eq!(h.connect, None);
    }

    #[test]
    fn server_tls_and_agent_parameters() {
        let c = config(&format!(
            "global\n  ssl-server-verify none\nbackend b\n  default-server check-ssl verify required ca-file /etc/ca.pem agent-port 9001\n  \
             server s 10.0.0.1:80 check check-sni web.test agent-check agent-inter 2s agent-send \"ping\\n\" agent-addr 10.0.0.9\n  \
             server t 10.0.0.2:80 check no-check-ssl verify none no-agent-check\n{FRONT}"
        ));
        assert_eq!(c.global.ssl_server_verify, Verify::None);
        let s = &c.backends[0].servers[0];
        assert_eq!(
            s.check_tls,
            CheckTls {
                ssl: true,
                sni: Some("web.test".into()),
                verify: Some(Verify::Required),
                ca_file: Some("/etc/ca.pem".into()),
            }
        );
        assert_eq!(
            s.agent,
            AgentCheck {
                enabled: true,
                port: Some(9001),
                inter: Some(std::time::Duration::from_secs(2)),
                send: "ping\n".into(),
                addr: Some("10.0.0.9".parse().expect("ip")),
            }
        );
        let t = &c.backends[0].servers[1];
        assert!(!t.check_tls.ssl && !t.agent.enabled);
        assert_eq!(t.check_tls.verify, Some(Verify::None));
        let a = alerts(&format!(
            "backend b\n  server s 10.0.0.1:80 check check-sni \"\" verify maybe agent-inter 0 agent-port 0 ca-file\n{FRONT}"
        ));
        assert_eq!(
            a,
            [
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : 'check-sni' : missing SNI.",
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : 'verify' : unknown verify method 'maybe', only 'none' and 'required' are supported.",
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : invalid value 0 for argument 'agent-inter' of server s.",
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : 'agent-port': port 0 is not allowed",
                "[ALERT] parsing [t.cfg:2] : 'server b/s' : 'ca-file' expects an argument.",
            ]
        );
        // The traffic itself never speaks TLS.
        assert_eq!(
            alerts(&format!("backend b\n  server s 10.0.0.1:80 ssl\n{FRONT}"))[0],
            "[ALERT] parsing [t.cfg:2] : 'server b/s' : 'ssl' is not supported by lb: lb forwards the client's bytes as they are and never speaks TLS to servers (its health checks may: 'check-ssl')."
        );
    }
}
