//! The simulated Brightpearl is as strict as the real one (apis.md §8; issues 12–15): each test
//! drives the sandbox over real HTTP with plain reqwest (not the pearlsync client) and checks
//! the strict answer and the sandbox's own records.

use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::faults::{Fault, FaultRates};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

const INSTANCE: u64 = 42;
const SALES_ORDER: &str = "POST /order-service/sales-order";

struct Bp {
    sb: Sandbox,
    http: reqwest::Client,
}

/// One answer: status, headers, the raw body and the body as JSON (Null when not JSON).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error_code(&self) -> &str {
        self.json.pointer("/errors/0/code").and_then(Value::as_str).unwrap_or_default()
    }

    fn error_message(&self) -> &str {
        self.json.pointer("/errors/0/message").and_then(Value::as_str).unwrap_or_default()
    }

    fn id(&self) -> u64 {
        self.json["response"]
            .as_u64()
            .unwrap_or_else(|| panic!("expected an id, got {} {}", self.status, self.text))
    }

    /// Search rows as maps from column name to value.
    fn rows(&self) -> Vec<serde_json::Map<String, Value>> {
        let columns: Vec<String> = self.json["response"]["metaData"]["columns"]
            .as_array()
            .expect("search columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect();
        self.json["response"]["results"]
            .as_array()
            .expect("search results")
            .iter()
            .map(|row| columns.iter().cloned().zip(row.as_array().cloned().unwrap_or_default()).collect())
            .collect()
    }
}

async fn start(config: BrightpearlSandboxConfig) -> Bp {
    let sb = pearlsync_sandbox::start(SandboxConfig { brightpearl: config, ..Default::default() })
        .await
        .expect("sandbox starts");
    Bp { sb, http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client") }
}

fn seeded(products: u32) -> BrightpearlSandboxConfig {
    BrightpearlSandboxConfig {
        seed: Some(SeedSpec { products, warehouses: 2, suppliers: 2, seed: 5 }),
        ..Default::default()
    }
}

impl Bp {
    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.sb.brightpearl.api_prefix(), path.trim_start_matches('/'))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let d = BrightpearlSandboxConfig::default();
        let resp = req
            .header("brightpearl-app-ref", d.app_ref)
            .header("brightpearl-staff-token", d.staff_token)
            .send()
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply { status, headers, text, json })
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await.expect("GET answered")
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.try_post(path, body).await.expect("POST answered")
    }

    async fn try_post(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    async fn control(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/__sandbox/brightpearl/{path}", self.sb.base_url))
            .json(body)
            .send()
            .await
            .expect("control answered");
        assert!(resp.status().is_success(), "control {path}: {}", resp.status());
        resp.json().await.expect("control JSON")
    }

    fn customer(&self) -> u64 {
        self.sb.brightpearl.with_state(|s| *s.contacts.keys().next().expect("a seeded contact"))
    }

    fn product(&self) -> u64 {
        self.sb.brightpearl.with_state(|s| *s.products.keys().next().expect("a seeded product"))
    }

    fn orders_with_ref(&self, external_ref: &str) -> usize {
        self.sb.brightpearl.with_state(|s| {
            s.orders.values().filter(|o| o.external_ref.as_deref() == Some(external_ref)).count()
        })
    }

    /// A valid sales-order body: one product row, ISO-3 delivery country, 2-dp money.
    fn order_body(&self, external_ref: &str, instance: Option<u64>) -> Value {
        let mut body = json!({
            "customer": {"id": self.customer()},
            "ref": external_ref,
            "externalRef": external_ref,
            "currency": {"code": "GBP"},
            "delivery": {"address": {"addressLine1": "1 High St", "postalCode": "AB1 2CD", "countryIsoCode": "GBR"}},
            "rows": [{"productId": self.product(), "quantity": 2, "taxCode": "T20", "net": "20.00", "tax": "4.00"}],
        });
        if let Some(i) = instance {
            body["installedIntegrationInstanceId"] = json!(i);
        }
        body
    }

    async fn create_order(&self, external_ref: &str) -> u64 {
        self.post("order-service/sales-order", &self.order_body(external_ref, Some(INSTANCE))).await.id()
    }
}

