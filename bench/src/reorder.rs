//! `reorder`: what a reorder check costs in Brightpearl requests at a catalogue size, and
//! whether it fits one Lambda invocation at the real limit.
//!
//! The bundled sandbox is seeded with N products × W warehouses (its seed gives each product a
//! reorder level of 0–15 and 0–40 on hand per warehouse, so about 18 % of pairs are short) and
//! S suppliers, every product with a primary supplier. The checker runs in this process with
//! in-memory state, against the sandbox over HTTP at a fast limit: the run is not about the
//! limit, its request count is. Two checks:
//! - **first**: the catalogue scan that raises every PO (the top-level figures);
//! - **steady**: the next check, with everything on order: the recurring hourly cost.
//!
//! `wall_s_at_limit` = requests ÷ 200 per minute. The check runs at background priority, which
//! leaves `background_reserve` (20 % by default) of the pool to order writes, so it gets at most
//! 80 % of 200/min; an invocation stops starting work 60 s before its 900 s timeout.
//! `fits_one_invocation` = requests at that share fit in 840 s. When they do not, the check
//! resumes from its cursor in the next invocation: `invocations_at_limit` says how many.

use crate::measure::{self, progress, round};
use pearlsync::brightpearl::{BrightpearlApi, BrightpearlClient, Priority};
use pearlsync::metrics::Metrics;
use pearlsync::queue::{InProcessQueue, JobQueue};
use pearlsync::reorder::{CheckOptions, ReorderChecker, ReorderConfig, ReorderReport, STOP_BEFORE_DEADLINE};
use pearlsync::state::{EmbeddedStore, StateStore};
use pearlsync_cli::local;
use pearlsync_sandbox::SandboxConfig;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST_RATE: (u32, Duration) = (1_000_000, Duration::from_secs(60));
/// Brightpearl's real limit.
const REAL_REQUESTS_PER_MINUTE: f64 = 200.0;
/// The reorder-checker's Lambda timeout.
const INVOCATION_S: f64 = 900.0;

#[derive(Debug, Clone, clap::Args)]
pub struct ReorderArgs {
    /// Products in Brightpearl.
    #[arg(long, default_value_t = 10_000)]
    pub skus: u32,
    #[arg(long, default_value_t = 3)]
    pub warehouses: u32,
    /// Suppliers, assigned to products round-robin.
    #[arg(long, default_value_t = 20)]
    pub suppliers: u32,
}

/// One check's figures.
struct Measured {
    report: ReorderReport,
    requests: u64,
    by_endpoint: BTreeMap<String, u64>,
    wall: Duration,
}

