//! The DNS wire format lb needs (RFC 1035, RFC 6891's OPT record): one question out, the
//! address records of the answer back. Pure functions over bytes.
//!
//! Written here rather than taken from a crate: lb sends one kind of query and reads one
//! kind of answer (A, soon AAAA, following CNAMEs inside the answer), which is some 150 lines;
//! a full DNS library (hickory-proto) would add a large dependency to build on every machine
//! for features lb does not use.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types lb asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Aaaa => 28,
        }
    }
}

const TYPE_CNAME: u16 = 5;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;

/// The response code of an answer (RFC 1035 4.1.1), as far as HAProxy tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    Refused,
    /// SERVFAIL, FORMERR, NOTIMP and the rest: HAProxy's "other".
    Other(u8),
}

/// What an answer says about the name asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    pub rcode: Rcode,
    /// The TC bit: the answer did not fit.
    pub truncated: bool,
    /// The addresses of the name (after any CNAME in the answer), in the order given.
    pub addrs: Vec<IpAddr>,
}

/// A query for `name`, with an OPT record announcing `payload` bytes when above 512
/// (`accepted_payload_size`). `None` when the name cannot be a DNS name.
pub fn query(id: u16, name: &str, qtype: QType, payload: u16) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(HEADER + name.len() + 2 + 4 + 11);
    m.extend_from_slice(&id.to_be_bytes());
    // RD: the name server resolves recursively for us.
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    let arcount: u16 = if payload > 512 { 1 } else { 0 };
    for count in [1u16, 0, 0, arcount] {
        m.extend_from_slice(&count.to_be_bytes());
    }
    encode_name(&mut m, name)?;
    m.extend_from_slice(&qtype.code().to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if arcount == 1 {
        // Root name, OPT, payload size as class, extended rcode/flags 0, no data.
        m.push(0);
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    Some(m)
}

fn encode_name(m: &mut Vec<u8>, name: &str) -> Option<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    Some(())
}

