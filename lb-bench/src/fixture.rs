//! The fixed-point service the BPF_PROG_TEST_RUN sections share: BPF_PROG_TEST_RUN runs the
//! program `repeat` times on one buffer, so the rewrite must map a frame onto a frame that
//! takes the same path. A full-NAT service VIP:80 whose servers *are* VIP:80, with the client
//! as their full-NAT source, does that (see `cost` for each case).
use std::net::Ipv4Addr;

use anyhow::Result;
use lb::dataplane::{
    Dataplane, clock,
    ids::{PoolSlot, ServerSlot},
};
use lb_common::{
    FLOW_F_REPLY, FlowOf, NextHop, PROTO_TCP, PortFilter, PortSide, ServerInfo, ServiceKey,
    ServiceValue, Settings, State, Timeouts, clock::ticks_from_ms, conntrack::TimeoutsMs,
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const SNAT_MIN: u16 = 10000;
pub const SNAT_MAX: u16 = 32767;

/// An address as the maps hold it (network byte order).
pub fn be(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// Installs the service with `backends` servers, all VIP:80 with full-NAT source `snat`.
pub fn install(dp: &mut Dataplane, backends: u32, snat: Ipv4Addr) -> Result<()> {
    dp.maps.write_settings(Settings {
        snat_port_min: SNAT_MIN,
        snat_port_max: SNAT_MAX,
        flags: 0,
        stop_at: 0,
        maxconn: 0,
    })?;
    let mut ports = PortFilter::default();
    ports.add(PortSide::Service, 80);
    ports.add(PortSide::Server, 80);
    dp.maps.write_port_filter(&ports)?;
    dp.maps.sync_services(&[(
        ServiceKey {
            addr: be(VIP),
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            _pad: 0,
        },
        ServiceValue {
            pool: 0,
            frontend: 0,
        },
    )])?;
    for slot in (0..backends).map(ServerSlot) {
        dp.maps.write_server(
            slot,
            ServerInfo {
                addr: be(VIP),
                snat_addr: be(snat),
                port: 80u16.to_be(),
                _pad: 0,
                pool: 0,
                maxconn: 0,
                _pad2: 0,
                nh: NextHop::default(),
            },
        )?;
    }
    let table: Vec<u32> = (0..backends).collect();
    dp.publish(
        PoolSlot(0),
        0,
        Timeouts::from_ms(TimeoutsMs::default()),
        lb::dataplane::writer::Table::Entries(&table),
    )
}

/// An established flow's entry rewriting to `src:sport -> dst:dport` (network order), as the
/// data plane leaves it after a handshake: fresh, with an hour of idle time to go. Either
/// family: `A` is the address as the maps hold it (`u32`, or `Addr6` for IPv6).
pub fn established<A: Default>(
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
    reply: bool,
    server: u16,
) -> FlowOf<A> {
    FlowOf {
        src,
        dst,
        sport,
        dport,
        state: State::Established as u8,
        flags: if reply { FLOW_F_REPLY } else { 0 },
        server,
        last_seen: clock::now(),
        timeout: ticks_from_ms(3_600_000),
        nh: NextHop::default(),
        ..FlowOf::default()
    }
}
