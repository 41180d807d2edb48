//! A minimal HTTP client for requests through the balancer, run inside a namespace.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` over a new connection with `Connection: close`, from inside `ns`.
pub fn get(ns: &Netns, addr: SocketAddr, path: &str) -> Result<Response> {
    let path = path.to_string();
    ns.run(move || -> Result<Response> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .with_context(|| format!("connecting to {addr}"))?;
        let mut conn = Conn::new(stream)?;
        conn.request(&path, false)
    })?
}

/// A kept-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Result<Conn> {
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.set_write_timeout(Some(Duration::from_secs(3)))?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Connects from the calling thread (which must already be in the right namespace).
    pub fn connect(addr: SocketAddr) -> Result<Conn> {
        Conn::new(
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .with_context(|| format!("connecting to {addr}"))?,
        )
    }

    /// How long a request may wait for its answer (3 s unless set).
    pub fn set_timeout(&mut self, t: Duration) -> Result<()> {
        self.reader.get_ref().set_read_timeout(Some(t))?;
        self.reader.get_ref().set_write_timeout(Some(t))?;
        Ok(())
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.reader.get_ref().local_addr()?)
    }

    pub fn request(&mut self, path: &str, keep_alive: bool) -> Result<Response> {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let req = format!("GET {path} HTTP/1.1\r\nHost: lb-test\r\nConnection: {conn}\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
