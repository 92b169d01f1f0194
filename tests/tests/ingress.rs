//! webhook-ingress over real HTTP: signed deliveries from the sandbox's channels and Brightpearl,
//! dedup in DynamoDB and jobs on SQS (both on the local emulator), and a corpus of bad input
//! that must get the right 4xx and enqueue nothing.

use base64::Engine;
use hmac::{Hmac, Mac};
use pearlsync::channels::{ChannelSet, StoreConfig};
use pearlsync::ingress::{Ingress, http};
use pearlsync::metrics::Metrics;
use pearlsync::queue::{ChannelKind, Job, JobQueue, OrderEvent, QueueName, SqsQueue, SqsQueueUrls};
use pearlsync::secret::Secret;
use pearlsync::state::{DynamoStore, StateStore};
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine, OrderTopic};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use pearlsync_tests::emulator;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

const BRIGHTPEARL_SECRET: &str = "bp-url-secret-0123456789";
const WOO_SECRET: &str = "woo-hook-secret";
const BC_SECRET: &str = "bc-header-secret";

struct World {
    sandbox: Sandbox,
    queues: emulator::TestQueues,
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn stores(sandbox: &Sandbox) -> Vec<StoreConfig> {
    let base = StoreConfig {
        base_url: sandbox.base_url.clone(),
        access_token: Secret::literal("token"),
        store_hash: sandbox.channels.config().bigcommerce_store_hash.clone(),
        consumer_key: Secret::literal("ck_x"),
        consumer_secret: Secret::literal("cs_x"),
        location_id: Some("1".into()),
        ..StoreConfig::default()
    };
    vec![
        StoreConfig {
            name: "shop-main".into(),
            kind: ChannelKind::Shopify,
            webhook_secret: Secret::literal(sandbox.channels.config().shopify_client_secret.clone()),
            ..base.clone()
        },
        StoreConfig {
            name: "bc-main".into(),
            kind: ChannelKind::Bigcommerce,
            webhook_secret: Secret::literal(BC_SECRET),
            ..base.clone()
        },
        StoreConfig {
            name: "woo-main".into(),
            kind: ChannelKind::Woocommerce,
            webhook_secret: Secret::literal(WOO_SECRET),
            ..base
        },
    ]
}

async fn serve(ingress: Ingress) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, Arc::new(ingress), async move {
        let _ = rx.await;
    }));
    (url, tx)
}

fn ingress_over(sandbox: &Sandbox, state: Arc<dyn StateStore>, queue: Arc<dyn JobQueue>) -> Ingress {
    let channels = Arc::new(ChannelSet::new(&stores(sandbox), Arc::clone(&state)).unwrap());
    Ingress::new(
        channels,
        state,
        queue,
        Some(Secret::literal(BRIGHTPEARL_SECRET)),
        Arc::new(Metrics::new("test")),
    )
}

async fn world() -> World {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let state: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let queues = emulator::sqs_queues(5, 30).await;
    let ingress = ingress_over(&sandbox, state, Arc::new(queues.queue.clone()));
    let (url, stop) = serve(ingress).await;
    World { sandbox, queues, url, _stop: stop }
}

fn order(sandbox: &Sandbox, channel: Channel) -> String {
    let new = NewOrder {
        email: Some("ada@example.com".into()),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        currency: "GBP".into(),
        lines: vec![NewOrderLine {
            sku: Some("SKU-00001".into()),
            name: "Widget".into(),
            quantity: 2,
            price: 9.5,
        }],
    };
    sandbox.channels.create_order(channel, new).0
}

async fn post(url: &str, headers: &[(String, String)], body: impl Into<reqwest::Body>) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.unwrap().status().as_u16()
}

fn json_headers(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers.push(("Content-Type".into(), "application/json".into()));
    headers
}

/// Every job on the three test queues (acked as read).
async fn queued(queue: &SqsQueue) -> Vec<Job> {
    let mut jobs = Vec::new();
    for name in QueueName::ALL {
        loop {
            let got = queue.receive(name, 10, Duration::from_millis(300)).await.unwrap();
            if got.is_empty() {
                break;
            }
            for r in got {
                queue.ack(name, &r.receipt).await.unwrap();
                jobs.push(r.job);
            }
        }
    }
    jobs
}

