//! Run-time name resolution as HAProxy 2.6 does it (src/resolvers.c, src/server.c), pure:
//! when a name is asked again, what ends a resolution, how long the last valid answer
//! stands, and which server takes which address. The I/O is in [`super::client`].
use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use super::wire::{Answer, QType, Rcode};
use crate::config::{Family, Hold, Resolvers};

/// How a resolution ended (HAProxy's `RSLV_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Valid,
    Nx,
    Refused,
    Timeout,
    Other,
}

impl Status {
    /// How long the last valid answer stands after a resolution ended so.
    fn hold(self, h: &Hold) -> Duration {
        match self {
            Status::Valid => Duration::ZERO,
            Status::Nx => h.nx,
            Status::Refused => h.refused,
            Status::Timeout => h.timeout,
            Status::Other => h.other,
        }
    }

    /// The reason HAProxy gives when the hold is over and its servers go to maintenance
    /// (`snr_update_srv_status`).
    pub fn maintenance_cause(self) -> &'static str {
        match self {
            Status::Valid => NO_IP,
            Status::Nx => "DNS NX status",
            Status::Timeout => "DNS timeout status",
            Status::Refused => "DNS refused status",
            Status::Other => "unspecified DNS error",
        }
    }
}

/// HAProxy's cause for a server a valid answer has no address for, trailing space included.
pub const NO_IP: &str = "No IP for server ";

/// The record types asked for a server preferring `prefer`, in order. A only for now: lb
/// forwards to IPv4 servers; once IPv6 servers exist this asks the preferred family first
/// and the other one next, as HAProxy does.
pub fn query_types(_prefer: Family) -> &'static [QType] {
    &[QType::A]
}

/// A resolution that ended: what its servers are to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub status: Status,
    /// With `Valid`: the addresses of the answer, and those of earlier answers still within
    /// `hold obsolete`, in the order first seen.
    pub addrs: Vec<Ipv4Addr>,
    /// With an error: the last valid answer is older than the status's `hold`, its servers
    /// go to maintenance.
    pub hold_over: bool,
    /// The name server whose answer ended it (`None`: a timeout).
    pub nameserver: Option<usize>,
}

/// What to do now for a resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the query with this id to every name server.
    Send(u16),
    /// Nothing before this instant.
    Wait(Instant),
    Done(Finished),
}

/// The query under way.
#[derive(Clone, Debug)]
struct InFlight {
    id: u16,
    /// Queries that may still be sent after this one.
    tries_left: u32,
    sent: Instant,
    /// Error answers so far, by name server (a valid one ends the resolution at once).
    errors: Vec<(usize, Status)>,
}

/// One name asked of one `resolvers` section (HAProxy's `resolv_resolution`).
#[derive(Clone, Debug)]
pub struct Resolution {
    pub name: String,
    /// When the next resolution starts (every `timeout resolve`).
    next: Instant,
    flight: Option<InFlight>,
    /// When an answer was last valid: the start counts as one, since the name resolved then
    /// (`init-addr`) or the server is already in maintenance for it.
    last_valid: Instant,
    /// Addresses seen in valid answers, with when last seen (`hold obsolete`).
    seen: Vec<(Ipv4Addr, Instant)>,
}

impl Resolution {
    /// A name to resolve from `now` on.
    pub fn new(name: &str, now: Instant) -> Resolution {
        Resolution {
            name: name.to_string(),
            next: now,
            flight: None,
            last_valid: now,
            seen: Vec::new(),
        }
    }

    /// Whether `id` is the id of the query under way.
    pub fn awaits(&self, id: u16) -> bool {
        self.flight.as_ref().is_some_and(|f| f.id == id)
    }

    /// What is due at `now`. `new_id` gives the id of a query to send.
    pub fn poll(&mut self, r: &Resolvers, now: Instant, new_id: &mut dyn FnMut() -> u16) -> Step {
        match &mut self.flight {
            None if now < self.next => Step::Wait(self.next),
            None => {
                let id = new_id();
                self.flight = Some(InFlight {
                    id,
                    tries_left: r.resolve_retries.saturating_sub(1),
                    sent: now,
                    errors: Vec::new(),
                });
                Step::Send(id)
            }
            Some(f) if now < f.sent + r.timeout_retry => Step::Wait(f.sent + r.timeout_retry),
            Some(f) if f.tries_left > 0 => {
                f.tries_left -= 1;
                f.id = new_id();
                f.sent = now;
                Step::Send(f.id)
            }
            Some(f) => {
                // Out of tries: the error the name servers gave, else a timeout.
                let (ns, status) = f
                    .errors
                    .last()
                    .map_or((None, Status::Timeout), |&(n, s)| (Some(n), s));
                Step::Done(self.finish_error(r, now, status, ns))
            }
        }
    }

