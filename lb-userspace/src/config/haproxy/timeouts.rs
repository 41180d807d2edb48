//! `timeout NAME TIME`, and the pre-2.1 `contimeout` & co HAProxy no longer accepts.
use std::time::Duration;

use super::{
    diags::show,
    keywords::{L7_GENERIC, ProxyCtx},
    state::ProxySettings,
    values::time_arg,
};

/// Where a timer lives in a proxy's settings.
type Field = fn(&mut ProxySettings) -> &mut Option<Duration>;

/// What a `timeout` name sets.
enum Slot {
    /// A timer of the backend side.
    Backend(Field),
    /// A timer of the client side (`client`, `client-fin`): a frontend's. The data plane times
    /// flows by their backend, so `finish.rs` hands each frontend's timers to the backend it
    /// sends to.
    Client(Field),
    /// An HTTP timer the data plane has no use for.
    Ignored,
}

fn slot(which: &str) -> Option<Slot> {
    Some(match which {
        "connect" => Slot::Backend(|s| &mut s.timeouts.connect),
        "server" => Slot::Backend(|s| &mut s.timeouts.server),
        "tunnel" => Slot::Backend(|s| &mut s.timeouts.tunnel),
        "server-fin" => Slot::Backend(|s| &mut s.timeouts.server_fin),
        "check" => Slot::Backend(|s| &mut s.timeouts.check),
        "queue" => Slot::Backend(|s| &mut s.timeouts.queue),
        "client" => Slot::Client(|s| &mut s.timeouts.client),
        "client-fin" => Slot::Client(|s| &mut s.timeouts.client_fin),
        "http-request" | "http-keep-alive" | "tarpit" => Slot::Ignored,
        _ => return None,
    })
}

pub(super) fn timeout(c: &mut ProxyCtx) {
    let Some(which) = c.arg(1) else {
        c.d.alert("'timeout' expects 'client', 'server', 'connect', 'check', 'queue', 'http-keep-alive', 'http-request', 'tunnel', 'tarpit', 'client-fin' or 'server-fin'.");
        return;
    };
    let Some(slot) = slot(which) else {
        c.d.alert(format!(
            "'timeout' supports 'client', 'server', 'connect', 'check', 'queue', 'http-keep-alive', 'http-request', 'tarpit', 'tunnel', 'client-fin' and 'server-fin' (got '{}')",
            show(which)
        ));
        return;
    };
    if c.d.too_many(c.args, 1, 1) {
        return;
    }
    let kwname = format!("timeout {}", show(which));
    let Some(t) = time_arg(c.d, &format!("'{kwname}'"), c.arg(2)) else {
        return;
    };
    match slot {
        Slot::Ignored => ignored(c, which),
        // HAProxy's words for a timer on the wrong side of a proxy.
        Slot::Backend(_) if !c.kind.be() => c.d.warn(format!(
            "'{kwname}' will be ignored because {} '{}' has no backend capability",
            c.kind.word(),
            c.name
        )),
        Slot::Client(_) if !c.kind.fe() => c.d.warn(format!(
            "'{kwname}' will be ignored because {} '{}' has no frontend capability",
            c.kind.word(),
            c.name
        )),
        Slot::Backend(field) | Slot::Client(field) => *field(c.s) = Some(t),
    }
}

/// The one warning of a timer lb reads and has no use for.
fn ignored(c: &mut ProxyCtx, which: &str) {
    match which {
        "http-request" => c.d.warn("'timeout http-request' has no effect in lb (L4): lb never waits for an HTTP request, it forwards the connection as soon as it opens."),
        "http-keep-alive" => c.d.warn("'timeout http-keep-alive' has no effect in lb (L4): keep-alive is between client and server, lb does not see requests."),
        _ => c.d.warn(format!(
            "'timeout {which}' has no effect in lb (L4): {L7_GENERIC}."
        )),
    }
}

/// `contimeout`, `clitimeout`, `srvtimeout`: refused since HAProxy 2.1.
pub(super) fn removed(c: &mut ProxyCtx) {
    let kw = c.args[0].as_str();
    c.d.alert(format!(
        "the '{kw}' directive is not supported anymore since HAProxy 2.1. Use 'timeout {}' instead.",
        match kw {
            "contimeout" => "connect",
            "clitimeout" => "client",
            _ => "server",
        }
    ));
}
