//! Typed handles on every map, expanded from the one table in `lb_common::maps`, opened either
//! from a freshly loaded object or from the pins of a running instance (`lb show` works
//! without the daemon); and what a daemon does with pins this build cannot read.
use std::path::{Path, PathBuf};

use super::ids::ServerSlot;
use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{
        Array, HashMap, LpmTrie, Map, MapData, MapInfo, MapType, PerCpuArray, ProgramArray, RingBuf,
    },
};
use lb_common::{
    ACTIVE_TOTAL, Counters, FLOW_F_DSR, Flow, Flow6, FlowKey, FlowKey6, FlowKeyOf, FlowOf, Keep,
    MAPS, MAX_SERVERS, MapDef, MapKind, Reason, State,
    balance::active_flows,
    clock::elapsed,
    conntrack::{self, counts_as_active},
    flow_cache::flow_cache_entries,
    map_def, names,
};

/// Pins live under `/sys/fs/bpf/lb/<instance>/`.
pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/lb").join(instance)
}

/// A map's pin is named after the map and its layout version (`LB_FLOWS_v2`), so a build
/// never adopts a map it would misread. (bpffs reserves dots in names.)
pub fn pin_name(def: &MapDef) -> String {
    format!("{}_v{}", def.name, def.version)
}

/// The pin of the map called `name` under `dir`.
pub fn pin_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let def = map_def(name).ok_or_else(|| anyhow!("no map named {name}"))?;
    Ok(dir.join(pin_name(def)))
}

/// The aya handle type of a row of the table.
macro_rules! user_map_type {
    (Hash, $k:ty, $v:ty) => { HashMap<MapData, $k, $v> };
    (LruHash, $k:ty, $v:ty) => { HashMap<MapData, $k, $v> };
    (Array, $k:ty, $v:ty) => { Array<MapData, $v> };
    (PerCpuArray, $k:ty, $v:ty) => { PerCpuArray<MapData, $v> };
    (RingBuf, $k:ty, $v:ty) => { RingBuf<MapData> };
    (LpmTrie, $k:ty, $v:ty) => { LpmTrie<MapData, $k, $v> };
    (ProgArray, $k:ty, $v:ty) => { ProgramArray<MapData> };
}

/// Private (unpinned) maps exist only in the process that loaded the object.
macro_rules! field_type {
    (Private, $kind:ident, $k:ty, $v:ty) => { Option<user_map_type!($kind, $k, $v)> };
    ($keep:ident, $kind:ident, $k:ty, $v:ty) => { user_map_type!($kind, $k, $v) };
}

macro_rules! open_field {
    (Private, $map:expr, $name:expr) => {
        $map.map(|m| typed(m, $name)).transpose()?
    };
    ($keep:ident, $map:expr, $name:expr) => {
        typed(
            $map.ok_or_else(|| anyhow!("the XDP object has no map {}", $name))?,
            $name,
        )?
    };
}

