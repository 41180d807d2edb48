//! HTTP and HTTPS checks on reqwest (rustls): HTTP/1.1 requests (`http-check send ver
//! HTTP/1.1 hdr Host ...`), every check over TLS, and every check that reads the body
//! (`expect string|rstring`).
//!
//! The verdict is recovered from where the check stood when it ended, and from reqwest's
//! error sources:
//! - the phase comes from two hooks: a connector layer that marks the connection
//!   established (TCP, and TLS when used), and the TLS configuration's session lookup, which
//!   rustls makes as it builds the ClientHello, right after TCP connected
//!   ([`super::tls::client_config`]);
//! - running out of time is L4TOUT before TCP, L6TOUT during the handshake, L7TOUT after
//!   (the budgets are [`Budget`]'s);
//! - an error before TCP is L4CON with the OS error text; during the handshake L6RSP with
//!   HAProxy's text ([`super::tls`]); after it, L7RSP for what hyper could not parse
//!   (garbage, closed before a full head), SOCKERR with the OS error text for an I/O error.
//!
//! The request is HAProxy 2.6's (captured: `GET /health_check.html HTTP/1.1`, `host:
//! web.test`, the other configured headers, `connection: close`; header names in lower
//! case; `content-length` only with a body), plus `accept: */*`, which reqwest adds to every
//! request and offers no way to leave out. Without a configured `Host`, hyper adds one (the
//! SNI or the address) where HAProxy would send none.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use reqwest::{
    Method, Url, Version,
    header::{CONNECTION, HeaderMap, HeaderName, HeaderValue},
};
use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};

use super::{
    expect::{BODY_LIMIT, Expect},
    run::os_error_text,
    spec::{Budget, Phase, TlsSpec, has_header},
    state::{CheckResult, CheckStatus},
    tls,
};
use crate::config::HttpCheck;

/// One server's HTTP check through reqwest, built once and run at every interval.
pub(super) struct HttpProbe {
    client: reqwest::Client,
    /// Where the check under way stands; written by the hooks.
    phase: Arc<watch::Sender<Phase>>,
    method: Method,
    url: Url,
    version: Version,
    headers: HeaderMap,
    body: Vec<u8>,
    expect: Expect,
    budget: Budget,
}

/// The response, as far as the verdict needs it.
struct Answer {
    code: u16,
    reason: String,
    body: Vec<u8>,
}

impl HttpProbe {
    pub fn new(
        addr: SocketAddr,
        h: &HttpCheck,
        tls: Option<&TlsSpec>,
        budget: Budget,
    ) -> Result<HttpProbe, String> {
        let phase = Arc::new(watch::Sender::new(Phase::Connecting));
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            // One connection per check, as HAProxy: nothing pooled, nothing reused.
            .pool_max_idle_per_host(0)
            .http1_only()
            .connector_layer(MarkConnected(phase.clone()));
        let host = match tls {
            Some(t) => {
                let hook = phase.clone();
                let on_handshake: tls::OnHandshake = Arc::new(move || {
                    hook.send_if_modified(|p| {
                        let first = *p == Phase::Connecting;
                        if first {
                            *p = Phase::Handshaking;
                        }
                        first
                    });
                });
                builder = builder.use_preconfigured_tls(tls::client_config(t, on_handshake)?);
                match &t.sni {
                    // The URL names the SNI (reqwest takes the TLS name from it); the
                    // connection goes to the server's address all the same.
                    Some(sni) => {
                        builder = builder.resolve(sni, addr);
                        sni.clone()
                    }
                    None => url_host(addr.ip()),
                }
            }
            None => url_host(addr.ip()),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        if !h.uri.starts_with('/') {
            return Err(format!("URI '{}' does not start with '/'", h.uri));
        }
        let url = Url::parse(&format!("{scheme}://{host}:{}{}", addr.port(), h.uri))
            .map_err(|e| format!("URI '{}': {e}", h.uri))?;
        let version = match h.version.as_str() {
            "HTTP/1.0" => Version::HTTP_10,
            "HTTP/1.1" => Version::HTTP_11,
            v => return Err(format!("version '{v}': HTTP/1.0 or HTTP/1.1 only")),
        };
        let method = Method::from_bytes(h.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let headers = headers(h)?;
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(HttpProbe {
            client,
            phase,
            method,
            url,
            version,
            headers,
            body: h.body.as_bytes().to_vec(),
            expect: Expect::of(h)?,
            budget,
        })
    }

    /// Runs one check. Never panics, never takes longer than its budget.
    pub async fn run(&self, server_up: bool) -> CheckResult {
        let start = Instant::now();
        self.phase.send_replace(Phase::Connecting);
        let mut phase = self.phase.subscribe();
        let exchange = self.exchange();
        tokio::pin!(exchange);
        let (status, info, http) = loop {
            let now = *phase.borrow_and_update();
            tokio::select! {
                r = &mut exchange => break match r {
                    Ok(a) => {
                        let v = self.expect.judge_for(server_up, a.code, &a.reason, &a.body);
                        (v.status, v.info, Some((a.code, a.reason)))
                    }
                    Err(e) => {
                        let (s, i) = failure(&e, *phase.borrow());
                        (s, i, None)
                    }
                },
                _ = sleep_until(self.budget.deadline(start, now)) => {
                    break (now.timeout(), String::new(), None);
                }
                // The deadline moves with the phase.
                Ok(()) = phase.changed() => {}
            }
        };
        let r = CheckResult::new(status, start.elapsed()).with_info(info);
        match http {
            Some((code, reason)) => r.with_http(code, &reason),
            None => r,
        }
    }

    async fn exchange(&self) -> Result<Answer, reqwest::Error> {
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .version(self.version)
            .headers(self.headers.clone())
            .body(self.body.clone());
        let mut response = request.send().await?;
        let code = response.status().as_u16();
        let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
            // hyper keeps the phrase only when it is not the standard one.
            None => response
                .status()
                .canonical_reason()
                .unwrap_or_default()
                .to_string(),
        };
        let mut body = Vec::new();
        if self.expect.needs_body() {
            // As HAProxy: judge what arrived when the body ends early or breaks off, and
            // stop reading once the match is found or the buffer is full.
            while let Ok(Some(chunk)) = response.chunk().await {
                let room = BODY_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == BODY_LIMIT || self.expect.decided_by(&body) {
                    break;
                }
            }
        }
        Ok(Answer { code, reason, body })
    }
}

/// The configured headers, and HAProxy 2.6's `Connection: close` unless configured (hyper
/// gives a body its `content-length`, as HAProxy does).
fn headers(h: &HttpCheck) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for line in &h.headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header '{line}' has no ':'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header '{line}': {e}"))?;
        let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
            .map_err(|e| format!("header '{line}': {e}"))?;
        map.append(name, value);
    }
    if !has_header(h, "connection") {
        map.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(map)
}

