//! The `lb` command.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use lb::{api::client, config, daemon, show, stop};

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "An XDP L4 load balancer with HAProxy's habits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the balancer (the daemon) with a config file (native .toml or haproxy.cfg).
    Run {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Also attach to this interface (repeatable); binds and routes already pick the
        /// interfaces that carry VIP and server traffic.
        #[arg(short = 'i', long = "interface")]
        interfaces: Vec<String>,
        /// Stay in the foreground even if the config says `daemon` (HAProxy's -db).
        #[arg(long, visible_alias = "db")]
        foreground: bool,
        /// Start even if pinned state this build cannot adopt (established connections) must
        /// be dropped; without it, lb refuses and says what would be lost.
        #[arg(long)]
        discard_state: bool,
        /// Load this XDP object instead of the built-in one (to try another build's data
        /// plane on a running instance).
        #[arg(long, hide = true)]
        xdp_object: Option<PathBuf>,
    },
    /// Stop an instance: its daemon if one runs, and the data plane it leaves attached.
    Stop {
        /// Take the instance's name from this config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Instance name (default "lb", or the config's `instance`).
        #[arg(long)]
        instance: Option<String>,
        /// Also remove the pinned maps: established flows and counters are lost.
        #[arg(long)]
        purge: bool,
    },
    /// Check a config file and exit, like `haproxy -c -f FILE`.
    Check {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Print a config file (haproxy.cfg or native) as native TOML.
    Convert {
        /// The file to convert.
        config: PathBuf,
    },
    /// Change a server through the running daemon's stats socket (needs level admin).
    Server {
        #[command(subcommand)]
        action: ServerAction,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Set a server's weight (0-256, or N% of its configured weight) through the socket.
    Weight {
        /// BACKEND/SERVER
        server: String,
        weight: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Make the data plane say why it passes, drops or rewrites each packet (printed by the
    /// daemon as `[TRACE]` lines), or stop it. Off, tracing costs the data plane nothing.
    Trace {
        #[command(subcommand)]
        switch: TraceSwitch,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Send runtime API commands as they are (like `echo CMD | socat stdio SOCKET`).
    Api {
        /// The command, e.g. `show stat` or `show info; show servers state`.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Inspect a running instance through its pinned BPF maps.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
        /// Instance name (the config's `instance`, default "lb").
        #[arg(long, global = true, default_value = "lb")]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Args)]
struct SocketArgs {
    /// The stats socket (default: the one in -c CONFIG, else /run/lb/stats).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Take the socket's path from this config file.
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum ServerAction {
    /// Maintenance: no new flows, existing ones dropped, checks paused.
    Disable { server: String },
    /// Back to ready (from maintenance or drain).
    Enable { server: String },
    /// Drain: no new flows, existing ones continue.
    Drain { server: String },
}

#[derive(Subcommand)]
enum TraceSwitch {
    /// Start tracing (again: with the new filter).
    On {
        /// Only packets of flows to this VIP: ADDRESS or ADDRESS:PORT, IPv4 or IPv6
        /// (`10.0.0.1:80`, `[fd00::1]:80`); the other family's packets are not traced.
        #[arg(long)]
        vip: Option<String>,
    },
    /// Stop tracing.
    Off,
}

#[derive(Subcommand)]
enum ShowWhat {
    /// Servers of every backend: address, state, weight, flows and counters.
    #[command(alias = "servers")]
    Backends,
    /// Tracked flows (forward direction), filtered, at most --limit of them.
    Flows {
        /// Only flows to this backend.
        #[arg(long)]
        backend: Option<String>,
        /// Only flows to this server (SERVER or BACKEND/SERVER).
        #[arg(long)]
        server: Option<String>,
        /// Only flows from this client address.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Data-plane counters: why packets were passed, dropped or forwarded.
    Stats,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            interfaces,
            foreground,
            discard_state,
            xdp_object,
        } => daemon::run(
            &config,
            &daemon::RunOptions {
                extra_ifaces: interfaces,
                foreground,
                discard_state,
                xdp_object,
            },
        ),
        Command::Stop {
            config,
            instance,
            purge,
        } => stop::stop(config.as_deref(), instance.as_deref(), purge),
        Command::Check { config } => return check(&config),
        Command::Convert { config } => return convert(&config),
        Command::Show {
            what,
            instance,
            json,
        } => match what {
            ShowWhat::Backends => show::backends(&instance, json),
            ShowWhat::Stats => show::stats(&instance, json),
            ShowWhat::Flows {
                backend,
                server,
                client,
                limit,
            } => show::flows(
                &instance,
                &show::FlowFilter {
                    backend,
                    server,
                    client,
                    limit,
                },
                json,
            ),
        },
        Command::Server { action, socket } => {
            let (cmd, server) = match action {
                ServerAction::Disable { server } => ("state maint", server),
                ServerAction::Enable { server } => ("state ready", server),
                ServerAction::Drain { server } => ("state drain", server),
            };
            change(&socket, &format!("set server {server} {cmd}"))
        }
        Command::Weight {
            server,
            weight,
            socket,
        } => change(&socket, &format!("set server {server} weight {weight}")),
        Command::Trace { switch, socket } => {
            let cmd = match switch {
                TraceSwitch::On { vip: Some(v) } => format!("trace xdp on vip {v}"),
                TraceSwitch::On { vip: None } => "trace xdp on".to_string(),
                TraceSwitch::Off => "trace xdp off".to_string(),
            };
            trace(&socket, &cmd)
        }
        Command::Api { command, socket } => raw(&socket, &command.join(" ")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[ALERT] {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that answers nothing on success; prints what happened.
fn change(s: &SocketArgs, command: &str) -> anyhow::Result<()> {
    let path = client::socket_path(s.socket.as_deref(), s.config.as_deref())?;
    let result = client::change(&path, command);
    if s.json {
        let v = match &result {
            Ok(()) => serde_json::json!({ "ok": true, "command": command }),
            Err(e) => {
                serde_json::json!({ "ok": false, "command": command, "error": format!("{e:#}") })
            }
        };
        println!("{v}");
        return result.map_err(|_| anyhow::anyhow!("{command}: refused"));
    }
    result.map_err(|e| anyhow::anyhow!("{command}: {e:#}"))
}

/// `lb trace`: `on` answers once the verifier accepted the tracing copy of the program, which
/// takes seconds.
fn trace(s: &SocketArgs, command: &str) -> anyhow::Result<()> {
    let path = client::socket_path(s.socket.as_deref(), s.config.as_deref())?;
    client::change_within(&path, command, std::time::Duration::from_secs(130))
        .map_err(|e| anyhow::anyhow!("{command}: {e:#}"))
}

fn raw(s: &SocketArgs, command: &str) -> anyhow::Result<()> {
    let path = client::socket_path(s.socket.as_deref(), s.config.as_deref())?;
    let answer = client::request(&path, command)?;
    if s.json {
        println!(
            "{}",
            serde_json::json!({ "command": command, "answer": answer })
        );
    } else {
        print!("{answer}");
    }
    Ok(())
}

fn convert(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            print!("{}", config::convert::to_toml(&loaded.config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("[ALERT] config : Fatal errors found in configuration.");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    // As `haproxy -c`, host names are resolved: a name that does not resolve fails the check.
    let loaded = config::load(path).and_then(|mut l| {
        let resolved = daemon::resolve_names(&mut l.config)?;
        l.warnings.extend(resolved);
        Ok(l)
    });
    match loaded {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let host = daemon::host_diagnostics(&loaded.config, config::validate::HostUse::Check);
            for d in &host {
                eprintln!("{d}");
            }
            if host.iter().any(|d| d.severity == config::Severity::Alert) {
                eprintln!("[ALERT] config : Fatal errors found in configuration.");
                return ExitCode::FAILURE;
            }
            println!("Configuration file is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("[ALERT] config : Fatal errors found in configuration.");
            ExitCode::FAILURE
        }
    }
}
