//! Atomic counters shared by all CPUs (round-robin cursor, full-NAT port cursor, active flows).

/// Atomically increments `*counter` and returns its previous value.
#[inline(always)]
pub fn fetch_add(counter: *mut u64) -> u64 {
    // The BPF target does not expose `AtomicU64::fetch_add` (no CAS), but the v3 ISA has
    // BPF_ATOMIC | BPF_FETCH add, which this intrinsic lowers to. It must be SeqCst: LLVM 22
    // lowers a *relaxed* atomicrmw add to the legacy non-fetching XADD and then reads the
    // addend back as if it were the old value (every flow got the same slot).
    #[cfg(target_arch = "bpf")]
    // SAFETY: `counter` points into an array map value, 8-byte aligned.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
            counter, 1,
        )
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above; host builds only type-check this crate.
    unsafe {
        core::sync::atomic::AtomicU64::from_ptr(counter)
            .fetch_add(1, core::sync::atomic::Ordering::SeqCst)
    }
}

/// Atomically adds `delta` (two's complement: a subtraction wraps) to `*counter`.
#[inline(always)]
pub fn add(counter: *mut u64, delta: u64) {
    // A fetching add, as above: the non-fetching form is what LLVM 22 gets wrong.
    #[cfg(target_arch = "bpf")]
    // SAFETY: `counter` points into an array map value, 8-byte aligned.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
            counter, delta,
        );
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above; host builds only type-check this crate.
    unsafe {
        core::sync::atomic::AtomicU64::from_ptr(counter)
            .fetch_add(delta, core::sync::atomic::Ordering::SeqCst);
    }
}
