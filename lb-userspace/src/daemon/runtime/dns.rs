//! Finished DNS resolutions (see [`crate::daemon::dns`]) applied to the servers that follow
//! the name: a new address is written to the maps as `set server ... addr` would, a failure
//! held long enough puts the server in maintenance, a valid answer brings it back; each in
//! HAProxy's words.
use std::net::Ipv4Addr;

use super::Runtime;
use crate::{
    daemon::{
        Admin,
        dns::{
            client::DnsEvent,
            resolution::{Requester, Status, assign, server_change},
        },
    },
    dataplane::ids::{BackendId, ServerId},
    logs::{
        Sessions,
        format::{
            address_changed, maintenance_enter_for, no_server_available, resolves_again,
            resolves_again_in_maintenance,
        },
    },
};

/// A server following the resolved name.
struct Follower {
    id: ServerId,
    backend: BackendId,
    current: Option<Ipv4Addr>,
    prefer: crate::config::Family,
    nets: Vec<(Ipv4Addr, u8)>,
}

impl Runtime {
    /// The servers whose address is a host name with a `resolvers` section, and no address
    /// now: they start in resolution maintenance (HAProxy's RMAINT, `init-addr none`).
    pub(super) fn unresolved_servers(&self) -> std::collections::BTreeMap<ServerId, bool> {
        self.bal
            .servers()
            .iter()
            .filter(|e| e.place.addr.is_unspecified() && e.state.admin == Admin::Maint)
            .filter(|e| {
                e.place
                    .config(&self.cfg)
                    .is_some_and(|(_, s)| s.dns.resolvers.is_some())
            })
            .map(|e| (e.id(), false))
            .collect()
    }

    /// A resolution finished: every server following the name moves accordingly. Changed
    /// addresses restart the health checks (they probe the new address) and are saved to
    /// the server state file, so that `init-addr last` finds them after a restart.
    pub async fn on_dns(&mut self, ev: DnsEvent) -> anyhow::Result<()> {
        let followers: Vec<Follower> = self
            .bal
            .servers()
            .iter()
            .filter_map(|e| {
                let (_, s) = e.place.config(&self.cfg)?;
                // lb asks A records only: a server holding an IPv6 address (resolved with
                // `resolve-prefer ipv6` at start-up) keeps it, as a server cannot change
                // family while running (its pool is per family).
                let current = match e.place.addr {
                    std::net::IpAddr::V4(a) => Some(a).filter(|a| !a.is_unspecified()),
                    std::net::IpAddr::V6(a) if a.is_unspecified() => None,
                    std::net::IpAddr::V6(_) => return None,
                };
                (s.dns.resolvers.as_deref() == Some(ev.resolvers.as_str())
                    && s.fqdn.as_deref() == Some(ev.name.as_str()))
                .then(|| Follower {
                    id: e.id(),
                    backend: e.place.backend,
                    current,
                    prefer: s.dns.prefer,
                    nets: s.dns.nets.clone(),
                })
            })
            .collect();
        let by = format!(
            "{}/{}",
            ev.resolvers,
            ev.nameserver.as_deref().unwrap_or("(none)")
        );
        let mut moved = false;
        let mut backends: Vec<BackendId> = followers.iter().map(|f| f.backend).collect();
        backends.dedup();
        for b in backends {
            // Addresses are shared out within a backend (HAProxy's duplicate-IP rule).
            let group: Vec<&Follower> = followers.iter().filter(|f| f.backend == b).collect();
            let assigned = if ev.finished.status == Status::Valid {
                let reqs: Vec<Requester<'_>> = group
                    .iter()
                    .map(|f| Requester {
                        current: f.current,
                        prefer: f.prefer,
                        nets: &f.nets,
                    })
                    .collect();
                assign(&ev.finished.addrs, &reqs)
            } else {
                vec![None; group.len()]
            };
            for (f, a) in group.iter().zip(assigned) {
                let in_maint = self.rmaint.contains_key(&f.id);
                let change = server_change(&ev.finished, f.current, in_maint, a);
                if let Some(cause) = change.enter_maint {
                    self.resolution_maintenance(f.id, cause)?;
                    self.set_server_addr(f.id, None)?;
                    moved = true;
                }
                if let Some(new) = change.addr {
                    match self.set_server_addr(f.id, Some(new.into())) {
                        Ok(()) => {
                            self.unusable.remove(&f.id);
                            let e = self.entry(f.id)?;
                            self.log(&address_changed(e.name(), f.current, new, &by));
                            moved = true;
                        }
                        Err(err) => {
                            // Said once per address, not at every resolution.
                            if self.unusable.insert(f.id, new) != Some(new) {
                                let e = self.entry(f.id)?;
                                let msg = format!(
                                    "{}/{} resolves to {new} by {by}, which lb cannot use ({err:#}); it keeps its address.",
                                    e.backend, e.place.name
                                );
                                eprintln!("[WARNING] {msg}");
                                self.logger.send(crate::config::Level::Warning, &msg);
                            }
                            continue;
                        }
                    }
                }
                if change.leave_maint {
                    self.resolution_back(f.id, &ev.name)?;
                }
            }
        }
        if moved {
            self.restart_checks().await;
            self.save_server_state();
        }
        Ok(())
    }