fn shopify_sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_shopify_order_delivered_three_times_concurrently_is_enqueued_once() {
    let w = world().await;
    let id = order(&w.sandbox, Channel::Shopify);
    let secret = w.sandbox.channels.config().shopify_client_secret.clone();
    let (headers, body) =
        w.sandbox.channels.webhook_request(Channel::Shopify, &id, OrderTopic::Created, &secret, 0).unwrap();
    let headers = json_headers(headers);
    let url = format!("{}/webhooks/shopify/shop-main", w.url);
    let sends = (0..3).map(|_| {
        let (url, headers, body) = (url.clone(), headers.clone(), body.clone());
        async move { post(&url, &headers, body).await }
    });
    let statuses = futures_join(sends).await;
    // One delivery enqueues; a copy that arrives while it is in progress is told to retry
    // (503), because acknowledging it would lose the event if the first attempt then failed.
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    for status in &statuses {
        if *status == 503 {
            // The sender's retry, after the first delivery finished: acknowledged as a duplicate.
            assert_eq!(post(&url, &headers, body.clone()).await, 200);
        }
    }
    let jobs = queued(&w.queues.queue).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    match &jobs[0] {
        Job::ChannelOrder { channel, store, order_id, event, payload } => {
            assert_eq!(
                (*channel, store.as_str(), order_id.as_str(), *event),
                (ChannelKind::Shopify, "shop-main", id.as_str(), OrderEvent::Created)
            );
            assert_eq!(
                payload.as_ref().and_then(|p| p["id"].as_u64()).map(|v| v.to_string()),
                Some(id.clone())
            );
        }
        other => panic!("unexpected job {other:?}"),
    }
}

async fn futures_join<F: std::future::Future<Output = u16> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_bad_signature_is_401_and_nothing_is_enqueued() {
    let w = world().await;
    let id = order(&w.sandbox, Channel::Shopify);
    let (headers, body) = w
        .sandbox
        .channels
        .webhook_request(Channel::Shopify, &id, OrderTopic::Created, "not-the-secret", 0)
        .unwrap();
    assert_eq!(
        post(&format!("{}/webhooks/shopify/shop-main", w.url), &json_headers(headers), body).await,
        401
    );
    assert!(queued(&w.queues.queue).await.is_empty());
}

#[tokio::test]
async fn a_bigcommerce_id_only_webhook_enqueues_the_order_with_only_the_events_identity() {
    let w = world().await;
    let id = order(&w.sandbox, Channel::Bigcommerce);
    let (headers, body) = w
        .sandbox
        .channels
        .webhook_request(Channel::Bigcommerce, &id, OrderTopic::Created, BC_SECRET, 0)
        .unwrap();
    let url = format!("{}/webhooks/bigcommerce/bc-main", w.url);
    let body_of_first = body.clone();
    assert_eq!(post(&url, &json_headers(headers.clone()), body.clone()).await, 200);
    // The same event again (same hash) is a duplicate.
    assert_eq!(post(&url, &json_headers(headers), body).await, 200);
    let jobs = queued(&w.queues.queue).await;
    assert_eq!(jobs.len(), 1);
    let Job::ChannelOrder { channel: ChannelKind::Bigcommerce, order_id, payload: Some(p), .. } = &jobs[0]
    else {
        panic!("a BigCommerce order job with the event's identity: {:?}", jobs[0]);
    };
    assert_eq!(*order_id, id);
    // The thin body's identity, nothing of the order (the writer fetches it).
    let sent: serde_json::Value = serde_json::from_str(&body_of_first).unwrap();
    assert_eq!(p["hash"], sent["hash"]);
    assert_eq!(p["scope"], "store/order/created");
    assert_eq!(p["data"], sent["data"]);
    assert!(p.get("line_items").is_none() && p.get("products").is_none() && p.get("total_inc_tax").is_none());
}

#[tokio::test]
async fn woocommerce_orders_are_enqueued_and_its_unsigned_ping_is_acknowledged_only() {
    let w = world().await;
    let url = format!("{}/webhooks/woocommerce/woo-main", w.url);
    let ping = vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())];
    assert_eq!(post(&url, &ping, "webhook_id=12").await, 200);
    assert!(queued(&w.queues.queue).await.is_empty());
    let id = order(&w.sandbox, Channel::Woocommerce);
    let (headers, body) = w
        .sandbox
        .channels
        .webhook_request(Channel::Woocommerce, &id, OrderTopic::Created, WOO_SECRET, 0)
        .unwrap();
    assert_eq!(post(&url, &json_headers(headers), body).await, 200);
    let jobs = queued(&w.queues.queue).await;
    assert!(
        matches!(&jobs[..], [Job::ChannelOrder { channel: ChannelKind::Woocommerce, order_id, .. }] if *order_id == id)
    );
}

