//! A flow's life, as pure functions the data plane calls and the host tests: which state a
//! packet moves a flow to, how long each state may stay idle, and when a full-NAT source port
//! may go to another client.
//!
//! Two tables hold flows. A new flow starts **half-open** in `LB_HALFOPEN` (a TCP handshake
//! under way, or a UDP flow whose client has not spoken again since the server answered) and
//! moves to `LB_FLOWS` once **confirmed**: the client acknowledged the server's SYN-ACK with
//! the right sequence number, which a spoofed client cannot do. A SYN flood therefore only
//! churns the half-open table (an LRU of its own) and can never evict an established flow.
//!
//! Expiry is lazy: a packet that finds an entry idle beyond its timeout treats the flow as
//! absent, and full-NAT takes back the port of an expired flow when it meets it. The daemon's
//! sweep only tidies (`lb show flows`, counts); forwarding needs no daemon.
use crate::{
    PROTO_TCP,
    clock::{elapsed, ticks_from_ms},
    flow::{
        FLOW_F_FIN_CLIENT, FLOW_F_FIN_SERVER, FLOW_F_RST, FLOW_F_SERVER_CLOSED_FIRST, FLOW_F_TS,
        FlowOf,
    },
};

/// TCP flags as they sit in the header's flags byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A flow's state (`Flow::state`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// TCP: the client's SYN went to the server, no answer yet. Half-open.
    SynSent = 1,
    /// TCP: the server's SYN-ACK went back; the client's ACK is awaited. Half-open.
    SynRecv = 2,
    /// TCP: handshake complete.
    Established = 3,
    /// TCP: one side sent a FIN (half-closed).
    FinWait = 4,
    /// TCP: both sides sent a FIN, or an RST went by.
    Closed = 5,
    /// UDP: the client spoke, the server has not answered. Half-open.
    UdpNew = 6,
    /// UDP: the server answered; the client has not spoken since. Half-open.
    UdpReplied = 7,
    /// UDP: a two-way exchange went on.
    UdpActive = 8,
}

impl State {
    pub const fn from_u8(v: u8) -> Option<State> {
        Some(match v {
            1 => State::SynSent,
            2 => State::SynRecv,
            3 => State::Established,
            4 => State::FinWait,
            5 => State::Closed,
            6 => State::UdpNew,
            7 => State::UdpReplied,
            8 => State::UdpActive,
            _ => return None,
        })
    }

    /// Whether a side has closed (FIN or RST).
    pub const fn is_closing(self) -> bool {
        matches!(self, State::FinWait | State::Closed)
    }

    /// Whether a flow in this state belongs in the half-open table.
    pub const fn half_open(self) -> bool {
        matches!(
            self,
            State::SynSent | State::SynRecv | State::UdpNew | State::UdpReplied
        )
    }

    /// A name for people (`lb show flows`).
    pub const fn name(self) -> &'static str {
        match self {
            State::SynSent => "syn-sent",
            State::SynRecv => "syn-recv",
            State::Established => "established",
            State::FinWait => "fin-wait",
            State::Closed => "closed",
            State::UdpNew => "udp-new",
            State::UdpReplied => "udp-replied",
            State::UdpActive => "udp",
        }
    }

    /// The state a new flow of `proto` starts in.
    pub const fn initial(proto: u8) -> State {
        if proto == PROTO_TCP {
            State::SynSent
        } else {
            State::UdpNew
        }
    }
}

/// What a packet does to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Only the clock moves.
    Same,
    /// The flow moves to `state` with `flags`: both entries are updated.
    To { state: State, flags: u8 },
    /// A SYN on a closed flow's tuple: a new connection, balanced afresh.
    Restart,
    /// The server answered the SYN with an RST: the connection was refused (the caller may
    /// hold the RST back and retry elsewhere, see `balance::refusal`; otherwise it closes).
    Refused,
}

