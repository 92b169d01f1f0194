//! The order writer against the sandbox (Brightpearl + channels over real HTTP) with its state
//! on the DynamoDB emulator: exactly-once order effects, crash recovery, parking, fetching thin
//! jobs, shipments, and a batch run under injected faults.

use pearlsync::queue::{ChannelKind, Job, OrderEvent};
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::faults::{Fault, FaultRates};
use pearlsync_tests::orders_env::*;
use std::time::Duration;

const SO_POST: &str = "POST /order-service/sales-order";
const SO_SEARCH: &str = "GET /order-service/sales-order-search";
const RESERVE: &str = "POST /warehouse-service/order/{ids}/reservation/warehouse/{ids}";
const PAYMENT: &str = "POST /accounting-service/customer-payment";

#[tokio::test]
async fn a_shopify_order_delivered_three_times_gives_one_order_reservation_and_payment() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("ann@example.test", &[("SKU-00001", 2), ("SKU-00002", 1)]));
    let (first, second) = tokio::join!(
        env.writer.handle_batch(vec![message("m1", &job)]),
        env.writer.handle_batch(vec![message("m2", &job)])
    );
    let third = env.writer.handle_batch(vec![message("m3", &job)]).await;
    // A concurrent duplicate is retried, never done twice; its redelivery is a duplicate.
    let mut redelivered = Vec::new();
    for (name, report) in [("m1", &first), ("m2", &second), ("m3", &third)] {
        if !report.failures.is_empty() {
            redelivered.push(message(name, &job));
        }
    }
    let rest = run_to_completion(&env.writer, redelivered, 3).await;
    assert!(rest.parked.is_empty() && first.parked.is_empty() && second.parked.is_empty());

    assert_eq!(sales_orders(&env).get(&id), Some(&1));
    let so = sales_order_id(&env, &id);
    let counters = env.sb.brightpearl.counters();
    assert_eq!(counters.endpoint(SO_POST), 1, "one sales-order POST");
    assert_eq!(counters.endpoint(RESERVE), 1, "one reservation POST");
    assert_eq!(counters.endpoint(PAYMENT), 1, "one payment POST");
    assert_eq!(counters.endpoint(SO_SEARCH), 0, "a first attempt makes no externalRef search");
    assert_eq!(payments_per_order(&env).get(&so), Some(&1));
    env.sb.brightpearl.with_state(|s| {
        let order = &s.orders[&so];
        assert_eq!(order.channel_id, Some(1));
        assert_eq!(order.installed_integration_instance_id, Some(42));
        // Two product rows and shipping as a named row, with the channel line ids on the rows.
        assert_eq!(order.rows.len(), 3);
        assert_eq!(order.rows.iter().filter(|r| r.external_ref.is_some()).count(), 2);
        assert!((order.rows.iter().map(|r| r.net).sum::<f64>() - (3.0 * 12.5 + 5.0)).abs() < 1e-9);
        assert_eq!(s.reservations[&so].rows.len(), 2);
        let payment = s.payments.iter().find(|p| p.order_id == so).expect("payment");
        assert!((payment.amount - (3.0 * 12.5 + 5.0)).abs() < 1e-9);
    });
    let report = env.writer.report();
    assert_eq!(report.created, 1);
    assert_eq!(report.paid, 1);
    assert!(report.duplicates >= 1, "{report:?}");
}

#[tokio::test]
async fn a_response_lost_after_the_sales_order_post_still_gives_one_order_after_the_retry() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("crash@example.test", &[("SKU-00003", 1)]));
    env.sb.brightpearl.fault_at(SO_POST, 1, Fault::LoseResponse);

    // The lost answer is retried within the same batch (issue 18), after the check.
    let first = env.writer.handle_batch(vec![message("m1", &job)]).await;
    assert!(first.failures.is_empty() && first.parked.is_empty(), "{first:?}");
    assert_eq!(first.retried_in_batch, 1, "{first:?}");
    assert_eq!(sales_orders(&env).get(&id), Some(&1), "Brightpearl did create it, once");
    let counters = env.sb.brightpearl.counters();
    assert_eq!(counters.endpoint(SO_SEARCH), 1, "the retry searched by externalRef");
    assert_eq!(counters.endpoint(SO_POST), 1, "and did not post again");
    assert_eq!(counters.endpoint(RESERVE), 1);
    assert_eq!(counters.endpoint(PAYMENT), 1);
}

#[tokio::test]
async fn an_unknown_sku_parks_the_order_with_its_reason() {
    let env = setup().await;
    let (_, job) = shopify_job(&env, new_order("park@example.test", &[("SKU-00001", 1), ("NOPE-1", 1)]));
    let report = env.writer.handle_batch(vec![message("m1", &job)]).await;
    assert_eq!(report.parked, vec![("m1".to_string(), "unknown SKU NOPE-1".to_string())]);
    assert!(report.failures.is_empty());
    let parked = pearlsync::parking::list(env.app.state.as_ref(), "unknown SKU NOPE-1").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].job, job);
    let counters = env.sb.brightpearl.counters();
    assert_eq!(counters.endpoint(SO_POST) + counters.endpoint("POST /multi-message"), 0);
    assert_eq!(counters.endpoint("POST /contact-service/contact"), 0);
}

