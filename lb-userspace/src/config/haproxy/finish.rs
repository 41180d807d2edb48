//! The end of the file: the proxies read become the [`Config`]'s frontends and backends.
use std::time::Duration;

use super::{
    Read,
    diags::Diags,
    state::{Kind, Parser, Proxy},
    stats,
};
use crate::config::model::*;

impl Parser {
    /// The model as far as it could be read, and every problem; `stopped`: reading gave up
    /// early.
    pub(super) fn finish(mut self, stopped: bool) -> Read {
        self.close_section(self.d.line + 1);
        let mut d = self.d;
        let mut frontends = Vec::new();
        let mut fronts = ByBackend::new();
        let mut filters_warned = Vec::new();
        let mut stats_warned = Vec::new();
        // Sections serving the stats page are the daemon's listeners, not the data plane's.
        let mut pages = vec![false; self.proxies.len()];
        for (i, p) in self.proxies.iter().enumerate() {
            if let Some(h) = stats::listener(&mut d, p, &mut stats_warned) {
                self.global.stats_http.push(h);
                pages[i] = true;
            }
        }
        let mut i = 0;
        self.proxies.retain(|_| {
            i += 1;
            !pages[i - 1]
        });
        for p in &self.proxies {
            unused_acls(&mut d, p);
        }
        for p in self.proxies.iter().filter(|p| p.kind.fe()) {
            let fatal = d.fatal;
            let f = frontend(&mut d, p);
            if d.fatal > fatal {
                // No backend named: the checks on the model must not look for it again.
                self.damaged.push(p.origin.line..=p.origin.line);
            }
            log_filters(&mut d, p, &mut filters_warned);
            fronts
                .entry(f.default_backend.clone())
                .or_default()
                .push(ClientTimers {
                    frontend: f.name.clone(),
                    client: p.s.timeouts.client,
                    client_fin: p.s.timeouts.client_fin,
                });
            frontends.push(f);
        }
        let mut backends = Vec::new();
        for p in self.proxies {
            if p.kind.be() {
                backends.push(backend(&mut d, p, &fronts));
            }
        }
        Read {
            config: Config {
                global: self.global,
                frontends,
                backends,
            },
            fatal: d.fatal > 0,
            diagnostics: d.list,
            damaged: self.damaged,
            stopped,
        }
    }
}

/// `acl` lines lb could evaluate but no rule reads (those it cannot evaluate were warned
/// about at their line).
fn unused_acls(d: &mut Diags, p: &Proxy) {
    for a in p.s.acls.iter().filter(|a| a.test.is_ok() && !a.used.get()) {
        d.warn_at(
            &a.origin,
            format!(
                "'acl {}' has no effect in lb: no 'tcp-request connection' rule uses it, and lb evaluates ACLs nowhere else.",
                a.name
            ),
        );
    }
}

/// The frontend side of a `frontend` or `listen` section.
fn frontend(d: &mut Diags, p: &Proxy) -> Frontend {
    if let (Kind::Listen, Some((b, _)), false, None) = (
        p.kind,
        &p.s.default_backend,
        p.s.default_backend_own,
        &p.s.use_backend,
    ) && *b != p.name
        && !p.servers.is_empty()
    {
        // HAProxy does the same, which surprises: say so.
        d.warn_at(
            &p.origin,
            format!(
                "listen '{}' sends its connections to default_backend '{b}' inherited from the defaults section, not to its own servers.",
                p.name
            ),
        );
    }
    if let (Some((used, _)), Some((unused, at)), true) = (
        &p.s.use_backend,
        &p.s.default_backend,
        p.s.default_backend_own,
    ) {
        d.warn_at(
            at,
            format!(
                "'default_backend {unused}' is never used: 'use_backend {used}' without a condition takes every connection before it."
            ),
        );
    }
    let (default_backend, default_backend_at) = match (
        p.s.use_backend.as_ref().or(p.s.default_backend.as_ref()),
        p.kind,
    ) {
        (Some((b, at)), _) => (b.clone(), at.clone()),
        (None, Kind::Listen) => (p.name.clone(), p.origin.clone()),
        (None, _) => {
            d.alert_at(
                    &p.origin,
                    format!(
                        "frontend '{}' has no 'default_backend': lb has no content switching, every frontend sends its connections to its default_backend.",
                        p.name
                    ),
                );
            (String::new(), p.origin.clone())
        }
    };
    Frontend {
        name: p.name.clone(),
        mode: p.s.mode,
        binds: p.binds.clone(),
        default_backend,
        default_backend_at,
        tcplog: p.s.tcplog,
        access: p.s.access.clone(),
        origin: p.origin.clone(),
    }
}

