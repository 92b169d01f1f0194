//! `orders`: M orders across the three channels, delivered as signed webhooks over real HTTP
//! into the ingress (redelivered at the duplicate rate), queued on the in-process FIFO queue,
//! and drained by the order writer in batches of up to 10 — all against the in-process sandbox
//! with embedded state.
//!
//! Two passes over one writer (a warm Lambda): the cold pass meets every pooled customer for
//! the first time with empty caches; the warm pass then runs with the given rates over known
//! customers and cached SKUs. The top-level figures are the warm pass's; `cold` holds the first.
//!
//! - Orders arrive at `--orders-per-second`; the writer collects a batch for up to
//!   `BATCH_WINDOW` or until 10 jobs (SQS's batching window), so a steady stream gives full
//!   batches and the latency is not a backlog artefact.
//! - Brightpearl requests: the sandbox's count during the pass (refused and faulted requests
//!   included: they cost budget), per unique order; `full_batches` repeats it from the writer's
//!   own count over batches of exactly 10 that no other batch overlapped.
//! - CPU: the writer runs on its own runtime whose threads are all named `writer`; its CPU is the
//!   sum over those threads (/proc/self/task), so the sandbox and the ingress do not count.
//! - Latency: webhook delivery start → the writer's completion of the batch holding the job.
//! - `created` sales orders, `duplicates` (sales orders beyond one per order) and `lost`
//!   (orders without one) come from the sandbox's state, by channel and `externalRef`.
//! - Payments and refunds (issue 15), warm pass: `--paid-later-rate` orders arrive unpaid and
//!   are paid by a later update; `--refund-rate` orders are refunded (one unit of their first
//!   line, the shipping on every other one, restocked on every other one) and the refund's
//!   webhook sent (redelivered at the duplicate rate). From the sandbox's records:
//!   `double_payments` (payments beyond one per sales order), `missing_payments` (orders with
//!   none), `double_credits` (credits beyond one per refund `externalRef`, and refund payments
//!   beyond one per credit), `missing_credits` (refunds without a closed credit that carries
//!   its payment).

use crate::measure::{self, percentile, progress, round};
use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::batch::BatchMessage;
use pearlsync::ingress::{Ingress, http};
use pearlsync::orders::OrderWriter;
use pearlsync::queue::{ChannelKind, InProcessQueue, Job, JobQueue, QueueName};
use pearlsync::state::EmbeddedStore;
use pearlsync_cli::local;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::channels::{
    Channel, ChannelSandboxConfig, DeliveryOptions, NewOrder, NewOrderLine, OrderMoney, OrderTopic,
};
use pearlsync_sandbox::faults::FaultRates;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST_RATE: (u32, Duration) = (100_000, Duration::from_secs(60));
/// How long the writer waits to fill a batch (SQS `MaximumBatchingWindowInSeconds`).
const BATCH_WINDOW: Duration = Duration::from_millis(250);
const BATCH_SIZE: usize = 10;
/// Products in the catalogue; orders pick 1–3 of them.
const PRODUCTS: u32 = 50;
/// Orders not written by then count as lost.
const PASS_TIMEOUT: Duration = Duration::from_secs(300);
const WRITER_THREAD: &str = "writer";
/// The orders queue's visibility timeout: when a failed job is seen again (shorter than a
/// deployment's, so a faulted run ends in seconds).
const RETRY_VISIBILITY: Duration = Duration::from_secs(10);
const MAX_RECEIVES: u32 = 5;

#[derive(Debug, Clone, clap::Args)]
pub struct OrdersArgs {
    #[arg(long, default_value_t = 200)]
    pub orders: u32,
    /// Share (0..1) of orders whose webhook is delivered twice.
    #[arg(long, default_value_t = 0.1)]
    pub duplicate_rate: f64,
    /// Share (0..1) of Brightpearl requests answered with a fault (503, 500, slow, dropped).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Share (0..1) of Brightpearl requests that commit and then fail: half answered 502/504
    /// with a gateway page, half dropped.
    #[arg(long, default_value_t = 0.0)]
    pub after_write_rate: f64,
    /// Share (0..1) of warm-pass orders from a customer not seen before.
    #[arg(long, default_value_t = 0.2)]
    pub new_customer_rate: f64,
    /// Known customers the orders are spread over.
    #[arg(long, default_value_t = 20)]
    pub customers: u32,
    /// Webhook arrival rate.
    #[arg(long, default_value_t = 40.0)]
    pub orders_per_second: f64,
    /// Share (0..1) of warm-pass orders refunded after they were placed.
    #[arg(long, default_value_t = 0.0)]
    pub refund_rate: f64,
    /// Share (0..1) of warm-pass orders placed unpaid and paid by a later update.
    #[arg(long, default_value_t = 0.0)]
    pub paid_later_rate: f64,
}

