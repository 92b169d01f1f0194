//! Shopify fulfilment with tracking, through fulfilment orders.
//!
//! - Fulfilment orders and their line items are read in pages (every query under the cost
//!   cap, see `queries`), never as one 50 × 250 query.
//! - `fulfillmentCreate` covers the fulfilment orders of one order at one location (apis.md
//!   §8.3): the shipped lines are grouped by the location their fulfilment order is assigned
//!   to, and each location gets its own call, in a stable order.
//! - A repeat is recognised by the tracking number: what the order's fulfilments with that
//!   number already hold is subtracted from the shipment, so a repeat posts nothing and a
//!   repeat after a partly posted shipment (one location done, the next refused) posts only
//!   the rest.

use super::inventory::next_cursor;
use super::queries::{
    FULFILMENT_LINES_PAGE, FULFILMENT_ORDER_LINES_PAGE, FULFILMENT_ORDERS_PAGE, FULFILMENTS_READ, M_FULFIL,
    MORE_LINES_PAGE, Q_FULFILMENT_LINES, Q_FULFILMENT_ORDER_LINES, Q_FULFILMENT_ORDERS, Q_ORDER_FULFILMENTS,
};
use super::{MAX_QUANTITIES_PER_CALL, ShopifyChannel, gid, gid_tail, user_error};
use crate::channels::Fulfilment;
use crate::channels::http::Retry;
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One open line of a fulfilment order.
#[derive(Debug, Clone)]
struct OpenLine {
    fulfilment_order: String,
    location: String,
    id: String,
    sku: String,
    line_item: String,
    remaining: u64,
}

impl OpenLine {
    fn matches(&self, key: &str) -> bool {
        line_matches(&self.sku, &self.line_item, key)
    }
}

fn line_matches(sku: &str, line_item: &str, key: &str) -> bool {
    sku == key || line_item == key || gid_tail(line_item) == key
}

impl ShopifyChannel {
    pub(super) async fn fulfil(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        let order_gid = gid("Order", order_id);
        let posted = self.already_posted(&order_gid, order_id, &fulfilment.tracking_number).await?;
        let wanted: Vec<(String, u64)> = match posted {
            None => fulfilment.lines.iter().map(|(k, q)| (k.clone(), u64::from(*q))).collect(),
            Some(_) if fulfilment.lines.is_empty() => {
                tracing::info!(store = %self.store.name, order_id, "fulfilment with this tracking number exists; skipped");
                return Ok(());
            }
            Some(mut shipped) => {
                let mut rest = Vec::new();
                for (key, quantity) in &fulfilment.lines {
                    let mut left = u64::from(*quantity);
                    for (sku, line_item, done) in shipped.iter_mut() {
                        if left > 0 && *done > 0 && line_matches(sku, line_item, key) {
                            let take = left.min(*done);
                            left -= take;
                            *done -= take;
                        }
                    }
                    if left > 0 {
                        rest.push((key.clone(), left));
                    }
                }
                if rest.is_empty() {
                    tracing::info!(store = %self.store.name, order_id, "shipment already posted under this tracking number; skipped");
                    return Ok(());
                }
                rest
            }
        };
        let mut open = self.open_lines(&order_gid, order_id).await?;
        // (location → fulfilment order → [(line item id, quantity)]), in a stable order.
        let mut picked: BTreeMap<String, BTreeMap<String, Vec<(String, u64)>>> = BTreeMap::new();
        let mut pick = |line: &mut OpenLine, take: u64| {
            line.remaining -= take;
            picked
                .entry(line.location.clone())
                .or_default()
                .entry(line.fulfilment_order.clone())
                .or_default()
                .push((line.id.clone(), take));
        };
        if fulfilment.lines.is_empty() {
            for line in open.iter_mut() {
                let all = line.remaining;
                pick(line, all);
            }
        }
        for (key, quantity) in &wanted {
            let mut needed = *quantity;
            for line in open.iter_mut() {
                if needed == 0 {
                    break;
                }
                if line.remaining == 0 || !line.matches(key) {
                    continue;
                }
                let take = needed.min(line.remaining);
                needed -= take;
                pick(line, take);
            }
            if needed > 0 {
                tracing::warn!(store = %self.store.name, order_id, line = %key, unmatched = needed, "shipped more than is open on Shopify");
            }
        }
        if picked.is_empty() {
            return Err(Error::BadInput(format!(
                "Shopify order {order_id} has nothing open for these lines"
            )));
        }
        let mut tracking = json!({"company": fulfilment.carrier, "number": fulfilment.tracking_number});
        if let Some(url) = &fulfilment.tracking_url {
            tracking["url"] = json!(url);
        }
        for (location, orders) in picked {
            for group in location_calls(orders) {
                let variables = json!({"fulfillment": {
                    "lineItemsByFulfillmentOrder": group,
                    "notifyCustomer": true,
                    "trackingInfo": tracking,
                }});
                let data = self.graphql(M_FULFIL, variables, Retry::ThrottleOnly).await?;
                if let Some(refused) = user_error(&data, "/fulfillmentCreate/userErrors") {
                    return Err(refused);
                }
                tracing::info!(store = %self.store.name, order_id, %location, "fulfilment posted");
            }
        }
        Ok(())
    }

