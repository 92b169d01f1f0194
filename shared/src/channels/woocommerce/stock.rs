//! WooCommerce stock. A simple product's stock is on the product and goes through
//! `products/batch`; a variable product's stock lives on each variation, which goes through
//! its parent's `products/{parent}/variations/batch` and is read from
//! `products/{parent}/variations`. `GET /products?sku=` finds variations too (WooCommerce
//! widens the post types to products and variations when `sku` is given), each with its
//! `parent_id`. A variable product's own SKU holds no stock of its variations: it is skipped
//! and reported.

use super::{MAX_BATCH_ITEMS, SERVICE, WooCommerceChannel};
use crate::channels::http::Retry;
use crate::channels::{InventoryTarget, PushReport, QuantityUpdate, SalesChannel, SkipReason, id_of, text};
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The batch route for a target: its parent's variations, or the products.
fn batch_path(parent: Option<&String>) -> String {
    match parent {
        Some(parent) => format!("wc/v3/products/{parent}/variations/batch"),
        None => "wc/v3/products/batch".to_string(),
    }
}

impl WooCommerceChannel {
    pub(super) async fn lookup_skus(&self, skus: Vec<String>) -> Result<HashMap<String, InventoryTarget>> {
        let mut found = HashMap::new();
        for chunk in skus.chunks(MAX_BATCH_ITEMS) {
            let answer =
                self.get("wc/v3/products", &[("sku", chunk.join(",")), ("per_page", "100".into())]).await?;
            for product in answer.as_array().into_iter().flatten() {
                let (Some(sku), Some(id)) = (text(product, "sku"), id_of(product, "id")) else { continue };
                if !chunk.contains(&sku) {
                    continue;
                }
                let parent = id_of(product, "parent_id").filter(|p| p != "0");
                let variable = text(product, "type").as_deref() == Some("variable");
                found.insert(
                    sku,
                    InventoryTarget {
                        item_id: id,
                        location_id: String::new(),
                        parent_id: parent,
                        skip: variable.then_some(SkipReason::VariableProduct),
                    },
                );
            }
        }
        Ok(found)
    }

    pub(super) async fn read_stock(&self, skus: &[String]) -> Result<HashMap<String, i64>> {
        let targets = self.resolve_skus(skus).await?;
        let mut groups: BTreeMap<Option<String>, Vec<(&String, &InventoryTarget)>> = BTreeMap::new();
        for (sku, target) in &targets {
            groups.entry(target.parent_id.clone()).or_default().push((sku, target));
        }
        let mut found = HashMap::new();
        for (parent, members) in groups {
            let path = match &parent {
                Some(parent) => format!("wc/v3/products/{parent}/variations"),
                None => "wc/v3/products".to_string(),
            };
            for chunk in members.chunks(MAX_BATCH_ITEMS) {
                let include = chunk.iter().map(|(_, t)| t.item_id.as_str()).collect::<Vec<_>>().join(",");
                let answer = self.get(&path, &[("include", include), ("per_page", "100".into())]).await?;
                for product in answer.as_array().into_iter().flatten() {
                    let id = id_of(product, "id");
                    let quantity = product.get("stock_quantity").and_then(Value::as_i64);
                    if let (Some(id), Some(q)) = (id, quantity)
                        && let Some((sku, _)) = chunk.iter().find(|(_, t)| t.item_id == id)
                    {
                        found.insert((*sku).clone(), q);
                    }
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn push_stock(&self, updates: &[QuantityUpdate]) -> Result<PushReport> {
        let before = self.http.requests();
        let skus: Vec<String> = updates.iter().map(|u| u.sku.clone()).collect();
        let targets = self.resolve_skus(&skus).await?;
        let mut report = PushReport::default();
        // Simple products share one batch route; each parent's variations have their own.
        let mut groups: BTreeMap<Option<String>, Vec<(QuantityUpdate, InventoryTarget)>> = BTreeMap::new();
        for update in updates {
            match targets.get(&update.sku) {
                Some(t) => match t.skip {
                    Some(reason) => report.skipped.push((update.sku.clone(), reason)),
                    None => groups.entry(t.parent_id.clone()).or_default().push((update.clone(), t.clone())),
                },
                None => report.failed.push((update.sku.clone(), "SKU not found on WooCommerce".into())),
            }
        }
        for (parent, entries) in groups {
            let path = batch_path(parent.as_ref());
            for batch in entries.chunks(MAX_BATCH_ITEMS) {
                self.push_batch(&path, batch, &mut report).await?;
            }
        }
        report.requests = self.http.requests() - before;
        tracing::info!(store = %self.store.name, pushed = report.pushed.len(), skipped = report.skipped.len(), failed = report.failed.len(), requests = report.requests, "woocommerce quantities set");
        Ok(report)
    }

    /// One batch call; a 413 or other refusal fails just this batch.
    async fn push_batch(
        &self,
        path: &str,
        batch: &[(QuantityUpdate, InventoryTarget)],
        report: &mut PushReport,
    ) -> Result<()> {
        let update: Vec<Value> = batch
            .iter()
            .map(|(u, t)| json!({"id": t.item_id.parse::<u64>().unwrap_or_default(), "manage_stock": true, "stock_quantity": u.quantity}))
            .collect();
        let reply = self.post(path, json!({"update": update}), Retry::Idempotent).await?;
        match reply.ok(SERVICE) {
            Ok(reply) => {
                let answer = reply.json(SERVICE)?;
                // Per-item failures come back inside `update` with an `error` object.
                let errors: HashMap<String, String> = answer
                    .get("update")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|item| {
                        let message = item.pointer("/error/message").and_then(Value::as_str)?;
                        Some((id_of(item, "id")?, message.to_string()))
                    })
                    .collect();
                for (u, t) in batch {
                    match errors.get(&t.item_id) {
                        Some(message) => report.failed.push((u.sku.clone(), message.clone())),
                        None => report.pushed.push(u.sku.clone()),
                    }
                }
            }
            Err(Error::Rejected { status, message, .. }) => {
                let reason = format!("HTTP {status}: {message}");
                report.failed.extend(batch.iter().map(|(u, _)| (u.sku.clone(), reason.clone())));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variations_go_through_their_parents_batch() {
        assert_eq!(batch_path(Some(&"42".to_string())), "wc/v3/products/42/variations/batch");
        assert_eq!(batch_path(None), "wc/v3/products/batch");
    }
}