type OrderKey = (String, String);

/// One batch the writer handled.
#[derive(Debug, Clone, Copy)]
struct BatchStat {
    size: usize,
    /// None when another batch ran at the same time (the writer's count cannot split them).
    brightpearl_requests: Option<u64>,
}

/// What the writer thread measured over one pass.
#[derive(Debug, Default)]
struct WriterPass {
    batches: Vec<BatchStat>,
    completed: HashMap<OrderKey, Instant>,
    cpu: Duration,
    parked: usize,
    /// Parked jobs by reason (the reason's text up to its first colon: the failure's kind).
    parked_reasons: BTreeMap<String, usize>,
    writer_duplicates: u64,
    timed_out: bool,
}

/// Tells the writer thread to drain one pass of `expected` unique orders.
struct PassRequest {
    expected: usize,
    delivered: Arc<std::sync::atomic::AtomicBool>,
    answer: std::sync::mpsc::Sender<WriterPass>,
}

pub async fn run(args: &OrdersArgs, out: &Path, print_json: bool) -> Result<(), String> {
    for (name, rate) in [
        ("--duplicate-rate", args.duplicate_rate),
        ("--fault-rate", args.fault_rate),
        ("--after-write-rate", args.after_write_rate),
        ("--new-customer-rate", args.new_customer_rate),
        ("--refund-rate", args.refund_rate),
        ("--paid-later-rate", args.paid_later_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be between 0 and 1"));
        }
    }
    let bp = BrightpearlSandboxConfig {
        rate_limit: FAST_RATE.0,
        rate_window: FAST_RATE.1,
        seed: Some(SeedSpec { products: PRODUCTS, warehouses: 2, suppliers: 2, seed: 11 }),
        fault_seed: 11,
        ..Default::default()
    };
    let sandbox = pearlsync_sandbox::start(SandboxConfig {
        brightpearl: bp.clone(),
        channels: ChannelSandboxConfig {
            shopify_client_secret: local::SAMPLE_SHOPIFY_SECRET.into(),
            // Channel limits are not what this measures (the writer fetches BigCommerce orders).
            bigcommerce_quota: 1_000_000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .map_err(|e| format!("sandbox: {e}"))?;
    let products: Vec<(u64, String)> =
        sandbox.brightpearl.with_state(|s| s.products.values().map(|p| (p.id, p.sku.clone())).collect());
    for (id, _) in &products {
        sandbox.brightpearl.set_stock(*id, 1, 1_000_000);
    }
    let skus: Vec<String> = products.iter().map(|(_, sku)| sku.clone()).collect();
    let listed: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 100)).collect();
    for channel in [Channel::Shopify, Channel::Bigcommerce, Channel::Woocommerce] {
        sandbox.channels.seed_products(channel, &listed);
    }
    let config = local::sandbox_config(&sandbox, &bp, FAST_RATE);

    let state_dir = std::env::temp_dir().join(format!("pearlsync-bench-orders-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("state dir: {e}"))?;
    let store = EmbeddedStore::open(state_dir.join("state.redb")).map_err(|e| format!("state: {e}"))?;
    let queue = Arc::new(InProcessQueue::new(RETRY_VISIBILITY, MAX_RECEIVES));
    let backends = Backends { state: Arc::new(store), queue: Arc::clone(&queue) as Arc<dyn JobQueue> };

    let ingress_app =
        App::with_backends(config.clone(), backends.clone(), "webhook-ingress").map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let ingress_url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let (stop_ingress, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, Arc::new(Ingress::from_app(&ingress_app)), async move {
        let _ = stopped.await;
    }));

    let writer_app =
        App::with_backends(config.clone(), backends, "order-writer").map_err(|e| e.to_string())?;
    let (to_writer, writer_inbox) = std::sync::mpsc::channel::<PassRequest>();
    let writer_queue = Arc::clone(&queue);
    let writer_thread = std::thread::Builder::new()
        .name(WRITER_THREAD.into())
        .spawn(move || writer_main(writer_app, writer_queue, writer_inbox))
        .map_err(|e| e.to_string())?;

    let world = World { sandbox: &sandbox, ingress_url: &ingress_url, config: &config, skus: &skus };
    sandbox
        .brightpearl
        .faults()
        .set_rates(FaultRates::mixed(args.fault_rate).plus(FaultRates::after_write(args.after_write_rate)));
    // Brightpearl's externalRef uniqueness off: the writer's own checks are the only guard,
    // so a repeated create shows as a duplicate sales order.
    let mut settings = sandbox.brightpearl.settings();
    settings.external_ref_dedup_off = true;
    sandbox.brightpearl.set_settings(settings);
    progress(&format!("orders: cold pass, {} orders from {} new customers…", args.orders, args.customers));
    let cold = world.pass(args, 0, 0.0, &to_writer).await?;
    progress(&format!(
        "orders: warm pass, {} orders, {} new-customer rate…",
        args.orders, args.new_customer_rate
    ));
    let warm = world.pass(args, 1, args.new_customer_rate, &to_writer).await?;

    drop(to_writer);
    let _ = writer_thread.join();
    let _ = stop_ingress.send(());
    let _ = std::fs::remove_dir_all(&state_dir);

    let mut report = warm;
    if let Some(map) = report.as_object_mut() {
        map.insert("cold".into(), cold);
        map.insert(
            "params".into(),
            json!({"orders": args.orders, "duplicate_rate": args.duplicate_rate, "fault_rate": args.fault_rate,
                   "after_write_rate": args.after_write_rate, "external_ref_dedup": "off",
                   "new_customer_rate": args.new_customer_rate, "customers": args.customers,
                   "refund_rate": args.refund_rate, "paid_later_rate": args.paid_later_rate,
                   "orders_per_second": args.orders_per_second, "batch_window_ms": BATCH_WINDOW.as_millis() as u64,
                   "retry_visibility_s": RETRY_VISIBILITY.as_secs()}),
        );
        map.insert("machine".into(), measure::machine());
    }
    let mut name = format!(
        "orders-{}-d{}-f{}-a{}-c{}",
        args.orders, args.duplicate_rate, args.fault_rate, args.after_write_rate, args.new_customer_rate
    );
    if args.refund_rate > 0.0 || args.paid_later_rate > 0.0 {
        name.push_str(&format!("-r{}-p{}", args.refund_rate, args.paid_later_rate));
    }
    measure::write_report(out, &name, &format!("orders, {} per pass", args.orders), &report, print_json)
        .map_err(|e| format!("writing the report: {e}"))?;
    latency_chart(out, &name, &report)
}

/// `{name}.svg`: both passes' latency by percentile against the targets (issue 18).
fn latency_chart(out: &Path, name: &str, report: &Value) -> Result<(), String> {
    let curve = |pass: &Value| -> Vec<f64> {
        pass.get("latency_ms_percentiles")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (warm, cold) = (curve(report), curve(report.get("cold").unwrap_or(&Value::Null)));
    let curves = [
        crate::chart::LatencyCurve { label: "warm pass", percentiles_ms: &warm },
        crate::chart::LatencyCurve { label: "cold pass", percentiles_ms: &cold },
    ];
    let targets = [("p50", 50.0, 2_000.0), ("p99", 99.0, 10_000.0)];
    let path = out.join(format!("{name}.svg"));
    crate::chart::latency_distribution(&path, &format!("{name}: webhook → sales order"), &curves, &targets)?;
    progress(&format!("wrote {}", path.display()));
    Ok(())
}

struct World<'a> {
    sandbox: &'a Sandbox,
    ingress_url: &'a str,
    config: &'a pearlsync::config::Config,
    skus: &'a [String],
}

impl World<'_> {
    /// Delivers one pass of orders while the writer drains them; returns the pass's figures.
    async fn pass(
        &self,
        args: &OrdersArgs,
        pass: u32,
        new_customer_rate: f64,
        writer: &std::sync::mpsc::Sender<PassRequest>,
    ) -> Result<Value, String> {
        let mut rng = fastrand::Rng::with_seed(u64::from(pass) + 100);
        self.sandbox.brightpearl.reset_counters();
        let delivered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (answer, result) = std::sync::mpsc::channel();
        let unique = args.orders as usize;
        writer
            .send(PassRequest { expected: unique, delivered: Arc::clone(&delivered), answer })
            .map_err(|_| "the writer thread stopped")?;

        let kinds = [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce];
        let started = Instant::now();
        let mut sent_at: HashMap<OrderKey, Instant> = HashMap::new();
        let mut pass_orders: Vec<(u64, String)> = Vec::new();
        let mut channel_totals: HashMap<(u64, String), Option<f64>> = HashMap::new();
        let mut deliveries = 0usize;
        let mut refused = 0usize;
        // (store, order id, refund id) of the refunds made this pass.
        let mut refunds: Vec<(String, String, String)> = Vec::new();
        let mut paid_later = 0usize;
        // Payments and refunds are the warm pass's (the cold pass measures first contact).
        let (refund_rate, paid_later_rate) =
            if pass == 0 { (0.0, 0.0) } else { (args.refund_rate, args.paid_later_rate) };
        for n in 0..args.orders {
            let kind = kinds[n as usize % kinds.len()];
            let store = self.config.stores.iter().find(|s| s.kind == kind).ok_or("no store for a channel")?;
            let customers = args.customers.max(1);
            let email = if rng.f64() < new_customer_rate {
                format!("new-{pass}-{n}@bench.test")
            } else if pass == 0 {
                // The cold pass meets every pooled customer.
                format!("customer{}@bench.test", n % customers)
            } else {
                format!("customer{}@bench.test", rng.u32(..customers))
            };
            let (currency, money, price) = order_money(n);
            let lines = (0..rng.usize(1..=3))
                .map(|_| NewOrderLine {
                    sku: Some(self.skus[rng.usize(..self.skus.len())].clone()),
                    name: String::new(),
                    quantity: rng.u32(1..=3),
                    price,
                })
                .collect();
            let new = NewOrder {
                email: Some(email),
                first_name: "Bench".into(),
                last_name: format!("Buyer{n}"),
                currency: currency.into(),
                lines,
            };
            let channel = sandbox_channel(kind);
            let first_sku = new.lines.first().and_then(|l: &NewOrderLine| l.sku.clone());
            let (order_id, payload) = self.sandbox.channels.create_priced_order(channel, new, money);
            // Drawn only when asked for, so runs without them keep their random sequence.
            let unpaid = paid_later_rate > 0.0 && rng.f64() < paid_later_rate;
            let refund = refund_rate > 0.0 && rng.f64() < refund_rate;
            if unpaid {
                self.sandbox.channels.set_paid(channel, &order_id, false);
                paid_later += 1;
            }
            channel_totals.insert(
                (store.brightpearl_channel_id.unwrap_or(0), order_id.clone()),
                channel_total(&payload),
            );
            // Pace arrivals: order n is due at n / rate seconds into the pass.
            let due = started + Duration::from_secs_f64(f64::from(n) / args.orders_per_second.max(0.001));
            tokio::time::sleep_until(due.into()).await;
            let options = DeliveryOptions {
                duplicates: usize::from(rng.f64() < args.duplicate_rate),
                ..DeliveryOptions::default()
            };
            let url = format!("{}/webhooks/{kind}/{}", self.ingress_url, store.name);
            sent_at.insert((store.name.clone(), order_id.clone()), Instant::now());
            let sent = self
                .sandbox
                .channels
                .deliver_order_webhook(channel, &order_id, &url, secret(kind), &options)
                .await;
            deliveries += sent.len();
            refused += sent.iter().filter(|s| s.status != 200).count();
            // Later events of the same order, each redelivered at the duplicate rate.
            let mut later = Vec::new();
            if unpaid {
                self.sandbox.channels.set_paid(channel, &order_id, true);
                later.push(OrderTopic::Updated);
            }
            if refund && let Some(sku) = &first_sku {
                let (shipping, restock) = (n % 2 == 0, n % 4 < 2);
                if let Some(refund_id) = self.sandbox.channels.refund_order(
                    channel,
                    &order_id,
                    &[(sku.as_str(), 1)],
                    shipping,
                    restock,
                ) {
                    refunds.push((store.name.clone(), order_id.clone(), refund_id));
                    later.push(OrderTopic::Refunded);
                }
            }
            for topic in later {
                let options = DeliveryOptions {
                    topics: vec![topic],
                    duplicates: usize::from(rng.f64() < args.duplicate_rate),
                    ..DeliveryOptions::default()
                };
                let sent = self
                    .sandbox
                    .channels
                    .deliver_order_webhook(channel, &order_id, &url, secret(kind), &options)
                    .await;
                deliveries += sent.len();
                refused += sent.iter().filter(|s| s.status != 200).count();
            }
            pass_orders.push((store.brightpearl_channel_id.unwrap_or(0), order_id));
        }
        delivered.store(true, std::sync::atomic::Ordering::SeqCst);
        let measured = tokio::task::spawn_blocking(move || result.recv())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the writer thread stopped")?;
        let wall = started.elapsed();
        let mut report = self.figures(unique, deliveries, refused, &pass_orders, &sent_at, &measured, wall);
        if let Some(map) = report.as_object_mut() {
            map.insert("totals_mismatched".into(), json!(self.totals_mismatched(&channel_totals)));
            map.insert("paid_later".into(), json!(paid_later));
            map.insert("refunds".into(), json!(refunds.len()));
            for (k, v) in self.credit_figures(&refunds) {
                map.insert(k.into(), v);
            }
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn figures(
        &self,
        unique: usize,
        deliveries: usize,
        refused: usize,
        pass_orders: &[(u64, String)],
        sent_at: &HashMap<OrderKey, Instant>,
        writer: &WriterPass,
        wall: Duration,
    ) -> Value {
        let counters = self.sandbox.brightpearl.counters();
        let sales_orders: HashMap<(u64, String), u64> = self.sandbox.brightpearl.with_state(|s| {
            let mut by_ref = HashMap::new();
            for o in s.orders.values().filter(|o| o.order_type == "SO") {
                if let Some(external_ref) = &o.external_ref {
                    // `{store}:{order id}`: the store is told apart by the channel id already.
                    let order_id = external_ref.split_once(':').map_or(external_ref.as_str(), |(_, id)| id);
                    *by_ref.entry((o.channel_id.unwrap_or(0), order_id.to_string())).or_insert(0) += 1;
                }
            }
            by_ref
        });
        let found: Vec<u64> = pass_orders.iter().filter_map(|key| sales_orders.get(key).copied()).collect();
        let lost_orders: Vec<String> = pass_orders
            .iter()
            .filter(|key| !sales_orders.contains_key(*key))
            .take(5)
            .map(|(channel, id)| {
                let elsewhere: Vec<u64> =
                    sales_orders.keys().filter(|(_, r)| r == id).map(|(c, _)| *c).collect();
                format!("channel {channel} order {id} (same ref on channels {elsewhere:?})")
            })
            .collect();
        let so_ids: std::collections::HashSet<u64> = self.sandbox.brightpearl.with_state(|s| {
            s.orders
                .values()
                .filter(|o| o.order_type == "SO")
                .filter(|o| {
                    let id = o.external_ref.as_deref().and_then(|r| r.split_once(':')).map(|(_, id)| id);
                    id.is_some_and(|id| {
                        pass_orders.iter().any(|(c, i)| *c == o.channel_id.unwrap_or(0) && i == id)
                    })
                })
                .map(|o| o.id)
                .collect()
        });
        // From the sandbox's own records: units reserved beyond the order's own, and payment
        // POSTs Brightpearl took beyond one per order.
        let (double_reservations, double_payments) = self.sandbox.brightpearl.with_state(|s| {
            let double_reservations = s
                .reservations
                .iter()
                .filter(|(o, _)| so_ids.contains(o))
                .filter(|(o, r)| {
                    let ordered: i64 =
                        s.orders.get(o).map_or(0, |so| so.rows.iter().map(|row| row.quantity).sum());
                    r.rows.values().map(|(_, q)| q).sum::<i64>() > ordered
                })
                .count();
            let mut per_order: HashMap<u64, usize> = HashMap::new();
            for p in s.payments.iter().filter(|p| so_ids.contains(&p.order_id)) {
                *per_order.entry(p.order_id).or_insert(0) += 1;
            }
            let missing = so_ids.iter().filter(|o| !per_order.contains_key(o)).count();
            (double_reservations, (per_order.values().map(|n| n.saturating_sub(1)).sum::<usize>(), missing))
        });
        let (double_payments, missing_payments) = double_payments;
        let created: u64 = found.iter().sum();
        let duplicates: u64 = found.iter().map(|n| n.saturating_sub(1)).sum();
        let lost = unique - found.len();

        let mut latencies: Vec<f64> = sent_at
            .iter()
            .filter_map(|(key, sent)| {
                writer
                    .completed
                    .get(key)
                    .map(|done| done.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let full: Vec<&BatchStat> = writer
            .batches
            .iter()
            .filter(|b| b.size == BATCH_SIZE && b.brightpearl_requests.is_some())
            .collect();
        let full_requests: u64 = full.iter().filter_map(|b| b.brightpearl_requests).sum();
        let full_orders = full.len() * BATCH_SIZE;
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for b in &writer.batches {
            *sizes.entry(b.size).or_insert(0) += 1;
        }
        let per_order = |n: u64| round(n as f64 / unique.max(1) as f64, 3);
        let endpoints: serde_json::Map<String, Value> =
            counters.per_endpoint.iter().map(|(k, v)| (k.clone(), json!(per_order(*v)))).collect();
        json!({
            "orders": unique,
            "unique": unique,
            "created": created,
            "duplicates": duplicates,
            "lost": lost,
            "parked": writer.parked,
            "parked_reasons": writer.parked_reasons,
            "double_reservations": double_reservations,
            "double_payments": double_payments,
            "missing_payments": missing_payments,
            "parked_for_payment_check": writer.parked_reasons.get("payment_unknown").copied().unwrap_or(0),
            "lost_examples": lost_orders,
            "webhook_deliveries": deliveries,
            "webhook_refused": refused,
            "writer_duplicate_jobs": writer.writer_duplicates,
            "brightpearl_requests": counters.requests,
            "brightpearl_requests_per_order": per_order(counters.requests),
            "cpu_ms_per_order": round(writer.cpu.as_secs_f64() * 1000.0 / unique.max(1) as f64, 3),
            "latency_ms_p50": percentile(&latencies, 50.0).map(|v| round(v, 1)),
            "latency_ms_p99": percentile(&latencies, 99.0).map(|v| round(v, 1)),
            "latency_ms_percentiles": crate::chart::percentiles(&latencies).into_iter().map(|v| round(v, 1)).collect::<Vec<_>>(),
            "wall_s": round(wall.as_secs_f64(), 2),
            "timed_out": writer.timed_out,
            "faults": serde_json::to_value(counters.faults).unwrap_or_default(),
            "full_batches": {
                "batches": full.len(),
                "orders": full_orders,
                "brightpearl_requests": full_requests,
                "brightpearl_requests_per_order": if full_orders == 0 { json!(null) } else {
                    json!(round(full_requests as f64 / full_orders as f64, 3))
                },
            },
            "batch_sizes": sizes.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "brightpearl_requests_per_order_by_endpoint": endpoints,
        })
    }
}

impl World<'_> {
    /// From the sandbox's records, for the refunds made: credits beyond one per refund
    /// `externalRef` plus refund payments beyond one per credit (`double_credits`), and refunds
    /// without a closed credit holding exactly its payment (`missing_credits`).
    fn credit_figures(&self, refunds: &[(String, String, String)]) -> Vec<(&'static str, Value)> {
        self.sandbox.brightpearl.with_state(|s| {
            let mut by_ref: HashMap<String, Vec<u64>> = HashMap::new();
            for c in s.credits.values() {
                if let Some(r) = s.orders.get(&c.credit_id).and_then(|o| o.external_ref.clone()) {
                    by_ref.entry(r).or_default().push(c.credit_id);
                }
            }
            let payments_of = |credit: u64| {
                s.payments.iter().filter(|p| p.order_id == credit && p.payment_type == "PAYMENT").count()
            };
            let (mut double, mut missing, mut unclosed, mut unpaid) = (0usize, 0usize, 0usize, 0usize);
            for (store, order, refund) in refunds {
                let credits =
                    by_ref.get(&format!("{store}:{order}:refund:{refund}")).cloned().unwrap_or_default();
                double += credits.len().saturating_sub(1);
                double += credits.iter().map(|c| payments_of(*c).saturating_sub(1)).sum::<usize>();
                let closed = credits.iter().any(|c| s.credits.get(c).is_some_and(|r| r.closed));
                let paid = credits.iter().any(|c| payments_of(*c) > 0);
                unclosed += usize::from(!credits.is_empty() && !closed);
                unpaid += usize::from(!credits.is_empty() && !paid);
                missing += usize::from(credits.is_empty() || !closed || !paid);
            }
            vec![
                ("double_credits", json!(double)),
                ("missing_credits", json!(missing)),
                ("credits_not_closed", json!(unclosed)),
                ("credits_without_payment", json!(unpaid)),
            ]
        })
    }

    /// Orders whose Brightpearl sales order (Σ row net + tax, from the sandbox's records)
    /// differs from the channel's own total, or whose channel total could not be read.
    fn totals_mismatched(&self, channel_totals: &HashMap<(u64, String), Option<f64>>) -> usize {
        self.sandbox.brightpearl.with_state(|s| {
            s.orders
                .values()
                .filter(|o| o.order_type == "SO")
                .filter_map(|o| {
                    let id = o.external_ref.as_deref()?.split_once(':')?.1.to_string();
                    let expected = channel_totals.get(&(o.channel_id.unwrap_or(0), id))?;
                    let written: f64 = o.rows.iter().map(|r| r.net + r.tax).sum();
                    Some(expected.is_none_or(|t| (t - written).abs() > 1e-6))
                })
                .filter(|mismatched| *mismatched)
                .count()
        })
    }
}

/// The order mix (issue 14): GBP, JPY and KWD in turn; every other order from a tax-inclusive
/// shop; half with a 10% discount; a surcharge on one in five (Woo fee line, BigCommerce
/// handling; Shopify has none). Returns the currency, the shop's pricing and the unit price.
fn order_money(n: u32) -> (&'static str, OrderMoney, f64) {
    let (currency, price, shipping, fee, tax_percent) = match (n / 3) % 3 {
        0 => ("GBP", 12.5, 4.99, 1.5, 20),
        1 => ("JPY", 1250.0, 500.0, 150.0, 10),
        _ => ("KWD", 4.125, 1.25, 0.375, 5),
    };
    let money = OrderMoney {
        prices_include_tax: n.is_multiple_of(2),
        tax_percent,
        discount_percent: if n % 4 < 2 { 10 } else { 0 },
        shipping,
        fee: if n.is_multiple_of(5) { fee } else { 0.0 },
    };
    (currency, money, price)
}

/// The channel's own order total from its payload (Shopify `total_price`, WooCommerce
/// `total`, BigCommerce `total_inc_tax`).
fn channel_total(payload: &Value) -> Option<f64> {
    ["total_price", "total", "total_inc_tax"]
        .iter()
        .find_map(|k| payload.get(*k))
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64()))
}

fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

/// The sample secrets `local::sandbox_config` gives the stores.
fn secret(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Shopify => local::SAMPLE_SHOPIFY_SECRET,
        ChannelKind::Bigcommerce => local::SAMPLE_BIGCOMMERCE_SECRET,
        ChannelKind::Woocommerce => local::SAMPLE_WOO_SECRET,
    }
}

/// The writer thread: its own runtime (every thread named `writer`), one `OrderWriter` kept
/// across passes, like a warm Lambda.
fn writer_main(app: App, queue: Arc<InProcessQueue>, inbox: std::sync::mpsc::Receiver<PassRequest>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(WRITER_THREAD)
        // Keep blocking threads (the embedded store) alive so their CPU stays countable.
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("writer runtime: {e}");
            return;
        }
    };
    let writer = app.order_writer();
    while let Ok(request) = inbox.recv() {
        let measured = runtime.block_on(drain(&writer, &queue, &request));
        let _ = request.answer.send(measured);
    }
}

