//! Builds the XDP object (`lb-ebpf`, target `bpfel-unknown-none`) and leaves it in `OUT_DIR`
//! for `include_bytes!`.
//!
//! Toolchain: the eBPF crate needs `-Z build-std=core` and bpf-linker built on the same LLVM
//! as the compiler. `cargo xtask setup` provides one of two (README, "Building"):
//! - `debian-web`: Debian's rustc-web linked into rustup, with bpf-linker on llvm-22;
//! - `nightly`: rustup nightly with rust-src and a stock `cargo install bpf-linker`.
//!
//! `LB_EBPF_TOOLCHAIN` picks one explicitly. aya-build is not used because it fixes the
//! rustflags, and the data plane needs `-C target-cpu=v3` (atomic fetch-and-add).
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const OBJECT: &str = "lb-xdp";
const VARIANT: &str = "lb-xdp-variant";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for dir in ["lb-ebpf", "lb-common"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=LB_EBPF_TOOLCHAIN");

    let target_dir = out_dir.join("ebpf-target");
    // The object lb embeds, then a variant for the upgrade tests: the same source with the
    // `variant` feature (a small real difference, see lb-ebpf's Cargo.toml), so a test can swap
    // one build's program for another's under traffic.
    for (features, name) in [(None, OBJECT), (Some("variant"), VARIANT)] {
        build_object(root, &target_dir, features);
        let built = target_dir
            .join("bpfel-unknown-none")
            .join("release")
            .join(OBJECT);
        if let Err(e) = std::fs::copy(&built, out_dir.join(name)) {
            fail(&format!("{}: {e}", built.display()));
        }
    }
}

fn build_object(root: &Path, target_dir: &Path, features: Option<&str>) {
    let (mut cargo, rustc) = ebpf_cargo(&toolchain());
    cargo
        .current_dir(root)
        .args([
            "build",
            "--package",
            "lb-ebpf",
            "--bin",
            OBJECT,
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", "bpf-linker")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "--cfg=bpf_target_arch=\"x86_64\"",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
                "-Ctarget-cpu=v3",
            ]
            .join("\x1f"),
        )
        // The outer build's compiler settings must not leak into the BPF build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    if let Some(f) = features {
        cargo.args(["--features", f]);
    }
    if let Some(rustc) = rustc {
        cargo.env("RUSTC", rustc);
    }
    match cargo.status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("building the XDP program failed ({s})")),
        Err(e) => fail(&format!("could not start cargo for the XDP program: {e}")),
    }
}

fn toolchain() -> String {
    if let Ok(t) = env::var("LB_EBPF_TOOLCHAIN") {
        return t;
    }
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if listed.lines().any(|l| l.starts_with("debian-web")) {
        "debian-web".into()
    } else {
        "nightly".into()
    }
}

/// The cargo to run, and the rustc it must use when that is not implied by rustup.
fn ebpf_cargo(toolchain: &str) -> (Command, Option<&'static str>) {
    if Command::new("rustup").arg("--version").output().is_ok() {
        let mut c = Command::new("rustup");
        c.args(["run", toolchain, "cargo"]);
        (c, None)
    } else if Path::new("/usr/bin/cargo").exists() {
        // No rustup: Debian's toolchain directly.
        (Command::new("/usr/bin/cargo"), Some("/usr/bin/rustc"))
    } else {
        (Command::new("cargo"), None)
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!("hint: run `cargo xtask setup` to install the eBPF toolchain (see README, Building)");
    std::process::exit(1);
}
