//! The reorder checker against the in-process sandbox over real HTTP and a DynamoDB emulator:
//! one PO per supplier and warehouse with the right rows and quantities, no second PO for the
//! same need, dry runs, goods-in by job and by poll, and resuming after lost answers.

use pearlsync::batch::BatchMessage;
use pearlsync::brightpearl::{BrightpearlApi, BrightpearlClient, Priority};
use pearlsync::metrics::Metrics;
use pearlsync::queue::{InProcessQueue, Job, JobQueue, QueueName};
use pearlsync::reorder::{CheckOptions, ReorderChecker, ReorderConfig, SkipReason};
use pearlsync::state::StateStore;
use pearlsync_sandbox::brightpearl::state::{DefaultsRec, OrderRec, StockRec};
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::faults::Fault;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use pearlsync_tests::emulator;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const FAST: (u32, Duration) = (500, Duration::from_secs(1));
const WAREHOUSE: u64 = 1;
const CREATE_ORDER: &str = "POST /order-service/order";
const MULTI_MESSAGE: &str = "POST /multi-message";
const ORDER_GET: &str = "GET /order-service/order/{ids}";

struct Harness {
    sb: Sandbox,
    checker: ReorderChecker,
    queue: Arc<InProcessQueue>,
}

/// `products` products of `suppliers` suppliers (round-robin) in one warehouse, every one
/// below its reorder level; returns the harness and each product's expected order quantity.
async fn harness(products: u32, suppliers: u32) -> (Harness, BTreeMap<u64, i64>) {
    let sb = pearlsync_sandbox::start(SandboxConfig {
        brightpearl: BrightpearlSandboxConfig {
            rate_limit: FAST.0,
            rate_window: FAST.1,
            seed: Some(SeedSpec { products, warehouses: 1, suppliers, seed: 3 }),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let mut expected = BTreeMap::new();
    sb.brightpearl.with_state_mut(|s| {
        let ids: Vec<u64> = s.products.keys().copied().collect();
        for (i, id) in ids.into_iter().enumerate() {
            let i = i as i64;
            let (level, quantity, on_hand, allocated) =
                (10 + i % 5, [5, 10, 20][i as usize % 3], i % 7, i % 3);
            s.defaults
                .entry(WAREHOUSE)
                .or_default()
                .insert(id, DefaultsRec { reorder_level: level, reorder_quantity: quantity });
            s.stock.entry(id).or_default().insert(WAREHOUSE, StockRec { on_hand, allocated });
            // Projected = unallocated on hand (nothing on order yet); allocated stock is spoken for.
            let need = level - on_hand;
            expected.insert(id, (need + quantity - 1) / quantity * quantity);
        }
    });
    let client =
        BrightpearlClient::new(pearlsync_tests::sandbox_brightpearl(&sb, FAST)).expect("client builds");
    let state: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let queue = Arc::new(InProcessQueue::default());
    let checker = ReorderChecker::from_parts(
        Arc::new(client.with_priority(Priority::Background)) as Arc<dyn BrightpearlApi>,
        state,
        Arc::clone(&queue) as Arc<dyn JobQueue>,
        Arc::new(Metrics::new("reorder-checker")),
        ReorderConfig::default(),
    );
    (Harness { sb, checker, queue }, expected)
}

impl Harness {
    fn purchase_orders(&self) -> Vec<OrderRec> {
        self.sb
            .brightpearl
            .with_state(|s| s.orders.values().filter(|o| o.order_type == "PO").cloned().collect())
    }

    fn supplier_of(&self, product_id: u64) -> u64 {
        self.sb.brightpearl.with_state(|s| s.products[&product_id].supplier_ids[0])
    }

    fn requests(&self, endpoint: &str) -> u64 {
        self.sb.brightpearl.counters().endpoint(endpoint)
    }

    async fn goods_in_job(&self, note_id: u64) -> pearlsync::batch::BatchReport {
        let message = BatchMessage {
            message_id: format!("m-{note_id}"),
            body: Job::GoodsIn { goods_in_note_ids: vec![note_id] }.encode(),
            group_id: None,
            receive_count: 1,
        };
        self.checker.handle_batch(vec![message]).await
    }

    async fn stock_jobs(&self) -> Vec<Job> {
        let received = self.queue.receive(QueueName::Stock, 10, Duration::ZERO).await.expect("receive");
        for r in &received {
            self.queue.ack(QueueName::Stock, &r.receipt).await.expect("ack");
        }
        received.into_iter().map(|r| r.job).collect()
    }
}

/// Product → quantity on a PO, rows added in order.
fn rows_of(po: &OrderRec) -> BTreeMap<u64, i64> {
    po.rows.iter().map(|r| (r.product_id.expect("PO rows name products"), r.quantity)).collect()
}

#[tokio::test]
async fn twelve_short_products_of_three_suppliers_give_three_pos_and_a_second_run_none() {
    let (h, expected) = harness(14, 3).await;
    // Two products that must be skipped: no supplier, and no reorder level.
    let ids: Vec<u64> = expected.keys().copied().collect();
    let (no_supplier, no_level) = (ids[12], ids[13]);
    h.sb.brightpearl.with_state_mut(|s| {
        s.products.get_mut(&no_supplier).expect("seeded").supplier_ids.clear();
        s.defaults.entry(WAREHOUSE).or_default().get_mut(&no_level).expect("seeded").reorder_level = 0;
    });
    let wanted: BTreeMap<u64, i64> = expected.iter().take(12).map(|(p, q)| (*p, *q)).collect();

    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");

    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 3, "one PO per supplier");
    assert_eq!(report.purchase_orders.len(), 3);
    let mut covered = BTreeMap::new();
    for po in &pos {
        assert_eq!(po.warehouse_id, Some(WAREHOUSE), "delivery warehouse set");
        let rows = rows_of(po);
        assert_eq!(rows.len(), po.rows.len(), "one row per product");
        for (product, quantity) in &rows {
            assert_eq!(h.supplier_of(*product), po.contact_id, "row on its supplier's PO");
            covered.insert(*product, *quantity);
        }
        let reported =
            report.purchase_orders.iter().find(|r| r.purchase_order_id == po.id).expect("reported");
        assert_eq!(reported.supplier_id, po.contact_id);
        assert_eq!(reported.rows.len(), po.rows.len());
    }
    assert_eq!(covered, wanted, "every short product ordered once, rounded up to its reorder quantity");
    assert!(report.skipped.iter().any(|s| s.product_id == no_supplier && s.reason == SkipReason::NoSupplier));
    assert!(
        report.skipped.iter().any(|s| s.product_id == no_level && s.reason == SkipReason::NoReorderLevel)
    );
    assert_eq!(h.requests(CREATE_ORDER), 3);
    assert_eq!(h.requests(MULTI_MESSAGE), 3, "each PO's four rows in one multi-message");
    assert_eq!(report.brightpearl_requests, h.sb.brightpearl.counters().requests);

    let again = h.checker.run_check(CheckOptions::default()).await.expect("second check runs");
    assert!(again.purchase_orders.is_empty(), "{:?}", again.purchase_orders);
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_eq!(h.purchase_orders().len(), 3, "still three POs");
    assert_eq!(h.requests(CREATE_ORDER), 3);
    assert_eq!(h.requests(MULTI_MESSAGE), 3);
}

#[tokio::test]
async fn a_dry_run_returns_the_payloads_and_creates_nothing() {
    let (h, expected) = harness(12, 3).await;
    let report = h.checker.run_check(CheckOptions { dry_run: true }).await.expect("dry run");
    assert!(report.dry_run);
    assert_eq!(report.planned.len(), 3);
    assert!(report.purchase_orders.is_empty());
    let mut planned = BTreeMap::new();
    for plan in &report.planned {
        assert_eq!(plan.warehouse_id, WAREHOUSE);
        for row in &plan.rows {
            assert_eq!(h.supplier_of(row.product_id), plan.supplier_id);
            planned.insert(row.product_id, row.quantity);
        }
    }
    assert_eq!(planned, expected);
    assert!(h.purchase_orders().is_empty());
    assert_eq!(h.requests(CREATE_ORDER), 0);
    assert_eq!(h.requests(MULTI_MESSAGE), 0);
    // Nothing was recorded either: a real run afterwards raises all three.
    let real = h.checker.run_check(CheckOptions::default()).await.expect("real run");
    assert_eq!(real.purchase_orders.len(), 3);
}

#[tokio::test]
async fn a_partial_goods_in_keeps_the_po_open_and_a_full_receipt_closes_it_and_enqueues_stock_changed() {
    let (h, _) = harness(12, 3).await;
    h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    let po = h.purchase_orders().into_iter().next().expect("a PO");
    let first = po.rows[0].clone();
    let partial = first.quantity / 2;
    assert!(partial > 0);

    let note =
        h.sb.brightpearl.receive_purchase_order(po.id, Some(vec![(first.id, partial)])).expect("receive");
    let batch = h.goods_in_job(note).await;
    assert_eq!(batch.done, 1);
    assert!(batch.failures.is_empty());
    assert_eq!(
        h.stock_jobs().await,
        [Job::StockChanged { product_ids: vec![first.product_id.expect("product")] }]
    );
    // A duplicate delivery changes nothing and asks for no second push.
    assert_eq!(h.goods_in_job(note).await.done, 1);
    assert!(h.stock_jobs().await.is_empty());

    // Still open: the poll checks all three POs, and a new check raises nothing for the rest.
    let polled = h.checker.poll_goods_in().await.expect("poll");
    assert_eq!(polled.purchase_orders_checked, 3);
    assert!(polled.notes_applied.is_empty(), "the note was applied once");
    let again = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert!(again.purchase_orders.is_empty(), "{:?}", again.purchase_orders);
    assert_eq!(h.purchase_orders().len(), 3);

    let rest = h.sb.brightpearl.receive_purchase_order(po.id, None).expect("receive the rest");
    assert_eq!(h.goods_in_job(rest).await.done, 1);
    let mut received: Vec<u64> = po.rows.iter().filter_map(|r| r.product_id).collect();
    received.sort_unstable();
    assert_eq!(h.stock_jobs().await, [Job::StockChanged { product_ids: received }]);
    let polled = h.checker.poll_goods_in().await.expect("poll");
    assert_eq!(polled.purchase_orders_checked, 2, "the received PO left the open set");
}

#[tokio::test]
async fn a_lost_goods_in_webhook_is_caught_by_the_scheduled_poll() {
    let (h, _) = harness(6, 2).await;
    h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    let po = h.purchase_orders().into_iter().next().expect("a PO");
    let note = h.sb.brightpearl.receive_purchase_order(po.id, None).expect("receive");

    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(report.goods_in.notes_applied, [note]);
    assert_eq!(report.goods_in.closed, [po.id]);
    assert!(report.purchase_orders.is_empty(), "received stock reaches the levels");
    let mut received: Vec<u64> = po.rows.iter().filter_map(|r| r.product_id).collect();
    received.sort_unstable();
    assert_eq!(h.stock_jobs().await, [Job::StockChanged { product_ids: received }]);
}

#[tokio::test]
async fn a_failure_half_way_through_a_pos_rows_resumes_without_duplicate_rows() {
    let (h, expected) = harness(25, 1).await;
    // The second chunk of ten rows lands in Brightpearl but its answer is lost.
    h.sb.brightpearl.fault_at(MULTI_MESSAGE, 2, Fault::LoseResponse);

    let first = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(first.failed[0].retryable);
    assert!(first.purchase_orders.is_empty());

    let second = h.checker.run_check(CheckOptions::default()).await.expect("check resumes");
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(second.purchase_orders.len(), 1);
    assert!(second.purchase_orders[0].resumed);

    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0].rows.len(), 25, "no duplicate rows");
    assert_eq!(rows_of(&pos[0]), expected);
    assert_eq!(h.requests(CREATE_ORDER), 1);
    assert_eq!(h.requests(MULTI_MESSAGE), 3, "only the last chunk was sent again");
    assert_eq!(h.requests(ORDER_GET), 1, "the PO was read once to adopt the lost chunk");
}

