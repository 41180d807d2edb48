//! Active flows per server (`LB_ACTIVE`, read by `leastconn`, `first`, `random` and
//! `maxconn`), kept true.
//!
//! The data plane moves the counts itself, so they follow new flows at once: one more when a
//! flow is confirmed, one less when it closes (`lb_common::conntrack::active_delta`). What it
//! cannot see is a flow that ends without a packet saying so: the LRU evicting its entries
//! silently, an idle flow expiring (expiry is lazy), a client reusing a half-closed tuple, or
//! two CPUs racing on one flow's step. So the daemon recounts: every second (or four times
//! the scan's own duration, whichever is longer, so a huge table never takes more than a
//! fifth of a core) it scans both flow tables, counts the live flows in the counted states
//! exactly as the data plane judges them, and writes the counts that differ. Between two
//! recounts a count is off by at most the flows that ended silently meanwhile, plus those
//! that opened or closed during the scan itself; errors never add up.
//!
//! Only configurations that read the counts pay for the scans ([`needed`]).
use std::time::{Duration, Instant};

use anyhow::Result;
use lb_common::ACTIVE_TOTAL;
use tokio::sync::watch;

use crate::{
    config::{Balance, Config},
    dataplane::{Maps, clock},
};

/// The shortest time between two recounts.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Whether the configuration reads active flows.
pub fn needed(c: &Config) -> bool {
    c.global.maxconn.is_some_and(|m| m > 0)
        || c.backends.iter().any(|b| {
            !matches!(b.balance, Balance::RoundRobin | Balance::StaticRr)
                || b.servers.iter().any(|s| s.maxconn.is_some_and(|m| m > 0))
        })
}

/// One recount: scans the tables and corrects the counts that differ. Returns how many
/// slots were corrected.
pub fn correct(maps: &mut Maps) -> Result<usize> {
    let counted = maps.active_flows(clock::now());
    let mut fixed = 0;
    for (slot, &n) in (0..=ACTIVE_TOTAL).zip(&counted) {
        // The raw value: one below zero (wrapped) must be corrected too.
        if maps.active.get(&slot, 0)? != n {
            maps.active.set(slot, n, 0)?;
            fixed += 1;
        }
    }
    Ok(fixed)
}

/// Recounts for as long as the daemon runs, while `wanted` says the configuration needs it.
pub async fn run(mut maps: Maps, mut wanted: watch::Receiver<bool>) {
    loop {
        if !*wanted.borrow_and_update() {
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let r = correct(&mut maps);
            (maps, r)
        })
        .await;
        let Ok((back, r)) = done else {
            return;
        };
        maps = back;
        if let Err(e) = r {
            eprintln!("[WARNING] recounting active flows: {e:#}");
        }
        tokio::time::sleep(PERIOD.max(started.elapsed() * 4)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::native;

    fn cfg(extra_global: &str, backend: &str) -> Config {
        native::parse(
            "t.toml",
            &format!(
                "[global]\n{extra_global}\n[frontend.f]\nbind = [\"10.0.0.1:80\"]\ndefault_backend = \"b\"\n[backend.b]\n{backend}\n"
            ),
        )
        .expect("parses")
    }

    #[test]
    fn only_configurations_that_read_counts_pay_for_scans() {
        let s = r#"server = [{ name = "s", address = "10.0.1.1:80" }]"#;
        assert!(!needed(&cfg("", s)));
        assert!(!needed(&cfg("", &format!("balance = \"static-rr\"\n{s}"))));
        assert!(needed(&cfg("", &format!("balance = \"leastconn\"\n{s}"))));
        assert!(needed(&cfg("", &format!("balance = \"random(3)\"\n{s}"))));
        assert!(needed(&cfg("maxconn = 100", s)));
        assert!(needed(&cfg(
            "",
            r#"server = [{ name = "s", address = "10.0.1.1:80", maxconn = 5 }]"#
        )));
    }
}