/// Receives and handles batches until every expected order is done or parked and delivery
/// has finished, or the pass times out. `ORDER_CONSUMERS` consumers take batches at once, as the
/// writer's concurrent invocations do on AWS (`OrdersMaxConcurrency`).
async fn drain(writer: &OrderWriter, queue: &InProcessQueue, request: &PassRequest) -> WriterPass {
    let cpu_before = measure::threads_cpu(WRITER_THREAD);
    let before = writer.report();
    let started = Instant::now();
    let shared = Consumers::default();
    let consumers =
        (0..pearlsync::worker::ORDER_CONSUMERS).map(|_| consume(writer, queue, request, started, &shared));
    futures_util::future::join_all(consumers).await;
    let mut pass = shared.pass.into_inner();
    pass.writer_duplicates = writer.report().duplicates - before.duplicates;
    pass.cpu = measure::threads_cpu(WRITER_THREAD).saturating_sub(cpu_before);
    pass
}

/// What the consumers of one pass share (one thread: plain cells).
#[derive(Default)]
struct Consumers {
    pass: std::cell::RefCell<WriterPass>,
    in_flight: std::cell::Cell<usize>,
    batches_started: std::cell::Cell<u64>,
}

async fn consume(
    writer: &OrderWriter,
    queue: &InProcessQueue,
    request: &PassRequest,
    started: Instant,
    shared: &Consumers,
) {
    loop {
        let all_delivered = request.delivered.load(std::sync::atomic::Ordering::SeqCst);
        if all_delivered
            && shared.pass.borrow().completed.len() >= request.expected
            && queue.depth(QueueName::Orders) == 0
        {
            break;
        }
        if started.elapsed() > PASS_TIMEOUT {
            shared.pass.borrow_mut().timed_out = true;
            break;
        }
        let mut received = Vec::new();
        let window_ends = Instant::now() + BATCH_WINDOW;
        while received.len() < BATCH_SIZE {
            let left = window_ends.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match queue.receive(QueueName::Orders, BATCH_SIZE - received.len(), left).await {
                Ok(got) => received.extend(got),
                Err(e) => {
                    eprintln!("writer: receive failed: {e}");
                    break;
                }
            }
        }
        if received.is_empty() {
            continue;
        }
        let messages: Vec<BatchMessage> =
            received.iter().map(|r| pearlsync::worker::batch_message(QueueName::Orders, r)).collect();
        let requests_before = writer.report().brightpearl_requests;
        let ran_alone_from = (shared.in_flight.get() == 0).then(|| shared.batches_started.get() + 1);
        shared.in_flight.set(shared.in_flight.get() + 1);
        shared.batches_started.set(shared.batches_started.get() + 1);
        let report = writer.handle_batch(messages).await;
        shared.in_flight.set(shared.in_flight.get() - 1);
        let completed_at = Instant::now();
        // Requests per batch only where no other batch overlapped it (the count is the writer's).
        let alone = ran_alone_from == Some(shared.batches_started.get());
        let acks = {
            let mut pass = shared.pass.borrow_mut();
            pass.batches.push(BatchStat {
                size: received.len(),
                brightpearl_requests: alone.then(|| writer.report().brightpearl_requests - requests_before),
            });
            pass.parked += report.parked.len();
            for (_, reason) in &report.parked {
                let kind = reason.split(':').next().unwrap_or(reason).trim().to_string();
                *pass.parked_reasons.entry(kind).or_insert(0) += 1;
            }
            let mut acks = Vec::new();
            for r in &received {
                // A failed job stays in flight and comes back after the visibility timeout, as a
                // `batchItemFailures` entry does on SQS (released at once, it would be retried in a
                // tight loop against its own idempotency lease and block the batches behind it).
                if report.failures.contains(&r.message_id) {
                    continue;
                }
                if let Job::ChannelOrder { store, order_id, .. } = &r.job {
                    pass.completed.entry((store.clone(), order_id.clone())).or_insert(completed_at);
                }
                acks.push(r.receipt.clone());
            }
            acks
        };
        for receipt in acks {
            if let Err(e) = queue.ack(QueueName::Orders, &receipt).await {
                eprintln!("writer: queue: {e}");
            }
        }
    }
}