/// `option dontlognull` & co with `option tcplog`: lb logs a connection as it starts, before
/// anything tells these apart, so they cannot hold. (Without `tcplog` lb logs no connection,
/// which is what they ask, and more.) Each line is warned about once.
fn log_filters(d: &mut Diags, p: &Proxy, warned: &mut Vec<Origin>) {
    if !p.s.tcplog {
        return;
    }
    for (opt, at) in &p.s.log_filters {
        if warned.contains(at) {
            continue;
        }
        warned.push(at.clone());
        let what = match opt.as_str() {
            "dontlognull" => "whether it will carry data",
            "dontlog-normal" => "whether it will end normally",
            _ => "whether it will end in an error",
        };
        d.warn_at(
            at,
            format!(
                "'option {opt}' has no effect in lb with 'option tcplog': lb logs each connection as it starts, before knowing {what}."
            ),
        );
    }
}

/// A frontend's client-side timers (`timeout client`, `client-fin`), on their way to the
/// backend it sends to.
struct ClientTimers {
    frontend: String,
    client: Option<Duration>,
    client_fin: Option<Duration>,
}

/// The client-side timers of the frontends sending to each backend, by backend name.
type ByBackend = std::collections::HashMap<String, Vec<ClientTimers>>;

/// The backend side of a `backend` or `listen` section.
fn backend(d: &mut Diags, p: Proxy, fronts: &ByBackend) -> Backend {
    let check =
        p.s.check
            .finish(d, &format!("{} '{}'", p.kind.word(), p.name));
    let mut timeouts = p.s.timeouts.clone();
    // HAProxy times the client side of a connection by its frontend; lb's data plane times a
    // flow by its backend, so the backend takes the timers of the frontends sending to it
    // (the longest, should they differ: no flow ends sooner than HAProxy would end it).
    let senders = fronts.get(&p.name).map(Vec::as_slice).unwrap_or_default();
    timeouts.client = longest(d, &p, senders, "client", |t| t.client);
    timeouts.client_fin = longest(d, &p, senders, "client-fin", |t| t.client_fin);
    Backend {
        name: p.name,
        mode: p.s.mode,
        balance: p.s.balance,
        hash_type: p.s.hash_type,
        hash_table_size: lb_common::maglev::MAGLEV_DEFAULT_SIZE,
        nat: p.s.nat,
        on_empty: OnEmpty::Drop,
        check,
        redispatch: p.s.redispatch,
        log_health_checks: p.s.log_health_checks,
        allbackups: p.s.allbackups,
        retries: p.s.retries,
        timeouts,
        load_state: p.s.load_state,
        state_file_name: p.s.state_file_name,
        servers: p.servers,
        origin: p.origin,
    }
}

/// The longest of a timer over the frontends sending to backend `p`, with a warning when
/// they differ.
fn longest(
    d: &mut Diags,
    p: &Proxy,
    senders: &[ClientTimers],
    which: &str,
    get: fn(&ClientTimers) -> Option<Duration>,
) -> Option<Duration> {
    let set: Vec<(&str, Duration)> = senders
        .iter()
        .filter_map(|t| get(t).map(|v| (t.frontend.as_str(), v)))
        .collect();
    let max = set.iter().map(|(_, v)| *v).max()?;
    let differ = set.iter().any(|(_, v)| *v != max) || set.len() < senders.len();
    if differ {
        let list: Vec<String> = senders
            .iter()
            .map(|t| match get(t) {
                Some(v) => format!("'{}' {}", t.frontend, ms(v)),
                None => format!("'{}' none", t.frontend),
            })
            .collect();
        d.warn_at(
            &p.origin,
            format!(
                "the frontends sending to backend '{}' have different 'timeout {which}' ({}): lb times a flow by its backend, so all of them get the longest, {}.",
                p.name,
                list.join(", "),
                ms(max)
            ),
        );
    }
    Some(max)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}
