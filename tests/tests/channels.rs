//! Channel clients against the in-process sandbox over real HTTP.

use pearlsync::channels::{Fulfilment, QuantityUpdate, SalesChannel, StoreConfig, build_channel};
use pearlsync::queue::{ChannelKind, OrderEvent};
use pearlsync::secret::Secret;
use pearlsync::state::{EmbeddedStore, StateStore};
use pearlsync_sandbox::channels::{Channel, DeliveryOptions, NewOrder, NewOrderLine, OrderTopic};
use pearlsync_sandbox::faults::Fault;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use std::sync::Arc;

fn store_for(sandbox: &Sandbox, kind: ChannelKind) -> StoreConfig {
    StoreConfig {
        name: format!("{kind}-main"),
        kind,
        base_url: sandbox.base_url.clone(),
        access_token: Secret::literal("token"),
        webhook_secret: Secret::literal(match kind {
            ChannelKind::Shopify => sandbox.channels.config().shopify_client_secret.clone(),
            _ => "hook-secret".into(),
        }),
        store_hash: sandbox.channels.config().bigcommerce_store_hash.clone(),
        consumer_key: Secret::literal("ck_x"),
        consumer_secret: Secret::literal("cs_x"),
        location_id: Some("1".into()),
        ..StoreConfig::default()
    }
}

fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

async fn setup(kind: ChannelKind) -> (Sandbox, Arc<dyn SalesChannel>) {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let state: Arc<dyn StateStore> = Arc::new(EmbeddedStore::in_memory().unwrap());
    let channel = build_channel(&store_for(&sandbox, kind), state);
    (sandbox, channel)
}

async fn push_5001(kind: ChannelKind, expected_writes: u64, write_endpoint: &str) {
    // Resolving 5,001 SKUs costs Shopify about 10,000 query points: a Plus store's restore rate
    // (1,000 points/s) keeps that to seconds.
    let mut config = SandboxConfig::default();
    config.channels.shopify_restore_rate = 1000.0;
    let sandbox = pearlsync_sandbox::start(config).await.unwrap();
    let channel = build_channel(&store_for(&sandbox, kind), Arc::new(EmbeddedStore::in_memory().unwrap()));
    let ch = sandbox_channel(kind);
    let skus: Vec<String> = (0..5001).map(|i| format!("SKU-{i:05}")).collect();
    sandbox.channels.seed_products(ch, &skus.iter().map(|s| (s.clone(), 0)).collect::<Vec<_>>());
    let updates: Vec<QuantityUpdate> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| QuantityUpdate { sku: s.clone(), quantity: i as i64 % 50, last_pushed: Some(0) })
        .collect();
    let report = channel.set_quantities(&updates).await.unwrap();
    assert_eq!(report.pushed.len(), 5001, "{:?}", &report.failed.first());
    assert!(report.conflicts.is_empty() && report.failed.is_empty());
    let counters = sandbox.channels.counters(ch);
    assert_eq!(counters.count(write_endpoint), expected_writes);
    assert_eq!(counters.batch_calls, expected_writes);
    assert_eq!(counters.oversized_batches, 0);
    assert_eq!(sandbox.channels.quantity(ch, "SKU-00049"), Some(49));
    assert_eq!(sandbox.channels.quantity(ch, "SKU-05000"), Some(0));
    assert_eq!(report.requests, counters.total_requests());

    // A second push reuses the SKU cache: only writes go out.
    sandbox.channels.reset_counters(ch);
    let again: Vec<QuantityUpdate> = updates
        .iter()
        .map(|u| QuantityUpdate { last_pushed: Some(u.quantity), quantity: u.quantity + 1, ..u.clone() })
        .collect();
    let report = channel.set_quantities(&again).await.unwrap();
    assert_eq!(report.pushed.len(), 5001);
    assert_eq!(sandbox.channels.counters(ch).total_requests(), expected_writes);
}

#[tokio::test]
async fn shopify_pushes_5001_quantities_in_21_mutations() {
    push_5001(ChannelKind::Shopify, 5001_u64.div_ceil(250), "graphql:inventorySetQuantities").await;
}

#[tokio::test]
async fn bigcommerce_pushes_5001_quantities_in_3_calls() {
    push_5001(ChannelKind::Bigcommerce, 5001_u64.div_ceil(2000), "v3/inventory/adjustments/absolute").await;
}

#[tokio::test]
async fn woocommerce_pushes_5001_quantities_in_51_calls() {
    push_5001(ChannelKind::Woocommerce, 5001_u64.div_ceil(100), "products/batch").await;
}

