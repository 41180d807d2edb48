//! `tcp-check` rules, pure: the steps a check runs (the user's rules, or the ones HAProxy 2.6
//! builds for `option redis-check`, `mysql-check`, `pgsql-check`, `smtpchk`, `ldap-check` and
//! `ssl-hello-chk`, byte for byte), and the verdict of an `expect` on what was read so far,
//! with HAProxy's statuses and texts (`src/tcpcheck.c`: `tcpcheck_eval_expect`,
//! `tcpcheck_expect_onerror_message`, the MySQL and LDAP parsers, `chk_report_conn_err`).
//! [`super::tcp_check`] runs them on a socket.
use regex::bytes::Regex;

use super::state::CheckStatus;
use crate::config::{TcpCheck, TcpPattern, TcpRule};

/// What HAProxy reads a check's answer into (`tune.bufsize`): a full buffer ends the reading.
pub const BUFFER: usize = 16 * 1024;

/// The steps of one check.
#[derive(Clone, Debug)]
pub struct Program {
    pub steps: Vec<Step>,
    /// The user's `tcp-check` rules (not a protocol check): messages name the steps.
    pub generic: bool,
}

#[derive(Clone, Debug)]
pub struct Step {
    /// HAProxy's step number: the rule's index + 1; 0 for the implicit first connect.
    pub id: u32,
    pub comment: Option<String>,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    Connect(Connect),
    Send(Payload),
    Expect(Box<Expect>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Unset: the server's check port.
    pub port: Option<u16>,
    /// Over TLS (`ssl`; for the implicit connect, the server's `check-ssl`).
    pub ssl: bool,
    pub sni: Option<String>,
    /// Added before rules that do not start with a connect.
    pub implicit: bool,
}

/// What a send rule writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Bytes(Vec<u8>),
    /// `ssl-hello-chk`'s client hello, which carries the time it is sent.
    SslHello,
}

impl Payload {
    /// The bytes to send at `unix_secs`.
    pub fn bytes(&self, unix_secs: u32) -> Vec<u8> {
        match self {
            Payload::Bytes(b) => b.clone(),
            Payload::SslHello => ssl_client_hello(unix_secs),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Expect {
    pub matcher: Matcher,
    pub negate: bool,
    /// Bytes to wait for before judging; `None` (HAProxy's -1): wait for a match until the
    /// answer ends.
    pub min_recv: Option<usize>,
    pub ok_status: Option<CheckStatus>,
    pub error_status: Option<CheckStatus>,
    pub tout_status: Option<CheckStatus>,
    pub on_success: Info,
    pub on_error: Info,
    /// `status-code res.payload(O,L)`: the check's code, read from the answer.
    pub status_code: Option<(usize, usize)>,
}

#[derive(Clone, Debug)]
pub enum Matcher {
    /// `string` / `binary`: the answer contains the bytes.
    Bytes { data: Vec<u8>, binary: bool },
    /// `rstring` / `rbinary` (on the answer's upper-case hex dump).
    Regex { re: Regex, binary: bool },
    /// MySQL's packet parser: the server's greeting, or (`after_greeting`) its answer to
    /// the login that follows.
    Mysql { after_greeting: bool },
    /// LDAP's bind response parser.
    Ldap,
}

/// A check's `info` (HAProxy's log-format strings, as far as its protocol checks use them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Info {
    None,
    Text(String),
    /// `%[res.payload(offset,len)[,ltrim(' ')][,cut_crlf]]` (`len` 0: to the end).
    Payload {
        offset: usize,
        len: usize,
        ltrim: bool,
        cut_crlf: bool,
    },
}

impl Info {
    fn render(&self, buf: &[u8]) -> String {
        match self {
            Info::None => String::new(),
            Info::Text(t) => t.clone(),
            Info::Payload {
                offset,
                len,
                ltrim,
                cut_crlf,
            } => {
                let rest = buf.get(*offset..).unwrap_or_default();
                let mut p = if *len == 0 {
                    rest
                } else {
                    &rest[..rest.len().min(*len)]
                };
                if *ltrim {
                    while let [b' ', tail @ ..] = p {
                        p = tail;
                    }
                }
                if *cut_crlf && let Some(i) = p.iter().position(|&b| b == b'\r' || b == b'\n') {
                    p = &p[..i];
                }
                c_string(p)
            }
        }
    }
}

/// Bytes up to the first NUL, as HAProxy keeps a check's `desc` (a C string).
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A finished check's status, code and `info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: CheckStatus,
    pub code: Option<u16>,
    pub info: String,
}

impl Verdict {
    pub fn new(status: CheckStatus, info: impl Into<String>) -> Verdict {
        Verdict {
            status,
            code: None,
            info: info.into(),
        }
    }
}

/// What an expect makes of the answer read so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eval {
    /// More is needed (unless the answer ended).
    Wait,
    /// Matched: on to the next rule.
    Continue,
    /// The check ends here.
    Stop(Verdict),
    /// A protocol parser passed the check itself (MySQL, LDAP), as the last rule.
    Passed(Verdict),
}

