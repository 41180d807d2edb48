//! The IPv6 side of the data-plane fixture (`dp_fixture`), shared by `tests/dataplane6.rs`
//! and `tests/trace.rs`: the IPv4 fixture's services and servers written again into the
//! `LB6_*` maps, as the daemon does for IPv6 binds and servers:
//!
//! ```text
//!  client fd00::2 (02:..:c2) ── dpc fd00::1 (VIP, 02:..:c1)  [ns]  dpb fd01::1 (02:..:b1) ── servers fd01::10 (02:..:0a)
//!                                                                                         fd01::11 (02:..:0b)
//!                                                                                         fd01::12 (no neighbour)
//! ```
#![allow(dead_code)] // each test file uses its own part

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

use lb::dataplane::{LoadOptions, layout::addr_be};
use lb_common::{Addr6, ServerInfo6, ServiceKey, ServiceKey6, addr6_from_octets};

use crate::dp_fixture::*;

pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const LB_B6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);
pub const WEB10_6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x10);
pub const WEB11_6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x11);
pub const WEB12_6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x12);
/// A router between lb and the servers, and one on the clients' side.
pub const ROUTER_B6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0xfe);
pub const ROUTER_C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
pub const MAC_ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

pub fn ep6(a: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(a, port, 0, 0)
}

pub fn a6(a: Ipv6Addr) -> Addr6 {
    addr6_from_octets(a.octets())
}

/// Each IPv4 server's IPv6 twin.
pub fn twin(a: Ipv4Addr) -> Option<Ipv6Addr> {
    match a.octets() {
        [10, 1, 0, 10] => Some(WEB10_6),
        [10, 1, 0, 11] => Some(WEB11_6),
        [10, 1, 0, 12] => Some(WEB12_6),
        _ => None,
    }
}

/// The IPv4 fixture, loaded with `opts` and the IPv6 program, with every service also at
/// `[fd00::1]` and every server also at its IPv6 twin (same slots, pools and frontends),
/// full-NAT from `fd01::1`.
pub fn with_ipv6(opts: LoadOptions) -> Fixture {
    with_ipv6_config(CONFIG, opts)
}

/// [`with_ipv6`] for another configuration of the same addresses.
pub fn with_ipv6_config(config: &str, opts: LoadOptions) -> Fixture {
    let f = Fixture::with(config, LoadOptions { ipv6: true, ..opts });
    for (ip, mac) in [
        (CLIENT6, MAC_CLIENT),
        (WEB10_6, MAC_WEB10),
        (WEB11_6, MAC_WEB11),
    ] {
        f.net.neighbour6(ip, mac).expect("neighbour");
    }
    let mut f = f;
    let maps = &mut f.bal.dp.maps;
    let services: Vec<(ServiceKey, lb_common::ServiceValue)> =
        maps.services.iter().map(|r| r.expect("service")).collect();
    for (k, v) in services {
        assert_eq!(k.addr, addr_be(VIP));
        let k6 = ServiceKey6 {
            addr: a6(VIP6),
            port: k.port,
            proto: k.proto,
            _pad: 0,
        };
        maps.services6.insert(k6, v, 0).expect("service6");
    }
    for slot in 0..8u32 {
        let Ok(s) = maps.servers.get(&slot, 0) else {
            continue;
        };
        let Some(addr) = twin(Ipv4Addr::from(u32::from_be(s.addr))) else {
            continue;
        };
        let s6 = ServerInfo6 {
            addr: a6(addr),
            snat_addr: a6(LB_B6),
            port: s.port,
            _pad: 0,
            pool: s.pool,
            maxconn: s.maxconn,
            _pad2: 0,
            nh: Default::default(),
        };
        maps.servers6.set(slot, s6, 0).expect("server6");
    }
    f
}