fn brightpearl_body(event: &str, ids: &str, raised: &str) -> String {
    serde_json::json!({"accountCode": "sandbox", "resourceType": "x", "id": ids, "lifecycleEvent": "modified",
        "fullEvent": event, "raisedOn": raised, "brightpearlVersion": "4.95"})
    .to_string()
}

#[tokio::test]
async fn brightpearl_events_become_stock_shipment_and_goods_in_jobs() {
    let w = world().await;
    let url = format!("{}/webhooks/brightpearl/{BRIGHTPEARL_SECRET}", w.url);
    let h = json_headers(Vec::new());
    for (event, ids) in [
        ("product.modified.on-hand-modified", "1-3,7"),
        ("goods-out-note.modified.shipped", "55"),
        ("goods-in-note.created", "8,9"),
    ] {
        assert_eq!(post(&url, &h, brightpearl_body(event, ids, "2026-11-27T10:00:00Z")).await, 200);
        // QoS 1 redelivery of the same event.
        assert_eq!(post(&url, &h, brightpearl_body(event, ids, "2026-11-27T10:00:00Z")).await, 200);
    }
    // An event we did not subscribe to is acknowledged and ignored.
    assert_eq!(post(&url, &h, brightpearl_body("order.modified.order-status", "4", "x")).await, 200);
    let mut jobs = queued(&w.queues.queue).await;
    jobs.sort_by_key(|j| format!("{j:?}"));
    assert_eq!(
        jobs,
        [
            Job::GoodsIn { goods_in_note_ids: vec![8, 9] },
            Job::Shipment { goods_out_note_ids: vec![55] },
            Job::StockChanged { product_ids: vec![1, 2, 3, 7] },
        ]
    );
    let wrong = format!("{}/webhooks/brightpearl/not-{BRIGHTPEARL_SECRET}", w.url);
    assert_eq!(post(&wrong, &h, brightpearl_body("goods-in-note.created", "1", "y")).await, 401);
    assert!(queued(&w.queues.queue).await.is_empty());
}

#[tokio::test]
async fn a_queue_failure_answers_503_and_the_senders_retry_is_enqueued() {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let state: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let queues = emulator::sqs_queues(5, 30).await;
    let broken = SqsQueue::new(
        queues.client.clone(),
        SqsQueueUrls {
            orders: format!("{}-missing.fifo", queues.urls.orders.trim_end_matches(".fifo")),
            ..queues.urls.clone()
        },
    );
    let (broken_url, _stop1) = serve(ingress_over(&sandbox, Arc::clone(&state), Arc::new(broken))).await;
    let (good_url, _stop2) = serve(ingress_over(&sandbox, state, Arc::new(queues.queue.clone()))).await;
    let id = order(&sandbox, Channel::Shopify);
    let secret = sandbox.channels.config().shopify_client_secret.clone();
    let (headers, body) =
        sandbox.channels.webhook_request(Channel::Shopify, &id, OrderTopic::Created, &secret, 0).unwrap();
    let headers = json_headers(headers);
    assert_eq!(post(&format!("{broken_url}/webhooks/shopify/shop-main"), &headers, body.clone()).await, 503);
    // The failed attempt left the dedup key free: the retry goes through.
    assert_eq!(post(&format!("{good_url}/webhooks/shopify/shop-main"), &headers, body).await, 200);
    assert_eq!(queued(&queues.queue).await.len(), 1);
}

#[tokio::test]
async fn a_state_store_failure_answers_503_and_enqueues_nothing() {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let config = emulator::sdk_config().await;
    let missing_table: Arc<dyn StateStore> = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        emulator::unique_name("no-such-table"),
    ));
    let queues = emulator::sqs_queues(5, 30).await;
    let (url, _stop) = serve(ingress_over(&sandbox, missing_table, Arc::new(queues.queue.clone()))).await;
    let id = order(&sandbox, Channel::Shopify);
    let secret = sandbox.channels.config().shopify_client_secret.clone();
    let (headers, body) =
        sandbox.channels.webhook_request(Channel::Shopify, &id, OrderTopic::Created, &secret, 0).unwrap();
    assert_eq!(post(&format!("{url}/webhooks/shopify/shop-main"), &json_headers(headers), body).await, 503);
    assert!(queued(&queues.queue).await.is_empty());
}

