//! Payments and refunds exactly once (issue 15): refund bodies from the platforms' docs and a
//! recorded store parsed by the real parsers (expected figures worked out here); paid-later
//! orders of every shop paid once; a refund delivered three times, or whose answers were lost,
//! credited once with one refund payment, counted from the sandbox's own records (every
//! payment POST, every credit).

use pearlsync::channels::{ChannelOrder, RefundLineKind, bigcommerce, shopify, woocommerce};
use pearlsync::money::Decimal;
use pearlsync::queue::{ChannelKind, Job, OrderEvent};
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::faults::Fault;
use pearlsync_tests::fixture;
use pearlsync_tests::orders_env::*;
use serde_json::{Value, json};

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

#[test]
fn a_recorded_shopify_refund_is_one_restocked_row_meeting_its_transaction() {
    let v = fixture("refunds/shopify/recorded-refunds-create-cad.json");
    let r = shopify::refund::refund(&v, false).expect("parses");
    assert_eq!(r.id, "975224602904");
    assert_eq!(r.lines.len(), 1);
    let line = &r.lines[0];
    assert_eq!(line.kind, RefundLineKind::Restocked, "restock_type return puts the goods back");
    assert_eq!((line.sku.as_deref(), line.quantity), (Some("PRC35120"), 4));
    // 4 × 39.99 less the 15.99 allocated discount; GST 7.20 + RST 10.08.
    assert_eq!(line.net, d("159.96") - d("15.99"));
    assert_eq!(line.tax, d("7.20") + d("10.08"));
    assert_eq!(r.total, d("161.25"), "the refund transaction");
    assert_eq!(r.rows_total(), r.total, "the rows meet the money returned");
    assert_eq!((r.currency.as_deref(), r.gateway.as_deref()), (Some("CAD"), Some("shopify_payments")));
}

#[test]
fn woocommerce_docs_refunds_itemise_what_they_itemise_and_the_rest_is_a_row() {
    let v = fixture("refunds/woocommerce/docs-list-refunds-723.json");
    let refunds = woocommerce::refund::refunds(&v["refunds"]).expect("parses");
    assert_eq!(refunds.len(), 2);
    // 726: an amount-only refund of 10.00: one non-stock row for all of it.
    let amount_only = &refunds[0];
    assert_eq!((amount_only.id.as_str(), amount_only.total), ("726", d("10.00")));
    assert_eq!(amount_only.lines.len(), 1);
    assert_eq!(amount_only.lines[0].kind, RefundLineKind::Other);
    assert_eq!((amount_only.lines[0].net, amount_only.lines[0].tax), (d("10.00"), Decimal::ZERO));
    // 724: one line of -9.00 (quantity -1, no SKU): a named row of 9.00 for line 311.
    let itemised = &refunds[1];
    assert_eq!((itemised.id.as_str(), itemised.total), ("724", d("9.00")));
    assert_eq!(itemised.lines.len(), 1, "nothing left unitemised");
    let line = &itemised.lines[0];
    assert_eq!(
        (line.name.as_str(), line.quantity, line.line_id.as_deref()),
        ("Woo Album #2", 1, Some("311"))
    );
    assert_eq!(line.kind, RefundLineKind::Other, "no SKU: not a product row");
    assert_eq!(line.net, d("9.00"));
    for r in &refunds {
        assert_eq!(r.rows_total(), r.total);
    }
}

#[test]
fn a_bigcommerce_docs_refund_prices_its_product_from_the_order_and_spreads_its_tax() {
    let v = fixture("refunds/bigcommerce/docs-refund-12.json");
    // Order 180 as the docs' refund names it: order product 87, two units of 20.00 + 5.00 tax.
    let order: ChannelOrder = serde_json::from_value(json!({
        "channel": "bigcommerce", "store": "bc", "id": "180", "number": "180", "email": null,
        "customer_name": null, "phone": null, "billing_address": null, "delivery_address": null,
        "currency": "USD", "prices_include_tax": false,
        "lines": [{"line_id": "87", "sku": "BC-87", "name": "Thing", "quantity": 2,
                   "net": "40.00", "tax": "10.00", "discount": "0"}],
        "shipping_lines": [], "total": "50.00", "total_tax": "10.00", "paid": true, "cancelled": false,
        "created_at": null, "updated_at": null
    }))
    .expect("order");
    let r = bigcommerce::refund::refund(&v["example"]["data"], &order).expect("parses");
    assert_eq!((r.id.as_str(), r.total, r.tax), ("12", d("50"), Some(d("5"))));
    assert_eq!(r.gateway.as_deref(), Some("storecredit"));
    // One unit of product 87 at its gross 25.00; the other 25.00 of the 50 is not itemised.
    assert_eq!(r.lines.len(), 2);
    let (product, rest) = (&r.lines[0], &r.lines[1]);
    assert_eq!(
        (product.kind, product.sku.as_deref(), product.quantity),
        (RefundLineKind::Restocked, Some("BC-87"), 1)
    );
    assert_eq!(rest.kind, RefundLineKind::Other);
    // The refund's 5.00 tax over two rows of equal value: 2.50 each, nets 22.50.
    assert_eq!((product.net, product.tax), (d("22.50"), d("2.50")));
    assert_eq!((rest.net, rest.tax), (d("22.50"), d("2.50")));
    assert_eq!(r.rows_total(), d("50"));
}

fn store_of(kind: ChannelKind) -> String {
    format!("{kind}-main")
}

