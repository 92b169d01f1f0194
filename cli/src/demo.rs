//! `pearlsync demo`: one whole cycle against the bundled sandbox with embedded state and the
//! in-process queue. Every count in the report that says what happened (stores in sync, sales
//! orders, tracking) is read back from the sandbox's own state, not from our counters.

use crate::local::{self, LocalOptions, LocalSandbox};
use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::failures::{self, FailureCode, Selector};
use pearlsync::ingress::{Ingress, http};
use pearlsync::inventory::PollTrigger;
use pearlsync::queue::{ChannelKind, InProcessQueue};
use pearlsync::reorder::CheckOptions;
use pearlsync::state::EmbeddedStore;
use pearlsync::worker::QueueWorker;
use pearlsync_sandbox::channels::{Channel, DeliveryOptions, NewOrder, NewOrderLine};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Products in the sandbox catalogue (listed on all three stores).
    #[arg(long, default_value_t = 200)]
    pub skus: u32,
    /// Orders placed across the three stores (every fourth one is delivered twice).
    #[arg(long, default_value_t = 20)]
    pub orders: u32,
    /// Print one JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct DemoReport {
    pub inventory: InventorySection,
    pub orders: OrdersSection,
    pub tracking: TrackingSection,
    pub reorder: ReorderSection,
    pub brightpearl: BrightpearlSection,
    pub failures: FailuresSection,
    pub state_path: String,
    pub seconds: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct InventorySection {
    pub skus: u32,
    /// Brightpearl requests of the first full poll.
    pub brightpearl_requests: u64,
    pub channels: Vec<ChannelSection>,
}

