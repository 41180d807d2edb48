//! A proxy's `stats ...` lines and `http-request use-service prometheus-exporter`: a
//! `frontend` or `listen` section with them and no server becomes one of the daemon's stats
//! listeners ([`StatsHttp`]), as `listen stats` sections are written everywhere.
use std::time::Duration;

use super::{
    diags::{Diags, show},
    keywords::ProxyCtx,
    state::Proxy,
    values::time_arg,
};
use crate::config::model::*;

/// A proxy's stats settings, as inherited and then changed by its own lines.
#[derive(Clone, Debug, Default)]
pub(super) struct StatsCfg {
    /// Stats are on (`stats enable`, or any setting that implies it, as in HAProxy).
    pub enabled: bool,
    pub uri: Option<String>,
    pub auth: Vec<(String, String)>,
    pub realm: Option<String>,
    pub refresh: Option<Duration>,
    /// The prometheus exporter's path condition.
    pub metrics: Option<PathMatch>,
    /// The first stats line written in this section (not inherited).
    pub own: Option<Origin>,
}

impl StatsCfg {
    /// The settings as a proxy inherits them.
    pub fn inherited(&mut self) {
        self.own = None;
    }

    /// The section serves the page or the metrics.
    pub fn serves(&self) -> bool {
        self.enabled || self.metrics.is_some()
    }

    fn mark(&mut self, d: &Diags) {
        if self.own.is_none() {
            self.own = Some(d.here());
        }
    }
}

/// `stats enable|disable|uri|auth|realm|refresh|admin|hide-version|show-*|scope|...` in a
/// proxy.
pub(super) fn stats(c: &mut ProxyCtx) {
    let Some(sub) = c.arg(1) else {
        c.d.alert("'stats' expects 'admin', 'auth', 'enable', 'hide-version', 'http-request', 'realm', 'refresh', 'scope', 'show-desc', 'show-legends', 'show-modules', 'show-node' or 'uri'.");
        return;
    };
    let value = c.arg(2).filter(|v| !v.is_empty());
    let st = &mut c.s.stats;
    match sub {
        "enable" | "hide-version" => {
            // lb's page never shows a version: `hide-version` is what it does anyway.
            if c.d.too_many(c.args, 1, 0) {
                return;
            }
            st.enabled = true;
        }
        "disable" => {
            if !c.d.too_many(c.args, 1, 0) {
                st.enabled = false;
            }
            return;
        }
        "uri" | "realm" | "auth" | "refresh" => {
            let Some(v) = value else {
                c.d.alert(format!("'stats {sub}' needs an argument."));
                return;
            };
            if c.d.too_many(c.args, 1, 1) {
                return;
            }
            match sub {
                "uri" => st.uri = Some(v.to_string()),
                "realm" => st.realm = Some(v.to_string()),
                "auth" => match v.split_once(':') {
                    Some((u, p)) if !u.is_empty() => {
                        st.auth.push((u.to_string(), p.to_string()));
                    }
                    _ => {
                        c.d.alert("'stats auth' expects <user>:<password> as argument.");
                        return;
                    }
                },
                _ => match time_arg(c.d, "'stats refresh'", Some(v)) {
                    Some(t) => c.s.stats.refresh = Some(t),
                    None => return,
                },
            }
            c.s.stats.enabled = true;
        }
        "admin" => {
            c.d.warn(
                "'stats admin' has no effect in lb: its stats page only shows; change servers through a 'stats socket' of level admin (or 'lb server').",
            );
            st.enabled = true;
        }
        "scope" => {
            c.d.warn("'stats scope' has no effect in lb: its stats page shows every proxy.");
            st.enabled = true;
        }
        "show-legends" | "show-node" | "show-desc" | "show-modules" => {
            c.d.warn(format!(
                "'stats {sub}' has no effect in lb: its stats page has one fixed layout."
            ));
            st.enabled = true;
        }
        "http-request" => {
            c.d.alert(
                "'stats http-request' is not supported by lb: its stats page takes no rules; protect it with 'stats auth <user>:<password>'.",
            );
            return;
        }
        "socket" | "timeout" | "maxconn" | "bind-process" => {
            c.d.alert(format!(
                "'stats {sub}' is only allowed in 'global' section."
            ));
            return;
        }
        other => {
            c.d.alert(format!(
                "'stats' expects 'admin', 'auth', 'enable', 'hide-version', 'http-request', 'realm', 'refresh', 'scope', 'show-desc', 'show-legends', 'show-modules', 'show-node' or 'uri' (got '{}').",
                show(other)
            ));
            return;
        }
    }
    c.s.stats.mark(c.d);
}