fn channel_of(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

const ALL: [ChannelKind; 3] = [ChannelKind::Shopify, ChannelKind::Woocommerce, ChannelKind::Bigcommerce];

/// The job the ingress makes for an order event: the signed body for Shopify and WooCommerce,
/// nothing (fetch) for BigCommerce's thin webhooks.
fn order_job(env: &Env, kind: ChannelKind, id: &str, event: OrderEvent) -> Job {
    let payload = match kind {
        ChannelKind::Bigcommerce => None,
        _ => env.sb.channels.order_json(channel_of(kind), id),
    };
    Job::ChannelOrder { channel: kind, store: store_of(kind), order_id: id.into(), event, payload }
}

/// The job of a refund webhook: Shopify `refunds/create` carries the refund, BigCommerce's
/// thin body nothing, WooCommerce (no refund topic) an `order.updated` with the order.
fn refund_job(env: &Env, kind: ChannelKind, id: &str, refund_id: &str) -> Job {
    match kind {
        ChannelKind::Shopify => {
            let refunds = env.sb.channels.refunds_json(Channel::Shopify, id).expect("refunds");
            let body = refunds["refunds"]
                .as_array()
                .and_then(|a| {
                    a.iter().find(|r| r["id"].as_u64().map(|i| i.to_string()).as_deref() == Some(refund_id))
                })
                .cloned()
                .expect("the refund");
            Job::ChannelOrder {
                channel: kind,
                store: store_of(kind),
                order_id: id.into(),
                event: OrderEvent::Refunded,
                payload: Some(body),
            }
        }
        ChannelKind::Bigcommerce => Job::ChannelOrder {
            channel: kind,
            store: store_of(kind),
            order_id: id.into(),
            event: OrderEvent::Refunded,
            payload: None,
        },
        ChannelKind::Woocommerce => order_job(env, kind, id, OrderEvent::Updated),
    }
}

/// Accepted payment POSTs against `order_id` (the sandbox keeps every POST).
fn payment_posts(env: &Env, order_id: u64) -> Vec<(String, Option<String>, String)> {
    env.sb.brightpearl.with_state(|s| {
        s.payment_posts
            .iter()
            .filter(|p| p.order_id == Some(order_id) && p.status == 200)
            .map(|p| {
                (
                    p.payment_type.clone().unwrap_or_default(),
                    p.transaction_ref.clone(),
                    p.amount_paid.clone().unwrap_or_default(),
                )
            })
            .collect()
    })
}

/// Sales credits of a sales order: (id, externalRef, closed, Σ net + tax).
fn credits_of(env: &Env, so: u64) -> Vec<(u64, Option<String>, bool, f64)> {
    env.sb.brightpearl.with_state(|s| {
        s.credits
            .values()
            .filter(|c| c.parent_id == so)
            .map(|c| {
                let o = &s.orders[&c.credit_id];
                (c.credit_id, o.external_ref.clone(), c.closed, o.rows.iter().map(|r| r.net + r.tax).sum())
            })
            .collect()
    })
}

fn amount(text: &str) -> f64 {
    text.parse().expect("an amount")
}

#[tokio::test]
async fn paid_later_orders_of_each_shop_end_with_exactly_one_payment() {
    let env = setup().await;
    for kind in ALL {
        let channel = channel_of(kind);
        let (id, _) =
            env.sb.channels.create_order(channel, new_order("later@example.test", &[("SKU-00002", 2)]));
        assert!(env.sb.channels.set_paid(channel, &id, false));
        let report = env
            .writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await;
        assert_eq!((report.done, report.parked.len()), (1, 0), "{kind}: {report:?}");
        let so = sales_order_id(&env, &id);
        assert!(payment_posts(&env, so).is_empty(), "{kind}: written unpaid, no payment");

        // Paid: two different updates (each a new body), and one delivered twice.
        assert!(env.sb.channels.set_paid(channel, &id, true));
        let first = order_job(&env, kind, &id, OrderEvent::Updated);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert!(env.sb.channels.set_paid(channel, &id, true));
        let second = order_job(&env, kind, &id, OrderEvent::Updated);
        let report = run_to_completion(
            &env.writer,
            vec![message("u1", &first), message("u2", &first), message("u3", &second)],
            6,
        )
        .await;
        assert_eq!(report.parked.len(), 0, "{kind}: {report:?}");
        let posts = payment_posts(&env, so);
        assert_eq!(posts.len(), 1, "{kind}: exactly one payment POST accepted: {posts:?}");
        let (kind_of, reference, paid) = &posts[0];
        assert_eq!(kind_of, "RECEIPT");
        assert_eq!(reference.as_deref(), Some(format!("{}:{id}:paid", store_of(kind)).as_str()));
        // 2 × 12.50 + 5.00 shipping, no tax.
        assert!((amount(paid) - 30.0).abs() < 1e-9, "{kind}: paid {paid}");
        assert_eq!(payments_per_order(&env).get(&so), Some(&1), "{kind}");
    }
}

#[tokio::test]
async fn a_refund_delivered_three_times_gives_one_credit_and_one_refund_payment() {
    let env = setup().await;
    for kind in ALL {
        let channel = channel_of(kind);
        let (id, _) = env
            .sb
            .channels
            .create_order(channel, new_order("refund@example.test", &[("SKU-00003", 2), ("SKU-00004", 1)]));
        let report = env
            .writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await;
        assert_eq!(report.done, 1, "{kind}: {report:?}");
        let so = sales_order_id(&env, &id);

        let refund =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00003", 1)], true, true).expect("refunded");
        let job = refund_job(&env, kind, &id, &refund);
        // The same delivery twice, and the refund seen again through another event.
        let again = match kind {
            ChannelKind::Bigcommerce => Job::ChannelOrder {
                channel: kind,
                store: store_of(kind),
                order_id: id.clone(),
                event: OrderEvent::Refunded,
                payload: Some(json!({"refund_id": refund})),
            },
            ChannelKind::Shopify => order_job(&env, kind, &id, OrderEvent::Updated),
            ChannelKind::Woocommerce => order_job(&env, kind, &id, OrderEvent::Refunded),
        };
        let report = run_to_completion(
            &env.writer,
            vec![message("r1", &job), message("r2", &job), message("r3", &again)],
            6,
        )
        .await;
        assert_eq!(report.parked.len(), 0, "{kind}: {report:?}");

        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: one credit: {credits:?}");
        let (credit, external_ref, closed, value) = credits[0].clone();
        assert_eq!(
            external_ref.as_deref(),
            Some(format!("{}:{id}:refund:{refund}", store_of(kind)).as_str())
        );
        assert!(closed, "{kind}: closed");
        // One unit at 12.50 and the 5.00 shipping, no tax.
        assert!((value - 17.5).abs() < 1e-9, "{kind}: credit rows add to {value}");
        let product_rows = env.sb.brightpearl.with_state(|s| {
            s.orders[&credit]
                .rows
                .iter()
                .filter(|r| r.product_id.is_some())
                .map(|r| r.quantity)
                .collect::<Vec<_>>()
        });
        assert_eq!(product_rows, vec![1], "{kind}: the restocked unit is a product row");
        let posts = payment_posts(&env, credit);
        assert_eq!(posts.len(), 1, "{kind}: one refund payment POST accepted: {posts:?}");
        assert_eq!(posts[0].0, "PAYMENT");
        assert_eq!(posts[0].1.as_deref(), Some(format!("{}:{id}:refund:{refund}", store_of(kind)).as_str()));
        assert!((amount(&posts[0].2) - 17.5).abs() < 1e-9);
        assert_eq!(payment_posts(&env, so).len(), 1, "{kind}: the order's own payment stays one");
    }
}

#[tokio::test]
async fn a_refund_whose_answers_were_lost_gives_one_credit_and_one_refund_payment() {
    let env = setup().await;
    for (n, kind) in ALL.into_iter().enumerate() {
        let channel = channel_of(kind);
        let (id, _) =
            env.sb.channels.create_order(channel, new_order("lost@example.test", &[("SKU-00005", 3)]));
        let report = env
            .writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await;
        assert_eq!(report.done, 1, "{kind}: {report:?}");
        let so = sales_order_id(&env, &id);
        let refund =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00005", 2)], false, false).expect("refunded");
        // Every write of this refund is applied and its answer lost: the credit POST, the close
        // and the refund payment (this order's own payment is POST 2n+1 to that endpoint).
        let nth = n as u64 + 1;
        env.sb.brightpearl.fault_at("POST /order-service/sales-credit", nth, Fault::LoseResponse);
        // Each earlier shop's close was sent twice (lost, then refused as closed and checked).
        env.sb.brightpearl.fault_at(
            "POST /order-service/sales-credit/{ids}/close",
            2 * n as u64 + 1,
            Fault::LoseResponse,
        );
        env.sb.brightpearl.fault_at(
            "POST /accounting-service/customer-payment",
            2 * nth,
            Fault::LoseResponse,
        );
        let report =
            run_to_completion(&env.writer, vec![message("r", &refund_job(&env, kind, &id, &refund))], 8)
                .await;
        assert_eq!(report.parked.len(), 0, "{kind}: {report:?}");
        assert!(env.writer.report().unknown_outcomes >= 3 * nth, "{kind}: the lost answers happened");

        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: one credit: {credits:?}");
        let (credit, _, closed, value) = credits[0].clone();
        assert!(closed, "{kind}");
        // Two units kept by the customer (no restock): a named row of 25.00 on Shopify, which
        // says so (`no_restock`). WooCommerce's and BigCommerce's refunds do not say whether
        // they restocked, so their product lines are taken as goods back (UNCONFIRMED).
        assert!((value - 25.0).abs() < 1e-9, "{kind}: {value}");
        let product_rows = env
            .sb
            .brightpearl
            .with_state(|s| s.orders[&credit].rows.iter().filter(|r| r.product_id.is_some()).count());
        let expected = usize::from(kind != ChannelKind::Shopify);
        assert_eq!(product_rows, expected, "{kind}: a product row only for goods back");
        let posts = payment_posts(&env, credit);
        assert_eq!(posts.len(), 1, "{kind}: the lost payment was found, not repeated: {posts:?}");
    }
    assert_eq!(
        env.sb.brightpearl.counters().endpoint("POST /order-service/sales-credit"),
        3,
        "one credit POST each"
    );
}

#[tokio::test]
async fn a_refund_topic_on_a_body_with_no_refund_credits_nothing() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("forged@example.test", &[("SKU-00002", 1)]));
    assert_eq!(env.writer.handle_batch(vec![message("c", &job)]).await.done, 1);
    let so = sales_order_id(&env, &id);
    // The order's own signed body under a refund topic: the channel lists no refund.
    let forged = Job::ChannelOrder {
        channel: ChannelKind::Shopify,
        store: "shopify-main".into(),
        order_id: id.clone(),
        event: OrderEvent::Refunded,
        payload: env.sb.channels.order_json(Channel::Shopify, &id),
    };
    let report = env.writer.handle_batch(vec![message("f", &forged)]).await;
    assert_eq!((report.done, report.parked.len()), (1, 0), "{report:?}");
    assert!(credits_of(&env, so).is_empty());
    assert_eq!(payment_posts(&env, so).len(), 1);
}

