//! Readers for keyword values: integers, timers, IPv4 addresses, names.
use std::{net::IpAddr, time::Duration};

use super::diags::{Diags, clean, show};
use crate::config::units;

/// HAProxy timers are signed 32-bit milliseconds.
const MAX_TIMER_MS: u128 = 2_147_483_647;

/// `what` is the keyword as messages name it, quotes included (`'maxconn'`).
pub(super) fn int_arg(d: &mut Diags, what: &str, v: Option<&str>) -> Option<u32> {
    match v {
        None | Some("") => {
            d.alert(format!("{what} expects an integer argument."));
            None
        }
        Some(v) => match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                d.alert(format!(
                    "{what} expects an integer argument, got '{}'.",
                    show(v)
                ));
                None
            }
        },
    }
}

/// `what` is the keyword as messages name it, quotes included (`'timeout connect'`).
pub(super) fn time_arg(d: &mut Diags, what: &str, v: Option<&str>) -> Option<Duration> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        d.alert(format!("{what} expects <time> as argument."));
        return None;
    };
    match units::duration_lenient(v) {
        Ok((t, _)) if t.as_millis() > MAX_TIMER_MS => {
            d.alert(format!(
                "timer overflow in argument '{}' to {what} (maximum value is 2147483647 ms or ~24.8 days)",
                show(v)
            ));
            None
        }
        Ok((t, None)) => Some(t),
        Ok((t, Some(c))) => {
            // HAProxy 2.6's words (it says "next versions" will refuse it), and what lb read.
            d.warn(format!(
                "{what}: unexpected character '{}' after the timer value '{}', only (us=microseconds,ms=milliseconds,s=seconds,m=minutes,h=hours,d=days) are supported; read as {}ms, as HAProxy 2.6 does (later versions refuse it).",
                show(&c.to_string()),
                show(v),
                t.as_millis()
            ));
            Some(t)
        }
        Err(e) => {
            d.alert(format!("{what}: {}", clean(&e)));
            None
        }
    }
}

/// An IPv4 or IPv6 address (an IPv6 one bracketed or not).
pub(super) fn ip_arg(a: &str) -> Result<IpAddr, String> {
    units::ip(a).map_err(|_| {
        if a.contains(|c: char| c.is_ascii_alphabetic()) && !a.contains(':') {
            format!(
                "'{}' is not an IP address (lb resolves no host names here)",
                show(a)
            )
        } else {
            format!("'{}' is not an IP address", show(a))
        }
    })
}

/// The first character of `name` that HAProxy's name rule (letters, digits, '-', '_', '.',
/// ':') refuses in proxy and server names.
pub(super) fn bad_char(name: &str) -> Option<char> {
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
}

/// Alerts and returns true when the name of a `kw` section breaks HAProxy's name rule.
pub(super) fn bad_name(d: &mut Diags, kw: &str, name: &str) -> bool {
    match bad_char(name) {
        Some(c) => {
            d.alert(format!(
                "character '{}' is not permitted in '{kw}' name '{}'.",
                show(&c.to_string()),
                show(name)
            ));
            true
        }
        None => false,
    }
}
