//! `BPF_PROG_TEST_RUN` on the real program: feeds a frame, returns the action and the frame
//! as the program left it. Used by the data-plane fixtures and the benchmark.
use std::time::Duration;

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub fn action_name(a: u32) -> &'static str {
    match a {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "XDP_?",
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: u32,
    pub frame: Vec<u8>,
    /// Average time per run as the kernel measured it.
    pub per_run: Duration,
}

/// Runs `prog` `repeat` times on `frame` as if received on `ingress_ifindex` (which must exist
/// in the calling thread's network namespace; 0 for none).
pub fn run(prog: &Xdp, ingress_ifindex: u32, frame: &[u8], repeat: u32) -> Result<Outcome> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. The kernel wants data_end == the frame's length (no metadata).
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 256];
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(result.data_size_out as usize);
    Ok(Outcome {
        action: result.return_value,
        frame: out,
        per_run: result.duration,
    })
}