fn payment(order_id: u64, transaction_ref: &str, payment_type: &str) -> Value {
    json!({
        "transactionRef": transaction_ref, "paymentMethodCode": "SHOPIFY", "paymentType": payment_type,
        "orderId": order_id, "currencyIsoCode": "GBP", "exchangeRate": "1", "amountPaid": "24.00",
        "paymentDate": "2026-12-01T10:00:00Z",
    })
}

fn multi(messages: Vec<Value>) -> Value {
    json!({"processingMode": "SEQUENTIAL", "onFail": "CONTINUE", "messages": messages})
}

fn message(label: &str, uri: &str, body: Value) -> Value {
    json!({"label": label, "uri": uri, "httpMethod": "POST", "body": body})
}

// 1. Dedup only when proven.
#[tokio::test]
async fn sales_orders_dedup_only_with_external_ref_and_instance_id() {
    let bp = start(seeded(5)).await;
    let first = bp.post("order-service/sales-order", &bp.order_body("shop:1", Some(INSTANCE))).await;
    let first_id = first.id();

    // Default: 200 "no changes", and no id in the body.
    let repeat = bp.post("order-service/sales-order", &bp.order_body("shop:1", Some(INSTANCE))).await;
    assert_eq!(repeat.status, StatusCode::OK);
    let text = repeat.json["response"].as_str().expect("a message string, not an id");
    assert!(text.contains("no changes will be made"), "{text}");
    assert!(repeat.json["response"].as_u64().is_none());
    assert_eq!(bp.orders_with_ref("shop:1"), 1);

    // The switch: the original id, or an empty body.
    let s = bp.control("settings", &json!({"duplicate_post_answer": "original_id"})).await;
    assert_eq!(s["duplicate_post_answer"], "original_id");
    let repeat = bp.post("order-service/sales-order", &bp.order_body("shop:1", Some(INSTANCE))).await;
    assert_eq!(repeat.id(), first_id);
    bp.control("settings", &json!({"duplicate_post_answer": "empty"})).await;
    let repeat = bp.post("order-service/sales-order", &bp.order_body("shop:1", Some(INSTANCE))).await;
    assert_eq!((repeat.status, repeat.text.as_str()), (StatusCode::OK, ""));
    bp.control("settings", &json!({"duplicate_post_answer": "no_id"})).await;

    // Another instance id is another key: a new order.
    bp.post("order-service/sales-order", &bp.order_body("shop:1", Some(INSTANCE + 1))).await.id();
    assert_eq!(bp.orders_with_ref("shop:1"), 2);

    // Without an instance id there is no dedup at all.
    let a = bp.post("order-service/sales-order", &bp.order_body("shop:2", None)).await.id();
    let b = bp.post("order-service/sales-order", &bp.order_body("shop:2", None)).await.id();
    assert_ne!(a, b);
    assert_eq!(bp.orders_with_ref("shop:2"), 2);

    // Inside a multi-message the repeat's per-message body follows the same rule.
    let reply = bp
        .post(
            "multi-message",
            &multi(vec![
                message("again", "/order-service/sales-order", bp.order_body("shop:1", Some(INSTANCE))),
                message("fresh", "/order-service/sales-order", bp.order_body("shop:3", Some(INSTANCE))),
            ]),
        )
        .await;
    let processed = reply.json["response"]["processedMessages"].as_array().expect("processed");
    assert_eq!(processed[0]["statusCode"], 200);
    assert!(processed[0]["body"]["response"].is_string(), "{}", processed[0]);
    assert!(processed[1]["body"]["response"].is_u64());
    assert_eq!(bp.orders_with_ref("shop:1"), 2);
    assert_eq!(bp.orders_with_ref("shop:3"), 1);
}

