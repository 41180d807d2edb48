//! `lb run`: read and check the config, load and attach the data plane, run the health
//! checks and keep the maps in line with the servers' state, log like HAProxy, detach on
//! SIGINT/SIGTERM.
//!
//! - [`plan`]: the config resolved against this host (routes, interfaces);
//! - [`balancer`]: server states and how they are written into the maps;
//! - [`runtime`]: events (checks, operators) applied to states, then logged;
//! - [`sysctl`]: the host settings the data plane needs while it runs;
//! - [`admin`]: the runtime API's requests, answered in the serve loop;
//! - [`history`]: what `show stat` remembers (changes, downtime, failed checks).
pub mod admin;
pub mod balancer;
pub mod history;
pub mod plan;
pub mod runtime;
pub mod sysctl;

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
pub use balancer::{Admin, Balancer, ServerState};
pub use plan::{Plan, host_diagnostics, plan};
use runtime::Runtime;
use tokio::sync::mpsc;

use crate::{
    config::{self, Config, Severity},
    dataplane::{Dataplane, LoadOptions, pin_dir},
    logs::{Logger, format::startup_lines},
};

/// How long a next hop cached by the data plane is trusted.
const FIB_REFRESH: Duration = Duration::from_secs(1);

/// `lb run`.
pub fn run(path: &Path, extra_ifaces: &[String]) -> Result<()> {
    let loaded = config::load(path)
        .map_err(|e| anyhow!("{e}\n[ALERT] config : Fatal errors found in configuration."))?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let cfg = loaded.config;
    let host = host_diagnostics(&cfg);
    for d in &host {
        eprintln!("{d}");
    }
    if host.iter().any(|d| d.severity == Severity::Alert) {
        bail!("config : Fatal errors found in configuration.");
    }
    let plan = plan(&cfg, extra_ifaces)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cfg, plan, path, extra_ifaces))
}

async fn serve(cfg: Config, plan: Plan, path: &Path, extra_ifaces: &[String]) -> Result<()> {
    let logger = Logger::from_global(&cfg.global);
    let dp = Dataplane::load(&LoadOptions {
        pin_dir: Some(pin_dir(&cfg.global.instance)),
        conntrack_entries: cfg.global.conntrack_entries,
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
    let (tx, mut events) = mpsc::channel(1024);
    let mut rt = Runtime::new(
        cfg,
        path.to_path_buf(),
        extra_ifaces.to_vec(),
        bal,
        tx,
        logger,
        sysctls,
    );
    for line in startup_lines(&rt.cfg, rt.flavor) {
        rt.log(&line);
    }
    eprintln!(
        "[NOTICE] lb ready: attached to {} (instance '{}', pid {})",
        ifaces.join(", "),
        rt.cfg.global.instance,
        std::process::id()
    );

    let mut refresh = tokio::time::interval(FIB_REFRESH);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = &mut shutdown => { r?; break; }
            Some(ev) = events.recv() => rt.on_check(ev)?,
            Some(req) = api_rx.recv() => rt.on_api(req),
            _ = refresh.tick() => rt.bal.bump_fib_epoch()?,
            _ = hup.recv() => rt.reload(&mut events).await,
        }
    }
    drop(api);
    let Runtime {
        mut bal,
        checkers,
        cfg,
        ..
    } = rt;
    checkers.shutdown().await;
    bal.dp.detach_all()?;
    if let Some(pidfile) = &cfg.global.pidfile {
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
