//! The map definitions, expanded from the one table in `lb_common::maps`. Sizes are defaults
//! the daemon overrides at load time (the conntrack tables).
use aya_ebpf::btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf};

/// The aya-ebpf type of a row of the table.
macro_rules! map_type {
    (Hash, $k:ty, $v:ty, $n:expr) => { HashMap<$k, $v, { ($n) as usize }> };
    (LruHash, $k:ty, $v:ty, $n:expr) => { LruHashMap<$k, $v, { ($n) as usize }> };
    (Array, $k:ty, $v:ty, $n:expr) => { Array<$v, { ($n) as usize }> };
    (PerCpuArray, $k:ty, $v:ty, $n:expr) => { PerCpuArray<$v, { ($n) as usize }> };
    (RingBuf, $k:ty, $v:ty, $n:expr) => { RingBuf<$v, { ($n) as usize }> };
    (LpmTrie, $k:ty, $v:ty, $n:expr) => { LpmTrie<$k, $v, { ($n) as usize }> };
    (ProgArray, $k:ty, $v:ty, $n:expr) => { ProgramArray<{ ($n) as usize }> };
}

macro_rules! ebpf_maps {
    ($( $(#[$doc:meta])* $field:ident $name:ident : $kind:ident < $k:ty, $v:ty >
        [$max:expr] $keep:ident $ver:literal; )*) => {
        $(
            $(#[$doc])*
            #[unsafe(link_section = ".maps")]
            #[unsafe(no_mangle)]
            pub static $name: map_type!($kind, $k, $v, $max) =
                <map_type!($kind, $k, $v, $max)>::new();
        )*
    };
}

lb_common::for_each_map!(ebpf_maps);