// 2. Reservations: one per order; the second is a generic 400; GET returns the existing one.
#[tokio::test]
async fn a_second_reservation_is_a_generic_400_and_get_returns_the_first() {
    let bp = start(seeded(5)).await;
    let product = bp.product();
    bp.sb.brightpearl.set_stock(product, 1, 10);
    let order = bp.create_order("shop:r1").await;
    let got = bp.get(&format!("order-service/sales-order/{order}")).await;
    let row = got.json["response"][0]["rows"][0]["id"].as_u64().expect("row id");

    let none = bp.get(&format!("warehouse-service/order/{order}/reservation")).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    let body = json!({"products": [{"productId": product, "salesOrderRowId": row, "quantity": 2}]});
    let path = format!("warehouse-service/order/{order}/reservation/warehouse/1");
    assert_eq!(bp.post(&path, &body).await.status, StatusCode::OK);
    let again = bp.post(&path, &body).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error_code(), "CMNC-400");

    let existing = bp.get(&format!("warehouse-service/order/{order}/reservation")).await;
    assert_eq!(existing.status, StatusCode::OK);
    let r = &existing.json["response"][0];
    assert_eq!(r["orderId"], order);
    assert_eq!(r["warehouseId"], 1);
    assert_eq!(r["orderRows"][row.to_string()]["productId"], product);
    assert_eq!(r["orderRows"][row.to_string()]["quantity"], 2);
    let stock = bp.sb.brightpearl.with_state(|s| s.stock[&product][&1]);
    assert_eq!((stock.on_hand, stock.allocated), (8, 2), "reserved once");
}

// 3. Faults after the write commit first; faults before it commit nothing.
#[tokio::test]
async fn faults_after_the_write_commit_and_faults_before_it_do_not() {
    let bp = start(seeded(5)).await;
    let sbp = &bp.sb.brightpearl;

    // 5xx after the write: committed, then a 504 gateway page that is not JSON.
    sbp.script_endpoint(SALES_ORDER, [Some(Fault::ServerErrorAfterWrite { status: 504 })]);
    let r = bp.post("order-service/sales-order", &bp.order_body("shop:f1", Some(INSTANCE))).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert!(serde_json::from_str::<Value>(&r.text).is_err(), "not JSON: {}", r.text);
    assert!(r.header("brightpearl-requests-remaining").is_none(), "an edge page has no API headers");
    assert_eq!(bp.orders_with_ref("shop:f1"), 1);

    // Drop after the write: committed, no answer.
    sbp.script_endpoint(SALES_ORDER, [Some(Fault::DropAfterWrite)]);
    let dropped = bp.try_post("order-service/sales-order", &bp.order_body("shop:f2", Some(INSTANCE))).await;
    assert!(dropped.is_err(), "the connection is dropped");
    assert_eq!(bp.orders_with_ref("shop:f2"), 1);

    // Before the write: throttle, 500, drop and outage commit nothing.
    for fault in [Fault::Throttle, Fault::ServerError, Fault::Drop, Fault::Outage503] {
        sbp.script_endpoint(SALES_ORDER, [Some(fault)]);
        let r = bp.try_post("order-service/sales-order", &bp.order_body("shop:f3", Some(INSTANCE))).await;
        match fault {
            Fault::Throttle => {
                let r = r.expect("a throttle answer");
                assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(r.error_message().contains("You have sent too many requests"), "{}", r.text);
                assert_eq!(r.header("brightpearl-requests-remaining"), Some("0"));
                assert!(
                    r.header("brightpearl-next-throttle-period").is_some_and(|p| p.parse::<u64>().is_ok())
                );
            }
            Fault::Outage503 => {
                let r = r.expect("an outage page");
                assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(!r.text.to_ascii_lowercase().contains("too many requests"), "{}", r.text);
                assert!(serde_json::from_str::<Value>(&r.text).is_err());
                assert!(r.header("brightpearl-requests-remaining").is_none());
            }
            Fault::ServerError => assert_eq!(r.expect("a 500").status, StatusCode::INTERNAL_SERVER_ERROR),
            _ => assert!(r.is_err()),
        }
        assert_eq!(bp.orders_with_ref("shop:f3"), 0, "{fault:?} must not commit");
    }

    // Shape drift on a multi-message: committed, then a 207 whose entries do not parse.
    let order = bp.create_order("shop:f4").await;
    sbp.script_endpoint("POST /multi-message", [Some(Fault::ShapeDrift)]);
    let r = bp
        .post(
            "multi-message",
            &multi(vec![
                message("p1", "/accounting-service/customer-payment", payment(order, "t-1", "RECEIPT")),
                message("p2", "/accounting-service/customer-payment", payment(order, "t-2", "RECEIPT")),
            ]),
        )
        .await;
    assert_eq!(r.status.as_u16(), 207);
    let entries = r.json["response"]["processedMessages"].as_array().expect("entries");
    assert!(entries.iter().all(|e| !e["statusCode"].is_u64()), "{}", r.text);
    assert!(entries.iter().any(|e| e.get("body").is_none()));
    assert_eq!(sbp.payments_for(order).len(), 2, "both payments committed");

    // After-write faults on a read are just the answer.
    sbp.script_endpoint(
        "GET /order-service/sales-order/{ids}",
        [Some(Fault::ServerErrorAfterWrite { status: 502 })],
    );
    assert_eq!(bp.get(&format!("order-service/sales-order/{order}")).await.status, StatusCode::BAD_GATEWAY);

    // The bench's --after-write-rate: every write commits and then fails.
    bp.control("faults", &json!({"rates": FaultRates::after_write(1.0)})).await;
    for n in 0..6 {
        let r = bp
            .try_post("order-service/sales-order", &bp.order_body(&format!("shop:aw{n}"), Some(INSTANCE)))
            .await;
        if let Ok(r) = &r {
            assert!([502, 504].contains(&r.status.as_u16()), "{n}: {}", r.status);
        }
        assert_eq!(bp.orders_with_ref(&format!("shop:aw{n}")), 1);
    }
    sbp.clear_faults();

    let f = sbp.counters().faults;
    assert_eq!((f.throttle, f.server_error, f.drop, f.outage_503, f.shape_drift), (1, 1, 1, 1, 1), "{f:?}");
    // Scripted: one 504 and one drop on writes, one 502 on a read; then six from the rate.
    assert_eq!(f.server_error_after_write + f.drop_after_write, 3 + 6, "{f:?}");
}

