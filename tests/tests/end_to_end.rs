//! End to end (issue 6): signed webhooks over real HTTP into the served webhook-ingress, dedup
//! on DynamoDB, jobs on SQS (both on the local emulator), then the order writer driven from that
//! queue against the sandbox's Brightpearl and channels.

use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::batch::BatchMessage;
use pearlsync::ingress::{Ingress, http};
use pearlsync::orders::OrderWriter;
use pearlsync::queue::{Job, OrderEvent, QueueName};
use pearlsync_cli::local::{self, LocalOptions, LocalSandbox};
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine, OrderTopic};
use pearlsync_tests::emulator;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SO_POST: &str = "POST /order-service/sales-order";
const RESERVE: &str = "POST /warehouse-service/order/{ids}/reservation/warehouse/{ids}";
const PAYMENT: &str = "POST /accounting-service/customer-payment";
const STATUS_PUT: &str = "PUT /order-service/order/{ids}/status";
const NOTE_POST: &str = "POST /order-service/order/{ids}/note";
/// Fast window: these tests are not about the rate limit.
const RATE: (u32, Duration) = (200, Duration::from_secs(2));

struct World {
    local: LocalSandbox,
    app: App,
    writer: OrderWriter,
    ingress_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world() -> World {
    let local = local::start(&LocalOptions { products: 10, warehouses: 1, suppliers: 1, rate_limit: RATE })
        .await
        .expect("sandbox starts");
    let products: Vec<u64> = local.sandbox.brightpearl.with_state(|s| s.products.keys().copied().collect());
    for product in products {
        local.sandbox.brightpearl.set_stock(product, 1, 10_000);
    }
    let mut config = local.config.clone();
    config.brightpearl.request_timeout_ms = 3_000;
    config.brightpearl.backoff_base_ms = 5;
    config.brightpearl.backoff_cap_ms = 50;
    let queues = emulator::sqs_queues(5, 30).await;
    let backends =
        Backends { state: Arc::new(emulator::dynamo_store().await), queue: Arc::new(queues.queue.clone()) };
    let app = App::with_backends(config, backends, "end-to-end").expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ingress_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, Arc::new(Ingress::from_app(&app)), async move {
        let _ = stopped.await;
    }));
    let writer = app.order_writer();
    World { local, app, writer, ingress_url, _stop: stop }
}

impl World {
    fn channel_order(&self, channel: Channel, email: &str, lines: &[(&str, u32)]) -> String {
        let order = NewOrder {
            email: Some(email.into()),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            currency: "GBP".into(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| NewOrderLine {
                    sku: Some(sku.to_string()),
                    name: String::new(),
                    quantity: *quantity,
                    price: 9.5,
                })
                .collect(),
        };
        self.local.sandbox.channels.create_order(channel, order).0
    }

    /// The signed delivery of one order event, as the channel sends it, and its ingress URL.
    fn delivery(
        &self,
        channel: Channel,
        order_id: &str,
        topic: OrderTopic,
    ) -> (String, Vec<(String, String)>, String) {
        let (store, secret) = match channel {
            Channel::Shopify => ("demo-shopify", local::SAMPLE_SHOPIFY_SECRET),
            Channel::Bigcommerce => ("demo-bigcommerce", local::SAMPLE_BIGCOMMERCE_SECRET),
            Channel::Woocommerce => ("demo-woocommerce", local::SAMPLE_WOO_SECRET),
        };
        let (mut headers, body) = self
            .local
            .sandbox
            .channels
            .webhook_request(channel, order_id, topic, secret, 0)
            .expect("the order exists");
        headers.push(("Content-Type".into(), "application/json".into()));
        let kind = match channel {
            Channel::Shopify => "shopify",
            Channel::Bigcommerce => "bigcommerce",
            Channel::Woocommerce => "woocommerce",
        };
        (format!("{}/webhooks/{kind}/{store}", self.ingress_url), headers, body)
    }