#[tokio::test]
async fn a_bigcommerce_order_job_without_payload_fetches_the_order() {
    let env = setup().await;
    let (id, _) =
        env.sb.channels.create_order(Channel::Bigcommerce, new_order("bc@example.test", &[("SKU-00004", 2)]));
    let job = Job::ChannelOrder {
        channel: ChannelKind::Bigcommerce,
        store: "bigcommerce-main".into(),
        order_id: id.clone(),
        event: OrderEvent::Created,
        payload: None,
    };
    let report = env.writer.handle_batch(vec![message("m1", &job)]).await;
    assert_eq!(report.done, 1, "{report:?}");
    assert_eq!(
        env.sb.channels.counters(Channel::Bigcommerce).count("v2/order"),
        1,
        "the order was fetched once"
    );
    assert_eq!(sales_orders(&env).get(&id), Some(&1));
    let so = sales_order_id(&env, &id);
    env.sb.brightpearl.with_state(|s| {
        assert_eq!(s.orders[&so].channel_id, Some(2));
        assert_eq!(s.orders[&so].rows.iter().filter(|r| r.product_id.is_some()).count(), 1);
    });
}

#[tokio::test]
async fn a_shipped_goods_out_note_puts_tracking_on_the_channel_order_once() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("ship@example.test", &[("SKU-00005", 2), ("SKU-00006", 1)]));
    // Another order on the same account, so the note must find the right one.
    let (other, other_job) = shopify_job(&env, new_order("other@example.test", &[("SKU-00005", 1)]));
    let report = env.writer.handle_batch(vec![message("m1", &job), message("m2", &other_job)]).await;
    assert_eq!(report.done, 2, "{report:?}");

    let so = sales_order_id(&env, &id);
    let note = env.sb.brightpearl.ship_goods_out(so, "TRK-123", "DHL").expect("ship");
    let shipment = Job::Shipment { goods_out_note_ids: vec![note] };
    for n in 0..2 {
        let report = env.writer.handle_batch(vec![message(&format!("s{n}"), &shipment)]).await;
        assert_eq!(report.done, 1, "{report:?}");
    }
    let fulfilments = env.sb.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(fulfilments.len(), 1, "{fulfilments:?}");
    assert_eq!(
        (fulfilments[0].tracking_number.as_str(), fulfilments[0].carrier.as_str()),
        ("TRK-123", "DHL")
    );
    let mut lines = fulfilments[0].lines.clone();
    lines.sort();
    assert_eq!(lines, vec![("SKU-00005".to_string(), 2), ("SKU-00006".to_string(), 1)]);
    assert!(env.sb.channels.fulfilments(Channel::Shopify, &other).is_empty());
    assert_eq!(env.sb.channels.counters(Channel::Shopify).count("graphql:fulfillmentCreate"), 1);
    assert_eq!(env.writer.report().tracking_posted, 1);
}

#[tokio::test]
async fn two_hundred_orders_under_throttles_and_server_errors_end_as_two_hundred_sales_orders() {
    let env = setup().await;
    let mut ids = Vec::new();
    let mut messages = Vec::new();
    for n in 0..200 {
        let sku = format!("SKU-{:05}", n % 20 + 1);
        let (id, job) = shopify_job(&env, new_order(&format!("buyer{}@example.test", n % 25), &[(&sku, 1)]));
        messages.push(message(&format!("m{n}"), &job));
        ids.push(id);
    }
    env.sb.brightpearl.reset_counters();
    env.sb.brightpearl.faults().set_rates(FaultRates {
        throttle: 0.10,
        server_error: 0.05,
        ..Default::default()
    });

    let report = run_to_completion(&env.writer, messages, 30).await;
    assert!(report.parked.is_empty(), "{:?}", report.parked);
    assert_eq!(report.done, 200);
    let faults = env.sb.brightpearl.counters().faults;
    assert!(faults.throttle > 0 && faults.server_error > 0, "faults were injected: {faults:?}");

    let orders = sales_orders(&env);
    for id in &ids {
        assert_eq!(orders.get(id), Some(&1), "order {id}");
    }
    assert_eq!(orders.values().sum::<u64>(), 200);
    let payments = payments_per_order(&env);
    assert_eq!(payments.len(), 200);
    assert!(payments.values().all(|n| *n == 1), "no order paid twice");
    assert_eq!(env.sb.brightpearl.with_state(|s| s.reservations.len()), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_order_lock_lasts_until_the_invocation_deadline() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("deadline@example.test", &[("SKU-00001", 1)]));
    // Hold the writer's first Brightpearl request, so the lock can be read while the job runs.
    env.sb.brightpearl.faults().script([Some(pearlsync_sandbox::faults::Fault::Slow { millis: 1500 })]);
    let deadline = pearlsync::state::now_epoch_millis() + 600_000;
    let event = serde_json::json!({"Records": [{
        "messageId": "m1", "body": job.encode(), "eventSource": "aws:sqs",
        "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": job.group_id()}
    }]});
    let key = pearlsync::state::Key::new(
        format!("idem#order:shopify:shopify-main:{id}:{}", job.dedup_id()),
        "idempotency",
    );
    let (answer, lock) = tokio::join!(env.writer.handle_invocation(event, deadline), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        env.app.state.get(&key).await.unwrap().map(|item| item.data["lock_expires_at"].clone())
    });
    assert_eq!(lock, Some(serde_json::json!(deadline)), "the lock runs until the deadline");
    assert_eq!(answer.unwrap(), serde_json::json!({"batchItemFailures": []}));
    assert_eq!(sales_orders(&env).len(), 1);
}