/// Reads an answer to a query for `name` of type `qtype`. `None`: not a well-formed
/// response (too short, a pointer loop, a record past the end).
pub fn parse(msg: &[u8], name: &str, qtype: QType) -> Option<Answer> {
    let word =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    let id = word(0)?;
    let flags = word(2)?;
    if flags & 0x8000 == 0 {
        return None; // a query, not a response
    }
    let rcode = match flags & 0x000f {
        0 => Rcode::NoError,
        3 => Rcode::NxDomain,
        5 => Rcode::Refused,
        n => Rcode::Other(n as u8),
    };
    let (qd, an) = (word(4)?, word(6)?);
    let mut wanted = normalize(name);
    let mut at = HEADER;
    for i in 0..qd {
        let (asked, next) = read_name(msg, at)?;
        // An answer to another question (two queries may share an id).
        if i == 0 && asked != wanted {
            return None;
        }
        at = next + 4;
    }
    // The name whose addresses we want: the one asked, then each CNAME target in turn.
    let mut records = Vec::new();
    for _ in 0..an {
        let (owner, next) = read_name(msg, at)?;
        let rtype = word(next)?;
        let len = word(next + 8)? as usize;
        let data = next + 10;
        let rdata = msg.get(data..data + len)?;
        records.push((owner, rtype, data, rdata));
        at = data + len;
    }
    // CNAMEs may come in any order: follow them until the chain ends (bounded by the
    // number of records, so a loop cannot hold us).
    for _ in 0..records.len() {
        let Some(target) = records.iter().find_map(|(owner, rtype, data, _)| {
            (*rtype == TYPE_CNAME && *owner == wanted)
                .then(|| read_name(msg, *data).map(|(t, _)| t))
                .flatten()
        }) else {
            break;
        };
        wanted = target;
    }
    let addrs = records
        .iter()
        .filter(|(owner, rtype, _, _)| *rtype == qtype.code() && *owner == wanted)
        .filter_map(|(_, _, _, rdata)| match (qtype, rdata.len()) {
            (QType::A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (QType::Aaaa, 16) => {
                let b: [u8; 16] = (*rdata).try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => None,
        })
        .collect();
    Some(Answer {
        id,
        rcode,
        truncated: flags & 0x0200 != 0,
        addrs,
    })
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The name at `at` (lower case, no trailing dot) and where the data after it starts.
/// Compression pointers are followed, at most as many as the message could hold.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..msg.len() {
        let len = *msg.get(at)? as usize;
        match len & 0xc0 {
            0xc0 => {
                let ptr = ((len & 0x3f) << 8) | *msg.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = ptr;
            }
            0 if len == 0 => return Some((name, end.unwrap_or(at + 1))),
            0 => {
                let label = msg.get(at + 1..at + 1 + len)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                at += 1 + len;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An answer as a name server builds it: the question, then `records` (owner, type,
    /// rdata) with compression pointers to the question's name where the owner is it.
    pub(crate) fn response(
        id: u16,
        rcode: u8,
        name: &str,
        records: &[(&str, u16, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = query(id, name, QType::A, 512).expect("a name");
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (owner, rtype, rdata) in records {
            if *owner == name {
                m.extend_from_slice(&[0xc0, 12]);
            } else {
                encode_name(&mut m, owner).expect("a name");
            }
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    fn name_bytes(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode_name(&mut v, n).expect("a name");
        v
    }

    #[test]
    fn a_query_as_dig_sends_it() {
        let q = query(0x1234, "app.example.", QType::A, 512).expect("valid");
        assert_eq!(
            q,
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'p', 7, b'e', b'x',
                b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1
            ]
        );
        let q = query(1, "app.example", QType::Aaaa, 1232).expect("valid");
        assert_eq!(q[11], 1, "one additional record: OPT");
        assert_eq!(&q[q.len() - 11..q.len() - 6], &[0, 0, 41, 0x04, 0xd0]);
        assert_eq!(query(1, "a..b", QType::A, 512), None);
        assert_eq!(query(1, &"x".repeat(64), QType::A, 512), None);
    }

    #[test]
    fn addresses_of_the_name_asked() {
        let r = response(
            7,
            0,
            "app.example",
            &[
                ("app.example", 1, vec![10, 0, 0, 1]),
                ("other.example", 1, vec![10, 9, 9, 9]),
                ("app.example", 1, vec![10, 0, 0, 2]),
            ],
        );
        let a = parse(&r, "APP.example", QType::A).expect("parsed");
        assert_eq!(
            parse(&r, "other.example", QType::A),
            None,
            "not our question"
        );
        assert_eq!(a.id, 7);
        assert_eq!(a.rcode, Rcode::NoError);
        assert_eq!(
            a.addrs,
            vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])]
        );
    }

    #[test]
    fn cnames_are_followed_in_any_order() {
        let r = response(
            1,
            0,
            "www.example",
            &[
                ("real.example", 1, vec![10, 0, 0, 9]),
                ("mid.example", TYPE_CNAME, name_bytes("real.example")),
                ("www.example", TYPE_CNAME, name_bytes("mid.example")),
            ],
        );
        let a = parse(&r, "www.example", QType::A).expect("parsed");
        assert_eq!(a.addrs, vec![IpAddr::from([10, 0, 0, 9])]);
    }

    #[test]
    fn rcodes_and_malformed_messages() {
        let nx = response(2, 3, "gone.example", &[]);
        let a = parse(&nx, "gone.example", QType::A).expect("parsed");
        assert_eq!(a.rcode, Rcode::NxDomain);
        assert!(a.addrs.is_empty());
        let refused = response(2, 5, "x.example", &[]);
        assert_eq!(
            parse(&refused, "x.example", QType::A).map(|a| a.rcode),
            Some(Rcode::Refused)
        );
        let servfail = response(2, 2, "x.example", &[]);
        assert_eq!(
            parse(&servfail, "x.example", QType::A).map(|a| a.rcode),
            Some(Rcode::Other(2))
        );
        // Cut short, a query instead of a response, a pointer to itself.
        let ok = response(3, 0, "x.example", &[("x.example", 1, vec![1, 2, 3, 4])]);
        assert_eq!(parse(&ok[..ok.len() - 1], "x.example", QType::A), None);
        let q = query(3, "x.example", QType::A, 512).expect("valid");
        assert_eq!(parse(&q, "x.example", QType::A), None);
        let mut looped = ok.clone();
        looped[12] = 0xc0;
        looped[13] = 12;
        assert_eq!(parse(&looped, "x.example", QType::A), None);
    }

    #[test]
    fn a_record_of_the_wrong_size_is_skipped() {
        let r = response(1, 0, "x.example", &[("x.example", 1, vec![1, 2, 3])]);
        assert!(
            parse(&r, "x.example", QType::A)
                .expect("parsed")
                .addrs
                .is_empty()
        );
    }
}
