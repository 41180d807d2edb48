//! haproxy.cfg front end (see issue 4). Until it lands, such files are refused clearly.
use super::{
    diag::{ConfigError, Diagnostic},
    model::Config,
};

pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

pub fn parse(name: &str, _text: &str) -> Result<Parsed, ConfigError> {
    Err(ConfigError::single(Diagnostic::alert(
        None,
        format!("'{name}': only the native TOML format (*.toml) is read so far"),
    )))
}
