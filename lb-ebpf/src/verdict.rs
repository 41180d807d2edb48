//! What the packet path's subprograms return: an XDP action, or one of these, which are not
//! actions and tell `path::process` what comes next. A subprogram returns one scalar (the BPF
//! backend returns no aggregates) and keeps its locals in its own frame: the verifier allows
//! 512 bytes of stack for the longest chain of calls, which one inlined packet path exceeds.

/// The stage did its part: go on with the next one.
pub const GO_ON: u32 = u32::MAX - 1;
/// The packet starts a new flow (described in the caller's `NewFlow`).
pub const NEW_FLOW: u32 = u32::MAX;
/// IPv6: the packet is an ICMPv6 error quoting a TCP or UDP packet, for `lb_xdp6` to hand to
/// `icmp6::translate` (from there its chain of frames leaves out the packet path's).
pub const ICMP6: u32 = u32::MAX - 2;
