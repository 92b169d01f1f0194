//! The Brightpearl client against the in-process sandbox over real HTTP: pacing under the
//! limit, faults, ID-set chunking, order idempotency, auth, and the typed calls end to end.

use pearlsync::Error;
use pearlsync::brightpearl::*;
use pearlsync::secret::Secret;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::faults::{Fault, FaultRates};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sandbox(bp: BrightpearlSandboxConfig) -> Sandbox {
    pearlsync_sandbox::start(SandboxConfig { brightpearl: bp, ..Default::default() })
        .await
        .expect("sandbox starts")
}

fn seeded(products: u32, rate: (u32, Duration)) -> BrightpearlSandboxConfig {
    BrightpearlSandboxConfig {
        rate_limit: rate.0,
        rate_window: rate.1,
        seed: Some(SeedSpec { products, warehouses: 2, suppliers: 2, seed: 7 }),
        ..Default::default()
    }
}

fn client_config(sb: &Sandbox, rate: (u32, Duration)) -> BrightpearlConfig {
    pearlsync_tests::sandbox_brightpearl(sb, rate)
}

fn client(sb: &Sandbox, rate: (u32, Duration)) -> BrightpearlClient {
    BrightpearlClient::new(client_config(sb, rate)).expect("client builds")
}

const FAST: (u32, Duration) = (50, Duration::from_secs(1));

/// One sales order, written the way the order saga writes it: after an answer is lost the
/// externalRef search runs before the POST is repeated.
async fn create_order(bp: &BrightpearlClient, order: &NewSalesOrder) -> u64 {
    for _ in 0..10 {
        match bp.create_sales_orders(std::slice::from_ref(order)).await.remove(0) {
            WriteOutcome::Applied(id) => return id,
            WriteOutcome::NotApplied(e) if e.is_retryable() => continue,
            WriteOutcome::NotApplied(e) => panic!("sales order refused: {e}"),
            WriteOutcome::Unknown(_) => {
                if let Some(id) = bp.find_sales_order_id(&order.external_ref).await.expect("search") {
                    return id;
                }
            }
        }
    }
    panic!("sales order {} not written after 10 attempts", order.external_ref)
}
const AVAILABILITY: &str = "GET /warehouse-service/product-availability/{ids}";

fn product_ids(sb: &Sandbox) -> Vec<u64> {
    sb.brightpearl.with_state(|s| s.products.keys().copied().collect())
}

#[tokio::test]
async fn work_that_overruns_the_limit_finishes_without_loss_and_within_the_window() {
    let sb = sandbox(seeded(30, FAST)).await;
    let bp = client(&sb, FAST);
    let ids = product_ids(&sb);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..3 {
        let bp = bp.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..40 {
                let id = ids[(t * 40 + i) % ids.len()];
                answers.push((id, bp.availability(&[id]).await));
            }
            answers
        }));
    }
    let mut answered = 0;
    for t in tasks {
        for (id, result) in t.await.expect("task") {
            let map = result.expect("no request is lost");
            assert!(map.contains_key(&id));
            answered += 1;
        }
    }
    let counters = sb.brightpearl.counters();
    assert_eq!(answered, 120);
    assert_eq!(counters.endpoint(AVAILABILITY), 120, "one request per call, none repeated");
    assert!(counters.max_in_window <= 50, "max in a window: {}", counters.max_in_window);
    assert_eq!(counters.rate_limited, 0);
    assert_eq!(bp.stats().requests, 120);
    // 120 requests at 50 per second cannot finish inside two windows.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_that_does_not_know_the_limit_paces_from_the_headers() {
    let sb = sandbox(seeded(10, FAST)).await;
    // Configured for the default 200/60 s: only the headers and 503s tell it otherwise.
    let bp = client(&sb, (200, Duration::from_secs(60)));
    let ids = product_ids(&sb);
    for i in 0..80 {
        let id = ids[i % ids.len()];
        assert!(bp.availability(&[id]).await.expect("paced, not lost").contains_key(&id));
    }
    let counters = sb.brightpearl.counters();
    assert_eq!(counters.endpoint(AVAILABILITY) - counters.rate_limited, 80);
    assert!(counters.max_in_window <= 51, "max in a window: {}", counters.max_in_window);
    assert_eq!(bp.stats().throttled, counters.throttled_503);
}

