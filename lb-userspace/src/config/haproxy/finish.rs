//! The end of the file: the proxies read become the [`Config`]'s frontends and backends.
use super::{
    Parsed,
    diags::Diags,
    state::{Kind, Parser, Proxy},
};
use crate::config::{diag::ConfigError, model::*};

impl Parser {
    pub(super) fn finish(self) -> Result<Parsed, ConfigError> {
        let mut d = self.d;
        let mut frontends = Vec::new();
        let mut backends = Vec::new();
        for p in self.proxies {
            if p.kind.fe() {
                frontends.push(frontend(&mut d, &p));
            }
            if p.kind.be() {
                backends.push(backend(&mut d, p));
            }
        }
        if d.fatal > 0 {
            return Err(ConfigError {
                diagnostics: d.list,
            });
        }
        Ok(Parsed {
            config: Config {
                global: self.global,
                frontends,
                backends,
            },
            warnings: d.list,
        })
    }
}

/// The frontend side of a `frontend` or `listen` section.
fn frontend(d: &mut Diags, p: &Proxy) -> Frontend {
    if let (Kind::Listen, Some(b), false) = (p.kind, &p.s.default_backend, p.s.default_backend_own)
        && *b != p.name
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
    let default_backend = match (&p.s.default_backend, p.kind) {
        (Some(b), _) => b.clone(),
        (None, Kind::Listen) => p.name.clone(),
        (None, _) => {
            d.alert_at(
                &p.origin,
                format!(
                    "frontend '{}' has no 'default_backend': lb has no content switching, every frontend sends its connections to its default_backend.",
                    p.name
                ),
            );
            String::new()
        }
    };
    Frontend {
        name: p.name.clone(),
        mode: p.s.mode,
        binds: p.binds.clone(),
        default_backend,
        tcplog: p.s.tcplog,
        origin: p.origin.clone(),
    }
}

/// The backend side of a `backend` or `listen` section.
fn backend(d: &mut Diags, p: Proxy) -> Backend {
    let check = p.s.check.finish(d);
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
        timeouts: p.s.timeouts,
        load_state: p.s.load_state,
        state_file_name: p.s.state_file_name,
        servers: p.servers,
        origin: p.origin,
    }
}