fn status_or(s: Option<CheckStatus>, default: CheckStatus) -> CheckStatus {
    s.unwrap_or(default)
}

/// HAProxy's name of a status (`ok-status L7OK` & co), for the ones a rule may set.
pub fn status_named(name: &str) -> Option<CheckStatus> {
    Some(match name {
        "L7OK" => CheckStatus::L7Ok,
        "L7OKC" => CheckStatus::L7OkC,
        "L6OK" => CheckStatus::L6Ok,
        "L4OK" => CheckStatus::L4Ok,
        "L7RSP" => CheckStatus::L7Rsp,
        "L7STS" => CheckStatus::L7Sts,
        "L6RSP" => CheckStatus::L6Rsp,
        "L4CON" => CheckStatus::L4Con,
        "L7TOUT" => CheckStatus::L7Tout,
        "L6TOUT" => CheckStatus::L6Tout,
        "L4TOUT" => CheckStatus::L4Tout,
        _ => return None,
    })
}

impl Step {
    /// `tcpcheck_eval_expect`: the verdict of this expect on `buf`; `last_read`: the answer
    /// ended (or the buffer is full); `last_rule`: no rule follows (protocol parsers pass
    /// the check then).
    pub fn judge(
        &self,
        e: &Expect,
        buf: &[u8],
        last_read: bool,
        last_rule: bool,
        generic: bool,
    ) -> Eval {
        let last_read = last_read || buf.len() >= BUFFER;
        match &e.matcher {
            Matcher::Mysql { after_greeting } => {
                return self.mysql(e, buf, *after_greeting, last_read, last_rule, generic);
            }
            Matcher::Ldap => return self.ldap(e, buf, last_read, generic),
            _ => {}
        }
        if !last_read {
            if let Matcher::Bytes { data, .. } = &e.matcher
                && buf.len() < data.len()
            {
                return Eval::Wait;
            }
            if e.min_recv.is_some_and(|m| buf.len() < m) {
                return Eval::Wait;
            }
        }
        let matched = match &e.matcher {
            Matcher::Bytes { data, .. } => contains(buf, data),
            Matcher::Regex { re, binary: false } => re.is_match(buf),
            Matcher::Regex { re, binary: true } => re.is_match(hex_upper(buf).as_bytes()),
            Matcher::Mysql { .. } | Matcher::Ldap => false,
        };
        if !matched && !last_read && e.min_recv.is_none() {
            return Eval::Wait;
        }
        if matched != e.negate {
            return Eval::Continue;
        }
        let status = status_or(e.error_status, CheckStatus::L7Rsp);
        Eval::Stop(self.failure(e, buf, status, matched, None, generic))
    }

    /// `tcpcheck_expect_onerror_message`: the verdict of a failed expect.
    fn failure(
        &self,
        e: &Expect,
        buf: &[u8],
        status: CheckStatus,
        matched: bool,
        desc: Option<String>,
        generic: bool,
    ) -> Verdict {
        let mut info = match (desc, &e.on_error) {
            (Some(d), _) if !d.is_empty() => d,
            (_, Info::None) if generic => self.mismatch(e, matched),
            (_, on_error) => on_error.render(buf),
        };
        if let Some(c) = &self.comment {
            info.push_str(" comment: ");
            info.push_str(c);
        }
        let mut v = Verdict::new(status, info);
        if let Some((off, len)) = e.status_code {
            v.code = code_at(buf, off, len);
        }
        v
    }

    /// The generic text of a failed expect of the user's rules.
    fn mismatch(&self, e: &Expect, matched: bool) -> String {
        let head = if matched {
            "TCPCHK matched unwanted content"
        } else {
            "TCPCHK did not match content"
        };
        let what = match &e.matcher {
            Matcher::Bytes {
                data,
                binary: false,
            } => format!(" '{}'", String::from_utf8_lossy(data)),
            Matcher::Bytes { binary: true, .. } => " (binary)".into(),
            Matcher::Regex { binary: false, .. } => " (regex)".into(),
            Matcher::Regex { binary: true, .. } => " (binary regex)".into(),
            Matcher::Mysql { .. } | Matcher::Ldap => " (custom function)".into(),
        };
        format!("{head}{what} at step {}", self.id)
    }