#[tokio::test]
async fn calls_succeed_under_thirty_percent_injected_faults() {
    let window = (2_000, Duration::from_millis(200));
    let mut config = seeded(40, window);
    config.faults = FaultRates {
        throttle: 0.06,
        server_error: 0.06,
        slow: 0.06,
        drop: 0.06,
        lose_response: 0.06,
        slow_millis: 50,
        ..FaultRates::default()
    };
    config.fault_seed = 3;
    let sb = sandbox(config).await;
    let bp = client(&sb, window);
    let ids = product_ids(&sb);
    let customer = sb.brightpearl.with_state(|s| *s.contacts.keys().next().expect("a seeded contact"));
    for i in 0..20u64 {
        let id = ids[i as usize % ids.len()];
        assert!(bp.availability(&[id]).await.expect("availability").contains_key(&id));
        assert_eq!(bp.products(&[id]).await.expect("products")[0].id, id);
        let order = NewSalesOrder {
            customer_id: customer,
            external_ref: format!("shop-{i}"),
            currency_code: "GBP".into(),
            rows: vec![NewOrderRow {
                product_id: id,
                quantity: 1,
                net: "10.0".parse().unwrap(),
                tax: "2.0".parse().unwrap(),
                tax_code: Some("T20".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let order_id = create_order(&bp, &order).await;
        let read = bp.sales_orders(&[order_id]).await.expect("sales order GET");
        assert_eq!(read[0].external_ref.as_deref(), Some(format!("shop-{i}").as_str()));
    }
    let counters = sb.brightpearl.counters();
    let f = counters.faults;
    assert!(f.throttle + f.server_error + f.drop + f.lose_response > 10, "{f:?}");
    assert!(bp.stats().retried > 10);
    // Lost answers to sales-order POSTs were retried, yet each order exists once.
    let orders = sb.brightpearl.with_state(|s| s.orders.len());
    assert_eq!(orders, 20);
}

#[tokio::test]
async fn one_thousand_and_one_ids_make_six_availability_requests() {
    let sb = sandbox(seeded(1001, (1000, Duration::from_secs(1)))).await;
    let bp = client(&sb, (1000, Duration::from_secs(1)));
    let ids = product_ids(&sb);
    assert_eq!(ids.len(), 1001);
    let availability = bp.availability(&ids).await.expect("availability");
    assert_eq!(availability.len(), 1001);
    assert_eq!(sb.brightpearl.counters().endpoint(AVAILABILITY), 6);
    let onhand_1001: i64 = sb.brightpearl.with_state(|s| s.stock[&ids[0]].values().map(|r| r.on_hand).sum());
    assert_eq!(availability[&ids[0]].total.on_hand, onhand_1001);

    // Over the cap Brightpearl refuses the whole set: the client splits it and reads it all.
    let mut config = client_config(&sb, (1000, Duration::from_secs(1)));
    config.id_set_chunk = 500;
    let wide = BrightpearlClient::new(config).expect("client");
    assert_eq!(wide.availability(&ids).await.expect("split until accepted").len(), 1001);

    // One deleted id refuses its whole set (apis.md §8.1): it is isolated and reported, and
    // the other ids of its set are read.
    let mut with_deleted = ids[..300].to_vec();
    with_deleted.push(9_999_999);
    let read = bp.availability(&with_deleted).await.expect("availability");
    assert_eq!(read.len(), 300);
    let refused = bp.refused_ids();
    assert_eq!(refused.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![9_999_999], "{refused:?}");
}

#[tokio::test]
async fn a_repeated_sales_order_post_leaves_one_order() {
    let sb = sandbox(seeded(5, FAST)).await;
    let bp = client(&sb, FAST);
    let product = product_ids(&sb)[0];
    let contact = bp
        .create_contact(&NewContact {
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            email: Some("ann@example.test".into()),
            ..Default::default()
        })
        .await
        .expect("contact");
    let order = NewSalesOrder {
        customer_id: contact,
        external_ref: "shopify-1001".into(),
        currency_code: "GBP".into(),
        rows: vec![NewOrderRow {
            product_id: product,
            quantity: 2,
            net: "20.0".parse().unwrap(),
            tax: "4.0".parse().unwrap(),
            tax_code: Some("T20".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    // The first answer is lost after the order was made: the outcome is unknown, never a
    // silent retry.
    sb.brightpearl.fault_at("POST /order-service/sales-order", 1, Fault::LoseResponse);
    let lost = bp.create_sales_orders(std::slice::from_ref(&order)).await.remove(0);
    assert!(matches!(lost, WriteOutcome::Unknown(_)), "{lost:?}");
    let first = bp.find_sales_order_id("shopify-1001").await.expect("search").expect("the order was made");
    // A repeat anyway is answered by Brightpearl's externalRef + instance uniqueness.
    let repeat = bp.create_sales_orders(std::slice::from_ref(&order)).await.remove(0);
    assert!(matches!(repeat, WriteOutcome::Applied(id) if id == first), "{repeat:?}");
    let found = bp.find_sales_orders_by_external_ref("shopify-1001").await.expect("search");
    assert_eq!(found.iter().map(|o| o.sales_order_id).collect::<Vec<_>>(), vec![first]);
    assert_eq!(found[0].installed_integration_instance_id, Some(42));
    let state = sb.brightpearl.state();
    assert_eq!(
        state.orders.values().filter(|o| o.external_ref.as_deref() == Some("shopify-1001")).count(),
        1
    );
    assert_eq!(sb.brightpearl.counters().endpoint("POST /order-service/sales-order"), 2);
}

#[tokio::test]
async fn bad_credentials_get_a_typed_401_and_no_retry_loop() {
    let sb = sandbox(seeded(5, FAST)).await;
    let mut config = client_config(&sb, FAST);
    config.auth.staff_token = Secret::literal("wrong");
    let bp = BrightpearlClient::new(config).expect("client");
    match bp.warehouses().await {
        Err(Error::Unauthorized { message, .. }) => assert!(!message.is_empty()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(sb.brightpearl.counters().unauthorized, 1);
    assert_eq!(bp.stats().requests, 1);

    // No auth headers at all: the same typed error.
    let raw = reqwest::get(format!("{}/public-api/sandbox/warehouse-service/warehouse", sb.base_url))
        .await
        .expect("http");
    assert_eq!(raw.status().as_u16(), 401);
    assert!(raw.headers().contains_key("brightpearl-requests-remaining"));
}

#[tokio::test]
async fn an_oauth_client_refreshes_once_on_a_401() {
    let sb = sandbox(BrightpearlSandboxConfig {
        oauth_refresh_token: Some("refresh-1".into()),
        ..seeded(3, FAST)
    })
    .await;
    let d = BrightpearlSandboxConfig::default();
    let oauth = |refresh: &str| BrightpearlConfig {
        auth: AuthConfig {
            kind: AuthKind::Oauth,
            app_ref: d.app_ref.clone(),
            dev_ref: d.dev_ref.clone(),
            access_token: Secret::literal("expired"),
            refresh_token: Secret::literal(refresh),
            token_url: Some(format!("{}/__sandbox/brightpearl/oauth/token/sandbox", sb.base_url)),
            ..Default::default()
        },
        ..client_config(&sb, FAST)
    };
    let bp = BrightpearlClient::new(oauth("refresh-1")).expect("client");
    assert_eq!(bp.warehouses().await.expect("refreshed").len(), 2);
    assert_eq!(sb.brightpearl.counters().unauthorized, 1);
    sb.brightpearl.expire_access_tokens();
    bp.clear_cache();
    assert_eq!(bp.warehouses().await.expect("refreshed again").len(), 2);
    assert_eq!(sb.brightpearl.counters().unauthorized, 2);

    let bad = BrightpearlClient::new(oauth("wrong")).expect("client");
    assert!(matches!(bad.warehouses().await, Err(Error::Unauthorized { .. })));
    assert_eq!(sb.brightpearl.counters().unauthorized, 3);
}

/// A one-route HTTP listener that records request bodies.
async fn webhook_listener() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/secret-token", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(body.to_string());
                            let _ = sock
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> WebhookEvent {
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a webhook in time")
        .expect("open");
    serde_json::from_str(&body).expect("the conventional body")
}

#[tokio::test]
async fn an_order_flows_through_contact_order_reservation_payment_and_shipment() {
    let sb = sandbox(seeded(12, FAST)).await;
    let bp = client(&sb, FAST);
    let (hook_url, mut hooks) = webhook_listener().await;
    for event in ["goods-out-note.modified.shipped", "product.modified.on-hand-modified"] {
        bp.subscribe_webhook(&WebhookSubscription::json_post(event, &hook_url)).await.expect("subscribe");
    }
    assert_eq!(bp.list_webhooks().await.expect("list").len(), 2);

    // SKU map: two SKUs, one unknown.
    let skus = vec!["SKU-00001".to_string(), "SKU-00002".to_string(), "NOPE".to_string()];
    let map = bp.products_by_sku(&skus).await.expect("sku map");
    assert_eq!(map.len(), 2);
    let (p1, p2) = (map["SKU-00001"], map["SKU-00002"]);
    let search = "GET /product-service/product-search";
    assert_eq!(sb.brightpearl.counters().endpoint(search), 3, "one SKU= search each, no catalogue load");
    bp.products_by_sku(&skus[..2]).await.expect("cached");
    assert_eq!(sb.brightpearl.counters().endpoint(search), 3);

    // Contacts: the email search is fuzzy; only the exact match counts.
    let address = bp
        .create_postal_address(&PostalAddress {
            address_line1: "1 High St".into(),
            postal_code: "AB1 2CD".into(),
            country_iso_code: Some("GBR".into()),
            ..Default::default()
        })
        .await
        .expect("address");
    let jo = bp
        .create_contact(&NewContact {
            first_name: "Jo".into(),
            last_name: "Ann".into(),
            email: Some("joann@example.test".into()),
            postal_address_id: Some(address),
            ..Default::default()
        })
        .await
        .expect("contact");
    assert_eq!(bp.find_contact_by_email("ann@example.test").await.expect("search"), None);
    let ann = bp
        .create_contact(&NewContact {
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            email: Some("ann@example.test".into()),
            postal_address_id: Some(address),
            ..Default::default()
        })
        .await
        .expect("contact");
    assert_ne!(ann, jo);
    assert_eq!(bp.find_contact_by_email("ANN@example.test").await.expect("search").map(|c| c.id), Some(ann));

    // Stock to reserve from.
    sb.brightpearl.set_stock(p1, 1, 10);
    sb.brightpearl.set_stock(p2, 1, 10);
    let event = next_event(&mut hooks).await;
    assert_eq!(event.full_event, "product.modified.on-hand-modified");
    next_event(&mut hooks).await;

    let order_id = create_order(
        &bp,
        &NewSalesOrder {
            customer_id: ann,
            external_ref: "bc-77".into(),
            reference: Some("#77".into()),
            channel_id: Some(3),
            currency_code: "GBP".into(),
            price_list_id: Some(1),
            warehouse_id: Some(1),
            delivery_address: Some(OrderAddress {
                address_line1: "1 High St".into(),
                postal_code: "AB1 2CD".into(),
                ..Default::default()
            }),
            rows: vec![
                NewOrderRow {
                    product_id: p1,
                    quantity: 3,
                    net: "30.0".parse().unwrap(),
                    tax: "6.0".parse().unwrap(),
                    external_ref: Some("li-1".into()),
                    tax_code: Some("T20".into()),
                    ..Default::default()
                },
                NewOrderRow {
                    product_id: p2,
                    quantity: 1,
                    net: "10.0".parse().unwrap(),
                    tax: "2.0".parse().unwrap(),
                    external_ref: Some("li-2".into()),
                    tax_code: Some("T20".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    )
    .await;
    let order = bp.sales_orders(&[order_id]).await.expect("GET").remove(0);
    assert_eq!(order.channel_id, Some(3));
    let rows: Vec<ReservationRow> = order
        .rows
        .iter()
        .map(|r| ReservationRow {
            row_id: r.id,
            product_id: r.product_id.expect("product"),
            quantity: r.quantity,
        })
        .collect();
    assert_eq!(rows.len(), 2);

    let request = ReservationRequest { order_id, warehouse_id: 1, rows: rows.clone() };
    let reserved = bp.reserve_orders(std::slice::from_ref(&request)).await.remove(0);
    assert!(reserved.is_applied(), "{reserved:?}");
    // A repeat (as after a lost answer) is refused by Brightpearl; the GET shows the
    // reservation exists, so it counts as applied, and nothing is reserved twice.
    let repeat = bp.reserve_orders(std::slice::from_ref(&request)).await.remove(0);
    assert!(repeat.is_applied(), "{repeat:?}");
    let reservation = bp.reservation(order_id).await.expect("GET").expect("a reservation");
    assert_eq!(reservation.rows, rows);
    let availability = bp.availability(&[p1]).await.expect("availability");
    assert_eq!(availability[&p1].warehouses[&1].on_hand, 7);
    assert_eq!(availability[&p1].warehouses[&1].allocated, 3);
    let event = next_event(&mut hooks).await;
    assert_eq!(event.ids().expect("id set"), {
        let mut v = vec![p1, p2];
        v.sort();
        v
    });

    let payment = NewCustomerPayment {
        order_id,
        transaction_ref: "bc:77:paid".into(),
        payment_type: PaymentType::Receipt,
        payment_method_code: "SHOPIFY".into(),
        currency_code: "GBP".into(),
        amount: "48.0".parse().unwrap(),
        payment_date: chrono::Utc::now(),
        journal_ref: Some("txn-1".into()),
    };
    let paid = bp.create_customer_payments(std::slice::from_ref(&payment)).await.remove(0);
    let WriteOutcome::Applied(payment_id) = paid else { panic!("payment: {paid:?}") };
    // The same transactionRef again is refused by Brightpearl and resolves to the same payment.
    let again = bp.create_customer_payments(std::slice::from_ref(&payment)).await.remove(0);
    assert!(matches!(again, WriteOutcome::Applied(id) if id == payment_id), "{again:?}");
    assert_eq!(bp.find_customer_payment(order_id, "bc:77:paid").await.expect("search"), Some(payment_id));
    assert_eq!(bp.add_order_note(order_id, "paid").await.map(|_| ()).ok(), Some(()));

    let note_id = sb.brightpearl.ship_goods_out(order_id, "TRACK123", "DHL").expect("ship");
    let event = next_event(&mut hooks).await;
    assert_eq!(event.full_event, "goods-out-note.modified.shipped");
    assert_eq!(event.ids().expect("id set"), vec![note_id]);
    let note = bp.goods_out_notes(&[note_id]).await.expect("GON").remove(0);
    assert!(note.shipped);
    assert_eq!(
        (note.order_id, note.tracking_reference.as_deref(), note.carrier.as_deref()),
        (order_id, Some("TRACK123"), Some("DHL"))
    );
    assert_eq!(note.rows.len(), 2);

    // Cancelling a shipped order is refused with Brightpearl's code kept.
    let statuses = bp.order_statuses().await.expect("statuses");
    let cancelled = statuses
        .iter()
        .find(|s| s.order_type_code == "SO" && s.name.starts_with("Cancel"))
        .expect("a cancelled status");
    match bp.update_order_status(order_id, cancelled.id, Some("customer cancelled")).await {
        Err(Error::Rejected { code, .. }) => assert!(code.starts_with("ORDC-")),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let state = sb.brightpearl.state();
    assert_eq!(state.payments.len(), 1);
    assert_eq!(state.reservations.len(), 1);
}

#[tokio::test]
async fn purchase_orders_are_batched_received_and_no_longer_open() {
    let sb = sandbox(seeded(30, FAST)).await;
    let bp = client(&sb, FAST);
    let (hook_url, mut hooks) = webhook_listener().await;
    bp.subscribe_webhook(&WebhookSubscription::json_post("goods-in-note", &hook_url))
        .await
        .expect("subscribe");
    let supplier = sb
        .brightpearl
        .with_state(|s| s.contacts.values().find(|c| c.is_supplier).map(|c| c.id))
        .expect("a supplier");
    assert!(bp.open_purchase_orders(supplier).await.expect("search").is_empty());

    let ids = product_ids(&sb);
    let order = NewPurchaseOrder {
        supplier_id: supplier,
        warehouse_id: Some(2),
        currency_code: "GBP".into(),
        reference: Some("reorder-1".into()),
        rows: ids[..23]
            .iter()
            .map(|p| NewPurchaseOrderRow {
                product_id: *p,
                quantity: 5,
                net: "10.0".parse().unwrap(),
                tax: "2.0".parse().unwrap(),
                tax_code: "T20".into(),
            })
            .collect(),
        ..Default::default()
    };
    let created = bp.create_purchase_order(&order).await.expect("PO");
    assert_eq!(created.row_ids.len(), 23);
    assert_eq!(sb.brightpearl.counters().endpoint("POST /multi-message"), 3, "23 rows in messages of 10");
    assert_eq!(sb.brightpearl.counters().endpoint("POST /order-service/order"), 1);

    // Resume: add one more row to the same PO without repeating the others.
    let more = bp
        .add_purchase_order_rows(
            created.order_id,
            &[NewPurchaseOrderRow {
                product_id: ids[23],
                quantity: 1,
                net: "1.0".parse().unwrap(),
                tax: "0.2".parse().unwrap(),
                tax_code: "T20".into(),
            }],
        )
        .await
        .expect("resume");
    assert_eq!(more.len(), 1);
    let po = bp.purchase_orders(&[created.order_id]).await.expect("GET").remove(0);
    assert_eq!(po.rows.len(), 24);
    assert_eq!(po.supplier_id, Some(supplier));
    let open = bp.open_purchase_orders(supplier).await.expect("search");
    assert_eq!(open.iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![created.order_id]);

    let before = bp.availability(&[ids[0]]).await.expect("availability")[&ids[0]]
        .warehouses
        .get(&2)
        .map_or(0, |w| w.on_hand);
    let note_id = sb.brightpearl.receive_purchase_order(created.order_id, None).expect("receive");
    let event = next_event(&mut hooks).await;
    assert_eq!(event.full_event, "goods-in-note.created");
    assert_eq!(event.ids().expect("ids"), vec![note_id]);
    let note = bp.goods_in_notes(&[note_id]).await.expect("GIN").remove(0);
    assert_eq!((note.purchase_order_id, note.rows.len(), note.warehouse_id), (created.order_id, 24, Some(2)));
    let after = bp.availability(&[ids[0]]).await.expect("availability")[&ids[0]].warehouses[&2].on_hand;
    assert_eq!(after, before + 5);
    assert!(bp.open_purchase_orders(supplier).await.expect("search").is_empty());
}

#[tokio::test]
async fn multi_message_gives_each_write_its_own_outcome() {
    let sb = sandbox(seeded(3, FAST)).await;
    let bp = client(&sb, FAST);
    let customer = sb.brightpearl.with_state(|s| *s.contacts.keys().next().expect("contact"));
    let product = product_ids(&sb)[0];
    sb.brightpearl.set_stock(product, 1, 10);
    let mut orders = Vec::new();
    for i in 0..2 {
        let order = NewSalesOrder {
            customer_id: customer,
            external_ref: format!("x-{i}"),
            currency_code: "GBP".into(),
            rows: vec![NewOrderRow {
                product_id: product,
                quantity: 1,
                net: "1.0".parse().unwrap(),
                tax: "0.2".parse().unwrap(),
                tax_code: Some("T20".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        orders.push(create_order(&bp, &order).await);
    }
    let rows = |id: u64| -> Vec<ReservationRow> {
        sb.brightpearl.with_state(|s| {
            s.orders[&id]
                .rows
                .iter()
                .map(|r| ReservationRow { row_id: r.id, product_id: product, quantity: 1 })
                .collect()
        })
    };
    let requests = vec![
        ReservationRequest { order_id: orders[0], warehouse_id: 1, rows: rows(orders[0]) },
        // No such order: refused with an error envelope, and only this one.
        ReservationRequest { order_id: 999_999, warehouse_id: 1, rows: rows(orders[0]) },
        ReservationRequest { order_id: orders[1], warehouse_id: 1, rows: rows(orders[1]) },
    ];
    let before = sb.brightpearl.counters().endpoint("POST /multi-message");
    let outcomes = bp.reserve_orders(&requests).await;
    assert!(outcomes[0].is_applied(), "{:?}", outcomes[0]);
    assert!(outcomes[1].is_refused(), "{:?}", outcomes[1]);
    assert!(outcomes[2].is_applied(), "{:?}", outcomes[2]);
    assert_eq!(sb.brightpearl.counters().endpoint("POST /multi-message"), before + 1);
}

#[tokio::test]
async fn the_sku_map_is_paged_in_once_then_refreshed_incrementally() {
    let sb = sandbox(seeded(1201, (1000, Duration::from_secs(1)))).await;
    let bp = client(&sb, (1000, Duration::from_secs(1)));
    let skus: Vec<String> = (1..=10).map(|i| format!("SKU-{i:05}")).collect();
    let map = bp.products_by_sku(&skus).await.expect("map");
    assert_eq!(map.len(), 10);
    let search = "GET /product-service/product-search";
    assert_eq!(sb.brightpearl.counters().endpoint(search), 3, "1201 rows in pages of 500");
    bp.products_by_sku(&skus).await.expect("cached");
    assert_eq!(sb.brightpearl.counters().endpoint(search), 3, "served from the cache");
    let with_unknown: Vec<String> = skus.iter().cloned().chain(["SKU-99999".to_string()]).collect();
    assert_eq!(bp.products_by_sku(&with_unknown).await.expect("map").len(), 10);
    assert_eq!(sb.brightpearl.counters().endpoint(search), 4, "one incremental sweep");
    let warehouses = bp.warehouses().await.expect("warehouses");
    bp.warehouses().await.expect("cached");
    assert_eq!(warehouses.len(), 2);
    assert_eq!(sb.brightpearl.counters().endpoint("GET /warehouse-service/warehouse"), 1);
    let ids: Vec<u64> = map.values().copied().collect();
    let defaults = bp.warehouse_defaults(2, &ids).await.expect("defaults");
    assert_eq!(defaults.len(), 10);
    assert!(defaults.iter().all(|d| d.reorder_level.is_some() && d.reorder_quantity.is_some()));
    let products = bp.products(&ids).await.expect("products");
    assert!(products.iter().all(|p| p.sku.is_some() && !p.supplier_ids.is_empty()));
}

#[tokio::test]
async fn background_work_yields_the_reserve_to_order_writes() {
    let sb = sandbox(seeded(5, (20, Duration::from_secs(1)))).await;
    let mut config = client_config(&sb, (20, Duration::from_secs(1)));
    config.background_reserve = 0.25;
    let orders = BrightpearlClient::new(config).expect("client");
    let background = orders.with_priority(Priority::Background);
    let id = product_ids(&sb)[0];
    for _ in 0..15 {
        background.availability(&[id]).await.expect("background read");
    }
    let hits: Arc<std::sync::Mutex<HashMap<&str, Duration>>> = Arc::default();
    let t0 = Instant::now();
    let (h1, h2) = (hits.clone(), hits.clone());
    let bg = tokio::spawn(async move {
        background.availability(&[id]).await.expect("background read");
        h1.lock().expect("lock").insert("background", t0.elapsed());
    });
    let fg = tokio::spawn(async move {
        orders.availability(&[id]).await.expect("order read");
        h2.lock().expect("lock").insert("orders", t0.elapsed());
    });
    let _ = tokio::join!(bg, fg);
    let hits = hits.lock().expect("lock");
    assert!(hits["orders"] < Duration::from_millis(300), "{hits:?}");
    assert!(hits["background"] > Duration::from_millis(500), "{hits:?}");
    assert!(sb.brightpearl.counters().max_in_window <= 20);
}

#[tokio::test]
async fn the_control_api_mirrors_the_rust_handle() {
    let sb = sandbox(BrightpearlSandboxConfig::default()).await;
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}/__sandbox/brightpearl/{path}", sb.base_url);
    let post = |path: &str, body: serde_json::Value| http.post(control(path)).json(&body).send();
    assert!(
        post("seed", serde_json::json!({"products": 4, "warehouses": 1, "suppliers": 1, "seed": 5}))
            .await
            .expect("seed")
            .status()
            .is_success()
    );
    assert!(
        post("stock", serde_json::json!({"product_id": 1001, "warehouse_id": 1, "on_hand": 9}))
            .await
            .expect("stock")
            .status()
            .is_success()
    );
    assert!(
        post("rate-limit", serde_json::json!({"requests": 50, "window_ms": 1000}))
            .await
            .expect("limit")
            .status()
            .is_success()
    );
    let fault = serde_json::json!({"endpoint": "GET /warehouse-service/product-availability/{ids}", "nth": 1, "fault": {"kind": "server_error"}});
    assert!(post("faults", fault).await.expect("faults").status().is_success());

    let bp = client(&sb, FAST);
    let availability = bp.availability(&[1001]).await.expect("retried past the 500");
    assert_eq!(availability[&1001].warehouses[&1].on_hand, 9);
    assert_eq!(bp.stats().retried, 1);

    let counters: serde_json::Value =
        http.get(control("counters")).send().await.expect("counters").json().await.expect("json");
    assert_eq!(counters["per_endpoint"][AVAILABILITY], 2);
    let state: serde_json::Value =
        http.get(control("state")).send().await.expect("state").json().await.expect("json");
    assert_eq!(state["products"].as_object().map(|p| p.len()), Some(4));
    assert_eq!(state["stock"]["1001"]["1"]["on_hand"], 9);
    let missing = post("ship", serde_json::json!({"order_id": 1, "tracking": "T", "carrier": "UPS"}))
        .await
        .expect("ship");
    assert_eq!(missing.status().as_u16(), 400);
}

#[tokio::test]
async fn webhooks_without_id_sets_come_one_call_per_resource() {
    let sb = sandbox(seeded(3, FAST)).await;
    let bp = client(&sb, FAST);
    let (hook_url, mut hooks) = webhook_listener().await;
    let mut subscription = WebhookSubscription::json_post("product.modified.on-hand-modified", &hook_url);
    subscription.id_set_accepted = false;
    bp.subscribe_webhook(&subscription).await.expect("subscribe");
    let ids = product_ids(&sb);
    let customer = sb.brightpearl.with_state(|s| *s.contacts.keys().next().expect("contact"));
    for id in &ids {
        sb.brightpearl.set_stock(*id, 1, 5);
        next_event(&mut hooks).await;
    }
    let order_id = create_order(
        &bp,
        &NewSalesOrder {
            customer_id: customer,
            external_ref: "w-1".into(),
            currency_code: "GBP".into(),
            rows: ids
                .iter()
                .map(|p| NewOrderRow {
                    product_id: *p,
                    quantity: 1,
                    tax_code: Some("T20".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    )
    .await;
    let rows: Vec<ReservationRow> = bp.sales_orders(&[order_id]).await.expect("GET")[0]
        .rows
        .iter()
        .map(|r| ReservationRow {
            row_id: r.id,
            product_id: r.product_id.unwrap_or_default(),
            quantity: r.quantity,
        })
        .collect();
    let request = ReservationRequest { order_id, warehouse_id: 1, rows };
    assert!(bp.reserve_orders(&[request]).await.remove(0).is_applied());
    let mut seen = Vec::new();
    for _ in &ids {
        let event = next_event(&mut hooks).await;
        seen.extend(event.ids().expect("single id"));
    }
    seen.sort();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn two_functions_share_rotating_oauth_tokens_through_the_state_record() {
    use pearlsync::state::{EmbeddedStore, StateStore};
    let sb =
        sandbox(BrightpearlSandboxConfig { oauth_refresh_token: Some("grant-1".into()), ..seeded(3, FAST) })
            .await;
    let d = BrightpearlSandboxConfig::default();
    // Both functions start from the same first grant (the SSM copy).
    let oauth = BrightpearlConfig {
        auth: AuthConfig {
            kind: AuthKind::Oauth,
            app_ref: d.app_ref.clone(),
            dev_ref: d.dev_ref.clone(),
            access_token: Secret::literal("expired"),
            refresh_token: Secret::literal("grant-1"),
            token_url: Some(format!("{}/__sandbox/brightpearl/oauth/token/sandbox", sb.base_url)),
            ..Default::default()
        },
        ..client_config(&sb, FAST)
    };
    let state: Arc<dyn StateStore> = Arc::new(EmbeddedStore::in_memory().expect("store"));
    let poll = BrightpearlClient::with_token_store(oauth.clone(), Some(Arc::clone(&state))).expect("client");
    let writer =
        BrightpearlClient::with_token_store(oauth.clone(), Some(Arc::clone(&state))).expect("client");
    // The poll refreshes first; grant-1 is spent.
    assert_eq!(poll.warehouses().await.expect("refreshed").len(), 2);
    // The writer never presents grant-1: it reads the pair the poll stored.
    assert_eq!(writer.warehouses().await.expect("shared tokens").len(), 2);
    // Both expire; one refresh between them, with the rotated token.
    sb.brightpearl.expire_access_tokens();
    poll.clear_cache();
    writer.clear_cache();
    assert_eq!(writer.warehouses().await.expect("refreshed with the rotated token").len(), 2);
    assert_eq!(poll.warehouses().await.expect("adopts the writer's pair").len(), 2);

    // Without the shared record, a second function presents the spent grant and is refused.
    let alone = BrightpearlClient::new(oauth).expect("client");
    match alone.warehouses().await {
        Err(Error::Unauthorized { message, .. }) => assert!(message.contains("invalid_grant"), "{message}"),
        other => panic!("a spent refresh token must be refused: {other:?}"),
    }
}
