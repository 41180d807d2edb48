//! The map writer: everything the daemon changes in the data plane goes through here.
//!
//! Pool tables are double-buffered (see `lb_common::maps`): [`Publisher::publish`] fills the
//! idle slot and then flips the pool's descriptor with one write, so a packet never sees a
//! half-written table and, once `publish` returns, no new flow picks a server that is not in
//! the new table.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lb_common::{
    Counters, MAX_POOLS, MAX_SERVERS, PoolInfo, PortFilter, ServerInfo, ServerMeta, ServiceKey,
    ServiceValue, Settings, TABLE_SIZE, TableDesc, TableEntry, Timeouts,
    conntrack::TimeoutsMs,
    maglev::{MAGLEV_CAP, MAGLEV_NONE, MaglevTable},
    maglev_index, name_str, pool_ring, table_index,
};

use aya::{
    Pod,
    maps::{HashMap, LpmTrie, MapData, PerCpuValues, lpm_trie::Key as LpmKey},
};
use lb_common::{ServerInfo6, ServiceKey6};

use super::{
    access::{AccessEntry, AccessEntry6, AccessEntryOf},
    ids::{PoolSlot, ServerSlot},
    layout::Placed,
    maps::Maps,
};
use crate::config::Family;

/// Makes a hash map hold exactly `entries`: new and changed keys first, stale ones last.
fn sync_hash<K: Pod + PartialEq + std::fmt::Debug, V: Pod>(
    map: &mut HashMap<MapData, K, V>,
    entries: &[(K, V)],
) -> Result<()> {
    for (k, v) in entries {
        map.insert(k, v, 0)
            .with_context(|| format!("writing service {k:?}"))?;
    }
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !entries.iter().any(|(s, _)| s == k))
        .collect();
    for k in stale {
        map.remove(&k)
            .with_context(|| format!("removing service {k:?}"))?;
    }
    Ok(())
}

/// Makes an LPM trie hold exactly `entries`, new ones first and stale ones last.
fn sync_trie<A: Copy + PartialEq + std::fmt::Debug>(
    map: &mut LpmTrie<MapData, lb_common::AccessKeyOf<A>, u32>,
    entries: &[AccessEntryOf<A>],
) -> Result<()>
where
    lb_common::AccessKeyOf<A>: Pod,
{
    for e in entries {
        map.insert(&LpmKey::new(e.prefix, e.key), e.value, 0)
            .with_context(|| format!("writing access rule {e:?}"))?;
    }
    let stale: Vec<LpmKey<lb_common::AccessKeyOf<A>>> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| {
            !entries
                .iter()
                .any(|e| e.prefix == k.prefix_len() && e.key == k.data())
        })
        .collect();
    for k in stale {
        map.remove(&k)
            .with_context(|| format!("removing access rule {:?}", k.data()))?;
    }
    Ok(())
}

impl Maps {
    pub fn write_settings(&mut self, s: Settings) -> Result<()> {
        self.settings.set(0, s, 0).context("writing LB_SETTINGS")
    }

    /// Makes the services map hold exactly `services`: new and changed keys are written
    /// first, stale ones removed last, so a service that stays never disappears midway.
    pub fn sync_services(&mut self, services: &[(ServiceKey, ServiceValue)]) -> Result<()> {
        sync_hash(&mut self.services, services)
    }

    /// The same for `LB6_SERVICES`.
    pub fn sync_services6(&mut self, services: &[(ServiceKey6, ServiceValue)]) -> Result<()> {
        sync_hash(&mut self.services6, services)
    }

    /// Makes `LB_ACCESS` hold exactly `entries`, new ones first and stale ones last (a
    /// reload changing the rules mixes old and new prefixes for that moment only).
    pub fn sync_access(&mut self, entries: &[AccessEntry]) -> Result<()> {
        sync_trie(&mut self.access, entries)
    }

    /// The same for `LB6_ACCESS`.
    pub fn sync_access6(&mut self, entries: &[AccessEntry6]) -> Result<()> {
        sync_trie(&mut self.access6, entries)
    }

    /// The port filter as the data plane reads it.
    pub fn port_filter(&self) -> Result<PortFilter> {
        let mut f = PortFilter::default();
        for (i, w) in f.words.iter_mut().enumerate() {
            *w = self.ports.get(&(i as u32), 0).context("reading LB_PORTS")?;
        }
        Ok(f)
    }

