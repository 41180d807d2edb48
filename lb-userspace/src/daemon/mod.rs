//! `lb run`: read and check the config, load and attach the data plane, run the health
//! checks and keep the maps in line with the servers' state, log like HAProxy.
//!
//! The data plane outlives the daemon: links and maps are pinned, so a crash or SIGKILL
//! leaves forwarding as it was, and the next `lb run` adopts it. How the daemon ends:
//! - SIGTERM (`systemctl stop` and `restart`): hands over. The program stays attached and
//!   takes new flows for [`HANDOVER_GRACE`], long enough for a restarted daemon to adopt it;
//!   after that only established flows are forwarded, new ones go to the host.
//! - SIGINT (Ctrl-C) and `lb stop`: detaches at once.
//!
//! - [`plan`]: the config resolved against this host (routes, interfaces);
//! - [`servers`]: one entry per server (place in the data plane, state, history);
//! - [`slowstart`]: how a server coming back UP ramps its weight and `maxconn`;
//! - [`recount`]: the active flows per server, recounted from the flow tables;
//! - [`tracing`]: `lb trace`, the data plane's decisions printed;
//! - [`balancer`]: the servers' states and how they are written into the maps;
//! - [`runtime`]: events (checks, operators, reloads, DNS answers) applied to states, then
//!   logged;
//! - [`dns`]: `resolvers` sections: servers following their host name while running;
//! - [`sysctl`]: the host settings the data plane needs while it runs;
//! - [`history`]: what `show stat` remembers (changes, downtime, failed checks).
pub mod addrwatch;
pub mod announce;
pub mod balancer;
pub mod dns;
pub mod flowlog;
pub mod history;
pub mod lock;
pub mod notify;
pub mod plan;
pub mod privileges;
pub mod recount;
pub mod runtime;
pub mod server_state;
pub mod servers;
pub mod slowstart;
pub mod sysctl;
pub mod tracing;

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
pub use balancer::Balancer;
pub use plan::{Local, Plan, host_diagnostics, plan};
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

/// Gives the servers named by host name their addresses (`init-addr`), reading `last` ones
/// from the state files; blocks on the system's resolver.
pub fn resolve_names(cfg: &mut Config) -> Result<Vec<config::Diagnostic>, config::ConfigError> {
    let last = server_state::last_addrs(cfg, |p| std::fs::read_to_string(p).ok());
    config::resolve::resolve(cfg, &config::resolve::SystemResolver, &|b, s| {
        last.get(&(b.to_string(), s.to_string())).copied()
    })
}

/// How long a stopped daemon's data plane keeps taking new flows, waiting for a successor
/// (a `systemctl restart` takes a second or two).
pub const HANDOVER_GRACE: Duration = Duration::from_secs(5);

/// What `lb run` was asked besides the config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Attach to these interfaces too (`-i`).
    pub extra_ifaces: Vec<String>,
    /// Stay in the foreground whatever the config's `daemon` says (HAProxy's `-db`).
    pub foreground: bool,
    /// Start even if pinned state (established flows) must be dropped.
    pub discard_state: bool,
    /// Another XDP object than the built-in one (trying an upgrade).
    pub xdp_object: Option<std::path::PathBuf>,
}

