//! The state seam: one table of string `pk`/`sk` items with a JSON body, a version for
//! optimistic concurrency and an optional TTL (`expires_at`, epoch seconds).
//! DynamoDB on AWS, an embedded redb file on one machine; the same contract tests run on both.

mod dynamo;
mod embedded;
pub mod idempotency;

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;

use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One stored record. `data` is free-form JSON owned by the module that writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub data: serde_json::Value,
    /// Bumped by the writer on every conditional update; stores keep it as given.
    pub version: u64,
    /// Epoch seconds after which the item counts as absent (DynamoDB TTL deletes it later).
    pub expires_at: Option<i64>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, data: serde_json::Value) -> Self {
        Item { pk: pk.into(), sk: sk.into(), data, version: 1, expires_at: None }
    }

    pub fn with_expiry(mut self, expires_at: i64) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn key(&self) -> Key {
        Key { pk: self.pk.clone(), sk: self.sk.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key { pk: pk.into(), sk: sk.into() }
    }
}

/// When a conditional write may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Write unconditionally.
    Always,
    /// Only if no live item has this key (absent, or past its `expires_at`).
    Absent,
    /// Only if the live item has exactly this version.
    VersionIs(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    Written,
    /// The condition did not hold; `current` is the live item, if there is one.
    ConditionFailed {
        current: Option<Item>,
    },
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// The live item under the key; expired items read as absent.
    async fn get(&self, key: &Key) -> Result<Option<Item>>;

    async fn put(&self, item: Item, condition: Condition) -> Result<PutOutcome>;

    /// Delete; with `VersionIs`, only that version. Returns false when the condition failed.
    async fn delete(&self, key: &Key, condition: Condition) -> Result<bool>;

    /// Live items of one partition whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>>;

    /// Live items for many keys, in no particular order; missing keys are left out.
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>>;

    /// Unconditional writes of many items, retried until every item is stored.
    async fn batch_put(&self, items: Vec<Item>) -> Result<()>;

    /// True when no other process can use this store while this one has it open (the embedded
    /// redb file is locked to one process): whatever another process left in it, that process
    /// is gone. Shared stores (DynamoDB) say false.
    fn held_by_this_process_alone(&self) -> bool {
        false
    }
}

pub fn now_epoch_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn now_epoch_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
