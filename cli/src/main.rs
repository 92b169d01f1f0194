//! `pearlsync`: the demo, one-box serving, and the operations commands. Wiring only; the
//! commands live in the `pearlsync_cli` library.

use clap::{Parser, Subcommand};
use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::config::Config;
use pearlsync::failures::{FailureCode, Resolution, Selector};
use pearlsync::queue::QueueName;
use pearlsync_cli::commands::{self, CliResult, Function, ServeOptions};
use pearlsync_cli::{demo, failures, local, status};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "pearlsync", version, about = "Keeps Brightpearl and your web shops in step")]
struct Cli {
    /// Configuration file (TOML); overrides PEARLSYNC_CONFIG. Environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One whole cycle against the bundled sandbox, with embedded state.
    Demo(demo::DemoArgs),
    /// Run one function's handler on a sample event and print its response. Without a
    /// configuration it runs against the bundled sandbox with fresh embedded state.
    Invoke { function: Function, event: PathBuf },
    /// All four concerns in one process: webhook listener, queue worker, schedules.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 300)]
        inventory_every_secs: u64,
        #[arg(long, default_value_t = 3600)]
        reorder_every_secs: u64,
        #[arg(long, default_value_t = 900)]
        reconcile_every_secs: u64,
    },
    /// Drift between Brightpearl and one store; --fix repairs it.
    Reconcile {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        fix: bool,
    },
    /// Parked work: list it, show one, resolve one, replay by code or id.
    Failures {
        #[command(subcommand)]
        command: FailuresCommand,
    },
    /// Per store: last successful poll, reconciliation and tracking sweep; queues; parked work;
    /// the Brightpearl budget.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-queue parked jobs whose text contains --reason (with fresh deduplication ids);
    /// --dlq-orders/--dlq-stock/--dlq-purchasing also move SQS dead letters back.
    Replay {
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        dlq_orders: Option<String>,
        #[arg(long)]
        dlq_stock: Option<String>,
        #[arg(long)]
        dlq_purchasing: Option<String>,
    },
    /// Register the Brightpearl and store webhooks against the deployed ingress URL.
    SetupWebhooks {
        #[arg(long)]
        url: String,
    },
}

#[derive(Subcommand)]
enum FailuresCommand {
    /// Counts by code and store, the oldest age, and every record.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One record: the job (or raw body), the evidence, what to do.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A person's decision: paid / not-paid (for payment_unknown), done, retry.
    Resolve {
        id: String,
        #[arg(long = "as")]
        resolution: Resolution,
        #[arg(long)]
        json: bool,
        /// With the local queue, only queue the job (serve runs it) instead of running it now.
        #[arg(long)]
        no_run: bool,
    },
    /// Send parked jobs again with fresh deduplication ids; records go once the send succeeded.
    Replay {
        #[arg(long, conflicts_with_all = ["id", "all"])]
        code: Option<FailureCode>,
        #[arg(long, conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        /// With the local queue, only queue the jobs (serve runs them) instead of running them now.
        #[arg(long)]
        no_run: bool,
    },
}

fn show(json: bool, value: &serde_json::Value, text: fn(&serde_json::Value) -> String) -> CliResult<()> {
    if json {
        print(value)
    } else {
        print!("{}", text(value));
        Ok(())
    }
}

fn load_config(path: &Option<PathBuf>) -> pearlsync::Result<Config> {
    let file = path.as_ref().map(|p| p.display().to_string());
    Config::load_with(&|name| match name {
        "PEARLSYNC_CONFIG" if file.is_some() => file.clone(),
        _ => std::env::var(name).ok(),
    })
}

fn configured(path: &Option<PathBuf>) -> bool {
    path.is_some() || std::env::var_os("PEARLSYNC_CONFIG").is_some()
}

