//! Pool table builder (pure): which servers take new flows, in which order, as each
//! algorithm reads them ([`Shape`]).
//!
//! Round robin takes `table[cursor++ % len]` for each new flow, so its table *is* the
//! schedule. Weights become repetitions in a smooth weighted round-robin order (nginx's
//! algorithm: no server gets long bursts), after dividing by their GCD so equal weights give
//! the shortest table. `random` draws from the same repetitions; `leastconn` and `first`
//! walk each server once, in config order.
use lb_common::TableEntry;

use super::ids::ServerSlot;
use crate::config::Balance;

/// How an algorithm reads its pool's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Repetitions by weight, smooth order, bare slots (`roundrobin`, `static-rr`).
    Rotation,
    /// The same repetitions, each entry with its server's weight (`random`).
    Draws,
    /// Each server once, in config order, with its weight (`leastconn`, `first`).
    Once,
}

impl Shape {
    pub fn of(b: Balance) -> Shape {
        match b {
            // `source` hashes into a Maglev table (`table::maglev`); never built here.
            Balance::RoundRobin | Balance::StaticRr | Balance::Source => Shape::Rotation,
            Balance::Random { .. } => Shape::Draws,
            Balance::LeastConn | Balance::First => Shape::Once,
        }
    }
}

/// What the builder needs to know about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// What the table holds for it.
    pub slot: ServerSlot,
    /// Its effective weight (`lb_common::WEIGHT_SCALE` per unit of user weight).
    pub weight: u32,
    pub backup: bool,
    /// UP and not in maintenance or drain (i.e. may take new flows).
    pub usable: bool,
}

/// Builds the live table for one pool, as `shape` lays it out: `TableEntry`s, packed.
pub fn build(cands: &[Candidate], allbackups: bool, max_len: usize, shape: Shape) -> Vec<u32> {
    let chosen = chosen(cands, allbackups);
    let entry = |c: &Candidate, weighted: bool| {
        TableEntry {
            slot: c.slot.0,
            weight: if weighted { c.weight } else { 0 },
        }
        .pack()
    };
    match shape {
        Shape::Once => chosen.iter().map(|c| entry(c, true)).collect(),
        Shape::Rotation | Shape::Draws => {
            let by_slot = |s: ServerSlot| chosen.iter().find(|c| c.slot == s);
            rotation(&chosen, max_len)
                .into_iter()
                .filter_map(by_slot)
                .map(|c| entry(c, shape == Shape::Draws))
                .collect()
        }
    }
}

/// The servers that take new flows, in config order.
///
/// HAProxy semantics: active servers only; if none is usable, the first usable backup (in
/// declaration order), or all usable backups with `allbackups`. Weight 0 takes no new flows.
fn chosen(cands: &[Candidate], allbackups: bool) -> Vec<Candidate> {
    let usable = |c: &&Candidate| c.usable && c.weight > 0;
    let mut chosen: Vec<Candidate> = cands
        .iter()
        .filter(usable)
        .filter(|c| !c.backup)
        .copied()
        .collect();
    if chosen.is_empty() {
        let backups = cands.iter().filter(usable).filter(|c| c.backup).copied();
        chosen = if allbackups {
            backups.collect()
        } else {
            backups.take(1).collect()
        };
    }
    chosen
}

/// Round robin's schedule over `chosen`: repetitions by weight in smooth order. Tables longer
/// than `max_len` are scaled down proportionally (every server keeps >= 1 slot; validation
/// keeps the number of servers of a backend <= `max_len`).
fn rotation(chosen: &[Candidate], max_len: usize) -> Vec<ServerSlot> {
    if chosen.is_empty() {
        return Vec::new();
    }
    let g = chosen.iter().map(|c| c.weight).fold(0, gcd);
    let mut weights: Vec<u64> = chosen.iter().map(|c| u64::from(c.weight / g)).collect();
    let total: u64 = weights.iter().sum();
    let max_len = max_len.max(chosen.len()) as u64;
    if total > max_len {
        for w in &mut weights {
            *w = (*w * max_len / total).max(1);
        }
        // Rounding up the small ones may overshoot: trim the largest until it fits.
        while weights.iter().sum::<u64>() > max_len {
            if let Some(w) = weights.iter_mut().max() {
                *w -= 1;
            }
        }
    }
    smooth_wrr(chosen, &weights)
}