    /// `tcpcheck_mysql_expect_packet`: one complete packet at the greeting (offset 0) or
    /// after it; an error packet (0xff) fails with its code and message.
    fn mysql(
        &self,
        e: &Expect,
        buf: &[u8],
        after_greeting: bool,
        last_read: bool,
        last_rule: bool,
        generic: bool,
    ) -> Eval {
        let offset = if after_greeting {
            match buf.get(..3) {
                Some(h) => 4 + packet_len(h),
                None => 4,
            }
        } else {
            0
        };
        let truncated = |last_read: bool| {
            if last_read {
                let v = self.failure(e, buf, CheckStatus::L7Rsp, false, None, generic);
                Eval::Stop(v)
            } else {
                Eval::Wait
            }
        };
        let Some(head) = buf.get(offset..offset + 4) else {
            return truncated(last_read);
        };
        let plen = packet_len(head);
        if buf.len() < offset + plen + 4 {
            return truncated(last_read);
        }
        if buf.get(offset + 4) == Some(&0xff) {
            let code = buf
                .get(offset + 5..offset + 7)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .unwrap_or(0);
            let desc = c_string(buf.get(offset + 7..).unwrap_or_default());
            let mut v = self.failure(e, buf, CheckStatus::L7Sts, false, Some(desc), generic);
            v.code = Some(code);
            return Eval::Stop(v);
        }
        if !last_rule {
            return Eval::Continue;
        }
        // The server's version, from the greeting, for information.
        let version = c_string(buf.get(5..).unwrap_or_default());
        Eval::Passed(Verdict::new(
            status_or(e.ok_status, CheckStatus::L7Ok),
            version,
        ))
    }

    /// `tcpcheck_ldap_expect_bindrsp`: an LDAPv3 bind response, and its result code.
    fn ldap(&self, e: &Expect, buf: &[u8], last_read: bool, generic: bool) -> Eval {
        const NOT_LDAP: &str = "Not LDAPv3 protocol";
        let fail = |status, desc: &str| {
            Eval::Stop(self.failure(e, buf, status, false, Some(desc.into()), generic))
        };
        let too_short = || {
            if last_read {
                Eval::Stop(self.failure(e, buf, CheckStatus::L7Rsp, false, None, generic))
            } else {
                Eval::Wait
            }
        };
        let Some(&size) = buf.get(1) else {
            return too_short();
        };
        let mut nbytes = 0usize;
        let msglen = if size & 0x80 != 0 {
            nbytes = usize::from(size & 0x7f);
            if buf.len() < 1 + nbytes {
                return too_short();
            }
            match nbytes {
                4 => buf
                    .get(2..6)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
                2 => buf
                    .get(2..4)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
                _ => return fail(CheckStatus::L7Rsp, NOT_LDAP),
            }
        } else {
            usize::from(size)
        };
        if buf.len() < 2 + nbytes + msglen {
            return too_short();
        }
        let mut at = 2 + nbytes;
        if buf.get(at..at + 4) != Some(b"\x02\x01\x01\x61") {
            return fail(CheckStatus::L7Rsp, NOT_LDAP);
        }
        at += 4;
        let skip = buf.get(at).map_or(0, |&b| {
            if b & 0x80 != 0 {
                usize::from(b & 0x7f)
            } else {
                0
            }
        });
        at += 1 + skip;
        if buf.get(at..at + 2) != Some(b"\x0a\x01") {
            return fail(CheckStatus::L7Rsp, NOT_LDAP);
        }
        let code = buf.get(at + 2).copied().unwrap_or(0);
        if code != 0 {
            let mut v = self.failure(
                e,
                buf,
                CheckStatus::L7Sts,
                false,
                Some("See RFC: http://tools.ietf.org/html/rfc4511#section-4.1.9".into()),
                generic,
            );
            v.code = Some(u16::from(code));
            return Eval::Stop(v);
        }
        Eval::Passed(Verdict::new(
            status_or(e.ok_status, CheckStatus::L7Ok),
            "Success",
        ))
    }

