//! Pure decisions the data plane makes per new flow: the round-robin slot, how `leastconn`,
//! `first` and `random` weigh servers against their active flows, `maxconn`, the full-NAT
//! source port, what to do when a server refuses a connection. Kept here so they are tested
//! on the host.
use crate::{FLOW_F_REFUSED, POOL_F_REDISPATCH, POOL_RETRIES_SHIFT, WEIGHT_SCALE};

/// Table entry for the `counter`-th new flow of a pool whose live table holds `len` entries.
/// `len` must be non-zero.
#[inline(always)]
pub const fn rr_slot(counter: u64, len: u32) -> u32 {
    (counter % len as u64) as u32
}

/// A server's active flows as `LB_ACTIVE` holds them: the data plane adds and subtracts
/// while the daemon's recount stores absolute values, so a race may leave it briefly below
/// zero (wrapped); that reads as none.
#[inline(always)]
pub const fn active_flows(raw: u64) -> u64 {
    if (raw as i64) < 0 { 0 } else { raw }
}

/// Whether a server with `active` flows may take another under `maxconn` (0: no limit).
#[inline(always)]
pub const fn has_room(active: u64, maxconn: u32) -> bool {
    maxconn == 0 || active < maxconn as u64
}

/// HAProxy's `SRV_EWGHT_MAX`: the largest effective weight (256 x 16).
pub const EWEIGHT_MAX: u64 = 256 * WEIGHT_SCALE as u64;

/// `leastconn`'s order (HAProxy's `fwlc_queue_srv`): a server's key is 0 while it has no
/// flow, else `(active + 1) * EWEIGHT_MAX / weight`; the lowest key takes the flow, and
/// servers of equal key take turns. `weight` is the effective weight, never 0 in a table.
#[inline(always)]
pub const fn leastconn_key(active: u64, weight: u32) -> u64 {
    if active == 0 {
        return 0;
    }
    let w = if weight == 0 { 1 } else { weight as u64 };
    (active + 1) * EWEIGHT_MAX / w
}

/// `random(<draws>)`'s comparison (HAProxy's `get_server_rnd`): the new draw replaces the
/// best so far unless it serves more for its weight.
#[inline(always)]
pub const fn draw_wins(active: u64, weight: u32, best_active: u64, best_weight: u32) -> bool {
    active * (best_weight as u64) <= best_active * (weight as u64)
}

/// How many source ports full-NAT tries before giving up on a flow. Under sustained short
/// connections every port sits in its server's TIME_WAIT, and a SYN may take one only with a
/// newer timestamp than the port's last (`conntrack::port_reusable`), about one port in two
/// when clients draw random timestamp offsets per connection. Tries are not independent
/// (ports rest in runs), so 32 still failed once in 645k connections of a 60 s benchmark run;
/// the tries are a `bpf_loop` callback, verified once, so more of them cost the verifier
/// nothing and a flow only pays for the ones it needs.
pub const SNAT_PROBES: u32 = 64;

/// The full-NAT source port (host order) in `min..=max` for the `cursor`-th allocation
/// towards one server.
///
/// Each server has its own cursor and ports are handed out in turn, like the kernel's
/// ephemeral ports: a port comes back only after the whole range has been used towards that
/// server, which keeps reuse away from the server's TIME_WAIT for that tuple as long as the
/// traffic allows (and `conntrack::port_reusable` decides when it does not).
#[inline(always)]
pub const fn snat_port(cursor: u64, min: u16, max: u16) -> u16 {
    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
    let span = (hi - lo) as u64 + 1;
    lo + (cursor % span) as u16
}