    /// `None` when no fulfilment carries `tracking`; otherwise what those fulfilments hold,
    /// as (sku, line item id, quantity).
    async fn already_posted(
        &self,
        order_gid: &str,
        order_id: &str,
        tracking: &str,
    ) -> Result<Option<Vec<(String, String, u64)>>> {
        let data = self
            .graphql(
                Q_ORDER_FULFILMENTS,
                json!({"id": order_gid, "first": FULFILMENTS_READ}),
                Retry::Idempotent,
            )
            .await?;
        let order = data
            .get("order")
            .filter(|o| o.is_object())
            .ok_or_else(|| Error::BadInput(format!("Shopify order {order_id} not found")))?;
        let ours: Vec<String> = order
            .get("fulfillments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| {
                f.get("trackingInfo")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|t| t.get("number").and_then(Value::as_str) == Some(tracking))
            })
            .filter_map(|f| f.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        if ours.is_empty() {
            return Ok(None);
        }
        let mut held = Vec::new();
        for id in ours {
            let mut after: Option<String> = None;
            loop {
                let variables = json!({"id": id, "first": FULFILMENT_LINES_PAGE, "after": after});
                let data = self.graphql(Q_FULFILMENT_LINES, variables, Retry::Idempotent).await?;
                let page = data.pointer("/fulfillment/fulfillmentLineItems").cloned().unwrap_or(Value::Null);
                for item in page.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                    held.push((
                        item.pointer("/lineItem/sku").and_then(Value::as_str).unwrap_or("").to_string(),
                        item.pointer("/lineItem/id").and_then(Value::as_str).unwrap_or("").to_string(),
                        item.get("quantity").and_then(Value::as_u64).unwrap_or(0),
                    ));
                }
                match next_cursor(&page) {
                    Some(cursor) => after = Some(cursor),
                    None => break,
                }
            }
        }
        Ok(Some(held))
    }

    /// Every open line of the order's open fulfilment orders, paging both levels.
    async fn open_lines(&self, order_gid: &str, order_id: &str) -> Result<Vec<OpenLine>> {
        let mut open = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables = json!({
                "id": order_gid,
                "first": FULFILMENT_ORDERS_PAGE,
                "after": after,
                "lineItems": FULFILMENT_ORDER_LINES_PAGE,
            });
            let data = self.graphql(Q_FULFILMENT_ORDERS, variables, Retry::Idempotent).await?;
            let page = data
                .pointer("/order/fulfillmentOrders")
                .filter(|p| p.is_object())
                .cloned()
                .ok_or_else(|| Error::BadInput(format!("Shopify order {order_id} not found")))?;
            for fo in page.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                let status = fo.get("status").and_then(Value::as_str).unwrap_or("");
                let Some(fo_id) = fo.get("id").and_then(Value::as_str) else { continue };
                if !matches!(status, "OPEN" | "IN_PROGRESS") {
                    continue;
                }
                let location = fo
                    .pointer("/assignedLocation/location/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let mut lines = fo.get("lineItems").cloned().unwrap_or(Value::Null);
                loop {
                    for li in lines.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                        let remaining = li.get("remainingQuantity").and_then(Value::as_u64).unwrap_or(0);
                        let Some(id) = li.get("id").and_then(Value::as_str).filter(|_| remaining > 0) else {
                            continue;
                        };
                        open.push(OpenLine {
                            fulfilment_order: fo_id.to_string(),
                            location: location.clone(),
                            id: id.to_string(),
                            sku: li
                                .pointer("/lineItem/sku")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            line_item: li
                                .pointer("/lineItem/id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            remaining,
                        });
                    }
                    let Some(cursor) = next_cursor(&lines) else { break };
                    let variables = json!({"id": fo_id, "first": MORE_LINES_PAGE, "after": cursor});
                    let data = self.graphql(Q_FULFILMENT_ORDER_LINES, variables, Retry::Idempotent).await?;
                    lines = data.pointer("/fulfillmentOrder/lineItems").cloned().unwrap_or(Value::Null);
                }
            }
            match next_cursor(&page) {
                Some(cursor) => after = Some(cursor),
                None => return Ok(open),
            }
        }
    }
}

/// The `lineItemsByFulfillmentOrder` groups for one location, split so that no input array
/// holds more than 250 items (Shopify's input cap): each group is one `fulfillmentCreate`.
fn location_calls(orders: BTreeMap<String, Vec<(String, u64)>>) -> Vec<Vec<Value>> {
    let mut calls: Vec<Vec<Value>> = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut items_in_current = 0;
    for (fo, items) in orders {
        for chunk in items.chunks(MAX_QUANTITIES_PER_CALL) {
            if items_in_current + chunk.len() > MAX_QUANTITIES_PER_CALL
                || current.len() == MAX_QUANTITIES_PER_CALL
            {
                calls.push(std::mem::take(&mut current));
                items_in_current = 0;
            }
            let entries: Vec<Value> = chunk.iter().map(|(id, q)| json!({"id": id, "quantity": q})).collect();
            items_in_current += chunk.len();
            current.push(json!({"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": entries}));
        }
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_with_more_than_250_items_takes_several_calls() {
        let mut orders = BTreeMap::new();
        orders.insert("fo-1".to_string(), (0..300).map(|i| (format!("li-{i}"), 1)).collect::<Vec<_>>());
        orders.insert("fo-2".to_string(), vec![("li-x".to_string(), 2)]);
        let calls = location_calls(orders);
        let items = |call: &Vec<Value>| -> usize {
            call.iter().map(|g| g["fulfillmentOrderLineItems"].as_array().map_or(0, Vec::len)).sum()
        };
        assert_eq!(calls.len(), 2);
        assert_eq!(items(&calls[0]), 250);
        assert_eq!(items(&calls[1]), 51);
        assert!(calls.iter().all(|c| items(c) <= MAX_QUANTITIES_PER_CALL));
    }
}
