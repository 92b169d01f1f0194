//! `pearlsync-sandbox`: the simulated Brightpearl account (and, later, the channel stores)
//! served standalone for the demo, manual testing and benchmarks.

use clap::Parser;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, DuplicatePostAnswer, SeedSpec, Settings};
use pearlsync_sandbox::faults::FaultRates;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "pearlsync-sandbox", about = "Stateful Brightpearl and web-shop simulator over HTTP")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,

    // --- Brightpearl ---
    /// Brightpearl account code served under /public-api/{account}.
    #[arg(long, default_value = "sandbox")]
    account: String,
    /// Accepted brightpearl-app-ref.
    #[arg(long, default_value = "pearlsync-sandbox")]
    app_ref: String,
    /// Accepted brightpearl-staff-token.
    #[arg(long, default_value = "sandbox-staff-token")]
    staff_token: String,
    /// Products to seed (SKU-00001…).
    #[arg(long, default_value_t = 100)]
    products: u32,
    /// Warehouses to seed.
    #[arg(long, default_value_t = 2)]
    warehouses: u32,
    /// Suppliers to seed.
    #[arg(long, default_value_t = 3)]
    suppliers: u32,
    /// Seed for the catalogue and the fault dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Brightpearl request limit as REQUESTS/SECONDS (rolling window).
    #[arg(long, default_value = "200/60", value_parser = parse_rate_limit)]
    rate_limit: (u32, Duration),
    /// Share of requests (0..1) answered with a fault, split across 503s, 500s, slow answers
    /// and dropped connections.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Share of requests (0..1) that are processed (a write is committed) and then fail:
    /// half answered 502/504 with an HTML gateway page, half with a dropped connection.
    #[arg(long, default_value_t = 0.0)]
    after_write_rate: f64,
    /// Sent in the Brightpearl-Installed-Integration-Instance-Id header and by the token endpoint.
    #[arg(long, default_value = "42")]
    instance_id: String,
    /// Refresh token the OAuth token endpoint accepts first (it rotates on every grant).
    #[arg(long)]
    oauth_refresh_token: Option<String>,
    /// Milliseconds before a new sales order or credit shows in the searches.
    #[arg(long, default_value_t = 0)]
    search_lag_ms: u64,
    /// Body of the 200 a repeated sales-order POST gets: no_id, empty or original_id.
    #[arg(long, default_value = "no_id", value_parser = parse_duplicate_answer)]
    duplicate_post_answer: DuplicatePostAnswer,
    // Channel flags (--shopify-*, --bigcommerce-*, --woocommerce-*) are added with the
    // channel sandboxes.
}

fn parse_duplicate_answer(s: &str) -> Result<DuplicatePostAnswer, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("expected no_id, empty or original_id, got {s:?}"))
}

fn parse_rate_limit(s: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("expected REQUESTS/SECONDS, got {s:?}");
    let (r, w) = s.split_once('/').ok_or_else(bad)?;
    let requests: u32 = r.trim().parse().map_err(|_| bad())?;
    let seconds: f64 = w.trim().parse().map_err(|_| bad())?;
    if requests == 0 || !(seconds > 0.0 && seconds.is_finite()) {
        return Err(bad());
    }
    Ok((requests, Duration::from_secs_f64(seconds)))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate)
        || !(0.0..=1.0).contains(&args.after_write_rate)
        || args.fault_rate + args.after_write_rate > 1.0
    {
        eprintln!("--fault-rate and --after-write-rate must be between 0 and 1, and together at most 1");
        return std::process::ExitCode::from(2);
    }
    let brightpearl = BrightpearlSandboxConfig {
        account: args.account.clone(),
        app_ref: args.app_ref,
        staff_token: args.staff_token,
        rate_limit: args.rate_limit.0,
        rate_window: args.rate_limit.1,
        faults: FaultRates::mixed(args.fault_rate).plus(FaultRates::after_write(args.after_write_rate)),
        fault_seed: args.seed,
        seed: Some(SeedSpec {
            products: args.products,
            warehouses: args.warehouses,
            suppliers: args.suppliers,
            seed: args.seed,
        }),
        installed_integration_instance_id: Some(args.instance_id),
        oauth_refresh_token: args.oauth_refresh_token,
        settings: Settings {
            duplicate_post_answer: args.duplicate_post_answer,
            search_lag_ms: args.search_lag_ms,
            external_ref_dedup_off: false,
            total_value_skew_4dp: 0,
        },
        ..BrightpearlSandboxConfig::default()
    };
    let config = pearlsync_sandbox::SandboxConfig { addr: args.addr, brightpearl, ..Default::default() };
    match pearlsync_sandbox::start(config).await {
        Ok(sandbox) => {
            println!("{}", sandbox.base_url);
            println!("brightpearl: {}/public-api/{}", sandbox.base_url, args.account);
            sandbox.serve_forever().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.addr);
            std::process::ExitCode::FAILURE
        }
    }
}