#[tokio::test]
async fn shopify_compare_and_set_conflict_is_reread_not_overwritten() {
    let (sandbox, channel) = setup(ChannelKind::Shopify).await;
    for sku in ["A", "B", "C"] {
        sandbox.channels.seed_product(Channel::Shopify, sku, 10);
    }
    // A merchant sells two of B after our last push.
    sandbox.channels.set_quantity(Channel::Shopify, "B", 8);
    let updates: Vec<QuantityUpdate> = ["A", "B", "C"]
        .iter()
        .map(|s| QuantityUpdate { sku: s.to_string(), quantity: 5, last_pushed: Some(10) })
        .collect();
    let report = channel.set_quantities(&updates).await.unwrap();
    assert_eq!(report.conflicts, vec![("B".to_string(), 8)]);
    let mut pushed = report.pushed.clone();
    pushed.sort();
    assert_eq!(pushed, vec!["A".to_string(), "C".to_string()]);
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "B"), Some(8), "the merchant's edit survives");
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "A"), Some(5));
    assert_eq!(channel.read_quantities(&["B".to_string()]).await.unwrap().get("B"), Some(&8));
}

#[tokio::test]
async fn throttles_are_waited_out_and_retried() {
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce] {
        let (sandbox, channel) = setup(kind).await;
        let ch = sandbox_channel(kind);
        sandbox.channels.seed_product(ch, "T-1", 1);
        channel.resolve_skus(&["T-1".to_string()]).await.unwrap();
        sandbox.channels.faults(ch).script([Some(Fault::Throttle), Some(Fault::Throttle)]);
        let report = channel
            .set_quantities(&[QuantityUpdate { sku: "T-1".into(), quantity: 4, last_pushed: None }])
            .await
            .unwrap();
        assert_eq!(report.pushed, vec!["T-1".to_string()], "{kind}");
        assert_eq!(sandbox.channels.quantity(ch, "T-1"), Some(4));
        assert_eq!(channel.stats().throttled, 2, "{kind}");
        assert_eq!(sandbox.channels.counters(ch).throttles_sent, 2);
    }
}

fn two_line_order() -> NewOrder {
    NewOrder {
        email: Some("ana@example.com".into()),
        first_name: "Ana".into(),
        last_name: "Łódź".into(),
        currency: "GBP".into(),
        lines: vec![
            NewOrderLine { sku: Some("SHIRT".into()), name: "Shirt".into(), quantity: 3, price: 20.0 },
            NewOrderLine { sku: Some("HAT".into()), name: "Hat".into(), quantity: 1, price: 0.0 },
        ],
    }
}

#[tokio::test]
async fn partial_fulfilment_then_the_rest_and_idempotent_repeat() {
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce] {
        let (sandbox, channel) = setup(kind).await;
        let ch = sandbox_channel(kind);
        sandbox.channels.seed_product(ch, "SHIRT", 10);
        sandbox.channels.seed_product(ch, "HAT", 10);
        let (id, _) = sandbox.channels.create_order(ch, two_line_order());
        let first = Fulfilment {
            tracking_number: "TRK-1".into(),
            carrier: "Royal Mail".into(),
            tracking_url: Some("https://track.example/TRK-1".into()),
            lines: vec![("SHIRT".into(), 2)],
        };
        channel.post_fulfilment(&id, &first).await.unwrap();
        channel.post_fulfilment(&id, &first).await.unwrap();
        let second = Fulfilment {
            tracking_number: "TRK-2".into(),
            lines: vec![("SHIRT".into(), 1), ("HAT".into(), 1)],
            ..first.clone()
        };
        channel.post_fulfilment(&id, &second).await.unwrap();
        let recorded = sandbox.channels.fulfilments(ch, &id);
        assert_eq!(recorded.len(), 2, "{kind}: the repeat is skipped");
        assert_eq!(recorded[0].tracking_number, "TRK-1");
        assert_eq!(recorded[0].carrier, "Royal Mail");
        if kind != ChannelKind::Woocommerce {
            assert_eq!(recorded[0].lines, vec![("SHIRT".to_string(), 2)], "{kind}");
            assert_eq!(recorded[1].lines, vec![("SHIRT".to_string(), 1), ("HAT".to_string(), 1)], "{kind}");
        }
    }
}

#[tokio::test]
async fn woocommerce_without_shipment_tracking_falls_back_to_a_note() {
    let mut config = SandboxConfig::default();
    config.channels.woocommerce_shipment_tracking = false;
    let sandbox = pearlsync_sandbox::start(config).await.unwrap();
    let channel = build_channel(
        &store_for(&sandbox, ChannelKind::Woocommerce),
        Arc::new(EmbeddedStore::in_memory().unwrap()),
    );
    sandbox.channels.seed_product(Channel::Woocommerce, "SHIRT", 10);
    let (id, _) = sandbox.channels.create_order(Channel::Woocommerce, two_line_order());
    let f = Fulfilment {
        tracking_number: "TRK-9".into(),
        carrier: "DPD".into(),
        tracking_url: None,
        lines: vec![("SHIRT".into(), 3)],
    };
    channel.post_fulfilment(&id, &f).await.unwrap();
    channel.post_fulfilment(&id, &f).await.unwrap();
    let notes = sandbox.channels.order_notes(Channel::Woocommerce, &id);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("TRK-9") && notes[0].contains("DPD"));
}

