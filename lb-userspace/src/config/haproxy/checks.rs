//! Health checks: the request of `option httpchk`, the `http-check send` / `expect` rules
//! that change it, `tcp-check`, and how they combine into a backend's [`CheckKind`].
use super::{
    diags::{Diags, clean, show},
    keywords::ProxyCtx,
    suggest::did_you_mean,
};
use crate::config::{model::*, units};

/// `http-check send` as written: unset parts keep the `option httpchk` request's.
#[derive(Clone, Debug, Default)]
pub(super) struct SendSpec {
    meth: Option<String>,
    uri: Option<String>,
    ver: Option<String>,
    hdrs: Vec<String>,
    body: Option<String>,
}

/// A proxy's check settings, as inherited and then changed by its own lines.
#[derive(Clone, Debug, Default)]
pub(super) struct CheckCfg {
    /// The request of `option httpchk`; `None` is a TCP connect check.
    pub http: Option<HttpCheck>,
    pub send: Option<(SendSpec, Origin)>,
    /// `send` was written in this section (not inherited).
    pub send_own: bool,
    pub expect: Option<(Vec<(u16, u16)>, Origin)>,
    /// `expect` was written in this section (not inherited).
    pub expect_own: bool,
}

impl CheckCfg {
    /// The backend's check: `option httpchk`'s request changed by the `http-check` rules,
    /// or a TCP connect (the rules then get a warning, when written in this backend).
    pub fn finish(&self, d: &mut Diags) -> CheckKind {
        let Some(base) = &self.http else {
            if let (Some((_, o)), true) = (&self.send, self.send_own) {
                d.warn_at(
                    o,
                    "'http-check send' has no effect without 'option httpchk': checks stay TCP connects.",
                );
            }
            if let (Some((_, o)), true) = (&self.expect, self.expect_own) {
                d.warn_at(
                    o,
                    "'http-check expect' has no effect without 'option httpchk': checks stay TCP connects.",
                );
            }
            return CheckKind::Tcp;
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
            h.expect_status = e.clone();
        }
        CheckKind::Http(h)
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

/// `http-check send|expect|comment|...`.
pub(super) fn http_check(c: &mut ProxyCtx) {
    match c.arg(1) {
        Some("send") => send(c),
        Some("expect") => expect(c),
        Some("comment") => {}
        Some("send-state") => c.d.warn(
            "'http-check send-state' has no effect in lb: lb does not send the X-Haproxy-Server-State header.",
        ),
        Some("disable-on-404") => c.d.alert(
            "'http-check disable-on-404' is not supported by lb yet: a 404 would mark the server DOWN instead of draining it.",
        ),
        Some(o @ ("connect" | "set-var" | "unset-var")) => c.d.alert(format!(
            "'http-check {o}' is not supported by lb: checks go to the server's address (or its 'addr'/'port')."
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

/// `http-check expect [comment C] [!] status CODES`.
fn expect(c: &mut ProxyCtx) {
    if c.s.check.expect_own {
        c.d.alert("only one 'http-check expect' per backend is supported by lb (HAProxy would chain send/expect steps).");
        return;
    }
    let Some((i, negate)) = expect_options(c) else {
        return;
    };
    let Some(m) = c.arg(i) else {
        c.d.alert("'http-check expect' expects a match ('status <codes>').");
        return;
    };
    let (m, negate) = match m.strip_prefix('!') {
        Some(rest) => (rest, !negate),
        None => (m, negate),
    };
    if !status_match(c.d, m) {
        return;
    }
    let Some(codes) = c.arg(i + 1) else {
        c.d.alert("'http-check expect status' expects <codes> (e.g. 200 or 200,301-399).");
        return;
    };
    if c.d.too_many(c.args, i + 1, 0) {
        return;
    }
    match units::status_ranges(codes) {
        Ok(r) => {
            let r = if negate { complement(&r) } else { r };
            if r.is_empty() {
                c.d.alert(format!(
                    "'http-check expect ! status {}' would fail every check.",
                    show(codes)
                ));
                return;
            }
            c.s.check.expect = Some((r, c.d.here()));
            c.s.check.expect_own = true;
        }
        Err(e) => {
            c.d.alert(format!("'http-check expect status': {}", clean(&e)))
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
                    "'http-check expect {o}' is not supported by lb: a check passes when the status matches."
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

/// True for `status`, the one match lb has; other matches get an alert.
fn status_match(d: &mut Diags, m: &str) -> bool {
    match m {
        "status" => return true,
        "rstatus" | "string" | "rstring" | "hdr" | "fhdr" | "string-lf" | "custom" => {
            d.alert(format!(
                "'http-check expect {m}' is not supported by lb: lb's HTTP checks match the status only ('http-check expect status 200,301-399')."
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

/// Status codes 100-599 not in `r`.
fn complement(r: &[(u16, u16)]) -> Vec<(u16, u16)> {
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

/// `tcp-check` rules: lb's TCP checks are plain connects.
pub(super) fn tcp_check(c: &mut ProxyCtx) {
    if c.arg(1) == Some("comment") {
        return;
    }
    c.d.alert(
        "'tcp-check' rules are not supported: lb's TCP checks are connects only ('option tcp-check' with no rules), or use 'option httpchk'.",
    );
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
        assert!(h.body.is_empty() && h.expect_status.is_empty());
        assert!(d.list.is_empty());
    }
}
