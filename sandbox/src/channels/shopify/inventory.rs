//! Simulated Shopify stock: the variant search, level reads and `inventorySetQuantities`,
//! with the refusals Shopify gives: parent bundles (`NON_MUTABLE_INVENTORY_ITEM`), items not
//! stocked at the location (`ITEM_NOT_STOCKED_AT_LOCATION`), stale `changeFromQuantity`, keys
//! reused with other parameters, and keys spent by a failed attempt
//! (`IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`, API 2026-10). One bad entry rejects the whole call.

use super::query::Field;
use super::{MAX_INPUT, gid, page, tail};
use crate::channels::{Channel, ChannelSandbox};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) fn variants(sb: &ChannelSandbox, field: &Field) -> Value {
    let search = field.arg_str("query").unwrap_or("");
    let wanted: Vec<String> = search
        .split(" OR ")
        .filter_map(|t| t.trim().strip_prefix("sku:"))
        .map(|s| s.trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect();
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = shop
        .products
        .iter()
        .filter(|p| wanted.contains(&p.sku))
        .map(|p| {
            json!({"id": gid("ProductVariant", p.variant_id), "sku": p.sku, "requiresComponents": p.requires_components,
                "product": {"id": gid("Product", p.product_id)}, "inventoryItem": {"id": gid("InventoryItem", p.inventory_item_id)}})
        })
        .collect();
    json!({"productVariants": page(nodes, field)})
}

pub(super) fn levels(sb: &ChannelSandbox, field: &Field) -> Value {
    let level_field = field.child("inventoryLevel");
    let location = level_field.and_then(|f| f.arg_str("locationId")).and_then(tail);
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = field
        .args
        .get("ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|id| {
            let Some(p) = id
                .as_str()
                .and_then(tail)
                .and_then(|n| shop.products.iter().find(|p| p.inventory_item_id == n))
            else {
                return Value::Null;
            };
            // No level at a location the item is not stocked at.
            let level = (location == Some(sb.config.shopify_location_id) && p.stocked)
                .then(|| json!({"quantities": [{"name": "available", "quantity": p.quantity}]}));
            json!({"id": gid("InventoryItem", p.inventory_item_id), "inventoryLevel": level})
        })
        .collect();
    json!({"nodes": nodes})
}

fn refused(errors: Vec<Value>) -> Value {
    json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": errors}})
}

pub(super) fn set_quantities(sb: &ChannelSandbox, field: &Field) -> Result<Value, Response> {
    let input = field.args.get("input").cloned().unwrap_or(Value::Null);
    let quantities = input.get("quantities").and_then(Value::as_array).cloned().unwrap_or_default();
    if quantities.len() > MAX_INPUT {
        sb.record_oversized(Channel::Shopify);
        return Err(Json(json!({"errors": [{
            "message": format!("The input array size of {} is greater than the maximum allowed of {MAX_INPUT}.", quantities.len()),
            "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}}]}))
        .into_response());
    }
    let key = field.directive_arg("idempotent", "key").and_then(Value::as_str).map(str::to_string);
    let mut shop = sb.shop(Channel::Shopify);
    if let Some(key) = &key {
        if shop.spent_keys.contains(key) {
            shop.counters.spent_keys_refused += 1;
            return Ok(refused(vec![json!({"code": "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", "field": null,
                "message": "A previous request with this idempotency key failed. Retry with a new idempotency key."})]));
        }
        if let Some((params, answer)) = shop.idempotency.get(key) {
            if *params == input {
                return Ok(answer.clone());
            }
            return Ok(refused(vec![
                json!({"code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "field": ["input"],
                "message": "The same idempotency key cannot be used with different operation parameters."}),
            ]));
        }
        if shop.fail_inventory_writes > 0 {
            // Shopify's side fails after taking the key: nothing is written, the key is spent.
            shop.fail_inventory_writes -= 1;
            shop.spent_keys.insert(key.clone());
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"errors": "Internal Server Error"})),
            )
                .into_response());
        }
    }
    let mut errors = Vec::new();
    let mut writes = Vec::new();
    for (i, q) in quantities.iter().enumerate() {
        let at = |name: &str| json!(["input", "quantities", i.to_string(), name]);
        let item = q.get("inventoryItemId").and_then(Value::as_str).and_then(tail);
        let location = q.get("locationId").and_then(Value::as_str).and_then(tail);
        let Some(index) = item.and_then(|n| shop.products.iter().position(|p| p.inventory_item_id == n))
        else {
            errors.push(json!({"code": "INVALID_INVENTORY_ITEM", "field": at("inventoryItemId"), "message": "The specified inventory item could not be found."}));
            continue;
        };
        if location != Some(sb.config.shopify_location_id) {
            errors.push(json!({"code": "INVALID_LOCATION", "field": at("locationId"), "message": "The specified location could not be found."}));
            continue;
        }
        let product = &shop.products[index];
        if product.requires_components {
            errors.push(json!({"code": "NON_MUTABLE_INVENTORY_ITEM", "field": at("inventoryItemId"),
                "message": "The specified inventory item is not allowed to be adjusted via API. Example: if the inventory item is a parent bundle."}));
            continue;
        }
        if !product.stocked {
            errors.push(json!({"code": "ITEM_NOT_STOCKED_AT_LOCATION", "field": at("locationId"), "message": "The inventory item is not stocked at the location."}));
            continue;
        }
        let Some(quantity) = q.get("quantity").and_then(Value::as_i64) else {
            errors.push(json!({"code": "INVALID_QUANTITY_NEGATIVE", "field": at("quantity"), "message": "quantity missing"}));
            continue;
        };
        match q.get("changeFromQuantity") {
            None => errors.push(json!({"code": "CHANGE_FROM_QUANTITY_REQUIRED", "field": at("changeFromQuantity"), "message": "changeFromQuantity is required (null to skip the check)"})),
            Some(Value::Null) => writes.push((index, quantity)),
            Some(from) => {
                if from.as_i64() == Some(product.quantity) {
                    writes.push((index, quantity));
                } else {
                    errors.push(json!({"code": "CHANGE_FROM_QUANTITY_STALE", "field": at("changeFromQuantity"), "message": "The changeFromQuantity value does not match persisted value."}));
                }
            }
        }
    }
    let answer = if errors.is_empty() {
        for (index, quantity) in &writes {
            shop.products[*index].quantity = *quantity;
        }
        let group = shop.next();
        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": gid("InventoryAdjustmentGroup", group)}, "userErrors": []}})
    } else {
        refused(errors.clone())
    };
    if let Some(key) = key {
        shop.idempotency.insert(key, (input, answer.clone()));
    }
    drop(shop);
    if errors.is_empty() {
        sb.record_batch(Channel::Shopify, quantities.len());
    }
    Ok(answer)
}