macro_rules! user_maps {
    ($( $(#[$doc:meta])* $field:ident $name:ident : $kind:ident < $k:ty, $v:ty >
        [$max:expr] $keep:ident $ver:literal; )*) => {
        /// Every map of the object, typed.
        pub struct Maps {
            $( $(#[$doc])* pub $field: field_type!($keep, $kind, $k, $v), )*
        }

        impl Maps {
            /// Builds the handles from `get`, which gives each map (or `None`).
            fn open(mut get: impl FnMut(&'static MapDef) -> Result<Option<Map>>) -> Result<Maps> {
                Ok(Maps {
                    $( $field: open_field!($keep, get(def(names::$name))?, names::$name), )*
                })
            }
        }
    };
}
lb_common::for_each_map!(user_maps);

fn def(name: &str) -> &'static MapDef {
    // The table and `names` come from the same macro expansion.
    map_def(name).unwrap_or(&MAPS[0])
}

fn typed<T>(map: Map, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// See [`Maps::open_flows`].
pub struct OpenFlows {
    pub per_server: Vec<u64>,
    pub per_frontend: Vec<u64>,
    pub total: u64,
}

/// The conntrack tables' sizes, in entries (two per flow), and the flow cache's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    pub flows: u32,
    pub halfopen: u32,
    /// The IPv6 tables: [`UNUSED_TABLE`] while no service is IPv6, so an IPv4-only instance
    /// pays no memory for them (LRU tables are preallocated).
    pub flows6: u32,
    pub halfopen6: u32,
    /// `LB_FLOW_CACHE`: a region per CPU number ([`possible_cpus`], at most
    /// `lb_common::flow_cache::FLOW_CACHE_MAX_CPUS`).
    pub flow_cache: u32,
}

/// How many CPU numbers the kernel may run the program on (the highest possible CPU + 1, as
/// the kernel sizes its per-CPU state: the possible set may have holes), which `LB_FLOW_CACHE`
/// has a region for each of; one if unknown (then only CPU 0 has a flow cache: the others'
/// lookups find no slot and take the whole path).
pub fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| cpu_ids_end(&s))
        .unwrap_or(1)
}

/// The highest CPU number + 1 in a kernel CPU list (`0-3,8-11`), `None` if it is not one.
fn cpu_ids_end(list: &str) -> Option<u32> {
    list.trim()
        .split(',')
        .map(|range| {
            let last = range.rsplit('-').next()?;
            last.parse::<u32>().ok()?.checked_add(1)
        })
        .try_fold(0, |end, r| Some(end.max(r?)))
        .filter(|&end| end > 0)
}

/// Entries of a conntrack table no service uses.
pub const UNUSED_TABLE: u32 = 2;

impl TableSizes {
    /// From capacities in flows, for IPv4 services only.
    pub fn for_flows(flows: u32, halfopen: u32) -> TableSizes {
        TableSizes {
            flows: flows.saturating_mul(2),
            halfopen: halfopen.saturating_mul(2),
            flows6: UNUSED_TABLE,
            halfopen6: UNUSED_TABLE,
            flow_cache: flow_cache_entries(possible_cpus()),
        }
    }

    /// A map's entries in this build, as loaded with these sizes.
    pub fn max_entries(&self, def: &MapDef) -> u32 {
        match def.name {
            names::LB_FLOWS => self.flows,
            names::LB_HALFOPEN => self.halfopen,
            names::LB6_FLOWS => self.flows6,
            names::LB6_HALFOPEN => self.halfopen6,
            names::LB_FLOW_CACHE => self.flow_cache,
            _ => def.max_entries,
        }
    }
}

fn map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::LruHash => MapType::LruHash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::RingBuf => MapType::RingBuf,
        MapKind::LpmTrie => MapType::LpmTrie,
        MapKind::ProgArray => MapType::ProgramArray,
    }
}

/// What a pinned map is worth losing, in words.
fn loss(keep: Keep) -> &'static str {
    match keep {
        Keep::State => "its live state (established connections, server slots) would be lost",
        Keep::Counters => "its counters restart from zero",
        Keep::Config | Keep::Private => "it is rebuilt from the configuration",
    }
}