/// The status and `info` of a check that failed with `e` while in `phase`.
fn failure(e: &reqwest::Error, phase: Phase) -> (CheckStatus, String) {
    match phase {
        Phase::Connecting => (
            CheckStatus::L4Con,
            os_error(e).map_or_else(|| e.to_string(), os_error_text),
        ),
        Phase::Handshaking => (
            CheckStatus::L6Rsp,
            tls::handshake_info(find::<rustls::Error>(e)),
        ),
        Phase::Connected(_) => match (find::<hyper::Error>(e), os_error(e)) {
            (Some(h), _) if h.is_parse() || h.is_incomplete_message() => {
                (CheckStatus::L7Rsp, String::new())
            }
            (_, Some(os)) => (CheckStatus::SockErr, os_error_text(os)),
            _ => (CheckStatus::L7Rsp, String::new()),
        },
    }
}

/// `e` and its sources, in order. An `io::Error` wrapping another error (as tokio-rustls
/// wraps rustls's, and reqwest an OS error in `io::Error::other`) does not give it as its
/// source: it is looked into.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| {
        err.downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map(|w| w as &(dyn std::error::Error + 'static))
            .or_else(|| err.source())
    })
}

/// The first error of type `T` in `e`'s chain.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    chain(e).find_map(|err| err.downcast_ref::<T>())
}

/// The error the OS reported (errno), if any, in `e`'s chain.
fn os_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    chain(e)
        .filter_map(|err| err.downcast_ref::<io::Error>())
        .find(|io| io.raw_os_error().is_some())
}

/// A connector layer that marks the connection established when reqwest's connector
/// (TCP, then TLS when used) hands it over.
#[derive(Clone)]
struct MarkConnected(Arc<watch::Sender<Phase>>);

impl<S> tower_layer::Layer<S> for MarkConnected {
    type Service = MarkConnectedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MarkConnectedService {
            inner,
            phase: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct MarkConnectedService<S> {
    inner: S,
    phase: Arc<watch::Sender<Phase>>,
}

impl<S, R> tower_service::Service<R> for MarkConnectedService<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.inner.call(req);
        let phase = self.phase.clone();
        Box::pin(async move {
            let conn = connecting.await;
            if conn.is_ok() {
                phase.send_replace(Phase::Connected(Instant::now()));
            }
            conn
        })
    }
}

/// An address as a URL's host: an IPv6 one in brackets (`http://[fd00::10]:80/`).
fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_close_is_added_unless_configured() {
        let h = HttpCheck {
            headers: vec!["Host: web.test".into(), "X-Check:  yes ".into()],
            ..HttpCheck::default()
        };
        let m = headers(&h).expect("valid");
        assert_eq!(m["host"], "web.test");
        assert_eq!(m["x-check"], "yes");
        assert_eq!(m["connection"], "close");
        assert_eq!(m.len(), 3);
        let own = HttpCheck {
            headers: vec!["Connection: keep-alive".into()],
            ..HttpCheck::default()
        };
        let m = headers(&own).expect("valid");
        assert_eq!(m["connection"], "keep-alive");
        let bad = HttpCheck {
            headers: vec!["No colon".into()],
            ..HttpCheck::default()
        };
        assert!(headers(&bad).is_err());
    }

    #[test]
    fn errors_are_found_among_sources() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let io = os_error(&e).expect("found");
        assert_eq!(os_error_text(io), "Connection refused");
        assert!(find::<rustls::Error>(&e).is_none());
        // reqwest's way: the OS error inside `io::Error::other`.
        let other = Outer(io::Error::other(io::Error::from_raw_os_error(
            libc::ECONNRESET,
        )));
        assert_eq!(
            os_error(&other).map(os_error_text).as_deref(),
            Some("Connection reset by peer")
        );
        // tokio-rustls's way: rustls's error inside an io::Error.
        let wrapped = Outer(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        ));
        assert_eq!(
            find::<rustls::Error>(&wrapped),
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
            ))
        );
    }
}