/// Receives the orders queue until it is empty, handing each batch to the writer.
/// The shop's signed webhook for `topic` on order `id`, as the ingress receives it.
fn signed_delivery(
    env: &Env,
    kind: ChannelKind,
    id: &str,
    topic: pearlsync_sandbox::channels::OrderTopic,
) -> pearlsync::ingress::IngressRequest {
    let (mut headers, body) = env
        .sb
        .channels
        .webhook_request(channel_of(kind), id, topic, "hook-secret", 0)
        .expect("the order exists");
    headers.push(("Content-Type".into(), "application/json".into()));
    pearlsync::ingress::IngressRequest {
        method: "POST".into(),
        path: format!("/webhooks/{kind}/{}", store_of(kind)),
        headers,
        body: body.into_bytes(),
    }
}

async fn drain(env: &Env) -> (usize, Vec<(String, String)>) {
    use pearlsync::queue::QueueName;
    let (mut done, mut parked) = (0, Vec::new());
    for _ in 0..20 {
        let received =
            env.app.queue.receive(QueueName::Orders, 10, std::time::Duration::ZERO).await.expect("receive");
        if received.is_empty() {
            return (done, parked);
        }
        let messages =
            received.iter().map(|r| pearlsync::worker::batch_message(QueueName::Orders, r)).collect();
        let report = env.writer.handle_batch(messages).await;
        for r in &received {
            if report.failures.contains(&r.message_id) {
                env.app.queue.release(QueueName::Orders, &r.receipt).await.expect("release");
            } else {
                env.app.queue.ack(QueueName::Orders, &r.receipt).await.expect("ack");
            }
        }
        done += report.done;
        parked.extend(report.parked);
    }
    panic!("the orders queue did not drain");
}

