//! haproxy.cfg front end: HAProxy 2.6's grammar (sections, tokenizer, `no`/`default`
//! prefixes, defaults inheritance) for the L4 subset lb implements, mapped onto the one
//! [`Config`] model the native TOML front end also produces.
//!
//! Rules of thumb, so `lb check` reads like `haproxy -c`:
//! - every problem is collected in one pass; alerts make the file unusable, warnings do not;
//! - unknown keywords are alerts with HAProxy's "did you mean" suggestion;
//! - HTTP-only (L7) directives get exactly one warning each saying why they have no effect
//!   at L4; HAProxy features lb lacks and whose absence changes what traffic reaches which
//!   server (ACL switching, persistence, TLS, access rules) are alerts.
//!
//! HAProxy 2.6 has no line continuation: a trailing backslash is kept as a literal `\` in
//! the last word (its tokenizer only treats `\` as an escape before a known character).
//!
//! A line goes through [`tokenize`], then either opens a section (`sections.rs`) or is
//! looked up in the one keyword table (`keywords.rs`), which hands it to its reader:
//! `global.rs`, `proxy.rs`, `bind.rs`, `server.rs`, `options.rs`, `timeouts.rs`,
//! `checks.rs`. `finish.rs` turns the sections read into the [`Config`].
mod bind;
mod checks;
mod diags;
mod finish;
mod global;
mod keywords;
mod options;
mod proxy;
mod resolvers;
mod sections;
mod server;
mod state;
mod stats;
mod suggest;
#[cfg(test)]
mod tests;
mod timeouts;
mod tokenize;
mod values;

pub use suggest::best_match;
pub use tokenize::{EnvLookup, TokenError, tokenize};

use keywords::{GlobalCtx, ProxyCtx};
use sections::{OTHER_SECTIONS, SECTIONS};
use state::{Kind, Kwm, Parser, Sect};

use super::{
    diag::{ConfigError, Diagnostic},
    model::Config,
};

pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Everything read from a file, usable or not: the model as far as the lines could be read,
/// every problem met, and which sections had an alert (their model may be incomplete, so
/// checks on the whole model must not blame them for what is only missing).
pub struct Read {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    /// An alert was met: the file is unusable.
    pub fatal: bool,
    /// Line ranges of the sections that had an alert, and whether reading stopped early
    /// (an empty file, too many errors): then nothing more should be checked.
    pub damaged: Vec<std::ops::RangeInclusive<usize>>,
    pub stopped: bool,
}

impl Read {
    /// Whether `line` is in a section that had an alert.
    pub fn damaged_at(&self, line: usize) -> bool {
        self.damaged.iter().any(|r| r.contains(&line))
    }
}

/// HAProxy's `MAX_LINE_ARGS`.
pub const MAX_LINE_ARGS: usize = 64;
/// HAProxy stops reading a file after this many fatal errors.
const MAX_FATAL: usize = 50;

/// Parses haproxy.cfg text. `name` is the file name used in messages.
pub fn parse(name: &str, text: &str) -> Result<Parsed, ConfigError> {
    parse_bytes(name, text.as_bytes())
}

/// Parses a haproxy.cfg file's bytes: the configuration, or every problem found.
pub fn parse_bytes(name: &str, text: &[u8]) -> Result<Parsed, ConfigError> {
    let r = read(name, text);
    if r.fatal {
        return Err(ConfigError {
            diagnostics: r.diagnostics,
        });
    }
    Ok(Parsed {
        config: r.config,
        warnings: r.diagnostics,
    })
}

/// Reads a haproxy.cfg file's bytes as far as they go. As HAProxy, lines are read as bytes:
/// a NUL is refused on its line, and bytes that are not UTF-8 only matter outside comments
/// (where they would become part of a name lb has to print).
pub fn read(name: &str, text: &[u8]) -> Read {
    let mut p = Parser::new(name);
    if text.is_empty() {
        p.d.alert_at_file(format!(
            "'{name}' is empty: no global, defaults, frontend or backend section"
        ));
        return p.finish(true);
    }
    let mut lines = text.split(|&b| b == b'\n').peekable();
    let mut n = 0;
    let mut stopped = false;
    while let Some(raw) = lines.next() {
        n += 1;
        p.d.line = n;
        if lines.peek().is_none() {
            if raw.is_empty() {
                break;
            }
            p.d.warn(format!(
                "Missing LF on last line, file might have been truncated at position {}.",
                raw.len() + 1
            ));
        }
        if p.d.fatal >= MAX_FATAL {
            p.d.alert(format!(
                "too many fatal errors ({}), stopping now.",
                p.d.fatal
            ));
            stopped = true;
            break;
        }
        p.line(raw);
    }
    p.finish(stopped)
}

