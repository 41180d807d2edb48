//! The local wall-clock time log lines carry, and the two ways HAProxy prints it: RFC 3164's
//! syslog header (`Nov 26 17:34:54`) and `%t` in tcplog lines (`26/Nov/2026:17:35:39.296`).
use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

/// Broken-down local time, to the millisecond.
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
    /// Now, in the local time zone.
    pub fn now() -> LogTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        LogTime {
            millis: d.subsec_millis() as u16,
            ..LogTime::local(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        }
    }

    /// `unix_secs` in the local time zone (`localtime_r`); in UTC if that fails.
    pub fn local(unix_secs: i64) -> LogTime {
        let t = unix_secs as libc::time_t;
        // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid for the
        // call and nothing keeps them.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return LogTime::utc(unix_secs);
            }
            tm
        };
        LogTime {
            year: tm.tm_year.saturating_add(1900),
            month: tm.tm_mon.clamp(0, 11) as u8,
            day: tm.tm_mday.clamp(1, 31) as u8,
            hour: tm.tm_hour.clamp(0, 23) as u8,
            minute: tm.tm_min.clamp(0, 59) as u8,
            second: tm.tm_sec.clamp(0, 60) as u8,
            millis: 0,
        }
    }

    /// `unix_secs` in UTC.
    pub fn utc(unix_secs: i64) -> LogTime {
        let days = unix_secs.div_euclid(86_400);
        let rem = unix_secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm); its years start in March.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let (month, year) = if mp < 10 {
            (mp + 2, yoe + era * 400)
        } else {
            (mp - 10, yoe + era * 400 + 1)
        };
        LogTime {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            millis: 0,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS[usize::from(self.month) % 12]
    }

    /// RFC 3164's `TIMESTAMP`, as syslog headers carry it: `Nov 26 17:34:54`, the day padded
    /// with a space (`Jan  1 00:00:00`).
    pub fn rfc3164(self) -> impl fmt::Display {
        Rfc3164(self)
    }

    /// HAProxy's `%t` (accept date): `26/Nov/2026:17:35:39.296`.
    pub fn accept_date(self) -> impl fmt::Display {
        AcceptDate(self)
    }
}

struct Rfc3164(LogTime);

impl fmt::Display for Rfc3164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{} {:2} {:02}:{:02}:{:02}",
            t.month_name(),
            t.day,
            t.hour,
            t.minute,
            t.second
        )
    }
}

struct AcceptDate(LogTime);

impl fmt::Display for AcceptDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{:02}/{}/{}:{:02}:{:02}:{:02}.{:03}",
            t.day,
            t.month_name(),
            t.year,
            t.hour,
            t.minute,
            t.second,
            t.millis
        )
    }
}

/// A syslog header's time back from its text (for tests that rebuild captured lines); the
/// year and milliseconds, which it does not show, are 0.
#[cfg(test)]
pub fn parse_rfc3164(text: &str) -> Option<LogTime> {
    let month = MONTHS.iter().position(|m| text.starts_with(m))? as u8;
    let num = |r: std::ops::Range<usize>| -> Option<u8> { text.get(r)?.trim().parse().ok() };
    Some(LogTime {
        year: 0,
        month,
        day: num(4..6)?,
        hour: num(7..9)?,
        minute: num(10..12)?,
        second: num(13..15)?,
        millis: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_26: LogTime = LogTime {
        year: 2026,
        month: 10,
        day: 26,
        hour: 17,
        minute: 35,
        second: 39,
        millis: 296,
    };

    #[test]
    fn both_formats() {
        assert_eq!(NOV_26.rfc3164().to_string(), "Nov 26 17:35:39");
        assert_eq!(NOV_26.accept_date().to_string(), "26/Nov/2026:17:35:39.296");
        let jan_1 = LogTime {
            month: 0,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 7,
            ..NOV_26
        };
        // The syslog header pads the day with a space, `%t` with a zero.
        assert_eq!(jan_1.rfc3164().to_string(), "Jan  1 00:00:00");
        assert_eq!(jan_1.accept_date().to_string(), "01/Jan/2026:00:00:00.007");
        assert_eq!(
            parse_rfc3164("Nov 26 17:35:39"),
            Some(LogTime {
                year: 0,
                millis: 0,
                ..NOV_26
            })
        );
    }

    #[test]
    fn utc() {
        let at = |s| LogTime::utc(s).accept_date().to_string();
        assert_eq!(at(0), "01/Jan/1970:00:00:00.000");
        // 2026-11-26 17:34:54 UTC
        assert_eq!(at(1_795_714_494), "26/Nov/2026:17:34:54.000");
        // 2024-02-29 23:59:59 UTC, then the next day; 2000-03-01 (a leap century).
        assert_eq!(at(1_709_251_199), "29/Feb/2024:23:59:59.000");
        assert_eq!(at(1_709_251_200), "01/Mar/2024:00:00:00.000");
        assert_eq!(at(951_868_800), "01/Mar/2000:00:00:00.000");
        // 2025-12-31 23:59:59 UTC: January and February count to the next year.
        assert_eq!(at(1_767_225_599), "31/Dec/2025:23:59:59.000");
        assert_eq!(at(1_767_225_600), "01/Jan/2026:00:00:00.000");
    }

    /// The local time is the UTC one moved by the zone's offset (`tm_gmtoff`), to the
    /// minute, whatever `TZ` says.
    #[test]
    fn local_is_utc_plus_the_zone_offset() {
        let secs = 1_795_714_494;
        let t = secs as libc::time_t;
        // SAFETY: as in `LogTime::local`.
        let offset = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            assert!(!libc::localtime_r(&t, &mut tm).is_null());
            tm.tm_gmtoff
        };
        assert_eq!(LogTime::local(secs), LogTime::utc(secs + offset));
        let now = LogTime::now();
        assert!(now.month < 12 && (1..=31).contains(&now.day) && now.millis < 1000);
        assert!(now.year >= 2024);
    }
}