#[tokio::test]
async fn setup_registers_the_refund_webhooks_and_each_shops_refund_webhook_credits_once() {
    use pearlsync::ingress::Ingress;
    use pearlsync_sandbox::channels::OrderTopic;
    let env = setup().await;
    let ingress = Ingress::from_app(&env.app);
    let secret = pearlsync::secret::Secret::literal("bp-secret");
    let report = pearlsync::setup::register_webhooks(
        env.app.brightpearl.as_ref(),
        &env.app.channels,
        Some(&secret),
        "http://127.0.0.1:9",
    )
    .await
    .expect("webhooks register");
    assert!(report.failed.is_empty(), "{report:?}");
    let topics = |c: Channel| env.sb.channels.webhooks(c).into_iter().map(|h| h.topic).collect::<Vec<_>>();
    assert!(
        topics(Channel::Shopify).contains(&"REFUNDS_CREATE".to_string()),
        "{:?}",
        topics(Channel::Shopify)
    );
    assert!(topics(Channel::Bigcommerce).contains(&"store/order/refund/created".to_string()));
    assert!(
        topics(Channel::Woocommerce).contains(&"order.updated".to_string()),
        "WooCommerce refunds arrive as updates"
    );

    for kind in ALL {
        let channel = channel_of(kind);
        let post = |topic: OrderTopic, id: &str| signed_delivery(&env, kind, id, topic);
        let (id, _) =
            env.sb.channels.create_order(channel, new_order("hook@example.test", &[("SKU-00006", 2)]));
        assert_eq!(ingress.handle(post(OrderTopic::Created, &id)).await.status, 200, "{kind}");
        let (done, parked) = drain(&env).await;
        assert_eq!((done, parked.len()), (1, 0), "{kind}: {parked:?}");
        let so = sales_order_id(&env, &id);

        let refund =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00006", 2)], true, true).expect("refund");
        // The channel's refund webhook, delivered three times.
        let delivery = post(OrderTopic::Refunded, &id);
        for _ in 0..3 {
            assert_eq!(ingress.handle(delivery.clone()).await.status, 200, "{kind}");
        }
        let (_, parked) = drain(&env).await;
        assert!(parked.is_empty(), "{kind}: {parked:?}");
        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: {credits:?}");
        assert_eq!(
            credits[0].1.as_deref(),
            Some(format!("{}:{id}:refund:{refund}", store_of(kind)).as_str())
        );
        // The whole order back: 2 × 12.50 + 5.00 shipping.
        assert!((credits[0].3 - 30.0).abs() < 1e-9, "{kind}: {}", credits[0].3);
        assert_eq!(payment_posts(&env, credits[0].0).len(), 1, "{kind}");
    }
}

/// A state store whose first saga write holding a credit at `step` fails: the writer dies
/// after the Brightpearl write that step records (the credit POST for `created`, the refund
/// payment for `done`), before the record.
struct CrashBeforeCreditRecord {
    inner: std::sync::Arc<dyn pearlsync::state::StateStore>,
    step: &'static str,
    armed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl pearlsync::state::StateStore for CrashBeforeCreditRecord {
    async fn get(&self, key: &pearlsync::state::Key) -> pearlsync::Result<Option<pearlsync::state::Item>> {
        self.inner.get(key).await
    }

    async fn put(
        &self,
        item: pearlsync::state::Item,
        condition: pearlsync::state::Condition,
    ) -> pearlsync::Result<pearlsync::state::PutOutcome> {
        let credit_at_step = item.sk == "saga"
            && item.data.get("credits").and_then(Value::as_object).is_some_and(|credits| {
                credits.values().any(|c| c.get("step").and_then(Value::as_str) == Some(self.step))
            });
        if credit_at_step && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(pearlsync::Error::State(format!("crash before recording credit `{}`", self.step)));
        }
        self.inner.put(item, condition).await
    }