pub async fn run(args: &ReorderArgs, out: &Path, print_json: bool) -> Result<(), String> {
    let started = Instant::now();
    progress(&format!(
        "reorder: {} SKUs × {} warehouses, {} suppliers; seeding the sandbox",
        args.skus, args.warehouses, args.suppliers
    ));
    let bp = BrightpearlSandboxConfig {
        rate_limit: FAST_RATE.0,
        rate_window: FAST_RATE.1,
        seed: Some(SeedSpec {
            products: args.skus,
            warehouses: args.warehouses,
            suppliers: args.suppliers,
            seed: 17,
        }),
        ..Default::default()
    };
    let sandbox = pearlsync_sandbox::start(SandboxConfig { brightpearl: bp.clone(), ..Default::default() })
        .await
        .map_err(|e| format!("sandbox: {e}"))?;
    let config = local::sandbox_config(&sandbox, &bp, FAST_RATE);
    let share = 1.0 - config.brightpearl.background_reserve;
    let client = BrightpearlClient::new(config.brightpearl.clone()).map_err(|e| e.to_string())?;
    let state: Arc<dyn StateStore> = Arc::new(EmbeddedStore::in_memory().map_err(|e| e.to_string())?);
    let checker = ReorderChecker::from_parts(
        Arc::new(client.with_priority(Priority::Background)) as Arc<dyn BrightpearlApi>,
        state,
        Arc::new(InProcessQueue::default()) as Arc<dyn JobQueue>,
        Arc::new(Metrics::new("reorder-checker")),
        ReorderConfig { warehouses: Vec::new(), ..config.reorder.clone() },
    );
    progress(&format!("sandbox ready ({:.1}s); first check…", started.elapsed().as_secs_f64()));

    let measure_check = |name: &'static str| {
        let (sandbox, checker) = (&sandbox, &checker);
        async move {
            sandbox.brightpearl.reset_counters();
            let began = Instant::now();
            let report =
                checker.run_check(CheckOptions::default()).await.map_err(|e| format!("{name}: {e}"))?;
            let counters = sandbox.brightpearl.counters();
            if !report.complete || !report.failed.is_empty() {
                return Err(format!("{name} check did not finish cleanly: {:?}", report.failed));
            }
            progress(&format!(
                "{name} check: {} requests, {} POs, {:.1}s",
                counters.requests,
                report.purchase_orders.len(),
                began.elapsed().as_secs_f64()
            ));
            Ok::<_, String>(Measured {
                report,
                requests: counters.requests,
                by_endpoint: counters.per_endpoint,
                wall: began.elapsed(),
            })
        }
    };
    let first = measure_check("first").await?;
    let steady = measure_check("steady").await?;
    let rows: usize = first.report.purchase_orders.iter().map(|po| po.rows.len()).sum();
    if !steady.report.purchase_orders.is_empty() {
        return Err(format!(
            "the steady check raised {} POs: on-order stock was not counted",
            steady.report.purchase_orders.len()
        ));
    }

    let usable_s = INVOCATION_S - STOP_BEFORE_DEADLINE.as_secs_f64();
    let figures = |m: &Measured| {
        let wall_s_at_limit = m.requests as f64 * 60.0 / REAL_REQUESTS_PER_MINUTE;
        let wall_s_at_share = wall_s_at_limit / share;
        json!({
            "brightpearl_requests": m.requests,
            "wall_s_at_limit": round(wall_s_at_limit, 1),
            "wall_s_at_share": round(wall_s_at_share, 1),
            "fits_one_invocation": wall_s_at_share <= usable_s,
            "invocations_at_limit": (wall_s_at_share / usable_s).ceil().max(1.0) as u64,
            "products_checked": m.report.products_checked,
            "purchase_orders": m.report.purchase_orders.len(),
            "open_purchase_orders_counted": m.report.on_order.open_purchase_orders,
            "bench_wall_s": round(m.wall.as_secs_f64(), 2),
            "requests_by_endpoint": m.by_endpoint,
        })
    };
    let first_figures = figures(&first);
    let mut report = json!({
        "scenario": "reorder",
        "skus": args.skus,
        "warehouses": args.warehouses,
        "suppliers": args.suppliers,
        "brightpearl_requests": first.requests,
        "purchase_orders": first.report.purchase_orders.len(),
        "rows": rows,
        "wall_s_at_limit": first_figures["wall_s_at_limit"],
        "fits_one_invocation": first_figures["fits_one_invocation"],
        "invocations_at_limit": first_figures["invocations_at_limit"],
        "assumptions": {
            "limit_requests_per_minute": REAL_REQUESTS_PER_MINUTE,
            "reorder_share_of_budget": round(share, 2),
            "invocation_s": INVOCATION_S,
            "usable_s": usable_s,
            "max_rows_per_po": config.reorder.max_rows_per_po,
            "slice_products": config.reorder.slice_products,
        },
        "first": first_figures,
        "steady": figures(&steady),
        "minimum_reads": minimum_reads(args),
        "machine": measure::machine(),
    });
    report["first"]["no_reorder_level"] = json!(first.report.no_reorder_level);
    let name = format!("reorder-{}x{}", args.skus, args.warehouses);
    measure::write_report(
        out,
        &name,
        &format!("Reorder check, {} SKUs × {} warehouses", args.skus, args.warehouses),
        &report,
        print_json,
    )
    .map_err(|e| format!("report: {e}"))
}

/// The reads a full scan cannot avoid: product-search pages of 500 (catalogue and primary
/// suppliers), availability in ID sets of 200, warehouse defaults in ID sets of 200 per warehouse.
fn minimum_reads(args: &ReorderArgs) -> Value {
    let n = u64::from(args.skus);
    let pages = n.div_ceil(500);
    let availability = n.div_ceil(200);
    let defaults = availability * u64::from(args.warehouses);
    json!({
        "product_search_pages": pages,
        "availability": availability,
        "warehouse_defaults": defaults,
        "total": pages + availability + defaults,
    })
}