// 4. Search-index lag: a new sales order shows in the searches only after the lag.
#[tokio::test]
async fn new_sales_orders_reach_the_searches_after_the_lag() {
    let bp = start(seeded(5)).await;
    bp.control("settings", &json!({"search_lag_ms": 300})).await;
    assert_eq!(bp.sb.brightpearl.settings().search_lag_ms, 300);
    let id = bp.create_order("shop:lag").await;
    let q = format!("externalRef=shop:lag&installedIntegrationInstanceId={INSTANCE}");
    assert_eq!(bp.get(&format!("order-service/sales-order-search?{q}")).await.rows().len(), 0);
    assert_eq!(bp.get("order-service/order-search?externalRef=shop:lag").await.rows().len(), 0);
    // The order itself exists at once.
    assert_eq!(bp.get(&format!("order-service/sales-order/{id}")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rows = bp.get(&format!("order-service/sales-order-search?{q}")).await.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["salesOrderId"], id);
    assert_eq!(bp.get("order-service/order-search?externalRef=shop:lag").await.rows().len(), 1);
}

// 5. Every payment POST recorded; transactionRef + paymentMethodCode unique; searchable.
#[tokio::test]
async fn payments_are_unique_by_reference_recorded_and_searchable() {
    let bp = start(seeded(5)).await;
    let order = bp.create_order("shop:p").await;
    let first =
        bp.post("accounting-service/customer-payment", &payment(order, "shop:p:paid", "RECEIPT")).await;
    let payment_id = first.id();

    let repeat =
        bp.post("accounting-service/customer-payment", &payment(order, "shop:p:paid", "RECEIPT")).await;
    assert_eq!(repeat.status, StatusCode::BAD_REQUEST);
    assert!(repeat.error_message().to_ascii_lowercase().contains("duplicate"), "{}", repeat.text);

    // The same repeat inside a multi-message, and a new reference beside it.
    let reply = bp
        .post(
            "multi-message",
            &multi(vec![
                message(
                    "again",
                    "/accounting-service/customer-payment",
                    payment(order, "shop:p:paid", "RECEIPT"),
                ),
                message(
                    "other",
                    "/accounting-service/customer-payment",
                    payment(order, "shop:p:2", "CAPTURE"),
                ),
            ]),
        )
        .await;
    let processed = reply.json["response"]["processedMessages"].as_array().expect("processed");
    assert_eq!(processed[0]["statusCode"], 400);
    assert_eq!(processed[1]["statusCode"], 200);

    let bad_type =
        bp.post("accounting-service/customer-payment", &payment(order, "shop:p:3", "REFUND")).await;
    assert_eq!(bad_type.status, StatusCode::BAD_REQUEST);
    assert!(bad_type.error_message().contains("paymentType"));

    let state = bp.sb.brightpearl.state();
    let accepted: Vec<_> = state.payments.iter().filter(|p| p.order_id == order).collect();
    assert_eq!(accepted.len(), 2, "one per reference");
    assert_eq!(accepted[0].amount_paid, "24.00");
    assert_eq!(accepted[0].transaction_ref.as_deref(), Some("shop:p:paid"));
    assert_eq!(accepted[0].payment_type, "RECEIPT");
    let posts: Vec<_> = state.payment_posts.iter().filter(|p| p.order_id == Some(order)).collect();
    assert_eq!(posts.len(), 5, "every POST is kept");
    assert_eq!(posts.iter().filter(|p| p.status == 400).count(), 3);

    let by_order = bp.get(&format!("accounting-service/customer-payment-search?orderId={order}")).await;
    assert_eq!(by_order.json["response"]["metaData"]["morePagesAvailable"], false);
    assert_eq!(by_order.rows().len(), 2);
    let by_ref = bp.get("accounting-service/customer-payment-search?transactionRef=shop:p:paid").await.rows();
    assert_eq!(by_ref.len(), 1);
    assert_eq!(by_ref[0]["paymentId"], payment_id);
    assert_eq!(by_ref[0]["paymentMethodCode"], "SHOPIFY");
    assert_eq!(by_ref[0]["orderId"], order);
}

// 6. Sales credits: POST with parentId, GET, close, order-search type 3, a PAYMENT against it.
#[tokio::test]
async fn sales_credits_are_created_closed_searched_and_paid() {
    let bp = start(seeded(5)).await;
    let order = bp.create_order("shop:c").await;
    let mut credit_body = bp.order_body("shop:c:refund:1", Some(INSTANCE));
    credit_body["parentId"] = json!(order);

    let orphan = {
        let mut b = credit_body.clone();
        b["parentId"] = json!(999_999);
        bp.post("order-service/sales-credit/", &b).await
    };
    assert_eq!(orphan.status, StatusCode::BAD_REQUEST);

    let credit = bp.post("order-service/sales-credit/", &credit_body).await.id();
    let repeat = bp.post("order-service/sales-credit/", &credit_body).await;
    assert_eq!(repeat.status, StatusCode::OK);
    assert!(repeat.json["response"].is_string(), "no id on a repeat: {}", repeat.text);
    assert_eq!(bp.orders_with_ref("shop:c:refund:1"), 1);

    let got = bp.get(&format!("order-service/sales-credit/{credit}")).await;
    assert_eq!(got.json["response"][0]["parentId"], order);
    assert_eq!(bp.get(&format!("order-service/sales-credit/{order}")).await.status, StatusCode::NOT_FOUND);

    let credits = bp.get("order-service/order-search?orderTypeId=3").await.rows();
    assert_eq!(credits.iter().map(|r| r["orderId"].clone()).collect::<Vec<_>>(), vec![json!(credit)]);
    assert_eq!(credits[0]["parentOrderId"], order);
    let sales = bp.get("order-service/order-search?orderTypeId=1").await.rows();
    assert!(sales.iter().all(|r| r["orderId"] != credit));

    let close = bp
        .post(&format!("order-service/sales-credit/{credit}/close"), &json!({"taxDate": "2026-12-01"}))
        .await;
    assert_eq!(close.status, StatusCode::OK);
    assert_eq!(
        bp.post(&format!("order-service/sales-credit/{credit}/close"), &json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    let closed = bp.sb.brightpearl.with_state(|s| s.credits[&credit].clone());
    assert!(closed.closed);
    assert_eq!(closed.tax_date.as_deref(), Some("2026-12-01"));

    bp.post("accounting-service/customer-payment", &payment(credit, "shop:c:refund:1", "PAYMENT")).await.id();
    let paid = bp.sb.brightpearl.payments_for(credit);
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].payment_type, "PAYMENT");
}

/// Breaks one field of a valid sales-order body.
type BodyEdit = dyn Fn(&mut Value);

// 7. Documented-invalid input is refused with an envelope naming the field.
#[tokio::test]
async fn documented_invalid_input_is_refused_naming_the_field() {
    let bp = start(seeded(5)).await;
    let address = |country: &str| json!({"addressLine1": "1 High St", "postalCode": "AB1 2CD", "countryIsoCode": country});
    let gb = bp.post("contact-service/postal-address/", &address("GB")).await;
    assert_eq!(gb.status, StatusCode::BAD_REQUEST);
    assert!(gb.error_message().contains("countryIsoCode"), "{}", gb.text);
    bp.post("contact-service/postal-address/", &address("GBR")).await.id();

    let cases: Vec<(&str, Box<BodyEdit>)> = vec![
        (
            "countryIsoCode",
            Box::new(|b: &mut Value| b["delivery"]["address"]["countryIsoCode"] = json!("US")),
        ),
        (
            "taxCode",
            Box::new(|b: &mut Value| {
                if let Some(row) = b["rows"][0].as_object_mut() {
                    row.remove("taxCode");
                }
            }),
        ),
        ("net", Box::new(|b: &mut Value| b["rows"][0]["net"] = json!(12.34567))),
        ("tax", Box::new(|b: &mut Value| b["rows"][0]["tax"] = json!("2.00001"))),
        ("quantity", Box::new(|b: &mut Value| b["rows"][0]["quantity"] = json!(1.5))),
    ];
    for (field, break_it) in cases {
        let mut body = bp.order_body(&format!("shop:bad-{field}"), Some(INSTANCE));
        break_it(&mut body);
        let r = bp.post("order-service/sales-order", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text);
        assert!(r.error_message().contains(field), "{field}: {}", r.text);
        assert_eq!(bp.orders_with_ref(&format!("shop:bad-{field}")), 0);
    }
    // Four decimals, trailing zeros and a whole quantity written as 2.0 are fine.
    let mut body = bp.order_body("shop:good", Some(INSTANCE));
    body["rows"][0]["net"] = json!(12.3456);
    body["rows"][0]["tax"] = json!("2.470000");
    body["rows"][0]["quantity"] = json!(2.0);
    bp.post("order-service/sales-order", &body).await.id();
}

// 8a. One unknown id in an ID set fails the whole request.
#[tokio::test]
async fn one_unknown_id_fails_the_whole_id_set() {
    let bp = start(seeded(5)).await;
    let p = bp.product();
    assert_eq!(bp.get(&format!("product-service/product/{p},{}", p + 1)).await.status, StatusCode::OK);
    for path in [
        format!("product-service/product/{p},999999"),
        format!("warehouse-service/product-availability/{p},999999"),
    ] {
        let r = bp.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.json.get("errors").is_some());
    }
}