    /// What `chk_report_conn_err` adds, for the user's rules, to the text of a connection
    /// error or timeout at this step.
    pub fn where_(&self, generic: bool) -> String {
        if !generic {
            return String::new();
        }
        if self.id == 0 {
            return " at initial connection step of tcp-check".into();
        }
        let mut s = format!(" at step {} of tcp-check", self.id);
        match &self.action {
            Action::Connect(c) => match c.port {
                Some(p) => s.push_str(&format!(" (connect port {p})")),
                None => s.push_str(" (connect)"),
            },
            Action::Send(_) => s.push_str(" (send)"),
            Action::Expect(e) => s.push_str(&match &e.matcher {
                Matcher::Bytes {
                    data,
                    binary: false,
                } => format!(" (expect string '{}')", String::from_utf8_lossy(data)),
                Matcher::Bytes { data, binary: true } => {
                    format!(" (expect binary '{}')", String::from_utf8_lossy(data))
                }
                Matcher::Regex { binary: false, .. } => " (expect regex)".into(),
                Matcher::Regex { binary: true, .. } => " (expect binary regex)".into(),
                Matcher::Mysql { .. } | Matcher::Ldap => " (expect custom function)".into(),
            }),
        }
        if let Some(c) = &self.comment {
            s.push_str(&format!(" comment: '{c}'"));
        }
        s
    }

    /// `tcpcheck_eval_recv`: the answer ended before any byte came.
    pub fn empty_answer(&self, e: &Expect) -> Verdict {
        let mut info = format!("TCPCHK got an empty response at step {}", self.id);
        if let Some(c) = &self.comment {
            info.push_str(&format!(" comment: '{c}'"));
        }
        Verdict::new(status_or(e.error_status, CheckStatus::L7Rsp), info)
    }

    /// The status of a check whose time ran out waiting at this expect.
    pub fn timeout_status(e: &Expect) -> CheckStatus {
        status_or(e.tout_status, CheckStatus::L7Tout)
    }
}

impl Program {
    /// The verdict once every rule passed (the end of `tcpcheck_main`), `buf` being the
    /// last answer read and `tls` whether the last connection speaks TLS.
    pub fn passed(&self, buf: &[u8], tls: bool) -> Verdict {
        let generic_info = |info: String| {
            if info.is_empty() && self.generic {
                "(tcp-check)".to_string()
            } else {
                info
            }
        };
        match self.steps.last().map(|s| &s.action) {
            Some(Action::Expect(e)) => {
                let mut v = Verdict::new(
                    status_or(e.ok_status, CheckStatus::L7Ok),
                    generic_info(e.on_success.render(buf)),
                );
                if let Some((off, len)) = e.status_code {
                    v.code = code_at(buf, off, len);
                }
                v
            }
            Some(Action::Connect(c)) => {
                let status = if tls {
                    CheckStatus::L6Ok
                } else {
                    CheckStatus::L4Ok
                };
                let info = if c.implicit { "" } else { "(tcp-check)" };
                Verdict::new(status, info)
            }
            _ => Verdict::new(CheckStatus::L7Ok, "(tcp-check)"),
        }
    }

