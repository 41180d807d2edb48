//! `lb show ...`: reads the pinned maps directly, so it works even when the daemon is stuck.
use std::net::Ipv4Addr;

use anyhow::Result;
use lb_common::{
    MAX_SERVERS, META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT, META_STATE_UNUSED,
    META_STATE_UP, PROTO_TCP, PROTO_UDP, State, name_str,
};
use serde::Serialize;

use crate::dataplane::{Maps, ids::ServerSlot, layout::addr_of, pin_dir};

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
        let c = maps.server_counters(slot)?;
        rows.push(BackendRow {
            backend: name_str(&meta.backend).into(),
            server: name_str(&meta.server).into(),
            slot,
            address: format!("{}:{}", addr_of(info.addr), u16::from_be(info.port)),
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
    pub client: Option<Ipv4Addr>,
    pub limit: usize,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    /// Flows that match, all of them counted.
    pub matching: u64,
    /// The first `limit` of them.
    pub flows: Vec<FlowRow>,
}

/// Scans the flow table once (bounded by its size), keeping at most `filter.limit` rows.
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
    let (want_backend, want_server) = match filter.server.as_deref().map(|s| s.split_once('/')) {
        Some(Some((b, s))) => (Some(b.to_string()), Some(s.to_string())),
        Some(None) => (filter.backend.clone(), filter.server.clone()),
        None => (filter.backend.clone(), None),
    };
    let mut out = Flows {
        matching: 0,
        flows: Vec::new(),
    };
    let now = crate::dataplane::clock::now();
    for (k, f) in maps.live_flows(now) {
        if filter.client.is_some_and(|c| addr_of(k.src) != c) {
            continue;
        }
        let (backend, server) = name_of(f.server);
        if want_backend.as_ref().is_some_and(|b| *b != backend)
            || want_server.as_ref().is_some_and(|s| *s != server)
        {
            continue;
        }
        out.matching += 1;
        if out.flows.len() >= filter.limit {
            continue;
        }
        let ep = |a: u32, p: u16| format!("{}:{}", addr_of(a), u16::from_be(p));
        out.flows.push(FlowRow {
            proto: match k.proto {
                PROTO_TCP => "tcp",
                PROTO_UDP => "udp",
                _ => "?",
            },
            client: ep(k.src, k.sport),
            vip: ep(k.dst, k.dport),
            backend,
            server,
            server_addr: ep(f.dst, f.dport),
            source: ep(f.src, f.sport),
            state: State::from_u8(f.state).map_or("?", State::name),
            idle_ms: crate::dataplane::maps::idle_ms(&f, now),
        });
    }
    Ok(out)
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
}
