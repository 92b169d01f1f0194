//! The `pearlsync` CLI as a user runs it: the demo's report (read back from the sandbox), every
//! sample event through `invoke`, and `serve` finishing its queued work on shutdown.

use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::queue::{ChannelKind, InProcessQueue, Job, OrderEvent, QueueName};
use pearlsync::state::EmbeddedStore;
use pearlsync_cli::commands::{self, Function, ServeOptions};
use pearlsync_cli::{demo, local};
use pearlsync_sandbox::channels::{Channel, DeliveryOptions, NewOrder, NewOrderLine};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_with_every_store_in_sync_and_one_sales_order_per_order() {
    let report = demo::run(&demo::DemoArgs { skus: 60, orders: 12, json: true }).await.unwrap();
    assert_eq!(report.orders.unique, 12);
    assert_eq!(report.orders.created, report.orders.unique, "{report:?}");
    assert_eq!(report.orders.delivered, 15, "every fourth order is delivered twice");
    assert_eq!(report.orders.duplicates_ignored, 3);
    assert_eq!(report.orders.parked, 0);
    assert_eq!(report.inventory.channels.len(), 3);
    assert!(
        report.inventory.channels.iter().all(|c| c.in_sync && c.pushed > 0),
        "{:?}",
        report.inventory.channels
    );
    assert!(report.tracking.shipped > 0);
    assert_eq!(report.tracking.posted, report.tracking.shipped);
    assert!(report.reorder.purchase_orders > 0 && report.reorder.rows >= report.reorder.purchase_orders);
    assert_eq!(report.brightpearl.throttled, 0);
    // The failure story: one order parked as unknown_sku on its store, then written once.
    assert_eq!(report.failures.parked.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures.parked[0].code, "unknown_sku");
    assert_eq!(report.failures.parked[0].store, "demo-shopify");
    assert_eq!(report.failures.replayed, 1);
    assert_eq!(report.failures.written_after_replay, 1);
}

async fn local_app(name: &str) -> (local::LocalSandbox, App) {
    let sandbox = local::start(&local::LocalOptions {
        products: 20,
        warehouses: 2,
        suppliers: 3,
        rate_limit: (200, Duration::from_secs(10)),
    })
    .await
    .unwrap();
    let backends = Backends {
        state: Arc::new(EmbeddedStore::in_memory().unwrap()),
        queue: Arc::new(InProcessQueue::new(Duration::from_secs(2), 5)),
    };
    let app = App::with_backends(sandbox.config.clone(), backends, name).unwrap();
    (sandbox, app)
}