    async fn delete(
        &self,
        key: &pearlsync::state::Key,
        condition: pearlsync::state::Condition,
    ) -> pearlsync::Result<bool> {
        self.inner.delete(key, condition).await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> pearlsync::Result<Vec<pearlsync::state::Item>> {
        self.inner.query(pk, sk_prefix).await
    }

    async fn batch_get(
        &self,
        keys: &[pearlsync::state::Key],
    ) -> pearlsync::Result<Vec<pearlsync::state::Item>> {
        self.inner.batch_get(keys).await
    }

    async fn batch_put(&self, items: Vec<pearlsync::state::Item>) -> pearlsync::Result<()> {
        self.inner.batch_put(items).await
    }
}

#[tokio::test]
async fn a_crash_between_each_refund_write_and_its_record_repeats_no_write() {
    for step in ["created", "done"] {
        let (sb, config) = sandbox_and_config().await;
        let store = std::sync::Arc::new(CrashBeforeCreditRecord {
            inner: std::sync::Arc::new(pearlsync_tests::emulator::dynamo_store().await),
            step,
            armed: std::sync::atomic::AtomicBool::new(true),
        });
        let env = setup_with(
            sb,
            config,
            std::sync::Arc::clone(&store) as std::sync::Arc<dyn pearlsync::state::StateStore>,
        );
        let (id, job) = shopify_job(&env, new_order("crash-refund@example.test", &[("SKU-00007", 2)]));
        assert_eq!(env.writer.handle_batch(vec![message("c", &job)]).await.done, 1);
        let so = sales_order_id(&env, &id);
        let refund = env
            .sb
            .channels
            .refund_order(Channel::Shopify, &id, &[("SKU-00007", 2)], true, true)
            .expect("refund");
        let report = run_to_completion(
            &env.writer,
            vec![message("r", &refund_job(&env, ChannelKind::Shopify, &id, &refund))],
            8,
        )
        .await;
        assert!(!store.armed.load(std::sync::atomic::Ordering::SeqCst), "{step}: the crash ran");
        assert_eq!(report.parked.len(), 0, "{step}: {report:?}");
        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{step}: one credit: {credits:?}");
        assert_eq!(
            env.sb.brightpearl.counters().endpoint("POST /order-service/sales-credit"),
            1,
            "{step}: posted once"
        );
        let posts = env
            .sb
            .brightpearl
            .with_state(|s| s.payment_posts.iter().filter(|p| p.order_id == Some(credits[0].0)).count());
        assert_eq!(posts, 1, "{step}: the refund payment was posted once, not repeated and refused");
    }
}

/// (type, transactionRef, amount) of every accepted payment POST against `order_id`, in order.
fn payments_made(env: &Env, order_id: u64) -> Vec<(String, String, f64)> {
    payment_posts(env, order_id).into_iter().map(|(t, r, a)| (t, r.unwrap_or_default(), amount(&a))).collect()
}

#[tokio::test]
async fn an_authorised_order_captured_in_parts_posts_auth_then_each_capture_once() {
    for auth_then_capture in [true, false] {
        let (sb, mut config) = sandbox_and_config().await;
        config.stores[0].payments.auth_then_capture = auth_then_capture;
        let env =
            setup_with(sb, config, std::sync::Arc::new(pearlsync_tests::emulator::dynamo_store().await));
        // The first capture's answer is lost: found by its transactionRef, never posted twice.
        let first_capture = if auth_then_capture { 2 } else { 1 };
        env.sb.brightpearl.fault_at(
            "POST /accounting-service/customer-payment",
            first_capture,
            Fault::LoseResponse,
        );
        let kind = ChannelKind::Shopify;
        let (id, _) = env
            .sb
            .channels
            .create_order(Channel::Shopify, new_order("auth@example.test", &[("SKU-00008", 2)]));
        let update = |event: OrderEvent| order_job(&env, kind, &id, event);
        // Authorised at checkout.
        assert!(env.sb.channels.set_authorised_and_captured(Channel::Shopify, &id, true, None));
        let created = update(OrderEvent::Created);
        assert_eq!(run_to_completion(&env.writer, vec![message("c", &created)], 4).await.parked.len(), 0);
        let so = sales_order_id(&env, &id);
        // 10.00 of the 30.00 captured, reported by two updates (and one delivered twice).
        let mut jobs = Vec::new();
        for n in 0..2 {
            assert!(env.sb.channels.set_authorised_and_captured(Channel::Shopify, &id, true, Some(10.0)));
            let job = update(OrderEvent::Updated);
            jobs.push(message(&format!("p{n}"), &job));
            jobs.push(message(&format!("p{n}-again"), &job));
        }
        assert_eq!(run_to_completion(&env.writer, jobs, 6).await.parked.len(), 0);
        // Then the rest: paid.
        assert!(env.sb.channels.set_paid(Channel::Shopify, &id, true));
        let paid = update(OrderEvent::Updated);
        let report = run_to_completion(&env.writer, vec![message("q", &paid), message("q2", &paid)], 6).await;
        assert_eq!(report.parked.len(), 0, "{report:?}");

        let r = |suffix: &str| format!("shopify-main:{id}:{suffix}");
        let made = payments_made(&env, so);
        let expected = if auth_then_capture {
            vec![
                ("AUTH".to_string(), r("auth"), 30.0),
                ("CAPTURE".to_string(), r("captured:10"), 10.0),
                ("CAPTURE".to_string(), r("paid"), 20.0),
            ]
        } else {
            // No AUTH unless the store says so: each capture is a receipt of the difference.
            vec![("RECEIPT".to_string(), r("captured:10"), 10.0), ("RECEIPT".to_string(), r("paid"), 20.0)]
        };
        assert_eq!(made, expected, "auth_then_capture = {auth_then_capture}");
        let sent = env
            .sb
            .brightpearl
            .with_state(|s| s.payment_posts.iter().filter(|p| p.order_id == Some(so)).count());
        assert_eq!(sent, expected.len(), "no payment POST repeated, even the one whose answer was lost");
        let received: f64 = made.iter().filter(|p| p.0 != "AUTH").map(|p| p.2).sum();
        assert!((received - 30.0).abs() < 1e-9, "the captures add up to the total");
    }
}

#[tokio::test]
async fn a_refused_cancel_is_parked_cancel_refused_and_its_replay_tries_the_cancel_again() {
    use pearlsync::failures::{FailureCode, Selector, replay};
    const STATUS_PUT: &str = "PUT /order-service/order/{ids}/status";
    let env = setup().await;
    let kind = ChannelKind::Woocommerce;
    let (id, _) = env
        .sb
        .channels
        .create_order(Channel::Woocommerce, new_order("cancel@example.test", &[("SKU-00009", 1)]));
    assert_eq!(
        env.writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await
            .done,
        1
    );
    let so = sales_order_id(&env, &id);

    // Cancelled on the shop (the signed body says so); Brightpearl refuses: the order is paid.
    assert!(env.sb.channels.cancel_order(Channel::Woocommerce, &id));
    let report =
        env.writer.handle_batch(vec![message("x", &order_job(&env, kind, &id, OrderEvent::Updated))]).await;
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert!(report.parked[0].1.starts_with("cancel_refused:"), "{report:?}");
    assert_eq!(env.sb.brightpearl.counters().endpoint(STATUS_PUT), 1);
    assert_eq!(env.writer.report().cancelled, 0);

    // A person removes the payment in Brightpearl and replays by code: the cancel is tried again.
    env.sb.brightpearl.with_state_mut(|s| s.payments.retain(|p| p.order_id != so));
    let replayed =
        replay(env.app.state.as_ref(), env.app.queue.as_ref(), &Selector::Code(FailureCode::CancelRefused))
            .await
            .expect("replay");
    assert_eq!(replayed.replayed.len(), 1, "{replayed:?}");
    let (done, parked) = drain(&env).await;
    assert_eq!((done, parked.len()), (1, 0), "{parked:?}");
    assert_eq!(env.sb.brightpearl.counters().endpoint(STATUS_PUT), 2, "tried again");
    assert_eq!(env.writer.report().cancelled, 1);
    assert_eq!(
        env.sb.brightpearl.with_state(|s| s.orders[&so].status_id),
        pearlsync_sandbox::brightpearl::state::SO_STATUS_CANCELLED
    );
}

/// Refund payments (`PAYMENT`) accepted against a credit.
fn refund_payments(env: &Env, credit: u64) -> usize {
    payment_posts(env, credit).iter().filter(|p| p.0 == "PAYMENT").count()
}

#[tokio::test]
async fn a_cancelled_and_refunded_order_is_credited_once_before_its_refused_cancel() {
    use pearlsync::failures::{FailureCode, Selector, replay};
    const STATUS_PUT: &str = "PUT /order-service/order/{ids}/status";
    const CREDIT_POST: &str = "POST /order-service/sales-credit";
    let env = setup().await;
    let mut status_puts = 0;
    for (n, kind) in [ChannelKind::Shopify, ChannelKind::Woocommerce].into_iter().enumerate() {
        let channel = channel_of(kind);
        let (id, _) = env
            .sb
            .channels
            .create_order(channel, new_order("cancelrefund@example.test", &[("SKU-00007", 2)]));
        let created =
            env.writer.handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))]);
        assert_eq!(created.await.done, 1, "{kind}");
        let so = sales_order_id(&env, &id);
        // Cancel with refund: everything back, shipping included, goods restocked; the
        // cancelled body (Shopify `cancelled_at`, WooCommerce status `cancelled`) lists it.
        let refund =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00007", 2)], true, true).expect("refunded");
        assert!(env.sb.channels.cancel_order(channel, &id));
        let cancel_event = match kind {
            ChannelKind::Shopify => OrderEvent::Cancelled,
            _ => OrderEvent::Updated,
        };
        let cancel = order_job(&env, kind, &id, cancel_event);
        let Job::ChannelOrder { payload: Some(body), .. } = &cancel else { panic!("a signed body") };
        let listed = body["refunds"].as_array().is_some_and(|a| {
            a.iter().any(|r| r["id"].as_u64().map(|i| i.to_string()) == Some(refund.clone()))
        });
        assert!(listed, "{kind}: the cancelled body lists the refund: {body}");

        // The cancel's job: the credit and its refund payment first, then the cancel, which
        // Brightpearl refuses (the order's own payment stands): noted and parked.
        let report = env.writer.handle_batch(vec![message("x", &cancel)]).await;
        assert_eq!(report.parked.len(), 1, "{kind}: {report:?}");
        assert!(report.parked[0].1.starts_with("cancel_refused:"), "{kind}: {report:?}");
        status_puts += 1;
        assert_eq!(env.sb.brightpearl.counters().endpoint(STATUS_PUT), status_puts, "{kind}");
        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: credited before the cancel was tried: {credits:?}");
        assert!(credits[0].2, "{kind}: closed");
        assert_eq!(refund_payments(&env, credits[0].0), 1, "{kind}");

        // Its refund webhook (Shopify) or a redelivery (WooCommerce) credits nothing more.
        let report =
            run_to_completion(&env.writer, vec![message("r", &refund_job(&env, kind, &id, &refund))], 4)
                .await;
        match kind {
            // The refund's route credits and does not try the cancel again.
            ChannelKind::Shopify => assert_eq!((report.done, report.parked.len()), (1, 0), "{report:?}"),
            // The same cancelled body again: the cancel is tried (and refused) again.
            _ => assert!(report.parked.iter().all(|(_, r)| r.starts_with("cancel_refused:")), "{report:?}"),
        }
        let replayed = replay(
            env.app.state.as_ref(),
            env.app.queue.as_ref(),
            &Selector::Code(FailureCode::CancelRefused),
        )
        .await
        .expect("replay");
        assert!(!replayed.replayed.is_empty(), "{kind}: {replayed:?}");
        let (_, parked) = drain(&env).await;
        assert!(parked.iter().all(|(_, r)| r.starts_with("cancel_refused:")), "{kind}: {parked:?}");
        assert!(
            env.sb.brightpearl.counters().endpoint(STATUS_PUT) > status_puts,
            "{kind}: replay tried again"
        );
        status_puts = env.sb.brightpearl.counters().endpoint(STATUS_PUT);
        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: still one credit: {credits:?}");
        assert_eq!(refund_payments(&env, credits[0].0), 1, "{kind}: still one refund payment");
        assert_eq!(
            env.sb.brightpearl.counters().endpoint(CREDIT_POST),
            n as u64 + 1,
            "{kind}: one credit POST"
        );
        assert_eq!(payment_posts(&env, so).len(), 1, "{kind}: the order's own payment, once");
    }
}