    /// The steps of `check`; `ssl`: the server's `check-ssl` (the implicit connect's), `sni`
    /// its `check-sni`.
    pub fn of(check: &TcpCheck, ssl: bool, sni: Option<&str>) -> Result<Program, String> {
        let implicit = || Step {
            id: 0,
            comment: None,
            action: Action::Connect(Connect {
                port: None,
                ssl,
                sni: sni.map(str::to_string),
                implicit: true,
            }),
        };
        // A protocol's own connect rule (`connect default linger`): the server's settings.
        let default_connect = |id: u32| Step {
            id,
            comment: None,
            action: Action::Connect(Connect {
                port: None,
                ssl,
                sni: sni.map(str::to_string),
                implicit: false,
            }),
        };
        let step = |id: u32, action: Action| Step {
            id,
            comment: None,
            action,
        };
        let regex = |p: &str| Regex::new(p).map_err(|e| format!("regex '{p}': {e}"));
        let payload = |offset, ltrim| Info::Payload {
            offset,
            len: 0,
            ltrim,
            cut_crlf: true,
        };
        let expect = |matcher, min_recv, error: CheckStatus| Expect {
            matcher,
            negate: false,
            min_recv,
            ok_status: None,
            error_status: Some(error),
            tout_status: None,
            on_success: Info::None,
            on_error: Info::None,
            status_code: None,
        };
        let mut steps = Vec::new();
        let generic = matches!(check, TcpCheck::Generic(_));
        match check {
            TcpCheck::Generic(rules) => {
                let user = user_steps(rules)?;
                if !matches!(user.first().map(|s| &s.action), Some(Action::Connect(_))) {
                    steps.push(implicit());
                }
                steps.extend(user);
            }
            TcpCheck::Redis => {
                steps.push(implicit());
                steps.push(step(
                    1,
                    Action::Send(Payload::Bytes(b"*1\r\n$4\r\nPING\r\n".to_vec())),
                ));
                let mut e = expect(
                    Matcher::Bytes {
                        data: b"+PONG\r\n".to_vec(),
                        binary: false,
                    },
                    None,
                    CheckStatus::L7Sts,
                );
                e.on_error = payload(0, false);
                e.on_success = Info::Text("Redis server is ok".into());
                steps.push(step(2, Action::Expect(Box::new(e))));
            }
            TcpCheck::Mysql { user, pre41 } => {
                steps.push(default_connect(1));
                let mut id = 2;
                if let Some(u) = user {
                    steps.push(step(
                        id,
                        Action::Send(Payload::Bytes(mysql_login(u, *pre41))),
                    ));
                    id += 1;
                }
                let greeting = expect(
                    Matcher::Mysql {
                        after_greeting: false,
                    },
                    None,
                    CheckStatus::L7Rsp,
                );
                steps.push(step(id, Action::Expect(Box::new(greeting))));
                if user.is_some() {
                    let ok = expect(
                        Matcher::Mysql {
                            after_greeting: true,
                        },
                        None,
                        CheckStatus::L7Rsp,
                    );
                    steps.push(step(id + 1, Action::Expect(Box::new(ok))));
                }
            }
            TcpCheck::Pgsql { user } => {
                steps.push(default_connect(1));
                steps.push(step(2, Action::Send(Payload::Bytes(pgsql_startup(user)))));
                let mut not_error = expect(
                    Matcher::Regex {
                        re: regex("^E")?,
                        binary: false,
                    },
                    Some(5),
                    CheckStatus::L7Rsp,
                );
                not_error.negate = true;
                not_error.on_error = Info::Payload {
                    offset: 6,
                    len: 0,
                    ltrim: false,
                    cut_crlf: false,
                };
                steps.push(step(3, Action::Expect(Box::new(not_error))));
                let mut auth = expect(
                    Matcher::Regex {
                        re: regex("^52000000(08|0A|0C)000000(00|02|03|04|05|06)")?,
                        binary: true,
                    },
                    Some(9),
                    CheckStatus::L7Sts,
                );
                auth.on_success = Info::Text("PostgreSQL server is ok".into());
                auth.on_error = Info::Text("PostgreSQL unknown error".into());
                steps.push(step(4, Action::Expect(Box::new(auth))));
            }
            TcpCheck::Smtp { hello } => {
                steps.push(default_connect(1));
                let mut banner = expect(
                    Matcher::Regex {
                        re: regex("^[0-9]{3}[ \r]")?,
                        binary: false,
                    },
                    Some(4),
                    CheckStatus::L7Rsp,
                );
                banner.on_error = payload(0, false);
                steps.push(step(2, Action::Expect(Box::new(banner))));
                let mut ready = expect(
                    Matcher::Regex {
                        re: regex("^2[0-9]{2}[ \r]")?,
                        binary: false,
                    },
                    Some(4),
                    CheckStatus::L7Sts,
                );
                ready.on_error = payload(4, true);
                ready.status_code = Some((0, 3));
                steps.push(step(3, Action::Expect(Box::new(ready))));
                steps.push(step(
                    4,
                    Action::Send(Payload::Bytes(format!("{hello}\r\n").into_bytes())),
                ));
                let mut hello_ok = expect(
                    Matcher::Regex {
                        re: regex("^2[0-9]{2}[- \r]")?,
                        binary: false,
                    },
                    Some(4),
                    CheckStatus::L7Sts,
                );
                hello_ok.on_error = payload(4, true);
                hello_ok.on_success = payload(4, true);
                hello_ok.status_code = Some((0, 3));
                steps.push(step(5, Action::Expect(Box::new(hello_ok))));
            }
            TcpCheck::Ldap => {
                steps.push(implicit());
                steps.push(step(
                    1,
                    Action::Send(Payload::Bytes(hex("300C020101600702010304008000"))),
                ));
                let mut e = expect(
                    Matcher::Regex {
                        re: regex("^30")?,
                        binary: true,
                    },
                    Some(14),
                    CheckStatus::L7Rsp,
                );
                e.error_status = None;
                e.on_error = Info::Text("Not LDAPv3 protocol".into());
                steps.push(step(2, Action::Expect(Box::new(e))));
                let mut bind = expect(Matcher::Ldap, None, CheckStatus::L7Rsp);
                bind.error_status = None;
                steps.push(step(3, Action::Expect(Box::new(bind))));
            }
            TcpCheck::SslHello => {
                steps.push(implicit());
                steps.push(step(1, Action::Send(Payload::SslHello)));
                let mut e = expect(
                    Matcher::Regex {
                        re: regex("^1[56]")?,
                        binary: true,
                    },
                    Some(5),
                    CheckStatus::L6Rsp,
                );
                e.ok_status = Some(CheckStatus::L6Ok);
                e.tout_status = Some(CheckStatus::L6Tout);
                steps.push(step(2, Action::Expect(Box::new(e))));
            }
        }
        // The ids above are HAProxy's rule indexes + 1 (the implicit connect is step 0).
        Ok(Program { steps, generic })
    }
}

