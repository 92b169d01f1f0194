//! Contract tests (issue 13): the client reads Brightpearl's answers the way the recorded live
//! traffic shows them. Each answer comes from a fixture in `tests/fixtures/brightpearl/` that
//! names its recording; a small stub serves it over real HTTP, so the whole client path runs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pearlsync::Error;
use pearlsync::brightpearl::*;
use pearlsync::secret::Secret;
use pearlsync_tests::fixture;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One request the stub saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    auth: String,
    path: String,
    query: String,
    body: String,
}

type Answerer = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

#[derive(Clone)]
struct Stub {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answerer>,
}

async fn handle(
    State(stub): State<Stub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        auth: headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let n = {
        let mut all = stub.seen.lock().unwrap();
        all.push(seen.clone());
        all.len()
    };
    let (status, answer) = (stub.answer)(&seen, n);
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response();
    let h = response.headers_mut();
    h.insert("brightpearl-requests-remaining", "150".parse().unwrap());
    h.insert("brightpearl-next-throttle-period", "30000".parse().unwrap());
    h.insert("brightpearl-installed-integration-instance-id", "13".parse().unwrap());
    h.insert("ruid", "c0ffee00-0000-4000-8000-000000000001".parse().unwrap());
    response
}

/// Serves `answer` on 127.0.0.1; returns the base URL and what it saw.
async fn stub(
    answer: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Stub { seen: Arc::clone(&seen), answer: Arc::new(answer) };
    let app = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn config(base_url: &str) -> BrightpearlConfig {
    BrightpearlConfig {
        base_url: Some(base_url.to_string()),
        account: "acme".into(),
        auth: AuthConfig {
            app_ref: "acme_sync".into(),
            staff_token: Secret::literal("t"),
            ..Default::default()
        },
        installed_integration_instance_id: Some(13),
        backoff_base_ms: 1,
        backoff_cap_ms: 5,
        search_lag_wait_ms: 1,
        ..Default::default()
    }
}

fn answer_of(v: &Value) -> (u16, Value) {
    (v["status"].as_u64().unwrap() as u16, v["body"].clone())
}

#[tokio::test]
async fn a_401_message_is_read_from_the_response_string() {
    let expired = fixture("brightpearl/401_expired.json");
    let (url, _) = stub(move |_, _| answer_of(&expired)).await;
    let bp = BrightpearlClient::new(config(&url)).expect("client");
    match bp.warehouses().await {
        Err(Error::Unauthorized { message, .. }) => assert_eq!(message, "Authorization token expired"),
        other => panic!("expected a 401 with its message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_search_filter_is_a_permanent_error_and_is_not_retried() {
    let bad = fixture("brightpearl/search_bad_filter.json");
    let (url, seen) = stub(move |_, _| answer_of(&bad)).await;
    let bp = BrightpearlClient::new(config(&url)).expect("client");
    match bp.find_contact_by_email("ann@example.test").await {
        Err(e @ Error::Rejected { status: 500, .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("CMNC-018") && e.to_string().contains("primaryEmail"), "{e}");
        }
        other => panic!("expected CMNC-018 as a rejection, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "an HTTP 500 CMNC-018 is not an outage: no retry");
}

#[tokio::test]
async fn searches_page_on_more_pages_available_not_on_the_counts() {
    let pages = fixture("brightpearl/product_search_pages.json");
    let (url, seen) = stub(move |_, n| answer_of(&pages["pages"][(n - 1).min(1)])).await;
    let bp = BrightpearlClient::new(config(&url)).expect("client");
    // resultsAvailable says 2, but morePagesAvailable says there is more: three products.
    assert_eq!(bp.catalogue_product_ids().await.expect("catalogue"), vec![1001, 1002, 1003]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].query.contains("firstResult=3"), "{:?}", seen[1]);
}

#[tokio::test]
async fn the_oauth_token_answer_gives_the_access_token_and_the_instance_for_writes() {
    let token = fixture("brightpearl/oauth_refresh.json");
    let expired = fixture("brightpearl/401_expired.json");
    let (url, seen) = stub(move |s, _| {
        if s.path.starts_with("/token") {
            answer_of(&token)
        } else if s.auth != "Bearer access-2" {
            answer_of(&expired)
        } else if s.method == "POST" {
            (200, json!({"response": 77}))
        } else {
            (200, json!({"response": []}))
        }
    })
    .await;
    let mut c = config(&url);
    c.installed_integration_instance_id = None;
    c.auth = AuthConfig {
        kind: AuthKind::Oauth,
        app_ref: "acme_sync".into(),
        dev_ref: "dev".into(),
        access_token: Secret::literal("expired"),
        refresh_token: Secret::literal("refresh-1"),
        token_url: Some(format!("{url}/token/acme")),
        ..Default::default()
    };
    let bp = BrightpearlClient::new(c).expect("client");
    let order =
        NewSalesOrder { external_ref: "main:2".into(), currency_code: "GBP".into(), ..Default::default() };
    // No instance configured and none learned yet: writes refuse, naming the key.
    let refused = bp.create_sales_orders(std::slice::from_ref(&order)).await.remove(0);
    assert!(
        matches!(&refused, WriteOutcome::NotApplied(Error::Config { variable, .. }) if variable.contains("installed_integration_instance_id")),
        "{refused:?}"
    );
    // The 401 makes the client refresh with the form body; the answer's tokens are used.
    bp.warehouses().await.expect("refreshed, then answered");
    let written = bp.create_sales_orders(std::slice::from_ref(&order)).await.remove(0);
    assert!(matches!(written, WriteOutcome::Applied(77)), "{written:?}");
    let seen = seen.lock().unwrap();
    let grant = seen.iter().find(|s| s.path.starts_with("/token")).expect("a refresh grant");
    assert!(
        grant.body.contains("grant_type=refresh_token") && grant.body.contains("refresh_token=refresh-1"),
        "{grant:?}"
    );
    let post = seen
        .iter()
        .rev()
        .find(|s| s.method == "POST" && s.path.ends_with("/sales-order"))
        .expect("order POST");
    let body: Value = serde_json::from_str(&post.body).expect("JSON");
    // `installation_instance_id` is a string in the recorded answer.
    assert_eq!(body["installedIntegrationInstanceId"], 13);
}

#[tokio::test]
async fn a_repeat_answered_without_an_id_is_resolved_by_the_external_ref_search() {
    let repeat = fixture("brightpearl/sales_order_repeat.json");
    let (url, seen) = stub(move |s, _| {
        if s.path.ends_with("/sales-order-search") {
            answer_of(&repeat["search"])
        } else {
            answer_of(&repeat)
        }
    })
    .await;
    let bp = BrightpearlClient::new(config(&url)).expect("client");
    let order = NewSalesOrder {
        customer_id: 9,
        external_ref: "main:1001".into(),
        currency_code: "GBP".into(),
        ..Default::default()
    };
    let outcome = bp.create_sales_orders(&[order]).await.remove(0);
    assert!(matches!(outcome, WriteOutcome::Applied(5501)), "{outcome:?}");
    let seen = seen.lock().unwrap();
    let post: Value = serde_json::from_str(&seen[0].body).expect("JSON body");
    assert_eq!(post["installedIntegrationInstanceId"], 13, "the instance id rides on every order POST");
    assert!(seen[1].query.contains("externalRef=main:1001"), "{:?}", seen[1]);
}