#[tokio::test]
async fn a_credit_whose_brightpearl_total_differs_is_noted_counted_and_recorded_once() {
    use pearlsync::failures::FailureCode;
    use pearlsync::metrics::names::ORDERS_TOTAL_MISMATCH;
    let env = setup().await;
    for (n, kind) in ALL.into_iter().enumerate() {
        let channel = channel_of(kind);
        let (id, _) =
            env.sb.channels.create_order(channel, new_order("skew@example.test", &[("SKU-00011", 2)]));
        let report = env
            .writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await;
        assert_eq!(report.done, 1, "{kind}: {report:?}");
        let so = sales_order_id(&env, &id);
        assert_eq!(env.app.metrics.get(ORDERS_TOTAL_MISMATCH), n as f64, "{kind}: the order itself agrees");

        // From here Brightpearl totals what it stores 0.01 higher than the rows sent.
        let mut settings = env.sb.brightpearl.settings();
        settings.total_value_skew_4dp = 100;
        env.sb.brightpearl.set_settings(settings);
        let refund =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00011", 1)], false, true).expect("refunded");
        let job = refund_job(&env, kind, &id, &refund);
        let report = run_to_completion(&env.writer, vec![message("r", &job)], 4).await;
        settings.total_value_skew_4dp = 0;
        env.sb.brightpearl.set_settings(settings);
        // The credit stands (it exists), closed and paid once; a person is told.
        assert_eq!((report.done, report.parked.len()), (1, 0), "{kind}: {report:?}");
        let credits = credits_of(&env, so);
        assert_eq!(credits.len(), 1, "{kind}: {credits:?}");
        let credit = credits[0].0;
        assert!(credits[0].2, "{kind}: closed");
        assert_eq!(refund_payments(&env, credit), 1, "{kind}");
        assert_eq!(env.app.metrics.get(ORDERS_TOTAL_MISMATCH), (n + 1) as f64, "{kind}: counted");
        let notes = env.sb.brightpearl.with_state(|s| s.orders[&credit].notes.clone());
        assert!(
            notes.iter().any(|t| t
                .starts_with(&format!("total_mismatch: Brightpearl's totalValue for sales credit {credit}"))),
            "{kind}: a note on the credit: {notes:?}"
        );
        let records = pearlsync::failures::list(env.app.state.as_ref()).await.expect("parked records");
        let mismatches: Vec<_> = records
            .iter()
            .filter(|r| {
                r.code == FailureCode::TotalMismatch && r.text.contains(&format!("sales credit {credit} "))
            })
            .collect();
        assert_eq!(mismatches.len(), 1, "{kind}: one record: {records:?}");

        // Delivered again: nothing posted, nothing checked again.
        let again = env.writer.handle_batch(vec![message("r2", &job)]).await;
        assert_eq!((again.done, again.parked.len()), (1, 0), "{kind}: {again:?}");
        assert_eq!(credits_of(&env, so).len(), 1, "{kind}");
        assert_eq!(env.app.metrics.get(ORDERS_TOTAL_MISMATCH), (n + 1) as f64, "{kind}: not counted twice");
    }
}