/// `lb run`.
pub fn run(path: &Path, opts: &RunOptions) -> Result<()> {
    // Before any chroot: sysctls stay reachable on reload.
    crate::net::open_proc_sys()?;
    let file = ConfigFile::open(path)?;
    let loaded = file
        .load()
        .map_err(|e| anyhow!("{e}\n[ALERT] config : Fatal errors found in configuration."))?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    // Before the runtime starts: the system's resolver blocks.
    let mut cfg = loaded.config;
    for w in resolve_names(&mut cfg)
        .map_err(|e| anyhow!("{e}\n[ALERT] config : Fatal errors found in configuration."))?
    {
        eprintln!("{w}");
    }
    crate::rlimit::raise_nofile(&cfg);
    let host = host_diagnostics(&cfg, config::validate::HostUse::Run);
    for d in &host {
        eprintln!("{d}");
    }
    if host.iter().any(|d| d.severity == Severity::Alert) {
        bail!("config : Fatal errors found in configuration.");
    }
    // Before anything is touched: a second daemon on this instance changes nothing.
    let mut lock = lock::InstanceLock::acquire(&cfg.global.instance)?;
    let plan = plan(&cfg, &opts.extra_ifaces)?;
    let identity = privileges::resolve(&cfg.global)?;
    // Forking must happen before the runtime starts its threads.
    let readiness = if cfg.global.daemon && !opts.foreground {
        let r = privileges::daemonize()?;
        lock.record_pid()?;
        r
    } else {
        privileges::Readiness::foreground()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let r = rt.block_on(serve(cfg, plan, file, opts, identity, readiness));
    drop(lock);
    r
}

/// How the serve loop ended.
enum Exit {
    /// SIGTERM: leave the data plane to a successor.
    HandOver,
    /// SIGINT: take it down.
    Detach,
}

async fn serve(
    cfg: Config,
    plan: Plan,
    file: ConfigFile,
    opts: &RunOptions,
    identity: privileges::Identity,
    mut readiness: privileges::Readiness,
) -> Result<()> {
    let logger = Logger::from_global(&cfg.global);
    let pins = pin_dir(&cfg.global.instance);
    let dp = Dataplane::load(&LoadOptions {
        pin_dir: Some(pins.clone()),
        conntrack_entries: cfg.global.flow_capacity(),
        halfopen_entries: cfg.global.halfopen_entries,
        // Sized when loaded: a reload that adds the first IPv6 service needs a restart
        // for IPv6 flows to have room (the tables cannot grow in place).
        ipv6: !plan.layout.services6.is_empty(),
        discard_state: opts.discard_state,
        object: opts.xdp_object.clone(),
        trace: None,
    })?;
    for n in &dp.notes {
        eprintln!("[WARNING] {n}");
    }
    let ipv6 = !plan.layout.services6.is_empty();
    let sysctls = sysctl::Forwarding::enable(&plan.interfaces, ipv6)?;
    let ifaces = plan.interfaces.clone();
    // Every map is written before the program is attached (or swapped in): no packet sees
    // this build's program with an earlier run's tables.
    let mut bal = Balancer::install(dp, plan, &cfg)?;
    // The stats socket and HTTP listener: created while the daemon has its privileges.
    let api_bound = crate::api::bind(&cfg)?;
    // A handle of its own for the recount of active flows, which scans off the serve loop.
    let recount_maps = crate::dataplane::Maps::from_pins(&pins)?;
    for i in &ifaces {
        let a = bal.dp.attach(i)?;
        if a.adopted {
            eprintln!("[NOTICE] {i}: took over the data plane attached by an earlier run");
        } else if a.mode == Some(aya::programs::XdpMode::Skb) {
            eprintln!(
                "[WARNING] {i}: the driver refused native XDP, attached in generic (skb) mode"
            );
        }
    }
    let wanted: Vec<u32> = bal.dp.attachments().iter().map(|a| a.ifindex).collect();
    for ifindex in crate::dataplane::links::detach_pinned_except(&pins, &wanted)? {
        eprintln!(
            "[NOTICE] detached from interface #{ifindex}, which this configuration does not use"
        );
    }
    bal.start_announcing()?;
    if let Some(pidfile) = &cfg.global.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pidfile {}", pidfile.display()))?;
    }
    let (api_tx, mut api_rx) = mpsc::channel(crate::api::QUEUE);
    let api = crate::api::serve(api_bound, api_tx)?;
    let mut addresses = addrwatch::watch()?;
    let state_files = runtime::StateFiles::open(&cfg, runtime::StateFiles::default());
    // TLS checks' CA files, read while their paths still resolve (as HAProxy does).
    crate::health::tls::preload(&cfg);
    // Everything that needs root is open: drop to the configured user (keeping CAP_BPF and
    // CAP_NET_ADMIN) and chroot.
    privileges::drop_privileges(&cfg.global, &identity)?;
    let (tx, mut events) = mpsc::channel(1024);
    let opened = runtime::Opened {
        source: file,
        extra_ifaces: opts.extra_ifaces.clone(),
        sysctls,
        state_files,
        recount_maps,
    };
    let (traces_tx, mut traces) = mpsc::channel(4);
    let (dns_tx, mut dns_events) = mpsc::channel(64);
    let mut rt = Runtime::new(cfg, bal, tx, logger, opened, traces_tx, dns_tx);
    rt.load_server_state();
    rt.start_flow_log();
    rt.log_startup();
    eprintln!(
        "[NOTICE] lb ready: attached to {} (instance '{}', pid {})",
        ifaces.join(", "),
        rt.config().global.instance,
        std::process::id()
    );
    // Signals are caught before anyone hears "ready": a reload asked for right away must not
    // meet SIGHUP's default action (exit).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    // Slow starts move on (their steps are whole seconds, as HAProxy's warm-up task's), and
    // `observe` counts are read.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    readiness.ready();
    notify::ready();

    let exit = loop {
        tokio::select! {
            exit = &mut shutdown => break exit,
            Some(ev) = events.recv() => rt.on_check(ev)?,
            Some(req) = api_rx.recv() => rt.on_api(req).await,
            Some(()) = addresses.recv() => rt.on_addresses()?,
            _ = tick.tick() => rt.on_tick()?,
            Some(t) = traces.recv() => rt.on_trace_loaded(t),
            Some(ev) = dns_events.recv() => rt.on_dns(ev).await?,
            _ = hup.recv() => {
                notify::notify("RELOADING=1");
                rt.reload(&mut events).await;
                notify::ready();
            }
        }
    };
    notify::notify("STOPPING=1");
    drop(api);
    let cfg_pidfile = (
        rt.config().global.pidfile.clone(),
        rt.config().global.chroot.is_none(),
    );
    match exit {
        Exit::HandOver => {
            rt.hand_over(HANDOVER_GRACE).await?;
            eprintln!(
                "[NOTICE] lb stopped: the data plane stays attached to {} and takes new flows for {} s more (a new `lb run` takes over; `lb stop` detaches)",
                ifaces.join(", "),
                HANDOVER_GRACE.as_secs()
            );
        }
        Exit::Detach => {
            rt.stop().await?;
            eprintln!("[NOTICE] lb stopped: detached from {}", ifaces.join(", "));
        }
    }
    if let (Some(pidfile), true) = cfg_pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    Ok(())
}

/// SIGTERM or SIGINT, whichever comes first; the handlers are in place when this returns.
fn shutdown_signal() -> Result<impl std::future::Future<Output = Exit>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Exit::HandOver,
            _ = int.recv() => Exit::Detach,
        }
    })
}
