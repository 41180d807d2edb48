//! Accepting on `stats_http` within bounds, so that idle or slow clients can neither take
//! the daemon's file descriptors (the health checks and the stats socket need theirs) nor
//! keep a connection open for long:
//!
//! - at most [`Limits::connections`] connections are open at once. One more is accepted and
//!   closed at once, not left in the listen backlog: a backlog full of idle connections
//!   would be served first, one timeout after another, while a scraper's own connection
//!   waited behind them (or its SYNs were dropped once the backlog was full), whereas a
//!   closed connection fails the scrape at once and the next one finds a free slot;
//! - a request's headers must have arrived [`Limits::header_timeout`] after the connection
//!   opened or after the previous response (hyper's `header_read_timeout`, which also
//!   bounds how long a kept-alive connection may sit idle); otherwise it is closed.
//!
//! Connections still in the listen backlog hold no descriptor of ours.
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};

/// How much of the daemon the listener's clients may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most. HTTP/1 answers one request at a time per connection, so
    /// this also bounds the requests being answered.
    pub connections: usize,
    /// The longest wait for a request's headers (HAProxy's `timeout http-request`).
    pub header_timeout: Duration,
}

/// What `stats_http` runs with: a few scrapers and browsers need a handful of connections.
pub const LIMITS: Limits = Limits {
    connections: 64,
    header_timeout: Duration::from_secs(10),
};

/// Serves `app` until the task is aborted; the connections it holds end with it.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits) {
    deepen_backlog(&listener);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut open = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                eprintln!("[WARNING] stats_http: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while open.try_join_next().is_some() {}
        if open.len() >= limits.connections {
            drop(stream);
            continue;
        }
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        // A client that goes away or times out is no news.
        open.spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Connections the kernel completes before we accept them. std binds with 128: a burst
/// larger than that (a flood, which we accept and close) has SYNs dropped, and a scraper
/// caught in it waits a second for its SYN to be sent again. The kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: libc::c_int = 4096;

/// Calling `listen` again on a listening socket sets its backlog (Linux).
fn deepen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: listen on a descriptor we own; it only changes the queue length.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("[WARNING] stats_http: setting the listen backlog: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    use super::*;

    /// Reads until the server closes; how long that took.
    async fn closed_after(c: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(limit, c.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn caps_connections_and_closes_idle_ones() {
        let limits = Limits {
            connections: 2,
            header_timeout: Duration::from_millis(500),
        };
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "hello" }));
        let server = tokio::spawn(serve(l, app, limits));
        let connect = || async { TcpStream::connect(addr).await.expect("connect") };

        // Two idle clients take both slots; a third is closed at once.
        let mut idle = [connect().await, connect().await];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = connect().await;
        let t = closed_after(&mut third, Duration::from_millis(200)).await;
        assert!(t.is_some(), "a connection over the cap stayed open");
        for c in &mut idle {
            let early = closed_after(c, Duration::from_millis(100)).await;
            assert!(
                early.is_none(),
                "an idle client within the cap was closed early"
            );
        }

        // Silent clients are closed once the header timeout has passed.
        for c in &mut idle {
            let t = closed_after(c, Duration::from_secs(2))
                .await
                .expect("closed");
            assert!(t <= Duration::from_secs(1), "idle for {t:?}");
        }

        // Their slots are free again: a request is answered.
        let mut c = connect().await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        server.abort();
    }
}
