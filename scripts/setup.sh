#!/usr/bin/env bash
# Installs everything lb needs to build, run, test and benchmark, idempotently: a second run
# changes nothing and takes a second or two. Called by `cargo xtask setup|build|run|test|bench`.
#
# The eBPF toolchain (README, "Building"):
#   - if rustup's nightly has rust-src and bpf-linker is on PATH, that is used as is;
#   - otherwise Debian's rustc-web + rust-web-src, with bpf-linker built on the LLVM that
#     rustc-web uses, linked into rustup as the "debian-web" toolchain (no downloads from
#     rustup's servers are needed, only apt and crates.io).
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }
need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "[setup] installing packages needs root: run as root (or through sudo)" >&2
        exit 1
    fi
}

# Debian packages for the tests and benchmarks (real servers, syslog, HAProxy for the
# side-by-side comparison, load generators, a browser for the stats page test, the database
# and cache servers the protocol health checks are tested against, BIRD for the several-nodes
# test: a router and lb nodes speaking BGP, in namespaces; dnsmasq, the name server the
# run-time DNS resolution test moves servers with).
PACKAGES=(
    iproute2 ethtool bpftool curl socat systemd
    nginx apache2 haproxy rsyslog wrk
    chromium bird2
    redis-server mariadb-server
    dnsmasq-base
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

apt_install() {
    need_root
    # Never start the services these packages ship (nginx, apache2, haproxy, rsyslog, redis,
    # mariadb, bird):
    # the tests start their own, inside namespaces.
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1
    fi
    if [ -z "${LB_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        export LB_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    if [ "$created" = 1 ]; then rm -f "$policy"; fi
}

if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt_install "${missing[@]}"
fi

# --- eBPF toolchain -------------------------------------------------------------------------
nightly_ready() {
    command -v rustup >/dev/null 2>&1 &&
        rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' &&
        command -v bpf-linker >/dev/null 2>&1 &&
        ! rustup toolchain list 2>/dev/null | grep -q '^debian-web'
}

if nightly_ready; then
    log "eBPF toolchain: rustup nightly with rust-src and $(bpf-linker --version)"
    exit 0
fi

for p in rustc-web cargo-web rust-web-src; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        log "installing Debian's rustc-web, cargo-web and rust-web-src"
        apt_install rustc-web cargo-web rust-web-src
        break
    }
done

# bpf-linker must use the same LLVM as the compiler that emits the bitcode.
llvm=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if [ -z "$llvm" ]; then
    echo "[setup] cannot tell which LLVM /usr/bin/rustc uses" >&2
    exit 1
fi
dpkg-query -W -f='${Status}' "llvm-$llvm-dev" 2>/dev/null | grep -q "install ok installed" || {
    log "installing llvm-$llvm-dev"
    apt_install "llvm-$llvm-dev"
}

linker=$(command -v bpf-linker || true)
if [ -z "$linker" ] || ! ldd "$linker" 2>/dev/null | grep -q "libLLVM.so.$llvm"; then
    log "building bpf-linker 0.13.0 on LLVM $llvm (about a minute)"
    LLVM_PREFIX="/usr/lib/llvm-$llvm" cargo install --locked --force bpf-linker@0.13.0 \
        --no-default-features --features "llvm-$llvm" >/dev/null
fi

if command -v rustup >/dev/null 2>&1 && ! rustup toolchain list | grep -q '^debian-web'; then
    # Only a symlink: lets build.rs run `rustup run debian-web cargo`.
    rustup toolchain link debian-web /usr
fi
log "eBPF toolchain: Debian rustc $(/usr/bin/rustc -V | cut -d' ' -f2) on LLVM $llvm, $(bpf-linker --version)"
