//! `cargo xtask ...`: the project's entry points. Every command first runs the idempotent
//! set-up (scripts/setup.sh), so on a fresh machine `cargo xtask run ...` and
//! `cargo xtask test` are all a person needs.
//!
//! This crate depends on nothing of lb's own: it must compile before the eBPF toolchain
//! exists.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the prerequisites (apt packages, eBPF toolchain), idempotently.
    Setup,
    /// Build the XDP object and `lb` (release).
    Build,
    /// Build, then run the balancer as root: `cargo xtask run -- -c configs/lb.toml [-i eth0]`.
    Run {
        /// Arguments for `lb run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole test suite: formatting, clippy, unit, data-plane and end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks (not tests): `cargo xtask bench [--quick]`.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` from the workspace root, as root (through sudo if needed) when asked.
fn run(program: &str, args: &[&str], as_root: bool) -> Result<()> {
    let mut cmd = if as_root && !is_root() {
        let mut c = Command::new("sudo");
        c.args(["-E", "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).current_dir(root());
    eprintln!("[xtask] {program} {}", args.join(" "));
    let status = cmd
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn setup() -> Result<()> {
    run("scripts/setup.sh", &[], true)
}

fn cargo(args: &[&str]) -> Result<()> {
    run(env!("CARGO"), args, false)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup(),
        Cmd::Build => {
            setup()?;
            cargo(&["build", "--release", "-p", "lb-userspace"])
        }
        Cmd::Run { args } => {
            setup()?;
            cargo(&["build", "--release", "-p", "lb-userspace"])?;
            let args: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .filter(|a| *a != "--")
                .collect();
            let mut all = vec!["run"];
            all.extend(args);
            run("target/release/lb", &all, true)
        }
        Cmd::Test { args } => {
            setup()?;
            cargo(&["fmt", "--all", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            // Root: the data-plane and end-to-end tests use namespaces and XDP. None is
            // skipped when not root; they fail and say why.
            let mut all = vec!["test", "--workspace", "--exclude", "lb-ebpf"];
            all.extend(args.iter().map(String::as_str));
            if is_root() {
                cargo(&all)
            } else {
                run(env!("CARGO"), &all, true)
            }
        }
        Cmd::Bench { args } => {
            setup()?;
            // The benchmarks run `lb run` from target/release, next to lb-bench.
            cargo(&["build", "--release", "-p", "lb-userspace", "--bin", "lb"])?;
            let mut all = vec!["run", "--release", "-p", "lb-bench", "--"];
            all.extend(args.iter().map(String::as_str));
            if is_root() {
                cargo(&all)
            } else {
                run(env!("CARGO"), &all, true)
            }
        }
    }
}