/// What a TCP packet with header flags `tcp` does to a flow in `state` with entry flags
/// `flags`. `from_server`: the packet came from the server. `ack_ok`: the packet's ACK covers
/// what the flow waits for: from the client in `SynRecv`, the server's ISN + 1 (it confirms
/// the handshake); from the server once the client sent its FIN, that FIN (`Flow::client_fin`).
/// A server FIN that does not cover the client's crossed it: the server sent its FIN first and
/// goes through CLOSING to TIME_WAIT, whatever order lb saw them in.
pub const fn tcp_step(state: State, flags: u8, from_server: bool, tcp: u8, ack_ok: bool) -> Step {
    let (syn, ack, fin, rst) = (
        tcp & TCP_SYN != 0,
        tcp & TCP_ACK != 0,
        tcp & TCP_FIN != 0,
        tcp & TCP_RST != 0,
    );
    if rst {
        if from_server && matches!(state, State::SynSent) {
            return Step::Refused;
        }
        if matches!(state, State::Closed) {
            return Step::Same;
        }
        return Step::To {
            state: State::Closed,
            flags: flags | FLOW_F_RST,
        };
    }
    if syn && !ack {
        // A client SYN: a retransmission, or a new connection on a tuple the client closed.
        // After a FIN a SYN cannot be the first one again: the client has let this tuple go
        // (its FIN may have been seen, or lost to another CPU's update of a crossing FIN).
        // (A "SYN" from the server side without ACK is not a TCP server's answer: no change.)
        if !from_server && matches!(state, State::Closed | State::FinWait) {
            return Step::Restart;
        }
        return Step::Same;
    }
    if syn {
        // SYN-ACK.
        if from_server && matches!(state, State::SynSent) {
            return Step::To {
                state: State::SynRecv,
                flags,
            };
        }
        return Step::Same;
    }
    let mut next = state;
    let mut f = flags;
    if matches!(state, State::SynRecv) && !from_server && ack && ack_ok {
        next = State::Established;
    }
    if fin && !matches!(state, State::Closed) {
        let (mine, theirs) = if from_server {
            (FLOW_F_FIN_SERVER, FLOW_F_FIN_CLIENT)
        } else {
            (FLOW_F_FIN_CLIENT, FLOW_F_FIN_SERVER)
        };
        if f & mine == 0 {
            f |= mine;
            if from_server && (f & theirs == 0 || !ack_ok) {
                f |= FLOW_F_SERVER_CLOSED_FIRST;
            }
            next = if f & theirs != 0 {
                State::Closed
            } else {
                State::FinWait
            };
        }
    }
    if next as u8 == state as u8 && f == flags {
        Step::Same
    } else {
        Step::To {
            state: next,
            flags: f,
        }
    }
}

/// What a client's packet does to a direct-server-return flow, of which lb sees only the
/// client's side: no SYN-ACK, no server FIN. The client's first ACK confirms it (lb cannot
/// check it against the server's ISN it never saw: a spoofer who sends SYN then ACK gets an
/// entry in the main table, which is only a cache of the Maglev choice when the pool hashes);
/// the client's FIN half-closes it (`timeout client-fin`); an RST closes it; a SYN on a
/// closing tuple starts a new connection. UDP is confirmed by the client's second datagram.
pub const fn dsr_step(state: State, flags: u8, proto: u8, tcp: u8) -> Step {
    if proto != PROTO_TCP {
        return match state {
            State::UdpNew => Step::To {
                state: State::UdpActive,
                flags,
            },
            _ => Step::Same,
        };
    }
    let (syn, ack, fin, rst) = (
        tcp & TCP_SYN != 0,
        tcp & TCP_ACK != 0,
        tcp & TCP_FIN != 0,
        tcp & TCP_RST != 0,
    );
    if rst {
        return match state {
            State::Closed => Step::Same,
            _ => Step::To {
                state: State::Closed,
                flags: flags | FLOW_F_RST,
            },
        };
    }
    if syn {
        return match (state, ack) {
            (State::Closed | State::FinWait, false) => Step::Restart,
            _ => Step::Same,
        };
    }
    if fin && flags & FLOW_F_FIN_CLIENT == 0 && !matches!(state, State::Closed) {
        return Step::To {
            state: State::FinWait,
            flags: flags | FLOW_F_FIN_CLIENT,
        };
    }
    if ack && matches!(state, State::SynSent) {
        return Step::To {
            state: State::Established,
            flags,
        };
    }
    Step::Same
}

