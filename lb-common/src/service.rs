//! Services: the VIP:port/protocol a frontend listens on (`bind`), and where it leads.

/// `LB_SERVICES` key: a VIP, port and L4 protocol. Wildcard binds (`*:80`) are written once
/// per local address by the daemon, so the data plane only ever matches exact addresses and
/// traffic the host merely routes is never a service's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Network byte order.
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// `LB_SERVICES` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Pool slot: index into `LB_POOLS`, `LB_POOL_RR` and the pool's slots in `LB_TABLES`.
    pub pool: u32,
    /// Index into `LB_FRONTEND_STATS`.
    pub frontend: u32,
}
