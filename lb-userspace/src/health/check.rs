//! The checks (tokio) and their scheduler.
//!
//! Checks are HAProxy 2.6's (`src/tcpcheck.c`, `src/check.c`):
//! - without `option httpchk`, a connect: L4OK once connected, L4CON with the OS error text
//!   (`strerror`, e.g. "Connection refused"), L4TOUT when the connect timeout expires;
//! - with it, the configured request is sent byte for byte on a plain TCP connection and the
//!   response head is read: L7OK/L7STS on its status code (200-399 unless `expect_status`
//!   says otherwise; L7STS carries the response's own reason phrase as info), L7RSP on
//!   anything that is not an HTTP response (garbage, closed before a full head), L7TOUT when
//!   connected but the answer does not come in time, SOCKERR on an I/O error before any byte
//!   of answer (e.g. "Connection reset by peer");
//! - timeouts (`timeout check` in the configuration manual, `tcpcheck_eval_connect`): with
//!   `timeout check` unset, `inter` bounds the whole check from its start; with it set, the
//!   connect gets min(`timeout connect`, `inter`) and the answer gets `timeout check` from
//!   the moment the connection is established;
//! - the duration runs from the start of the check (before connecting) to the verdict, in
//!   whole milliseconds, truncated.
//!
//! The scheduler runs one task per checked server: the first checks are spread over the
//! smallest interval like HAProxy's `start_checks`, each next check is due one interval (from
//! the state machine: `inter`, `fastinter`, `downinter`) after the previous one ended.
//! The task applies the result to the server's [`Health`] itself, so the interval it picks is
//! always the one of the state the result led to, and reports a [`CheckEvent`] on an mpsc
//! channel. Maintenance pauses a server's checks (and abandons one under way).
use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, sleep_until, timeout_at},
};

use super::state::{CheckResult, CheckStatus, Health, Intervals, Outcome, Transition};
use crate::{
    config::{Backend, CheckKind, Config, HttpCheck, Server},
    dataplane::{ids::ServerId, layout::Layout},
};

/// What a check does once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing: connecting is the check (HAProxy without `option httpchk`).
    Tcp,
    /// Send `request` as is, then judge the response's status code.
    Http {
        request: Vec<u8>,
        /// Status ranges that pass; empty means 200-399.
        expect: Vec<(u16, u16)>,
    },
}

/// Everything one check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// The server's address, or its `addr`/`port` check overrides.
    pub addr: SocketAddr,
    pub probe: Probe,
    /// The server's configured `inter` (never `fastinter`/`downinter`): HAProxy's check
    /// timeout base.
    pub inter: Duration,
    pub timeout_connect: Option<Duration>,
    pub timeout_check: Option<Duration>,
}

impl CheckSpec {
    pub fn new(backend: &Backend, server: &Server) -> CheckSpec {
        let ip = server.check_addr.unwrap_or(server.addr);
        let port = server.check_port.unwrap_or(server.port);
        let probe = match &backend.check {
            CheckKind::Tcp => Probe::Tcp,
            CheckKind::Http(h) => Probe::Http {
                request: http_request(h),
                expect: h.expect_status.clone(),
            },
        };
        CheckSpec {
            addr: SocketAddr::new(IpAddr::V4(ip), port),
            probe,
            inter: server.inter,
            timeout_connect: backend.timeouts.connect,
            timeout_check: backend.timeouts.check,
        }
    }

    /// How long connecting may take: min(`timeout connect`, `inter`) when `timeout check` is
    /// set (and `timeout connect` too), `inter` otherwise.
    pub fn connect_timeout(&self) -> Duration {
        match (self.timeout_check, self.timeout_connect) {
            (Some(_), Some(c)) => c.min(self.inter),
            _ => self.inter,
        }
    }
}

/// The bytes of an HTTP check request: `METHOD URI VERSION\r\n`, each configured header line
/// and `\r\n`, an empty line, the body. Nothing is added (no Host, no Connection), as HAProxy
/// 1.x sent its `option httpchk` string; the one exception is a body without a configured
/// `Content-Length`, which gets one so the server can tell where it ends.
pub fn http_request(h: &HttpCheck) -> Vec<u8> {
    let mut r = String::new();
    r.push_str(&h.method);
    r.push(' ');
    r.push_str(&h.uri);
    if !h.version.is_empty() {
        r.push(' ');
        r.push_str(&h.version);
    }
    r.push_str("\r\n");
    for hdr in &h.headers {
        r.push_str(hdr);
        r.push_str("\r\n");
    }
    let has_length = h.headers.iter().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
    });
    if !h.body.is_empty() && !has_length {
        r.push_str(&format!("Content-Length: {}\r\n", h.body.len()));
    }
    r.push_str("\r\n");
    r.push_str(&h.body);
    r.into_bytes()
}

