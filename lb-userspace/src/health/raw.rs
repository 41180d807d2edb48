//! The checks reqwest cannot run, on tokio sockets: a TCP connect (and a TLS handshake
//! after it, with `check-ssl`), since reqwest only speaks HTTP; and an HTTP request that must
//! go out byte for byte as configured (the seed's `GET /health_check.html HTTP/1.0` with
//! `User-agent: Proxy-Check`), since hyper writes header names in lower case and reqwest
//! adds `host` and `accept` headers. The agent check connects here too.
//!
//! Verdicts are HAProxy 2.6's (`chk_report_conn_err`): L4CON with the OS error text
//! (`strerror`, e.g. "Connection refused"), L4TOUT, L6RSP/L6TOUT for the handshake, and for
//! the HTTP exchange L7RSP on anything that is not an HTTP response (garbage, closed before a
//! full head), SOCKERR on an I/O error before any byte of answer (e.g. "Connection reset by
//! peer"), L7TOUT when the answer does not come in time.
use std::{io, net::SocketAddr, sync::Arc};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::{Instant, timeout_at},
};

use super::{
    expect::Expect,
    run::os_error_text,
    spec::{Budget, Phase},
    state::{CheckResult, CheckStatus},
    tls,
};

/// A failed step: the status and its `info`.
pub(super) type Failure = (CheckStatus, String);

/// Connects within the check's connect budget.
pub(super) async fn connect(
    addr: SocketAddr,
    budget: &Budget,
    start: Instant,
) -> Result<TcpStream, Failure> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| (CheckStatus::SockErr, os_error_text(&e)))?;
    match timeout_at(
        budget.deadline(start, Phase::Connecting),
        socket.connect(addr),
    )
    .await
    {
        Err(_) => Err((CheckStatus::L4Tout, String::new())),
        Ok(Err(e)) => Err((CheckStatus::L4Con, os_error_text(&e))),
        Ok(Ok(s)) => Ok(s),
    }
}

/// A TCP check, over TLS when `tls` is given: L4OK once connected, L6OK once the handshake
/// is done.
pub(super) async fn connect_check(
    addr: SocketAddr,
    tls: Option<&(Arc<ClientConfig>, ServerName<'static>)>,
    budget: &Budget,
) -> CheckResult {
    let start = Instant::now();
    let done = |(status, info): Failure| CheckResult::new(status, start.elapsed()).with_info(info);
    let stream = match connect(addr, budget, start).await {
        Ok(s) => s,
        Err(f) => return done(f),
    };
    let Some((config, name)) = tls else {
        return done((CheckStatus::L4Ok, String::new()));
    };
    let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), stream);
    match timeout_at(budget.deadline(start, Phase::Handshaking), handshake).await {
        Err(_) => done((CheckStatus::L6Tout, String::new())),
        Ok(Err(e)) => done((CheckStatus::L6Rsp, handshake_info(&e))),
        Ok(Ok(_)) => done((CheckStatus::L6Ok, String::new())),
    }
}

/// HAProxy's `info` for a handshake that failed with `e` (tokio-rustls wraps rustls's
/// errors in `io::Error`s).
fn handshake_info(e: &io::Error) -> String {
    let rustls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    tls::handshake_info(rustls)
}

/// An HTTP check whose request goes out as is, on a plain connection; the verdict needs the
/// status line only.
pub(super) async fn exact_http_check(
    addr: SocketAddr,
    request: &[u8],
    expect: &Expect,
    budget: &Budget,
    server_up: bool,
) -> CheckResult {
    let start = Instant::now();
    let done = |status| CheckResult::new(status, start.elapsed());
    let stream = match connect(addr, budget, start).await {
        Ok(s) => s,
        Err((status, info)) => return done(status).with_info(info),
    };
    let deadline = budget.deadline(start, Phase::Connected(Instant::now()));
    let reply = match timeout_at(deadline, exchange(stream, request)).await {
        Err(_) => return done(CheckStatus::L7Tout),
        Ok(r) => r,
    };
    match reply {
        Reply::IoError(e) => done(CheckStatus::SockErr).with_info(os_error_text(&e)),
        Reply::Invalid => done(CheckStatus::L7Rsp),
        Reply::Head { code, reason } => {
            let v = expect.judge_for(server_up, code, &reason, b"");
            done(v.status).with_http(code, &reason).with_info(v.info)
        }
    }
}

/// What came back for an HTTP check.
#[derive(Debug)]
enum Reply {
    /// A complete response head.
    Head { code: u16, reason: String },
    /// Not an HTTP response, or closed before a complete head.
    Invalid,
    /// Sending failed, or reading failed before any byte came back.
    IoError(io::Error),
}

/// The most a response head may take (HAProxy's default `tune.bufsize`).
const MAX_HEAD: usize = 16384;

