//! The OAuth token pair shared by every function of a deployment. Brightpearl rotates refresh
//! tokens (apis.md §8.1): a refresh token works once. So the pair lives in one state record
//! (`oauth#brightpearl` / `tokens`), written with compare-and-set: whoever refreshes first
//! writes it, everyone else reads it and never presents the spent token. The configuration
//! (SSM) holds only the first grant, used until a record exists.

use crate::error::Result;
use crate::state::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_millis};
use serde::{Deserialize, Serialize};

/// Refresh this long before the access token's announced expiry.
pub(super) const REFRESH_AHEAD_MS: i64 = 5 * 60 * 1000;

fn key() -> Key {
    Key::new("oauth#brightpearl", "tokens")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TokenRecord {
    pub access: String,
    pub refresh: String,
    /// From `expires_in` (epoch ms); 0 when unknown.
    #[serde(default)]
    pub expires_at_ms: i64,
    #[serde(default)]
    pub instance: Option<u64>,
    #[serde(default)]
    pub api_domain: Option<String>,
}

/// The stored pair and its version, if any function wrote one.
pub(super) async fn load(store: &dyn StateStore) -> Result<Option<(TokenRecord, u64)>> {
    let Some(item) = store.get(&key()).await? else { return Ok(None) };
    Ok(serde_json::from_value(item.data).ok().map(|r| (r, item.version)))
}

/// Writes the pair this process just obtained, unless another wrote first since `read_version`
/// (then theirs stands: false).
pub(super) async fn save(
    store: &dyn StateStore,
    record: &TokenRecord,
    read_version: Option<u64>,
) -> Result<bool> {
    let k = key();
    let data = serde_json::to_value(record).map_err(|e| crate::Error::State(e.to_string()))?;
    let (condition, version) = match read_version {
        None => (Condition::Absent, 1),
        Some(v) => (Condition::VersionIs(v), v + 1),
    };
    let item = Item { pk: k.pk, sk: k.sk, data, version, expires_at: None };
    Ok(matches!(store.put(item, condition).await?, PutOutcome::Written))
}

pub(super) fn expires_at(expires_in_secs: Option<u64>) -> i64 {
    expires_in_secs.map_or(0, |s| now_epoch_millis() + (s as i64) * 1000)
}
