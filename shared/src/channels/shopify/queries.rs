//! Every GraphQL operation the Shopify client sends, with the page sizes it sends them with.
//! Each stays under the 1,000-point cap by `cost::requested_cost`; `every_query_at_its_largest`
//! lists them all with the largest variables the client ever uses, for the test that proves it.

use serde_json::{Value, json};

/// Variants per page of a SKU search: 2 + 250 × 2 = 502 points (the variant and its item).
pub const VARIANTS_PAGE: usize = 250;
/// Inventory items per level read: 250 × (1 + 1 + 1) = 750 points (and the 250-id input cap).
pub const LEVELS_PER_READ: usize = 250;
/// Fulfilments read to spot a shipment already posted: 1 + 2 + 100 × 6 = 603 points. An order
/// with more than 100 fulfilments is not something a shop makes.
pub const FULFILMENTS_READ: usize = 100;
/// Line items of one fulfilment per page: 1 + 2 + 250 × 2 = 503 points.
pub const FULFILMENT_LINES_PAGE: usize = 250;
/// Fulfilment orders per page, and line items per fulfilment order on that page:
/// 1 + 2 + 5 × (1 + 2 + 2 + 50 × 2) = 528 points.
pub const FULFILMENT_ORDERS_PAGE: usize = 5;
pub const FULFILMENT_ORDER_LINES_PAGE: usize = 50;
/// Further line items of one fulfilment order: 1 + 2 + 250 × 2 = 503 points.
pub const MORE_LINES_PAGE: usize = 250;
/// Webhook subscriptions per page: 2 + 250 = 252 points.
pub const WEBHOOKS_PAGE: usize = 250;

pub const Q_VARIANTS: &str = "query PearlsyncVariantsBySku($query: String!, $first: Int!, $after: String) { productVariants(first: $first, after: $after, query: $query) { pageInfo { hasNextPage endCursor } nodes { id sku requiresComponents inventoryItem { id } } } }";
pub const Q_LEVELS: &str = "query PearlsyncInventoryLevels($ids: [ID!]!, $locationId: ID!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } } } }";
pub const M_SET: &str = "mutation PearlsyncSetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) { inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) { inventoryAdjustmentGroup { id } userErrors { code field message } } }";
pub const Q_ORDER_FULFILMENTS: &str = "query PearlsyncOrderFulfillments($id: ID!, $first: Int!) { order(id: $id) { id fulfillments(first: $first) { id trackingInfo(first: 3) { number } } } }";
pub const Q_FULFILMENT_LINES: &str = "query PearlsyncFulfillmentLineItems($id: ID!, $first: Int!, $after: String) { fulfillment(id: $id) { id fulfillmentLineItems(first: $first, after: $after) { pageInfo { hasNextPage endCursor } nodes { quantity lineItem { id sku } } } } }";
pub const Q_FULFILMENT_ORDERS: &str = "query PearlsyncFulfillmentOrders($id: ID!, $first: Int!, $after: String, $lineItems: Int!) { order(id: $id) { id fulfillmentOrders(first: $first, after: $after) { pageInfo { hasNextPage endCursor } nodes { id status assignedLocation { location { id } } lineItems(first: $lineItems) { pageInfo { hasNextPage endCursor } nodes { id remainingQuantity lineItem { id sku } } } } } } }";
pub const Q_FULFILMENT_ORDER_LINES: &str = "query PearlsyncFulfillmentOrderLineItems($id: ID!, $first: Int!, $after: String) { fulfillmentOrder(id: $id) { id lineItems(first: $first, after: $after) { pageInfo { hasNextPage endCursor } nodes { id remainingQuantity lineItem { id sku } } } } }";
pub const M_FULFIL: &str = "mutation PearlsyncFulfillmentCreate($fulfillment: FulfillmentInput!) { fulfillmentCreate(fulfillment: $fulfillment) { fulfillment { id status } userErrors { field message } } }";
pub const Q_WEBHOOKS: &str = "query PearlsyncWebhookSubscriptions($first: Int!, $after: String) { webhookSubscriptions(first: $first, after: $after) { pageInfo { hasNextPage endCursor } nodes { id topic uri } } }";
pub const M_WEBHOOK: &str = "mutation PearlsyncWebhookCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) { webhookSubscription { id } userErrors { field message } } }";

