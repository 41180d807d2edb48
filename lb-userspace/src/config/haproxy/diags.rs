//! Where a line's problems go, and how words from the file are printed in them.
use std::sync::Arc;

use crate::config::{diag::Diagnostic, model::Origin};

/// The problems found so far, and the line being read.
pub(super) struct Diags {
    pub file: Arc<str>,
    pub line: usize,
    pub list: Vec<Diagnostic>,
    /// Alerts so far: HAProxy gives up after `MAX_FATAL`.
    pub fatal: usize,
}

impl Diags {
    pub fn new(file: &str) -> Diags {
        Diags {
            file: Arc::from(file),
            line: 0,
            list: Vec::new(),
            fatal: 0,
        }
    }

    pub fn here(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line,
        }
    }

    pub fn alert(&mut self, msg: impl Into<String>) {
        let o = self.here();
        self.alert_at(&o, msg);
    }

    /// An alert about the whole file.
    pub fn alert_at_file(&mut self, msg: impl Into<String>) {
        self.list.push(Diagnostic::alert(None, msg));
        self.fatal += 1;
    }

    pub fn warn(&mut self, msg: impl Into<String>) {
        let o = self.here();
        self.warn_at(&o, msg);
    }

    pub fn warn_at(&mut self, o: &Origin, msg: impl Into<String>) {
        self.list.push(Diagnostic::warning(Some(o), msg));
    }

    pub fn alert_at(&mut self, o: &Origin, msg: impl Into<String>) {
        self.list.push(Diagnostic::alert(Some(o), msg));
        self.fatal += 1;
    }

    /// `'kw' cannot handle unexpected argument 'x'.` when `args` has more than `max`
    /// values after the first `idx + 1` words.
    pub fn too_many(&mut self, args: &[String], idx: usize, max: usize) -> bool {
        match args.get(idx + 1 + max) {
            Some(extra) => {
                let kw = args[..=idx.min(args.len() - 1)].join(" ");
                self.alert(format!(
                    "'{}' cannot handle unexpected argument '{}'.",
                    show(&kw),
                    show(extra)
                ));
                true
            }
            None => false,
        }
    }
}

/// A message that may quote words from the file: control characters escaped, length capped.
pub(super) fn clean(m: &str) -> String {
    printable(m, 400)
}

/// A word from the file, made safe to print: control characters escaped, long words cut.
pub(super) fn show(w: &str) -> String {
    printable(w, 80)
}

fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max_chars {
            out.push_str("...");
            break;
        }
        if c == '\u{feff}' {
            out.push_str("\\u{feff}");
        } else if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}
