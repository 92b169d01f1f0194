//! The reorder checker against the in-process sandbox over real HTTP and a DynamoDB emulator:
//! one PO per supplier and warehouse with the right rows and quantities, no second PO for the
//! same need, dry runs, goods-in by job and by poll, resuming after lost answers; suppliers
//! from `primarySupplierId` or the supplier endpoint, on-order stock from open unreceived PO
//! rows by status id, refused POs parked, and a check resumed from its cursor after a deadline.

use pearlsync::batch::BatchMessage;
use pearlsync::brightpearl::{BrightpearlApi, BrightpearlClient, Priority};
use pearlsync::metrics::Metrics;
use pearlsync::queue::{InProcessQueue, Job, JobQueue, QueueName};
use pearlsync::reorder::{CheckOptions, ReorderChecker, ReorderConfig, SkipReason};
use pearlsync::state::StateStore;
use pearlsync_sandbox::brightpearl::state::{DefaultsRec, OrderRec, RowRec, StockRec};
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::faults::Fault;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use pearlsync_tests::emulator;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST: (u32, Duration) = (500, Duration::from_secs(1));
const WAREHOUSE: u64 = 1;
const CREATE_ORDER: &str = "POST /order-service/order";
const MULTI_MESSAGE: &str = "POST /multi-message";
const ORDER_GET: &str = "GET /order-service/order/{ids}";
const SUPPLIER_GET: &str = "GET /product-service/product/{ids}/supplier";
const PRODUCT_GET: &str = "GET /product-service/product/{ids}";
const AVAILABILITY: &str = "GET /warehouse-service/product-availability/{ids}";
const DEFAULTS: &str = "GET /warehouse-service/warehouse/{ids}/product/{ids}";
/// Sandbox PO statuses: 7 "Placed with supplier" is flagged open, 9 "Cancelled PO" cancelled.
const PO_PLACED: u64 = 7;
const PO_CANCELLED: u64 = 9;

struct Harness {
    sb: Sandbox,
    checker: ReorderChecker,
    queue: Arc<InProcessQueue>,
    state: Arc<dyn StateStore>,
    client: BrightpearlClient,
}

/// `products` products of `suppliers` suppliers (round-robin) in one warehouse, every one
/// below its reorder level; returns the harness and each product's expected order quantity.
async fn harness(products: u32, suppliers: u32) -> (Harness, BTreeMap<u64, i64>) {
    harness_with(products, suppliers, ReorderConfig::default()).await
}

async fn harness_with(products: u32, suppliers: u32, config: ReorderConfig) -> (Harness, BTreeMap<u64, i64>) {
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
        Arc::clone(&state),
        Arc::clone(&queue) as Arc<dyn JobQueue>,
        Arc::new(Metrics::new("reorder-checker")),
        config,
    );
    (Harness { sb, checker, queue, state, client }, expected)
}

impl Harness {
    fn purchase_orders(&self) -> Vec<OrderRec> {
        self.sb
            .brightpearl
            .with_state(|s| s.orders.values().filter(|o| o.order_type == "PO").cloned().collect())
    }