#[tokio::test]
async fn the_writer_settles_the_pending_entry_when_it_reserves_or_cancels_the_order() {
    use pearlsync::pending::{self, PendingOrder};
    let env = setup().await;
    let state = env.app.state.as_ref();
    // What ingress recorded for the delivery: 2 + 1 units held back from pushes.
    let (id, job) = shopify_job(&env, new_order("pam@example.test", &[("SKU-00001", 2), ("SKU-00002", 1)]));
    let lines = vec![("SKU-00001".to_string(), 2), ("SKU-00002".to_string(), 1)];
    let recorded = PendingOrder { channel: ChannelKind::Shopify, lines, cancelled: false, settled: None };
    pending::record(state, "shopify-main", &id, &recorded).await.unwrap();
    let (before, _) = pending::load(state, "shopify-main").await.unwrap();
    assert_eq!((before.open_orders, before.by_sku.get("SKU-00001")), (1, Some(&2)));

    let report = env.writer.handle_batch(vec![message("p1", &job)]).await;
    assert_eq!(report.done, 1, "{report:?}");
    // The reserved products, from the sandbox's own reservation record.
    let so = sales_order_id(&env, &id);
    let mut reserved: Vec<u64> = env
        .sb
        .brightpearl
        .with_state(|s| s.reservations[&so].rows.values().map(|(product, _)| *product).collect());
    reserved.sort_unstable();
    assert_eq!(reserved.len(), 2);
    let entry = state.query("pending#shopify-main", "").await.unwrap();
    assert_eq!(entry.len(), 1, "{entry:?}");
    let entry: PendingOrder = serde_json::from_value(entry[0].data.clone()).unwrap();
    let mut settled = entry.settled.clone().expect("settled by the writer, not left for the poll");
    settled.sort_unstable();
    assert_eq!(settled, reserved);
    assert!(entry.lines.is_empty(), "{entry:?}");
    // The poll counts nothing for it, reads the reserved products, and reads no saga: the one
    // read is the ledger query.
    let (after, reads) = pending::load(state, "shopify-main").await.unwrap();
    assert_eq!((after.open_orders, after.by_sku.len(), after.by_product.len()), (0, 0, 0), "{after:?}");
    assert_eq!(after.touched.iter().copied().collect::<Vec<_>>(), reserved);
    assert_eq!((after.settled.len(), reads), (1, 1));
    assert_eq!(env.writer.report().pending_not_settled, 0);

    // Deleted on WooCommerce before the writer saw it: settled with no products (nothing was
    // reserved, no onHand moved).
    let (early, _) = env
        .sb
        .channels
        .create_order(Channel::Woocommerce, new_order("early@example.test", &[("SKU-00003", 4)]));
    let recorded = PendingOrder {
        channel: ChannelKind::Woocommerce,
        lines: vec![("SKU-00003".to_string(), 4)],
        cancelled: false,
        settled: None,
    };
    pending::record(state, "woocommerce-main", &early, &recorded).await.unwrap();
    let deletion = Job::ChannelOrder {
        channel: ChannelKind::Woocommerce,
        store: "woocommerce-main".into(),
        order_id: early.clone(),
        event: OrderEvent::Cancelled,
        payload: Some(serde_json::json!({"id": early.parse::<u64>().expect("numeric id")})),
    };
    let report = env.writer.handle_batch(vec![message("p2", &deletion)]).await;
    assert_eq!(report.done, 1, "{report:?}");
    let (woo, _) = pending::load(state, "woocommerce-main").await.unwrap();
    assert_eq!((woo.open_orders, woo.settled.len(), woo.touched.len()), (0, 1, 0), "{woo:?}");
    let entry = state.query("pending#woocommerce-main", "").await.unwrap();
    let entry: PendingOrder = serde_json::from_value(entry[0].data.clone()).unwrap();
    assert_eq!(entry.settled, Some(vec![]));
}