/// The user's rules as steps: `index + 1` as id (comments count), and each comment given
/// to the rules after it, as HAProxy hands it out (`check_proxy_tcpcheck`): to the next
/// rule, and the ones of the same kind right after it.
fn user_steps(rules: &[TcpRule]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut comment: Option<String> = None;
    let mut prev: Option<&'static str> = None;
    for (i, r) in rules.iter().enumerate() {
        let id = i as u32 + 1;
        let kind = match r {
            TcpRule::Comment(_) => "comment",
            TcpRule::Connect { .. } => "connect",
            TcpRule::Send { .. } => "send",
            TcpRule::Expect(_) => "expect",
        };
        if prev.is_some_and(|p| p != kind && p != "comment") {
            comment = None;
        }
        prev = Some(kind);
        let (action, own) = match r {
            TcpRule::Comment(c) => {
                comment = Some(c.clone());
                continue;
            }
            TcpRule::Connect {
                port,
                ssl,
                sni,
                comment: own,
            } => {
                let a = Action::Connect(Connect {
                    port: *port,
                    ssl: *ssl,
                    sni: sni.clone(),
                    implicit: false,
                });
                let c = own.clone().or_else(|| comment.take());
                (a, c)
            }
            TcpRule::Send { data, comment: own } => (
                Action::Send(Payload::Bytes(data.clone())),
                own.clone().or_else(|| comment.clone()),
            ),
            TcpRule::Expect(x) => (
                Action::Expect(Box::new(user_expect(x)?)),
                x.comment.clone().or_else(|| comment.clone()),
            ),
        };
        steps.push(Step {
            id,
            comment: own,
            action,
        });
    }
    Ok(steps)
}