    /// Writes the words of `LB_PORTS` that differ from `f`. Widen before adding services or
    /// servers and narrow after removing them (see `Balancer`), or the packets of a new
    /// port would be passed to the kernel meanwhile.
    pub fn write_port_filter(&mut self, f: &PortFilter) -> Result<()> {
        let cur = self.port_filter()?;
        for (i, (&w, &old)) in f.words.iter().zip(cur.words.iter()).enumerate() {
            if w != old {
                self.ports.set(i as u32, w, 0).context("writing LB_PORTS")?;
            }
        }
        Ok(())
    }

    pub fn write_server(&mut self, slot: ServerSlot, info: ServerInfo) -> Result<()> {
        self.servers
            .set(slot.0, info, 0)
            .with_context(|| format!("writing server slot {slot}"))
    }

    pub fn write_server6(&mut self, slot: ServerSlot, info: ServerInfo6) -> Result<()> {
        self.servers6
            .set(slot.0, info, 0)
            .with_context(|| format!("writing IPv6 server slot {slot}"))
    }

    pub fn write_meta(&mut self, slot: ServerSlot, meta: ServerMeta) -> Result<()> {
        self.meta
            .set(slot.0, meta, 0)
            .with_context(|| format!("writing server meta {slot}"))
    }

    /// Clears every server slot but `keep` (left over from a bigger config, a reload or an
    /// earlier run sharing the pins), and a kept slot's entry in the other family's map (a
    /// server whose address changed family). Their established flows carry their own
    /// rewrite and go on until they end, as a reloaded HAProxy's old process finishes its
    /// connections.
    pub fn clear_servers_except(&mut self, keep: &[(ServerSlot, Family)]) -> Result<()> {
        for slot in (0..MAX_SERVERS).map(ServerSlot) {
            let family = keep.iter().find(|(s, _)| *s == slot).map(|(_, f)| *f);
            if family != Some(Family::V4) && self.servers.get(&slot.0, 0)? != ServerInfo::default()
            {
                self.write_server(slot, ServerInfo::default())?;
            }
            if family != Some(Family::V6)
                && self.servers6.get(&slot.0, 0)? != ServerInfo6::default()
            {
                self.write_server6(slot, ServerInfo6::default())?;
            }
            if family.is_some() {
                continue;
            }
            if self.meta.get(&slot.0, 0)?.pid != 0 {
                self.write_meta(slot, ServerMeta::default())?;
            }
        }
        Ok(())
    }

    /// Disables every pool slot but `keep` (no table: their VIPs are gone from the services
    /// map). Their established flows keep default timeouts until they end.
    pub fn clear_pools_except(&mut self, keep: &[PoolSlot]) -> Result<()> {
        let unused = PoolInfo {
            timeouts: Timeouts::from_ms(TimeoutsMs::default()),
            ..PoolInfo::default()
        };
        for slot in (0..MAX_POOLS).map(PoolSlot) {
            if !keep.contains(&slot) && self.pools.get(&slot.0, 0)? != unused {
                self.pools.set(slot.0, unused, 0)?;
            }
        }
        Ok(())
    }

    /// Where the servers named in `LB_SERVER_META` live: what an earlier run (pins) or the
    /// running config placed.
    pub fn placed(&self) -> Result<Vec<Placed>> {
        let mut out = Vec::new();
        for slot in 0..MAX_SERVERS {
            let meta = self.meta.get(&slot, 0)?;
            if meta.pid == 0 || meta.backend[0] == 0 {
                continue;
            }
            // An IPv6 server's entry is in LB6_SERVERS; the other map's entry is cleared.
            let v6 = self.servers6.get(&slot, 0)?;
            let (family, pool) = if v6 != ServerInfo6::default() {
                (Family::V6, v6.pool)
            } else {
                (Family::V4, self.servers.get(&slot, 0)?.pool)
            };
            out.push(Placed {
                backend: name_str(&meta.backend).to_string(),
                server: name_str(&meta.server).to_string(),
                slot: ServerSlot(slot),
                pool_slot: PoolSlot(pool),
                family,
            });
        }
        Ok(out)
    }

