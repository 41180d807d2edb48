//! HAProxy's agent check (`agent-check`): connect to the server's agent, send `agent-send`,
//! read one line such as `up 75%`, `drain` or `down # disk full`, and act on its words
//! (`tcpcheck_agent_expect_reply` in HAProxy 2.6's `src/tcpcheck.c`):
//! - a health word (`up`; `down`, `stopped`, `fail`) sets the agent's state, with the line's
//!   `#` description (or the first unknown word) in the log's `info: "via agent : ..."`;
//! - an admin word (`ready`, `drain`, `maint`) changes the server's admin state, as `set
//!   server ... state` does;
//! - `NN%` sets the weight to that share of the configured weight (`maxconn:N` is accepted
//!   and changes nothing: lb has no connection limit);
//! - the last word of each kind wins.
//!
//! The reply is parsed here (pure) and run by the daemon, which applies the admin and
//! weight words before the health word, as HAProxy does.
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::{
    raw,
    run::os_error_text,
    spec::{AgentSpec, Phase},
    state::{AgentVerdict, CheckResult, CheckStatus},
};

/// An admin word of an agent's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentAdmin {
    Ready,
    Drain,
    Maint,
}

/// One agent check: what it changes, in the order it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentReport {
    /// `ready`, `drain` or `maint`.
    pub admin: Option<AgentAdmin>,
    /// The `NN%` word, for the runtime API's weight parser (relative to the configured
    /// weight).
    pub weight: Option<String>,
    /// What it does to the agent's state.
    pub verdict: AgentVerdict,
    /// Status, `info` and duration, as logged.
    pub result: CheckResult,
}

/// The line an agent answered, parsed: HAProxy's `hs`, `as`, `ps`, `sc`, the first error and
/// the description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Words<'a> {
    health: Option<&'a str>,
    admin: Option<&'a str>,
    weight: Option<&'a str>,
    maxconn: Option<&'a str>,
    unknown: Option<&'a str>,
    description: &'a str,
}

fn words(line: &str) -> Words<'_> {
    let mut w = Words::default();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if let Some(desc) = rest.strip_prefix('#') {
            w.description = desc.trim_start_matches([' ', '\t']);
            break;
        }
        let end = rest.find([' ', '\t', ',']).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        let word = &rest[..end];
        rest = &rest[end..];
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "up" | "down" | "stopped" | "fail" => w.health = Some(word),
            "ready" | "drain" | "maint" => w.admin = Some(word),
            _ if word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('%') => {
                w.weight = Some(word)
            }
            _ if lower.starts_with("maxconn:") => w.maxconn = Some(word),
            _ => {
                w.unknown.get_or_insert(word);
            }
        }
    }
    w
}

/// HAProxy's complaint about a weight word (`server_parse_weight_change_request`, for a
/// roundrobin backend), if any.
fn weight_warning(word: &str) -> Option<&'static str> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    match &word[digits..] {
        "%" | "" => None,
        _ => Some("Trailing garbage in weight string"),
    }
}

/// HAProxy's complaint about a `maxconn:` word, if any.
fn maxconn_warning(word: &str) -> Option<&'static str> {
    let value = &word["maxconn:".len()..];
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    if digits == 0 {
        Some("maxconn string empty or preceded by garbage")
    } else if digits < value.len() {
        Some("Trailing garbage in maxconn string")
    } else {
        None
    }
}

/// What a complete reply line does: admin, weight, and the verdict with HAProxy's status and
/// `info` (`via agent : down (disk full)`, `agent reports an error : bogus`...).
fn judge_line(
    line: &str,
) -> (
    Option<AgentAdmin>,
    Option<String>,
    AgentVerdict,
    CheckStatus,
    String,
) {
    let w = words(line);
    let admin = w.admin.map(|a| match a.to_ascii_lowercase().as_str() {
        "drain" => AgentAdmin::Drain,
        "maint" => AgentAdmin::Maint,
        _ => AgentAdmin::Ready,
    });
    let warning = w
        .weight
        .and_then(weight_warning)
        .or_else(|| w.maxconn.and_then(maxconn_warning));
    // A malformed weight word changes nothing (HAProxy refuses it with the warning).
    let weight = w
        .weight
        .filter(|p| weight_warning(p).is_none())
        .map(str::to_string);
    let (verdict, status, info) = match w.health {
        Some(hs) => {
            let up = hs.eq_ignore_ascii_case("up");
            // Down reports keep their own description; `up`, or no description, leaves
            // room for the first error, then the first warning.
            let msg = if w.description.is_empty() || up {
                w.unknown.or(warning).unwrap_or(w.description)
            } else {
                w.description
            };
            let info = if msg.is_empty() {
                format!("via agent : {hs}")
            } else {
                format!("via agent : {hs} ({msg})")
            };
            if up {
                (AgentVerdict::Up, CheckStatus::L7Ok, info)
            } else {
                (AgentVerdict::Down, CheckStatus::L7Sts, info)
            }
        }
        None => {
            let info = match (w.unknown, warning) {
                (Some(e), _) => format!("agent reports an error : {e}"),
                (None, Some(wrn)) => format!("agent warns : {wrn}"),
                (None, None) => String::new(),
            };
            // HAProxy's CHECKED: no status of its own to log.
            (AgentVerdict::Neutral, CheckStatus::L7Ok, info)
        }
    };
    (admin, weight, verdict, status, info)
}

