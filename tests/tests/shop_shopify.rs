//! Shopify as it really answers (issue 13 item 4, issue 16 item 6): every query under the
//! 1,000-point cap, fulfilment through paged fulfilment orders at their locations, bundle
//! parents and unstocked items skipped, spent idempotency keys replaced. Over real HTTP to the
//! sandbox, whose own cost calculator and records decide.

use pearlsync::channels::shopify::cost::{MAX_QUERY_COST, requested_cost};
use pearlsync::channels::shopify::queries::every_query_at_its_largest;
use pearlsync::channels::{Fulfilment, QuantityUpdate, SalesChannel, SkipReason, StoreConfig, build_channel};
use pearlsync::queue::ChannelKind;
use pearlsync::secret::Secret;
use pearlsync::state::EmbeddedStore;
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

async fn setup() -> (Sandbox, Arc<dyn SalesChannel>) {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let store = StoreConfig {
        name: "uk".into(),
        kind: ChannelKind::Shopify,
        base_url: sandbox.base_url.clone(),
        access_token: Secret::literal("shpat_test"),
        location_id: Some(sandbox.channels.config().shopify_location_id.to_string()),
        ..StoreConfig::default()
    };
    let channel = build_channel(&store, Arc::new(EmbeddedStore::in_memory().unwrap()));
    (sandbox, channel)
}

/// An order of `skus.len()` one-unit lines, line `i` held at `locations[i]`.
fn order_at(sandbox: &Sandbox, skus: &[String], locations: &[u64]) -> String {
    for sku in skus {
        sandbox.channels.seed_product(Channel::Shopify, sku, 100);
    }
    let lines = skus
        .iter()
        .map(|s| NewOrderLine { sku: Some(s.clone()), name: s.clone(), quantity: 1, price: 5.0 })
        .collect();
    let (id, _) = sandbox.channels.create_order(
        Channel::Shopify,
        NewOrder {
            email: Some("a@example.com".into()),
            first_name: "A".into(),
            last_name: "B".into(),
            currency: "GBP".into(),
            lines,
        },
    );
    assert!(sandbox.channels.assign_line_locations(Channel::Shopify, &id, locations));
    id
}

fn shipment_of(skus: &[String], tracking: &str) -> Fulfilment {
    Fulfilment {
        tracking_number: tracking.into(),
        carrier: "Royal Mail".into(),
        tracking_url: None,
        lines: skus.iter().map(|s| (s.clone(), 1)).collect(),
    }
}

#[tokio::test]
async fn a_60_line_order_over_3_fulfilment_orders_is_fulfilled_per_location_under_the_cost_cap() {
    let (sandbox, channel) = setup().await;
    let skus: Vec<String> = (1..=60).map(|i| format!("LINE-{i:02}")).collect();
    // 52 lines at location 1 (more than one page of line items), 4 each at 2 and 3.
    let locations: Vec<u64> = (0..60)
        .map(|i| {
            if i < 52 {
                1
            } else if i < 56 {
                2
            } else {
                3
            }
        })
        .collect();
    let id = order_at(&sandbox, &skus, &locations);

    channel.post_fulfilment(&id, &shipment_of(&skus, "RM-60")).await.unwrap();

    let recorded = sandbox.channels.fulfilments(Channel::Shopify, &id);
    // One fulfilmentCreate per location (one order at one location per call).
    let at: BTreeSet<Option<u64>> = recorded.iter().map(|f| f.location_id).collect();
    assert_eq!(at, BTreeSet::from([Some(1), Some(2), Some(3)]), "{recorded:?}");
    assert_eq!(recorded.len(), 3);
    let shipped: BTreeSet<String> =
        recorded.iter().flat_map(|f| f.lines.iter().map(|(s, _)| s.clone())).collect();
    assert_eq!(shipped.len(), 60, "every line shipped, including those past the first page");
    assert!(recorded.iter().all(|f| f.tracking_number == "RM-60"));
    let counters = sandbox.channels.counters(Channel::Shopify);
    assert_eq!(counters.queries_over_cost, 0);
    assert!(
        counters.max_query_cost_seen > 0 && counters.max_query_cost_seen <= 1000,
        "{}",
        counters.max_query_cost_seen
    );
    assert!(counters.count("graphql:fulfillmentOrder") >= 1, "the 52-line fulfilment order was paged");

    // A repeat posts nothing.
    channel.post_fulfilment(&id, &shipment_of(&skus, "RM-60")).await.unwrap();
    assert_eq!(sandbox.channels.fulfilments(Channel::Shopify, &id).len(), 3);
}

#[tokio::test]
async fn fulfilment_orders_past_the_first_page_are_found() {
    let (sandbox, channel) = setup().await;
    let skus: Vec<String> = (1..=7).map(|i| format!("FO-{i}")).collect();
    let locations: Vec<u64> = (1..=7).collect();
    let id = order_at(&sandbox, &skus, &locations);
    // Ship only the line of the seventh location: it is on the second page of fulfilment orders.
    channel.post_fulfilment(&id, &shipment_of(&skus[6..], "RM-7")).await.unwrap();
    let recorded = sandbox.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].location_id, Some(7));
    assert_eq!(recorded[0].lines, vec![("FO-7".to_string(), 1)]);
    assert_eq!(sandbox.channels.counters(Channel::Shopify).queries_over_cost, 0);
}

