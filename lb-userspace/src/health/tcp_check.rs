//! Running `tcp-check` rules ([`super::tcp_rules`]) on a tokio socket, the way HAProxy
//! 2.6's `tcpcheck_main` does: connect (over TLS if asked), send, and for each expect read
//! until it can judge: its pattern matched, the minimum arrived, the answer ended or filled
//! the buffer, or the time ran out. A send clears what was read; expects in a row judge the
//! same answer.
use std::{io, net::SocketAddr, sync::Arc};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::{
    raw,
    run::os_error_text,
    spec::{Budget, Phase},
    state::{CheckResult, CheckStatus},
    tcp_rules::{Action, BUFFER, Eval, Expect, Program, Step, Verdict},
    tls,
};

/// The most of a check's `info` HAProxy keeps (`HCHK_DESC_LEN` - 1).
const DESC_LEN: usize = 127;

/// A connection a check talks on: plain or TLS.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// TLS settings for connect rules with `ssl`.
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    /// The name to check when the rule gives no `sni` (the server's `check-sni`, else its
    /// address).
    pub name: ServerName<'static>,
}

/// Runs `program` against the server at `addr` (its check address and port).
pub async fn run(
    program: &Program,
    addr: SocketAddr,
    tls: Option<&TlsSetup>,
    budget: &Budget,
) -> CheckResult {
    let start = Instant::now();
    let mut r = Runner {
        program,
        addr,
        tls,
        budget,
        start,
        conn: None,
        connected_at: start,
        buf: Vec::new(),
        ended: false,
        tls_conn: false,
    };
    let (mut v, twice) = r.steps().await;
    // HAProxy keeps 127 bytes of a check's text (`HCHK_DESC_LEN`).
    if v.info.len() > DESC_LEN {
        let mut end = DESC_LEN;
        while !v.info.is_char_boundary(end) {
            end -= 1;
        }
        v.info.truncate(end);
    }
    let mut result = CheckResult::new(v.status, start.elapsed()).with_info(v.info);
    result.code = v.code;
    result.twice = twice;
    result
}

struct Runner<'a> {
    program: &'a Program,
    addr: SocketAddr,
    tls: Option<&'a TlsSetup>,
    budget: &'a Budget,
    start: Instant,
    conn: Option<Box<dyn Conn>>,
    connected_at: Instant,
    /// What was read since the last send.
    buf: Vec<u8>,
    /// The server closed its side (or the connection broke after some data).
    ended: bool,
    tls_conn: bool,
}

/// The end of a step that does not let the check go on.
type Ended = Verdict;

