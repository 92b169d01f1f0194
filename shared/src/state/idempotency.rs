//! Idempotency records over any `StateStore`, with the semantics of the Lambda Powertools
//! utility: a key is taken IN_PROGRESS with a lock expiry, then COMPLETE with its stored result.
//! A duplicate sees the result, or learns that the first attempt is still running; a lock
//! past its expiry (a crashed attempt) is taken over by exactly one caller.

use super::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_millis, now_epoch_seconds};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const SORT_KEY: &str = "idempotency";
/// A lost race on a record that just expired is retried this many times before giving up.
const CLAIM_ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordStatus {
    InProgress,
    Complete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    status: RecordStatus,
    /// Epoch milliseconds; an IN_PROGRESS record past this is a crashed attempt.
    lock_expires_at: i64,
    payload_hash: String,
    #[serde(default)]
    result: Option<serde_json::Value>,
    /// The process that took the lock (see [`process_id`]).
    #[serde(default)]
    holder: Option<String>,
}

/// This process, for lock records: its pid, start time and a random part, fixed at first use.
fn process_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{}-{}-{:08x}", std::process::id(), now_epoch_millis(), fastrand::u32(..)))
}

/// What `begin` found.
#[derive(Debug)]
pub enum Claim {
    /// This caller owns the key: do the work, then `complete` or `release`.
    Acquired(Lease),
    /// The work was done before; here is its result.
    Completed(serde_json::Value),
    /// Another attempt holds the key until this time (epoch ms): report a concurrent duplicate.
    InProgress { lock_expires_at: i64 },
}

#[derive(Debug)]
#[must_use = "complete or release the lease"]
pub struct Lease {
    key: String,
    version: u64,
    payload_hash: String,
}

impl Lease {
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn StateStore>,
    /// How long a record lives (TTL) after it is written.
    record_ttl: Duration,
}