    fn supplier_of(&self, product_id: u64) -> u64 {
        self.sb.brightpearl.with_state(|s| {
            let p = &s.products[&product_id];
            p.primary_supplier_id.or(p.supplier_ids.first().copied()).expect("a supplier")
        })
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
        let p = s.products.get_mut(&no_supplier).expect("seeded");
        p.primary_supplier_id = None;
        p.supplier_ids.clear();
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
    assert_eq!(report.no_reorder_level, 1, "only {no_level} has no level");
    assert!(report.skipped.iter().all(|s| s.product_id != no_level));
    assert!(report.complete);
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

/// One product in warehouse 1: reorder level 10, no reorder quantity (so exactly the need is
/// ordered), `on_hand` unallocated.
fn one_product(h: &Harness, on_hand: i64) -> u64 {
    h.sb.brightpearl.with_state_mut(|s| {
        let id = *s.products.keys().next().expect("seeded");
        s.defaults
            .entry(WAREHOUSE)
            .or_default()
            .insert(id, DefaultsRec { reorder_level: 10, reorder_quantity: 0 });
        s.stock.entry(id).or_default().insert(WAREHOUSE, StockRec { on_hand, allocated: 0 });
        id
    })
}

/// A purchase order another app raised: one row of `quantity` in `status`. Returns (PO, row).
fn foreign_po(h: &Harness, product_id: u64, quantity: i64, status: u64) -> (u64, u64) {
    let supplier = h.supplier_of(product_id);
    h.sb.brightpearl.with_state_mut(|s| {
        let id = s.next("order");
        let row = s.next("row");
        let now = chrono::Utc::now();
        s.orders.insert(
            id,
            OrderRec {
                id,
                order_type: "PO".into(),
                contact_id: supplier,
                reference: Some(format!("manual-{id}")),
                external_ref: None,
                installed_integration_instance_id: None,
                channel_id: None,
                currency: "GBP".into(),
                price_list_id: None,
                warehouse_id: Some(WAREHOUSE),
                status_id: status,
                delivery: serde_json::Value::Null,
                rows: vec![RowRec {
                    id: row,
                    product_id: Some(product_id),
                    name: "bought by hand".into(),
                    quantity,
                    net: 0.0,
                    tax: 0.0,
                    tax_code: Some("T0".into()),
                    external_ref: None,
                }],
                notes: vec![],
                created_on: now,
                updated_on: now,
            },
        );
        (id, row)
    })
}

/// The row quantity of `product_id` on the one PO we raised for it.
fn ordered(h: &Harness, product_id: u64) -> Option<i64> {
    let ours: Vec<OrderRec> = h
        .purchase_orders()
        .into_iter()
        .filter(|po| po.reference.as_deref().is_some_and(|r| r.starts_with("pearlsync-reorder-")))
        .collect();
    assert!(ours.len() <= 1, "one PO at most: {ours:?}");
    ours.first().and_then(|po| rows_of(po).get(&product_id).copied())
}

#[tokio::test]
async fn a_short_product_with_only_a_primary_supplier_gets_a_po() {
    let (h, expected) = harness(3, 1).await;
    h.sb.brightpearl.with_state_mut(|s| {
        for p in s.products.values_mut() {
            p.supplier_ids.clear();
        }
    });
    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 1);
    assert_eq!(rows_of(&pos[0]), expected);
    let primary =
        h.sb.brightpearl.with_state(|s| s.products.values().next().and_then(|p| p.primary_supplier_id));
    assert_eq!(Some(pos[0].contact_id), primary);
    assert_eq!(h.requests(SUPPLIER_GET), 0, "the primary came with the catalogue");
    assert_eq!(h.requests(PRODUCT_GET), 0, "the product GET has no suppliers to read");
}

#[tokio::test]
async fn a_product_whose_supplier_comes_only_from_the_supplier_endpoint_gets_one() {
    let (h, expected) = harness(2, 2).await;
    let ids: Vec<u64> = expected.keys().copied().collect();
    let second_supplier = h.supplier_of(ids[1]);
    assert_ne!(h.supplier_of(ids[0]), second_supplier);
    h.sb.brightpearl.with_state_mut(|s| {
        let p = s.products.get_mut(&ids[0]).expect("seeded");
        p.primary_supplier_id = None;
        p.supplier_ids = vec![second_supplier];
    });
    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 1, "both products on the listed supplier's PO");
    assert_eq!(pos[0].contact_id, second_supplier);
    assert_eq!(rows_of(&pos[0]), expected);
    assert_eq!(h.requests(SUPPLIER_GET), 1, "asked only for the product without a primary");

    // One id Brightpearl does not know fails a whole set: the client isolates it.
    let read = h.client.product_suppliers(&[ids[0], 99_999]).await.expect("supplier read");
    assert_eq!(read.suppliers.get(&ids[0]), Some(&vec![second_supplier]));
    assert_eq!(read.refused.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [99_999]);
    assert_eq!(h.requests(SUPPLIER_GET), 4, "the set, then each half");
}

#[tokio::test]
async fn on_order_counts_only_the_unreceived_part_of_another_apps_open_po() {
    let (h, _) = harness(1, 1).await;
    let product = one_product(&h, 0);
    let (po, row) = foreign_po(&h, product, 8, PO_PLACED);
    h.sb.brightpearl.receive_purchase_order(po, Some(vec![(row, 3)])).expect("partial receipt");
    // The receipt raised stock; set it so the arithmetic is plain: 1 on hand + 5 still to come.
    h.sb.brightpearl.set_stock(product, WAREHOUSE, 1);

    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(report.on_order.open_purchase_orders, 1);
    assert_eq!(report.on_order.unreceived_quantity, 5);
    // Level 10 − (1 + 5): the received 3 are in stock, not on order (counting all 8 would
    // order 1, ignoring the PO would order 9).
    assert_eq!(ordered(&h, product), Some(4));
}