impl Runner<'_> {
    /// Every step in turn: the verdict, and whether HAProxy applies it twice (its MySQL and
    /// LDAP parsers set the result, then the end of the rules sets it again without `info`).
    async fn steps(&mut self) -> (Verdict, bool) {
        let steps = &self.program.steps;
        let mut must_read = true;
        for (i, step) in steps.iter().enumerate() {
            let last_rule = i + 1 == steps.len();
            let done = match &step.action {
                Action::Connect(c) => {
                    must_read = true;
                    self.connect(step, c.port, c.ssl, c.sni.as_deref()).await
                }
                Action::Send(p) => {
                    must_read = true;
                    let secs = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as u32);
                    self.send(step, &p.bytes(secs)).await
                }
                Action::Expect(e) => {
                    let first_read = std::mem::replace(&mut must_read, false);
                    match self.expect(step, e, first_read, last_rule).await {
                        Ok(None) => Ok(()),
                        Ok(Some(passed)) => return (passed, true),
                        Err(v) => Err(v),
                    }
                }
            };
            if let Err(v) = done {
                return (v, false);
            }
        }
        (self.program.passed(&self.buf, self.tls_conn), false)
    }

    fn generic(&self) -> bool {
        self.program.generic
    }

    /// HAProxy's text for an I/O error at `step`.
    fn io_error(&self, step: &Step, status: CheckStatus, e: &io::Error) -> Verdict {
        Verdict::new(
            status,
            format!("{}{}", os_error_text(e), step.where_(self.generic())),
        )
    }

    async fn connect(
        &mut self,
        step: &Step,
        port: Option<u16>,
        ssl: bool,
        sni: Option<&str>,
    ) -> Result<(), Ended> {
        // A new connection replaces the previous one.
        self.conn = None;
        self.buf.clear();
        self.ended = false;
        let addr = SocketAddr::new(self.addr.ip(), port.unwrap_or(self.addr.port()));
        let stream = match raw::connect(addr, self.budget, self.start).await {
            Ok(s) => s,
            Err((status, info)) => {
                let info = match status {
                    CheckStatus::L4Tout => step.where_(self.generic()),
                    _ => format!("{info}{}", step.where_(self.generic())),
                };
                return Err(Verdict::new(status, info));
            }
        };
        if !ssl {
            self.conn = Some(Box::new(stream));
            self.tls_conn = false;
            self.connected_at = Instant::now();
            return Ok(());
        }
        let Some(t) = self.tls else {
            return Err(Verdict::new(
                CheckStatus::SockErr,
                "TLS asked for without TLS settings",
            ));
        };
        let name = match sni {
            Some(s) => ServerName::try_from(s.to_string())
                .map_err(|_| Verdict::new(CheckStatus::SockErr, format!("bad SNI '{s}'")))?,
            None => t.name.clone(),
        };
        let handshake = tokio_rustls::TlsConnector::from(t.config.clone()).connect(name, stream);
        match timeout_at(
            self.budget.deadline(self.start, Phase::Handshaking),
            handshake,
        )
        .await
        {
            Err(_) => Err(Verdict::new(
                CheckStatus::L6Tout,
                step.where_(self.generic()),
            )),
            Ok(Err(e)) => {
                let rustls = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                Err(Verdict::new(
                    CheckStatus::L6Rsp,
                    format!(
                        "{}{}",
                        tls::handshake_info(rustls),
                        step.where_(self.generic())
                    ),
                ))
            }
            Ok(Ok(s)) => {
                self.conn = Some(Box::new(s));
                self.tls_conn = true;
                self.connected_at = Instant::now();
                Ok(())
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.budget
            .deadline(self.start, Phase::Connected(self.connected_at))
    }

    async fn send(&mut self, step: &Step, data: &[u8]) -> Result<(), Ended> {
        self.buf.clear();
        let deadline = self.deadline();
        let generic = self.generic();
        let Some(conn) = self.conn.as_mut() else {
            return Err(Verdict::new(CheckStatus::SockErr, step.where_(generic)));
        };
        match timeout_at(deadline, conn.write_all(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error(step, CheckStatus::SockErr, &e)),
            Err(_) => Err(Verdict::new(CheckStatus::L7Tout, step.where_(generic))),
        }
    }

    /// Reads once more into the buffer: false when nothing more can come.
    async fn read_more(&mut self, step: &Step, e: &Expect) -> Result<bool, Ended> {
        if self.ended || self.buf.len() >= BUFFER {
            return Ok(false);
        }
        let deadline = self.deadline();
        let generic = self.generic();
        let Some(conn) = self.conn.as_mut() else {
            return Err(Verdict::new(CheckStatus::SockErr, step.where_(generic)));
        };
        let mut chunk = vec![0u8; BUFFER - self.buf.len()];
        match timeout_at(deadline, conn.read(&mut chunk)).await {
            Err(_) => Err(Verdict::new(Step::timeout_status(e), step.where_(generic))),
            Ok(Ok(0)) => {
                self.ended = true;
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            // As HAProxy: an error only counts when nothing came; an RST right after the
            // answer is common.
            Ok(Err(err)) if self.buf.is_empty() => {
                Err(self.io_error(step, CheckStatus::SockErr, &err))
            }
            Ok(Err(_)) => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    /// `Ok(None)`: on to the next rule; `Ok(Some(v))`: a protocol parser passed the check.
    async fn expect(
        &mut self,
        step: &Step,
        e: &Expect,
        first_read: bool,
        last_rule: bool,
    ) -> Result<Option<Verdict>, Ended> {
        if first_read {
            // HAProxy reads before the first expect after a connect or send; an answer that
            // ends before its first byte is an empty response.
            self.read_more(step, e).await?;
            if self.buf.is_empty() && self.ended {
                return Err(step.empty_answer(e));
            }
        }
        loop {
            match step.judge(e, &self.buf, self.ended, last_rule, self.generic()) {
                Eval::Continue => return Ok(None),
                Eval::Passed(v) => return Ok(Some(v)),
                Eval::Stop(v) => return Err(v),
                Eval::Wait => {
                    if !self.read_more(step, e).await? {
                        // Nothing more will come: judge as the answer ended.
                        self.ended = true;
                    }
                }
            }
        }
    }
}
