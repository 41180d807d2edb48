//! The HTML stats page (`/`, `/stats`), like HAProxy's `stats uri`: a table per frontend
//! and per backend, a row per server coloured by state as HAProxy colours them.
use std::fmt::Write as _;

use super::state_word;
use crate::api::{
    cli::AdminState,
    stats::{self, State, Traffic},
};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// HAProxy's row classes (`active_up`, `backup_going_down`, `maintain`, ...).
pub fn row_class(s: &stats::ServerState) -> String {
    if s.admin == AdminState::Maint {
        return "maintain".into();
    }
    let who = if s.backup { "backup" } else { "active" };
    let checking = s.check.as_ref().filter(|k| k.enabled && !k.paused);
    let what = if s.up {
        if s.admin == AdminState::Drain || s.weight == 0 {
            "draining"
        } else if checking.is_some_and(|k| k.health < k.rise + k.fall - 1) {
            "going_down"
        } else if checking.is_none() {
            "no_check"
        } else {
            "up"
        }
    } else if checking.is_some_and(|k| k.health > 0) {
        "going_up"
    } else {
        "down"
    };
    format!("{who}_{what}")
}

/// `1d 2h03m` / `4m05s` like HAProxy's "LastChk" ages.
fn age(secs: u64) -> String {
    if secs >= 86400 {
        format!("{}d{}h", secs / 86400, (secs / 3600) % 24)
    } else if secs >= 3600 {
        format!("{}h{}m", secs / 3600, (secs / 60) % 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

const CSS: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px;color:#000;background:#fff}\
h1{font-size:16px}\
table.tbl{border-collapse:collapse;border:1px solid #808080;margin-bottom:14px}\
table.tbl th,table.tbl td{border:1px solid #808080;padding:2px 4px;white-space:nowrap}\
table.tbl th{background:#20D0D0}\
table.tbl th.pxname{background:#b00040;color:#ffff40;text-align:left}\
td.num{text-align:right}\
.frontend,.backend{background:#e8e8d0}\
.active_down{background:#ff9090}.active_going_up{background:#ffd020}\
.active_going_down{background:#ffffa0}.active_up{background:#c0ffc0}\
.active_draining{background:#20a0FF}.active_no_check{background:#e0e0e0}\
.backup_down{background:#ff9090}.backup_going_up{background:#ff80ff}\
.backup_going_down{background:#c060ff}.backup_up{background:#b0d0ff}\
.backup_draining{background:#cc9900}.backup_no_check{background:#e0e0e0}\
.maintain{background:#c07820}";

/// The HTML stats page: a table per frontend and per backend, a row per server coloured by
/// state as HAProxy colours them, refreshing itself every `refresh` seconds if given.
pub fn render_page(st: &State, tr: &Traffic, refresh: Option<u64>) -> String {
    let mut h = String::new();
    let (meta, every) = match refresh {
        Some(s) => (
            format!("<meta http-equiv=\"refresh\" content=\"{s}\">"),
            format!(", refreshed every {s}s"),
        ),
        None => (String::new(), String::new()),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{meta}\
         <title>Statistics Report for lb instance {inst}</title><style>{CSS}</style></head><body>\
         <h1>Statistics Report for lb instance {inst}</h1>\
         <p>pid = {pid}, uptime = {up}, flows = {flows} / {cap}{every}</p>",
        inst = esc(&st.instance),
        pid = st.pid,
        up = age(st.uptime),
        flows = tr.total_flows,
        cap = st.conntrack_entries,
    );
    if let Some(x) = st.xdp {
        let _ = write!(
            h,
            "<p>XDP program: {} runs, {:.3} s of CPU</p>",
            x.run_count,
            x.run_time_ns as f64 / 1e9
        );
    }
    for f in &st.frontends {
        let c = tr.frontend(f.id);
        let _ = write!(
            h,
            "<table class=\"tbl\" id=\"fe-{n}\"><tr><th class=\"pxname\" colspan=\"7\">{n}</th></tr>\
             <tr><th></th><th>Status</th><th>Cur flows</th><th>Max flows</th><th>New flows</th>\
             <th>Bytes in</th><th>Bytes out</th></tr>\
             <tr class=\"frontend\"><td>Frontend</td><td>OPEN</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr></table>",
            c.current,
            c.max,
            c.counters.new_flows,
            c.counters.bytes_in,
            c.counters.bytes_out,
            n = esc(&f.name),
        );
    }
    for b in &st.backends {
        let _ = write!(
            h,
            "<table class=\"tbl\" id=\"be-{n}\"><tr><th class=\"pxname\" colspan=\"16\">{n}</th></tr>\
             <tr><th>Server</th><th>Status</th><th>LastChk</th><th>Wght</th><th>Act</th>\
             <th>Bck</th><th>Chk</th><th>Dwn</th><th>Last change</th><th>Dwntme</th>\
             <th>Cur flows</th><th>Max flows</th><th>New flows</th><th>Bytes in</th>\
             <th>Bytes out</th><th>Packets in/out</th></tr>",
            n = esc(&b.name),
        );
        for s in &b.servers {
            let c = tr.server(s.id);
            let lastchk = match &s.check {
                Some(k) if k.enabled && !k.paused && k.status.finished() => {
                    let mut t = k.status.code().to_string();
                    if let Some(code) = k.code.filter(|_| k.status.has_code()) {
                        let _ = write!(t, "/{code}");
                    }
                    if let Some(d) = k.duration_ms {
                        let _ = write!(t, " in {d}ms");
                    }
                    t
                }
                Some(k) if k.enabled && !k.paused => "* INI".into(),
                _ => String::new(),
            };
            let (chk, dwn, dt) = if s.check.is_some() {
                (
                    s.chkfail.to_string(),
                    s.chkdown.to_string(),
                    age(s.downtime),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            let _ = write!(
                h,
                "<tr class=\"{class}\" id=\"sv-{bn}-{sn}\" data-state=\"{word}\"><td>{sn}</td>\
                 <td class=\"status\">{status}</td><td>{lastchk}</td><td class=\"num\">{w}</td>\
                 <td>{act}</td><td>{bck}</td><td class=\"num\">{chk}</td><td class=\"num\">{dwn}</td>\
                 <td>{lc}</td><td>{dt}</td><td class=\"num\">{cur}</td><td class=\"num\">{max}</td>\
                 <td class=\"num\">{new}</td><td class=\"num\">{bin}</td><td class=\"num\">{bout}</td>\
                 <td class=\"num\">{pin}/{pout}</td></tr>",
                class = row_class(s),
                bn = esc(&b.name),
                sn = esc(&s.name),
                word = state_word(s),
                status = esc(&stats::server_status(s)),
                lastchk = esc(&lastchk),
                w = s.weight,
                act = if s.backup { "" } else { "Y" },
                bck = if s.backup { "Y" } else { "" },
                lc = age(s.lastchg),
                cur = c.current,
                max = c.max,
                new = c.counters.new_flows,
                bin = c.counters.bytes_in,
                bout = c.counters.bytes_out,
                pin = c.counters.packets_in,
                pout = c.counters.packets_out,
            );
        }
        let c = tr.backend(b);
        let _ = write!(
            h,
            "<tr class=\"backend\"><td>Backend</td><td>{status}</td><td></td><td class=\"num\">{w}</td>\
             <td class=\"num\">{act}</td><td class=\"num\">{bck}</td><td></td>\
             <td class=\"num\">{down}</td><td>{lc}</td><td>{dt}</td><td class=\"num\">{cur}</td>\
             <td class=\"num\">{max}</td><td class=\"num\">{new}</td><td class=\"num\">{bin}</td>\
             <td class=\"num\">{bout}</td><td class=\"num\">{pin}/{pout}</td></tr></table>",
            status = if b.up { "UP" } else { "DOWN" },
            w = b.tot_weight,
            act = b.act,
            bck = b.bck,
            down = b.chkdown,
            lc = age(b.lastchg),
            dt = age(b.downtime),
            cur = c.current,
            max = c.max,
            new = c.counters.new_flows,
            bin = c.counters.bytes_in,
            bout = c.counters.bytes_out,
            pin = c.counters.packets_in,
            pout = c.counters.packets_out,
        );
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{http::tests::sample, stats::tests::reference_state};

    /// `/` as the build before the module was split rendered [`sample`], byte for byte.
    #[test]
    fn page_matches_the_capture() {
        let (st, tr) = sample();
        assert_eq!(
            render_page(&st, &tr, Some(5)),
            include_str!("../testdata/stats-http-page.html")
        );
    }

    #[test]
    fn page_colours_servers_by_state() {
        let mut st = reference_state();
        let html = render_page(&st, &Traffic::default(), Some(5));
        assert!(html.contains("<tr class=\"active_up\" id=\"sv-hoge-web10\" data-state=\"UP\">"));
        st.backends[0].servers[1].up = false;
        if let Some(k) = st.backends[0].servers[1].check.as_mut() {
            k.health = 0;
        }
        let html = render_page(&st, &Traffic::default(), Some(5));
        assert!(
            html.contains("<tr class=\"active_down\" id=\"sv-hoge-web11\" data-state=\"DOWN\">")
        );
        st.backends[0].servers[1].admin = AdminState::Maint;
        assert!(render_page(&st, &Traffic::default(), Some(5)).contains("class=\"maintain\""));
        st.backends[0].name = "<x>".into();
        assert!(render_page(&st, &Traffic::default(), Some(5)).contains("&lt;x&gt;"));
    }
}
