//! Log transport: RFC 3164 datagrams to syslog over UDP or a unix socket, plain lines to
//! stderr/stdout.
//!
//! As HAProxy 2.6 (`src/log.c`: `build_log_header`, `__do_send_log`, `process_send_log`):
//! - a datagram is `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG\n`, PRI = facility * 8 + level, local
//!   time, the day padded with a space; no hostname, as HAProxy sends without
//!   `log-send-hostname` (its default "local" format) to UDP and unix targets alike, which is
//!   what a local syslogd on /dev/log expects too;
//! - header and message are cut at 1024 bytes (`MAX_SYSLOG_LEN`), then the newline is added;
//! - a target drops messages less severe than its level, and sends messages more severe than
//!   its `minlevel` at that `minlevel`;
//! - sending never blocks (`MSG_DONTWAIT`): a full socket drops the message, any other error
//!   is reported once and the target keeps being tried.
//!
//! stderr/stdout get the bare message and a newline. (HAProxy's `log stderr` without
//! `format raw` would prefix the syslog header; the model has no `format` to ask for that.)
use std::{
    io::{self, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use super::{format::LogLine, time::LogTime};
use crate::config::{Facility, Global, Level, LogDest, LogTarget};

/// HAProxy's `MAX_SYSLOG_LEN`: the most a datagram carries before its newline.
pub const MAX_LEN: usize = 1024;

/// PRI = facility * 8 + level.
pub fn pri(facility: Facility, level: Level) -> u8 {
    facility.code() * 8 + level.code()
}

/// One datagram: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, cut at `max` bytes, then `\n`. An
/// empty tag leaves out `TAG[PID]: ` as HAProxy does.
pub fn frame(pri: u8, stamp: LogTime, tag: &str, pid: u32, msg: &str, max: usize) -> Vec<u8> {
    let mut out = format!("<{pri}>{} ", stamp.rfc3164());
    if !tag.is_empty() {
        out.push_str(&format!("{tag}[{pid}]: "));
    }
    let mut out = out.into_bytes();
    out.extend_from_slice(msg.trim_end_matches(['\n', '\0']).as_bytes());
    out.truncate(max);
    out.push(b'\n');
    out
}

/// The effective level for a target: `None` when filtered out, else `level` raised to
/// `min_level` when more severe (HAProxy's `MAX(level, minlvl)`).
pub fn target_level(t: &LogTarget, level: Level) -> Option<Level> {
    if level > t.max_level {
        return None;
    }
    Some(match t.min_level {
        Some(min) if level < min => min,
        _ => level,
    })
}

enum Sink {
    Udp {
        to: SocketAddr,
        socket: Mutex<Option<UdpSocket>>,
    },
    Unix {
        path: PathBuf,
        socket: Mutex<Option<UnixDatagram>>,
    },
    Stderr,
    Stdout,
}

struct Target {
    conf: LogTarget,
    sink: Sink,
    /// An error was already reported for this target.
    warned: AtomicBool,
}

/// Sends lines to every configured target. Cheap to call, never blocks for long, never
/// fails: what cannot be sent is dropped (an error is reported once per target on stderr).
pub struct Logger {
    targets: Vec<Target>,
    tag: String,
    pid: u32,
    dropped: AtomicU64,
}

impl Logger {
    /// The `log` lines and `log-tag` of the global section; this process's pid.
    pub fn from_global(g: &Global) -> Logger {
        Logger::new(&g.logs, &g.log_tag, std::process::id())
    }

    pub fn new(targets: &[LogTarget], tag: &str, pid: u32) -> Logger {
        let targets = targets
            .iter()
            .map(|t| Target {
                sink: match &t.dest {
                    LogDest::Udp(to) => Sink::Udp {
                        to: *to,
                        socket: Mutex::new(None),
                    },
                    LogDest::Unix(path) => Sink::Unix {
                        path: path.clone(),
                        socket: Mutex::new(None),
                    },
                    LogDest::Stderr => Sink::Stderr,
                    LogDest::Stdout => Sink::Stdout,
                },
                conf: t.clone(),
                warned: AtomicBool::new(false),
            })
            .collect();
        Logger {
            targets,
            tag: tag.to_string(),
            pid,
            dropped: AtomicU64::new(0),
        }
    }

    /// No target: every send is a no-op.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Messages dropped because a socket was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends `line` at `level`, stamped with the local time now.
    pub fn send(&self, level: Level, line: &str) {
        if !self.is_empty() {
            self.send_at(level, line, LogTime::now());
        }
    }

    /// Sends a formatted line at its own level.
    pub fn log(&self, line: &LogLine) {
        self.send(line.level, &line.text);
    }

    /// Sends `line` at `level` with a given time stamp.
    pub fn send_at(&self, level: Level, line: &str, stamp: LogTime) {
        for (i, t) in self.targets.iter().enumerate() {
            let Some(level) = target_level(&t.conf, level) else {
                continue;
            };
            let res = match &t.sink {
                Sink::Stderr | Sink::Stdout => {
                    let mut text = line.trim_end_matches(['\n', '\0']).to_string();
                    text.push('\n');
                    if matches!(t.sink, Sink::Stderr) {
                        io::stderr().lock().write_all(text.as_bytes())
                    } else {
                        io::stdout().lock().write_all(text.as_bytes())
                    }
                }
                Sink::Udp { to, socket } => {
                    let dgram = self.datagram(t, level, line, stamp);
                    send_udp(socket, *to, &dgram)
                }
                Sink::Unix { path, socket } => {
                    let dgram = self.datagram(t, level, line, stamp);
                    send_unix(socket, path, &dgram)
                }
            };
            if let Err(e) = res {
                self.failed(i, t, &e);
            }
        }
    }

    fn datagram(&self, t: &Target, level: Level, line: &str, stamp: LogTime) -> Vec<u8> {
        frame(
            pri(t.conf.facility, level),
            stamp,
            &self.tag,
            self.pid,
            line,
            MAX_LEN,
        )
    }

    fn failed(&self, i: usize, t: &Target, e: &io::Error) {
        if e.kind() == io::ErrorKind::WouldBlock {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !t.warned.swap(true, Ordering::Relaxed) {
            let errno = e.raw_os_error().unwrap_or(0);
            let _ = writeln!(
                io::stderr().lock(),
                "[ALERT] sendmsg()/writev() failed in logger #{}: {} (errno={errno})",
                i + 1,
                crate::health::os_error_text(e),
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn send_udp(socket: &Mutex<Option<UdpSocket>>, to: SocketAddr, dgram: &[u8]) -> io::Result<()> {
    let mut guard = lock(socket);
    let s = match guard.as_ref() {
        Some(s) => s,
        None => {
            let local: SocketAddr = match to {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let s = UdpSocket::bind(local)?;
            s.set_nonblocking(true)?;
            guard.insert(s)
        }
    };
    s.send_to(dgram, to).map(|_| ())
}

fn send_unix(socket: &Mutex<Option<UnixDatagram>>, path: &PathBuf, dgram: &[u8]) -> io::Result<()> {
    let mut guard = lock(socket);
    let s = match guard.as_ref() {
        Some(s) => s,
        None => {
            let s = UnixDatagram::unbound()?;
            s.set_nonblocking(true)?;
            guard.insert(s)
        }
    };
    s.send_to(dgram, path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::Origin, logs::time::parse_rfc3164};

    fn target(dest: LogDest, max: Level, min: Option<Level>) -> LogTarget {
        LogTarget {
            dest,
            facility: Facility::Local6,
            max_level: max,
            min_level: min,
            origin: Origin::default(),
        }
    }

    /// Every datagram of the capture, rebuilt from its parts.
    #[test]
    fn golden_framing_against_the_capture() {
        let capture = include_str!("testdata/haproxy-2.6-http-datagrams.txt");
        let mut n = 0;
        for l in capture.lines() {
            let (pri_text, rest) = l[1..].split_once('>').expect("pri");
            let stamp = parse_rfc3164(&rest[..15]).expect("time");
            let (head, msg) = rest.split_once(": ").expect("tag");
            assert!(head.ends_with("haproxy[22285]"), "{head}");
            let got = frame(
                pri_text.parse().expect("pri"),
                stamp,
                "haproxy",
                22285,
                msg,
                MAX_LEN,
            );
            assert_eq!(String::from_utf8_lossy(&got), format!("{l}\n"));
            n += 1;
        }
        assert_eq!(n, 24);
        assert_eq!(pri(Facility::Local6, Level::Notice), 181);
        assert_eq!(pri(Facility::Local6, Level::Alert), 177);
        assert_eq!(pri(Facility::Local6, Level::Emerg), 176);
        assert_eq!(pri(Facility::Local6, Level::Info), 182);
        assert_eq!(pri(Facility::Kern, Level::Emerg), 0);
        assert_eq!(pri(Facility::Local7, Level::Debug), 191);
    }

    #[test]
    fn day_is_space_padded_and_tag_optional() {
        let s = LogTime::utc(0);
        assert_eq!(
            frame(134, s, "lb", 42, "Proxy main started.\n", MAX_LEN),
            b"<134>Jan  1 00:00:00 lb[42]: Proxy main started.\n"
        );
        assert_eq!(
            frame(134, s, "", 42, "x", MAX_LEN),
            b"<134>Jan  1 00:00:00 x\n"
        );
    }

    #[test]
    fn long_lines_are_cut_at_1024_bytes_plus_newline() {
        let s = LogTime::utc(0);
        let long = "x".repeat(2000);
        let d = frame(181, s, "haproxy", 1, &long, MAX_LEN);
        assert_eq!(d.len(), MAX_LEN + 1);
        assert!(d.starts_with(b"<181>Jan  1 00:00:00 haproxy[1]: xxx"));
        assert_eq!(d.last(), Some(&b'\n'));
    }

    #[test]
    fn level_filter_and_minlevel_clamp() {
        let t = target(LogDest::Stderr, Level::Notice, None);
        assert_eq!(target_level(&t, Level::Info), None);
        assert_eq!(target_level(&t, Level::Debug), None);
        assert_eq!(target_level(&t, Level::Notice), Some(Level::Notice));
        assert_eq!(target_level(&t, Level::Emerg), Some(Level::Emerg));
        let t = target(LogDest::Stderr, Level::Debug, Some(Level::Warning));
        assert_eq!(target_level(&t, Level::Emerg), Some(Level::Warning));
        assert_eq!(target_level(&t, Level::Alert), Some(Level::Warning));
        assert_eq!(target_level(&t, Level::Warning), Some(Level::Warning));
        assert_eq!(target_level(&t, Level::Info), Some(Level::Info));
    }

    fn recv(sock: &UdpSocket) -> Option<String> {
        let mut buf = [0u8; 2048];
        sock.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn udp_to_a_real_listener() {
        let l = UdpSocket::bind("127.0.0.1:0").expect("bind");
        l.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let to = l.local_addr().expect("addr");
        let logger = Logger::new(
            &[
                target(LogDest::Udp(to), Level::Notice, None),
                target(LogDest::Udp(to), Level::Debug, Some(Level::Notice)),
            ],
            "haproxy",
            22285,
        );
        let stamp = parse_rfc3164("Nov 26 17:35:03").expect("time");
        let down = "Server hoge/web11 is DOWN. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.";
        logger.send_at(Level::Alert, down, stamp);
        // First target as is, second clamped to notice.
        assert_eq!(
            recv(&l).as_deref(),
            Some(format!("<177>Nov 26 17:35:03 haproxy[22285]: {down}\n").as_str())
        );
        assert_eq!(
            recv(&l).as_deref(),
            Some(format!("<181>Nov 26 17:35:03 haproxy[22285]: {down}\n").as_str())
        );
        // Info: only the second target takes it.
        logger.send_at(Level::Info, "an info line", stamp);
        assert_eq!(
            recv(&l).as_deref(),
            Some("<182>Nov 26 17:35:03 haproxy[22285]: an info line\n")
        );
        // And a formatted line at its own level, with the clock.
        logger.log(&crate::logs::format::no_server_available("hoge"));
        for pri in ["<176>", "<181>"] {
            let got = recv(&l).expect("datagram");
            assert!(got.starts_with(pri), "{got}");
            assert!(
                got.ends_with(" haproxy[22285]: backend hoge has no server available!\n"),
                "{got}"
            );
        }
        l.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        assert_eq!(recv(&l), None, "nothing else: {:?}", recv(&l));
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lb-syslog-{}-{name}", std::process::id()))
    }

    #[test]
    fn unix_datagram_like_dev_log() {
        let path = temp_path("devlog");
        let _ = std::fs::remove_file(&path);
        let l = UnixDatagram::bind(&path).expect("bind");
        l.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let logger = Logger::new(
            &[target(LogDest::Unix(path.clone()), Level::Debug, None)],
            "lb",
            7,
        );
        logger.send_at(
            Level::Notice,
            "Proxy main started.",
            parse_rfc3164("Jan  2 03:04:05").expect("time"),
        );
        let mut buf = [0u8; 2048];
        let n = l.recv(&mut buf).expect("datagram");
        assert_eq!(
            &buf[..n],
            b"<181>Jan  2 03:04:05 lb[7]: Proxy main started.\n"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn dead_targets_neither_block_nor_fail() {
        let gone = temp_path("gone");
        let _ = std::fs::remove_file(&gone);
        let logger = Logger::new(&[target(LogDest::Unix(gone), Level::Debug, None)], "lb", 1);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            logger.send(Level::Alert, "nobody listens");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(logger.targets[0].warned.load(Ordering::Relaxed));
        assert!(Logger::new(&[], "lb", 1).is_empty());
    }

    #[test]
    fn from_global_uses_tag_and_targets() {
        let g = Global {
            log_tag: "haproxy".into(),
            logs: vec![target(LogDest::Stderr, Level::Debug, None)],
            ..Global::default()
        };
        let l = Logger::from_global(&g);
        assert_eq!((l.tag.as_str(), l.targets.len()), ("haproxy", 1));
        assert_eq!(l.pid, std::process::id());
    }
}