    /// Receives from the orders queue in batches of 10 until it is empty, as the Lambda event
    /// source would: successes and parked jobs are deleted, failures come back.
    async fn drain(&self) -> Drained {
        let mut drained = Drained::default();
        for _ in 0..20 {
            let received =
                self.app.queue.receive(QueueName::Orders, 10, Duration::ZERO).await.expect("receive");
            if received.is_empty() {
                return drained;
            }
            let messages: Vec<BatchMessage> =
                received.iter().map(|r| pearlsync::worker::batch_message(QueueName::Orders, r)).collect();
            let report = self.writer.handle_batch(messages).await;
            for r in &received {
                if report.failures.contains(&r.message_id) {
                    self.app.queue.release(QueueName::Orders, &r.receipt).await.expect("release");
                } else {
                    self.app.queue.ack(QueueName::Orders, &r.receipt).await.expect("ack");
                }
            }
            drained.jobs.extend(received.into_iter().map(|r| r.job));
            drained.done += report.done;
            drained.parked.extend(report.parked);
        }
        panic!("the orders queue did not drain in 20 batches");
    }

    fn sales_orders_by_ref(&self, channel_id: u64) -> BTreeMap<String, Vec<u64>> {
        self.local.sandbox.brightpearl.with_state(|s| {
            let mut by_ref: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for o in s.orders.values().filter(|o| o.order_type == "SO" && o.channel_id == Some(channel_id)) {
                by_ref.entry(pearlsync_tests::channel_order_id(&o.external_ref)).or_default().push(o.id);
            }
            by_ref
        })
    }
}

#[derive(Debug, Default)]
struct Drained {
    jobs: Vec<Job>,
    done: usize,
    parked: Vec<(String, String)>,
}

async fn post(url: &str, headers: &[(String, String)], body: &str) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body.to_string());
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.expect("the ingress answers").status().as_u16()
}

