//! Typed handles on every map, opened either from a freshly loaded object or from the pins of
//! a running instance (`lb show` works without the daemon).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapInfo, MapType, PerCpuArray},
};
use lb_common::{ports::PORT_FILTER_WORDS, *};

/// Pins live under `/sys/fs/bpf/lb/<instance>/<MAP_NAME>`.
pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/lb").join(instance)
}

/// See [`Maps::open_flows`].
pub struct OpenFlows {
    pub per_server: Vec<u64>,
    pub per_frontend: Vec<u64>,
    pub total: u64,
}

pub struct Maps {
    pub services: HashMap<MapData, ServiceKey, ServiceValue>,
    pub pools: Array<MapData, PoolInfo>,
    pub pool_rr: Array<MapData, u64>,
    pub tables: Array<MapData, u32>,
    pub servers: Array<MapData, ServerInfo>,
    pub snat_cursor: Array<MapData, u64>,
    pub meta: Array<MapData, ServerMeta>,
    pub flows: HashMap<MapData, FlowKey, Flow>,
    pub settings: Array<MapData, Settings>,
    pub server_stats: PerCpuArray<MapData, Counters>,
    pub frontend_stats: PerCpuArray<MapData, Counters>,
    pub reason_stats: PerCpuArray<MapData, u64>,
    pub ports: Array<MapData, u64>,
}

/// `LB_FLOWS` holds both directions of every flow.
pub fn flow_entries(conntrack_entries: u32) -> u32 {
    conntrack_entries.saturating_mul(2)
}

/// What a map must look like for this build: type, key size, value size, max entries.
pub fn expected(name: &str, conntrack_entries: u32) -> Option<(MapType, u32, u32, u32)> {
    fn size<T>() -> u32 {
        std::mem::size_of::<T>() as u32
    }
    Some(match name {
        MAP_SERVICES => (
            MapType::Hash,
            size::<ServiceKey>(),
            size::<ServiceValue>(),
            MAX_SERVICES,
        ),
        MAP_POOLS => (MapType::Array, 4, size::<PoolInfo>(), MAX_POOLS),
        MAP_POOL_RR => (MapType::Array, 4, 8, MAX_POOLS),
        MAP_TABLES => (MapType::Array, 4, 4, MAX_POOLS * 2 * TABLE_SIZE),
        MAP_SERVERS => (MapType::Array, 4, size::<ServerInfo>(), MAX_SERVERS),
        MAP_SNAT_CURSOR => (MapType::Array, 4, 8, MAX_SERVERS),
        MAP_SERVER_META => (MapType::Array, 4, size::<ServerMeta>(), MAX_SERVERS),
        MAP_FLOWS => (
            MapType::LruHash,
            size::<FlowKey>(),
            size::<Flow>(),
            flow_entries(conntrack_entries),
        ),
        MAP_SETTINGS => (MapType::Array, 4, size::<Settings>(), 1),
        MAP_SERVER_STATS => (MapType::PerCpuArray, 4, size::<Counters>(), MAX_SERVERS),
        MAP_FRONTEND_STATS => (MapType::PerCpuArray, 4, size::<Counters>(), MAX_FRONTENDS),
        MAP_REASON_STATS => (MapType::PerCpuArray, 4, 8, Reason::COUNT),
        MAP_PORTS => (MapType::Array, 4, 8, PORT_FILTER_WORDS),
        _ => return None,
    })
}

/// Removes pins that this build cannot reuse (another layout or size), so the loader creates
/// them afresh. Returns a line per removed pin, for the log.
pub fn drop_incompatible_pins(dir: &Path, conntrack_entries: u32) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for name in PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Some(want) = expected(name, conntrack_entries) else {
            continue;
        };
        let have = MapInfo::from_pin(&path).ok().and_then(|i| {
            Some((
                i.map_type().ok()?,
                i.key_size(),
                i.value_size(),
                i.max_entries(),
            ))
        });
        if have != Some(want) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            dropped.push(format!(
                "pinned map {name} does not match this build ({have:?} != {want:?}): recreated, its entries are lost"
            ));
        }
    }
    Ok(dropped)
}

