//! The data plane's clock: `CLOCK_MONOTONIC` (what `bpf_ktime_get_coarse_ns` reads) in ticks
//! of 2^20 ns, about 1.05 ms, kept in a `u32`. It wraps every 52 days, so times are only ever
//! compared as wrapping differences ([`elapsed`]), and no timeout may exceed half the range.

/// A tick is `1 << TICK_SHIFT` nanoseconds.
pub const TICK_SHIFT: u32 = 20;

/// The longest timeout, in ticks (about 26 days; HAProxy's own timers stop at 24.8 days).
pub const MAX_TICKS: u32 = i32::MAX as u32;

/// Ticks of a `CLOCK_MONOTONIC` reading in nanoseconds.
#[inline(always)]
pub const fn ticks_from_ns(ns: u64) -> u32 {
    (ns >> TICK_SHIFT) as u32
}

/// A duration in milliseconds as ticks, rounded up (a timeout never fires early) and capped
/// at [`MAX_TICKS`].
pub const fn ticks_from_ms(ms: u64) -> u32 {
    let ns = ms.saturating_mul(1_000_000);
    let t = ns.div_ceil(1 << TICK_SHIFT);
    if t > MAX_TICKS as u64 {
        MAX_TICKS
    } else {
        t as u32
    }
}

/// Ticks as milliseconds (for people: `lb show flows`).
pub const fn ms_from_ticks(t: u32) -> u64 {
    ((t as u64) << TICK_SHIFT) / 1_000_000
}

/// Ticks from `then` to `now`, across a wrap of the counter.
#[inline(always)]
pub const fn elapsed(now: u32, then: u32) -> u32 {
    now.wrapping_sub(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_within_a_tick() {
        for ms in [0u64, 1, 999, 1000, 5000, 60_000, 3_600_000] {
            let back = ms_from_ticks(ticks_from_ms(ms));
            assert!(back >= ms && back <= ms + 2, "{ms} ms -> {back} ms");
        }
        assert_eq!(ticks_from_ms(u64::MAX), MAX_TICKS);
        assert_eq!(ticks_from_ns(1 << TICK_SHIFT), 1);
    }

    #[test]
    fn elapsed_survives_the_wrap() {
        assert_eq!(elapsed(5, u32::MAX - 4), 10);
        assert_eq!(elapsed(100, 40), 60);
    }
}
