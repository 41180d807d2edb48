//! The `lb` command.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use lb::{config, daemon, show};

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

#[derive(Subcommand)]
enum ShowWhat {
    /// Servers of every backend: address, state, weight, flows and counters.
    Backends,
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
        } => daemon::run(&config, &interfaces, foreground),
        Command::Check { config } => return check(&config),
        Command::Convert { config } => return convert(&config),
        Command::Show {
            what,
            instance,
            json,
        } => match what {
            ShowWhat::Backends => show::backends(&instance, json),
            ShowWhat::Stats => show::stats(&instance, json),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[ALERT] {e:#}");
            ExitCode::FAILURE
        }
    }
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
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let host = daemon::host_diagnostics(&loaded.config);
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