fn print(value: &serde_json::Value) -> CliResult<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Demo(args) => {
            let report = demo::run(&args).await?;
            if args.json {
                print(&serde_json::to_value(&report)?)?;
            } else {
                print!("{}", demo::summary(&report));
            }
        }
        Command::Invoke { function, event } => {
            let text = std::fs::read_to_string(&event)
                .map_err(|e| format!("cannot read {}: {e}", event.display()))?;
            let event: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", event.display()))?;
            // Keep the sandbox alive for the whole call when we started it.
            let (app, _sandbox) = if configured(&cli.config) {
                (App::from_config(load_config(&cli.config)?, function.name()).await?, None)
            } else {
                let sandbox = local::start(&local::LocalOptions {
                    products: 20,
                    warehouses: 2,
                    suppliers: 3,
                    rate_limit: (200, Duration::from_secs(60)),
                })
                .await?;
                let mut config = sandbox.config.clone();
                config.state.path = std::env::temp_dir()
                    .join(format!("pearlsync-invoke-{}", std::process::id()))
                    .join("state.redb");
                eprintln!(
                    "invoke: bundled sandbox at {}, state in {}",
                    sandbox.sandbox.base_url,
                    config.state.path.display()
                );
                (App::from_config(config, function.name()).await?, Some(sandbox))
            };
            print(&commands::invoke(&app, function, event).await?)?;
        }
        Command::Serve { listen, inventory_every_secs, reorder_every_secs, reconcile_every_secs } => {
            let app = App::from_config(load_config(&cli.config)?, "serve").await?;
            commands::serve(
                app,
                ServeOptions {
                    listen,
                    inventory_every: Duration::from_secs(inventory_every_secs.max(1)),
                    reorder_every: Duration::from_secs(reorder_every_secs.max(1)),
                    reconcile_every: Duration::from_secs(reconcile_every_secs.max(1)),
                },
                commands::shutdown_signal(),
            )
            .await?;
        }
        Command::Reconcile { channel, fix } => {
            let app = App::from_config(load_config(&cli.config)?, "reconcile").await?;
            print(&commands::reconcile(&app, &channel, fix).await?)?;
        }
        Command::Failures { command } => {
            let config = load_config(&cli.config)?;
            let backends = Backends::from_config(&config).await?;
            match command {
                FailuresCommand::List { json } => {
                    show(json, &failures::list(&backends).await?, failures::list_text)?
                }
                FailuresCommand::Show { id, json } => {
                    show(json, &failures::show(&backends, &id).await?, failures::show_text)?
                }
                FailuresCommand::Resolve { id, resolution, json, no_run } => show(
                    json,
                    &failures::resolve(&config, backends, &id, resolution, !no_run).await?,
                    failures::resolve_text,
                )?,
                FailuresCommand::Replay { code, id, all, json, no_run } => {
                    let selector = match (code, id, all) {
                        (Some(code), _, _) => Selector::Code(code),
                        (None, Some(id), _) => Selector::Id(id),
                        (None, None, true) => Selector::All,
                        (None, None, false) => return Err("say what to replay: --code, --id or --all".into()),
                    };
                    show(
                        json,
                        &failures::replay(&config, backends, &selector, !no_run).await?,
                        failures::replay_text,
                    )?
                }
            }
        }
        Command::Status { json } => {
            let config = load_config(&cli.config)?;
            let backends = Backends::from_config(&config).await?;
            show(json, &status::status(&config, &backends).await?, status::status_text)?;
        }
        Command::Replay { reason, dlq_orders, dlq_stock, dlq_purchasing } => {
            let app = App::from_config(load_config(&cli.config)?, "replay").await?;
            let dlqs: Vec<(QueueName, String)> = [
                (QueueName::Orders, dlq_orders),
                (QueueName::Stock, dlq_stock),
                (QueueName::Purchasing, dlq_purchasing),
            ]
            .into_iter()
            .filter_map(|(q, url)| url.map(|u| (q, u)))
            .collect();
            print(&commands::replay(&app, &reason, &dlqs).await?)?;
        }
        Command::SetupWebhooks { url } => {
            let app = App::from_config(load_config(&cli.config)?, "setup").await?;
            let report = pearlsync::setup::register_webhooks(
                app.brightpearl.as_ref(),
                &app.channels,
                app.config.ingress.brightpearl_webhook_secret.as_ref(),
                &url,
            )
            .await?;
            print(&serde_json::to_value(report)?)?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The demo tells its own story; its logs show warnings only unless RUST_LOG says otherwise.
    pearlsync::telemetry::init_with_default(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    if let Err(e) = run(cli).await {
        eprintln!("pearlsync: {e}");
        std::process::exit(1);
    }
}
