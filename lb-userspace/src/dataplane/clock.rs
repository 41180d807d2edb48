//! The data plane's clock (`lb_common::clock`) read from user space: `CLOCK_MONOTONIC`,
//! which `bpf_ktime_get_coarse_ns` reads too (coarsely).
use lb_common::clock::ticks_from_ns;

/// Now, in the data plane's ticks.
pub fn now() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ticks_from_ns(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
