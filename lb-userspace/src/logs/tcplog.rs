//! `option tcplog` lines for new flows, HAProxy's `%ci:%cp [%t] %ft %b/%s` (what an L4 data
//! plane knows when a connection starts; HAProxy's timers and byte counts come at its end).
use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down local time with milliseconds, as `%t` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTime {
    pub year: i32,
    /// 0 = January.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl LogTime {
    pub fn now() -> LogTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let t = d.as_secs() as libc::time_t;
        // SAFETY: `tm` is plain data that localtime_r fills.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&t, &mut tm);
            tm
        };
        LogTime {
            year: tm.tm_year + 1900,
            month: tm.tm_mon.clamp(0, 11) as u8,
            day: tm.tm_mday.clamp(1, 31) as u8,
            hour: tm.tm_hour.clamp(0, 23) as u8,
            minute: tm.tm_min.clamp(0, 59) as u8,
            second: tm.tm_sec.clamp(0, 60) as u8,
            millis: d.subsec_millis() as u16,
        }
    }
}

impl std::fmt::Display for LogTime {
    /// `26/Nov/2026:17:35:39.296`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}/{}/{}:{:02}:{:02}:{:02}.{:03}",
            self.day,
            MONTHS[self.month as usize % 12],
            self.year,
            self.hour,
            self.minute,
            self.second,
            self.millis
        )
    }
}

/// `10.200.0.2:49342 [26/Nov/2026:17:35:39.296] main hoge/web10`, plus ` (redispatched)`
/// when the flow moved from a server that left.
pub fn new_flow_line(
    client: std::net::SocketAddrV4,
    at: LogTime,
    frontend: &str,
    backend: &str,
    server: &str,
    redispatched: bool,
) -> String {
    format!(
        "{client} [{at}] {frontend} {backend}/{server}{}",
        if redispatched { " (redispatched)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_like_haproxy_tcplog() {
        let at = LogTime {
            year: 2026,
            month: 10,
            day: 26,
            hour: 17,
            minute: 35,
            second: 39,
            millis: 296,
        };
        // The head of the capture's `<182>... 10.200.0.2:49342 [26/Nov/2026:17:35:39.296]
        // tcp-in hoge/web10 1/0/0 280 -- 1/1/0/0/0 0/0`.
        assert_eq!(
            new_flow_line(
                "10.200.0.2:49342".parse().expect("addr"),
                at,
                "tcp-in",
                "hoge",
                "web10",
                false
            ),
            "10.200.0.2:49342 [26/Nov/2026:17:35:39.296] tcp-in hoge/web10"
        );
        let at = LogTime {
            day: 3,
            millis: 7,
            ..at
        };
        assert!(
            new_flow_line("10.0.0.1:1".parse().expect("addr"), at, "f", "b", "s", true)
                .ends_with("[03/Nov/2026:17:35:39.007] f b/s (redispatched)")
        );
    }
}
