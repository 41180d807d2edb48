//! Test and benchmark fixtures for lb, in real network namespaces:
//! - [`config`]: the seed layout's `lb run` config, with what each test adds;
//! - [`netns`]: throwaway namespaces, running commands and threads inside them;
//! - [`topo`]: the client / LB / two web servers topology of the seed, both routings;
//! - [`cluster`]: several lb nodes behind a BIRD router (ECMP), DSR servers;
//! - [`servers`]: real web servers (nginx, Apache) and small UDP/TCP peers, stopped by PID;
//! - [`packet`]: Ethernet/IPv4/TCP/UDP frames built and checked from scratch;
//! - [`http`]: a minimal HTTP/1.0 client for requests through the balancer;
//! - [`probe`]: clients that keep using a service in the background and report what failed;
//! - [`flood`]: a bounded SYN flood from spoofed sources (raw socket), watched by probes;
//! - [`wrk`]: the `wrk` load generator and its report.
//!
//! Traffic rule: everything here only talks to addresses inside namespaces it created.
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod flood;
pub mod http;
pub mod netns;
pub mod packet;
pub mod probe;
pub mod runnet;
pub mod servers;
pub mod topo;
pub mod wrk;

/// Fails loudly when not root: these fixtures need CAP_NET_ADMIN and CAP_BPF, and a test
/// that silently skips is a test that cannot fail.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, XDP); run it through `cargo xtask test` as root"
    );
}

/// A short name unique within this machine for the lifetime of the process: `pid` mixed with
/// a per-process counter, fitting interface names (15 bytes) with a suffix.
pub fn unique_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xfff, n)
}