/// A server answered a new connection's SYN with an RST (connection refused, typically a
/// dead web server whose health checks have not failed `fall` times yet). With `option
/// redispatch` and `retries` left (the forward entry has seen `attempts` refusals), returns
/// the forward entry's new (flags, attempts): refused, one more attempt. The data plane then
/// drops the RST, so the client retransmits its SYN (after its initial RTO, 1 s on Linux)
/// and that SYN goes to another server: what HAProxy does with `retries` and `option
/// redispatch`, at L4. `None`: let the RST through.
#[inline(always)]
pub const fn refusal(fwd_flags: u8, attempts: u8, pool_flags: u32) -> Option<(u8, u8)> {
    if pool_flags & POOL_F_REDISPATCH == 0 {
        return None;
    }
    let retries = ((pool_flags >> POOL_RETRIES_SHIFT) & 0xff) as u8;
    if attempts >= retries {
        return None;
    }
    Some((fwd_flags | FLOW_F_REFUSED, attempts + 1))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rr_cycles_through_every_entry_in_order() {
        let picks: std::vec::Vec<u32> = (0..6).map(|c| rr_slot(c, 3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rr_survives_counter_wrap() {
        assert_eq!(rr_slot(u64::MAX, 2), 1);
        assert_eq!(rr_slot(u64::MAX.wrapping_add(1), 2), 0);
    }

    #[test]
    fn counts_below_zero_read_as_none_and_maxconn_zero_is_unlimited() {
        assert_eq!(active_flows(5), 5);
        assert_eq!(active_flows(0u64.wrapping_sub(2)), 0);
        assert!(has_room(1_000_000, 0));
        assert!(has_room(2, 3));
        assert!(!has_room(3, 3));
        assert!(!has_room(4, 3));
    }

    #[test]
    fn leastconn_prefers_fewer_flows_per_weight_and_idle_servers_tie() {
        let w = |uw: u32| uw * WEIGHT_SCALE;
        // Idle servers all have key 0, whatever their weight (HAProxy's rule).
        assert_eq!(leastconn_key(0, w(1)), leastconn_key(0, w(100)));
        assert!(leastconn_key(1, w(1)) > leastconn_key(0, w(1)));
        // Equal weights: fewer flows wins.
        assert!(leastconn_key(2, w(1)) < leastconn_key(3, w(1)));
        // Weight 3 against 1: three times the flows for the same key.
        assert_eq!(leastconn_key(5, w(3)), leastconn_key(1, w(1)));
        assert!(leastconn_key(6, w(3)) > leastconn_key(1, w(1)));
        // A server in slow start (a sixteenth of its weight) looks loaded sooner.
        assert!(leastconn_key(1, 1) > leastconn_key(1, w(1)));
        assert_eq!(
            leastconn_key(3, 0),
            leastconn_key(3, 1),
            "never divides by zero"
        );
    }

    #[test]
    fn a_random_draw_replaces_the_best_unless_more_loaded_for_its_weight() {
        assert!(draw_wins(1, 16, 2, 16));
        assert!(draw_wins(2, 16, 2, 16), "ties go to the new draw");
        assert!(!draw_wins(3, 16, 2, 16));
        assert!(
            draw_wins(3, 32, 2, 16),
            "twice the weight, less than twice the load"
        );
        assert!(!draw_wins(5, 32, 2, 16));
    }

    #[test]
    fn snat_ports_stay_in_range_and_go_in_turn() {
        for cursor in [0u64, 1, 10, 22767, 22768, u64::MAX] {
            let p = snat_port(cursor, 10000, 32767);
            assert!((10000..=32767).contains(&p), "{p}");
            assert_eq!(snat_port(cursor, 7, 7), 7);
        }
        assert_eq!(snat_port(0, 10000, 32767), 10000);
        assert_eq!(snat_port(1, 10000, 32767), 10001);
        assert_eq!(
            snat_port(22768, 10000, 32767),
            10000,
            "wraps after the whole range"
        );
        assert_eq!(snat_port(3, 32767, 10000), 10003, "bounds in either order");
    }

    #[test]
    fn a_port_comes_back_only_after_the_whole_range() {
        let ports: HashSet<u16> = (0u64..22768).map(|c| snat_port(c, 10000, 32767)).collect();
        assert_eq!(ports.len(), 22768);
    }

    #[test]
    fn refusals_are_held_back_only_with_redispatch_and_retries_left() {
        let pool = |retries: u32| POOL_F_REDISPATCH | (retries << POOL_RETRIES_SHIFT);
        assert_eq!(
            refusal(0, 0, 3 << POOL_RETRIES_SHIFT),
            None,
            "no option redispatch"
        );
        assert_eq!(refusal(0, 0, pool(0)), None, "retries 0");
        // retries 3: three refusals are held back, the fourth goes through.
        let (mut f, mut n) = (crate::FLOW_F_TS, 0u8);
        for want in 1..=3 {
            (f, n) = refusal(f, n, pool(3)).expect("held back");
            assert_eq!(n, want);
            assert!(f & FLOW_F_REFUSED != 0 && f & crate::FLOW_F_TS != 0);
        }
        assert_eq!(refusal(f, n, pool(3)), None);
        // The count saturates with the field: 255 retries, then through.
        assert_eq!(refusal(0, 255, pool(255)), None);
        assert_eq!(refusal(0, 254, pool(255)).map(|(_, n)| n), Some(255));
    }
}
