//! A bounded SYN flood from spoofed sources, sent through a raw socket (`IPPROTO_RAW`, which
//! implies `IP_HDRINCL`) by a thread inside a namespace the test created, so the packets can
//! only leave through that namespace's links (the testbed's veths).
//!
//! Sources are random addresses of a range no namespace owns ([`SPOOFED`]): whatever answers
//! them (SYN-ACKs) has nowhere to go, as with a real spoofed flood, and the half-open state
//! they leave behind only dies of its timeout.
//!
//! [`Flood::watched`] runs the flood while the [`crate::probe`]s keep using the service, and
//! returns what they saw before, during and after it.
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::{
    netns::Netns,
    packet::{self, Pkt, SYN},
    probe::{Attempt, KeepAlive, KeepAliveReport, NewConns},
};

/// 10.77.0.0/16: no namespace of the testbed owns it, and nothing routes it anywhere.
pub const SPOOFED: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

/// Packets handed to the kernel per `sendmmsg`.
const BATCH: usize = 64;
/// IPv4 header (20) and TCP header without options (20).
const SYN_LEN: usize = 40;

/// What to send: `count` SYNs to `target`, from random addresses of `sources`
/// (`(network, prefix length)`), stopping early after `limit`.
#[derive(Clone, Debug)]
pub struct Flood {
    pub target: SocketAddrV4,
    pub sources: (Ipv4Addr, u8),
    pub count: u64,
    pub limit: Duration,
    /// Seeds the random sources, ports and sequence numbers (a run can be replayed).
    pub seed: u64,
}

/// What the sender did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Packets the kernel accepted (a veth may still drop some when its peer's ring is full).
    pub packets: u64,
    pub elapsed: Duration,
    /// `sendmmsg` calls that failed for lack of buffers (retried).
    pub busy: u64,
}

impl Sent {
    /// Packets per second over the whole send.
    pub fn rate(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Flood {
    /// `count` SYNs from [`SPOOFED`] to `target`, bounded by `limit`.
    pub fn new(target: SocketAddrV4, count: u64, limit: Duration) -> Flood {
        Flood {
            target,
            sources: SPOOFED,
            count,
            limit,
            seed: 0x5eed_f100d,
        }
    }

    /// Sends the flood from a thread inside `ns` and waits for it to finish.
    pub fn run(&self, ns: &Netns) -> Result<Sent> {
        let f = self.clone();
        ns.run(move || f.send())?
    }

    /// Sends from the calling thread, which must be inside the sending namespace.
    pub fn send(&self) -> Result<Sent> {
        let fd = raw_socket()?;
        let mut syns = SynGen::new(self);
        let dst = sockaddr(self.target);
        let mut bufs = [[0u8; SYN_LEN]; BATCH];
        let started = Instant::now();
        let mut sent = Sent::default();
        while sent.packets < self.count && started.elapsed() < self.limit {
            let n = (self.count - sent.packets).min(BATCH as u64) as usize;
            for b in &mut bufs[..n] {
                *b = syns.next_syn();
            }
            match send_batch(&fd, &dst, &bufs[..n]) {
                Ok(k) => sent.packets += k as u64,
                Err(e) if busy(&e) => {
                    sent.busy += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e).context("sendmmsg on the raw socket"),
            }
        }
        sent.elapsed = started.elapsed();
        Ok(sent)
    }

    /// Runs the flood while `probes` use `service` from `client`: the probes start, run
    /// alone for `watch.before`, the flood goes, and they go on for `watch.after` once it
    /// ended.
    pub fn watched(
        &self,
        client: &Netns,
        service: SocketAddr,
        watch: &Watch,
    ) -> Result<FloodOutcome> {
        let origin = Instant::now();
        let keep_alive = KeepAlive::start(client, service, "/", watch.keep_alive_every)?;
        let new_conns = NewConns::start(client, service, "/", watch.new_conn_every)?;
        std::thread::sleep(watch.before);
        let start = origin.elapsed();
        let sent = self.run(client);
        let end = origin.elapsed();
        // Stop the probes even if the flood failed, then report the failure.
        std::thread::sleep(if sent.is_ok() {
            watch.after
        } else {
            Duration::ZERO
        });
        let keep_alive = keep_alive.stop();
        let attempts = new_conns.stop();
        let sent = sent?;
        Ok(FloodOutcome {
            sent,
            start,
            end,
            keep_alive: keep_alive?,
            attempts: attempts?.into_iter().map(|a| a.since(origin)).collect(),
        })
    }
}

/// How the service is watched around a flood.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    /// A GET on one kept-alive connection this often.
    pub keep_alive_every: Duration,
    /// A new connection this often.
    pub new_conn_every: Duration,
    /// Probing alone before the flood.
    pub before: Duration,
    /// Probing after the flood ended.
    pub after: Duration,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            keep_alive_every: Duration::from_millis(100),
            new_conn_every: Duration::from_millis(200),
            before: Duration::from_secs(1),
            after: Duration::from_secs(9),
        }
    }
}

/// A new connection attempt, timed from the start of [`Flood::watched`].
#[derive(Clone, Debug)]
pub struct TimedAttempt {
    pub at: Duration,
    pub attempt: Attempt,
}

impl Attempt {
    fn since(self, origin: Instant) -> TimedAttempt {
        TimedAttempt {
            at: self.started.saturating_duration_since(origin),
            attempt: self,
        }
    }
}

/// What [`Flood::watched`] saw; times are from its start.
#[derive(Clone, Debug)]
pub struct FloodOutcome {
    pub sent: Sent,
    pub start: Duration,
    pub end: Duration,
    pub keep_alive: KeepAliveReport,
    pub attempts: Vec<TimedAttempt>,
}

