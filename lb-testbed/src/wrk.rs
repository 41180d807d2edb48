//! `wrk` (the HTTP load generator) run inside a namespace, and its report read back.
use std::{
    net::IpAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::netns::Netns;

/// One run's settings.
#[derive(Clone, Copy, Debug)]
pub struct Wrk {
    pub connections: u32,
    pub secs: u32,
    /// `Connection: close`: a new connection per request.
    pub close: bool,
}

/// One `wrk` run's results.
#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

impl Wrk {
    /// Runs `wrk -t1` in `ns` against `http://addr/` (either family); killed by PID if it
    /// overruns.
    pub fn run(&self, ns: &Netns, addr: impl Into<IpAddr>) -> Result<WrkResult> {
        let host = match addr.into() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let mut cmd = ns.command("wrk")?;
        cmd.args([
            "-t1",
            &format!("-c{}", self.connections),
            &format!("-d{}s", self.secs),
            "--timeout",
            "2s",
            "--latency",
        ]);
        if self.close {
            cmd.args(["-H", "Connection: close"]);
        }
        cmd.arg(format!("http://{host}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting wrk")?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(self.secs) + 20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("wrk did not finish in time (killed)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        ensure!(
            o.status.success(),
            "wrk failed ({}): {}{}",
            o.status,
            text,
            String::from_utf8_lossy(&o.stderr)
        );
        parse(&text)
    }
}

fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e3)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * scale)
}

/// Reads `wrk --latency`'s report.
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut p50, mut p99, mut rps, mut reqs) = (None, None, None, None);
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("50%") {
            p50 = duration_ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            p99 = duration_ms(v);
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if l.contains(" requests in ") {
            reqs = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    match (p50, p99, rps, reqs) {
        (Some(a), Some(b), Some(c), Some(d)) => {
            r.p50_ms = a;
            r.p99_ms = b;
            r.rps = c;
            r.requests = d;
            Ok(r)
        }
        _ => bail!("cannot read wrk's output:\n{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 2s test @ http://10.200.0.1/\n  1 threads and 50 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   832.49us  \
            200.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  774.00us\n     \
            75%    0.90ms\n     90%    1.08ms\n     99%    1.61ms\n  119830 requests in \
            2.00s, 30.40MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  \
            Non-2xx or 3xx responses: 5\nRequests/sec:  59877.86\nTransfer/sec:     15.19MB\n";
        let r = parse(text).expect("parses");
        assert_eq!(r.requests, 119830);
        assert!((r.rps - 59877.86).abs() < 1e-6);
        assert!((r.p50_ms - 0.774).abs() < 1e-9);
        assert!((r.p99_ms - 1.61).abs() < 1e-9);
        assert_eq!(r.errors, 9);
        assert!(parse("garbage").is_err());
    }
}
