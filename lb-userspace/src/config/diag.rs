//! Configuration diagnostics, printed in HAProxy's shape so `lb check` reads like
//! `haproxy -c`: `[ALERT] parsing [haproxy.cfg:42] : unknown keyword 'serverr' ...`.
use std::fmt;

use super::model::Origin;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Alert,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `file:line` when the problem is on a line; `None` for whole-file problems.
    pub origin: Option<Origin>,
    pub message: String,
}

impl Diagnostic {
    pub fn alert(origin: Option<&Origin>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Alert,
            origin: origin.cloned(),
            message: message.into(),
        }
    }

    pub fn warning(origin: Option<&Origin>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            origin: origin.cloned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Alert => "[ALERT]",
            Severity::Warning => "[WARNING]",
        };
        match &self.origin {
            Some(o) => write!(f, "{tag} parsing [{o}] : {}", self.message),
            None => write!(f, "{tag} config : {}", self.message),
        }
    }
}

/// A configuration that cannot be used: at least one alert, plus any warnings seen on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn single(d: Diagnostic) -> ConfigError {
        ConfigError {
            diagnostics: vec![d],
        }
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Alert)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
