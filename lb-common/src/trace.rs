//! Data-plane tracing (`lb trace on`): why the program passed, dropped or rewrote each packet.
//!
//! The switch is a constant of the loaded program, not a map value: the daemon loads a
//! second copy of the same object with tracing on and swaps it into the XDP links, and the
//! copy it runs otherwise has tracing off, where the verifier proves every trace path dead
//! and removes it. Tracing off therefore costs nothing per packet.
//!
//! While a packet goes through, the decisions it meets are noted in this CPU's
//! [`TraceRecord`] (`LB_TRACE_REC`); at the end the program writes one line through aya-log,
//! which the daemon prints with the servers' names. Each family's path writes its own line
//! (`lb_xdp` IPv4's, `lb_xdp6` IPv6's, with the addresses as 4 words).
use crate::{Addr6, FlowKey, FlowKey6};

/// The globals the daemon sets when it loads the tracing copy (`EbpfLoader::override_global`).
/// Which families' paths trace ([`TRACE_V4`], [`TRACE_V6`]; 0 in the copy that runs normally).
pub const GLOBAL_TRACE: &str = "LB_TRACE";
/// Only packets of flows to this IPv4 VIP (network order; 0: every packet) ...
pub const GLOBAL_TRACE_VIP: &str = "LB_TRACE_VIP";
/// ... or this IPv6 VIP (packet order; `::`: every packet) ...
pub const GLOBAL_TRACE_VIP6: &str = "LB_TRACE_VIP6";
/// ... and this port (network order in the low 16 bits; 0: any).
pub const GLOBAL_TRACE_PORT: &str = "LB_TRACE_PORT";

/// `GLOBAL_TRACE` bits: IPv4's path traces ...
pub const TRACE_V4: u32 = 1;
/// ... IPv6's path traces (a `--vip` of one family leaves the other's path silent).
pub const TRACE_V6: u32 = 2;

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
    /// An IPv4 packet's tuple as it arrived (`proto` 0: not a TCP/UDP packet lb parsed).
    pub key: FlowKey,
    /// An IPv6 packet's, the same way.
    pub key6: FlowKey6,
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
            key6: FlowKey6::new([0; 4], [0; 4], 0, 0, 0),
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
    let any = vip == 0;
    at(any || to == vip, port, to_port) || at(any || from == vip, port, from_port)
}

/// [`traced`] for IPv6 (`vip` `::`: any). Word by word: comparing arrays could become a
/// `memcmp` call, which BPF has not.
pub const fn traced6(
    vip: &Addr6,
    port: u32,
    to: &Addr6,
    to_port: u16,
    from: &Addr6,
    from_port: u16,
) -> bool {
    let any = same6(vip, &[0; 4]);
    at(any || same6(to, vip), port, to_port) || at(any || same6(from, vip), port, from_port)
}

/// The VIP matched and the port is the filter's (0: any).
const fn at(vip_matched: bool, port: u32, packet_port: u16) -> bool {
    let port = port as u16;
    vip_matched && (port == 0 || packet_port == port)
}

const fn same6(a: &Addr6, b: &Addr6) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
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

    #[test]
    fn the_ipv6_filter_is_the_same_rule() {
        let (vip, other, any) = ([0xfd, 0, 0, 1u32 << 24], [0xfd, 0, 0, 2u32 << 24], [0; 4]);
        let p80 = 80u16.to_be();
        let p22 = 22u16.to_be();
        assert!(traced6(&any, 0, &other, p22, &other, p22));
        assert!(traced6(&vip, 0, &vip, p22, &other, p22));
        assert!(traced6(&vip, 0, &other, p80, &vip, p80));
        assert!(!traced6(&vip, 0, &other, p80, &other, p80));
        // One word differing is another address.
        assert!(!traced6(&vip, 0, &[0xfd, 0, 1, 1 << 24], p80, &other, p80));
        let port = u32::from(p80);
        assert!(traced6(&vip, port, &vip, p80, &other, p22));
        assert!(!traced6(&vip, port, &vip, p22, &other, p22));
        assert!(traced6(&vip, port, &other, p22, &vip, p80));
        assert!(!traced6(&vip, port, &other, p80, &vip, p22));
    }
}