/// One bad request and the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

fn shopify_headers(secret: &str, body: &[u8], content_type: &str) -> Vec<(String, String)> {
    vec![
        ("X-Shopify-Hmac-Sha256".into(), shopify_sign(secret, body)),
        ("X-Shopify-Topic".into(), "orders/create".into()),
        ("X-Shopify-Event-Id".into(), format!("evt-{}", fastrand_id())),
        ("X-Shopify-Shop-Domain".into(), "sandbox.myshopify.com".into()),
        ("Content-Type".into(), content_type.into()),
    ]
}

fn fastrand_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn woo_headers(body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("X-WC-Webhook-Signature".into(), shopify_sign(WOO_SECRET, body)),
        ("X-WC-Webhook-Topic".into(), "order.created".into()),
        ("X-WC-Webhook-Source".into(), "https://shop.example/".into()),
        ("Content-Type".into(), "application/json".into()),
    ]
}

fn corpus(shopify_secret: &str, good_shopify_body: &str) -> Vec<Case> {
    let shop = "/webhooks/shopify/shop-main".to_string();
    let bp = format!("/webhooks/brightpearl/{BRIGHTPEARL_SECRET}");
    let json = || vec![("Content-Type".to_string(), "application/json".to_string())];
    let signed = |body: &[u8]| shopify_headers(shopify_secret, body, "application/json");
    let case = |name, method, path: &str, headers, body: Vec<u8>, status| Case {
        name,
        method,
        path: path.to_string(),
        headers,
        body,
        status,
    };
    let good = good_shopify_body.as_bytes().to_vec();
    let mut cases = vec![
        // Methods and routes.
        case("GET", "GET", &shop, signed(&good), good.clone(), 405),
        case("PUT", "PUT", &shop, signed(&good), good.clone(), 405),
        case("DELETE", "DELETE", &shop, signed(&good), good.clone(), 405),
        case("PATCH", "PATCH", &shop, signed(&good), good.clone(), 405),
        case("root", "POST", "/", signed(&good), good.clone(), 404),
        case("no source", "POST", "/webhooks", signed(&good), good.clone(), 404),
        case("no store", "POST", "/webhooks/shopify", signed(&good), good.clone(), 404),
        case("unknown store", "POST", "/webhooks/shopify/nope", signed(&good), good.clone(), 404),
        case("unknown source", "POST", "/webhooks/amazon/shop-main", signed(&good), good.clone(), 404),
        case(
            "store of another kind",
            "POST",
            "/webhooks/bigcommerce/shop-main",
            signed(&good),
            good.clone(),
            404,
        ),
        case("extra segment", "POST", "/webhooks/shopify/shop-main/x", signed(&good), good.clone(), 404),
        case("unicode store", "POST", "/webhooks/shopify/sh%C3%B6p", signed(&good), good.clone(), 404),
        // Signatures.
        case("no signature", "POST", &shop, json(), good.clone(), 401),
        case(
            "empty signature",
            "POST",
            &shop,
            {
                let mut h = signed(&good);
                h[0].1 = String::new();
                h
            },
            good.clone(),
            401,
        ),
        case(
            "wrong secret",
            "POST",
            &shop,
            shopify_headers("wrong", &good, "application/json"),
            good.clone(),
            401,
        ),
        case(
            "signature not base64",
            "POST",
            &shop,
            {
                let mut h = signed(&good);
                h[0].1 = "%%%not-base64%%%".into();
                h
            },
            good.clone(),
            401,
        ),
        case(
            "replayed signature on a changed body",
            "POST",
            &shop,
            signed(&good),
            good_shopify_body.replace("9.50", "0.01").into_bytes(),
            401,
        ),
        case(
            "truncated body, original signature",
            "POST",
            &shop,
            signed(&good),
            good[..good.len() / 2].to_vec(),
            401,
        ),
        case(
            "hex instead of base64",
            "POST",
            &shop,
            {
                let mut h = signed(&good);
                h[0].1 = "ab".repeat(32);
                h
            },
            good.clone(),
            401,
        ),
        // Bodies: correctly signed, but not an order.
        case(
            "oversized body",
            "POST",
            &shop,
            signed(&vec![b' '; 1024 * 1024 + 1]),
            vec![b' '; 1024 * 1024 + 1],
            413,
        ),
    ];
    for (name, body) in [
        ("empty body", ""),
        ("truncated JSON", "{\"id\": 1, \"line_items\": ["),
        ("JSON null", "null"),
        ("JSON array", "[1,2,3]"),
        ("JSON string", "\"order\""),
        ("JSON number", "42"),
        ("object without id", "{\"email\": \"a@b.c\"}"),
        ("id null", "{\"id\": null}"),
        ("id object", "{\"id\": {\"x\": 1}}"),
        ("trailing garbage", "{\"id\": 1} xyz"),
        ("BOM-prefixed", "\u{feff}{\"id\": 1}"),
        ("single quotes", "{'id': 1}"),
        ("lone surrogate escape", "{\"id\": 1, \"name\": \"\\ud800\"}"),
        ("deep nesting", &format!("{}{}", "[".repeat(200), "]".repeat(200))),
    ] {
        let b = body.as_bytes().to_vec();
        cases.push(case(name, "POST", &shop, signed(&b), b, 400));
    }
    let invalid_utf8 = vec![
        b'{', b'"', b'i', b'd', b'"', b':', b'1', b',', b'"', b'n', b'"', b':', b'"', 0xff, 0xfe, b'"', b'}',
    ];
    cases.push(case("invalid UTF-8", "POST", &shop, signed(&invalid_utf8), invalid_utf8.clone(), 400));
    // Content types, with a valid signature.
    for (name, ct) in [
        ("text/plain", "text/plain"),
        ("xml", "application/xml"),
        ("form", "application/x-www-form-urlencoded"),
        ("missing content type", ""),
    ] {
        let mut h = shopify_headers(shopify_secret, &good, ct);
        if ct.is_empty() {
            h.retain(|(k, _)| k != "Content-Type");
        }
        cases.push(case(name, "POST", &shop, h, good.clone(), 415));
    }
    // Shopify topic and ids.
    cases.push(case(
        "not an order topic",
        "POST",
        &shop,
        {
            let mut h = signed(&good);
            h[1].1 = "products/update".into();
            h
        },
        good.clone(),
        400,
    ));
    cases.push(case(
        "no event id",
        "POST",
        &shop,
        {
            let mut h = signed(&good);
            h.retain(|(k, _)| k != "X-Shopify-Event-Id");
            h
        },
        good.clone(),
        400,
    ));
    // WooCommerce.
    let woo = "/webhooks/woocommerce/woo-main";
    let woo_good = br#"{"id": 5, "date_modified_gmt": "2026-11-27T10:00:00"}"#.to_vec();
    cases.push(case(
        "woo wrong secret",
        "POST",
        woo,
        {
            let mut h = woo_headers(&woo_good);
            h[0].1 = shopify_sign("nope", &woo_good);
            h
        },
        woo_good.clone(),
        401,
    ));
    cases.push(case("woo unsigned JSON", "POST", woo, json(), woo_good.clone(), 401));
    cases.push(case(
        "woo ping with extra fields is not a ping",
        "POST",
        woo,
        vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
        b"webhook_id=1&x=2".to_vec(),
        401,
    ));
    let woo_bad = b"{\"date_modified_gmt\": 1}".to_vec();
    cases.push(case("woo order without id", "POST", woo, woo_headers(&woo_bad), woo_bad, 400));
    // BigCommerce.
    let bc = "/webhooks/bigcommerce/bc-main";
    let bc_good = br#"{"scope":"store/order/created","store_id":"1","data":{"type":"order","id":7},"hash":"abc","created_at":1}"#.to_vec();
    cases.push(case("bc no secret header", "POST", bc, json(), bc_good.clone(), 401));
    cases.push(case(
        "bc wrong secret",
        "POST",
        bc,
        {
            let mut h = json();
            h.push(("X-Pearlsync-Secret".into(), "wrong".into()));
            h
        },
        bc_good.clone(),
        401,
    ));
    let bc_headers = || {
        let mut h = json();
        h.push(("X-Pearlsync-Secret".into(), BC_SECRET.into()));
        h
    };
    for (name, body) in [
        ("bc no data", r#"{"scope":"store/order/created","hash":"a"}"#),
        ("bc order without id", r#"{"scope":"store/order/created","data":{"type":"order"},"hash":"a"}"#),
        ("bc garbage", "{{{"),
    ] {
        cases.push(case(name, "POST", bc, bc_headers(), body.as_bytes().to_vec(), 400));
    }
    // Brightpearl.
    cases.push(case(
        "bp wrong secret",
        "POST",
        "/webhooks/brightpearl/guess",
        json(),
        brightpearl_body("goods-in-note.created", "1", "z").into_bytes(),
        401,
    ));
    cases.push(case(
        "bp empty secret",
        "POST",
        "/webhooks/brightpearl/%20",
        json(),
        brightpearl_body("goods-in-note.created", "1", "z").into_bytes(),
        401,
    ));
    for (name, body) in [
        ("bp descending range", brightpearl_body("goods-in-note.created", "9-3", "z")),
        ("bp letters in id set", brightpearl_body("goods-in-note.created", "abc", "z")),
        ("bp empty id set", brightpearl_body("goods-in-note.created", "", "z")),
        (
            "bp missing id",
            r#"{"accountCode":"a","fullEvent":"goods-in-note.created","raisedOn":"z"}"#.to_string(),
        ),
        ("bp missing event", r#"{"accountCode":"a","id":"1","raisedOn":"z"}"#.to_string()),
        (
            "bp id as number",
            r#"{"accountCode":"a","id":1,"fullEvent":"goods-in-note.created","raisedOn":"z"}"#.to_string(),
        ),
        ("bp not JSON", "accountCode=a".to_string()),
    ] {
        cases.push(case(name, "POST", &bp, json(), body.into_bytes(), 400));
    }
    cases.push(case(
        "bp text/plain",
        "POST",
        &bp,
        vec![("Content-Type".into(), "text/plain".into())],
        brightpearl_body("goods-in-note.created", "1", "z").into_bytes(),
        415,
    ));
    cases.push(case("bp GET", "GET", &bp, json(), Vec::new(), 405));
    cases
}

#[tokio::test]
async fn every_case_of_the_bad_input_corpus_gets_its_4xx_and_nothing_is_enqueued() {
    let w = world().await;
    let secret = w.sandbox.channels.config().shopify_client_secret.clone();
    let good = r#"{"id": 4242, "email": "a@b.c", "currency": "GBP", "line_items": [{"id": 1, "sku": "SKU-00001", "quantity": 1, "price": "9.50"}]}"#;
    let cases = corpus(&secret, good);
    assert!(cases.len() >= 50, "the corpus has {} cases", cases.len());
    let client = reqwest::Client::new();
    let mut wrong = Vec::new();
    for c in &cases {
        let mut request = client
            .request(
                reqwest::Method::from_bytes(c.method.as_bytes()).unwrap(),
                format!("{}{}", w.url, c.path),
            )
            .body(c.body.clone());
        for (k, v) in &c.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let status = request.send().await.unwrap().status().as_u16();
        if status != c.status {
            wrong.push(format!("{}: expected {}, got {status}", c.name, c.status));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(queued(&w.queues.queue).await.is_empty(), "bad input must never be enqueued");
}

#[tokio::test]
async fn the_sample_function_url_events_are_signed_with_the_documented_secrets() {
    let local = pearlsync_cli::local::start(&pearlsync_cli::local::LocalOptions {
        products: 3,
        warehouses: 1,
        suppliers: 1,
        rate_limit: (200, Duration::from_secs(60)),
    })
    .await
    .unwrap();
    let backends = pearlsync::backends::Backends {
        state: Arc::new(pearlsync::state::EmbeddedStore::in_memory().unwrap()),
        queue: Arc::new(pearlsync::queue::InProcessQueue::default()),
    };
    let queue = Arc::clone(&backends.queue);
    let app = pearlsync::app::App::with_backends(local.config.clone(), backends, "test").unwrap();
    let ingress = Ingress::from_app(&app);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/webhook-ingress");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let answer = pearlsync::ingress::function_url::handle(&ingress, &event).await;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = if name.contains("bad-signature") { 401 } else { 200 };
        assert_eq!(answer["statusCode"], expected, "{name}: {answer}");
        seen += 1;
    }
    assert_eq!(seen, 7);
    let mut jobs = 0;
    for name in QueueName::ALL {
        jobs += queue.receive(name, 10, Duration::ZERO).await.unwrap().len();
    }
    assert_eq!(jobs, 6, "every good sample event enqueues one job");
}
