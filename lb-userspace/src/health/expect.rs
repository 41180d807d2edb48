//! `http-check expect`, pure: the verdict on a response's status line and body, with
//! HAProxy 2.6's statuses and texts (`tcpcheck_eval_expect_http`).
use regex::Regex;

use super::state::CheckStatus;
use crate::config::{HttpExpect, units};

/// HAProxy evaluates a body match on what its check buffer holds (`tune.bufsize`, 16 KiB):
/// the body is read up to this much, and a longer one is judged on its start.
pub const BODY_LIMIT: usize = 16 * 1024;

/// `info` of a content match with no body to look at.
pub const NO_BODY: &str = "HTTP content check could not find a response body";
/// `info` of a content match that failed.
pub const NO_MATCH: &str = "HTTP content check did not match";
/// `info` of a negated content match that matched.
pub const UNWANTED: &str = "HTTP check matched unwanted content";

/// A compiled `http-check expect`.
#[derive(Clone, Debug)]
pub struct Expect {
    rule: HttpExpect,
    regex: Option<Regex>,
    /// `http-check disable-on-404`.
    disable_on_404: bool,
}

/// A verdict: the status and the `info` to log (empty for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: CheckStatus,
    pub info: String,
}

impl Verdict {
    fn new(status: CheckStatus, info: impl Into<String>) -> Verdict {
        Verdict {
            status,
            info: info.into(),
        }
    }
}

impl Expect {
    /// Fails on a regular expression that does not compile (the front ends refuse those).
    pub fn new(rule: &HttpExpect) -> Result<Expect, String> {
        let regex = rule.pattern().map(units::regex).transpose()?;
        Ok(Expect {
            rule: rule.clone(),
            regex,
            disable_on_404: false,
        })
    }

    /// The rule of an HTTP check, with its `disable-on-404`.
    pub fn of(h: &crate::config::HttpCheck) -> Result<Expect, String> {
        let mut e = Expect::new(&h.expect)?;
        e.disable_on_404 = h.disable_on_404;
        Ok(e)
    }

    /// [`Expect::judge`] for a server that is UP or not: with `disable-on-404`, a 404 from
    /// an UP server passes conditionally (L7OKC, no `info`) whatever the match says, as in
    /// HAProxy's `tcpcheck_eval_expect_http`.
    pub fn judge_for(&self, server_up: bool, code: u16, reason: &str, body: &[u8]) -> Verdict {
        if self.disable_on_404 && server_up && code == 404 {
            return Verdict::new(CheckStatus::L7OkC, "");
        }
        self.judge(code, reason, body)
    }

    /// The verdict needs the body.
    pub fn needs_body(&self) -> bool {
        self.rule.needs_body()
    }

    /// The verdict on a response with status `code` and reason phrase `reason`; `body` is
    /// what was read of the body (ignored by the status matches). A failed status match is
    /// L7STS with the server's reason phrase; a failed content match is L7RSP.
    pub fn judge(&self, code: u16, reason: &str, body: &[u8]) -> Verdict {
        let (matched, negate) = match &self.rule {
            HttpExpect::Status(ranges) => {
                let default = [(200, 399)];
                let ranges = if ranges.is_empty() {
                    &default[..]
                } else {
                    ranges
                };
                let ok = ranges.iter().any(|&(a, b)| (a..=b).contains(&code));
                return status_verdict(ok, reason);
            }
            HttpExpect::StatusRegex { negate, .. } => {
                let matched = self.regex_matches(code.to_string().as_bytes());
                return status_verdict(matched != *negate, reason);
            }
            HttpExpect::Body { text, negate } => (contains(body, text.as_bytes()), *negate),
            HttpExpect::BodyRegex { negate, .. } => (self.regex_matches(body), *negate),
        };
        if body.is_empty() {
            return Verdict::new(CheckStatus::L7Rsp, NO_BODY);
        }
        match (matched, negate) {
            (true, false) | (false, true) => Verdict::new(CheckStatus::L7Ok, ""),
            (false, false) => Verdict::new(CheckStatus::L7Rsp, NO_MATCH),
            (true, true) => Verdict::new(CheckStatus::L7Rsp, UNWANTED),
        }
    }

    /// The part of the body read so far already decides (HAProxy stops reading once a
    /// content match is found; a miss waits for the rest).
    pub fn decided_by(&self, body: &[u8]) -> bool {
        match &self.rule {
            HttpExpect::Body { text, .. } => contains(body, text.as_bytes()),
            HttpExpect::BodyRegex { .. } => self.regex_matches(body),
            HttpExpect::Status(_) | HttpExpect::StatusRegex { .. } => true,
        }
    }

    fn regex_matches(&self, subject: &[u8]) -> bool {
        // HAProxy matches the bytes as a C string of text; invalid UTF-8 is replaced rather
        // than refused so that a binary page can still match its text parts.
        self.regex
            .as_ref()
            .is_some_and(|r| r.is_match(&String::from_utf8_lossy(subject)))
    }
}

