//! `slowstart` (pure): a server coming back UP (its checks, an agent, `set server ... health
//! up`, or leaving maintenance) takes its full weight and `maxconn` only after a while, as
//! HAProxy ramps them (`server_recalc_eweight`, `srv_dynamic_maxconn`). Seen from outside,
//! exactly HAProxy's numbers: `show stat`'s `weight` goes 7, 13, 25, 32 ... 100 for a weight
//! of 100 over 10 s, `throttle` 6, 12, 25 ..., and the server is STARTING (`srv_op_state` 1)
//! until the end. The daemon recomputes every second and rewrites the pool's table when the
//! effective weight changed.
use std::time::Duration;

use lb_common::WEIGHT_SCALE;

/// A slow start in progress: how long it lasts and how far it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramp {
    /// HAProxy keeps `slowstart` in whole seconds, rounded up.
    secs: u64,
    /// Whole seconds since the server came UP.
    elapsed: u64,
}

impl Ramp {
    /// `None` when `slowstart` is zero or `elapsed` has reached it: full speed.
    pub fn new(slowstart: Duration, elapsed: Duration) -> Option<Ramp> {
        let secs = slowstart.as_millis().div_ceil(1000) as u64;
        let elapsed = elapsed.as_secs();
        (secs > 0 && elapsed < secs).then_some(Ramp { secs, elapsed })
    }

    /// The sixteenths of its weight the server has now, 1 to 16: HAProxy's
    /// `(wdiv * elapsed + slowstart) / slowstart`, with `wdiv` = 16.
    pub fn step(self) -> u32 {
        let w = (u64::from(WEIGHT_SCALE) * self.elapsed + self.secs) / self.secs;
        w.clamp(1, u64::from(WEIGHT_SCALE)) as u32
    }

    /// `maxconn` during the ramp (`srv_dynamic_maxconn`): the share of the time elapsed, at
    /// least 1.
    pub fn maxconn(self, maxconn: u32) -> u32 {
        let ratio = 100 * self.elapsed / self.secs;
        ((u64::from(maxconn) * ratio / 100) as u32).max(1)
    }
}

/// A server's effective weight (HAProxy's `cur_eweight`): its user weight in sixteenths,
/// fewer while a ramp runs on a backend whose algorithm takes weight changes (`dynamic`).
pub fn eweight(uweight: u32, ramp: Option<Ramp>, dynamic: bool) -> u32 {
    match ramp {
        Some(r) if dynamic => uweight * r.step(),
        _ => uweight * WEIGHT_SCALE,
    }
}

/// `show stat`'s `weight` for an effective weight: in user units, rounded up.
pub fn shown_weight(eweight: u32) -> u32 {
    eweight.div_ceil(WEIGHT_SCALE)
}

/// `show stat`'s `throttle` (`server_throttle_rate`): the effective weight as a percentage
/// of the full one.
pub fn throttle(eweight: u32, uweight: u32) -> u32 {
    if uweight == 0 {
        return 100;
    }
    (100 * eweight + WEIGHT_SCALE - 1) / (WEIGHT_SCALE * uweight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy 2.6's `show stat` for `weight 100 slowstart 10s`, one line per second after
    /// the server came UP (captured: weight, throttle).
    const HAPROXY_10S: &[(u64, u32, u32)] = &[
        (0, 7, 6),
        (1, 13, 12),
        (2, 25, 25),
        (3, 32, 31),
        (4, 44, 43),
        (5, 57, 56),
        (6, 63, 62),
        (7, 75, 75),
    ];

    #[test]
    fn the_ramp_matches_haproxy_second_by_second() {
        for &(secs, weight, thr) in HAPROXY_10S {
            let r = Ramp::new(Duration::from_secs(10), Duration::from_secs(secs));
            let e = eweight(100, r, true);
            assert_eq!(
                (shown_weight(e), throttle(e, 100)),
                (weight, thr),
                "{secs} s"
            );
        }
        assert_eq!(
            Ramp::new(Duration::from_secs(10), Duration::from_secs(10)),
            None,
            "over at the end"
        );
        assert_eq!(Ramp::new(Duration::ZERO, Duration::ZERO), None);
    }

    #[test]
    fn static_algorithms_keep_the_full_weight_but_maxconn_ramps() {
        let r = Ramp::new(Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(eweight(100, r, false), 100 * WEIGHT_SCALE);
        assert_eq!(throttle(eweight(100, r, false), 100), 100);
        let r = r.expect("ramping");
        assert_eq!(r.maxconn(50), 15);
        let early = Ramp::new(Duration::from_secs(10), Duration::ZERO).expect("ramping");
        assert_eq!(early.maxconn(50), 1, "never below one");
    }

    #[test]
    fn slowstart_counts_in_whole_seconds_rounded_up() {
        // 1500 ms is 2 s for HAProxy: still ramping after 1 s.
        let r = Ramp::new(Duration::from_millis(1500), Duration::from_millis(1999));
        assert_eq!(r.map(Ramp::step), Some(9));
        // The smallest weight still shows as 1.
        assert_eq!(shown_weight(eweight(1, r, true)), 1);
        assert_eq!(shown_weight(eweight(0, None, true)), 0);
    }
}