/// Hash of a payload, so that the same key with different input is caught.
pub fn payload_hash(payload: &serde_json::Value) -> String {
    let canonical = payload.to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn record_key(key: &str) -> Key {
    Key::new(format!("idem#{key}"), SORT_KEY)
}

impl Idempotency {
    pub fn new(store: Arc<dyn StateStore>, record_ttl: Duration) -> Self {
        Idempotency { store, record_ttl }
    }

    fn item(&self, key: &str, record: &Record, version: u64) -> Result<Item> {
        let data = serde_json::to_value(record).map_err(|e| Error::State(e.to_string()))?;
        let k = record_key(key);
        Ok(Item {
            pk: k.pk,
            sk: k.sk,
            data,
            version,
            expires_at: Some(now_epoch_seconds() + self.record_ttl.as_secs() as i64),
        })
    }

    /// Claims `key` for this payload until `lock_expires_at` (epoch ms, from the remaining
    /// Lambda time).
    pub async fn begin(&self, key: &str, payload: &serde_json::Value, lock_expires_at: i64) -> Result<Claim> {
        let hash = payload_hash(payload);
        let fresh = Record {
            status: RecordStatus::InProgress,
            lock_expires_at,
            payload_hash: hash.clone(),
            result: None,
            holder: Some(process_id().to_string()),
        };
        for _ in 0..CLAIM_ATTEMPTS {
            let current = match self.store.put(self.item(key, &fresh, 1)?, Condition::Absent).await? {
                PutOutcome::Written => {
                    return Ok(Claim::Acquired(Lease {
                        key: key.to_string(),
                        version: 1,
                        payload_hash: hash,
                    }));
                }
                PutOutcome::ConditionFailed { current: Some(current) } => current,
                // The blocking record expired between the write and its check: try again.
                PutOutcome::ConditionFailed { current: None } => continue,
            };
            let record: Record =
                serde_json::from_value(current.data.clone()).map_err(|e| Error::State(e.to_string()))?;
            if record.payload_hash != hash {
                return Err(Error::IdempotencyPayloadMismatch { key: key.to_string() });
            }
            match record.status {
                RecordStatus::Complete => {
                    return Ok(Claim::Completed(record.result.unwrap_or(serde_json::Value::Null)));
                }
                // A lock of another process in a store only one process can hold: that process
                // died (a killed `serve`), so its lock is taken over now, not at its expiry.
                RecordStatus::InProgress
                    if record.lock_expires_at > now_epoch_millis()
                        && !(self.store.held_by_this_process_alone()
                            && record.holder.as_deref().is_some_and(|h| h != process_id())) =>
                {
                    return Ok(Claim::InProgress { lock_expires_at: record.lock_expires_at });
                }
                RecordStatus::InProgress => {
                    // A crashed attempt: take the lock over, conditional on the version we saw,
                    // so that of many callers exactly one wins.
                    let next = current.version + 1;
                    match self
                        .store
                        .put(self.item(key, &fresh, next)?, Condition::VersionIs(current.version))
                        .await?
                    {
                        PutOutcome::Written => {
                            return Ok(Claim::Acquired(Lease {
                                key: key.to_string(),
                                version: next,
                                payload_hash: hash,
                            }));
                        }
                        PutOutcome::ConditionFailed { .. } => continue,
                    }
                }
            }
        }
        // Every attempt lost a race to another caller, which therefore holds the key now.
        Ok(Claim::InProgress { lock_expires_at: lock_expires_at.max(now_epoch_millis()) })
    }

    /// Marks the work done and stores its result for later duplicates.
    pub async fn complete(&self, lease: Lease, result: &serde_json::Value) -> Result<()> {
        let record = Record {
            status: RecordStatus::Complete,
            lock_expires_at: 0,
            payload_hash: lease.payload_hash.clone(),
            result: Some(result.clone()),
            holder: None,
        };
        let item = self.item(&lease.key, &record, lease.version + 1)?;
        match self.store.put(item, Condition::VersionIs(lease.version)).await? {
            PutOutcome::Written => Ok(()),
            PutOutcome::ConditionFailed { .. } => Err(Error::State(format!(
                "idempotency lock on {} expired and was taken over before completion",
                lease.key
            ))),
        }
    }

    /// Gives the key up after a failure, so a retry can run at once.
    pub async fn release(&self, lease: Lease) -> Result<()> {
        self.store.delete(&record_key(&lease.key), Condition::VersionIs(lease.version)).await?;
        Ok(())
    }
}

/// Runs `work` only if no other process is running the same `name`: a lease in state until
/// `ttl` passes (a crashed holder's lease is taken over after that). Returns None, without
/// running `work`, while another run holds it. Scheduled polls use it so that two runs never
/// overlap, whatever Lambda concurrency allows.
pub async fn run_exclusively<T>(
    store: Arc<dyn StateStore>,
    name: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<Option<T>> {
    let leases = Idempotency::new(store, ttl);
    let marker = serde_json::json!(name);
    let until = now_epoch_millis() + ttl.as_millis() as i64;
    let lease = match leases.begin(&format!("run:{name}"), &marker, until).await? {
        Claim::Acquired(lease) => lease,
        // Leases are released, never completed; a completed record is a stale writer's.
        Claim::InProgress { .. } | Claim::Completed(_) => return Ok(None),
    };
    let outcome = work.await;
    if let Err(e) = leases.release(lease).await {
        tracing::warn!(run = name, error = %e, "run lease not released; it expires by itself");
    }
    outcome.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::embedded::EmbeddedStore;
    use async_trait::async_trait;

    /// The embedded store posing as a shared one (as DynamoDB is).
    struct Shared(EmbeddedStore);

    #[async_trait]
    impl StateStore for Shared {
        async fn get(&self, key: &Key) -> Result<Option<Item>> {
            self.0.get(key).await
        }
        async fn put(&self, item: Item, condition: Condition) -> Result<PutOutcome> {
            self.0.put(item, condition).await
        }
        async fn delete(&self, key: &Key, condition: Condition) -> Result<bool> {
            self.0.delete(key, condition).await
        }
        async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
            self.0.query(pk, sk_prefix).await
        }
        async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>> {
            self.0.batch_get(keys).await
        }
        async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
            self.0.batch_put(items).await
        }
    }

    /// `begin` on a key whose live lock (a minute left) was taken by `holder`.
    async fn begin_over_a_lock_of(store: Arc<dyn StateStore>, holder: &str) -> Claim {
        let idem = Idempotency::new(Arc::clone(&store), Duration::from_secs(3600));
        let payload = serde_json::json!({"order": 1});
        let left = Record {
            status: RecordStatus::InProgress,
            lock_expires_at: now_epoch_millis() + 60_000,
            payload_hash: payload_hash(&payload),
            result: None,
            holder: Some(holder.to_string()),
        };
        let written = store.put(idem.item("order-1", &left, 1).unwrap(), Condition::Absent).await.unwrap();
        assert_eq!(written, PutOutcome::Written);
        idem.begin("order-1", &payload, now_epoch_millis() + 60_000).await.unwrap()
    }

    #[tokio::test]
    async fn a_dead_processs_lock_in_a_one_process_store_is_taken_over_at_once() {
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::in_memory().unwrap());
        let claim = begin_over_a_lock_of(store, "1-0-killed").await;
        assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
    }

    #[tokio::test]
    async fn a_live_lock_stands_in_a_shared_store_and_for_this_process() {
        let shared: Arc<dyn StateStore> = Arc::new(Shared(EmbeddedStore::in_memory().unwrap()));
        let claim = begin_over_a_lock_of(shared, "1-0-another-lambda").await;
        assert!(matches!(claim, Claim::InProgress { .. }), "{claim:?}");
        let own: Arc<dyn StateStore> = Arc::new(EmbeddedStore::in_memory().unwrap());
        let claim = begin_over_a_lock_of(own, process_id()).await;
        assert!(matches!(claim, Claim::InProgress { .. }), "{claim:?}");
    }
}