/// Builds the Maglev table of `size` entries (see `lb_common::maglev`) for one hashing pool
/// whose servers are `cands`, each with its name, weighted by `weight` (the configured one
/// while the server's own is 0, so that it keeps its entries for when it is back).
///
/// Backups as HAProxy: the table is over the active servers while one is usable; else over
/// the backups (all of them with `allbackups`, else the first usable one).
pub fn maglev(cands: &[(&str, Candidate, u32)], allbackups: bool, size: u32) -> Vec<u16> {
    fn usable(c: &Candidate) -> bool {
        c.usable && c.weight > 0
    }
    fn to<'a>(&(name, c, weight): &(&'a str, Candidate, u32)) -> lb_common::maglev::Candidate<'a> {
        lb_common::maglev::Candidate {
            name,
            slot: c.slot.0 as u16,
            weight: if c.weight > 0 { c.weight } else { weight },
            usable: usable(&c),
        }
    }
    let actives: Vec<_> = cands.iter().filter(|(_, c, _)| !c.backup).collect();
    let chosen: Vec<_> = if actives.iter().any(|(_, c, _)| usable(c)) {
        actives.into_iter().map(to).collect()
    } else {
        let backups = cands.iter().filter(|(_, c, _)| c.backup);
        if allbackups {
            backups.map(to).collect()
        } else {
            backups
                .filter(|(_, c, _)| usable(c))
                .take(1)
                .map(to)
                .collect()
        }
    };
    lb_common::maglev::build(&chosen, size)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn smooth_wrr(chosen: &[Candidate], weights: &[u64]) -> Vec<ServerSlot> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; chosen.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..chosen.len() {
            current[i] += weights[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(chosen[best].slot);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(slot: u32, weight: u32) -> Candidate {
        Candidate {
            slot: ServerSlot(slot),
            weight,
            backup: false,
            usable: true,
        }
    }

    /// A round-robin table as plain slot numbers.
    fn build(cands: &[Candidate], allbackups: bool, max_len: usize) -> Vec<u32> {
        super::build(cands, allbackups, max_len, Shape::Rotation)
    }

    fn entries(cands: &[Candidate], shape: Shape) -> Vec<(u32, u32)> {
        super::build(cands, false, 4096, shape)
            .into_iter()
            .map(TableEntry::unpack)
            .map(|e| (e.slot, e.weight))
            .collect()
    }

    #[test]
    fn each_algorithm_reads_its_shape() {
        let cands = [c(1, 48), c(2, 16), c(3, 0)];
        assert_eq!(
            entries(&cands, Shape::Rotation),
            [(1, 0), (1, 0), (2, 0), (1, 0)],
            "bare slots, weight 3:1"
        );
        assert_eq!(
            entries(&cands, Shape::Draws),
            [(1, 48), (1, 48), (2, 16), (1, 48)]
        );
        assert_eq!(
            entries(&cands, Shape::Once),
            [(1, 48), (2, 16)],
            "once each, config order"
        );
        assert_eq!(Shape::of(Balance::StaticRr), Shape::Rotation);
        assert_eq!(Shape::of(Balance::First), Shape::Once);
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(build(&[c(10, 1), c(11, 1)], false, 4096), [10, 11]);
        assert_eq!(build(&[c(10, 50), c(11, 50)], false, 4096), [10, 11]);
    }

    #[test]
    fn weights_are_smooth() {
        assert_eq!(build(&[c(1, 3), c(2, 1)], false, 4096), [1, 1, 2, 1]);
        assert_eq!(
            build(&[c(1, 5), c(2, 1), c(3, 1)], false, 4096),
            [1, 1, 2, 1, 3, 1, 1]
        );
    }

    #[test]
    fn down_drain_and_zero_weight_take_no_new_flows() {
        let mut down = c(2, 1);
        down.usable = false;
        assert_eq!(build(&[c(1, 1), down, c(3, 0)], false, 4096), [1]);
    }

    #[test]
    fn backups_only_when_no_active_is_up() {
        let mut b1 = c(3, 1);
        b1.backup = true;
        let mut b2 = c(4, 1);
        b2.backup = true;
        assert_eq!(build(&[c(1, 1), b1, b2], false, 4096), [1]);
        let mut down = c(1, 1);
        down.usable = false;
        assert_eq!(build(&[down, b1, b2], false, 4096), [3]);
        assert_eq!(build(&[down, b1, b2], true, 4096), [3, 4]);
    }

    #[test]
    fn nothing_usable_is_empty() {
        let mut down = c(1, 1);
        down.usable = false;
        assert!(build(&[down], true, 4096).is_empty());
        assert!(build(&[], false, 4096).is_empty());
    }

    #[test]
    fn hashed_tables_fall_back_to_backups_as_round_robin_does() {
        let named = |cs: &[Candidate]| -> Vec<(&'static str, Candidate, u32)> {
            const NAMES: [&str; 4] = ["a", "b", "c", "d"];
            cs.iter()
                .enumerate()
                .map(|(i, c)| (NAMES[i], *c, 1))
                .collect()
        };
        let slots = |t: Vec<u16>| -> std::collections::BTreeSet<u16> { t.into_iter().collect() };
        let (mut b1, mut b2) = (c(3, 1), c(4, 1));
        b1.backup = true;
        b2.backup = true;
        let all = named(&[c(1, 1), c(2, 1), b1, b2]);
        assert_eq!(slots(maglev(&all, false, 251)), [1, 2].into());
        let mut down = all.clone();
        down[0].1.usable = false;
        down[1].1.weight = 0; // drained by weight: takes no new flows either
        assert_eq!(slots(maglev(&down, false, 251)), [3].into());
        assert_eq!(slots(maglev(&down, true, 251)), [3, 4].into());
        down[2].1.usable = false;
        down[3].1.usable = false;
        assert!(maglev(&down, true, 251).is_empty());
        // Drained by weight, then back: the same entries as before.
        let mut drained = all.clone();
        drained[1].1.weight = 0;
        assert_ne!(maglev(&drained, false, 251), maglev(&all, false, 251));
        assert!(!slots(maglev(&drained, false, 251)).contains(&2));
    }

    #[test]
    fn long_tables_are_scaled_keeping_proportions() {
        let cands: Vec<_> = (0..20)
            .map(|i| c(i, if i == 0 { 256 } else { 255 }))
            .collect();
        let t = build(&cands, false, 4096);
        assert!(t.len() <= 4096);
        let share0 = t.iter().filter(|&&id| id == 0).count();
        let share1 = t.iter().filter(|&&id| id == 1).count();
        assert!(share0.abs_diff(share1) <= 1, "{share0} vs {share1}");
        // As many servers as slots: everyone still gets one.
        let mut many: Vec<_> = (0..4096).map(|i| c(i, 1)).collect();
        many[0].weight = 256;
        assert_eq!(build(&many, false, 4096).len(), 4096);
    }
}
