//! Data-plane tracing (`lb trace on`): why the program passed, dropped or rewrote each packet.
//!
//! The switch is a constant of the loaded program, not a map value: the daemon loads a
//! second copy of the same object with tracing on and swaps it into the XDP links, and the
//! copy it runs otherwise has tracing off, where the verifier proves every trace path dead
//! and removes it. Tracing off therefore costs nothing per packet.
//!
//! While a packet goes through, the decisions it meets are noted in this CPU's
//! [`TraceRecord`] (`LB_TRACE_REC`); at the end the program writes one line through aya-log,
//! which the daemon prints with the servers' names.
use crate::FlowKey;

/// The globals the daemon sets when it loads the tracing copy (`EbpfLoader::override_global`).
pub const GLOBAL_TRACE: &str = "LB_TRACE";
/// Only packets of flows to this VIP (network order; 0: every packet) ...
pub const GLOBAL_TRACE_VIP: &str = "LB_TRACE_VIP";
/// ... and this port (network order in the low 16 bits; 0: any).
pub const GLOBAL_TRACE_PORT: &str = "LB_TRACE_PORT";

/// `TraceRecord::reason` and `server` when nothing was noted.
pub const TRACE_NONE: u32 = u32::MAX;

/// What a packet that was rewritten and sent on was (`TraceRecord::rewrite`).
pub const REWRITE_NONE: u32 = 0;
/// A packet of a tracked flow, client to server.
pub const REWRITE_IN: u32 = 1;
/// A packet of a tracked flow, server to client.
pub const REWRITE_OUT: u32 = 2;
/// The first packet of a new flow.
pub const REWRITE_NEW: u32 = 3;
/// The first packet of a flow moved from a server that refused it (`option redispatch`).
pub const REWRITE_REDISPATCH: u32 = 4;

/// What one packet met, noted as it goes (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceRecord {
    /// The packet's tuple as it arrived (`proto` 0: not a TCP/UDP packet lb parsed).
    pub key: FlowKey,
    /// The `Reason` counted for it, or [`TRACE_NONE`].
    pub reason: u32,
    /// `REWRITE_*`.
    pub rewrite: u32,
    /// The server slot whose counters took it, or [`TRACE_NONE`].
    pub server: u32,
    pub _pad: u32,
}

impl TraceRecord {
    /// A record before the packet met anything.
    pub const fn empty() -> TraceRecord {
        TraceRecord {
            key: FlowKey::new(0, 0, 0, 0, 0),
            reason: TRACE_NONE,
            rewrite: REWRITE_NONE,
            server: TRACE_NONE,
            _pad: 0,
        }
    }
}

/// Words for a `REWRITE_*` (the trace line's decision).
pub const fn rewrite_name(rewrite: u32) -> &'static str {
    match rewrite {
        REWRITE_IN => "forward",
        REWRITE_OUT => "reply",
        REWRITE_NEW => "new-flow",
        REWRITE_REDISPATCH => "redispatch",
        _ => "-",
    }
}

/// Whether a packet belongs to the traced VIP (`vip`, `port` as the globals hold them; 0:
/// any): one addressed to it (`to`, `to_port`, as it arrived) or one rewritten to come from
/// it (`from`, `from_port`, as it leaves: a server's reply).
pub const fn traced(vip: u32, port: u32, to: u32, to_port: u16, from: u32, from_port: u16) -> bool {
    let port = port as u16;
    let to_it = (vip == 0 || to == vip) && (port == 0 || to_port == port);
    let from_it = (vip == 0 || from == vip) && (port == 0 || from_port == port);
    to_it || from_it
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_takes_both_ways_of_the_vips_flows() {
        let (vip, other) = (0x0100_000a, 0x0200_000a);
        let p80 = 80u16.to_be();
        let p22 = 22u16.to_be();
        // No filter: everything.
        assert!(traced(0, 0, other, p22, other, p22));
        // VIP only: to it, or rewritten to come from it.
        assert!(traced(vip, 0, vip, p22, other, p22));
        assert!(traced(vip, 0, other, p80, vip, p80));
        assert!(!traced(vip, 0, other, p80, other, p80));
        // VIP and port.
        let port = u32::from(p80);
        assert!(traced(vip, port, vip, p80, other, p22));
        assert!(!traced(vip, port, vip, p22, other, p22));
        assert!(
            traced(vip, port, other, p22, vip, p80),
            "a reply from VIP:80"
        );
        assert!(!traced(vip, port, other, p80, vip, p22));
    }
}