    /// The server goes to maintenance because its name does not resolve (`cause`). One
    /// already in maintenance by an operator stays there silently, as in HAProxy, and the
    /// next valid answer does not release it.
    fn resolution_maintenance(&mut self, id: ServerId, cause: &str) -> anyhow::Result<()> {
        let old = self.entry(id)?.state;
        let forced = old.admin == Admin::Maint;
        self.rmaint.insert(id, forced);
        if forced {
            return Ok(());
        }
        let m = self.move_admin(id, Admin::Maint)?;
        let e = self.entry(id)?;
        let mut lines = vec![maintenance_enter_for(
            e.name(),
            Some(cause),
            m.was_up,
            old.admin == Admin::Drain,
            m.after,
            Sessions::default(),
        )];
        if m.before.total() > 0 && m.after.total() == 0 {
            lines.push(no_server_available(&e.backend));
        }
        for l in &lines {
            self.log(l);
        }
        Ok(())
    }

    /// A valid answer ends the server's resolution maintenance; one an operator had put in
    /// maintenance stays there.
    fn resolution_back(&mut self, id: ServerId, fqdn: &str) -> anyhow::Result<()> {
        let forced = self.rmaint.remove(&id).unwrap_or(false);
        let lines = if forced {
            let e = self.entry(id)?;
            resolves_again_in_maintenance(e.name(), fqdn)
        } else {
            let m = self.move_admin(id, Admin::Ready)?;
            let e = self.entry(id)?;
            resolves_again(e.name(), fqdn, m.up_again, false)
        };
        for l in &lines {
            self.log(l);
        }
        Ok(())
    }

    /// Gives a server its new address (`None`: none, while in maintenance): the source
    /// address towards it and the interface it is reached through come from the routing
    /// table, as when a configuration is applied; the configuration lb shows and saves
    /// follows.
    pub(super) fn set_server_addr(
        &mut self,
        id: ServerId,
        addr: Option<std::net::IpAddr>,
    ) -> anyhow::Result<()> {
        let e = self.entry(id)?;
        let (snat, iface) = match addr {
            Some(a) => {
                let route = crate::net::route_get(a)?;
                let src = route
                    .prefsrc
                    .ok_or_else(|| anyhow::anyhow!("the route to {a} has no source address"))?;
                (src, Some(route.ifname).filter(|i| i != "lo"))
            }
            None => (e.snat, None),
        };
        let (b, s) = (e.place.backend.index(), e.place.puid as usize - 1);
        let ipv6 = addr.is_some_and(|a| a.is_ipv6());
        // None: no address, of the family the server had.
        let addr = addr.unwrap_or(match e.place.addr {
            std::net::IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        });
        // Reached through an interface lb is not on yet: prepared and attached as a reload
        // would do it.
        if let Some(i) = &iface
            && !self.bal.dp.is_attached(i)
        {
            let sysctls = crate::daemon::sysctl::Forwarding::enable(std::slice::from_ref(i), ipv6)?;
            self.sysctls.push(sysctls);
            self.bal.dp.attach(i)?;
        }
        self.bal.set_addr(id, addr, snat, iface)?;
        if let Some(srv) = self
            .cfg
            .backends
            .get_mut(b)
            .and_then(|b| b.servers.get_mut(s))
        {
            srv.addr = addr;
        }
        Ok(())
    }
}