#[tokio::test]
async fn a_signed_shopify_order_delivered_three_times_concurrently_gives_one_order_reservation_and_payment() {
    let w = world().await;
    let id = w.channel_order(Channel::Shopify, "ada@example.test", &[("SKU-00001", 2), ("SKU-00002", 1)]);
    let (url, headers, body) = w.delivery(Channel::Shopify, &id, OrderTopic::Created);
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let (url, headers, body) = (url.clone(), headers.clone(), body.clone());
            tokio::spawn(async move { post(&url, &headers, &body).await })
        })
        .collect();
    let mut retries = 0;
    for send in sends {
        match send.await.expect("delivery task") {
            200 => {}
            // Still in progress elsewhere: the sender retries, and then it is a duplicate.
            503 => {
                retries += 1;
                assert_eq!(post(&url, &headers, &body).await, 200, "a retried delivery is acknowledged");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(retries < 3, "one delivery was taken at once");
    w.local.sandbox.brightpearl.reset_counters();

    let drained = w.drain().await;
    assert_eq!(
        drained.jobs.len(),
        1,
        "the ingress enqueued one job for three deliveries: {:?}",
        drained.jobs
    );
    assert!(
        matches!(&drained.jobs[0], Job::ChannelOrder { order_id, event: OrderEvent::Created, .. } if *order_id == id)
    );
    assert_eq!((drained.done, drained.parked.len()), (1, 0));

    let orders = w.sales_orders_by_ref(1);
    assert_eq!(orders.get(&id).map(Vec::len), Some(1), "one sales order: {orders:?}");
    let so = orders[&id][0];
    let counters = w.local.sandbox.brightpearl.counters();
    assert_eq!(counters.endpoint(SO_POST), 1, "one sales-order POST");
    assert_eq!(counters.endpoint(RESERVE), 1, "one reservation POST");
    assert_eq!(counters.endpoint(PAYMENT), 1, "one payment POST");
    w.local.sandbox.brightpearl.with_state(|s| {
        assert_eq!(s.reservations[&so].rows.len(), 2, "both product rows reserved");
        assert_eq!(s.payments.iter().filter(|p| p.order_id == so).count(), 1, "one payment");
    });
    let report = w.writer.report();
    assert_eq!((report.created, report.reserved, report.paid), (1, 1, 1), "{report:?}");
}

#[tokio::test]
async fn a_shipped_goods_out_note_puts_tracking_on_the_right_channel_order_exactly_once() {
    let w = world().await;
    let setup = pearlsync::setup::register_webhooks(
        w.app.brightpearl.as_ref(),
        &w.app.channels,
        w.app.config.ingress.brightpearl_webhook_secret.as_ref(),
        &w.ingress_url,
    )
    .await
    .expect("webhooks register");
    assert!(setup.brightpearl_created.iter().any(|e| e == "goods-out-note.modified.shipped"), "{setup:?}");

    let id = w.channel_order(Channel::Shopify, "ship@example.test", &[("SKU-00003", 2), ("SKU-00004", 1)]);
    // Another order on the same store, so the note must find the right one.
    let other = w.channel_order(Channel::Shopify, "other@example.test", &[("SKU-00003", 1)]);
    for order in [&id, &other] {
        let (url, headers, body) = w.delivery(Channel::Shopify, order, OrderTopic::Created);
        assert_eq!(post(&url, &headers, &body).await, 200);
    }
    let written = w.drain().await;
    assert_eq!((written.done, written.parked.len()), (2, 0), "{written:?}");
    let so = w.sales_orders_by_ref(1)[&id][0];

    let deliveries_before = w.local.sandbox.brightpearl.webhook_deliveries().len();
    let note = w.local.sandbox.brightpearl.ship_goods_out(so, "TRK-777", "DHL").expect("ship");
    // Brightpearl calls the ingress in the background: wait for its answer.
    let started = Instant::now();
    let delivery = loop {
        let shipped: Vec<_> = w.local.sandbox.brightpearl.webhook_deliveries()[deliveries_before..]
            .iter()
            .filter(|d| d.body.as_deref().is_some_and(|b| b.contains("goods-out-note.modified.shipped")))
            .cloned()
            .collect();
        if let Some(d) = shipped.first() {
            break d.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "Brightpearl never called the ingress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivery.status, 200, "the ingress took the shipped event");

    let shipped = w.drain().await;
    assert_eq!(shipped.jobs, vec![Job::Shipment { goods_out_note_ids: vec![note] }]);
    assert_eq!((shipped.done, shipped.parked.len()), (1, 0), "{shipped:?}");
    let fulfilments = w.local.sandbox.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(fulfilments.len(), 1, "{fulfilments:?}");
    assert_eq!(
        (fulfilments[0].tracking_number.as_str(), fulfilments[0].carrier.as_str()),
        ("TRK-777", "DHL")
    );
    let mut lines = fulfilments[0].lines.clone();
    lines.sort();
    assert_eq!(lines, vec![("SKU-00003".to_string(), 2), ("SKU-00004".to_string(), 1)]);
    assert!(w.local.sandbox.channels.fulfilments(Channel::Shopify, &other).is_empty());
    let fulfilment_posts =
        |w: &World| w.local.sandbox.channels.counters(Channel::Shopify).count("graphql:fulfillmentCreate");
    assert_eq!(fulfilment_posts(&w), 1);

    // Brightpearl delivers at least once: the same event again is acknowledged and adds nothing.
    let body = delivery.body.clone().expect("a POST body");
    let json = vec![("Content-Type".to_string(), "application/json".to_string())];
    assert_eq!(post(&delivery.url, &json, &body).await, 200);
    let again = w.drain().await;
    assert!(again.jobs.is_empty(), "a redelivered event is not enqueued: {:?}", again.jobs);
    // And a Shipment job that reaches the writer twice (a queue redelivery) posts nothing more.
    let repeated = w
        .writer
        .handle_batch(vec![BatchMessage {
            message_id: "repeat".into(),
            body: Job::Shipment { goods_out_note_ids: vec![note] }.encode(),
            group_id: Some(format!("shipment:{note}")),
            receive_count: 2,
        }])
        .await;
    assert_eq!(repeated.done, 1, "{repeated:?}");
    assert_eq!(w.local.sandbox.channels.fulfilments(Channel::Shopify, &id).len(), 1);
    assert_eq!(fulfilment_posts(&w), 1, "no second fulfilment POST");
    assert_eq!(w.writer.report().tracking_posted, 1);
}

/// A WooCommerce order is paid when written (the sandbox sets `date_paid_gmt`), and Brightpearl
/// refuses to cancel an order with payments. The writer's documented rule for that case: add a
/// note to the sales order and park the job with Brightpearl's reason for a human.
#[tokio::test]
async fn a_woocommerce_order_cancelled_after_it_was_written_gets_a_note_and_is_parked_with_the_reason() {
    let w = world().await;
    let id = w.channel_order(Channel::Woocommerce, "woo@example.test", &[("SKU-00005", 1)]);
    let (url, headers, body) = w.delivery(Channel::Woocommerce, &id, OrderTopic::Created);
    assert_eq!(post(&url, &headers, &body).await, 200);
    let written = w.drain().await;
    assert_eq!((written.done, written.parked.len()), (1, 0), "{written:?}");
    let so = w.sales_orders_by_ref(3)[&id][0];
    let status_before = w.local.sandbox.brightpearl.with_state(|s| s.orders[&so].status_id);

    // The merchant cancels it: WooCommerce sends order.updated with status "cancelled".
    assert!(w.local.sandbox.channels.cancel_order(Channel::Woocommerce, &id));
    let (url, headers, body) = w.delivery(Channel::Woocommerce, &id, OrderTopic::Updated);
    w.local.sandbox.brightpearl.reset_counters();
    assert_eq!(post(&url, &headers, &body).await, 200);
    // WooCommerce retries a delivery it thinks failed: the same delivery again adds nothing.
    assert_eq!(post(&url, &headers, &body).await, 200);
    let cancelled = w.drain().await;
    assert!(
        matches!(&cancelled.jobs[..], [Job::ChannelOrder { order_id, event: OrderEvent::Cancelled, .. }] if *order_id == id),
        "{:?}",
        cancelled.jobs
    );
    let reason =
        format!("cancel_refused: cannot cancel sales order {so}: an order with payments cannot be cancelled");
    assert_eq!(cancelled.parked.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled.parked[0].1, reason);

    let counters = w.local.sandbox.brightpearl.counters();
    assert_eq!(counters.endpoint(STATUS_PUT), 1, "one cancellation attempt");
    assert_eq!(counters.endpoint(NOTE_POST), 1, "one note");
    assert_eq!(counters.endpoint(SO_POST) + counters.endpoint(PAYMENT), 0, "nothing written again");
    w.local.sandbox.brightpearl.with_state(|s| {
        let order = &s.orders[&so];
        assert_eq!(order.status_id, status_before, "the refused status change left the status");
        let notes: Vec<&String> =
            order.notes.iter().filter(|n| n.contains("Cancelled on woocommerce")).collect();
        assert_eq!(notes.len(), 1, "{:?}", order.notes);
        assert!(notes[0].contains("refused to cancel"), "{}", notes[0]);
        assert_eq!(s.payments.iter().filter(|p| p.order_id == so).count(), 1, "the payment stands");
    });
    let parked = pearlsync::parking::list(w.app.state.as_ref(), "cannot cancel").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert!(
        matches!(&parked[0].job, Job::ChannelOrder { order_id, event: OrderEvent::Cancelled, .. } if *order_id == id)
    );
}
