//! Configuration: one internal model ([`model::Config`]), two front ends (native TOML in
//! [`native`], haproxy.cfg in [`haproxy`]), one set of semantic checks ([`validate`]).
pub mod convert;
pub mod diag;
pub mod haproxy;
pub mod model;
pub mod native;
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

/// Parses and validates configuration text; `name` is used in messages.
pub fn parse_bytes(name: &str, bytes: &[u8], native: bool) -> Result<Loaded, ConfigError> {
    let (config, mut warnings) = if native {
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
        (native::parse(name, text)?, Vec::new())
    } else {
        let parsed = haproxy::parse_bytes(name, bytes)?;
        (parsed.config, parsed.warnings)
    };
    match validate::config(&config) {
        Ok(w) => {
            warnings.extend(w);
            Ok(Loaded { config, warnings })
        }
        Err(mut e) => {
            warnings.append(&mut e.diagnostics);
            Err(ConfigError {
                diagnostics: warnings,
            })
        }
    }
}
