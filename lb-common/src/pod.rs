//! Lets the daemon put these types in aya maps.
use crate::{
    Counters, Flow, FlowEvent, FlowKey, NextHop, PoolInfo, ServerInfo, ServerMeta, ServiceKey,
    ServiceValue, Settings, Timeouts,
};

// SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers and have explicit
// padding fields, so every bit pattern is valid and no byte is uninitialised.
unsafe impl aya::Pod for ServiceKey {}
unsafe impl aya::Pod for crate::ServiceKey6 {}
unsafe impl aya::Pod for crate::AccessKey6 {}
unsafe impl aya::Pod for crate::ServerInfo6 {}
unsafe impl aya::Pod for crate::FlowKey6 {}
unsafe impl aya::Pod for crate::Flow6 {}
unsafe impl aya::Pod for crate::FlowEvent6 {}
unsafe impl aya::Pod for crate::AccessKey {}
unsafe impl aya::Pod for ServiceValue {}
unsafe impl aya::Pod for PoolInfo {}
unsafe impl aya::Pod for Timeouts {}
unsafe impl aya::Pod for ServerInfo {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Flow {}
unsafe impl aya::Pod for crate::Scratch {}
unsafe impl aya::Pod for crate::Scratch6 {}
unsafe impl aya::Pod for NextHop {}
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for Counters {}
unsafe impl aya::Pod for ServerMeta {}
unsafe impl aya::Pod for FlowEvent {}
unsafe impl aya::Pod for crate::bench::GenConfig {}
unsafe impl aya::Pod for crate::TraceRecord {}
unsafe impl aya::Pod for crate::CachedFlow {}
