//! `lb show ...`: reads the pinned maps directly, so it works even when the daemon is stuck.
//! Addresses of either family print as `show stat`'s `addr` does: `[fd00::10]:80` for IPv6.
use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use lb_common::{
    FlowKeyOf, FlowOf, MAX_SERVERS, META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT,
    META_STATE_UNUSED, META_STATE_UP, PROTO_TCP, PROTO_UDP, ServerInfo, ServerInfo6, State,
    name_str,
};
use serde::Serialize;

use crate::{
    addr_text::{MapAddr, StatAddrPort},
    dataplane::{Maps, ids::ServerSlot, pin_dir},
};

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BackendRow {
    pub backend: String,
    pub server: String,
    /// Where the maps keep it (`id` in the JSON, as it always was).
    #[serde(rename = "id")]
    pub slot: ServerSlot,
    pub address: String,
    pub state: String,
    pub weight: u16,
    pub backup: bool,
    pub active_flows: u64,
    pub new_flows: u64,
    pub redispatched: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

pub fn state_name(s: u8) -> &'static str {
    match s {
        META_STATE_UP => "UP",
        META_STATE_DOWN => "DOWN",
        META_STATE_DRAIN => "DRAIN",
        META_STATE_MAINT => "MAINT",
        _ => "?",
    }
}

/// Where a server slot sends flows: a slot is one family's, and only that family's table
/// (`LB_SERVERS` or `LB6_SERVERS`) holds it; the other's entry stays zero.
pub fn server_endpoint(v4: &ServerInfo, v6: &ServerInfo6) -> SocketAddr {
    if v6.addr != [0; 4] || v6.port != 0 {
        v6.addr.with_port(v6.port)
    } else {
        v4.addr.with_port(v4.port)
    }
}

/// One row per server in the maps, in slot order.
pub fn backend_rows(maps: &Maps) -> Result<Vec<BackendRow>> {
    let flows = maps
        .open_flows(0, crate::dataplane::clock::now())
        .per_server;
    let mut rows = Vec::new();
    for slot in (0..MAX_SERVERS).map(ServerSlot) {
        let meta = maps.meta.get(&slot.0, 0)?;
        if meta.state == META_STATE_UNUSED {
            continue;
        }
        let info = maps.servers.get(&slot.0, 0)?;
        let info6 = maps.servers6.get(&slot.0, 0)?;
        let c = maps.server_counters(slot)?;
        rows.push(BackendRow {
            backend: name_str(&meta.backend).into(),
            server: name_str(&meta.server).into(),
            slot,
            address: StatAddrPort(server_endpoint(&info, &info6)).to_string(),
            state: state_name(meta.state).into(),
            weight: meta.weight,
            backup: meta.backup != 0,
            active_flows: flows.get(slot.index()).copied().unwrap_or(0),
            new_flows: c.new_flows,
            redispatched: c.redispatched,
            packets_in: c.packets_in,
            bytes_in: c.bytes_in,
            packets_out: c.packets_out,
            bytes_out: c.bytes_out,
        });
    }
    Ok(rows)
}

/// Renders rows as an aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied(), &mut out);
    for r in rows {
        line(&mut r.iter().map(String::as_str), &mut out);
    }
    out
}

/// The daemon that wrote the maps, when it is gone: what `lb show` prints are the last
/// values it left.
fn stale_note(maps: &Maps) -> Option<String> {
    let pid = (0..MAX_SERVERS)
        .filter_map(|slot| maps.meta.get(&slot, 0).ok())
        .find(|m| m.state != META_STATE_UNUSED)
        .map(|m| m.pid)?;
    let alive = pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists();
    (!alive).then(|| {
        format!(
            "[WARNING] the daemon that wrote these maps (pid {pid}) is not running: these are the values it left"
        )
    })
}

pub fn backends(instance: &str, json: bool) -> Result<()> {
    let maps = Maps::from_pins(&pin_dir(instance))?;
    if let Some(note) = stale_note(&maps) {
        eprintln!("{note}");
    }
    let rows = backend_rows(&maps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let header = [
        "BACKEND",
        "SERVER",
        "ADDRESS",
        "STATE",
        "WEIGHT",
        "FLOWS",
        "NEW",
        "REDISP",
        "PKTS_IN",
        "BYTES_IN",
        "PKTS_OUT",
        "BYTES_OUT",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.backend.clone(),
                if r.backup {
                    format!("{} (backup)", r.server)
                } else {
                    r.server.clone()
                },
                r.address.clone(),
                r.state.clone(),
                r.weight.to_string(),
                r.active_flows.to_string(),
                r.new_flows.to_string(),
                r.redispatched.to_string(),
                r.packets_in.to_string(),
                r.bytes_in.to_string(),
                r.packets_out.to_string(),
                r.bytes_out.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&header, &cells));
    Ok(())
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Packet fates (pass/drop/forward reasons), summed over CPUs.
    pub reasons: Vec<(String, u64)>,
    pub conntrack_entries: u64,
}

