//! `lb convert`: the model written back as native TOML.