/// Prepares the pin directory for this build: pins it can adopt stay; pins it cannot (another
/// layout, another size, another layout version, or an older lb's unversioned names) are
/// removed when losing them is harmless (config maps, with a note for counters), and refused
/// for maps holding live state unless `discard_state`, with a message saying what would be
/// lost. Returns notes for the log.
pub fn prepare_pins(dir: &Path, sizes: TableSizes, discard_state: bool) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    let mut drop = |path: &Path, what: String, keep: Keep| -> Result<()> {
        if keep == Keep::State && !discard_state {
            refused.push(what);
            return Ok(());
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        if keep != Keep::Config {
            notes.push(format!("{what}: removed, {}", loss(keep)));
        }
        Ok(())
    };
    for def in MAPS.iter().filter(|d| d.keep != Keep::Private) {
        let path = dir.join(pin_name(def));
        if !path.exists() {
            continue;
        }
        let want = (
            map_type(def.kind),
            def.key_size,
            def.value_size,
            sizes.max_entries(def),
        );
        let have = MapInfo::from_pin(&path).ok().and_then(|i| {
            Some((
                i.map_type().ok()?,
                i.key_size(),
                i.value_size(),
                i.max_entries(),
            ))
        });
        if have != Some(want) {
            let what = format!(
                "pinned map {} does not match this build ({}; this build: {} entries of {}+{} bytes)",
                pin_name(def),
                have.map_or("unreadable".to_string(), |h| format!(
                    "{} entries of {}+{} bytes",
                    h.3, h.1, h.2
                )),
                want.3,
                want.1,
                want.2
            );
            drop(&path, what, def.keep)?;
        }
    }
    // Pins of other layout versions (or an older lb's unversioned names).
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(def) = stale_version_of(&file) else {
            continue;
        };
        let what = format!(
            "pinned map {file} is from another build of lb (this build uses {})",
            pin_name(def)
        );
        drop(&entry.path(), what, def.keep)?;
    }
    if !refused.is_empty() {
        bail!(
            "{}: {}.\nStart with --discard-state to accept that loss, or run the build that made these pins.",
            refused.join("; "),
            loss(Keep::State)
        );
    }
    Ok(notes)
}

/// The map a pin file of another layout version belongs to: `LB_FLOWS` or `LB_FLOWS_v1` when
/// this build pins `LB_FLOWS_v2`.
fn stale_version_of(file: &str) -> Option<&'static MapDef> {
    MAPS.iter().find(|d| {
        d.keep != Keep::Private
            && file != pin_name(d)
            && (file == d.name
                || file
                    .strip_prefix(d.name)
                    .and_then(|rest| rest.strip_prefix("_v"))
                    .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
    })
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Maps> {
        Maps::open(|d| Ok(ebpf.take_map(d.name)))
    }

    /// Opens the pinned maps of an instance (private maps are absent).
    pub fn from_pins(dir: &Path) -> Result<Maps> {
        if !dir.exists() {
            bail!(
                "no pinned maps at {} (is an lb instance running or was one run with this instance name?)",
                dir.display()
            );
        }
        Maps::open(|d| {
            if d.keep == Keep::Private {
                return Ok(None);
            }
            let path = dir.join(pin_name(d));
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))?;
            Map::from_map_data(data)
                .map(Some)
                .with_context(|| format!("pinned map {}", path.display()))
        })
    }

    /// Sum over CPUs of a server's counters.
    pub fn server_counters(&self, slot: ServerSlot) -> Result<Counters> {
        let per_cpu = self.server_stats.get(&slot.0, 0)?;
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

    /// Every live forward entry (client -> VIP) of both IPv4 tables, as the data plane would
    /// judge them at `now` (clock ticks): expired ones are left out. A full scan, for `show`
    /// and the runtime API, not the fast path.
    pub fn live_flows(&self, now: u32) -> Vec<(FlowKey, Flow)> {
        let mut out = Vec::new();
        for table in [&self.flows, &self.halfopen] {
            live_in(table, now, &mut out);
        }
        out
    }

    /// [`Maps::live_flows`] of the IPv6 tables (`LB6_FLOWS`, `LB6_HALFOPEN`).
    pub fn live_flows6(&self, now: u32) -> Vec<(FlowKey6, Flow6)> {
        let mut out = Vec::new();
        for table in [&self.flows6, &self.halfopen6] {
            live_in(table, now, &mut out);
        }
        out
    }

    /// (server slot, frontend, state) of every live forward entry, both families: what the
    /// counts below need.
    fn live_flow_facts(&self, now: u32) -> Vec<(u16, u16, u8)> {
        let v4 = self
            .live_flows(now)
            .into_iter()
            .map(|(_, f)| (f.server, f.frontend, f.state));
        let v6 = self
            .live_flows6(now)
            .into_iter()
            .map(|(_, f)| (f.server, f.frontend, f.state));
        v4.chain(v6).collect()
    }

    /// Open flows per server slot and per frontend, and in all: live flows that are not
    /// closed.
    pub fn open_flows(&self, frontends: usize, now: u32) -> OpenFlows {
        let mut out = OpenFlows {
            per_server: vec![0; MAX_SERVERS as usize],
            per_frontend: vec![0; frontends],
            total: 0,
        };
        for (server, frontend, state) in self.live_flow_facts(now) {
            if state == State::Closed as u8 {
                continue;
            }
            out.total += 1;
            if let Some(n) = out.per_server.get_mut(usize::from(server)) {
                *n += 1;
            }
            if let Some(n) = out.per_frontend.get_mut(usize::from(frontend)) {
                *n += 1;
            }
        }
        out
    }

    /// Active flows per server slot, and in the last slot (`ACTIVE_TOTAL`) in all: live flows
    /// in the states `LB_ACTIVE` counts (`conntrack::counts_as_active`), as the data plane
    /// would judge them at `now`.
    pub fn active_flows(&self, now: u32) -> Vec<u64> {
        let mut out = vec![0; ACTIVE_TOTAL as usize + 1];
        for (server, _, state) in self.live_flow_facts(now) {
            if !State::from_u8(state).is_some_and(counts_as_active) {
                continue;
            }
            out[ACTIVE_TOTAL as usize] += 1;
            if let Some(n) = out
                .get_mut(usize::from(server))
                .filter(|_| u32::from(server) < ACTIVE_TOTAL)
            {
                *n += 1;
            }
        }
        out
    }

    /// `LB_ACTIVE` as the data plane reads it (a count below zero reads 0).
    pub fn active(&self, slot: u32) -> Result<u64> {
        Ok(active_flows(self.active.get(&slot, 0)?))
    }

    /// Number of tracked flows (live forward entries), both families.
    pub fn flow_count(&self, now: u32) -> u64 {
        self.live_flow_facts(now).len() as u64
    }
}

