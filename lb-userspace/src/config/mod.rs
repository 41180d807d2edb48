//! Configuration: one internal model ([`model::Config`]), two front ends (native TOML in
//! [`native`], haproxy.cfg in [`haproxy`]), one set of semantic checks ([`validate`]).
pub mod access;
pub mod convert;
pub mod diag;
pub mod haproxy;
pub mod model;
pub mod native;
pub mod resolve;
pub mod units;
pub mod validate;

use std::path::Path;

pub use diag::{ConfigError, Diagnostic, Severity};
pub use model::*;

/// A usable configuration and the warnings met while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Which front end reads a file: `.toml` is native, anything else is haproxy.cfg syntax.
pub fn is_native(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// Reads, parses and validates a configuration file (no host checks; see
/// [`validate::host`]).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::single(Diagnostic::alert(
            None,
            format!("cannot read '{name}': {e}"),
        ))
    })?;
    parse_bytes(&name, &bytes, is_native(path))
}

/// Parses and validates configuration text; `name` is used in messages. Every problem is
/// reported in one pass: the checks on the whole model also run on a haproxy.cfg that had
/// alerts, except about the sections those alerts were in.
pub fn parse_bytes(name: &str, bytes: &[u8], native: bool) -> Result<Loaded, ConfigError> {
    if !native {
        return haproxy_file(name, bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let origin = Origin {
            file: name.into(),
            line,
        };
        ConfigError::single(Diagnostic::alert(
            Some(&origin),
            "file is not valid UTF-8 text (binary data?)",
        ))
    })?;
    let config = native::parse(name, text)?;
    match validate::config(&config) {
        Ok(warnings) => Ok(Loaded { config, warnings }),
        Err(e) => Err(e),
    }
}

fn haproxy_file(name: &str, bytes: &[u8]) -> Result<Loaded, ConfigError> {
    let mut read = haproxy::read(name, bytes);
    let mut diagnostics = std::mem::take(&mut read.diagnostics);
    if read.stopped {
        return Err(ConfigError { diagnostics });
    }
    let (checked, fatal) = match validate::config(&read.config) {
        Ok(w) => (w, read.fatal),
        Err(e) => (e.diagnostics, true),
    };
    // About a section that had an alert, its model may be incomplete; about the whole file,
    // an alert would only add to the ones already given (a file of junk has no frontend).
    let blamed = |d: &Diagnostic| match &d.origin {
        Some(o) => read.damaged_at(o.line),
        None => read.fatal && d.severity == Severity::Alert,
    };
    let checked: Vec<Diagnostic> = checked.into_iter().filter(|d| !blamed(d)).collect();
    let fatal = fatal && (read.fatal || checked.iter().any(|d| d.severity == Severity::Alert));
    diagnostics.extend(checked);
    if fatal {
        return Err(ConfigError { diagnostics });
    }
    Ok(Loaded {
        config: read.config,
        warnings: diagnostics,
    })
}
