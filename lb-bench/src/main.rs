//! `cargo xtask bench [--quick]`: lb's benchmarks. Every figure is printed next to a baseline
//! measured in the same invocation (these machines are noisy), as a ratio; nothing here
//! asserts on time.
mod cost;
mod report;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "lb-bench")]
pub struct Args {
    /// Fewer repetitions and shorter runs (under a minute).
    #[arg(long)]
    pub quick: bool,
    /// Only these sections (cost); default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    lb_testbed::require_root();
    let mut out = report::Report::default();
    if args.wants("cost") {
        cost::run(&args, &mut out)?;
    }
    print!("{}", out.markdown());
    Ok(())
}