// 8b. A bad search filter is HTTP 500 CMNC-018.
#[tokio::test]
async fn bad_search_filters_are_500_cmnc_018() {
    let bp = start(seeded(5)).await;
    for q in [
        "order-service/order-search?orderStatusId=BAD%20PARAM",
        "order-service/order-search?noSuchColumn=1",
        "order-service/order-search?orderId=1-5",
        "product-service/product-search?productId=1001-1003",
        "accounting-service/customer-payment-search?orderId=abc",
        "order-service/order-search?updatedOn=yesterday/",
    ] {
        let r = bp.get(q).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{q}");
        assert_eq!(r.error_code(), "CMNC-018", "{q}");
    }
    for fine in
        ["order-service/order-search?orderTypeId=1", "order-service/order-search?updatedOn=2026-01-01/"]
    {
        assert_eq!(bp.get(fine).await.status, StatusCode::OK, "{fine}");
    }
}

// 8c. 401 bodies carry the message as a string in `response`; throttle headers on 401s too.
#[tokio::test]
async fn unauthorised_answers_carry_a_string_response() {
    let bp = start(seeded(2)).await;
    let r = bp
        .http
        .get(bp.url("product-service/product/1001"))
        .header("brightpearl-app-ref", "pearlsync-sandbox")
        .header("brightpearl-staff-token", "wrong")
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("brightpearl-requests-remaining").is_some());
    assert!(r.headers().get("brightpearl-next-throttle-period").is_some());
    let body: Value = r.json().await.expect("JSON");
    assert!(body["response"].as_str().is_some_and(|m| m.starts_with("Invalid instance token")), "{body}");
    assert!(body.get("errors").is_none());
}

