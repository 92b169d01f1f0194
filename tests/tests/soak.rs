//! Soak (issue 9): orders from the three channels through webhook-ingress (real HTTP, dedup on
//! DynamoDB), the SQS orders queue and the order writer against the sandbox, with 30% duplicate
//! deliveries, 10% throttles, 5% 5xx, 2% dropped connections, a lost answer at every saga step
//! and writers killed mid-batch. It asserts from the sandbox's own state: no order lost, no
//! duplicate sales order, contact, reservation or payment, and a reason on every parked order.
//!
//! Size: `PEARLSYNC_SOAK_ORDERS` (default 60, which runs in seconds).
//!
//! The driver behaves like the Lambda event source: it receives up to 10 messages, hands them
//! to `handle_batch`, deletes what is done or parked, and leaves failures to come back after the
//! visibility timeout. A killed writer (the batch future dropped mid-flight) leaves its messages
//! in flight and its idempotency locks held until they expire.

use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::batch::BatchMessage;
use pearlsync::ingress::{Ingress, http};
use pearlsync::orders::{Saga, Step, saga_key};
use pearlsync::queue::{ChannelKind, Job, QueueName};
use pearlsync::state::Key;
use pearlsync_cli::local::{self, LocalOptions};
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine, OrderTopic};
use pearlsync_sandbox::faults::{Fault, FaultRates};
use pearlsync_tests::emulator;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTACT_POST: &str = "POST /contact-service/contact";
const SO_POST: &str = "POST /order-service/sales-order";
const SO_SEARCH: &str = "GET /order-service/sales-order-search";
const RESERVE: &str = "POST /warehouse-service/order/{ids}/reservation/warehouse/{ids}";
const PAYMENT: &str = "POST /accounting-service/customer-payment";
const MULTI: &str = "POST /multi-message";
const PRODUCTS: u64 = 20;
/// Fast window: the soak is about faults, not the rate limit.
const RATE: (u32, Duration) = (200, Duration::from_secs(2));
const VISIBILITY_SECS: u32 = 1;
const LOCK_SECS: u64 = 2;