impl Parser {
    fn line(&mut self, raw: &[u8]) {
        if let Some(pos) = raw.iter().position(|&b| b == 0) {
            self.d
                .alert(format!("Stray NUL character at position {}.", pos + 1));
            return;
        }
        let (raw, utf8) = match std::str::from_utf8(raw) {
            Ok(s) => (std::borrow::Cow::Borrowed(s), true),
            Err(_) => (String::from_utf8_lossy(raw), false),
        };
        let raw = raw.as_ref();
        let trimmed = raw.trim_start_matches([' ', '\t', '\x0b', '\x0c']);
        if trimmed.starts_with('[') {
            // `[scope]` lines only change how HAProxy prefixes its messages.
            return;
        }
        let Some(mut args) = self.words(raw) else {
            return;
        };
        if !utf8 && let Some(w) = args.iter().find(|w| w.contains('\u{fffd}')) {
            self.d.alert(format!(
                "'{}' is not valid UTF-8 text (binary data?).",
                diags::show(w)
            ));
            return;
        }
        if args[0].starts_with('.') {
            self.directive(&args);
            return;
        }
        let Some(kwm) = self.prefix(&mut args) else {
            return;
        };
        let kw = args[0].as_str();
        if SECTIONS.contains(&kw) {
            self.section(&args);
            return;
        }
        if OTHER_SECTIONS.contains(&kw) {
            self.close_section(self.d.line);
            self.sect = Sect::Other;
            self.sect_name = args.get(1).cloned().unwrap_or_else(|| kw.to_string());
            self.d.warn(format!(
                "'{kw}' section has no effect in lb: lb does not use it, its contents are ignored"
            ));
            return;
        }
        self.keyword(&args, kwm);
    }

    /// The words of a line, `None` when it has none or cannot be cut (an alert then).
    fn words(&mut self, raw: &str) -> Option<Vec<String>> {
        let (file, line, section) = (self.d.file.clone(), self.d.line, self.sect_name.clone());
        let env = &self.env;
        let lookup = |name: &str| -> Result<Option<String>, ()> {
            match name {
                ".LINE" => Ok(Some(line.to_string())),
                ".FILE" => Ok(Some(file.to_string())),
                ".SECTION" => Ok(Some(section.clone())),
                n if n.starts_with('.') => Err(()),
                n => Ok(env.get(n)),
            }
        };
        let args = match tokenize(raw, &lookup) {
            Ok(a) if a.is_empty() => return None,
            Ok(a) => a,
            Err(e) => {
                self.d.alert(e.to_string());
                return None;
            }
        };
        let trailing = raw.trim_end_matches([' ', '\t', '\r']);
        let backslashes = trailing.len() - trailing.trim_end_matches('\\').len();
        if backslashes % 2 == 1 && args.last().is_some_and(|w| w.ends_with('\\')) {
            self.d.warn(
                "line ends with a backslash: HAProxy has no line continuation, the backslash is part of the last word and the next line is a statement of its own.",
            );
        }
        Some(args)
    }

    /// Takes a `no` / `default` prefix off `args`; `None` (after an alert) when the keyword
    /// does not take one.
    fn prefix(&mut self, args: &mut Vec<String>) -> Option<Kwm> {
        let kwm = match args[0].as_str() {
            "no" => Kwm::No,
            "default" => Kwm::Default,
            _ => return Some(Kwm::Std),
        };
        args.remove(0);
        let ok = args.first().is_some_and(|a| {
            matches!(
                a.as_str(),
                "option"
                    | "log"
                    | "busy-polling"
                    | "set-dumpable"
                    | "strict-limits"
                    | "insecure-fork-wanted"
                    | "numa-cpu-mapping"
            )
        });
        if !ok {
            self.d.alert(
                "negation/default currently supported only for options, log, busy-polling, set-dumpable, strict-limits, insecure-fork-wanted and numa-cpu-mapping.",
            );
            return None;
        }
        Some(kwm)
    }

    /// A keyword line, read by the current section's entry in the keyword table.
    fn keyword(&mut self, args: &[String], kwm: Kwm) {
        match self.sect {
            Sect::None => {
                self.d.alert(format!(
                    "unknown keyword '{}' out of section.",
                    diags::show(&args[0])
                ));
            }
            Sect::Other => {}
            Sect::Resolvers(i) => {
                if let Some(r) = self.global.resolvers.get_mut(i) {
                    resolvers::keyword(&mut self.d, r, args);
                }
            }
            Sect::Global => keywords::global_keyword(&mut GlobalCtx {
                d: &mut self.d,
                args,
                kwm,
                global: &mut self.global,
                env: &mut self.env,
                once: &mut self.global_once,
            }),
            Sect::Defaults(i) => keywords::proxy_keyword(&mut ProxyCtx {
                d: &mut self.d,
                args,
                kwm,
                kind: Kind::Defaults,
                name: "",
                s: &mut self.defaults[i].1,
                binds: None,
                servers: None,
                total_binds: &mut self.total_binds,
            }),
            Sect::Proxy(i) => {
                let p = &mut self.proxies[i];
                keywords::proxy_keyword(&mut ProxyCtx {
                    d: &mut self.d,
                    args,
                    kwm,
                    kind: p.kind,
                    name: &p.name,
                    s: &mut p.s,
                    binds: Some(&mut p.binds),
                    servers: Some(&mut p.servers),
                    total_binds: &mut self.total_binds,
                })
            }
        }
    }
}