    /// An answer from name server `ns` (one of `of` name servers) to the query under way.
    /// A valid one ends the resolution; an error ends it once every name server gave one.
    pub fn on_answer(
        &mut self,
        r: &Resolvers,
        now: Instant,
        ns: usize,
        of: usize,
        a: &Answer,
    ) -> Option<Finished> {
        let f = self.flight.as_mut().filter(|f| f.id == a.id)?;
        let v4: Vec<Ipv4Addr> = a
            .addrs
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        let status = match a.rcode {
            // Cut short: HAProxy counts it as an error (raise `accepted_payload_size`).
            _ if a.truncated => Status::Other,
            Rcode::NoError if !v4.is_empty() => Status::Valid,
            Rcode::NxDomain => Status::Nx,
            Rcode::Refused => Status::Refused,
            // No address for the name (HAProxy: "no expected record"), a truncated or
            // failed answer.
            Rcode::NoError | Rcode::Other(_) => Status::Other,
        };
        if status != Status::Valid {
            if !f.errors.iter().any(|(n, _)| *n == ns) {
                f.errors.push((ns, status));
            }
            if f.errors.len() < of {
                return None;
            }
            return Some(self.finish_error(r, now, status, Some(ns)));
        }
        for ip in &v4 {
            match self.seen.iter_mut().find(|(a, _)| a == ip) {
                Some(s) => s.1 = now,
                None => self.seen.push((*ip, now)),
            }
        }
        let obsolete = r.hold.obsolete;
        self.seen
            .retain(|(_, at)| now.saturating_duration_since(*at) <= obsolete);
        self.last_valid = now;
        self.flight = None;
        self.next = now + r.timeout_resolve;
        Some(Finished {
            status: Status::Valid,
            addrs: self.seen.iter().map(|(a, _)| *a).collect(),
            hold_over: false,
            nameserver: Some(ns),
        })
    }

    fn finish_error(
        &mut self,
        r: &Resolvers,
        now: Instant,
        status: Status,
        nameserver: Option<usize>,
    ) -> Finished {
        self.flight = None;
        self.next = now + r.timeout_resolve;
        Finished {
            status,
            addrs: Vec::new(),
            hold_over: now.saturating_duration_since(self.last_valid) >= status.hold(&r.hold),
            nameserver,
        }
    }
}

/// A server following a name, as [`assign`] sees it.
#[derive(Clone, Debug)]
pub struct Requester<'a> {
    /// Its address now (`None`: none, it is in maintenance for it).
    pub current: Option<Ipv4Addr>,
    pub prefer: Family,
    pub nets: &'a [(Ipv4Addr, u8)],
}

/// Which address each server of one backend following one name takes from a valid answer
/// (`resolv_get_ip_from_response`): servers in order, each the best-scored address no other
/// server of the backend holds (8: the preferred family, 4: in a `resolve-net` network, 2:
/// not held by another server, which is required, 1: its current address), the first of the
/// answer among equals. `None`: every address is taken ("No IP for server"): the servers of
/// a `server-template` beyond the answer's addresses.
pub fn assign(addrs: &[Ipv4Addr], servers: &[Requester<'_>]) -> Vec<Option<Ipv4Addr>> {
    let mut held: Vec<Option<Ipv4Addr>> = servers.iter().map(|s| s.current).collect();
    for (i, s) in servers.iter().enumerate() {
        let mut best: Option<(u32, Ipv4Addr)> = None;
        for &ip in addrs {
            let taken = held
                .iter()
                .enumerate()
                .any(|(j, h)| j != i && *h == Some(ip));
            if taken {
                continue;
            }
            let mut score = 2;
            if family_of(ip) == s.prefer {
                score += 8;
            }
            if s.nets.iter().any(|&(net, len)| in_net(ip, net, len)) {
                score += 4;
            }
            if s.current == Some(ip) {
                score += 1;
            }
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, ip));
            }
        }
        held[i] = best.map(|(_, ip)| ip);
    }
    held
}

/// The family of an answer's address (A answers only for now).
fn family_of(_ip: Ipv4Addr) -> Family {
    Family::V4
}

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// What happens to one server after a resolution (`snr_resolution_cb`,
/// `snr_update_srv_status`, `snr_resolution_error_cb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChange {
    /// A new address (logged `changed its IP from OLD to NEW by RESOLVERS/NS`).
    pub addr: Option<Ipv4Addr>,
    /// The server goes to maintenance for this cause, and loses its address.
    pub enter_maint: Option<&'static str>,
    /// The server leaves its resolution maintenance.
    pub leave_maint: bool,
}