#[tokio::test]
async fn a_lost_refund_webhook_is_credited_once_by_the_reconciliation_and_not_again() {
    const CREDIT_POST: &str = "POST /order-service/sales-credit";
    let env = setup().await;
    let mut orders = Vec::new();
    for kind in ALL {
        let channel = channel_of(kind);
        let (id, _) =
            env.sb.channels.create_order(channel, new_order("lostrefund@example.test", &[("SKU-00013", 3)]));
        let report = env
            .writer
            .handle_batch(vec![message("c", &order_job(&env, kind, &id, OrderEvent::Created))])
            .await;
        assert_eq!(report.done, 1, "{kind}: {report:?}");
        // A first refund whose webhook arrives, then a second whose webhook is lost.
        let delivered =
            env.sb.channels.refund_order(channel, &id, &[("SKU-00013", 1)], false, true).expect("refunded");
        let report =
            run_to_completion(&env.writer, vec![message("r", &refund_job(&env, kind, &id, &delivered))], 4)
                .await;
        assert_eq!((report.done, report.parked.len()), (1, 0), "{kind}: {report:?}");
        env.sb.channels.refund_order(channel, &id, &[("SKU-00013", 1)], true, true).expect("refunded");
        let so = sales_order_id(&env, &id);
        assert_eq!(credits_of(&env, so).len(), 1, "{kind}: only the delivered one so far");
        orders.push((kind, so));
    }
    let posts_before = env.sb.brightpearl.counters().endpoint(CREDIT_POST);
    assert_eq!(posts_before, 3);

    let first = env.writer.reconcile_orders().await.expect("reconcile");
    assert_eq!((first.enqueued, first.refunds_enqueued), (0, 3), "one refund job per shop: {first:?}");
    let (_, parked) = drain(&env).await;
    assert!(parked.is_empty(), "{parked:?}");
    for (kind, so) in &orders {
        let credits = credits_of(&env, *so);
        assert_eq!(credits.len(), 2, "{kind}: the lost refund credited: {credits:?}");
        for (credit, _, closed, _) in &credits {
            assert!(closed, "{kind}");
            assert_eq!(refund_payments(&env, *credit), 1, "{kind}: one refund payment per credit");
        }
    }
    assert_eq!(env.sb.brightpearl.counters().endpoint(CREDIT_POST), posts_before + 3, "one POST each");

    // Everything listed is credited now: a second reconciliation enqueues and writes nothing.
    let second = env.writer.reconcile_orders().await.expect("reconcile");
    assert_eq!((second.enqueued, second.refunds_enqueued), (0, 0), "{second:?}");
    assert!(second.listed >= 3, "the orders are still listed: {second:?}");
    drain(&env).await;
    assert_eq!(env.sb.brightpearl.counters().endpoint(CREDIT_POST), posts_before + 3);
    for (kind, so) in &orders {
        assert_eq!(credits_of(&env, *so).len(), 2, "{kind}");
    }
}

