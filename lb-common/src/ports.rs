//! The port filter (`LB_PORTS`): which ports a tracked packet can have, so that traffic no
//! service could own is passed after one array read instead of two hash lookups.
//!
//! A packet may belong to a flow only if its destination port is a service's (client ->
//! VIP) or its source port is a server's (the server's reply). Two bitmaps of 65536 bits,
//! one per side, in one array of `u64` words: `[services | servers]`.

/// Words per bitmap (65536 ports / 64 bits).
pub const PORT_WORDS: u32 = 65536 / 64;
/// Entries of `LB_PORTS`.
pub const PORT_FILTER_WORDS: u32 = 2 * PORT_WORDS;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortSide {
    /// Destination ports of services (`bind`).
    Service = 0,
    /// Source ports of servers' replies (`server ... addr:port`).
    Server = 1,
}

/// Where a port's bit lives: the word's index in `LB_PORTS` and the bit within it.
#[inline(always)]
pub const fn port_bit(side: PortSide, port: u16) -> (u32, u64) {
    (
        side as u32 * PORT_WORDS + (port as u32 >> 6),
        1u64 << (port & 63),
    )
}

/// The filter as the daemon builds it, then writes word by word.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PortFilter {
    pub words: [u64; PORT_FILTER_WORDS as usize],
}

impl Default for PortFilter {
    fn default() -> PortFilter {
        PortFilter {
            words: [0; PORT_FILTER_WORDS as usize],
        }
    }
}

impl PortFilter {
    /// Ports in host order.
    pub fn add(&mut self, side: PortSide, port: u16) {
        let (i, bit) = port_bit(side, port);
        self.words[i as usize] |= bit;
    }

    pub fn has(&self, side: PortSide, port: u16) -> bool {
        let (i, bit) = port_bit(side, port);
        self.words[i as usize] & bit != 0
    }

    /// Every port of either filter: what is safe while switching from one to the other.
    pub fn union(&self, other: &PortFilter) -> PortFilter {
        let mut out = self.clone();
        for (w, o) in out.words.iter_mut().zip(other.words.iter()) {
            *w |= o;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_ports_map_to_distinct_bits() {
        let mut f = PortFilter::default();
        f.add(PortSide::Service, 80);
        f.add(PortSide::Server, 8080);
        f.add(PortSide::Service, 0);
        f.add(PortSide::Service, 65535);
        assert!(f.has(PortSide::Service, 80));
        assert!(!f.has(PortSide::Server, 80));
        assert!(f.has(PortSide::Server, 8080));
        assert!(!f.has(PortSide::Service, 8080));
        assert!(!f.has(PortSide::Service, 81) && !f.has(PortSide::Service, 79));
        assert!(f.has(PortSide::Service, 0) && f.has(PortSide::Service, 65535));
        assert_eq!(
            port_bit(PortSide::Service, 65535),
            (PORT_WORDS - 1, 1 << 63)
        );
        assert_eq!(port_bit(PortSide::Server, 0), (PORT_WORDS, 1));
        assert_eq!(f.words.iter().map(|w| w.count_ones()).sum::<u32>(), 4);
    }

    #[test]
    fn union_keeps_both() {
        let (mut a, mut b) = (PortFilter::default(), PortFilter::default());
        a.add(PortSide::Service, 80);
        b.add(PortSide::Service, 443);
        b.add(PortSide::Server, 8443);
        let u = a.union(&b);
        assert!(u.has(PortSide::Service, 80) && u.has(PortSide::Service, 443));
        assert!(u.has(PortSide::Server, 8443));
        assert_eq!(a.union(&a), a);
    }
}
