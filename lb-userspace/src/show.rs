//! `lb show ...`: reads the pinned maps directly, so it works even when the daemon is stuck.
use anyhow::Result;
use lb_common::{
    MAX_SERVERS, META_STATE_DOWN, META_STATE_DRAIN, META_STATE_MAINT, META_STATE_UNUSED,
    META_STATE_UP, name_str,
};
use serde::Serialize;

use crate::dataplane::{Maps, layout::addr_of, pin_dir};

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BackendRow {
    pub backend: String,
    pub server: String,
    pub id: u32,
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

/// One row per configured server, in id order.
pub fn backend_rows(maps: &Maps) -> Result<Vec<BackendRow>> {
    let flows = maps.flows_per_server();
    let mut rows = Vec::new();
    for id in 0..MAX_SERVERS {
        let meta = maps.meta.get(&id, 0)?;
        if meta.state == META_STATE_UNUSED {
            continue;
        }
        let info = maps.servers.get(&id, 0)?;
        let c = maps.server_counters(id)?;
        rows.push(BackendRow {
            backend: name_str(&meta.backend).into(),
            server: name_str(&meta.server).into(),
            id,
            address: format!("{}:{}", addr_of(info.addr), u16::from_be(info.port)),
            state: state_name(meta.state).into(),
            weight: meta.weight,
            backup: meta.backup != 0,
            active_flows: flows[id as usize],
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

pub fn backends(instance: &str, json: bool) -> Result<()> {
    let maps = Maps::from_pins(&pin_dir(instance))?;
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
        conntrack_entries: maps.flow_count(),
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
