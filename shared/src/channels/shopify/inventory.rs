//! Shopify stock: SKU → inventory item lookup, level reads, and `inventorySetQuantities`.
//!
//! - A stale `changeFromQuantity` rejects the whole mutation, and its user errors name the
//!   stale entries by index (`field: ["input","quantities","3","changeFromQuantity"]`). We
//!   re-read those SKUs, report them as conflicts and send the rest again under a new key.
//! - Entries Shopify will never take are skipped and reported once in `PushReport::skipped`,
//!   not failed (a failure is re-sent every poll): bundle parents (`requiresComponents`,
//!   refused with `NON_MUTABLE_INVENTORY_ITEM`) and items not stocked at the store's location
//!   (`ITEM_NOT_STOCKED_AT_LOCATION`). The caller keeps them settled until Brightpearl's
//!   figure changes, so they are not re-sent every run.
//! - One idempotency key per mutation body; a transport retry repeats the body and the key.
//!   `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED` (API 2026-10) means that first attempt failed on
//!   Shopify's side and the key is spent: the same entries go again under a new key.

use super::queries::{LEVELS_PER_READ, M_SET, Q_LEVELS, Q_VARIANTS, VARIANTS_PAGE};
use super::{MAX_QUANTITIES_PER_CALL, SKUS_PER_LOOKUP, ShopifyChannel};
use crate::channels::http::Retry;
use crate::channels::{InventoryTarget, PushReport, QuantityUpdate, SalesChannel, SkipReason};
use crate::error::Result;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Rounds of one batch: stale entries and skips each take one; a spent key takes one.
const MAX_ROUNDS: usize = 4;