    /// The rings of the hashing pools an earlier run placed (by backend name), so that a
    /// restart keeps each pool's tables where packets read them.
    pub fn placed_rings(&self, placed: &[Placed]) -> Result<Vec<(String, u32)>> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for p in placed {
            // As `Layout::rings` names them: an IPv6 pool's ring by its own key.
            let name = match p.family {
                Family::V4 => p.backend.clone(),
                Family::V6 => format!("{} ipv6", p.backend),
            };
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let flags = self.pools.get(&p.pool_slot.0, 0)?.flags;
            if lb_common::Algorithm::of_flags(flags) == lb_common::Algorithm::Maglev {
                out.push((name, pool_ring(flags)));
            }
        }
        Ok(out)
    }

    /// Zeroes the counters of server slots that now belong to another server.
    pub fn reset_server_counters(&mut self, slots: &[ServerSlot]) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for &slot in slots {
            let zero = PerCpuValues::try_from(vec![Counters::default(); cpus])?;
            self.server_stats
                .set(slot.0, zero, 0)
                .with_context(|| format!("resetting the counters of server {slot}"))?;
        }
        Ok(())
    }

    /// The live Maglev table of a hashing pool, as the data plane reads it (empty for an
    /// empty pool).
    pub fn live_maglev(&self, pool: PoolSlot) -> Result<Vec<ServerSlot>> {
        let info = self.pools.get(&pool.0, 0)?;
        let desc = TableDesc::unpack(info.table);
        let t: MaglevTable = self
            .maglev
            .get(&maglev_index(pool_ring(info.flags), desc.slot), 0)?;
        Ok(t[..desc.len as usize]
            .iter()
            .map(|&s| ServerSlot(u32::from(s)))
            .collect())
    }

    /// The live table of a pool, as the data plane reads it.
    pub fn live_table(&self, pool: PoolSlot) -> Result<Vec<TableEntry>> {
        let info = self.pools.get(&pool.0, 0)?;
        let desc = TableDesc::unpack(info.table);
        (0..desc.len)
            .map(|i| {
                let raw = self.tables.get(&table_index(pool.0, desc.slot, i), 0)?;
                Ok(TableEntry::unpack(raw))
            })
            .collect()
    }
}

/// Publishes pool tables, remembering when each pool last flipped.
pub struct Publisher {
    last_flip: Vec<Option<Instant>>,
}

/// A packet that read the old descriptor just before a flip finishes with the old slot in well
/// under a microsecond; waiting this long before overwriting that slot again is ample.
const SLOT_REUSE_GRACE: Duration = Duration::from_millis(5);

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            last_flip: vec![None; MAX_POOLS as usize],
        }
    }
}

/// A pool's table as published: packed `TableEntry`s, as `table::build` lays them out for
/// the pool's algorithm (round robin, leastconn, first, random), or a Maglev table of server
/// slots the data plane hashes flows into.
pub enum Table<'a> {
    Entries(&'a [u32]),
    Maglev(&'a [u16]),
}

impl Publisher {
    /// Installs `table`, `flags` and `timeouts` for `pool` (a Maglev table in the pool's
    /// ring, see `lb_common::pool_ring`).
    pub fn publish(
        &mut self,
        maps: &mut Maps,
        pool: PoolSlot,
        flags: u32,
        timeouts: Timeouts,
        table: Table,
    ) -> Result<()> {
        let (len, max) = match table {
            Table::Entries(t) => (t.len(), TABLE_SIZE as usize),
            Table::Maglev(t) => (t.len(), MAGLEV_CAP),
        };
        anyhow::ensure!(
            len <= max,
            "pool {pool}: table of {len} entries exceeds {max}"
        );
        let last = self
            .last_flip
            .get_mut(pool.index())
            .with_context(|| format!("pool slot {pool} out of range"))?;
        if let Some(at) = *last {
            let since = at.elapsed();
            if since < SLOT_REUSE_GRACE {
                std::thread::sleep(SLOT_REUSE_GRACE - since);
            }
        }
        let current = TableDesc::unpack(maps.pools.get(&pool.0, 0)?.table);
        let half = current.slot ^ 1;
        match table {
            Table::Entries(t) => {
                for (i, &entry) in t.iter().enumerate() {
                    maps.tables
                        .set(table_index(pool.0, half, i as u32), entry, 0)
                        .with_context(|| format!("writing table of pool {pool}"))?;
                }
            }
            Table::Maglev(t) => {
                // One value, one write: 65537 entries cost one system call.
                let mut whole = vec![MAGLEV_NONE; MAGLEV_CAP];
                whole[..t.len()].copy_from_slice(t);
                let whole: Box<MaglevTable> = whole
                    .into_boxed_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("Maglev table of the wrong length"))?;
                maps.maglev
                    .set(maglev_index(pool_ring(flags), half), whole.as_ref(), 0)
                    .with_context(|| format!("writing Maglev table of pool {pool}"))?;
            }
        }
        let info = PoolInfo {
            table: TableDesc {
                slot: half,
                len: len as u32,
            }
            .pack(),
            flags,
            timeouts,
        };
        maps.pools
            .set(pool.0, info, 0)
            .with_context(|| format!("publishing table of pool {pool}"))?;
        *last = Some(Instant::now());
        Ok(())
    }
}