/// The change for a server now at `current`, in resolution maintenance or not
/// (`in_maint`), after a resolution `f` that gave it `assigned` (from [`assign`]; unused
/// for errors).
pub fn server_change(
    f: &Finished,
    current: Option<Ipv4Addr>,
    in_maint: bool,
    assigned: Option<Ipv4Addr>,
) -> ServerChange {
    let mut c = ServerChange {
        addr: None,
        enter_maint: None,
        leave_maint: false,
    };
    match f.status {
        Status::Valid => match assigned {
            Some(ip) => {
                if current != Some(ip) {
                    c.addr = Some(ip);
                }
                c.leave_maint = in_maint;
            }
            None if !in_maint => c.enter_maint = Some(NO_IP),
            None => {}
        },
        status if f.hold_over && !in_maint => c.enter_maint = Some(status.maintenance_cause()),
        _ => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Origin, Resolvers};

    fn resolvers() -> Resolvers {
        let mut r = Resolvers::new(
            "dns",
            Origin {
                file: Arc::from("t.cfg"),
                line: 1,
            },
        );
        r.resolve_retries = 2;
        r.timeout_resolve = Duration::from_secs(1);
        r.timeout_retry = Duration::from_millis(300);
        r.hold.nx = Duration::from_secs(3);
        r
    }

    fn ids() -> impl FnMut() -> u16 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    fn answer(id: u16, rcode: Rcode, addrs: &[[u8; 4]]) -> Answer {
        Answer {
            id,
            rcode,
            truncated: false,
            addrs: addrs.iter().map(|a| IpAddr::from(*a)).collect(),
        }
    }

    fn ip(a: [u8; 4]) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    #[test]
    fn asked_every_timeout_resolve_and_again_every_timeout_retry() {
        let r = resolvers();
        let t0 = Instant::now();
        let mut id = ids();
        let mut res = Resolution::new("app.example", t0);
        assert_eq!(res.poll(&r, t0, &mut id), Step::Send(1));
        let retry = t0 + Duration::from_millis(300);
        assert_eq!(res.poll(&r, t0, &mut id), Step::Wait(retry));
        // No answer: asked again, with a new id; an answer to the old one is ignored.
        assert_eq!(res.poll(&r, retry, &mut id), Step::Send(2));
        assert!(
            res.on_answer(
                &r,
                retry,
                0,
                1,
                &answer(1, Rcode::NoError, &[[10, 0, 0, 1]])
            )
            .is_none()
        );
        let at = retry + Duration::from_millis(10);
        let f = res
            .on_answer(&r, at, 0, 1, &answer(2, Rcode::NoError, &[[10, 0, 0, 1]]))
            .expect("valid");
        assert_eq!(f.status, Status::Valid);
        assert_eq!(f.addrs, vec![ip([10, 0, 0, 1])]);
        assert_eq!(f.nameserver, Some(0));
        assert_eq!(
            res.poll(&r, at, &mut id),
            Step::Wait(at + Duration::from_secs(1))
        );
    }

    #[test]
    fn out_of_tries_is_a_timeout_held_until_hold_timeout() {
        let r = resolvers();
        let t0 = Instant::now();
        let mut id = ids();
        let mut res = Resolution::new("app.example", t0);
        res.poll(&r, t0, &mut id);
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(res.poll(&r, t1, &mut id), Step::Send(2));
        let t2 = t1 + Duration::from_millis(300);
        let Step::Done(f) = res.poll(&r, t2, &mut id) else {
            panic!("a timeout");
        };
        assert_eq!(f.status, Status::Timeout);
        assert!(!f.hold_over, "hold timeout is 30s");
        assert_eq!(f.nameserver, None);
    }

    #[test]
    fn nx_from_every_name_server_ends_it_and_holds_for_hold_nx() {
        let r = resolvers();
        let t0 = Instant::now();
        let mut id = ids();
        let mut res = Resolution::new("app.example", t0);
        res.poll(&r, t0, &mut id);
        let nx = answer(1, Rcode::NxDomain, &[]);
        assert!(
            res.on_answer(&r, t0, 1, 2, &nx).is_none(),
            "the other may know"
        );
        let f = res.on_answer(&r, t0, 0, 2, &nx).expect("both said NX");
        assert_eq!((f.status, f.hold_over), (Status::Nx, false));
        // Still NX after hold nx (3s) since the last valid answer: maintenance.
        let t = t0 + Duration::from_secs(3);
        assert_eq!(res.poll(&r, t, &mut id), Step::Send(2));
        res.on_answer(&r, t, 0, 2, &answer(2, Rcode::NxDomain, &[]));
        let f = res
            .on_answer(&r, t, 1, 2, &answer(2, Rcode::NxDomain, &[]))
            .expect("ended");
        assert!(f.hold_over);
        assert_eq!(
            server_change(&f, Some(ip([10, 0, 0, 1])), false, None),
            ServerChange {
                addr: None,
                enter_maint: Some("DNS NX status"),
                leave_maint: false
            }
        );
        // Already there: nothing more.
        assert_eq!(server_change(&f, None, true, None).enter_maint, None);
    }

    #[test]
    fn an_address_missing_from_newer_answers_stays_for_hold_obsolete() {
        let mut r = resolvers();
        r.hold.obsolete = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut id = ids();
        let mut res = Resolution::new("app.example", t0);
        res.poll(&r, t0, &mut id);
        res.on_answer(&r, t0, 0, 1, &answer(1, Rcode::NoError, &[[10, 0, 0, 1]]));
        let t1 = t0 + Duration::from_secs(1);
        res.poll(&r, t1, &mut id);
        let f = res
            .on_answer(&r, t1, 0, 1, &answer(2, Rcode::NoError, &[[10, 0, 0, 2]]))
            .expect("valid");
        assert_eq!(f.addrs, vec![ip([10, 0, 0, 1]), ip([10, 0, 0, 2])]);
        let t3 = t0 + Duration::from_millis(3100);
        res.poll(&r, t3, &mut id);
        let f = res
            .on_answer(&r, t3, 0, 1, &answer(3, Rcode::NoError, &[[10, 0, 0, 2]]))
            .expect("valid");
        assert_eq!(f.addrs, vec![ip([10, 0, 0, 2])]);
    }

    #[test]
    fn servers_keep_their_address_take_free_ones_and_go_without() {
        let a = [ip([10, 0, 0, 1]), ip([10, 0, 0, 2]), ip([10, 0, 0, 3])];
        let req = |cur: Option<[u8; 4]>| Requester {
            current: cur.map(Ipv4Addr::from),
            prefer: Family::V6,
            nets: &[],
        };
        // A server-template of 4 resolved at start-up to one address: spread over the answer
        // in turn; the third finds every address held (the fourth still holds 10.0.0.2).
        let s = [
            req(Some([10, 0, 0, 2])),
            req(Some([10, 0, 0, 2])),
            req(Some([10, 0, 0, 2])),
            req(Some([10, 0, 0, 2])),
        ];
        assert_eq!(
            assign(&a, &s),
            vec![Some(a[0]), Some(a[2]), None, Some(a[1])]
        );
        // A single server whose address is still in the answer keeps it.
        assert_eq!(assign(&a, &[req(Some([10, 0, 0, 3]))]), vec![Some(a[2])]);
        // ... and one that has none takes the first.
        assert_eq!(assign(&a, &[req(None)]), vec![Some(a[0])]);
    }

    #[test]
    fn resolve_net_comes_before_the_current_address() {
        let a = [ip([192, 168, 1, 5]), ip([10, 1, 2, 3])];
        let nets = [(ip([10, 0, 0, 0]), 8)];
        let s = Requester {
            current: Some(a[0]),
            prefer: Family::V4,
            nets: &nets,
        };
        assert_eq!(assign(&a, &[s]), vec![Some(a[1])]);
    }

    #[test]
    fn a_valid_answer_moves_and_releases_servers() {
        let f = Finished {
            status: Status::Valid,
            addrs: vec![ip([10, 0, 0, 2])],
            hold_over: false,
            nameserver: Some(0),
        };
        let moved = server_change(&f, Some(ip([10, 0, 0, 1])), false, Some(ip([10, 0, 0, 2])));
        assert_eq!(moved.addr, Some(ip([10, 0, 0, 2])));
        assert!(!moved.leave_maint);
        let back = server_change(&f, None, true, Some(ip([10, 0, 0, 2])));
        assert_eq!(back.addr, Some(ip([10, 0, 0, 2])));
        assert!(back.leave_maint);
        let same = server_change(&f, Some(ip([10, 0, 0, 2])), false, Some(ip([10, 0, 0, 2])));
        assert_eq!(same.addr, None);
        let none = server_change(&f, Some(ip([10, 0, 0, 2])), false, None);
        assert_eq!(none.enter_maint, Some("No IP for server "));
    }

    #[test]
    fn an_answer_without_address_is_an_other_error() {
        let r = resolvers();
        let t0 = Instant::now();
        let mut id = ids();
        let mut res = Resolution::new("app.example", t0);
        res.poll(&r, t0, &mut id);
        let f = res
            .on_answer(&r, t0, 0, 1, &answer(1, Rcode::NoError, &[]))
            .expect("ended");
        assert_eq!(f.status, Status::Other);
        assert_eq!(Status::Other.maintenance_cause(), "unspecified DNS error");
        res.poll(&r, t0 + Duration::from_secs(1), &mut id);
        let cut = Answer {
            truncated: true,
            ..answer(2, Rcode::NoError, &[[10, 0, 0, 1]])
        };
        let f = res
            .on_answer(&r, t0 + Duration::from_secs(1), 0, 1, &cut)
            .expect("ended");
        assert_eq!(f.status, Status::Other, "a truncated answer is an error");
    }
}