// 8d. Every answer carries Ruid, Message-Type, both throttle headers and the instance id; searches
// page on morePagesAvailable with a default page of 500.
#[tokio::test]
async fn answers_carry_the_recorded_headers_and_searches_page() {
    let bp = start(BrightpearlSandboxConfig {
        installed_integration_instance_id: Some("77".into()),
        ..seeded(1201)
    })
    .await;
    let a = bp.get("product-service/product-search").await;
    let b = bp.get("product-service/product-search?firstResult=1001").await;
    for r in [&a, &b] {
        assert!(r.header("ruid").is_some_and(|v| v.len() == 36));
        assert_eq!(r.header("message-type"), Some("bulk-data-search"));
        assert!(r.header("brightpearl-requests-remaining").is_some());
        assert!(r.header("brightpearl-next-throttle-period").is_some());
        assert_eq!(r.header("brightpearl-installed-integration-instance-id"), Some("77"));
    }
    assert_ne!(a.header("ruid"), b.header("ruid"), "a fresh request id each time");
    assert_eq!(a.rows().len(), 500, "default page");
    assert_eq!(a.json["response"]["metaData"]["morePagesAvailable"], true);
    assert_eq!(b.rows().len(), 201);
    assert_eq!(b.json["response"]["metaData"]["morePagesAvailable"], false);
}