impl ShopifyChannel {
    pub(super) async fn lookup_skus(&self, skus: Vec<String>) -> Result<HashMap<String, InventoryTarget>> {
        let location = self.location_gid()?;
        let mut found = HashMap::new();
        for chunk in skus.chunks(SKUS_PER_LOOKUP) {
            let query = chunk
                .iter()
                .map(|sku| format!("sku:\"{}\"", sku.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut after: Option<String> = None;
            loop {
                let variables = json!({"query": query, "first": VARIANTS_PAGE, "after": after});
                let data = self.graphql(Q_VARIANTS, variables, Retry::Idempotent).await?;
                let page = data.get("productVariants").cloned().unwrap_or(Value::Null);
                for node in page.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                    let (Some(sku), Some(item)) = (
                        node.get("sku").and_then(Value::as_str),
                        node.pointer("/inventoryItem/id").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    // The search is fuzzy; keep exact matches of what we asked for only.
                    if !chunk.iter().any(|s| s == sku) {
                        continue;
                    }
                    let bundle = node.get("requiresComponents").and_then(Value::as_bool) == Some(true);
                    found.insert(
                        sku.to_string(),
                        InventoryTarget {
                            item_id: item.to_string(),
                            location_id: location.clone(),
                            parent_id: node
                                .pointer("/product/id")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            skip: bundle.then_some(SkipReason::BundleParent),
                        },
                    );
                }
                match next_cursor(&page) {
                    Some(cursor) => after = Some(cursor),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn read_levels(
        &self,
        targets: &HashMap<String, InventoryTarget>,
    ) -> Result<HashMap<String, i64>> {
        let location = self.location_gid()?;
        let by_item: HashMap<&str, &str> =
            targets.iter().map(|(sku, t)| (t.item_id.as_str(), sku.as_str())).collect();
        let ids: Vec<&str> = by_item.keys().copied().collect();
        let mut levels = HashMap::new();
        for chunk in ids.chunks(LEVELS_PER_READ) {
            let data = self
                .graphql(Q_LEVELS, json!({"ids": chunk, "locationId": location}), Retry::Idempotent)
                .await?;
            for node in data.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                let Some(id) = node.get("id").and_then(Value::as_str) else { continue };
                let quantity = node
                    .pointer("/inventoryLevel/quantities")
                    .and_then(Value::as_array)
                    .and_then(|qs| {
                        qs.iter().find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
                    })
                    .and_then(|q| q.get("quantity").and_then(Value::as_i64));
                if let (Some(sku), Some(quantity)) = (by_item.get(id), quantity) {
                    levels.insert(sku.to_string(), quantity);
                }
            }
        }
        Ok(levels)
    }

    pub(super) async fn push_quantities(&self, updates: &[QuantityUpdate]) -> Result<PushReport> {
        let before = self.http.requests();
        let skus: Vec<String> = updates.iter().map(|u| u.sku.clone()).collect();
        let targets = self.resolve_skus(&skus).await?;
        let mut report = PushReport::default();
        let mut entries = Vec::with_capacity(updates.len());
        for update in updates {
            match targets.get(&update.sku) {
                Some(target) => match target.skip {
                    Some(reason) => report.skipped.push((update.sku.clone(), reason)),
                    None => entries.push((update.clone(), target.clone())),
                },
                None => report.failed.push((update.sku.clone(), "SKU not found on Shopify".into())),
            }
        }
        for batch in entries.chunks(MAX_QUANTITIES_PER_CALL) {
            self.push_batch(batch.to_vec(), &mut report).await?;
        }
        if !report.skipped.is_empty() {
            tracing::warn!(store = %self.store.name, skipped = ?report.skipped, "shopify SKUs skipped: Shopify does not take their stock");
        }
        report.requests = self.http.requests() - before;
        tracing::info!(
            store = %self.store.name,
            pushed = report.pushed.len(),
            conflicts = report.conflicts.len(),
            skipped = report.skipped.len(),
            failed = report.failed.len(),
            requests = report.requests,
            "shopify quantities set"
        );
        Ok(report)
    }

    /// `inventorySetQuantities` for up to 250 entries; the entries a refusal does not name go
    /// again (the mutation is all or nothing), each round under a new key.
    async fn push_batch(
        &self,
        batch: Vec<(QuantityUpdate, InventoryTarget)>,
        report: &mut PushReport,
    ) -> Result<()> {
        let mut pending = batch;
        for _round in 0..MAX_ROUNDS {
            if pending.is_empty() {
                return Ok(());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let quantities: Vec<Value> = pending
                .iter()
                .map(|(u, t)| {
                    json!({
                        "inventoryItemId": t.item_id,
                        "locationId": t.location_id,
                        "quantity": u.quantity,
                        "changeFromQuantity": u.last_pushed,
                    })
                })
                .collect();
            let variables = json!({
                "input": {
                    "name": "available",
                    "reason": "correction",
                    "referenceDocumentUri": format!("gid://pearlsync/InventorySync/{key}"),
                    "quantities": quantities,
                },
                "idempotencyKey": key,
            });
            let data = self.graphql(M_SET, variables, Retry::Idempotent).await?;
            let errors: Vec<Value> = data
                .pointer("/inventorySetQuantities/userErrors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if errors.is_empty() {
                report.pushed.extend(pending.into_iter().map(|(u, _)| u.sku));
                return Ok(());
            }
            let mut stale = Vec::new();
            let mut skipped: HashMap<usize, SkipReason> = HashMap::new();
            let mut rejected: HashMap<usize, String> = HashMap::new();
            let mut key_spent = false;
            for error in &errors {
                let code = error.get("code").and_then(Value::as_str).unwrap_or("");
                let message = error.get("message").and_then(Value::as_str).unwrap_or(code).to_string();
                if code == "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED" {
                    key_spent = true;
                    continue;
                }
                match error_index(error) {
                    Some(i) if i < pending.len() => match code {
                        "CHANGE_FROM_QUANTITY_STALE" | "COMPARE_QUANTITY_STALE" => stale.push(i),
                        "NON_MUTABLE_INVENTORY_ITEM" => {
                            skipped.insert(i, SkipReason::BundleParent);
                        }
                        "ITEM_NOT_STOCKED_AT_LOCATION" => {
                            skipped.insert(i, SkipReason::NotStockedAtLocation);
                        }
                        _ => {
                            rejected.insert(i, format!("{code}: {message}"));
                        }
                    },
                    _ => {
                        // Not tied to one entry: the whole batch failed for this reason.
                        report
                            .failed
                            .extend(pending.drain(..).map(|(u, _)| (u.sku, format!("{code}: {message}"))));
                        return Ok(());
                    }
                }
            }
            if key_spent && stale.is_empty() && skipped.is_empty() && rejected.is_empty() {
                tracing::warn!(store = %self.store.name, "idempotency key spent by a failed attempt; sending again under a new key");
                continue;
            }
            let mut rest = Vec::new();
            let mut stale_targets = HashMap::new();
            for (i, entry) in pending.into_iter().enumerate() {
                if stale.contains(&i) {
                    stale_targets.insert(entry.0.sku.clone(), entry.1);
                } else if let Some(reason) = skipped.remove(&i) {
                    report.skipped.push((entry.0.sku, reason));
                } else if let Some(reason) = rejected.remove(&i) {
                    report.failed.push((entry.0.sku, reason));
                } else {
                    rest.push(entry);
                }
            }
            if !stale_targets.is_empty() {
                let current = self.read_levels(&stale_targets).await?;
                for sku in stale_targets.into_keys() {
                    match current.get(&sku) {
                        Some(q) => report.conflicts.push((sku, *q)),
                        None => report.failed.push((sku, "stale, and the re-read found no level".into())),
                    }
                }
            }
            pending = rest;
        }
        report.failed.extend(
            pending.into_iter().map(|(u, _)| (u.sku, "kept failing inventorySetQuantities".to_string())),
        );
        Ok(())
    }
}

/// The cursor of the next page of a connection, when there is one.
pub(super) fn next_cursor(connection: &Value) -> Option<String> {
    let info = connection.get("pageInfo")?;
    if info.get("hasNextPage").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    info.get("endCursor").and_then(Value::as_str).map(str::to_string)
}

/// `["input","quantities","3","changeFromQuantity"]` → 3.
pub(super) fn error_index(error: &Value) -> Option<usize> {
    let field = error.get("field")?.as_array()?;
    let pos = field.iter().position(|f| f.as_str() == Some("quantities"))?;
    field.get(pos + 1)?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_indices_are_read_from_the_field_path() {
        let e = json!({"code": "CHANGE_FROM_QUANTITY_STALE", "field": ["input", "quantities", "7", "changeFromQuantity"]});
        assert_eq!(error_index(&e), Some(7));
        assert_eq!(error_index(&json!({"field": ["input"]})), None);
    }

    #[test]
    fn next_cursor_only_when_there_is_a_next_page() {
        let more = json!({"pageInfo": {"hasNextPage": true, "endCursor": "abc"}});
        assert_eq!(next_cursor(&more).as_deref(), Some("abc"));
        assert_eq!(next_cursor(&json!({"pageInfo": {"hasNextPage": false, "endCursor": "abc"}})), None);
        assert_eq!(next_cursor(&json!({})), None);
    }
}