/// `http-request use-service prometheus-exporter [if|unless COND]`, `COND` being `{ path
/// P }` or `{ path_beg P }` (or none: every request).
pub(super) fn use_service(c: &mut ProxyCtx) {
    let service = c.arg(2).unwrap_or("");
    if service != "prometheus-exporter" {
        c.d.alert(format!(
            "'http-request use-service {}' is not supported by lb: its only service is 'prometheus-exporter'.",
            show(service)
        ));
        return;
    }
    let rest: Vec<&str> = c.args[3..].iter().map(String::as_str).collect();
    let m = match rest.as_slice() {
        [] => PathMatch::Prefix("/".into()),
        ["if", "{", "path", p, "}"] => PathMatch::Exact(p.to_string()),
        ["if", "{", "path_beg", p, "}"] => PathMatch::Prefix(p.to_string()),
        _ => {
            c.d.alert(
                "'http-request use-service prometheus-exporter' takes no condition, 'if { path <path> }' or 'if { path_beg <prefix> }' in lb.",
            );
            return;
        }
    };
    c.s.stats.metrics = Some(m);
    c.s.stats.mark(c.d);
}

/// The stats listener a `frontend` or `listen` section stands for, if it serves the page or
/// the metrics and has nothing to forward. `None` for the sections that forward (after an
/// alert or warning when they have stats settings too).
pub(super) fn listener(d: &mut Diags, p: &Proxy, warned: &mut Vec<Origin>) -> Option<StatsHttp> {
    let st = &p.s.stats;
    if !st.serves() {
        return None;
    }
    if !p.kind.fe() {
        if let Some(o) = &st.own {
            d.warn_at(
                o,
                format!(
                    "'stats' in backend '{}' has no effect in lb: lb serves its stats page from a frontend or listen section with a 'bind' and no server.",
                    p.name
                ),
            );
        }
        return None;
    }
    let forwards = !p.servers.is_empty()
        || p.s.use_backend.is_some()
        || (p.s.default_backend_own && p.s.default_backend.is_some());
    if forwards {
        match &st.own {
            Some(o) => d.alert_at(
                o,
                format!(
                    "{} '{}' both serves the stats page and forwards connections: lb serves the page from its daemon and forwards in XDP, so give the page a section of its own.",
                    p.kind.word(),
                    p.name
                ),
            ),
            None => {
                // Stats settings inherited from a defaults section, on a proxy that forwards.
                if let Some(first) = p.binds.first().map(|b| b.origin.clone())
                    && !warned.contains(&p.origin)
                {
                    warned.push(p.origin.clone());
                    d.warn_at(
                        &first,
                        format!(
                            "the stats settings {} '{}' inherits have no effect in lb: it forwards connections, and lb serves its stats page from a section of its own.",
                            p.kind.word(),
                            p.name
                        ),
                    );
                }
            }
        }
        return None;
    }
    let mut binds = Vec::new();
    for b in &p.binds {
        if b.proto == Proto::Udp {
            d.alert_at(
                &b.origin,
                format!(
                    "{} '{}' serves the stats page over TCP: bind {b} is UDP.",
                    p.kind.word(),
                    p.name
                ),
            );
            continue;
        }
        let a = std::net::SocketAddr::from((b.addr, b.port));
        if !binds.contains(&a) {
            binds.push(a);
        }
    }
    if p.binds.is_empty() {
        d.alert_at(
            &p.origin,
            format!("{} '{}' has no bind.", p.kind.word(), p.name),
        );
    }
    Some(StatsHttp {
        name: p.name.clone(),
        binds,
        uri: st.enabled.then(|| {
            st.uri
                .clone()
                .unwrap_or_else(|| StatsHttp::DEFAULT_URI.into())
        }),
        auth: st.auth.clone(),
        realm: st
            .realm
            .clone()
            .unwrap_or_else(|| StatsHttp::DEFAULT_REALM.into()),
        refresh: st.refresh,
        metrics: st.metrics.clone(),
        origin: p.origin.clone(),
    })
}