/// The OS's text for an I/O error, as HAProxy prints `strerror(errno)`: "Connection refused",
/// without Rust's " (os error 111)".
pub fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

/// The longest wait used anywhere (HAProxy's intervals and timeouts are ints of ms, under 25
/// days); keeps `Instant` arithmetic from overflowing on absurd configurations.
const MAX_WAIT: Duration = Duration::from_secs(30 * 86_400);

fn after(from: Instant, d: Duration) -> Instant {
    from + d.min(MAX_WAIT)
}

/// Runs one check. Never panics, never takes longer than its timeouts.
pub async fn run_check(spec: &CheckSpec) -> CheckResult {
    let start = Instant::now();
    let done = |status| CheckResult::new(status, start.elapsed());
    let socket = match spec.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => return done(CheckStatus::SockErr).with_info(os_error_text(&e)),
    };
    let stream = match timeout_at(
        after(start, spec.connect_timeout()),
        socket.connect(spec.addr),
    )
    .await
    {
        Err(_) => return done(CheckStatus::L4Tout),
        Ok(Err(e)) => return done(CheckStatus::L4Con).with_info(os_error_text(&e)),
        Ok(Ok(s)) => s,
    };
    let (request, expect) = match &spec.probe {
        Probe::Tcp => return done(CheckStatus::L4Ok),
        Probe::Http { request, expect } => (request, expect),
    };
    let deadline = match spec.timeout_check {
        Some(t) => after(Instant::now(), t),
        None => after(start, spec.inter),
    };
    let reply = match timeout_at(deadline, exchange(stream, request)).await {
        Err(_) => return done(CheckStatus::L7Tout),
        Ok(r) => r,
    };
    match reply {
        Reply::IoError(e) => done(CheckStatus::SockErr).with_info(os_error_text(&e)),
        Reply::Invalid => done(CheckStatus::L7Rsp),
        Reply::Head { code, reason } => {
            let pass = if expect.is_empty() {
                (200..=399).contains(&code)
            } else {
                expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
            };
            if pass {
                done(CheckStatus::L7Ok).with_http(code, &reason)
            } else {
                done(CheckStatus::L7Sts)
                    .with_http(code, &reason)
                    .with_info(reason)
            }
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

/// One server to check.
#[derive(Clone, Debug)]
pub struct CheckTarget {
    pub id: ServerId,
    pub spec: CheckSpec,
    pub intervals: Intervals,
    /// The initial state: UP at `health = rise`, or in maintenance for `disabled` servers.
    pub health: Health,
}

impl CheckTarget {
    pub fn new(id: ServerId, backend: &Backend, server: &Server) -> CheckTarget {
        CheckTarget {
            id,
            spec: CheckSpec::new(backend, server),
            intervals: Intervals::of(server),
            health: Health::for_server(server),
        }
    }
}

/// The servers of `cfg` that have `check`, with the ids `layout` (made of `cfg`) gave them.
/// Servers without `check` are never checked and stay UP.
pub fn targets(layout: &Layout, cfg: &Config) -> Vec<CheckTarget> {
    layout
        .servers()
        .filter_map(|(_, s)| {
            let (backend, server) = s.config(cfg)?;
            server
                .check
                .then(|| CheckTarget::new(s.id, backend, server))
        })
        .collect()
}

/// One finished check, applied to its server's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckEvent {
    pub server: ServerId,
    /// Status, code, info and duration.
    pub result: CheckResult,
    /// What the state machine made of it: whether to log it, the UP/DOWN transition, the
    /// counter to print.
    pub outcome: Outcome,
}

/// Shared between a server's task and the [`Checkers`] handle.
struct Shared {
    state: Mutex<CheckerState>,
    /// Bumped at every maintenance or enable change: the task abandons a check under way,
    /// and a result of a check started before the change is dropped.
    control: watch::Sender<u64>,
}

struct CheckerState {
    health: Health,
    last: Option<CheckResult>,
    /// `enable health`/`disable health` (HAProxy's CHK_ST_ENABLED).
    enabled: bool,
}

impl CheckerState {
    fn paused(&self) -> bool {
        self.health.in_maintenance() || !self.enabled
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CheckerState> {
        // The critical sections cannot panic halfway; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.control.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// The running checkers: one task per checked server. Dropping it stops them.
pub struct Checkers {
    by_server: BTreeMap<ServerId, Arc<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts one checker task per target (needs a tokio runtime). Results arrive on `events`;
/// when its receiver is gone the tasks end.
///
/// First checks are spread like HAProxy's `start_checks`: the n-th of N checked servers
/// starts after `max(mininter, its interval) * n / N`, `mininter` being the smallest initial
/// interval of at least one second among them.
pub fn spawn_checkers(targets: Vec<CheckTarget>, events: mpsc::Sender<CheckEvent>) -> Checkers {
    const INTER_THRESHOLD: Duration = Duration::from_millis(1000);
    let count = targets.len() as u32;
    let mininter = targets
        .iter()
        .map(|t| t.health.next_interval(&t.intervals))
        .filter(|&i| i >= INTER_THRESHOLD)
        .min()
        .unwrap_or_default();
    let mut by_server = BTreeMap::new();
    let mut tasks = Vec::new();
    for (pos, t) in targets.into_iter().enumerate() {
        let own = t.health.next_interval(&t.intervals);
        let first = mininter.max(own).min(MAX_WAIT) * pos as u32 / count.max(1);
        let (control, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(CheckerState {
                health: t.health,
                last: None,
                enabled: true,
            }),
            control,
        });
        by_server.insert(t.id, shared.clone());
        tasks.push(tokio::spawn(check_loop(
            t.id,
            shared,
            t.spec,
            t.intervals,
            first,
            events.clone(),
        )));
    }
    Checkers { by_server, tasks }
}

async fn check_loop(
    id: ServerId,
    shared: Arc<Shared>,
    spec: CheckSpec,
    intervals: Intervals,
    first: Duration,
    events: mpsc::Sender<CheckEvent>,
) {
    let mut control = shared.control.subscribe();
    let mut next = after(Instant::now(), first);
    loop {
        sleep_until(next).await;
        let generation = *control.borrow_and_update();
        if shared.lock().paused() {
            // HAProxy keeps a paused check's task ticking every `inter`; the first check
            // after maintenance comes at the next tick.
            next = after(next, intervals.inter);
            continue;
        }
        let result = tokio::select! {
            r = run_check(&spec) => r,
            _ = control.changed() => {
                // Maintenance or disable while checking: abandon this check.
                next = Instant::now();
                continue;
            }
        };
        let (event, interval) = {
            let mut st = shared.lock();
            let event = if st.paused() || *shared.control.borrow() != generation {
                None
            } else {
                let outcome = st.health.on_result(result.status);
                st.last = Some(result.clone());
                Some(CheckEvent {
                    server: id,
                    result,
                    outcome,
                })
            };
            (event, st.health.next_interval(&intervals))
        };
        if let Some(ev) = event
            && events.send(ev).await.is_err()
        {
            return;
        }
        next = after(Instant::now(), interval);
    }
}

impl Checkers {
    /// The server is checked (it had `check`).
    pub fn is_checked(&self, id: ServerId) -> bool {
        self.by_server.contains_key(&id)
    }

    /// A copy of the server's state machine (for `show stat`: counter, status).
    pub fn health(&self, id: ServerId) -> Option<Health> {
        self.by_server.get(&id).map(|s| s.lock().health.clone())
    }

    /// The last check's result (`show stat`'s check_status, check_code, check_duration,
    /// check_desc).
    pub fn last_result(&self, id: ServerId) -> Option<CheckResult> {
        self.by_server.get(&id).and_then(|s| s.lock().last.clone())
    }

    /// Maintenance starts (`disable server`, `set server ... state maint`): checks pause,
    /// a check under way is abandoned, the counter drops to 0. Returns whether the server
    /// was UP; `None` for an unchecked server or one already in maintenance.
    pub fn enter_maintenance(&self, id: ServerId) -> Option<bool> {
        let shared = self.by_server.get(&id)?;
        let was_up = shared.lock().health.enter_maintenance();
        if was_up.is_some() {
            shared.bump();
        }
        was_up
    }

    /// Maintenance ends: checks resume at the task's next tick, the server is UP with
    /// `health = rise`. Returns whether it was in maintenance.
    pub fn leave_maintenance(&self, id: ServerId) -> bool {
        let Some(shared) = self.by_server.get(&id) else {
            return false;
        };
        let left = shared.lock().health.leave_maintenance();
        if left {
            shared.bump();
        }
        left
    }

    /// `set server B/S health up|down`. A check under way still counts afterwards, as in
    /// HAProxy.
    pub fn force(&self, id: ServerId, up: bool) -> Option<Transition> {
        self.by_server.get(&id)?.lock().health.force(up)
    }

    /// Checks are not `disable health`d (HAProxy's CHK_ST_ENABLED); false when unchecked.
    pub fn is_enabled(&self, id: ServerId) -> bool {
        self.by_server.get(&id).is_some_and(|s| s.lock().enabled)
    }

    /// `enable health`/`disable health`: pauses or resumes the checks without touching the
    /// server's state.
    pub fn set_enabled(&self, id: ServerId, enabled: bool) {
        if let Some(shared) = self.by_server.get(&id) {
            let changed = std::mem::replace(&mut shared.lock().enabled, enabled) != enabled;
            if changed {
                shared.bump();
            }
        }
    }

    /// Stops every checker and waits for them to end.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_request_bytes() {
        let h = HttpCheck {
            method: "GET".into(),
            uri: "/health_check.html".into(),
            version: "HTTP/1.0".into(),
            headers: vec!["User-agent: Proxy-Check".into()],
            ..HttpCheck::default()
        };
        assert_eq!(
            http_request(&h),
            b"GET /health_check.html HTTP/1.0\r\nUser-agent: Proxy-Check\r\n\r\n"
        );
        assert_eq!(
            http_request(&HttpCheck::default()),
            b"OPTIONS / HTTP/1.0\r\n\r\n"
        );
        let with_body = HttpCheck {
            method: "POST".into(),
            body: "ping".into(),
            ..HttpCheck::default()
        };
        assert_eq!(
            http_request(&with_body),
            b"POST / HTTP/1.0\r\nContent-Length: 4\r\n\r\nping"
        );
        let own_length = HttpCheck {
            headers: vec!["content-length : 4".into()],
            ..with_body
        };
        assert_eq!(
            http_request(&own_length),
            b"POST / HTTP/1.0\r\ncontent-length : 4\r\n\r\nping"
        );
    }

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

    #[test]
    fn os_error_texts_are_strerrors() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_error_text(&e), "Connection refused");
        let e = io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(os_error_text(&e), "Connection reset by peer");
        let e = io::Error::other("custom");
        assert_eq!(os_error_text(&e), "custom");
    }

    #[test]
    fn connect_timeout_rules() {
        let ms = Duration::from_millis;
        let mut s = CheckSpec {
            addr: "127.0.0.1:80".parse().expect("addr"),
            probe: Probe::Tcp,
            inter: ms(3000),
            timeout_connect: Some(ms(10000)),
            timeout_check: None,
        };
        // `timeout check` unset: `inter` for everything.
        assert_eq!(s.connect_timeout(), ms(3000));
        s.timeout_check = Some(ms(10000));
        assert_eq!(s.connect_timeout(), ms(3000));
        s.timeout_connect = Some(ms(500));
        assert_eq!(s.connect_timeout(), ms(500));
        s.timeout_connect = None;
        assert_eq!(s.connect_timeout(), ms(3000));
    }

    #[test]
    fn targets_are_the_checked_servers_with_their_layout_ids() {
        let c = crate::config::native::parse(
            "t.toml",
            r#"
[defaults]
timeout = { connect = "5s", check = "2s" }
[frontend.f]
bind = ["10.0.0.1:80"]
default_backend = "b2"
[backend.b1]
server = [{ name = "a", address = "10.0.2.1:53" }]
[backend.b2]
http_check = { method = "GET", uri = "/h", version = "HTTP/1.0" }
server = [
  { name = "w1", address = "10.0.1.1:80", check = true, inter = "3000", fastinter = "1s" },
  { name = "w2", address = "10.0.1.2:80", check = true, port = 8080, disabled = true },
]
"#,
        )
        .expect("parses");
        let layout = Layout::new(&c);
        let t = targets(&layout, &c);
        let ids: Vec<ServerId> = t.iter().map(|t| t.id).collect();
        assert_eq!(ids, [ServerId(1), ServerId(2)]);
        let names: Vec<_> = ids
            .iter()
            .filter_map(|&id| layout.server(id))
            .map(|(_, s)| s.name.as_str())
            .collect();
        assert_eq!(names, ["w1", "w2"]);
        assert_eq!(t[0].spec.addr, "10.0.1.1:80".parse().expect("addr"));
        assert_eq!(t[0].spec.timeout_check, Some(Duration::from_secs(2)));
        assert_eq!(t[0].intervals.fastinter, Some(Duration::from_secs(1)));
        assert!(
            matches!(&t[0].spec.probe, Probe::Http { request, .. } if request == b"GET /h HTTP/1.0\r\n\r\n")
        );
        assert!(t[1].health.in_maintenance());
    }
}
