//! The numbers servers and backends go by. Each has two, and mixing them up sends flows to
//! the wrong server, so each has its own type:
//!
//! - an id ([`ServerId`], [`BackendId`]) is its place in the config: backends in declaration
//!   order, servers numbered across all backends. The daemon's tables are indexed by it; it
//!   changes when a reload inserts a server before it.
//! - a slot ([`ServerSlot`], [`PoolSlot`]) is where it lives in the data plane's maps, what
//!   pool tables and tracked flows refer to. It survives reloads and restarts (see
//!   [`super::layout::Layout::keep_slots`]).
//!
//! Only [`super::layout::Layout`] hands them out; everything else asks it.
use std::fmt;

use serde::Serialize;

macro_rules! number {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// As an index into a table numbered this way.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

number! {
    /// A server's place in the config, numbered across all backends: the daemon's index
    /// (states, history, checkers, `show stat`'s rows).
    ServerId
}

number! {
    /// A server's index in `LB_SERVERS`, `LB_SERVER_META` and the per-server counters, as
    /// pool tables and tracked flows name it.
    ServerSlot
}

number! {
    /// A backend's place in the config (declaration order).
    BackendId
}

number! {
    /// A backend's pool in `LB_POOLS`/`LB_TABLES`, as services and servers name it.
    PoolSlot
}