#[tokio::test]
async fn every_sample_event_runs_through_invoke() {
    let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut ran = 0;
    for (folder, function) in [
        ("inventory-poll", Function::InventoryPoll),
        ("order-writer", Function::OrderWriter),
        ("webhook-ingress", Function::WebhookIngress),
        ("reorder-checker", Function::ReorderChecker),
    ] {
        for entry in std::fs::read_dir(events.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let (_sandbox, app) = local_app(function.name()).await;
            let event: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let answer = commands::invoke(&app, function, event)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(failures) = answer.get("batchItemFailures") {
                assert_eq!(failures, &serde_json::json!([]), "{}: {answer}", path.display());
            }
            ran += 1;
        }
    }
    assert!(ran >= 15, "ran {ran} sample events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_works_its_queue_empty_before_it_exits() {
    let (sandbox, app) = local_app("serve").await;
    let queue = Arc::clone(&app.queue);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap();
    drop(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        listen,
        inventory_every: Duration::from_secs(3600),
        reorder_every: Duration::from_secs(3600),
        reconcile_every: Duration::from_secs(3600),
    };
    let server = tokio::spawn(commands::serve(app, options, async move {
        let _ = stopped.await;
    }));
    // Wait for the listener, then deliver orders and stop at once.
    let url = format!("http://{listen}/webhooks/shopify/demo-shopify");
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for n in 1..=8u32 {
        let (id, _) = sandbox.sandbox.channels.create_order(
            Channel::Shopify,
            NewOrder {
                email: Some(format!("c{n}@example.test")),
                first_name: "C".into(),
                last_name: n.to_string(),
                currency: "GBP".into(),
                lines: vec![NewOrderLine {
                    sku: Some(format!("SKU-{n:05}")),
                    name: "P".into(),
                    quantity: 1,
                    price: 5.0,
                }],
            },
        );
        let sent = sandbox
            .sandbox
            .channels
            .deliver_order_webhook(
                Channel::Shopify,
                &id,
                &url,
                local::SAMPLE_SHOPIFY_SECRET,
                &DeliveryOptions::default(),
            )
            .await;
        assert_eq!(sent[0].status, 200);
        ids.push(id);
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert_eq!(queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap().len(), 0);
    let state = sandbox.sandbox.brightpearl.state();
    for id in &ids {
        let external_ref = pearlsync::orders::external_ref("demo-shopify", id);
        let count = state
            .orders
            .values()
            .filter(|o| o.external_ref.as_deref() == Some(external_ref.as_str()))
            .count();
        assert_eq!(count, 1, "order {id} must be written exactly once before serve exits");
    }
}

#[tokio::test]
async fn orders_with_the_same_id_on_two_stores_become_two_sales_orders() {
    let (sandbox, app) = local_app("collide").await;
    let new = || NewOrder {
        email: Some("same@example.test".into()),
        first_name: "S".into(),
        last_name: "Ame".into(),
        currency: "GBP".into(),
        lines: vec![NewOrderLine {
            sku: Some("SKU-00003".into()),
            name: "P".into(),
            quantity: 1,
            price: 5.0,
        }],
    };
    // Stores number their orders independently, so two stores can both have order 4242.
    let shop_id = "4242".to_string();
    let mut jobs = Vec::new();
    for (channel, kind, store) in [
        (Channel::Shopify, ChannelKind::Shopify, "demo-shopify"),
        (Channel::Woocommerce, ChannelKind::Woocommerce, "demo-woocommerce"),
    ] {
        let (id, mut payload) = sandbox.sandbox.channels.create_order(channel, new());
        assert_ne!(id, shop_id);
        payload["id"] = serde_json::json!(4242);
        jobs.push(Job::ChannelOrder {
            channel: kind,
            store: store.into(),
            order_id: shop_id.clone(),
            event: OrderEvent::Created,
            payload: Some(payload),
        });
    }
    app.queue.send(&jobs).await.unwrap();
    let worker = pearlsync::worker::QueueWorker::new(&app);
    worker.drain(100).await.unwrap();
    let state = sandbox.sandbox.brightpearl.state();
    let refs: Vec<Option<String>> =
        state.orders.values().filter(|o| o.order_type == "SO").map(|o| o.external_ref.clone()).collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    for store in ["demo-shopify", "demo-woocommerce"] {
        let expected = pearlsync::orders::external_ref(store, &shop_id);
        assert_eq!(refs.iter().filter(|r| r.as_deref() == Some(expected.as_str())).count(), 1, "{refs:?}");
    }
}

#[tokio::test]
async fn reconcile_reports_drift_without_writing_and_fix_repairs_it() {
    let (sandbox, app) = local_app("reconcile").await;
    app.inventory_poll().run(pearlsync::inventory::PollTrigger::Full { reconcile: false }).await.unwrap();
    let before = sandbox.sandbox.channels.quantity(Channel::Woocommerce, "SKU-00004").unwrap();
    sandbox.sandbox.channels.set_quantity(Channel::Woocommerce, "SKU-00004", before + 7);
    let report = commands::reconcile(&app, "demo-woocommerce", false).await.unwrap();
    assert_eq!(
        report["drift"],
        serde_json::json!([{"sku": "SKU-00004", "expected": before, "shown": before + 7}])
    );
    assert_eq!(
        sandbox.sandbox.channels.quantity(Channel::Woocommerce, "SKU-00004"),
        Some(before + 7),
        "report only"
    );
    let fixed = commands::reconcile(&app, "demo-woocommerce", true).await.unwrap();
    assert_eq!(fixed["repaired"][0]["sku"], "SKU-00004");
    assert_eq!(sandbox.sandbox.channels.quantity(Channel::Woocommerce, "SKU-00004"), Some(before));
    assert!(commands::reconcile(&app, "no-such-store", false).await.is_err());
}

#[tokio::test]
async fn invoke_refuses_an_event_the_function_does_not_take_with_a_clear_error() {
    let (_sandbox, app) = local_app("invoke").await;
    for function in [Function::InventoryPoll, Function::OrderWriter, Function::ReorderChecker] {
        let err = commands::invoke(&app, function, serde_json::json!({"not": "an event"})).await.unwrap_err();
        assert!(err.to_string().contains("bad input"), "{}: {err}", function.name());
    }
    // A Function URL event with a broken body is answered, not an error: a 4xx for the sender.
    let answer = commands::invoke(&app, Function::WebhookIngress, serde_json::json!({"rawPath": "/webhooks/shopify/demo-shopify",
        "requestContext": {"http": {"method": "POST"}}, "headers": {"content-type": "application/json"}, "body": "{"}))
    .await
    .unwrap();
    assert_eq!(answer["statusCode"], 401);
}