/// What a UDP packet does to a flow: an answer from the server, then the client speaking
/// again, confirm it.
pub const fn udp_step(state: State, flags: u8, from_server: bool) -> Step {
    match (state, from_server) {
        (State::UdpNew, true) => Step::To {
            state: State::UdpReplied,
            flags,
        },
        (State::UdpReplied, false) => Step::To {
            state: State::UdpActive,
            flags,
        },
        _ => Step::Same,
    }
}

/// A step confirms the flow (moves it from the half-open table to the main one) when it
/// leaves a half-open state for one that is not.
pub const fn confirms(from: State, to: State) -> bool {
    from.half_open() && !to.half_open() && !matches!(to, State::Closed)
}

/// Whether a flow in `state` counts as one of its server's active flows (`leastconn`,
/// `maxconn`): from its confirmation (the client completed the handshake, as HAProxy counts
/// a connection once it accepted it) until it closes. Half-open flows do not count, so a SYN
/// flood cannot fill a server's `maxconn`.
pub const fn counts_as_active(state: State) -> bool {
    matches!(
        state,
        State::Established | State::FinWait | State::UdpActive
    )
}

/// What a step from `from` to `to` does to the server's active flows: +1 when it confirms
/// the flow, -1 when an active flow closes. Flows that end otherwise (idle expiry, LRU
/// eviction, a new connection on a half-closed tuple) are taken out by the daemon's recount.
pub const fn active_delta(from: State, to: State) -> i64 {
    if confirms(from, to) {
        1
    } else if counts_as_active(from) && !counts_as_active(to) {
        -1
    } else {
        0
    }
}

/// Idle timeouts of one backend, in clock ticks, in HAProxy's words (see [`Timeouts::from_ms`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `SynSent`, `SynRecv`: `timeout connect`.
    pub connect: u32,
    /// `Established`: `timeout tunnel` if set, else the shorter of `timeout client` and
    /// `timeout server` (at L4 both sides see the same packets, so the shorter fires first).
    pub established: u32,
    /// `FinWait`: the shorter of `timeout client-fin` / `timeout server-fin` if set, else as
    /// established.
    pub half_closed: u32,
    /// `Closed` after an RST or a close the client began: a short linger for the last ACKs.
    pub closed: u32,
    /// `Closed` after the server closed first, for its reply entry: the server's TIME_WAIT,
    /// during which the full-NAT port stays with this client.
    pub time_wait: u32,
    /// UDP flows: as established (HAProxy 2.6 has no UDP-specific timeout).
    pub udp: u32,
}

/// HAProxy's timeouts for one backend, in milliseconds; `None` where the config sets none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutsMs {
    pub connect: Option<u64>,
    pub client: Option<u64>,
    pub server: Option<u64>,
    pub tunnel: Option<u64>,
    pub client_fin: Option<u64>,
    pub server_fin: Option<u64>,
}

/// What lb uses where the config sets no timeout: HAProxy leaves such timers infinite (and
/// warns); a flow table cannot, so these are the values of HAProxy's example configuration.
pub const DEFAULT_CONNECT_MS: u64 = 5_000;
pub const DEFAULT_IDLE_MS: u64 = 50_000;
/// Linger after an RST or a client-first close (the last ACK, a retransmitted FIN).
pub const CLOSED_LINGER_MS: u64 = 10_000;
/// Linux's TCP_TIMEWAIT_LEN.
pub const TIME_WAIT_MS: u64 = 60_000;

const fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x < y { x } else { y }),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

const fn or(v: Option<u64>, d: u64) -> u64 {
    match v {
        Some(x) => x,
        None => d,
    }
}

impl Timeouts {
    pub const fn from_ms(t: TimeoutsMs) -> Timeouts {
        let idle = match t.tunnel {
            Some(x) => x,
            None => or(min_opt(t.client, t.server), DEFAULT_IDLE_MS),
        };
        Timeouts {
            connect: ticks_from_ms(or(t.connect, DEFAULT_CONNECT_MS)),
            established: ticks_from_ms(idle),
            half_closed: ticks_from_ms(or(min_opt(t.client_fin, t.server_fin), idle)),
            closed: ticks_from_ms(CLOSED_LINGER_MS),
            time_wait: ticks_from_ms(TIME_WAIT_MS),
            udp: ticks_from_ms(idle),
        }
    }

