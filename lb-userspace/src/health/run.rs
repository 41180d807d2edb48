//! Running one health check: the way to run it is chosen once per server ([`Prober::new`]),
//! then it runs at every interval.
//!
//! - HTTP checks go through reqwest ([`super::http`]) unless the request must go out byte
//!   for byte as configured ([`super::spec::CheckSpec::sends_exact_bytes`]: plain HTTP,
//!   not HTTP/1.1, a status match), which [`super::raw`] sends;
//! - TCP checks, with or without TLS, are a connect ([`super::raw`]).
//!
//! The duration runs from the start of the check (before connecting) to the verdict, in
//! whole milliseconds, truncated, as HAProxy's.
use std::{io, net::SocketAddr, sync::Arc};

use rustls::{ClientConfig, pki_types::ServerName};

use super::{
    expect::Expect,
    http::HttpProbe,
    raw,
    spec::{Budget, CheckSpec, Probe, exact_request},
    state::{CheckResult, CheckStatus},
    tcp_check::{self, TlsSetup},
    tcp_rules::Program,
    tls,
};

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

/// One server's health check, ready to run.
pub struct Prober {
    addr: SocketAddr,
    budget: Budget,
    way: Way,
}

enum Way {
    /// A connect, and a TLS handshake after it when configured.
    Connect(Option<(Arc<ClientConfig>, ServerName<'static>)>),
    /// The configured request, as is, on a plain connection.
    Exact {
        request: Vec<u8>,
        expect: Expect,
    },
    Http(Box<HttpProbe>),
    /// `tcp-check` rules, and the TLS their connects may use.
    Rules {
        program: Box<Program>,
        tls: Option<TlsSetup>,
    },
    /// The check cannot be set up (e.g. its `ca-file` is unreadable): every check fails
    /// with this reason, as a socket error (HAProxy's status for an error before any
    /// connection attempt).
    Broken(String),
}

impl Prober {
    pub fn new(spec: &CheckSpec) -> Prober {
        let way = match Way::of(spec) {
            Ok(w) => w,
            Err(e) => Way::Broken(e),
        };
        Prober {
            addr: spec.addr,
            budget: spec.budget,
            way,
        }
    }

    /// Runs one check of a server that is UP or not (which `http-check disable-on-404`
    /// tells apart). Never panics, never takes longer than its budget.
    pub async fn run(&self, server_up: bool) -> CheckResult {
        match &self.way {
            Way::Connect(tls) => raw::connect_check(self.addr, tls.as_ref(), &self.budget).await,
            Way::Exact { request, expect } => {
                raw::exact_http_check(self.addr, request, expect, &self.budget, server_up).await
            }
            Way::Http(p) => p.run(server_up).await,
            Way::Rules { program, tls } => {
                tcp_check::run(program, self.addr, tls.as_ref(), &self.budget).await
            }
            Way::Broken(why) => {
                CheckResult::new(CheckStatus::SockErr, Default::default()).with_info(why.clone())
            }
        }
    }
}

impl Way {
    fn of(spec: &CheckSpec) -> Result<Way, String> {
        match &spec.probe {
            Probe::Tcp => {
                let tls = match &spec.tls {
                    Some(t) => {
                        let config = tls::client_config(t, Arc::new(|| {}))?;
                        Some((Arc::new(config), tls::server_name(t, spec.addr.ip())?))
                    }
                    None => None,
                };
                Ok(Way::Connect(tls))
            }
            Probe::Rules { check, ssl } => {
                let tls = match &spec.tls {
                    Some(t) => {
                        let config = tls::client_config(t, Arc::new(|| {}))?;
                        Some(TlsSetup {
                            config: Arc::new(config),
                            name: tls::server_name(t, spec.addr.ip())?,
                        })
                    }
                    None => None,
                };
                let sni = spec.tls.as_ref().and_then(|t| t.sni.as_deref());
                Ok(Way::Rules {
                    program: Box::new(Program::of(check, *ssl, sni)?),
                    tls,
                })
            }
            Probe::Http(h) if spec.sends_exact_bytes() => Ok(Way::Exact {
                request: exact_request(h),
                expect: Expect::of(h)?,
            }),
            Probe::Http(h) => Ok(Way::Http(Box::new(HttpProbe::new(
                spec.addr,
                h,
                spec.tls.as_ref(),
                spec.budget,
            )?))),
        }
    }
}

/// Runs one check of `spec` on a server that is UP (setting it up first: for one-off checks
/// and tests; the scheduler keeps a [`Prober`] per server).
pub async fn run_check(spec: &CheckSpec) -> CheckResult {
    Prober::new(spec).run(true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_texts_are_strerrors() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_error_text(&e), "Connection refused");
        let e = io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(os_error_text(&e), "Connection reset by peer");
        let e = io::Error::other("custom");
        assert_eq!(os_error_text(&e), "custom");
    }
}
