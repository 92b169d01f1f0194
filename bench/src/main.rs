//! `pearlsync-bench`: benchmarks of what users pay for — Brightpearl budget, CPU, memory and
//! Lambda cold start. Each scenario prints progress on stderr, then writes
//! `bench/reports/<name>.json` and `.md`; `--json` also prints the JSON on stdout.

mod chart;
mod coldstart;
mod crash;
mod inventory;
mod measure;
mod orders;
mod reorder;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "pearlsync-bench",
    about = "pearlsync benchmarks: Brightpearl budget, CPU, memory, cold start"
)]
struct Cli {
    /// Print the report's JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Report directory (default: bench/reports of this checkout).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// One steady-state inventory poll (after a cold one) against the sandbox.
    Inventory(inventory::InventoryArgs),
    /// Orders as signed webhooks through the ingress, written by the order writer.
    Orders(orders::OrdersArgs),
    /// One reorder check (and the steady one after it): Brightpearl requests, POs, rows, and
    /// whether it fits one invocation at the real limit.
    Reorder(reorder::ReorderArgs),
    /// `serve` as a child process, killed with SIGKILL at random moments while orders arrive:
    /// lost and duplicated orders from the sandbox's records.
    Crash(crash::CrashArgs),
    /// Lambda init time, peak RSS and binary size of each function against a hello-world.
    Coldstart(coldstart::ColdstartArgs),
    /// Internal: one measured poll (spawned by `inventory`).
    #[command(hide = true)]
    PollChild(inventory::PollChildArgs),
    /// Internal: the AWS configuration load and client builds, timed in a fresh process
    /// (spawned by `coldstart`).
    #[command(hide = true)]
    AwsFirstUseChild,
    /// Internal: the sandbox in its own process (spawned by `inventory`).
    #[command(hide = true)]
    SandboxChild(inventory::SandboxChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Quiet unless RUST_LOG asks (e.g. RUST_LOG=pearlsync::brightpearl=info to see the waits).
    pearlsync::telemetry::init_with_default("off");
    let out = cli.out.clone().unwrap_or_else(measure::default_report_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.scenario {
            Scenario::Inventory(args) => inventory::run(args, &out, cli.json).await,
            Scenario::Orders(args) => orders::run(args, &out, cli.json).await,
            Scenario::Reorder(args) => reorder::run(args, &out, cli.json).await,
            Scenario::Coldstart(args) => coldstart::run(args, &out, cli.json).await,
            Scenario::Crash(args) => crash::run(args, &out, cli.json).await,
            Scenario::PollChild(args) => inventory::poll_child_main(args).await,
            Scenario::AwsFirstUseChild => coldstart::aws_first_use_child_main().await,
            Scenario::SandboxChild(args) => inventory::sandbox_child_main(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pearlsync-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