async fn exchange(mut stream: TcpStream, request: &[u8]) -> Reply {
    if let Err(e) = stream.write_all(request).await {
        return Reply::IoError(e);
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => return finish(&buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                match parse_head(&buf) {
                    Head::Partial if buf.len() < MAX_HEAD => {}
                    Head::Partial | Head::Invalid => return Reply::Invalid,
                    Head::Complete { code, reason } => return Reply::Head { code, reason },
                }
            }
            // Like HAProxy, a network error only counts when nothing came back: an RST right
            // after the answer is common.
            Err(e) if buf.is_empty() => return Reply::IoError(e),
            Err(_) => return finish(&buf),
        }
    }
}

/// The connection ended: judge what arrived.
fn finish(buf: &[u8]) -> Reply {
    match parse_head(buf) {
        Head::Complete { code, reason } => Reply::Head { code, reason },
        _ => Reply::Invalid,
    }
}

/// Parsing state of a response head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Partial,
    Invalid,
    Complete { code: u16, reason: String },
}

/// Parses `HTTP/d.d SP ddd [SP reason] CRLF *(header CRLF) CRLF` (bare LF accepted), as far
/// as HAProxy's H1 parser would need to build the status line: an error as soon as the bytes
/// cannot be a response, complete once the empty line ending the head arrived.
fn parse_head(buf: &[u8]) -> Head {
    // Empty lines before the status line are skipped.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let buf = &buf[start..];
    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
        return if could_start_status_line(buf) {
            Head::Partial
        } else {
            Head::Invalid
        };
    };
    let line = strip_cr(&buf[..eol]);
    let Some((code, reason)) = status_line(line) else {
        return Head::Invalid;
    };
    let mut rest = &buf[eol + 1..];
    loop {
        let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
            return Head::Partial;
        };
        let line = strip_cr(&rest[..eol]);
        if line.is_empty() {
            return Head::Complete { code, reason };
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        let named = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| colon > 0 && line[..colon].iter().all(|&b| is_token(b)));
        if !continuation && !named {
            return Head::Invalid;
        }
        rest = &rest[eol + 1..];
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The start of a status line that may still become a valid one.
fn could_start_status_line(partial: &[u8]) -> bool {
    const PATTERN: &[u8] = b"HTTP/d.d ddd";
    partial.iter().zip(PATTERN).all(|(&b, &p)| match p {
        b'd' => b.is_ascii_digit(),
        _ => b == p,
    }) && (partial.len() <= PATTERN.len() || partial.get(PATTERN.len()).is_some_and(|&b| b == b' '))
}

fn status_line(line: &[u8]) -> Option<(u16, String)> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let (version, rest) = rest.split_at_checked(3)?;
    if !(version[0].is_ascii_digit() && version[1] == b'.' && version[2].is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let (digits, rest) = rest.split_at_checked(3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let reason = match rest.first() {
        None => &[][..],
        Some(b' ') => rest.trim_ascii_start(),
        Some(_) => return None,
    };
    Some((code, String::from_utf8_lossy(reason).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(code: u16, reason: &str) -> Head {
        Head::Complete {
            code,
            reason: reason.into(),
        }
    }

    #[test]
    fn response_heads() {
        let cases: &[(&[u8], Head)] = &[
            (b"HTTP/1.1 200 OK\r\n\r\n", complete(200, "OK")),
            (
                b"HTTP/1.0 404 Not Found\r\nServer: x\r\nContent-Length: 3\r\n\r\nabc",
                complete(404, "Not Found"),
            ),
            (b"HTTP/1.1 500\r\n\r\n", complete(500, "")),
            (b"HTTP/1.1 503  Busy now \n\n", complete(503, "Busy now ")),
            (
                b"\r\nHTTP/1.1 204 No Content\r\nA: b\r\n  folded\r\n\r\n",
                complete(204, "No Content"),
            ),
            (b"HTTP/1.1 200 OK\r\nServer: x\r\n", Head::Partial),
            (b"HTTP/1.1 200 OK", Head::Partial),
            (b"HTTP/1.", Head::Partial),
            (b"HT", Head::Partial),
            (b"", Head::Partial),
            (b"HTTP/1.1 2000 OK\r\n\r\n", Head::Invalid),
            (b"HTTP/1.1 20", Head::Partial),
            (b"HTTP/1.1 2x", Head::Invalid),
            (b"HTTP/1.1 2000", Head::Invalid),
            (b"HELLO", Head::Invalid),
            (b"garbage\r\n", Head::Invalid),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Head::Invalid),
            (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", Head::Invalid),
            (b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", Head::Invalid),
            (b"HTTP/x.1 200 OK\r\n\r\n", Head::Invalid),
            (b"HTTP/1.1 200OK\r\n\r\n", Head::Invalid),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                &parse_head(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