fn status_verdict(ok: bool, reason: &str) -> Verdict {
    if ok {
        Verdict::new(CheckStatus::L7Ok, "")
    } else {
        Verdict::new(CheckStatus::L7Sts, reason)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::*;

    fn judge(rule: HttpExpect, code: u16, reason: &str, body: &str) -> (CheckStatus, String) {
        let v = Expect::new(&rule)
            .expect("compiles")
            .judge(code, reason, body.as_bytes());
        (v.status, v.info)
    }

    fn v(s: CheckStatus, info: &str) -> (CheckStatus, String) {
        (s, info.into())
    }

    /// The verdicts HAProxy 2.6 logged for the same matches (see `tests/tls_checks.rs` for
    /// the capture): failed content matches are L7RSP with these texts, failed status
    /// matches L7STS with the reason phrase.
    #[test]
    fn verdicts_are_haproxys() {
        use HttpExpect::*;
        let body = "<html>hello world</html>\n";
        assert_eq!(judge(Status(vec![]), 200, "OK", ""), v(L7Ok, ""));
        assert_eq!(judge(Status(vec![]), 302, "Found", ""), v(L7Ok, ""));
        assert_eq!(
            judge(Status(vec![]), 404, "Not Found", ""),
            v(L7Sts, "Not Found")
        );
        assert_eq!(
            judge(Status(vec![(404, 404)]), 404, "Not Found", ""),
            v(L7Ok, "")
        );
        // `! status 200` is stored as the complement.
        let not200 = units::status_complement(&[(200, 200)]);
        assert_eq!(judge(Status(not200), 200, "OK", ""), v(L7Sts, "OK"));
        let rs = |p: &str, negate| StatusRegex {
            pattern: p.into(),
            negate,
        };
        assert_eq!(
            judge(rs("^2", false), 404, "Not Found", ""),
            v(L7Sts, "Not Found")
        );
        assert_eq!(judge(rs("^2", false), 204, "No Content", ""), v(L7Ok, ""));
        assert_eq!(judge(rs("^5", true), 503, "Busy", ""), v(L7Sts, "Busy"));
        let s = |t: &str, negate| Body {
            text: t.into(),
            negate,
        };
        assert_eq!(judge(s("hello", false), 200, "OK", body), v(L7Ok, ""));
        assert_eq!(
            judge(s("nothere", false), 200, "OK", body),
            v(L7Rsp, NO_MATCH)
        );
        assert_eq!(judge(s("hello", true), 200, "OK", body), v(L7Rsp, UNWANTED));
        assert_eq!(judge(s("nothere", true), 200, "OK", body), v(L7Ok, ""));
        // No body: whatever the negation (and the status code is not looked at).
        assert_eq!(judge(s("x", false), 200, "OK", ""), v(L7Rsp, NO_BODY));
        assert_eq!(judge(s("x", true), 500, "Oops", ""), v(L7Rsp, NO_BODY));
        let rb = |p: &str, negate| BodyRegex {
            pattern: p.into(),
            negate,
        };
        assert_eq!(
            judge(rb(r"h[e]llo\ w.rld", false), 200, "OK", body),
            v(L7Ok, "")
        );
        assert_eq!(
            judge(rb("^hello", false), 200, "OK", body),
            v(L7Rsp, NO_MATCH)
        );
        assert_eq!(judge(rb("x", true), 200, "OK", ""), v(L7Rsp, NO_BODY));
    }

    #[test]
    fn a_404_passes_conditionally_from_an_up_server_only() {
        let h = crate::config::HttpCheck {
            disable_on_404: true,
            ..crate::config::HttpCheck::default()
        };
        let e = Expect::of(&h).expect("compiles");
        assert_eq!(
            e.judge_for(true, 404, "Not Found", b""),
            Verdict::new(L7OkC, "")
        );
        assert_eq!(
            e.judge_for(false, 404, "Not Found", b""),
            Verdict::new(L7Sts, "Not Found")
        );
        assert_eq!(e.judge_for(true, 200, "OK", b""), Verdict::new(L7Ok, ""));
        let plain = Expect::new(&HttpExpect::default()).expect("compiles");
        assert_eq!(
            plain.judge_for(true, 404, "Not Found", b""),
            Verdict::new(L7Sts, "Not Found")
        );
    }

    #[test]
    fn reading_stops_once_a_match_is_found() {
        let e = Expect::new(&HttpExpect::Body {
            text: "ready".into(),
            negate: true,
        })
        .expect("compiles");
        assert!(!e.decided_by(b"status: rea"));
        assert!(e.decided_by(b"status: ready"));
        assert!(
            Expect::new(&HttpExpect::default())
                .expect("compiles")
                .decided_by(b"")
        );
        assert!(
            Expect::new(&HttpExpect::BodyRegex {
                pattern: "(".into(),
                negate: false
            })
            .is_err()
        );
    }
}
