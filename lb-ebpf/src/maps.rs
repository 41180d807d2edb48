//! Map definitions. Keys, values and names come from `lb-common`; sizes here are defaults the
//! daemon may override at load time (conntrack).
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use lb_common::{
    Counters, DEFAULT_CONNTRACK_ENTRIES as CT, Flow, FlowEvent, FlowKey, MAX_FRONTENDS, MAX_POOLS,
    MAX_SERVERS, MAX_SERVICES, PoolInfo, Reason, ServerInfo, ServerMeta, ServiceKey, ServiceValue,
    Settings, TABLE_SIZE, ports::PORT_FILTER_WORDS,
};

#[btf_map]
pub static LB_SERVICES: HashMap<ServiceKey, ServiceValue, { MAX_SERVICES as usize }> =
    HashMap::new();

#[btf_map]
pub static LB_POOLS: Array<PoolInfo, { MAX_POOLS as usize }> = Array::new();

/// Round-robin cursor per pool; only the data plane writes it (atomic add), so the daemon's
/// rewrites of `LB_POOLS` never reset it.
#[btf_map]
pub static LB_POOL_RR: Array<u64, { MAX_POOLS as usize }> = Array::new();

/// Two slots of `TABLE_SIZE` server ids per pool, see `lb_common::table_index`.
#[btf_map]
pub static LB_TABLES: Array<u32, { (MAX_POOLS * 2 * TABLE_SIZE) as usize }> = Array::new();

/// Full-NAT source-port cursor per server (`lb_common::flow::snat_port`).
#[btf_map]
pub static LB_SNAT_CURSOR: Array<u64, { MAX_SERVERS as usize }> = Array::new();

#[btf_map]
pub static LB_SERVERS: Array<ServerInfo, { MAX_SERVERS as usize }> = Array::new();

/// Both directions of every tracked flow (two entries per flow), see `lb_common::Flow`.
#[btf_map]
pub static LB_FLOWS: LruHashMap<FlowKey, Flow, { 2 * CT as usize }> = LruHashMap::new();

/// Ports a tracked packet can carry (`lb_common::ports`).
#[btf_map]
pub static LB_PORTS: Array<u64, { PORT_FILTER_WORDS as usize }> = Array::new();

#[btf_map]
pub static LB_SETTINGS: Array<Settings, 1> = Array::new();

#[btf_map]
pub static LB_SERVER_STATS: PerCpuArray<Counters, { MAX_SERVERS as usize }> = PerCpuArray::new();

#[btf_map]
pub static LB_FRONTEND_STATS: PerCpuArray<Counters, { MAX_FRONTENDS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static LB_REASON_STATS: PerCpuArray<u64, { Reason::COUNT as usize }> = PerCpuArray::new();

/// Names and operator-facing state for `lb show`; never read by the program.
#[btf_map]
pub static LB_SERVER_META: Array<ServerMeta, { MAX_SERVERS as usize }> = Array::new();

/// New flows, when some frontend has `option tcplog` (see `SETTINGS_F_LOG_FLOWS`).
#[btf_map]
pub static LB_EVENTS: RingBuf<FlowEvent, { 256 * 1024 }> = RingBuf::new();