#[tokio::test]
async fn a_lost_header_answer_is_found_by_reference_and_not_posted_again() {
    let (h, expected) = harness(4, 1).await;
    h.sb.brightpearl.fault_at(CREATE_ORDER, 1, Fault::LoseResponse);

    let first = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(first.failed.len(), 1);
    let second = h.checker.run_check(CheckOptions::default()).await.expect("check resumes");
    assert_eq!(second.purchase_orders.len(), 1);

    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 1);
    assert_eq!(rows_of(&pos[0]), expected);
    assert_eq!(h.requests(CREATE_ORDER), 1);
}

#[tokio::test]
async fn the_sample_events_dispatch_to_their_handlers() {
    let (h, expected) = harness(6, 2).await;
    let event = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("sample event is JSON");

    let dry = h
        .checker
        .handle_event(event(include_str!("../../events/reorder-checker/dry-run.json")))
        .await
        .expect("dry-run event");
    assert_eq!(dry["dry_run"], true);
    let planned: usize = dry["planned"]
        .as_array()
        .expect("planned")
        .iter()
        .map(|p| p["rows"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(planned, expected.len());
    assert_eq!(h.requests(CREATE_ORDER), 0);

    let scheduled = h
        .checker
        .handle_event(event(include_str!("../../events/reorder-checker/schedule.json")))
        .await
        .expect("schedule event");
    assert_eq!(scheduled["purchase_orders"].as_array().map(Vec::len), Some(2));
    assert_eq!(h.requests(CREATE_ORDER), 2);

    // Note 1 is not on any of our POs: the job is done and nothing is pushed.
    let batch = h
        .checker
        .handle_event(event(include_str!("../../events/reorder-checker/goods-in-sqs.json")))
        .await
        .expect("SQS event");
    assert_eq!(batch, serde_json::json!({"batchItemFailures": []}));
    assert_eq!(h.requests("GET /warehouse-service/order/{ids}/goods-note/goods-in/{ids}"), 1);
    assert!(h.stock_jobs().await.is_empty());
}