#[tokio::test]
async fn a_partly_posted_shipment_posts_only_the_rest_when_repeated() {
    let (sandbox, channel) = setup().await;
    let skus: Vec<String> = (1..=4).map(|i| format!("P-{i}")).collect();
    let id = order_at(&sandbox, &skus, &[1, 1, 2, 2]);
    // The first attempt got as far as location 1.
    channel.post_fulfilment(&id, &shipment_of(&skus[..2], "RM-P")).await.unwrap();
    channel.post_fulfilment(&id, &shipment_of(&skus, "RM-P")).await.unwrap();
    let recorded = sandbox.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(recorded[1].location_id, Some(2));
    assert_eq!(recorded[1].lines, vec![("P-3".to_string(), 1), ("P-4".to_string(), 1)]);
}

async fn graphql(sandbox: &Sandbox, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/admin/api/2026-04/graphql.json", sandbox.base_url))
        .header("X-Shopify-Access-Token", "t")
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sandbox_refuses_a_query_over_the_cap_and_reports_cost_like_shopify() {
    let (sandbox, _channel) = setup().await;
    let old = "query F($id: ID!) { order(id: $id) { id fulfillments(first: 50) { id trackingInfo { number } } fulfillmentOrders(first: 50) { nodes { id status lineItems(first: 250) { nodes { id remainingQuantity lineItem { id sku } } } } } } }";
    let answer = graphql(&sandbox, old, json!({"id": "gid://shopify/Order/1"})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED", "{answer}");
    assert!(answer["errors"][0]["extensions"]["cost"].as_u64().unwrap() > 25_000);
    assert!(answer.get("data").is_none());
    assert_eq!(sandbox.channels.counters(Channel::Shopify).queries_over_cost, 1);

    let fine =
        graphql(&sandbox, "{ productVariants(first: 10, query: \"sku:X\") { nodes { id } } }", json!({}))
            .await;
    let cost = &fine["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 2 + 10, "{fine}");
    // Nothing matched: the actual cost charges no nodes.
    assert_eq!(cost["actualQueryCost"], 2);
    assert!(cost["throttleStatus"]["currentlyAvailable"].as_f64().is_some());
    assert!(cost["throttleStatus"]["restoreRate"].as_f64().is_some());
}

#[tokio::test]
async fn every_client_query_costs_the_same_to_the_sandbox_and_stays_under_the_cap() {
    let (sandbox, _channel) = setup().await;
    for (query, variables) in every_query_at_its_largest() {
        let ours = requested_cost(query, &variables).unwrap();
        let answer = graphql(&sandbox, query, variables).await;
        let theirs = answer["extensions"]["cost"]["requestedQueryCost"].as_u64();
        assert_eq!(theirs, Some(ours), "{query}: {answer}");
        assert!(ours <= MAX_QUERY_COST, "{query}");
    }
    assert_eq!(sandbox.channels.counters(Channel::Shopify).queries_over_cost, 0);
}

fn update(sku: &str, quantity: i64) -> QuantityUpdate {
    QuantityUpdate { sku: sku.into(), quantity, last_pushed: None }
}

#[tokio::test]
async fn a_bundle_parent_and_an_unstocked_item_are_skipped_and_reported_the_rest_pushed() {
    let (sandbox, channel) = setup().await;
    for sku in ["A", "BUNDLE", "C", "AWAY"] {
        sandbox.channels.seed_product(Channel::Shopify, sku, 10);
    }
    sandbox.channels.set_requires_components(Channel::Shopify, "BUNDLE", true);
    sandbox.channels.set_stocked(Channel::Shopify, "AWAY", false);
    let report = channel
        .set_quantities(&[update("A", 4), update("BUNDLE", 4), update("C", 4), update("AWAY", 4)])
        .await
        .unwrap();
    let mut skipped = report.skipped.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            ("AWAY".to_string(), SkipReason::NotStockedAtLocation),
            ("BUNDLE".to_string(), SkipReason::BundleParent)
        ]
    );
    let mut pushed = report.pushed.clone();
    pushed.sort();
    assert_eq!(pushed, vec!["A".to_string(), "C".to_string()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "A"), Some(4));
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "BUNDLE"), Some(10));
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "AWAY"), Some(10));

    // A product made a bundle after its SKU was cached: Shopify's refusal is a skip too.
    sandbox.channels.set_requires_components(Channel::Shopify, "C", true);
    let report = channel.set_quantities(&[update("A", 6), update("C", 6)]).await.unwrap();
    assert_eq!(report.skipped, vec![("C".to_string(), SkipReason::BundleParent)]);
    assert_eq!(report.pushed, vec!["A".to_string()]);
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "A"), Some(6));
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "C"), Some(4));
}

#[tokio::test]
async fn a_key_spent_by_a_failed_attempt_is_replaced_by_a_new_one() {
    let (sandbox, channel) = setup().await;
    sandbox.channels.seed_product(Channel::Shopify, "K-1", 1);
    channel.resolve_skus(&["K-1".to_string()]).await.unwrap();
    // Shopify fails the first attempt after taking its key; the retry with that key is refused.
    sandbox.channels.fail_inventory_writes(1);
    let report = channel.set_quantities(&[update("K-1", 9)]).await.unwrap();
    assert_eq!(report.pushed, vec!["K-1".to_string()], "{report:?}");
    assert_eq!(sandbox.channels.quantity(Channel::Shopify, "K-1"), Some(9));
    let counters = sandbox.channels.counters(Channel::Shopify);
    assert_eq!(counters.spent_keys_refused, 1, "the same key was tried again once");
    assert_eq!(counters.count("graphql:inventorySetQuantities"), 3);
}