pub fn stats_of(maps: &Maps) -> Result<Stats> {
    Ok(Stats {
        reasons: maps
            .reasons()?
            .into_iter()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect(),
        conntrack_entries: maps.flow_count(crate::dataplane::clock::now()),
    })
}

pub fn stats(instance: &str, json: bool) -> Result<()> {
    let maps = Maps::from_pins(&pin_dir(instance))?;
    let s = stats_of(&maps)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = s
        .reasons
        .iter()
        .map(|(r, n)| vec![r.clone(), n.to_string()])
        .collect();
    rows.push(vec![
        "conntrack_entries".into(),
        s.conntrack_entries.to_string(),
    ]);
    print!("{}", table(&["COUNTER", "VALUE"], &rows));
    Ok(())
}

/// One tracked flow (its forward entry: client -> VIP, and where it is sent).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub proto: &'static str,
    /// The client's address alone (for `--client`).
    #[serde(skip)]
    pub client_ip: IpAddr,
    pub client: String,
    pub vip: String,
    pub backend: String,
    pub server: String,
    /// The server's address and port the flow is rewritten to.
    pub server_addr: String,
    /// The source the server sees (the LB's full-NAT address and port, or the client).
    pub source: String,
    /// `conntrack::State` by name (`established`, `fin-wait`...).
    pub state: &'static str,
    /// Milliseconds since the flow's last packet this way.
    pub idle_ms: u64,
}

/// Which flows `lb show flows` lists.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub backend: Option<String>,
    /// `server` or `backend/server`.
    pub server: Option<String>,
    pub client: Option<IpAddr>,
    pub limit: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    /// Flows that match, all of them counted.
    pub matching: u64,
    /// The first `limit` of them.
    pub flows: Vec<FlowRow>,
}

/// Scans the flow tables once each (bounded by their sizes; IPv4's, then IPv6's), keeping at
/// most `filter.limit` rows.
pub fn flow_rows(maps: &Maps, filter: &FlowFilter) -> Result<Flows> {
    let mut names = std::collections::HashMap::new();
    // Flows name their server by slot.
    let mut name_of = |slot: u16| -> (String, String) {
        names
            .entry(slot)
            .or_insert_with(|| match maps.meta.get(&u32::from(slot), 0) {
                Ok(m) if m.state != META_STATE_UNUSED => (
                    name_str(&m.backend).to_string(),
                    name_str(&m.server).to_string(),
                ),
                _ => ("?".to_string(), format!("#{slot}")),
            })
            .clone()
    };
    let mut out = Flows {
        matching: 0,
        flows: Vec::new(),
    };
    let now = crate::dataplane::clock::now();
    for (k, f) in maps.live_flows(now) {
        let row = flow_row(
            &k,
            &f,
            crate::dataplane::maps::idle_ms(&f, now),
            &mut name_of,
        );
        out.offer(row, filter);
    }
    for (k, f) in maps.live_flows6(now) {
        let row = flow_row(
            &k,
            &f,
            crate::dataplane::maps::idle_ms(&f, now),
            &mut name_of,
        );
        out.offer(row, filter);
    }
    Ok(out)
}

impl Flows {
    /// Counts `row` if `filter` takes it, and keeps it while under the limit.
    fn offer(&mut self, row: FlowRow, filter: &FlowFilter) {
        if !filter.takes(&row) {
            return;
        }
        self.matching += 1;
        if self.flows.len() < filter.limit {
            self.flows.push(row);
        }
    }
}

impl FlowFilter {
    /// Whether a flow passes the client, backend and server filters.
    pub fn takes(&self, row: &FlowRow) -> bool {
        let (want_backend, want_server) = match self.server.as_deref().map(|s| s.split_once('/')) {
            Some(Some((b, s))) => (Some(b), Some(s)),
            Some(None) => (self.backend.as_deref(), self.server.as_deref()),
            None => (self.backend.as_deref(), None),
        };
        self.client.is_none_or(|c| row.client_ip == c)
            && want_backend.is_none_or(|b| b == row.backend)
            && want_server.is_none_or(|s| s == row.server)
    }
}

/// A forward entry of either family as a row; `name_of` names a server slot.
pub fn flow_row<A: MapAddr>(
    k: &FlowKeyOf<A>,
    f: &FlowOf<A>,
    idle_ms: u64,
    name_of: &mut impl FnMut(u16) -> (String, String),
) -> FlowRow {
    let ep = |a: A, p: u16| StatAddrPort(a.with_port(p)).to_string();
    let (backend, server) = name_of(f.server);
    FlowRow {
        proto: match k.proto {
            PROTO_TCP => "tcp",
            PROTO_UDP => "udp",
            _ => "?",
        },
        client_ip: k.src.ip(),
        client: ep(k.src, k.sport),
        vip: ep(k.dst, k.dport),
        backend,
        server,
        server_addr: ep(f.dst, f.dport),
        source: ep(f.src, f.sport),
        state: State::from_u8(f.state).map_or("?", State::name),
        idle_ms,
    }
}

