//! `lb run`: read and check the config, load and attach the data plane, run the health
//! checks and keep the maps in line with the servers' state, log like HAProxy, detach on
//! SIGINT/SIGTERM.
//!
//! - [`plan`]: the config resolved against this host (routes, interfaces);
//! - [`servers`]: one entry per server (place in the data plane, state, history);
//! - [`balancer`]: the servers' states and how they are written into the maps;
//! - [`runtime`]: events (checks, operators, reloads) applied to states, then logged;
//! - [`sysctl`]: the host settings the data plane needs while it runs;
//! - [`history`]: what `show stat` remembers (changes, downtime, failed checks).
pub mod balancer;
pub mod flowlog;
pub mod history;
pub mod plan;
pub mod privileges;
pub mod runtime;
pub mod servers;
pub mod sysctl;

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
pub use balancer::Balancer;
pub use plan::{Plan, host_diagnostics, plan};
use runtime::Runtime;
pub use servers::{Admin, ServerEntry, ServerState, Servers};
use tokio::sync::mpsc;

use crate::{
    config::{self, Config, Severity},
    dataplane::{Dataplane, LoadOptions, pin_dir},
    logs::Logger,
};

/// Re-readable from inside a `chroot`: the directory is opened once, up front.
pub struct ConfigFile {
    pub path: std::path::PathBuf,
    dir: std::fs::File,
}

impl ConfigFile {
    pub fn open(path: &Path) -> Result<ConfigFile> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::fs::File::open(parent)
            .with_context(|| format!("opening directory {}", parent.display()))?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            dir,
        })
    }

    /// Reads and validates the file (through the directory handle).
    pub fn load(&self) -> Result<config::Loaded, config::ConfigError> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = self.path.display().to_string();
        let fail = |e: std::io::Error| {
            config::ConfigError::single(config::Diagnostic::alert(
                None,
                format!("cannot read '{name}': {e}"),
            ))
        };
        let base = self
            .path
            .file_name()
            .and_then(|b| std::ffi::CString::new(b.as_encoded_bytes()).ok())
            .ok_or_else(|| fail(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
        // SAFETY: openat on a directory fd we own, with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                base.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd, owned by the File from here on.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes).map_err(fail)?;
        config::parse_bytes(&name, &bytes, config::is_native(&self.path))
    }
}

/// `lb run`. `foreground` overrides the config's `daemon` (HAProxy's `-db`).
pub fn run(path: &Path, extra_ifaces: &[String], foreground: bool) -> Result<()> {
    let file = ConfigFile::open(path)?;
    let loaded = file
        .load()
        .map_err(|e| anyhow!("{e}\n[ALERT] config : Fatal errors found in configuration."))?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let cfg = loaded.config;
    crate::rlimit::raise_nofile(&cfg);
    let host = host_diagnostics(&cfg);
    for d in &host {
        eprintln!("{d}");
    }
    if host.iter().any(|d| d.severity == Severity::Alert) {
        bail!("config : Fatal errors found in configuration.");
    }
    let plan = plan(&cfg, extra_ifaces)?;
    let identity = privileges::resolve(&cfg.global)?;
    // Forking must happen before the runtime starts its threads.
    let readiness = if cfg.global.daemon && !foreground {
        privileges::daemonize()?
    } else {
        privileges::Readiness::foreground()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, plan, file, extra_ifaces, identity, readiness))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: Config,
    plan: Plan,
    file: ConfigFile,
    extra_ifaces: &[String],
    identity: privileges::Identity,
    mut readiness: privileges::Readiness,
) -> Result<()> {
    let logger = Logger::from_global(&cfg.global);
    let dp = Dataplane::load(&LoadOptions {
        pin_dir: Some(pin_dir(&cfg.global.instance)),
        conntrack_entries: cfg.global.conntrack_entries,
        ..LoadOptions::default()
    })?;
    for n in &dp.notes {
        eprintln!("[WARNING] {n}");
    }
    let sysctls = sysctl::Forwarding::enable(&plan.interfaces)?;
    let ifaces = plan.interfaces.clone();
    let mut bal = Balancer::install(dp, plan, &cfg)?;
    // The stats socket and HTTP listener: created while the daemon has its privileges.
    let api_bound = crate::api::bind(&cfg)?;
    for i in &ifaces {
        let mode = bal.dp.attach(i)?;
        if mode == aya::programs::XdpMode::Skb {
            eprintln!(
                "[WARNING] {i}: the driver refused native XDP, attached in generic (skb) mode"
            );
        }
    }
    if let Some(pidfile) = &cfg.global.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pidfile {}", pidfile.display()))?;
    }
    let (api_tx, mut api_rx) = mpsc::channel(crate::api::QUEUE);
    let api = crate::api::serve(api_bound, api_tx)?;
    // TLS checks' CA files, read while their paths still resolve (as HAProxy does).
    crate::health::tls::preload(&cfg);
    // Everything that needs root is open: drop to the configured user (keeping CAP_BPF and
    // CAP_NET_ADMIN) and chroot.
    privileges::drop_privileges(&cfg.global, &identity)?;
    let (tx, mut events) = mpsc::channel(1024);
    let mut rt = Runtime::new(cfg, file, extra_ifaces.to_vec(), bal, tx, logger, sysctls);
    rt.start_flow_log();
    rt.log_startup();
    eprintln!(
        "[NOTICE] lb ready: attached to {} (instance '{}', pid {})",
        ifaces.join(", "),
        rt.config().global.instance,
        std::process::id()
    );
    readiness.ready();

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = &mut shutdown => { r?; break; }
            Some(ev) = events.recv() => rt.on_check(ev)?,
            Some(req) = api_rx.recv() => rt.on_api(req),
            _ = hup.recv() => rt.reload(&mut events).await,
        }
    }
    drop(api);
    rt.stop().await?;
    let cfg = rt.config();
    if let (Some(pidfile), None) = (&cfg.global.pidfile, &cfg.global.chroot) {
        let _ = std::fs::remove_file(pidfile);
    }
    eprintln!("[NOTICE] lb stopped: detached from {}", ifaces.join(", "));
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