// 8e. OAuth refresh tokens rotate; the spent one is refused.
#[tokio::test]
async fn oauth_refresh_tokens_rotate_and_the_old_one_is_refused() {
    let bp = start(BrightpearlSandboxConfig {
        oauth_refresh_token: Some("refresh-0".into()),
        installed_integration_instance_id: Some("13".into()),
        ..seeded(2)
    })
    .await;
    let token_url = format!("{}/__sandbox/brightpearl/oauth/token/sandbox", bp.sb.base_url);
    let grant = |refresh: &str, client: &str| {
        bp.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=refresh_token&refresh_token={refresh}&client_id={client}"))
            .send()
    };
    let r = grant("refresh-0", "pearlsync-sandbox").await.expect("answered");
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.expect("JSON");
    for field in ["access_token", "refresh_token", "api_domain", "token_type", "expires_in"] {
        assert!(t.get(field).is_some(), "{field} in {t}");
    }
    assert_eq!(t["installation_instance_id"], "13", "a string");
    let next = t["refresh_token"].as_str().expect("a new refresh token").to_string();
    assert_ne!(next, "refresh-0");
    assert_eq!(bp.sb.brightpearl.current_refresh_token().as_deref(), Some(next.as_str()));

    let spent = grant("refresh-0", "pearlsync-sandbox").await.expect("answered");
    assert_eq!(spent.status(), StatusCode::BAD_REQUEST);
    assert_eq!(spent.json::<Value>().await.expect("JSON")["error"], "invalid_grant");
    let bad_client = grant(&next, "someone-else").await.expect("answered");
    assert_eq!(bad_client.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad_client.json::<Value>().await.expect("JSON")["error"], "invalid_client");

    // The access token works; once expired it is refused with the recorded message.
    let call = || {
        bp.http
            .get(bp.url("product-service/product/1001"))
            .header("brightpearl-app-ref", "pearlsync-sandbox")
            .header("brightpearl-dev-ref", "pearlsync-dev")
            .header("authorization", format!("Bearer {}", t["access_token"].as_str().unwrap_or_default()))
            .send()
    };
    assert_eq!(call().await.expect("answered").status(), StatusCode::OK);
    bp.sb.brightpearl.expire_access_tokens();
    let expired = call().await.expect("answered");
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(expired.json::<Value>().await.expect("JSON")["response"], "Authorization token expired");
}