fn user_expect(x: &crate::config::TcpExpect) -> Result<Expect, String> {
    let status = |s: &Option<String>| -> Result<Option<CheckStatus>, String> {
        s.as_deref()
            .map(|n| status_named(n).ok_or_else(|| format!("unknown check status '{n}'")))
            .transpose()
    };
    let matcher = match &x.pattern {
        TcpPattern::String(s) => Matcher::Bytes {
            data: s.as_bytes().to_vec(),
            binary: false,
        },
        TcpPattern::Binary(b) => Matcher::Bytes {
            data: b.clone(),
            binary: true,
        },
        TcpPattern::Regex(r) => Matcher::Regex {
            re: Regex::new(r).map_err(|e| format!("regex '{r}': {e}"))?,
            binary: false,
        },
        TcpPattern::BinaryRegex(r) => Matcher::Regex {
            re: Regex::new(r).map_err(|e| format!("regex '{r}': {e}"))?,
            binary: true,
        },
    };
    let text = |t: &Option<String>| t.clone().map_or(Info::None, Info::Text);
    Ok(Expect {
        matcher,
        negate: x.negate,
        min_recv: x.min_recv.map(|m| m as usize),
        ok_status: status(&x.ok_status)?,
        error_status: status(&x.error_status)?,
        tout_status: status(&x.tout_status)?,
        on_success: text(&x.on_success),
        on_error: text(&x.on_error),
        status_code: None,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Bytes written in hex (the protocols' fixed packets, well formed).
fn hex(s: &str) -> Vec<u8> {
    crate::config::units::hex_bytes(s).unwrap_or_default()
}

/// A MySQL packet's length (3 bytes, little endian).
fn packet_len(h: &[u8]) -> usize {
    usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16
}

/// `status-code res.payload(O,L)`: the answer's bytes there, as a number.
fn code_at(buf: &[u8], off: usize, len: usize) -> Option<u16> {
    let b = buf.get(off..off + len)?;
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// `mysql-check user U`'s login and quit packets (HAProxy's `mysql41_req`, `mysql40_req`).
fn mysql_login(user: &str, pre41: bool) -> Vec<u8> {
    let plen = user.len() + if pre41 { 7 } else { 7 + 27 };
    let mut p = vec![
        (plen & 0xff) as u8,
        ((plen >> 8) & 0xff) as u8,
        ((plen >> 16) & 0xff) as u8,
        1,
    ];
    if pre41 {
        p.extend(hex("0080000001"));
    } else {
        p.extend(hex("0082000000800001"));
        p.push(0x21);
        p.extend([0u8; 23]);
    }
    p.extend(user.as_bytes());
    p.extend([0, 0]);
    p.extend(hex("0100000001"));
    p
}

/// `pgsql-check user U`'s startup message (HAProxy's `pgsql_req`).
fn pgsql_startup(user: &str) -> Vec<u8> {
    let plen = (15 + user.len()) as u32;
    let mut p = plen.to_be_bytes().to_vec();
    p.extend(hex("00030000"));
    p.extend(b"user\0");
    p.extend(user.as_bytes());
    p.extend([0, 0]);
    p
}

/// `ssl-hello-chk`'s SSLv3 client hello (HAProxy's `sslv3_client_hello`), stamped with
/// `unix_secs`.
fn ssl_client_hello(unix_secs: u32) -> Vec<u8> {
    // Record header (handshake, SSLv3, 0x79 bytes), client hello of 0x75 bytes, SSLv3.
    let mut p = hex("1603000079010000750300");
    p.extend(unix_secs.to_be_bytes());
    p.extend(b"HAPROXYSSLCHK\nHAPROXYSSLCHK\n");
    p.push(0x00);
    p.extend(hex("004E"));
    for c in (0x01u16..=0x1B).chain(0x2F..=0x3A) {
        p.extend(c.to_be_bytes());
    }
    p.extend(hex("0100"));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TcpExpect;

    fn generic(rules: Vec<TcpRule>) -> Program {
        Program::of(&TcpCheck::Generic(rules), false, None).expect("compiles")
    }

    fn send(s: &str) -> TcpRule {
        TcpRule::Send {
            data: s.as_bytes().to_vec(),
            comment: None,
        }
    }

    fn expect(p: TcpPattern) -> TcpRule {
        TcpRule::Expect(TcpExpect::new(p))
    }

    fn judge(p: &Program, i: usize, buf: &[u8], last_read: bool) -> Eval {
        let s = &p.steps[i];
        let Action::Expect(e) = &s.action else {
            panic!("not an expect")
        };
        s.judge(e, buf, last_read, i + 1 == p.steps.len(), p.generic)
    }

    /// The lines HAProxy 2.6 logged for the same rules against redis (see
    /// `tests/protocol_checks.rs` for the side-by-side run).
    #[test]
    fn the_users_rules_and_their_texts() {
        let p = generic(vec![
            TcpRule::Comment("looking for a replica".into()),
            send("PING\r\n"),
            expect(TcpPattern::String("+PONG".into())),
            send("info replication\r\n"),
            expect(TcpPattern::String("role:slave".into())),
        ]);
        let ids: Vec<u32> = p.steps.iter().map(|s| s.id).collect();
        assert_eq!(ids, [0, 2, 3, 4, 5]);
        assert_eq!(p.steps[1].comment.as_deref(), Some("looking for a replica"));
        assert_eq!(
            p.steps[2].comment, None,
            "a comment goes to one kind of rule"
        );
        assert_eq!(
            p.steps[0].where_(true),
            " at initial connection step of tcp-check"
        );
        assert_eq!(
            p.steps[4].where_(true),
            " at step 5 of tcp-check (expect string 'role:slave')"
        );
        assert_eq!(judge(&p, 2, b"+PON", false), Eval::Wait);
        assert_eq!(judge(&p, 2, b"+PONG\r\n", false), Eval::Continue);
        assert_eq!(
            judge(&p, 4, b"# Replication\r\nrole:master\r\n", false),
            Eval::Wait
        );
        assert_eq!(
            judge(&p, 4, b"# Replication\r\nrole:master\r\n", true),
            Eval::Stop(Verdict::new(
                CheckStatus::L7Rsp,
                "TCPCHK did not match content 'role:slave' at step 5"
            ))
        );
        let neg = generic(vec![
            send("PING\r\n"),
            TcpRule::Expect(TcpExpect {
                negate: true,
                ..TcpExpect::new(TcpPattern::Regex("^\\+PO".into()))
            }),
        ]);
        assert_eq!(
            judge(&neg, 2, b"+PONG\r\n", false),
            Eval::Stop(Verdict::new(
                CheckStatus::L7Rsp,
                "TCPCHK matched unwanted content (regex) at step 2"
            ))
        );
        assert_eq!(
            generic(vec![]).passed(b"", false),
            Verdict::new(CheckStatus::L4Ok, "")
        );
        assert_eq!(
            neg.passed(b"", false),
            Verdict::new(CheckStatus::L7Ok, "(tcp-check)")
        );
    }

    #[test]
    fn redis_and_mysql_as_haproxy_builds_them() {
        let r = Program::of(&TcpCheck::Redis, false, None).expect("redis");
        assert_eq!(
            judge(&r, 2, b"-NOAUTH Authentication required.\r\n", false),
            Eval::Wait
        );
        let v = judge(&r, 2, b"d\0\0\0\n5.5.5-10.11", true);
        assert_eq!(v, Eval::Stop(Verdict::new(CheckStatus::L7Sts, "d")));
        assert_eq!(
            r.passed(b"+PONG\r\n", false),
            Verdict::new(CheckStatus::L7Ok, "Redis server is ok")
        );
        let login = mysql_login("haproxy", false);
        assert_eq!(&login[..4], &[41, 0, 0, 1]);
        assert_eq!(login.len(), 4 + 41 + 5);
        let m = Program::of(
            &TcpCheck::Mysql {
                user: Some("haproxy".into()),
                pre41: false,
            },
            false,
            None,
        )
        .expect("mysql");
        let mut greeting = vec![10, 0, 0, 0, 10];
        greeting.extend(b"5.5.5-10.11.19-MariaDB\0abcd");
        greeting[0] = (greeting.len() - 4) as u8;
        assert_eq!(judge(&m, 2, &greeting[..6], false), Eval::Wait);
        assert_eq!(judge(&m, 2, &greeting, false), Eval::Continue);
        let mut ok = greeting.clone();
        ok.extend([7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            judge(&m, 3, &ok, false),
            Eval::Passed(Verdict::new(CheckStatus::L7Ok, "5.5.5-10.11.19-MariaDB"))
        );
        let mut denied = greeting.clone();
        denied.extend([11, 0, 0, 2, 0xff, 0x15, 0x04]);
        denied.extend(b"#28000no");
        let Eval::Stop(v) = judge(&m, 3, &denied, false) else {
            panic!("error packet")
        };
        assert_eq!(
            (v.status, v.code, v.info.as_str()),
            (CheckStatus::L7Sts, Some(1045), "#28000no")
        );
        assert_eq!(
            judge(&m, 2, b"garbage here\r\n", true),
            Eval::Stop(Verdict::new(CheckStatus::L7Rsp, ""))
        );
    }

    #[test]
    fn smtp_ldap_pgsql_ssl_hello() {
        let s = Program::of(
            &TcpCheck::Smtp {
                hello: "HELO localhost".into(),
            },
            false,
            None,
        )
        .expect("smtp");
        let busy = b"421 too busy, come back later\r\n";
        assert_eq!(judge(&s, 1, busy, false), Eval::Continue);
        assert_eq!(
            judge(&s, 2, busy, false),
            Eval::Stop(Verdict {
                status: CheckStatus::L7Sts,
                code: Some(421),
                info: "too busy, come back later".into()
            })
        );
        let l = Program::of(&TcpCheck::Ldap, false, None).expect("ldap");
        assert_eq!(
            judge(&l, 2, b"garbage here\r\n", false),
            Eval::Stop(Verdict::new(CheckStatus::L7Rsp, "Not LDAPv3 protocol"))
        );
        let bind_ok = hex("300c02010161070a010004000400");
        assert_eq!(judge(&l, 2, &bind_ok, false), Eval::Continue);
        assert_eq!(
            judge(&l, 3, &bind_ok, false),
            Eval::Passed(Verdict::new(CheckStatus::L7Ok, "Success"))
        );
        let pg = Program::of(&TcpCheck::Pgsql { user: "u".into() }, false, None).expect("pgsql");
        assert_eq!(pgsql_startup("u").len(), 16);
        assert_eq!(
            judge(&pg, 3, &hex("520000000800000000"), false),
            Eval::Continue
        );
        let hello = ssl_client_hello(0x01020304);
        assert_eq!(hello.len(), 5 + 0x79);
        assert_eq!(&hello[11..15], &[1, 2, 3, 4]);
        let t = Program::of(&TcpCheck::SslHello, false, None).expect("ssl");
        assert_eq!(judge(&t, 2, &hex("1503000002"), false), Eval::Continue);
        assert_eq!(t.passed(b"", false), Verdict::new(CheckStatus::L6Ok, ""));
    }
}
