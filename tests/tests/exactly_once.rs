//! Exactly once when a write's answer is lost or the writer dies between a write and its record
//! (issue 12): the saga checks before it repeats, counted from the sandbox's own records; foreign
//! goods-out notes do not block the rest of a shipment; writes need the instance id; waits never
//! pass the invocation's deadline.

use async_trait::async_trait;
use pearlsync::Error;
use pearlsync::brightpearl::{BrightpearlApi, BrightpearlClient, NewOrderRow, NewSalesOrder, WriteOutcome};
use pearlsync::queue::Job;
use pearlsync::state::{Condition, Item, Key, PutOutcome, StateStore};
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use pearlsync_tests::emulator;
use pearlsync_tests::orders_env::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A state store whose first write of a saga record at `step` fails: the writer dies after
/// the Brightpearl write that step records, before the record.
struct CrashBeforeRecord {
    inner: Arc<dyn StateStore>,
    step: &'static str,
    armed: AtomicBool,
}

impl CrashBeforeRecord {
    fn new(inner: Arc<dyn StateStore>, step: &'static str) -> Self {
        CrashBeforeRecord { inner, step, armed: AtomicBool::new(true) }
    }

    fn crashed(&self) -> bool {
        !self.armed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl StateStore for CrashBeforeRecord {
    async fn get(&self, key: &Key) -> pearlsync::Result<Option<Item>> {
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> pearlsync::Result<PutOutcome> {
        let saga_at_step = item.pk.starts_with("order#")
            && item.sk == "saga"
            && item.data.get("step").and_then(|s| s.as_str()) == Some(self.step);
        if saga_at_step && self.armed.swap(false, Ordering::SeqCst) {
            return Err(Error::State(format!("crash before recording `{}`", self.step)));
        }
        self.inner.put(item, condition).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> pearlsync::Result<bool> {
        self.inner.delete(key, condition).await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> pearlsync::Result<Vec<Item>> {
        self.inner.query(pk, sk_prefix).await
    }

    async fn batch_get(&self, keys: &[Key]) -> pearlsync::Result<Vec<Item>> {
        self.inner.batch_get(keys).await
    }

    async fn batch_put(&self, items: Vec<Item>) -> pearlsync::Result<()> {
        self.inner.batch_put(items).await
    }
}

#[tokio::test]
async fn a_crash_between_each_write_and_its_record_repeats_no_write() {
    // `created` follows the sales-order POST, `reserved` the reservation, `done` the payment.
    for step in ["created", "reserved", "done"] {
        let (sb, config) = sandbox_and_config().await;
        let store = Arc::new(CrashBeforeRecord::new(Arc::new(emulator::dynamo_store().await), step));
        let env = setup_with(sb, config, Arc::clone(&store) as Arc<dyn StateStore>);
        let (id, job) =
            shopify_job(&env, new_order("crash@example.test", &[("SKU-00003", 2), ("SKU-00004", 1)]));
        let report = run_to_completion(&env.writer, vec![message("m1", &job)], 8).await;
        assert!(store.crashed(), "{step}: the crash ran");
        assert_eq!((report.done, report.parked.len()), (1, 0), "{step}: {report:?}");

        assert_eq!(sales_orders(&env).get(&id), Some(&1), "{step}: one sales order");
        let so = sales_order_id(&env, &id);
        let (reserved, allocated): (i64, i64) = env.sb.brightpearl.with_state(|s| {
            let reserved =
                s.reservations.get(&so).map(|r| r.rows.values().map(|(_, q)| q).sum()).unwrap_or(0);
            let allocated = s.stock.values().filter_map(|w| w.get(&1)).map(|st| st.allocated).sum();
            (reserved, allocated)
        });
        assert_eq!((reserved, allocated), (3, 3), "{step}: reserved once, for its 3 units");
        assert_eq!(payments_per_order(&env).get(&so), Some(&1), "{step}: paid once");
    }
}

#[tokio::test]
async fn a_goods_out_note_of_another_apps_order_is_skipped_and_the_rest_posted() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("ours@example.test", &[("SKU-00005", 1)]));
    assert_eq!(env.writer.handle_batch(vec![message("m1", &job)]).await.done, 1);
    let ours = sales_order_id(&env, &id);

    // An order another app wrote, on no store of ours.
    let bp = BrightpearlClient::new(pearlsync_tests::sandbox_brightpearl(&env.sb, RATE)).expect("client");
    let customer = env.sb.brightpearl.with_state(|s| *s.contacts.keys().next().expect("a contact"));
    let product = env.sb.brightpearl.with_state(|s| *s.products.keys().next().expect("a product"));
    let foreign = NewSalesOrder {
        customer_id: customer,
        external_ref: "other-app:991".into(),
        currency_code: "GBP".into(),
        channel_id: Some(77),
        rows: vec![NewOrderRow {
            product_id: product,
            quantity: 1,
            net: "5.0".parse().unwrap(),
            tax: "1.0".parse().unwrap(),
            tax_code: Some("T20".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let WriteOutcome::Applied(theirs) = bp.create_sales_orders(&[foreign]).await.remove(0) else {
        panic!("the foreign order is written")
    };
    let foreign_note = env.sb.brightpearl.ship_goods_out(theirs, "THEIRS-1", "UPS").expect("ship theirs");
    let our_note = env.sb.brightpearl.ship_goods_out(ours, "OURS-1", "DHL").expect("ship ours");

    // The foreign note first: it must not stop ours.
    let shipment = Job::Shipment { goods_out_note_ids: vec![foreign_note, our_note] };
    let report = env.writer.handle_batch(vec![message("s1", &shipment)]).await;
    assert_eq!((report.done, report.parked.len()), (1, 0), "{report:?}");
    let fulfilments = env.sb.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(fulfilments.len(), 1, "{fulfilments:?}");
    assert_eq!(fulfilments[0].tracking_number, "OURS-1");
    assert_eq!(env.writer.report().foreign_notes_skipped, 1);
}

#[tokio::test]
async fn without_an_instance_id_no_order_is_written_and_the_job_says_which_key() {
    let (sb, mut config) = sandbox_and_config().await;
    config.brightpearl.installed_integration_instance_id = None;
    let env = setup_with(sb, config, Arc::new(emulator::dynamo_store().await));
    let (id, job) = shopify_job(&env, new_order("noid@example.test", &[("SKU-00001", 1)]));
    let report = env.writer.handle_batch(vec![message("m1", &job)]).await;
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert!(report.parked[0].1.contains("brightpearl.installed_integration_instance_id"), "{report:?}");
    assert_eq!(sales_orders(&env).get(&id), None, "nothing written without the unique pair");
}

async fn limited_sandbox(requests: u32, window: Duration) -> Sandbox {
    let bp = BrightpearlSandboxConfig {
        rate_limit: requests,
        rate_window: window,
        seed: Some(SeedSpec { products: 3, warehouses: 1, suppliers: 1, seed: 1 }),
        ..Default::default()
    };
    pearlsync_sandbox::start(SandboxConfig { brightpearl: bp, ..Default::default() }).await.expect("sandbox")
}

#[tokio::test]
async fn a_wait_that_would_pass_the_deadline_returns_a_retryable_error_at_once() {
    let window = Duration::from_secs(60);
    let sb = limited_sandbox(2, window).await;
    let bp = BrightpearlClient::new(pearlsync_tests::sandbox_brightpearl(&sb, (2, window))).expect("client");
    let product = sb.brightpearl.with_state(|s| *s.products.keys().next().expect("a product"));
    for _ in 0..2 {
        bp.availability(&[product]).await.expect("within the budget");
    }
    // The budget is spent for a minute; the invocation has 3 s left.
    bp.set_deadline(Some(Instant::now() + Duration::from_secs(3)));
    let started = Instant::now();
    let answer = bp.availability(&[product]).await;
    let e = answer.expect_err("no answer within the deadline");
    assert!(matches!(e, Error::Deadline { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(1), "returned at once: {:?}", started.elapsed());
    assert_eq!(sb.brightpearl.counters().requests, 2, "nothing was sent past the budget");
}

fn with_payload(
    job: &Job,
    event: pearlsync::queue::OrderEvent,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Job {
    let Job::ChannelOrder { channel, store, order_id, payload, .. } = job else {
        panic!("a channel order job")
    };
    let mut payload = payload.clone().expect("a payload");
    edit(&mut payload);
    Job::ChannelOrder {
        channel: *channel,
        store: store.clone(),
        order_id: order_id.clone(),
        event,
        payload: Some(payload),
    }
}

#[tokio::test]
async fn an_order_paid_after_it_was_written_gets_its_payment_once() {
    use pearlsync::queue::OrderEvent;
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("later@example.test", &[("SKU-00002", 1)]));
    let pending =
        with_payload(&job, OrderEvent::Created, |p| p["financial_status"] = serde_json::json!("pending"));
    assert_eq!(env.writer.handle_batch(vec![message("m1", &pending)]).await.done, 1);
    let so = sales_order_id(&env, &id);
    assert_eq!(payments_per_order(&env).get(&so), None, "not paid yet");

    // orders/updated with financial_status paid, delivered twice.
    let paid = with_payload(&job, OrderEvent::Updated, |p| p["financial_status"] = serde_json::json!("paid"));
    for n in 0..2 {
        let report = env.writer.handle_batch(vec![message(&format!("u{n}"), &paid)]).await;
        assert_eq!(report.done, 1, "{report:?}");
    }
    assert_eq!(payments_per_order(&env).get(&so), Some(&1), "paid once after the update");
}

#[tokio::test]
async fn a_signed_body_replayed_under_a_cancel_topic_cancels_nothing() {
    use pearlsync::queue::OrderEvent;
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("replay@example.test", &[("SKU-00002", 1)]));
    assert_eq!(env.writer.handle_batch(vec![message("m1", &job)]).await.done, 1);
    let so = sales_order_id(&env, &id);
    let status_before = env.sb.brightpearl.with_state(|s| s.orders[&so].status_id);
    // The same signed body (not cancelled) arrives as a "cancelled" event: the topic header
    // is unsigned, so it decides nothing.
    let forged = with_payload(&job, OrderEvent::Cancelled, |_| {});
    let report = env.writer.handle_batch(vec![message("f1", &forged)]).await;
    assert_eq!((report.done, report.parked.len()), (1, 0), "{report:?}");
    assert_eq!(env.sb.brightpearl.with_state(|s| s.orders[&so].status_id), status_before, "not cancelled");
    assert_eq!(env.writer.report().cancelled, 0);
    assert_eq!(env.sb.brightpearl.counters().endpoint("PUT /order-service/order/{ids}/status"), 0);
}

#[tokio::test]
async fn a_woocommerce_deletion_cancels_by_id_from_its_signed_body_without_a_fetch() {
    use pearlsync::queue::{ChannelKind, OrderEvent};
    let env = setup().await;
    let woo = |order_id: &str, event: OrderEvent, payload: serde_json::Value| Job::ChannelOrder {
        channel: ChannelKind::Woocommerce,
        store: "woocommerce-main".into(),
        order_id: order_id.into(),
        event,
        payload: Some(payload),
    };
    let deletion = |id: &str| serde_json::json!({"id": id.parse::<u64>().expect("numeric id")});

    // Deleted before the writer saw it: recorded, and the late create writes nothing.
    let (early, early_payload) = env
        .sb
        .channels
        .create_order(Channel::Woocommerce, new_order("early@example.test", &[("SKU-00001", 1)]));
    let report = env
        .writer
        .handle_batch(vec![message("d1", &woo(&early, OrderEvent::Cancelled, deletion(&early)))])
        .await;
    assert_eq!((report.done, report.parked.len()), (1, 0), "{report:?}");
    let report =
        env.writer.handle_batch(vec![message("c1", &woo(&early, OrderEvent::Created, early_payload))]).await;
    assert_eq!(report.done, 1, "{report:?}");
    assert_eq!(sales_orders(&env).get(&early), None, "a deleted order is never created");

    // Deleted after it was written: the cancellation is attempted on the sales order, by id.
    let (late, late_payload) = env
        .sb
        .channels
        .create_order(Channel::Woocommerce, new_order("late@example.test", &[("SKU-00001", 1)]));
    assert_eq!(
        env.writer
            .handle_batch(vec![message("c2", &woo(&late, OrderEvent::Created, late_payload))])
            .await
            .done,
        1
    );
    env.sb.channels.reset_counters(Channel::Woocommerce);
    env.sb.brightpearl.reset_counters();
    let report = env
        .writer
        .handle_batch(vec![message("d2", &woo(&late, OrderEvent::Cancelled, deletion(&late)))])
        .await;
    let counters = env.sb.brightpearl.counters();
    assert_eq!(
        counters.endpoint("PUT /order-service/order/{ids}/status"),
        1,
        "the cancellation was attempted"
    );
    // The sandbox refuses to cancel a paid order: parked for a person, and replayable.
    assert!(report.parked.iter().all(|(_, r)| r.starts_with("cancel_refused")), "{report:?}");
    let woo_counters = env.sb.channels.counters(Channel::Woocommerce);
    assert_eq!(woo_counters.total_requests(), 0, "no fetch of the deleted order: {woo_counters:?}");
}
