//! SKU → channel inventory ids, cached in state: one item per store and SKU, read with one
//! `batch_get` for the SKUs asked about, so reads and writes grow with the request, not the
//! catalogue.

use super::InventoryTarget;
use crate::error::Result;
use crate::state::{Item, Key, StateStore};
use std::collections::HashMap;

/// Cached ids may go stale when a merchant recreates a product; a week bounds the damage.
const TTL_SECONDS: i64 = 7 * 24 * 3600;

fn partition(kind: &str, store: &str) -> String {
    format!("chsku#{kind}#{store}")
}

/// Cached targets for `skus`; the misses are the SKUs left out.
pub(crate) async fn lookup(
    state: &dyn StateStore,
    kind: &str,
    store: &str,
    skus: &[String],
) -> Result<HashMap<String, InventoryTarget>> {
    let pk = partition(kind, store);
    let keys: Vec<Key> = skus.iter().map(|sku| Key::new(pk.clone(), sku.clone())).collect();
    let mut found = HashMap::new();
    for chunk in keys.chunks(100) {
        for item in state.batch_get(chunk).await? {
            if let Ok(target) = serde_json::from_value::<InventoryTarget>(item.data) {
                found.insert(item.sk, target);
            }
        }
    }
    Ok(found)
}

pub(crate) async fn store(
    state: &dyn StateStore,
    kind: &str,
    store: &str,
    targets: &HashMap<String, InventoryTarget>,
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let pk = partition(kind, store);
    let expires = crate::state::now_epoch_seconds() + TTL_SECONDS;
    let items: Vec<Item> = targets
        .iter()
        .filter_map(|(sku, target)| {
            serde_json::to_value(target)
                .ok()
                .map(|data| Item::new(pk.clone(), sku.clone(), data).with_expiry(expires))
        })
        .collect();
    state.batch_put(items).await
}

/// Cache first, then `fetch` for the misses, then cache what it found.
pub(crate) async fn resolve<F, Fut>(
    state: &dyn StateStore,
    kind: &str,
    store_name: &str,
    skus: &[String],
    fetch: F,
) -> Result<HashMap<String, InventoryTarget>>
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<HashMap<String, InventoryTarget>>>,
{
    let mut unique: Vec<String> = skus.to_vec();
    unique.sort();
    unique.dedup();
    let mut found = lookup(state, kind, store_name, &unique).await?;
    let missing: Vec<String> = unique.into_iter().filter(|sku| !found.contains_key(sku)).collect();
    if !missing.is_empty() {
        let fetched = fetch(missing).await?;
        store(state, kind, store_name, &fetched).await?;
        found.extend(fetched);
    }
    Ok(found)
}