#[tokio::test]
async fn a_po_in_a_closed_status_does_not_count() {
    let (h, _) = harness(1, 1).await;
    let product = one_product(&h, 1);
    foreign_po(&h, product, 6, PO_CANCELLED);
    foreign_po(&h, product, 2, PO_PLACED);
    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert!(report.on_order.closed_status_ids.contains(&PO_CANCELLED), "{:?}", report.on_order);
    assert!(!report.on_order.closed_statuses_configured);
    assert_eq!(ordered(&h, product), Some(10 - 1 - 2), "only the placed PO is on order");

    // Configured ids replace the flags: with 7 closed and 9 held open the other PO counts.
    let config = ReorderConfig { closed_po_status_ids: vec![PO_PLACED], ..Default::default() };
    let (h, _) = harness_with(1, 1, config).await;
    let product = one_product(&h, 1);
    foreign_po(&h, product, 6, PO_CANCELLED);
    foreign_po(&h, product, 2, PO_PLACED);
    let report = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(report.on_order.closed_status_ids, [PO_PLACED]);
    assert_eq!(ordered(&h, product), Some(10 - 1 - 6));
}

#[tokio::test]
async fn a_rejected_po_is_parked_and_not_counted() {
    let (h, expected) = harness(1, 1).await;
    let product = *expected.keys().next().expect("a product");
    let supplier = h.supplier_of(product);
    // The primary supplier names a contact the account no longer has: the PO POST is a 400.
    h.sb.brightpearl
        .with_state_mut(|s| s.products.get_mut(&product).expect("seeded").primary_supplier_id = Some(9_999));
    let first = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(first.failed[0].parked && !first.failed[0].retryable);
    assert!(h.purchase_orders().is_empty());
    let parked = pearlsync::parking::list(h.state.as_ref(), "rejected by Brightpearl").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert!(parked[0].reason.contains(&first.failed[0].reference), "{}", parked[0].reason);
    assert_eq!(parked[0].job, Job::StockChanged { product_ids: vec![product] });

    // Fixed in Brightpearl: the next check orders the whole need again (the refused record
    // neither counts as on order nor is sent again).
    h.sb.brightpearl.with_state_mut(|s| {
        s.products.get_mut(&product).expect("seeded").primary_supplier_id = Some(supplier)
    });
    let second = h.checker.run_check(CheckOptions::default()).await.expect("check runs");
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(second.on_order.unreceived_quantity, 0);
    assert_eq!(ordered(&h, product), expected.get(&product).copied());
    assert_eq!(h.requests(CREATE_ORDER), 2, "the refused PO was not posted again");
}

#[tokio::test]
async fn the_check_resumes_from_its_cursor_after_a_deadline() {
    let config = ReorderConfig { slice_products: 200, ..Default::default() };
    let (h, expected) = harness_with(700, 2, config).await;
    // A deadline already passed: every invocation does one unit of work (a slice, a PO).
    let mut reports = Vec::new();
    while reports.len() < 20 {
        let report = h
            .checker
            .run_check_until(CheckOptions::default(), Some(Instant::now()))
            .await
            .expect("invocation runs");
        let complete = report.complete;
        reports.push(report);
        if complete {
            break;
        }
    }
    assert!(reports.last().is_some_and(|r| r.complete), "finished in 20 invocations");
    // Four slices (200, 200, 200, 100), then one PO per supplier, one per invocation.
    assert_eq!(reports.len(), 6);
    assert!(!reports[0].resumed_scan && reports[1].resumed_scan);
    assert_eq!(reports.iter().map(|r| r.products_checked).collect::<Vec<_>>(), [200, 200, 200, 100, 0, 0]);
    assert!(reports[..4].iter().all(|r| r.purchase_orders.is_empty()), "no PO before the scan ends");
    assert_eq!(reports.iter().map(|r| r.purchase_orders.len()).sum::<usize>(), 2);
    // Every slice was read once: one ID set of 200 per slice for availability and defaults.
    assert_eq!(h.requests(AVAILABILITY), 4);
    assert_eq!(h.requests(DEFAULTS), 4);
    let mut covered = BTreeMap::new();
    let pos = h.purchase_orders();
    assert_eq!(pos.len(), 2, "one PO per supplier, as an uninterrupted run raises");
    for po in &pos {
        for (product, quantity) in rows_of(po) {
            assert_eq!(h.supplier_of(product), po.contact_id);
            assert!(covered.insert(product, quantity).is_none(), "product {product} ordered twice");
        }
    }
    assert_eq!(covered, expected);
    // The next schedule starts a fresh scan and finds everything on order.
    let fresh = h.checker.run_check(CheckOptions::default()).await.expect("fresh check");
    assert!(fresh.complete && !fresh.resumed_scan);
    assert!(fresh.purchase_orders.is_empty(), "{:?}", fresh.purchase_orders);
    assert_eq!(fresh.products_checked, 700);
}