#[tokio::test]
async fn two_bigcommerce_refund_webhooks_for_one_order_are_two_credits() {
    use pearlsync::ingress::Ingress;
    use pearlsync_sandbox::channels::OrderTopic;
    let env = setup().await;
    let ingress = Ingress::from_app(&env.app);
    let kind = ChannelKind::Bigcommerce;
    let post = |topic: OrderTopic, id: &str| signed_delivery(&env, kind, id, topic);
    let (id, _) = env
        .sb
        .channels
        .create_order(Channel::Bigcommerce, new_order("twice@example.test", &[("SKU-00014", 2)]));
    assert_eq!(ingress.handle(post(OrderTopic::Created, &id)).await.status, 200);
    drain(&env).await;
    let so = sales_order_id(&env, &id);
    // Two refunds on different days, each with its own webhook (and each delivered twice).
    for n in 1..=2 {
        env.sb
            .channels
            .refund_order(Channel::Bigcommerce, &id, &[("SKU-00014", 1)], false, true)
            .expect("refund");
        let delivery = post(OrderTopic::Refunded, &id);
        for _ in 0..2 {
            assert_eq!(ingress.handle(delivery.clone()).await.status, 200);
        }
        let (_, parked) = drain(&env).await;
        assert!(parked.is_empty(), "{parked:?}");
        assert_eq!(credits_of(&env, so).len(), n, "the second refund is not taken for the first");
    }
}

#[tokio::test]
async fn a_bigcommerce_cancel_after_an_earlier_update_webhook_still_cancels() {
    use pearlsync::ingress::Ingress;
    use pearlsync_sandbox::channels::OrderTopic;
    let env = setup().await;
    let ingress = Ingress::from_app(&env.app);
    let kind = ChannelKind::Bigcommerce;
    let post = |topic: OrderTopic, id: &str| signed_delivery(&env, kind, id, topic);
    let (id, _) = env
        .sb
        .channels
        .create_order(Channel::Bigcommerce, new_order("bcupd@example.test", &[("SKU-00015", 1)]));
    assert!(env.sb.channels.set_paid(Channel::Bigcommerce, &id, false), "unpaid: Brightpearl may cancel it");
    assert_eq!(ingress.handle(post(OrderTopic::Created, &id)).await.status, 200);
    drain(&env).await;
    let so = sales_order_id(&env, &id);
    // A status change that is not a cancel (BigCommerce sends store/order/updated for both).
    assert_eq!(ingress.handle(post(OrderTopic::Updated, &id)).await.status, 200);
    let (_, parked) = drain(&env).await;
    assert!(parked.is_empty(), "{parked:?}");
    // Then cancelled: another store/order/updated, with its own hash.
    assert!(env.sb.channels.cancel_order(Channel::Bigcommerce, &id));
    assert_eq!(ingress.handle(post(OrderTopic::Updated, &id)).await.status, 200);
    let (_, parked) = drain(&env).await;
    assert!(parked.is_empty(), "{parked:?}");
    assert_eq!(
        env.sb.brightpearl.with_state(|s| s.orders[&so].status_id),
        pearlsync_sandbox::brightpearl::state::SO_STATUS_CANCELLED,
        "the second update webhook is not taken for the first"
    );
}
