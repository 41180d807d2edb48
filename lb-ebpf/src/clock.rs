//! The clock flows are timed with (`lb_common::clock`): coarse CLOCK_MONOTONIC, one helper
//! call per packet of the whole path (about 10 ns on this VM, which is why the flow cache's
//! hits read `jiffies` instead: `flow_cache`).
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use lb_common::clock::ticks_from_ns;

#[inline(always)]
pub fn now() -> u32 {
    // SAFETY: plain helper call.
    ticks_from_ns(unsafe { bpf_ktime_get_coarse_ns() })
}
