//! Instance-wide settings (`LB_SETTINGS[0]`) and the new-flow events of `option tcplog`.

/// Global settings, read on the new-flow path only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Full-NAT source ports are taken from `snat_port_min..=snat_port_max` (host order).
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// `SETTINGS_F_*`.
    pub flags: u32,
    /// Non-zero: the daemon stopped (SIGTERM) and from this clock tick on no new flow is
    /// balanced (established ones go on), unless a new daemon takes over before and clears
    /// it. This is what makes `systemctl restart` seamless and `systemctl stop` a stop.
    pub stop_at: u32,
    /// The global `maxconn`: at most this many active flows in the instance (`LB_ACTIVE`'s
    /// last slot); 0: no limit.
    pub maxconn: u32,
}

/// Some frontend has `option tcplog`: report new flows in `LB_EVENTS`. Off, it costs one
/// branch on a value already loaded.
pub const SETTINGS_F_LOG_FLOWS: u32 = 1 << 1;

/// The flow was moved away from a server that refused it (`option redispatch`).
pub const EVENT_F_REDISPATCHED: u8 = 1 << 0;

/// `LB_EVENTS` record of an IPv6 flow: [`FlowEvent`] with IPv6 addresses. The record's size
/// tells the reader which of the two it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent6 {
    /// Network byte order.
    pub client: crate::Addr6,
    pub vip: crate::Addr6,
    pub client_port: u16,
    pub vip_port: u16,
    pub server: u16,
    pub frontend: u16,
    pub proto: u8,
    /// `EVENT_F_*`.
    pub flags: u8,
    pub _pad: u16,
}

/// `LB_EVENTS` record: a new flow and where it went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// Network byte order.
    pub client: u32,
    pub vip: u32,
    pub client_port: u16,
    pub vip_port: u16,
    pub server: u16,
    pub frontend: u16,
    pub proto: u8,
    /// `EVENT_F_*`.
    pub flags: u8,
    pub _pad: u16,
}