impl Maps {
    /// Ends the flows whose entries `pred` picks (both entries of each): the next packet of
    /// such a flow finds none, so the host answers it with an RST, from the VIP to the client
    /// and from the LB's address to the server (`shutdown sessions`, `on-marked-down
    /// shutdown-sessions`). Returns how many flows ended.
    pub fn forget_flows(&mut self, pred: impl Fn(&Flow) -> bool) -> Result<u64> {
        let (mut ended, mut keys) = (0, std::collections::HashSet::new());
        for table in [&mut self.flows, &mut self.halfopen] {
            ended += forget_in(table, |f| pred(f), &mut keys);
        }
        // Each CPU's copies of them too, or they would serve the flows a moment longer.
        self.forget_cached_copies(&keys)?;
        Ok(ended)
    }

    /// Drops every CPU's copies (`LB_FLOW_CACHE`) of the flow entries at `keys`: whoever
    /// changes or ends flows from outside the data plane does this after, as the data plane
    /// does when they change on its side (`lb_common::flow_cache`). Returns how many copies
    /// it dropped.
    pub fn forget_cached_copies<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a FlowKey>,
    ) -> Result<u64> {
        let mut dropped = 0;
        let cpus = self.flow_cache.len() >> lb_common::flow_cache::FLOW_CACHE_BITS;
        for key in keys {
            let slot = lb_common::flow_cache::flow_cache_slot(key);
            for cpu in 0..cpus {
                let index = lb_common::flow_cache::flow_cache_index(cpu, slot);
                let mut c = self
                    .flow_cache
                    .get(&index, 0)
                    .context("reading the flow cache")?;
                if c.key == *key {
                    c.key.proto = 0;
                    self.flow_cache
                        .set(index, c, 0)
                        .context("writing the flow cache")?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// [`Maps::forget_flows`] for IPv6 flows.
    pub fn forget_flows6(&mut self, pred: impl Fn(&Flow6) -> bool) -> Result<u64> {
        let (mut ended, mut keys) = (0, std::collections::HashSet::new());
        for table in [&mut self.flows6, &mut self.halfopen6] {
            ended += forget_in(table, |f| pred(f), &mut keys);
        }
        Ok(ended)
    }
}

/// A conntrack table of either family.
type FlowTable<A> = HashMap<MapData, FlowKeyOf<A>, FlowOf<A>>;

/// Appends the live forward entries of `table` to `out`.
fn live_in<A>(table: &FlowTable<A>, now: u32, out: &mut Vec<(FlowKeyOf<A>, FlowOf<A>)>)
where
    A: Copy + PartialEq,
    FlowKeyOf<A>: aya::Pod,
    FlowOf<A>: aya::Pod,
{
    for (k, f) in table.iter().flatten() {
        if f.is_reply() || dead(table, &k, &f, now) {
            continue;
        }
        out.push((k, f));
    }
}

/// Removes both entries of each flow of `table` that `pred` picks, adding their keys to
/// `keys`; how many flows ended.
fn forget_in<A>(
    table: &mut FlowTable<A>,
    pred: impl Fn(&FlowOf<A>) -> bool,
    keys: &mut std::collections::HashSet<FlowKeyOf<A>>,
) -> u64
where
    A: Copy + PartialEq + Eq + std::hash::Hash,
    FlowKeyOf<A>: aya::Pod,
    FlowOf<A>: aya::Pod,
{
    let mut ended = 0;
    let doomed: Vec<(FlowKeyOf<A>, Option<FlowKeyOf<A>>)> = table
        .iter()
        .flatten()
        .filter(|(_, f)| !f.is_reply() && pred(f))
        // A direct-server-return flow has one entry: its mirror tuple is not its own.
        .map(|(k, f)| {
            (
                k,
                (f.flags & FLOW_F_DSR == 0).then(|| f.mirror_key(k.proto)),
            )
        })
        .collect();
    for (fwd, reply) in doomed {
        keys.insert(fwd);
        // Gone meanwhile (expired, evicted): nothing to end.
        if let Some(reply) = reply {
            keys.insert(reply);
            let _ = table.remove(&reply);
        }
        if table.remove(&fwd).is_ok() {
            ended += 1;
        }
    }
    ended
}

/// An entry's expiry as the data plane decides it (`lb_common::conntrack::dead`).
pub fn dead<A>(table: &FlowTable<A>, k: &FlowKeyOf<A>, f: &FlowOf<A>, now: u32) -> bool
where
    A: Copy + PartialEq,
    FlowKeyOf<A>: aya::Pod,
    FlowOf<A>: aya::Pod,
{
    if !conntrack::idle_expired(f, now) {
        return false;
    }
    let mirror = table.get(&f.mirror_key(k.proto), 0).ok();
    conntrack::dead(f, k, mirror.as_ref(), now)
}

/// How long ago (ms) an entry last saw a packet, at `now` (ticks).
pub fn idle_ms<A>(f: &FlowOf<A>, now: u32) -> u64 {
    lb_common::clock::ms_from_ticks(elapsed(now, f.last_seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_cache_has_a_region_up_to_the_highest_possible_cpu() {
        assert_eq!(cpu_ids_end("0-1\n"), Some(2));
        assert_eq!(cpu_ids_end("0"), Some(1));
        assert_eq!(cpu_ids_end("0-3,8-11"), Some(12), "holes count");
        assert_eq!(cpu_ids_end("0,5"), Some(6));
        assert_eq!(cpu_ids_end(""), None);
        assert_eq!(cpu_ids_end("0-x"), None);
    }
}
