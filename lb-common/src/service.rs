//! Services: the VIP:port/protocol a frontend listens on (`bind`), and where it leads.

use crate::addr::Addr6;

/// `LB_SERVICES` (IPv4) and `LB6_SERVICES` (IPv6) key: a VIP, port and L4 protocol. Wildcard
/// binds (`*:80`, `:::80`) are written once per local address of their family by the daemon,
/// so the data plane only ever matches exact addresses and traffic the host merely routes is
/// never a service's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKeyOf<A> {
    /// Network byte order.
    pub addr: A,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

pub type ServiceKey = ServiceKeyOf<u32>;
pub type ServiceKey6 = ServiceKeyOf<Addr6>;

/// `LB_SERVICES` and `LB6_SERVICES` value. A pool slot serves one family: a backend that
/// IPv4 and IPv6 services lead to has a slot per family, each balancing over the servers of
/// its family (lb does not translate between families).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Pool slot: index into `LB_POOLS`, `LB_POOL_RR` and the pool's slots in `LB_TABLES`.
    pub pool: u32,
    /// Index into `LB_FRONTEND_STATS`.
    pub frontend: u32,
}