    /// How long an entry in `state` with `flags` may stay idle.
    pub const fn of(&self, state: State, flags: u8, is_reply: bool) -> u32 {
        match state {
            State::SynSent | State::SynRecv => self.connect,
            State::Established => self.established,
            State::FinWait => self.half_closed,
            State::Closed => {
                if is_reply && flags & FLOW_F_SERVER_CLOSED_FIRST != 0 && flags & FLOW_F_RST == 0 {
                    self.time_wait
                } else {
                    self.closed
                }
            }
            State::UdpNew | State::UdpReplied | State::UdpActive => self.udp,
        }
    }
}

/// Whether an entry has been idle longer than its timeout at `now`.
#[inline(always)]
pub const fn idle_expired<A>(f: &FlowOf<A>, now: u32) -> bool {
    elapsed(now, f.last_seen) > f.timeout
}

/// Whether the entry `f` at `key` is dead at `now`: idle beyond its timeout and, in states
/// where one direction may be quiet ([`expiry_asks_mirror`]), its other direction too (the
/// entry at `f.mirror_key`, `mirror`, if it is still this flow's: it points back to `key`).
/// The data plane and `lb show` both judge by this. A direct-server-return entry has no other
/// direction (lb never sees the replies): the client's packets alone keep it alive.
pub fn dead<A: Copy + PartialEq>(
    f: &FlowOf<A>,
    key: &crate::FlowKeyOf<A>,
    mirror: Option<&FlowOf<A>>,
    now: u32,
) -> bool {
    if !idle_expired(f, now) {
        return false;
    }
    match mirror {
        Some(m)
            if expiry_asks_mirror(f.state)
                && f.flags & crate::FLOW_F_DSR == 0
                && m.mirror_key(key.proto) == *key =>
        {
            idle_expired(m, now)
        }
        _ => true,
    }
}

/// Whether an entry's expiry must also ask the other direction: in these states one way may
/// be quiet while the flow lives (a one-way UDP stream, a download's rare ACKs).
pub const fn expiry_asks_mirror(state: u8) -> bool {
    matches!(
        State::from_u8(state),
        Some(State::Established | State::FinWait | State::UdpActive)
    )
}

/// Whether the server may still hold the tuple of a flow with entry flags `flags` in `state`
/// once lb lets go of it: TIME_WAIT after it closed first, FIN_WAIT2 when the client vanished,
/// a connection it still thinks open. Only an RST, or a close the client began and the
/// server's FIN acknowledged, leave it nothing.
pub const fn server_may_hold(state: u8, flags: u8) -> bool {
    if flags & FLOW_F_RST != 0 {
        return false;
    }
    !(matches!(State::from_u8(state), Some(State::Closed))
        && flags & FLOW_F_SERVER_CLOSED_FIRST == 0)
}

/// Whether full-NAT may reuse the port of `old`, a TCP reply entry that expired at `now`:
/// if the server may still hold the tuple ([`server_may_hold`]), only once the longest a
/// server holds one (TIME_WAIT, FIN_WAIT2: 60 s) has passed since its last packet.
pub const fn port_rested<A>(old: &FlowOf<A>, now: u32) -> bool {
    !server_may_hold(old.state, old.flags)
        || elapsed(now, old.last_seen) > ticks_from_ms(TIME_WAIT_MS)
}

/// Who asks for a reply tuple, see [`port_reusable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimant {
    /// DNAT: the tuple is the client's own, not lb's choice.
    Dnat,
    /// Full-NAT, with the new SYN's TCP timestamp (TSval) if it had one.
    FullNat { ts: Option<u32> },
}