fn soak_size() -> usize {
    std::env::var("PEARLSYNC_SOAK_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(60)
}

struct SoakOrder {
    kind: ChannelKind,
    store: &'static str,
    /// The Brightpearl channel id of the store (1, 2, 3 in the local config).
    channel_id: u64,
    id: String,
    email: String,
    quantity: i64,
}

fn channel_of(n: usize) -> (Channel, ChannelKind, &'static str, u64, &'static str) {
    match n % 3 {
        0 => (Channel::Shopify, ChannelKind::Shopify, "demo-shopify", 1, local::SAMPLE_SHOPIFY_SECRET),
        1 => (
            Channel::Bigcommerce,
            ChannelKind::Bigcommerce,
            "demo-bigcommerce",
            2,
            local::SAMPLE_BIGCOMMERCE_SECRET,
        ),
        _ => {
            (Channel::Woocommerce, ChannelKind::Woocommerce, "demo-woocommerce", 3, local::SAMPLE_WOO_SECRET)
        }
    }
}

struct Delivery {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

async fn post_once(client: &reqwest::Client, d: &Delivery) -> u16 {
    let mut request = client.post(&d.url).body(d.body.clone());
    for (k, v) in &d.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// A delivery as a sender makes it: a 503 (the same delivery still in progress) is retried
/// shortly after, as Shopify and BigCommerce do, until it is acknowledged.
async fn post(client: &reqwest::Client, d: &Delivery) -> u16 {
    for _ in 0..50 {
        match post_once(client, d).await {
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            status => return status,
        }
    }
    503
}

/// What the driver saw.
#[derive(Debug, Default)]
struct Drive {
    batches: usize,
    messages: usize,
    /// Batches whose writer was killed before it finished.
    killed: usize,
    parked: Vec<(String, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_under_duplicates_faults_and_crashes_are_written_exactly_once_or_parked_with_a_reason() {
    let size = soak_size();
    let local = local::start(&LocalOptions {
        products: PRODUCTS as u32,
        warehouses: 1,
        suppliers: 1,
        rate_limit: RATE,
    })
    .await
    .expect("sandbox starts");
    let sb = &local.sandbox;
    let products: Vec<u64> = sb.brightpearl.with_state(|s| s.products.keys().copied().collect());
    for product in products {
        sb.brightpearl.set_stock(product, 1, 1_000_000);
    }
    let mut config = local.config.clone();
    config.brightpearl.request_timeout_ms = 3_000;
    config.brightpearl.backoff_base_ms = 5;
    config.brightpearl.backoff_cap_ms = 50;
    config.orders.lock_secs = LOCK_SECS;
    let queues = emulator::sqs_queues(50, VISIBILITY_SECS).await;
    let backends =
        Backends { state: Arc::new(emulator::dynamo_store().await), queue: Arc::new(queues.queue.clone()) };
    let app = App::with_backends(config, backends, "soak").expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ingress_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, Arc::new(Ingress::from_app(&app)), async move {
        let _ = stopped.await;
    }));
    let writer = Arc::new(app.order_writer());

    // Orders on the three stores; buyers repeat, so contacts are shared and searched.
    let mut orders = Vec::new();
    let mut deliveries = Vec::new();
    for n in 0..size {
        let (channel, kind, store, channel_id, secret) = channel_of(n);
        let email = format!("buyer{}@example.test", n % 17);
        let lines: Vec<NewOrderLine> = (0..1 + n % 2)
            .map(|l| NewOrderLine {
                sku: Some(format!("SKU-{:05}", (n + l * 7) as u64 % PRODUCTS + 1)),
                name: String::new(),
                quantity: 1 + (n % 3) as u32,
                price: 7.25,
            })
            .collect();
        let quantity = lines.iter().map(|l| i64::from(l.quantity)).sum();
        let new = NewOrder {
            email: Some(email.clone()),
            first_name: "Soak".into(),
            last_name: format!("Buyer{n}"),
            currency: "GBP".into(),
            lines,
        };
        let (id, _) = sb.channels.create_order(channel, new);
        let (mut headers, body) =
            sb.channels.webhook_request(channel, &id, OrderTopic::Created, secret, 0).expect("order exists");
        headers.push(("Content-Type".into(), "application/json".into()));
        let url = format!("{ingress_url}/webhooks/{kind}/{store}");
        deliveries.push(Delivery { url, headers, body });
        orders.push(SoakOrder { kind, store, channel_id, id, email, quantity });
    }

    // A lost answer at every saga step: the first request of each write (contact, sales order,
    // reservation, payment) is applied and its answer dropped, and so are some multi-messages.
    // The first Lambda invocations get one message each, so the single-message paths run.
    sb.brightpearl.reset_counters();
    for endpoint in [CONTACT_POST, SO_POST, RESERVE, PAYMENT] {
        sb.brightpearl.script_endpoint(endpoint, [Some(Fault::LoseResponse)]);
    }
    let multi_script = [
        None,
        Some(Fault::LoseResponse),
        None,
        None,
        Some(Fault::LoseResponse),
        None,
        Some(Fault::LoseResponse),
    ];
    sb.brightpearl.script_endpoint(MULTI, multi_script);
    sb.brightpearl.faults().set_rates(FaultRates {
        throttle: 0.10,
        server_error: 0.05,
        drop: 0.02,
        ..FaultRates::default()
    });

    // Deliveries: 30% are delivered twice, half of those concurrently with the first, half
    // later while the writer runs (each a sender retry of the same event).
    let client = reqwest::Client::new();
    let duplicated = |n: usize| n % 10 < 3;
    let mut statuses = Vec::new();
    for (n, d) in deliveries.iter().enumerate() {
        if duplicated(n) && n % 2 == 0 {
            let (a, b) = tokio::join!(post(&client, d), post(&client, d));
            statuses.extend([a, b]);
        } else {
            statuses.push(post(&client, d).await);
        }
    }
    let late: Vec<&Delivery> =
        deliveries.iter().enumerate().filter(|(n, _)| duplicated(*n) && n % 2 == 1).map(|(_, d)| d).collect();
    assert!(statuses.iter().all(|s| *s == 200), "every delivery acknowledged: {statuses:?}");

    let direct_hit = |sb: &pearlsync_sandbox::Sandbox| {
        let c = sb.brightpearl.counters();
        [CONTACT_POST, SO_POST, RESERVE, PAYMENT].iter().all(|e| c.endpoint(e) >= 1)
    };
    let keys: Vec<Key> = orders.iter().map(|o| saga_key(o.kind, o.store, &o.id)).collect();
    let deadline = Instant::now() + Duration::from_secs(60 + size as u64 / 2);
    let kill_delays = [40u64, 90, 150, 220, 300];
    let mut drive = Drive::default();
    let mut last_kill = Instant::now();
    let mut reconciled = false;
    let mut late_sent = false;
    loop {
        assert!(Instant::now() < deadline, "the soak did not settle in time: {drive:?}");
        let max = if direct_hit(sb) { 10 } else { 1 };
        let received = app.queue.receive(QueueName::Orders, max, Duration::ZERO).await.expect("receive");
        if received.is_empty() {
            if settled(&app, &keys).await
                && last_kill.elapsed() > Duration::from_secs(VISIBILITY_SECS as u64 + LOCK_SECS)
            {
                // Settled, and nothing is left in flight: one more look after the visibility timeout.
                tokio::time::sleep(Duration::from_millis(VISIBILITY_SECS as u64 * 1000 + 200)).await;
                if app.queue.receive(QueueName::Orders, 1, Duration::ZERO).await.expect("receive").is_empty()
                {
                    break;
                }
                // Something came back: it is in flight now; let it time out and go on.
                continue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        drive.batches += 1;
        drive.messages += received.len();
        let messages: Vec<BatchMessage> =
            received.iter().map(|r| pearlsync::worker::batch_message(QueueName::Orders, r)).collect();
        // Every fifth full batch the writer is killed part-way, like a Lambda that dies.
        let kill = (max == 10 && drive.batches % 5 == 0)
            .then(|| Duration::from_millis(kill_delays[drive.killed % kill_delays.len()]));
        let report = match kill {
            Some(after) => match tokio::time::timeout(after, writer.handle_batch(messages)).await {
                Ok(report) => Some(report),
                Err(_) => {
                    drive.killed += 1;
                    last_kill = Instant::now();
                    None
                }
            },
            None => Some(writer.handle_batch(messages).await),
        };
        if let Some(report) = report {
            for r in received.iter().filter(|r| !report.failures.contains(&r.message_id)) {
                app.queue.ack(QueueName::Orders, &r.receipt).await.expect("ack");
            }
            drive.parked.extend(report.parked);
        }
        // Midway: the late duplicate deliveries, and a reconciliation that enqueues thin jobs
        // for orders not yet seen by the writer (more duplicates of queued jobs).
        if !late_sent && drive.batches >= 3 {
            late_sent = true;
            for d in &late {
                assert_eq!(post(&client, d).await, 200);
            }
        }
        if !reconciled && drive.batches >= 4 {
            reconciled = true;
            let r = writer.reconcile_orders().await.expect("reconcile");
            assert!(r.failed.is_empty(), "{r:?}");
        }
    }

    eprintln!(
        "soak of {size} orders: {} batches, {} messages, {} writers killed",
        drive.batches, drive.messages, drive.killed
    );

    // ---- the sandbox's own state ----
    let counters = sb.brightpearl.counters();
    let faults = counters.faults;
    assert!(faults.throttle > 0 && faults.server_error > 0 && faults.drop > 0, "faults injected: {faults:?}");
    for endpoint in [CONTACT_POST, SO_POST, RESERVE, PAYMENT] {
        // Each script was armed before any request, so its first request lost its answer.
        assert!(counters.endpoint(endpoint) >= 1, "{endpoint} was never called, so its crash never ran");
    }
    assert!(counters.endpoint(MULTI) >= multi_script.len() as u64, "the multi-message crashes ran");
    assert!(counters.endpoint(SO_SEARCH) >= 1, "a retry resumed at `creating` and searched by externalRef");
    assert!(drive.killed >= 1, "a writer was killed mid-batch: {drive:?}");

    let parked = pearlsync::parking::list(app.state.as_ref(), "").await.expect("parked list");
    // A parked record per job: an order's webhook job and its reconciliation job park apart.
    let mut parked_reasons: BTreeMap<(ChannelKind, String, String), Vec<String>> = BTreeMap::new();
    for p in &parked {
        match &p.job {
            Job::ChannelOrder { channel, store, order_id, .. } => parked_reasons
                .entry((*channel, store.clone(), order_id.clone()))
                .or_default()
                .push(p.reason.clone()),
            other => panic!("only channel orders are parked, not {other:?} ({})", p.reason),
        }
    }
    let sagas = sagas(&app, &keys).await;

    let (so_by_ref, contacts_by_email, payments_by_order, reservations, allocated) =
        sb.brightpearl.with_state(|s| {
            let mut so_by_ref: BTreeMap<(u64, String), Vec<u64>> = BTreeMap::new();
            for o in s.orders.values().filter(|o| o.order_type == "SO") {
                so_by_ref
                    .entry((
                        o.channel_id.unwrap_or_default(),
                        pearlsync_tests::channel_order_id(&o.external_ref),
                    ))
                    .or_default()
                    .push(o.id);
            }
            let mut contacts: BTreeMap<String, usize> = BTreeMap::new();
            for c in s.contacts.values().filter(|c| !c.is_supplier) {
                *contacts.entry(c.email.clone().unwrap_or_default().to_lowercase()).or_default() += 1;
            }
            let mut payments: BTreeMap<u64, usize> = BTreeMap::new();
            for p in &s.payments {
                *payments.entry(p.order_id).or_default() += 1;
            }
            let reservations: BTreeMap<u64, i64> =
                s.reservations.iter().map(|(o, r)| (*o, r.rows.values().map(|(_, q)| q).sum())).collect();
            let allocated: i64 = s.stock.values().filter_map(|w| w.get(&1)).map(|st| st.allocated).sum();
            (so_by_ref, contacts, payments, reservations, allocated)
        });

    assert_eq!(
        so_by_ref.values().map(Vec::len).sum::<usize>(),
        size,
        "one sales order per channel order, no more"
    );
    let mut done = 0;
    for (o, saga) in orders.iter().zip(&sagas) {
        let label = format!("{} order {}", o.kind, o.id);
        let sales_orders = so_by_ref.get(&(o.channel_id, o.id.clone())).cloned().unwrap_or_default();
        assert_eq!(sales_orders.len(), 1, "{label}: exactly one sales order, got {sales_orders:?}");
        let so = sales_orders[0];
        assert_eq!(saga.as_ref().and_then(|s| s.sales_order_id), Some(so), "{label}: the saga names it");
        assert_eq!(reservations.get(&so), Some(&o.quantity), "{label}: reserved once, for its lines");
        let payments = payments_by_order.get(&so).copied().unwrap_or(0);
        match (
            saga.as_ref().map(|s| s.step),
            parked_reasons.get(&(o.kind, o.store.to_string(), o.id.clone())),
        ) {
            (Some(Step::Done), None) => {
                done += 1;
                assert_eq!(payments, 1, "{label}: done means paid exactly once");
            }
            // A lost answer is checked (payment search by transactionRef), never parked.
            (step, reason) => panic!("{label}: not done: {step:?}, parked for {reason:?}"),
        }
    }
    assert_eq!(done, size);
    assert!(parked_reasons.is_empty(), "no order parked: {parked_reasons:?}");
    let ordered: i64 = orders.iter().map(|o| o.quantity).sum();
    assert_eq!(allocated, ordered, "stock allocated once per ordered unit: no double reservation");
    let emails: BTreeSet<&str> = orders.iter().map(|o| o.email.as_str()).collect();
    for email in &emails {
        assert_eq!(contacts_by_email.get(*email), Some(&1), "one contact for {email}: {contacts_by_email:?}");
    }
    assert!(payments_by_order.values().all(|n| *n == 1), "no payment twice: {payments_by_order:?}");
    // Nothing went to the dead-letter queue.
    let dead = queues
        .client
        .receive_message()
        .queue_url(&queues.dead_letter_urls[0])
        .max_number_of_messages(10)
        .send()
        .await
        .expect("DLQ receive");
    assert!(dead.messages().is_empty(), "orders in the DLQ: {:?}", dead.messages());
    let report = writer.report();
    assert!(report.duplicates >= 1, "duplicates reached the writer and were absorbed: {report:?}");
    assert_eq!(report.paid as usize, done, "{report:?}");
}

async fn sagas(app: &App, keys: &[Key]) -> Vec<Option<Saga>> {
    let items = app.state.batch_get(keys).await.expect("sagas");
    let by_key: BTreeMap<Key, Saga> = items
        .into_iter()
        .filter_map(|i| Some((i.key(), serde_json::from_value::<Saga>(i.data).ok()?)))
        .collect();
    keys.iter().map(|k| by_key.get(k).cloned()).collect()
}

/// Every order is done.
async fn settled(app: &App, keys: &[Key]) -> bool {
    sagas(app, keys).await.iter().all(|s| s.as_ref().map(|s| s.step) == Some(Step::Done))
}
