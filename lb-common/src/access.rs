//! `tcp-request connection accept|reject` rules, as the data plane reads them: an LPM trie
//! (`LB_ACCESS`) keyed by frontend, destination port and client address, whose longest match
//! says whether a new flow may start. The daemon compiles each frontend's ordered rules into
//! prefixes such that the longest match is what HAProxy's first matching rule would decide
//! (`lb_userspace::dataplane::access`). No entry: accepted, as HAProxy does when no rule
//! matches.

use crate::addr::Addr6;

/// The data of an `LB_ACCESS` (IPv4 clients) or `LB6_ACCESS` (IPv6 clients) key, after the
/// trie's prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKeyOf<A> {
    /// The frontend (`ServiceValue::frontend`), big endian so the trie matches it as bytes.
    pub frontend: u16,
    /// Network byte order.
    pub port: u16,
    /// Network byte order: prefixes match its leading bits.
    pub addr: A,
}

pub type AccessKey = AccessKeyOf<u32>;
pub type AccessKey6 = AccessKeyOf<Addr6>;

/// Bits of an `AccessKey` before the address: always matched in full.
pub const ACCESS_FIXED_BITS: u32 = 32;
/// A lookup matches every bit.
pub const ACCESS_LOOKUP_BITS: u32 = 64;
/// An IPv6 lookup matches every bit.
pub const ACCESS6_LOOKUP_BITS: u32 = ACCESS_FIXED_BITS + 128;

/// `LB_ACCESS` values.
pub const ACCESS_ACCEPT: u32 = 1;
pub const ACCESS_REJECT: u32 = 2;

/// How many prefixes `LB_ACCESS` holds.
pub const MAX_ACCESS_ENTRIES: u32 = 16384;

impl<A> AccessKeyOf<A> {
    pub const fn new(frontend: u32, port_be: u16, addr_be: A) -> AccessKeyOf<A> {
        AccessKeyOf {
            frontend: (frontend as u16).to_be(),
            port: port_be,
            addr: addr_be,
        }
    }
}