/// Every operation above with the largest variables the client sends it with.
pub fn every_query_at_its_largest() -> Vec<(&'static str, Value)> {
    let ids: Vec<String> = (0..LEVELS_PER_READ).map(|i| format!("gid://shopify/InventoryItem/{i}")).collect();
    let quantities: Vec<Value> = (0..250)
        .map(|i| json!({"inventoryItemId": format!("gid://shopify/InventoryItem/{i}"), "locationId": "gid://shopify/Location/1", "quantity": 1, "changeFromQuantity": null}))
        .collect();
    vec![
        (Q_VARIANTS, json!({"query": "sku:\"A\"", "first": VARIANTS_PAGE, "after": "cursor"})),
        (Q_LEVELS, json!({"ids": ids, "locationId": "gid://shopify/Location/1"})),
        (
            M_SET,
            json!({"input": {"name": "available", "reason": "correction", "quantities": quantities}, "idempotencyKey": "k"}),
        ),
        (Q_ORDER_FULFILMENTS, json!({"id": "gid://shopify/Order/1", "first": FULFILMENTS_READ})),
        (
            Q_FULFILMENT_LINES,
            json!({"id": "gid://shopify/Fulfillment/1", "first": FULFILMENT_LINES_PAGE, "after": "c"}),
        ),
        (
            Q_FULFILMENT_ORDERS,
            json!({"id": "gid://shopify/Order/1", "first": FULFILMENT_ORDERS_PAGE, "after": "c", "lineItems": FULFILMENT_ORDER_LINES_PAGE}),
        ),
        (
            Q_FULFILMENT_ORDER_LINES,
            json!({"id": "gid://shopify/FulfillmentOrder/1", "first": MORE_LINES_PAGE, "after": "c"}),
        ),
        (M_FULFIL, json!({"fulfillment": {"lineItemsByFulfillmentOrder": []}})),
        (Q_WEBHOOKS, json!({"first": WEBHOOKS_PAGE, "after": "c"})),
        (M_WEBHOOK, json!({"topic": "ORDERS_CREATE", "webhookSubscription": {"uri": "https://x"}})),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cost::{MAX_QUERY_COST, requested_cost};
    use super::*;

    #[test]
    fn every_query_the_client_sends_is_under_the_cap() {
        let all = every_query_at_its_largest();
        for (query, variables) in &all {
            let cost = requested_cost(query, variables).unwrap_or_else(|e| panic!("{query}: {e}"));
            assert!(cost <= MAX_QUERY_COST, "{cost} points: {query}");
        }
        // The list is complete: one entry per operation constant in this file.
        let source = include_str!("queries.rs");
        let declared =
            source.lines().filter(|l| l.starts_with("pub const Q_") || l.starts_with("pub const M_")).count();
        assert_eq!(declared, all.len(), "every operation constant is in every_query_at_its_largest");
    }

    #[test]
    fn the_page_sizes_give_the_costs_their_comments_say() {
        let cost = |i: usize| {
            let all = every_query_at_its_largest();
            requested_cost(all[i].0, &all[i].1).unwrap()
        };
        assert_eq!(cost(0), 2 + 250 * 2);
        assert_eq!(cost(1), 250 * 3);
        assert_eq!(cost(3), 1 + 2 + 100 * 6);
        assert_eq!(cost(4), 1 + 2 + 250 * 2);
        assert_eq!(cost(5), 1 + 2 + 5 * (1 + 2 + 2 + 50 * 2));
        assert_eq!(cost(6), 1 + 2 + 250 * 2);
    }
}
