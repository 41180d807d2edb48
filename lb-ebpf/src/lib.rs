//! Intentionally empty: the program lives in `main.rs` (built for `bpfel-unknown-none` by
//! `lb-userspace/build.rs`). This target exists so that crate can be a build-dependency.
#![no_std]