fn typed<T>(map: Map, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Maps> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("the XDP object has no map {name}"))
        };
        Ok(Maps {
            services: typed(take(MAP_SERVICES)?, MAP_SERVICES)?,
            pools: typed(take(MAP_POOLS)?, MAP_POOLS)?,
            pool_rr: typed(take(MAP_POOL_RR)?, MAP_POOL_RR)?,
            tables: typed(take(MAP_TABLES)?, MAP_TABLES)?,
            servers: typed(take(MAP_SERVERS)?, MAP_SERVERS)?,
            snat_cursor: typed(take(MAP_SNAT_CURSOR)?, MAP_SNAT_CURSOR)?,
            meta: typed(take(MAP_SERVER_META)?, MAP_SERVER_META)?,
            flows: typed(take(MAP_FLOWS)?, MAP_FLOWS)?,
            settings: typed(take(MAP_SETTINGS)?, MAP_SETTINGS)?,
            server_stats: typed(take(MAP_SERVER_STATS)?, MAP_SERVER_STATS)?,
            frontend_stats: typed(take(MAP_FRONTEND_STATS)?, MAP_FRONTEND_STATS)?,
            reason_stats: typed(take(MAP_REASON_STATS)?, MAP_REASON_STATS)?,
            ports: typed(take(MAP_PORTS)?, MAP_PORTS)?,
        })
    }

    /// Opens the pinned maps of an instance.
    pub fn from_pins(dir: &Path) -> Result<Maps> {
        if !dir.exists() {
            bail!(
                "no pinned maps at {} (is an lb instance running or was one run with this instance name?)",
                dir.display()
            );
        }
        let open = |name: &str| -> Result<Map> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))?;
            Map::from_map_data(data).with_context(|| format!("pinned map {}", path.display()))
        };
        Ok(Maps {
            services: typed(open(MAP_SERVICES)?, MAP_SERVICES)?,
            pools: typed(open(MAP_POOLS)?, MAP_POOLS)?,
            pool_rr: typed(open(MAP_POOL_RR)?, MAP_POOL_RR)?,
            tables: typed(open(MAP_TABLES)?, MAP_TABLES)?,
            servers: typed(open(MAP_SERVERS)?, MAP_SERVERS)?,
            snat_cursor: typed(open(MAP_SNAT_CURSOR)?, MAP_SNAT_CURSOR)?,
            meta: typed(open(MAP_SERVER_META)?, MAP_SERVER_META)?,
            flows: typed(open(MAP_FLOWS)?, MAP_FLOWS)?,
            settings: typed(open(MAP_SETTINGS)?, MAP_SETTINGS)?,
            server_stats: typed(open(MAP_SERVER_STATS)?, MAP_SERVER_STATS)?,
            frontend_stats: typed(open(MAP_FRONTEND_STATS)?, MAP_FRONTEND_STATS)?,
            reason_stats: typed(open(MAP_REASON_STATS)?, MAP_REASON_STATS)?,
            ports: typed(open(MAP_PORTS)?, MAP_PORTS)?,
        })
    }

    /// Sum over CPUs of a server's counters.
    pub fn server_counters(&self, id: u32) -> Result<Counters> {
        let per_cpu = self.server_stats.get(&id, 0)?;
        Ok(per_cpu.iter().fold(Counters::default(), |a, c| a.plus(*c)))
    }

    pub fn frontend_counters(&self, id: u32) -> Result<Counters> {
        let per_cpu = self.frontend_stats.get(&id, 0)?;
        Ok(per_cpu.iter().fold(Counters::default(), |a, c| a.plus(*c)))
    }

    /// Every reason counter, summed over CPUs.
    pub fn reasons(&self) -> Result<Vec<(Reason, u64)>> {
        Reason::ALL
            .iter()
            .map(|&r| {
                let per_cpu = self.reason_stats.get(&(r as u32), 0)?;
                Ok((r, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Open flows per server id and per frontend id, and in all (a full scan; for `show`
    /// and the runtime API, not the fast path). Flows seen closing (FIN/RST) stay in the
    /// table until reused or evicted; they are not counted.
    pub fn open_flows(&self, frontends: usize) -> OpenFlows {
        let mut out = OpenFlows {
            per_server: vec![0; MAX_SERVERS as usize],
            per_frontend: vec![0; frontends],
            total: 0,
        };
        for (_, f) in self.flows.iter().flatten() {
            if f.is_reply() || f.flags & FLOW_F_CLOSING != 0 {
                continue;
            }
            out.total += 1;
            if let Some(n) = out.per_server.get_mut(usize::from(f.server)) {
                *n += 1;
            }
            if let Some(n) = out.per_frontend.get_mut(usize::from(f.frontend)) {
                *n += 1;
            }
        }
        out
    }

    /// Number of tracked flows (forward entries).
    pub fn flow_count(&self) -> u64 {
        self.flows
            .iter()
            .flatten()
            .filter(|(_, f)| !f.is_reply())
            .count() as u64
    }
}