#[derive(Debug, Default, Serialize)]
pub struct ChannelSection {
    pub name: String,
    pub pushed: usize,
    /// Every SKU on the store shows what Brightpearl's stock and the store's rules say.
    pub in_sync: bool,
    pub out_of_sync: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct OrdersSection {
    pub delivered: usize,
    pub unique: usize,
    pub created: usize,
    pub duplicates_ignored: usize,
    pub parked: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct TrackingSection {
    pub shipped: usize,
    pub posted: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct ReorderSection {
    pub purchase_orders: usize,
    pub rows: usize,
    pub received: usize,
}

/// The failure story: an order with an unknown SKU is parked with its code, the SKU is added,
/// the order is replayed and written.
#[derive(Debug, Default, Serialize)]
pub struct FailuresSection {
    pub parked: Vec<ParkedOrder>,
    pub replayed: usize,
    /// Sales orders in the sandbox for the parked orders after the replay.
    pub written_after_replay: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct ParkedOrder {
    pub code: String,
    pub store: String,
    pub order: String,
}

#[derive(Debug, Default, Serialize)]
pub struct BrightpearlSection {
    pub requests: u64,
    pub throttled: u64,
}

const STEPS: u32 = 7;

fn step(n: u32, text: &str) {
    eprintln!("[{n}/{STEPS}] {text}");
}

pub fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

/// Each store's SKUs whose quantity differs from what Brightpearl's stock and the store's
/// warehouse set and buffer rules give, all read from the sandbox.
pub fn out_of_sync(local: &LocalSandbox) -> BTreeMap<String, usize> {
    let state = local.sandbox.brightpearl.state();
    let mut result = BTreeMap::new();
    for store in &local.config.stores {
        let channel = sandbox_channel(store.kind);
        let mut wrong = 0;
        for (product_id, product) in &state.products {
            let Some(shown) = local.sandbox.channels.quantity(channel, &product.sku) else { continue };
            let available: i64 = state
                .stock
                .get(product_id)
                .map(|by_warehouse| {
                    by_warehouse
                        .iter()
                        .filter(|(w, _)| store.warehouses.is_empty() || store.warehouses.contains(w))
                        .map(|(_, s)| s.on_hand)
                        .sum()
                })
                .unwrap_or(0);
            if shown != store.apply_buffer(available, &product.sku) {
                wrong += 1;
            }
        }
        result.insert(store.name.clone(), wrong);
    }
    result
}

pub async fn run(args: &DemoArgs) -> crate::commands::CliResult<DemoReport> {
    let started = Instant::now();
    let mut report = DemoReport::default();
    step(
        1,
        &format!(
            "starting the sandbox: Brightpearl with {} products in 2 warehouses, three stores",
            args.skus
        ),
    );
    // A faster window than a real account's 200 per 60 s keeps the demo short; the client
    // learns the window from the response headers either way.
    let local = local::start(&LocalOptions {
        products: args.skus,
        warehouses: 2,
        suppliers: 3,
        rate_limit: (200, Duration::from_secs(10)),
    })
    .await?;
    let state_dir = std::env::temp_dir().join(format!("pearlsync-demo-{}", std::process::id()));
    let state_path = state_dir.join("state.redb");
    report.state_path = state_path.display().to_string();
    let backends = Backends {
        state: Arc::new(EmbeddedStore::open(&state_path)?),
        queue: Arc::new(InProcessQueue::new(Duration::from_secs(5), 5)),
    };
    let app = App::with_backends(local.config.clone(), backends, "demo")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ingress_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, Arc::new(Ingress::from_app(&app)), async move {
        let _ = stopped.await;
    }));
    pearlsync::setup::register_webhooks(
        app.brightpearl.as_ref(),
        &app.channels,
        app.config.ingress.brightpearl_webhook_secret.as_ref(),
        &ingress_url,
    )
    .await?;
    eprintln!("      webhook ingress on {ingress_url}, Brightpearl and store webhooks registered");

    step(2, "inventory poll: Brightpearl availability -> three stores");
    let poll = app.inventory_poll();
    let first = poll.run(PollTrigger::Full { reconcile: false }).await?;
    report.inventory.skus = args.skus;
    report.inventory.brightpearl_requests = first.brightpearl_requests;
    let pushed: BTreeMap<String, usize> = first.channels.iter().map(|c| (c.name.clone(), c.pushed)).collect();
    eprintln!("      {} availability reads, pushed {:?}", first.brightpearl_requests, pushed);

    step(
        3,
        &format!(
            "{} signed orders delivered through the ingress (every fourth twice), then written",
            args.orders
        ),
    );
    let worker = QueueWorker::new(&app);
    let mut placed: Vec<(ChannelKind, String, String)> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let kinds = [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce];
    let bar = crate::progress::bar(u64::from(args.orders), "delivering orders");
    for i in 0..args.orders as usize {
        bar.inc(1);
        let store = &app.config.stores[i % kinds.len()];
        let channel = sandbox_channel(store.kind);
        let customer = rng.usize(0..(args.orders as usize / 2).max(1));
        let lines = (0..rng.usize(1..=3))
            .map(|_| {
                let n = rng.u32(1..=args.skus.max(1));
                NewOrderLine {
                    sku: Some(format!("SKU-{n:05}")),
                    name: format!("Product {n}"),
                    quantity: rng.u32(1..=2),
                    price: 12.5,
                }
            })
            .collect();
        let (id, _) = local.sandbox.channels.create_order(
            channel,
            NewOrder {
                email: Some(format!("customer{customer}@example.test")),
                first_name: "Demo".into(),
                last_name: format!("Customer {customer}"),
                currency: "GBP".into(),
                lines,
            },
        );
        let secret = store.webhook_secret.expose().to_string();
        let options = DeliveryOptions { duplicates: usize::from(i % 4 == 3), ..DeliveryOptions::default() };
        let url = format!("{ingress_url}/webhooks/{}/{}", store.kind, store.name);
        let sent = local.sandbox.channels.deliver_order_webhook(channel, &id, &url, &secret, &options).await;
        report.orders.delivered += sent.len();
        placed.push((store.kind, store.name.clone(), id));
    }
    bar.finish_and_clear();
    let spinner = crate::progress::spinner("writing orders");
    let drained = worker.drain(10_000).await?;
    spinner.finish_and_clear();
    let sandbox_state = local.sandbox.brightpearl.state();
    let refs: Vec<String> =
        placed.iter().map(|(_, store, id)| pearlsync::orders::external_ref(store, id)).collect();
    let sales_orders: Vec<_> = sandbox_state
        .orders
        .values()
        .filter(|o| o.order_type == "SO" && o.external_ref.as_ref().is_some_and(|r| refs.contains(r)))
        .collect();
    report.orders.unique = placed.len();
    report.orders.created = sales_orders.len();
    report.orders.duplicates_ignored = report.orders.delivered - placed.len();
    report.orders.parked = failures::list(app.state.as_ref()).await?.len();
    eprintln!(
        "      {} deliveries -> {} sales orders, {} parked ({} batches)",
        report.orders.delivered, report.orders.created, report.orders.parked, drained.batches
    );

    step(4, "an order with an SKU Brightpearl does not have: parked, the SKU added, replayed");
    report.failures = failure_story(&local, &app, &worker, &ingress_url).await?;
    eprintln!(
        "      parked {:?}; {} replayed, {} written after the replay",
        report.failures.parked.iter().map(|p| p.code.as_str()).collect::<Vec<_>>(),
        report.failures.replayed,
        report.failures.written_after_replay
    );

    step(5, "shipping half of the orders in Brightpearl; tracking goes back to the stores");
    let mut shipped_orders = Vec::new();
    for (n, so) in sales_orders.iter().enumerate().filter(|(n, _)| n % 2 == 0) {
        if local.sandbox.brightpearl.ship_goods_out(so.id, &format!("TRK{:06}", n + 1), "Royal Mail").is_ok()
        {
            shipped_orders.push(so.external_ref.clone().unwrap_or_default());
        }
    }
    report.tracking.shipped = shipped_orders.len();
    let posted = |local: &LocalSandbox| {
        placed
            .iter()
            .filter(|(kind, store, id)| {
                shipped_orders.contains(&pearlsync::orders::external_ref(store, id))
                    && !local.sandbox.channels.fulfilments(sandbox_channel(*kind), id).is_empty()
            })
            .count()
    };
    // Brightpearl's webhooks arrive on their own time: work the queue until tracking is on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while posted(&local) < shipped_orders.len() && Instant::now() < deadline {
        worker.drain(10_000).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.tracking.posted = posted(&local);
    eprintln!(
        "      {} shipped, tracking on {} store orders",
        report.tracking.shipped, report.tracking.posted
    );

    step(6, "reorder check: purchase orders from reorder points; one is received");
    let checker = app.reorder_checker();
    let reorder = checker.run_check(CheckOptions { dry_run: false }).await?;
    report.reorder.purchase_orders = reorder.purchase_orders.len();
    report.reorder.rows = reorder.purchase_orders.iter().map(|po| po.rows.len()).sum();
    if let Some(po) = reorder.purchase_orders.first()
        && local.sandbox.brightpearl.receive_purchase_order(po.purchase_order_id, None).is_ok()
    {
        report.reorder.received = 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.drain(10_000).await?;
    eprintln!(
        "      {} purchase orders with {} rows; {} received",
        report.reorder.purchase_orders, report.reorder.rows, report.reorder.received
    );

    step(7, "final poll and check: every store against Brightpearl");
    poll.run(PollTrigger::Full { reconcile: false }).await?;
    let wrong = out_of_sync(&local);
    for store in &app.config.stores {
        let out = wrong.get(&store.name).copied().unwrap_or(0);
        report.inventory.channels.push(ChannelSection {
            name: store.name.clone(),
            pushed: pushed.get(&store.name).copied().unwrap_or(0),
            in_sync: out == 0,
            out_of_sync: out,
        });
    }
    let counters = local.sandbox.brightpearl.counters();
    report.brightpearl.requests = counters.requests;
    report.brightpearl.throttled = counters.throttled_503;
    report.seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    Ok(report)
}

/// The SKU the failure story's order names; Brightpearl gets it only after the order is parked.
const MISSING_SKU: &str = "DEMO-NEW-SKU";

async fn failure_story(
    local: &LocalSandbox,
    app: &App,
    worker: &QueueWorker,
    ingress_url: &str,
) -> crate::commands::CliResult<FailuresSection> {
    let store = &app.config.stores[0];
    let channel = sandbox_channel(store.kind);
    let (id, _) = local.sandbox.channels.create_order(
        channel,
        NewOrder {
            email: Some("new-product@example.test".into()),
            first_name: "Early".into(),
            last_name: "Bird".into(),
            currency: "GBP".into(),
            lines: vec![NewOrderLine {
                sku: Some(MISSING_SKU.into()),
                name: "Pre-order".into(),
                quantity: 1,
                price: 30.0,
            }],
        },
    );
    let url = format!("{ingress_url}/webhooks/{}/{}", store.kind, store.name);
    local
        .sandbox
        .channels
        .deliver_order_webhook(channel, &id, &url, store.webhook_secret.expose(), &DeliveryOptions::default())
        .await;
    worker.drain(10_000).await?;
    let mut section = FailuresSection::default();
    let parked: Vec<failures::ParkedRecord> = failures::list(app.state.as_ref())
        .await?
        .into_iter()
        .filter(|r| r.order_id() == Some(id.as_str()))
        .collect();
    section.parked = parked
        .iter()
        .map(|r| ParkedOrder {
            code: r.code.as_str().to_string(),
            store: r.store.clone().unwrap_or_default(),
            order: id.clone(),
        })
        .collect();
    // The merchant creates the product in Brightpearl, then replays what was parked for it.
    local::add_product(local, MISSING_SKU, 10);
    let report =
        failures::replay(app.state.as_ref(), app.queue.as_ref(), &Selector::Code(FailureCode::UnknownSku))
            .await?;
    section.replayed = report.replayed.len();
    worker.drain(10_000).await?;
    let external_ref = pearlsync::orders::external_ref(&store.name, &id);
    section.written_after_replay = local.sandbox.brightpearl.with_state(|s| {
        s.orders
            .values()
            .filter(|o| o.order_type == "SO" && o.external_ref.as_deref() == Some(external_ref.as_str()))
            .count()
    });
    Ok(section)
}

pub fn summary(r: &DemoReport) -> String {
    let mut out = String::new();
    out.push_str("pearlsync demo — what happened (read back from the sandbox)\n\n");
    out.push_str(&format!(
        "Inventory   {} SKUs, first poll used {} Brightpearl requests\n",
        r.inventory.skus, r.inventory.brightpearl_requests
    ));
    for c in &r.inventory.channels {
        out.push_str(&format!(
            "            {:<18} pushed {:>5}   {}\n",
            c.name,
            c.pushed,
            if c.in_sync { "in sync".to_string() } else { format!("{} SKUs out of sync", c.out_of_sync) }
        ));
    }
    out.push_str(&format!(
        "Orders      {} deliveries of {} orders -> {} sales orders ({} duplicates ignored, {} parked)\n",
        r.orders.delivered, r.orders.unique, r.orders.created, r.orders.duplicates_ignored, r.orders.parked
    ));
    out.push_str(&format!(
        "Failures    {} parked ({}), {} replayed after the fix, {} written\n",
        r.failures.parked.len(),
        r.failures.parked.iter().map(|p| format!("{} on {}", p.code, p.store)).collect::<Vec<_>>().join(", "),
        r.failures.replayed,
        r.failures.written_after_replay
    ));
    out.push_str(&format!(
        "Tracking    {} shipped, {} posted to the stores\n",
        r.tracking.shipped, r.tracking.posted
    ));
    out.push_str(&format!(
        "Reorder     {} purchase orders, {} rows, {} received\n",
        r.reorder.purchase_orders, r.reorder.rows, r.reorder.received
    ));
    out.push_str(&format!(
        "Brightpearl {} requests, {} throttled (sandbox window 200 per 10 s)\n",
        r.brightpearl.requests, r.brightpearl.throttled
    ));
    out.push_str(&format!("State       {} ({:.1} s)\n", r.state_path, r.seconds));
    out
}