// 9. Goods movements for every stock change, none for reservations.
#[tokio::test]
async fn goods_movements_record_stock_changes_but_not_reservations() {
    let bp = start(seeded(5)).await;
    let product = bp.product();
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let before = bp.sb.brightpearl.with_state(|s| s.stock[&product][&1].on_hand);
    bp.control("stock", &json!({"product_id": product, "warehouse_id": 1, "on_hand": before + 5})).await;

    let order = bp.create_order("shop:gm").await;
    let row =
        bp.get(&format!("order-service/sales-order/{order}")).await.json["response"][0]["rows"][0]["id"]
            .as_u64()
            .expect("row id");
    let reserve = json!({"products": [{"productId": product, "salesOrderRowId": row, "quantity": 2}]});
    bp.post(&format!("warehouse-service/order/{order}/reservation/warehouse/1"), &reserve).await;
    let after_reservation =
        bp.get(&format!("warehouse-service/goods-movement-search?updatedOn={since}/")).await;
    assert_eq!(after_reservation.rows().len(), 1, "a reservation is not a goods movement");

    bp.control("ship", &json!({"order_id": order, "tracking": "TRK1", "carrier": "DHL"})).await;

    let supplier = bp
        .sb
        .brightpearl
        .with_state(|s| *s.contacts.values().find(|c| c.is_supplier).map(|c| &c.id).expect("supplier"));
    let po = bp.post("order-service/order/", &json!({"orderTypeCode": "PO", "parties": {"supplier": {"contactId": supplier}}, "warehouseId": 1})).await.id();
    let po_row = json!({"productId": product, "quantity": {"magnitude": 4}, "rowValue": {"taxCode": "T20", "rowNet": {"value": 10.00}, "rowTax": {"value": 2.00}}});
    bp.post(&format!("order-service/order/{po}/row"), &po_row).await.id();
    bp.control("receive", &json!({"purchase_order_id": po})).await;

    let r = bp.get(&format!("warehouse-service/goods-movement-search?updatedOn={since}/")).await;
    let rows = r.rows();
    let moves: Vec<(Value, Value, Value, Value)> = rows
        .iter()
        .map(|m| {
            (
                m["productId"].clone(),
                m["warehouseId"].clone(),
                m["quantity"].clone(),
                m["goodsNoteTypeCode"].clone(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            (json!(product), json!(1), json!(5), json!("SC")),
            (json!(product), json!(1), json!(-2), json!("GO")),
            (json!(product), json!(1), json!(4), json!("GI")),
        ]
    );
    assert!(rows.iter().all(|m| m["updatedOn"].is_string()));
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let none = bp
        .get(&format!(
            "warehouse-service/goods-movement-search?updatedOn={}/",
            later.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
        .await;
    assert_eq!(none.rows().len(), 0);
}