pub fn flows(instance: &str, filter: &FlowFilter, json: bool) -> Result<()> {
    let maps = Maps::from_pins(&pin_dir(instance))?;
    let f = flow_rows(&maps, filter)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(());
    }
    let cells: Vec<Vec<String>> = f
        .flows
        .iter()
        .map(|r| {
            vec![
                r.proto.to_string(),
                r.client.clone(),
                r.vip.clone(),
                format!("{}/{}", r.backend, r.server),
                r.server_addr.clone(),
                r.source.clone(),
                r.state.to_string(),
                format!("{:.1}s", r.idle_ms as f64 / 1000.0),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "PROTO", "CLIENT", "VIP", "SERVER", "TO", "VIA", "STATE", "IDLE"
            ],
            &cells
        )
    );
    if f.matching > f.flows.len() as u64 {
        println!(
            "({} of {} matching flows shown; --limit to see more)",
            f.flows.len(),
            f.matching
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xxxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A     LONGER\nxxxx  1\ny     22\n");
    }

    fn a6(s: &str) -> lb_common::Addr6 {
        lb_common::addr6_from_octets(s.parse::<std::net::Ipv6Addr>().expect("v6").octets())
    }

    fn a4(s: &str) -> u32 {
        u32::from_ne_bytes(s.parse::<std::net::Ipv4Addr>().expect("v4").octets())
    }

    #[test]
    fn a_slot_shows_the_address_of_its_familys_table() {
        let v4 = ServerInfo {
            addr: a4("10.200.10.10"),
            port: 80u16.to_be(),
            ..ServerInfo::default()
        };
        let v6 = ServerInfo6 {
            addr: a6("fd00:16::10"),
            port: 8000u16.to_be(),
            ..ServerInfo6::default()
        };
        let show =
            |v4: &ServerInfo, v6: &ServerInfo6| StatAddrPort(server_endpoint(v4, v6)).to_string();
        assert_eq!(show(&v4, &ServerInfo6::default()), "10.200.10.10:80");
        assert_eq!(show(&ServerInfo::default(), &v6), "[fd00:16::10]:8000");
        // A server with no address yet (`init-addr none`) shows as before.
        let unresolved = ServerInfo {
            port: 80u16.to_be(),
            ..ServerInfo::default()
        };
        assert_eq!(show(&unresolved, &ServerInfo6::default()), "0.0.0.0:80");
    }

    #[test]
    fn ipv6_flows_read_as_their_ipv4_siblings() {
        // Client fd00:16::2:33906 -> VIP [fd00:16::1]:80, full-NAT from [fd00:16::1]:1024 to
        // web11 at [fd00:16::11]:8000.
        let k = lb_common::FlowKey6::new(
            a6("fd00:16::2"),
            a6("fd00:16::1"),
            33906u16.to_be(),
            80u16.to_be(),
            PROTO_TCP,
        );
        let f = lb_common::Flow6 {
            src: a6("fd00:16::1"),
            dst: a6("fd00:16::11"),
            sport: 1024u16.to_be(),
            dport: 8000u16.to_be(),
            state: State::Established as u8,
            server: 1,
            ..lb_common::Flow6::default()
        };
        let mut name_of = |slot: u16| ("hoge".to_string(), format!("web1{slot}"));
        let row = flow_row(&k, &f, 1500, &mut name_of);
        let cells = (
            row.proto,
            row.client.as_str(),
            row.vip.as_str(),
            row.server.as_str(),
            row.server_addr.as_str(),
            row.source.as_str(),
            row.state,
        );
        assert_eq!(
            cells,
            (
                "tcp",
                "[fd00:16::2]:33906",
                "[fd00:16::1]:80",
                "web11",
                "[fd00:16::11]:8000",
                "[fd00:16::1]:1024",
                State::Established.name()
            )
        );
        let mut filter = FlowFilter {
            client: Some("fd00:16::2".parse().expect("ip")),
            limit: 10,
            ..FlowFilter::default()
        };
        assert!(filter.takes(&row));
        filter.client = Some("fd00:16::3".parse().expect("ip"));
        assert!(!filter.takes(&row));
        filter.client = None;
        filter.server = Some("hoge/web11".into());
        assert!(filter.takes(&row));
        filter.server = Some("web10".into());
        assert!(!filter.takes(&row));

        let mut flows = Flows {
            matching: 0,
            flows: Vec::new(),
        };
        let one = FlowFilter {
            limit: 1,
            ..FlowFilter::default()
        };
        flows.offer(row.clone(), &one);
        flows.offer(row, &one);
        assert_eq!((flows.matching, flows.flows.len()), (2, 1));
    }
}