type Received = Arc<std::sync::Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A tiny receiver that records webhook deliveries.
async fn receiver() -> (String, Received) {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let seen: Received = Arc::default();
    let store = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                let h = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                store.lock().unwrap().push((h, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn sandbox_webhooks_verify_dedup_and_normalise() {
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce] {
        let (sandbox, channel) = setup(kind).await;
        let ch = sandbox_channel(kind);
        sandbox.channels.seed_product(ch, "SHIRT", 10);
        let (id, _) = sandbox.channels.create_order(ch, two_line_order());
        let (url, seen) = receiver().await;
        let secret = channel.store().webhook_secret.expose().to_string();
        let options = DeliveryOptions {
            topics: vec![OrderTopic::Created, OrderTopic::Updated],
            duplicates: 2,
            out_of_order: true,
        };
        let sent = sandbox.channels.deliver_order_webhook(ch, &id, &url, &secret, &options).await;
        assert_eq!(sent.len(), 6);
        assert!(sent.iter().all(|s| s.status == 200));
        let seen = seen.lock().unwrap().clone();
        let deliveries: Vec<_> = seen.iter().map(|(h, b)| channel.verify_webhook(h, b).unwrap()).collect();
        // Out of order: the update arrives first.
        assert_eq!(deliveries[0].event, OrderEvent::Updated, "{kind}");
        assert_eq!(deliveries[5].event, OrderEvent::Created, "{kind}");
        let mut keys: Vec<&str> = deliveries.iter().map(|d| d.dedup_key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 2, "{kind}: three copies of each event share a key");
        // BigCommerce's thin body names the event only: the order is fetched.
        let payload = match &deliveries[0].payload {
            Some(p) if kind != ChannelKind::Bigcommerce => p.clone(),
            _ => channel.fetch_order(deliveries[0].order_id.as_deref().unwrap()).await.unwrap(),
        };
        let order = channel.normalise_order(&payload).unwrap();
        assert_eq!(order.id, id);
        assert_eq!(order.lines.len(), 2);
        assert_eq!(order.lines[0].quantity, 3);
        assert_eq!(order.customer_name.as_deref(), Some("Ana Łódź"));
        assert_eq!(order.email.as_deref(), Some("ana@example.com"));
        // A wrong secret fails verification.
        let (h, b) = &seen[0];
        let mut tampered = b.clone();
        tampered.extend_from_slice(b" ");
        if kind != ChannelKind::Bigcommerce {
            assert!(channel.verify_webhook(h, &tampered).is_err());
        }
        let listed =
            channel.list_orders_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
        assert!(listed.iter().any(|o| o.id == id), "{kind}");
    }
}

#[tokio::test]
async fn webhook_registration_is_idempotent_and_deliverable() {
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce] {
        let (sandbox, channel) = setup(kind).await;
        let ch = sandbox_channel(kind);
        let (url, seen) = receiver().await;
        channel.register_webhooks(&url).await.unwrap();
        let count = sandbox.channels.webhooks(ch).len();
        assert!(count >= 2, "{kind}");
        channel.register_webhooks(&url).await.unwrap();
        assert_eq!(sandbox.channels.webhooks(ch).len(), count, "{kind}: no duplicates");
        let (id, _) = sandbox.channels.create_order(ch, two_line_order());
        let sent = sandbox.channels.deliver_to_subscribers(ch, &id, OrderTopic::Created).await;
        assert_eq!(sent.len(), 1);
        let (h, b) = seen.lock().unwrap()[0].clone();
        let delivery = channel.verify_webhook(&h, &b).unwrap();
        assert_eq!(delivery.order_id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn batch_maxima_are_enforced_by_the_sandbox() {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let items: Vec<serde_json::Value> =
        (0..101).map(|i| serde_json::json!({"id": i, "stock_quantity": 1})).collect();
    let r = http
        .post(format!("{}/wp-json/wc/v3/products/batch", sandbox.base_url))
        .basic_auth("ck", Some("cs"))
        .json(&serde_json::json!({"update": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let items: Vec<serde_json::Value> = (0..2001)
        .map(|i| serde_json::json!({"location_id": 1, "sku": format!("S{i}"), "quantity": 1}))
        .collect();
    let r = http
        .put(format!("{}/stores/sandbox/v3/inventory/adjustments/absolute", sandbox.base_url))
        .header("X-Auth-Token", "t")
        .json(&serde_json::json!({"items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let quantities: Vec<serde_json::Value> = (0..251).map(|i| serde_json::json!({"inventoryItemId": format!("gid://shopify/InventoryItem/{i}"), "locationId": "gid://shopify/Location/1", "quantity": 1, "changeFromQuantity": null})).collect();
    let r: serde_json::Value = http
        .post(format!("{}/admin/api/2026-04/graphql.json", sandbox.base_url))
        .header("X-Shopify-Access-Token", "t")
        .json(&serde_json::json!({"query": "mutation X($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }", "variables": {"input": {"quantities": quantities}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["errors"][0]["extensions"]["code"], "MAX_INPUT_SIZE_EXCEEDED");
    for ch in Channel::ALL {
        assert_eq!(sandbox.channels.counters(ch).oversized_batches, 1);
    }
}