/// Whether a new flow from `client:cport` to `vip` may take the reply tuple that `old` (the
/// reply entry found there, not expired) holds. Addresses and ports in network order.
///
/// The server's view decides: after an RST or a close the client began, the server keeps no
/// state for the tuple; after a close it began, it holds the tuple in TIME_WAIT for 60 s, and
/// Linux (`tcp_timewait_state_process`, RFC 6191) takes a new SYN on it at once if the SYN's
/// timestamp is newer than the last one it saw there (the client's last, kept in `tcp_ref`);
/// an older one it rejects (PAWS) whatever the sequence number. Timestamp clocks start at a
/// random offset per connection, so any client's SYN may qualify, or not: full-NAT tries the
/// next port. Without timestamps on both, the port rests until the TIME_WAIT timeout expires
/// the entry (the sequence-number rule needs the client's last sequence number, which is not
/// worth an entry's bytes for a rare case). DNAT's tuple is the client's: when the client
/// starts its own tuple again, that is its call, as it would be without lb.
pub fn port_reusable<A: Copy + PartialEq>(
    old: &FlowOf<A>,
    client: A,
    cport: u16,
    vip: A,
    claimant: Claimant,
) -> bool {
    let same_client = old.dst == client && old.dport == cport && old.src == vip;
    if same_client && matches!(claimant, Claimant::Dnat) {
        return true;
    }
    if !matches!(State::from_u8(old.state), Some(State::Closed)) {
        return false; // live
    }
    if old.flags & FLOW_F_RST != 0 || old.flags & FLOW_F_SERVER_CLOSED_FIRST == 0 {
        return true;
    }
    match claimant {
        Claimant::FullNat { ts: Some(ts) } if old.flags & FLOW_F_TS != 0 => {
            ts.wrapping_sub(old.tcp_ref) as i32 > 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FLOW_F_REPLY, Flow};

    const ACK: u8 = TCP_ACK;
    const SYN: u8 = TCP_SYN;
    const FIN: u8 = TCP_FIN;
    const RST: u8 = TCP_RST;

    fn to(state: State, flags: u8) -> Step {
        Step::To { state, flags }
    }

    #[test]
    fn direct_server_return_flows_follow_the_client_alone() {
        use State::*;
        const UDP: u8 = crate::PROTO_UDP;
        let tcp = |state, flags, f| dsr_step(state, flags, PROTO_TCP, f);
        assert_eq!(tcp(SynSent, 0, SYN), Step::Same, "retransmitted SYN");
        assert_eq!(tcp(SynSent, 0, ACK), to(Established, 0));
        assert!(confirms(SynSent, Established));
        assert_eq!(tcp(Established, 0, ACK), Step::Same);
        assert_eq!(
            tcp(Established, 0, FIN | ACK),
            to(FinWait, FLOW_F_FIN_CLIENT)
        );
        assert_eq!(tcp(SynSent, 0, FIN | ACK), to(FinWait, FLOW_F_FIN_CLIENT));
        assert_eq!(tcp(FinWait, FLOW_F_FIN_CLIENT, FIN | ACK), Step::Same);
        assert_eq!(tcp(FinWait, FLOW_F_FIN_CLIENT, ACK), Step::Same);
        assert_eq!(tcp(FinWait, FLOW_F_FIN_CLIENT, SYN), Step::Restart);
        assert_eq!(tcp(Established, 0, RST), to(Closed, FLOW_F_RST));
        assert_eq!(tcp(Closed, FLOW_F_RST, RST), Step::Same);
        assert_eq!(tcp(Closed, FLOW_F_RST, SYN), Step::Restart);
        assert_eq!(tcp(Established, 0, SYN | ACK), Step::Same);
        assert_eq!(dsr_step(UdpNew, 0, UDP, 0), to(UdpActive, 0));
        assert!(confirms(UdpNew, UdpActive));
        assert_eq!(dsr_step(UdpActive, 0, UDP, 0), Step::Same);
    }

    #[test]
    fn a_handshake_confirms_only_with_the_right_ack() {
        use State::*;
        let s = tcp_step(SynSent, 0, true, SYN | ACK, false);
        assert_eq!(s, to(SynRecv, 0));
        assert_eq!(
            tcp_step(SynRecv, 0, false, ACK, false),
            Step::Same,
            "a guessed ACK"
        );
        assert_eq!(tcp_step(SynRecv, 0, false, ACK, true), to(Established, 0));
        assert!(confirms(SynRecv, Established));
        // Retransmissions change nothing.
        assert_eq!(tcp_step(SynSent, 0, false, SYN, false), Step::Same);
        assert_eq!(tcp_step(SynRecv, 0, true, SYN | ACK, false), Step::Same);
        // An ACK from the server side is no confirmation.
        assert_eq!(tcp_step(SynRecv, 0, true, ACK, true), Step::Same);
        // Data with FIN completing the handshake.
        assert_eq!(
            tcp_step(SynRecv, 0, false, ACK | FIN, true),
            to(FinWait, FLOW_F_FIN_CLIENT)
        );
        assert!(confirms(SynRecv, FinWait));
    }

    #[test]
    fn closes_record_who_began() {
        use State::*;
        // Client first: no TIME_WAIT on the server.
        let s = tcp_step(Established, 0, false, FIN | ACK, false);
        assert_eq!(s, to(FinWait, FLOW_F_FIN_CLIENT));
        let s = tcp_step(FinWait, FLOW_F_FIN_CLIENT, true, FIN | ACK, true);
        assert_eq!(s, to(Closed, FLOW_F_FIN_CLIENT | FLOW_F_FIN_SERVER));
        // FINs that crossed: the server's does not acknowledge the client's, so the server
        // sent it first and holds a TIME_WAIT, though lb saw the client's first.
        let s = tcp_step(FinWait, FLOW_F_FIN_CLIENT, true, FIN | ACK, false);
        let both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_SERVER;
        assert_eq!(s, to(Closed, both | FLOW_F_SERVER_CLOSED_FIRST));
        // Server first.
        let s = tcp_step(Established, 0, true, FIN | ACK, false);
        let sf = FLOW_F_FIN_SERVER | FLOW_F_SERVER_CLOSED_FIRST;
        assert_eq!(s, to(FinWait, sf));
        let s = tcp_step(FinWait, sf, false, FIN | ACK, false);
        assert_eq!(s, to(Closed, sf | FLOW_F_FIN_CLIENT));
        // A retransmitted FIN changes nothing; nor does the last ACK.
        assert_eq!(tcp_step(FinWait, sf, true, FIN | ACK, false), Step::Same);
        assert_eq!(tcp_step(Closed, sf, true, ACK, false), Step::Same);
        // RST, either way, from any live state.
        assert_eq!(
            tcp_step(Established, 0, true, RST, false),
            to(Closed, FLOW_F_RST)
        );
        assert_eq!(
            tcp_step(SynSent, 0, false, RST | ACK, false),
            to(Closed, FLOW_F_RST)
        );
        assert_eq!(tcp_step(Closed, FLOW_F_RST, false, RST, false), Step::Same);
    }

    #[test]
    fn a_server_rst_to_the_syn_is_a_refusal_and_a_syn_on_a_closed_tuple_restarts() {
        use State::*;
        assert_eq!(tcp_step(SynSent, 0, true, RST | ACK, false), Step::Refused);
        assert_eq!(
            tcp_step(Closed, FLOW_F_RST, false, SYN, false),
            Step::Restart
        );
        assert_eq!(tcp_step(Established, 0, false, SYN, false), Step::Same);
        // Once a side closed, a client SYN is a new connection: the client let the tuple go.
        assert_eq!(
            tcp_step(FinWait, FLOW_F_FIN_CLIENT, false, SYN, false),
            Step::Restart
        );
        assert_eq!(
            tcp_step(FinWait, FLOW_F_FIN_SERVER, false, SYN, false),
            Step::Restart
        );
        assert_eq!(tcp_step(Closed, 0, true, SYN, false), Step::Same);
    }

    #[test]
    fn udp_is_confirmed_by_the_client_after_an_answer() {
        use State::*;
        assert_eq!(udp_step(UdpNew, 0, false), Step::Same);
        assert_eq!(udp_step(UdpNew, 0, true), to(UdpReplied, 0));
        assert_eq!(udp_step(UdpReplied, 0, true), Step::Same);
        assert_eq!(udp_step(UdpReplied, 0, false), to(UdpActive, 0));
        assert!(confirms(UdpReplied, UdpActive));
        assert_eq!(udp_step(UdpActive, 0, true), Step::Same);
    }

    #[test]
    fn a_flow_is_active_from_its_confirmation_until_it_closes() {
        use State::*;
        assert_eq!(active_delta(SynRecv, Established), 1);
        assert_eq!(active_delta(SynRecv, FinWait), 1, "data and FIN confirm");
        assert_eq!(active_delta(UdpReplied, UdpActive), 1);
        assert_eq!(active_delta(Established, FinWait), 0);
        assert_eq!(active_delta(FinWait, Closed), -1);
        assert_eq!(active_delta(Established, Closed), -1, "RST");
        // Half-open flows never counted: their ends change nothing.
        assert_eq!(active_delta(SynSent, Closed), 0, "refused");
        assert_eq!(active_delta(SynRecv, Closed), 0);
        assert_eq!(active_delta(SynSent, SynRecv), 0);
        assert_eq!(active_delta(Closed, Closed), 0);
        for s in [SynSent, SynRecv, UdpNew, UdpReplied, Closed] {
            assert!(!counts_as_active(s), "{s:?}");
        }
    }

    #[test]
    fn timeouts_follow_haproxy_names() {
        let t = Timeouts::from_ms(TimeoutsMs {
            connect: Some(10_000),
            client: Some(60_000),
            server: Some(30_000),
            ..TimeoutsMs::default()
        });
        assert_eq!(t.connect, ticks_from_ms(10_000));
        assert_eq!(
            t.established,
            ticks_from_ms(30_000),
            "the shorter of the two"
        );
        assert_eq!(t.half_closed, t.established);
        assert_eq!(t.udp, t.established);
        let tunnel = Timeouts::from_ms(TimeoutsMs {
            client: Some(60_000),
            server: Some(60_000),
            tunnel: Some(3_600_000),
            client_fin: Some(1_000),
            ..TimeoutsMs::default()
        });
        assert_eq!(tunnel.established, ticks_from_ms(3_600_000));
        assert_eq!(tunnel.half_closed, ticks_from_ms(1_000));
        let none = Timeouts::from_ms(TimeoutsMs::default());
        assert_eq!(none.connect, ticks_from_ms(DEFAULT_CONNECT_MS));
        assert_eq!(none.established, ticks_from_ms(DEFAULT_IDLE_MS));
        // Per state: the server's TIME_WAIT only on the reply entry of a server-first close.
        let sf = FLOW_F_FIN_SERVER | FLOW_F_FIN_CLIENT | FLOW_F_SERVER_CLOSED_FIRST;
        assert_eq!(t.of(State::Closed, sf, true), t.time_wait);
        assert_eq!(t.of(State::Closed, sf, false), t.closed);
        assert_eq!(t.of(State::Closed, sf | FLOW_F_RST, true), t.closed);
        assert_eq!(t.of(State::SynRecv, 0, true), t.connect);
    }

    #[test]
    fn an_idle_direction_lives_while_its_own_other_direction_does() {
        let key = crate::FlowKey::new(1, 2, 10, 20, crate::PROTO_TCP);
        let f = Flow {
            src: 3,
            dst: 4,
            sport: 30,
            dport: 40,
            state: State::Established as u8,
            last_seen: 0,
            timeout: 10,
            ..Flow::default()
        };
        // The other direction: the entry at f's rewrite turned around, pointing back.
        let mirror = Flow {
            src: 2,
            dst: 1,
            sport: 20,
            dport: 10,
            last_seen: 95,
            timeout: 10,
            ..f
        };
        assert!(
            !dead(&f, &key, Some(&mirror), 100),
            "the other way is fresh"
        );
        assert!(dead(&f, &key, None, 100), "no other way");
        let strangers = Flow { dst: 9, ..mirror };
        assert!(
            dead(&f, &key, Some(&strangers), 100),
            "the tuple went to another flow"
        );
        let closing = Flow {
            state: State::Closed as u8,
            ..f
        };
        assert!(
            dead(&closing, &key, Some(&mirror), 100),
            "closed: on its own clock"
        );
        assert!(!dead(&f, &key, None, 10), "not idle yet");
        // A direct-server-return entry is alone even if a full-NAT reply entry happens to
        // sit at its mirror tuple and name its key.
        let dsr = Flow {
            flags: crate::FLOW_F_DSR,
            ..f
        };
        assert!(
            dead(&dsr, &key, Some(&mirror), 100),
            "no other way to wait for"
        );
        assert!(!dead(&dsr, &key, Some(&mirror), 10), "not idle yet");
    }

    #[test]
    fn expiry_is_strictly_after_the_timeout_and_wraps() {
        let f = Flow {
            last_seen: u32::MAX - 9,
            timeout: 20,
            ..Flow::default()
        };
        assert!(!idle_expired(&f, 10)); // 20 ticks later: not yet
        assert!(idle_expired(&f, 11));
    }

    fn closed(flags: u8, client: u32, vip: u32) -> Flow {
        Flow {
            src: vip,
            dst: client,
            sport: 80,
            dport: 5000,
            state: State::Closed as u8,
            flags: FLOW_F_REPLY | flags,
            tcp_ref: 1_000,
            ..Flow::default()
        }
    }

    #[test]
    fn a_server_may_hold_a_tuple_unless_it_was_reset_or_closed_by_the_client() {
        use State::*;
        let both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_SERVER;
        assert!(
            !server_may_hold(Closed as u8, both),
            "client first, acknowledged"
        );
        assert!(!server_may_hold(Established as u8, FLOW_F_RST));
        assert!(server_may_hold(
            Closed as u8,
            both | FLOW_F_SERVER_CLOSED_FIRST
        ));
        assert!(
            server_may_hold(FinWait as u8, FLOW_F_FIN_CLIENT),
            "FIN_WAIT2, LAST_ACK"
        );
        assert!(server_may_hold(Established as u8, 0), "idle, but open");
        // A held port rests 60 s after the server's last packet.
        let mut f = closed(both | FLOW_F_SERVER_CLOSED_FIRST, 1, 9);
        f.last_seen = 1_000;
        let tw = ticks_from_ms(TIME_WAIT_MS);
        assert!(!port_rested(&f, 1_000 + tw));
        assert!(port_rested(&f, 1_001 + tw));
        f.flags = both;
        assert!(port_rested(&f, 1_001), "nothing held");
    }

    #[test]
    fn ports_come_back_as_the_server_allows() {
        use Claimant::{Dnat, FullNat};
        let (a, b, vip) = (1, 2, 9);
        let ts = |t| FullNat { ts: Some(t) };
        let no_ts = FullNat { ts: None };
        let both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_SERVER;
        // Client closed first, or an RST: at once, to anyone.
        assert!(port_reusable(&closed(both, a, vip), b, 1, vip, no_ts));
        assert!(port_reusable(&closed(FLOW_F_RST, a, vip), b, 1, vip, no_ts));
        // Server closed first: TIME_WAIT, where the last TSval it saw was 1,000. Any SYN with
        // a newer one, from any client to any VIP (the server sees lb's address either way).
        let tw = closed(both | FLOW_F_SERVER_CLOSED_FIRST | FLOW_F_TS, a, vip);
        assert!(port_reusable(&tw, b, 1, vip, ts(1_001)));
        assert!(port_reusable(&tw, a, 1, 8, ts(1_001)), "another VIP");
        assert!(!port_reusable(&tw, a, 1, vip, ts(1_000)), "as old");
        assert!(!port_reusable(&tw, a, 1, vip, ts(999)), "older");
        assert!(!port_reusable(&tw, a, 1, vip, no_ts), "no timestamps");
        assert!(
            !port_reusable(&tw, a, 5000, vip, ts(999)),
            "the same client tuple again, older"
        );
        assert!(
            port_reusable(&tw, a, 5000, vip, Dnat),
            "DNAT: the client's call"
        );
        // Newer in sequence space, across the wrap.
        let mut wrapped = tw;
        wrapped.tcp_ref = u32::MAX - 5;
        assert!(port_reusable(&wrapped, b, 1, vip, ts(10)));
        assert!(!port_reusable(&wrapped, b, 1, vip, ts(u32::MAX - 6)));
        // The client closed without timestamps: only the TIME_WAIT timeout frees the port.
        let tw_no_ts = closed(both | FLOW_F_SERVER_CLOSED_FIRST, a, vip);
        assert!(!port_reusable(&tw_no_ts, a, 1, vip, ts(5_000)));
        // Live flows never, except DNAT's very same client tuple.
        let mut live = closed(0, a, vip);
        live.state = State::Established as u8;
        assert!(!port_reusable(&live, b, 1, vip, ts(5_000)));
        assert!(port_reusable(&live, a, 5000, vip, Dnat));
        assert!(!port_reusable(&live, a, 5000, vip, no_ts));
        assert!(
            !port_reusable(&live, a, 5000, 8, Dnat),
            "same client port, other VIP"
        );
        live.state = State::FinWait as u8;
        assert!(!port_reusable(&live, b, 1, vip, ts(5_000)));
    }
}
