//! `tether-bench [--quick]`: every row of DESIGN section 10 measured against the real test
//! cluster, each side by side with its baselines of the same run: **direct** (the same
//! operation inside the pod, or on the host without the layer) and **peer** (`kubectl
//! port-forward` through the same API server, kubectl built from the same module).
//!
//! Prints one block per row, a summary and `N passed, N failed` (passed = measured). A missed
//! target is reported, never a failure: the exit status is 1 only when a row could not be
//! measured. Needs root (the test cluster, `nsenter`). `tests/bench/run` builds and runs it.

mod agent_rtt;
mod bench;
mod daemon;
mod peer;
mod pod;
mod report;
mod runner;

use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "tether-bench",
    about = "tether's performance budget (DESIGN section 10) against direct and peer baselines"
)]
struct Args {
    /// Few iterations and small files: a smoke run for CI (well under a minute once the
    /// cluster runs); the figures are not meant to be quoted.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let params = if args.quick {
        bench::Params::quick()
    } else {
        bench::Params::full()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (header, rows) = rt.block_on(bench::run(params));
    print!("{}", report::render(&rows, &header));
    if rows.iter().all(|r| r.outcome.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