/// The most an agent's line may take (HAProxy's check buffer).
const MAX_REPLY: usize = 16384;

/// Runs one agent check. Never panics, never takes longer than its budget.
pub async fn run_agent(spec: &AgentSpec) -> AgentReport {
    let start = Instant::now();
    let failed = |status: CheckStatus, info: String| AgentReport {
        admin: None,
        weight: None,
        verdict: AgentVerdict::Failed(status),
        result: CheckResult::new(status, start.elapsed()).with_info(info),
    };
    let mut stream = match raw::connect(spec.addr, &spec.budget, start).await {
        Ok(s) => s,
        Err((status, info)) => return failed(status, info),
    };
    let deadline = spec
        .budget
        .deadline(start, Phase::Connected(Instant::now()));
    let exchange = async {
        if !spec.send.is_empty() {
            stream.write_all(&spec.send).await?;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if buf.contains(&b'\n') || buf.contains(&b'\r') || buf.len() >= MAX_REPLY {
                return Ok::<_, std::io::Error>(buf);
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Ok(buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // As HAProxy, an error after some data lets the data be judged.
                Err(_) if !buf.is_empty() => return Ok(buf),
                Err(e) => return Err(e),
            }
        }
    };
    let buf = match timeout_at(deadline, exchange).await {
        Err(_) => return failed(CheckStatus::L7Tout, String::new()),
        Ok(Err(e)) => return failed(CheckStatus::SockErr, os_error_text(&e)),
        Ok(Ok(r)) => r,
    };
    if buf.is_empty() {
        // The agent's rules are `send` (step 1) and `expect` (step 2).
        return failed(
            CheckStatus::L7Rsp,
            "TCPCHK got an empty response at step 2".into(),
        );
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
        // Closed (or the buffer full) before the end of the line.
        return AgentReport {
            admin: None,
            weight: None,
            verdict: AgentVerdict::Ignored,
            result: CheckResult::new(CheckStatus::L7Rsp, start.elapsed())
                .with_info("Ignoring incomplete line from agent"),
        };
    };
    let line = String::from_utf8_lossy(&buf[..end]);
    let (admin, weight, verdict, status, info) = judge_line(&line);
    let mut result = CheckResult::new(status, start.elapsed()).with_info(info);
    // HAProxy prints `code: 0` for an agent's L7 statuses: no HTTP code behind them.
    result.code = Some(0);
    AgentReport {
        admin,
        weight,
        verdict,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentVerdict::*;

    fn judge(line: &str) -> (Option<AgentAdmin>, Option<String>, AgentVerdict, String) {
        let (a, w, v, _, info) = judge_line(line);
        (a, w, v, info)
    }

    /// The replies of the HAProxy 2.6 capture and the `info` it logged for them.
    #[test]
    fn replies_as_haproxy_reads_them() {
        assert_eq!(judge("up"), (None, None, Up, "via agent : up".into()));
        assert_eq!(
            judge("down # disk full"),
            (None, None, Down, "via agent : down (disk full)".into())
        );
        assert_eq!(judge("fail"), (None, None, Down, "via agent : fail".into()));
        assert_eq!(
            judge("STOPPED"),
            (None, None, Down, "via agent : STOPPED".into())
        );
        assert_eq!(
            judge("75%"),
            (None, Some("75%".into()), Neutral, String::new())
        );
        assert_eq!(
            judge("drain"),
            (Some(AgentAdmin::Drain), None, Neutral, String::new())
        );
        assert_eq!(
            judge("ready up"),
            (Some(AgentAdmin::Ready), None, Up, "via agent : up".into())
        );
        assert_eq!(
            judge("up 100%"),
            (None, Some("100%".into()), Up, "via agent : up".into())
        );
        assert_eq!(
            judge("bogus"),
            (None, None, Neutral, "agent reports an error : bogus".into())
        );
        assert_eq!(
            judge("50% bogus"),
            (
                None,
                Some("50%".into()),
                Neutral,
                "agent reports an error : bogus".into()
            )
        );
        // Separators, case, the last word of a kind winning, the description of `up`
        // giving way to an error.
        assert_eq!(
            judge("\tmaint,drain  10% 20%,UP # all good"),
            (
                Some(AgentAdmin::Drain),
                Some("20%".into()),
                Up,
                "via agent : UP (all good)".into()
            )
        );
        assert_eq!(
            judge("up oops # fine"),
            (None, None, Up, "via agent : up (oops)".into())
        );
        assert_eq!(
            judge("50%x"),
            (
                None,
                None,
                Neutral,
                "agent warns : Trailing garbage in weight string".into()
            )
        );
        assert_eq!(judge("maxconn:10"), (None, None, Neutral, String::new()));
        assert_eq!(
            judge("down maxconn:x"),
            (
                None,
                None,
                Down,
                "via agent : down (maxconn string empty or preceded by garbage)".into()
            )
        );
        assert_eq!(judge(""), (None, None, Neutral, String::new()));
    }
}