/// New connections of one period: how many were opened and how many got their answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub opened: usize,
    pub served: usize,
}

impl FloodOutcome {
    /// Attempts started in `[from, to)` (times from the start of the watch).
    pub fn served_between(&self, from: Duration, to: Duration) -> Served {
        let mut s = Served::default();
        for a in self.attempts.iter().filter(|a| a.at >= from && a.at < to) {
            s.opened += 1;
            s.served += usize::from(a.attempt.ok());
        }
        s
    }

    /// Before the flood started.
    pub fn before(&self) -> Served {
        self.served_between(Duration::ZERO, self.start)
    }

    /// From the flood's start to `settle` after its end.
    pub fn during(&self, settle: Duration) -> Served {
        self.served_between(self.start, self.end + settle)
    }

    /// From `settle` after the flood's end.
    pub fn after(&self, settle: Duration) -> Served {
        self.served_between(self.end + settle, Duration::MAX)
    }

    /// The attempts that failed from `from` on, for messages.
    pub fn failures_from(&self, from: Duration) -> Vec<String> {
        self.attempts
            .iter()
            .filter(|a| a.at >= from)
            .filter_map(|a| match &a.attempt.outcome {
                Ok(_) => None,
                Err(e) => Some(format!("at {:.1} s: {e}", a.at.as_secs_f64())),
            })
            .collect()
    }
}

/// Random SYNs: pure, so that what goes on the wire can be checked without sending it.
pub struct SynGen {
    rng: XorShift,
    target: SocketAddrV4,
    net: u32,
    host_mask: u32,
    template: [u8; SYN_LEN],
}

impl SynGen {
    pub fn new(f: &Flood) -> SynGen {
        let (net, prefix) = f.sources;
        let host_mask = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
        let frame = Pkt::tcp(SocketAddrV4::new(net, 1), f.target)
            .flags(SYN)
            .build();
        let mut template = [0u8; SYN_LEN];
        template.copy_from_slice(&frame[14..14 + SYN_LEN]);
        SynGen {
            rng: XorShift::new(f.seed),
            target: f.target,
            net: u32::from(net) & !host_mask,
            host_mask,
            template,
        }
    }

    /// The next SYN (IPv4 header and all), checksums included.
    pub fn next_syn(&mut self) -> [u8; SYN_LEN] {
        let r = self.rng.next();
        let src = Ipv4Addr::from(self.net | (r as u32 & self.host_mask));
        let sport = 1024 + ((r >> 32) as u16 % (65535 - 1024));
        let seq = (r >> 16) as u32;
        let mut p = self.template;
        p[4..6].copy_from_slice(&((r >> 48) as u16).to_be_bytes()); // IP id
        p[10..12].fill(0);
        p[12..16].copy_from_slice(&src.octets());
        let ip_csum = packet::checksum(&p[..20]);
        p[10..12].copy_from_slice(&ip_csum.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[36..38].fill(0);
        let tcp_csum = packet::l4_checksum(src, *self.target.ip(), packet::TCP, &p[20..]);
        p[36..38].copy_from_slice(&tcp_csum.to_be_bytes());
        p
    }
}

/// xorshift64*: plenty for spreading sources, and no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn raw_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_INET, SOCK_RAW)");
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// One `sendmmsg` of `packets` to `dst`; how many the kernel took.
fn send_batch(
    fd: &OwnedFd,
    dst: &libc::sockaddr_in,
    packets: &[[u8; SYN_LEN]],
) -> std::io::Result<usize> {
    let mut iov: Vec<libc::iovec> = packets
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = dst as *const libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = v;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: every pointer in `msgs` points into `iov`, `packets` or `dst`, all alive for the
    // call.
    let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as _, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn busy(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood() -> Flood {
        Flood::new(
            SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 1), 80),
            10,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn syns_are_valid_and_come_from_the_spoofed_range() {
        let mut g = SynGen::new(&flood());
        let mut sources = std::collections::HashSet::new();
        for _ in 0..1000 {
            let p = g.next_syn();
            let mut frame = vec![0u8; 14];
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&p);
            assert_eq!(packet::verify_checksums(&frame), Ok(()));
            let (src, dst) = packet::endpoints(&frame);
            assert_eq!(dst, flood().target);
            assert_eq!(src.ip().octets()[..2], [10, 77], "{src}");
            assert!(src.port() >= 1024);
            assert_eq!(p[33], SYN, "TCP flags");
            sources.insert(*src.ip());
        }
        assert!(
            sources.len() > 900,
            "sources barely vary: {}",
            sources.len()
        );
    }

    #[test]
    fn attempts_are_split_around_the_flood() {
        let origin = Instant::now();
        let at = |ms: u64, ok: bool| {
            Attempt {
                started: origin + Duration::from_millis(ms),
                took: Duration::ZERO,
                outcome: if ok { Ok(200) } else { Err("refused".into()) },
            }
            .since(origin)
        };
        let o = FloodOutcome {
            sent: Sent::default(),
            start: Duration::from_secs(1),
            end: Duration::from_secs(2),
            keep_alive: KeepAliveReport::default(),
            attempts: vec![
                at(500, true),
                at(1500, false),
                at(6000, false),
                at(7000, true),
                at(7200, true),
            ],
        };
        let settle = Duration::from_secs(5);
        let s = |opened, served| Served { opened, served };
        assert_eq!(o.before(), s(1, 1));
        assert_eq!(o.during(settle), s(2, 0));
        assert_eq!(o.after(settle), s(2, 2));
        assert_eq!(
            o.failures_from(Duration::from_secs(2)),
            ["at 6.0 s: refused"]
        );
    }
}
