//! Embedded state in one redb file: survives a restart, needs no AWS. Writes run in redb
//! write transactions, which are serialised, so conditional puts are atomic.

use super::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_seconds};
use crate::error::{Error, Result};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
/// Separates pk from sk in the redb key; cannot appear in our keys.
const SEPARATOR: char = '\u{0}';

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn state_err(e: impl std::fmt::Display) -> Error {
    Error::State(format!("embedded store: {e}"))
}

fn encode_key(pk: &str, sk: &str) -> String {
    format!("{pk}{SEPARATOR}{sk}")
}

/// The page cache of the embedded store (see `open`).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its parent folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(state_err)?;
        }
        // redb's page cache defaults to 1 GiB and keeps every page a run wrote or read: a cold
        // 100k-SKU inventory sweep peaked at 158 MB RSS, two thirds of it that cache (massif).
        // The state is read by key, so a small cache costs little.
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::State(format!(
                "embedded store: {} is in use by another pearlsync process (is `pearlsync serve` running?)",
                path.display()
            )),
            other => state_err(other),
        })?;
        Self::init(db)
    }

    /// A store that lives in memory only, for unit tests and throwaway runs.
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(state_err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self> {
        let txn = db.begin_write().map_err(state_err)?;
        txn.open_table(ITEMS).map_err(state_err)?;
        txn.commit().map_err(state_err)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// The database itself, for the durable local queue, which keeps its tables in the same
    /// file (redb locks a file to one process, so state and queue must share one handle).
    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(state_err)?
    }
}

fn decode(bytes: &[u8]) -> Result<Item> {
    serde_json::from_slice(bytes).map_err(state_err)
}

/// Whether a conditional write may go ahead over `current` (the live item, if any).
fn holds(condition: Condition, current: Option<&Item>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::Absent => current.is_none(),
        Condition::VersionIs(v) => current.is_some_and(|c| c.version == v),
    }
}

fn live(item: Item, now: i64) -> Option<Item> {
    (!item.is_expired(now)).then_some(item)
}

#[async_trait]
impl StateStore for EmbeddedStore {
    fn held_by_this_process_alone(&self) -> bool {
        true
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let k = encode_key(&key.pk, &key.sk);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(state_err)?;
            let table = txn.open_table(ITEMS).map_err(state_err)?;
            match table.get(k.as_str()).map_err(state_err)? {
                Some(v) => Ok(live(decode(v.value())?, now_epoch_seconds())),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<PutOutcome> {
        self.blocking(move |db| {
            let k = encode_key(&item.pk, &item.sk);
            let body = serde_json::to_vec(&item).map_err(state_err)?;
            let txn = db.begin_write().map_err(state_err)?;
            let outcome = {
                let mut table = txn.open_table(ITEMS).map_err(state_err)?;
                let current = match table.get(k.as_str()).map_err(state_err)? {
                    Some(v) => live(decode(v.value())?, now_epoch_seconds()),
                    None => None,
                };
                if holds(condition, current.as_ref()) {
                    table.insert(k.as_str(), body.as_slice()).map_err(state_err)?;
                    PutOutcome::Written
                } else {
                    PutOutcome::ConditionFailed { current }
                }
            };
            if outcome == PutOutcome::Written {
                txn.commit().map_err(state_err)?;
            } else {
                txn.abort().map_err(state_err)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<bool> {
        let k = encode_key(&key.pk, &key.sk);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(state_err)?;
            let deleted = {
                let mut table = txn.open_table(ITEMS).map_err(state_err)?;
                let current = match table.get(k.as_str()).map_err(state_err)? {
                    Some(v) => live(decode(v.value())?, now_epoch_seconds()),
                    None => None,
                };
                let allowed = holds(condition, current.as_ref());
                if allowed {
                    table.remove(k.as_str()).map_err(state_err)?;
                }
                allowed
            };
            txn.commit().map_err(state_err)?;
            Ok(deleted)
        })
        .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let start = encode_key(pk, sk_prefix);
        self.blocking(move |db| {
            let now = now_epoch_seconds();
            let txn = db.begin_read().map_err(state_err)?;
            let table = txn.open_table(ITEMS).map_err(state_err)?;
            let mut items = Vec::new();
            for entry in table.range(start.as_str()..).map_err(state_err)? {
                let (k, v) = entry.map_err(state_err)?;
                if !k.value().starts_with(start.as_str()) {
                    break;
                }
                if let Some(item) = live(decode(v.value())?, now) {
                    items.push(item);
                }
            }
            Ok(items)
        })
        .await
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>> {
        let mut encoded: Vec<String> = keys.iter().map(|k| encode_key(&k.pk, &k.sk)).collect();
        encoded.sort();
        encoded.dedup();
        self.blocking(move |db| {
            let now = now_epoch_seconds();
            let txn = db.begin_read().map_err(state_err)?;
            let table = txn.open_table(ITEMS).map_err(state_err)?;
            let mut items = Vec::with_capacity(encoded.len());
            for k in &encoded {
                if let Some(v) = table.get(k.as_str()).map_err(state_err)?
                    && let Some(item) = live(decode(v.value())?, now)
                {
                    items.push(item);
                }
            }
            Ok(items)
        })
        .await
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(state_err)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(state_err)?;
                for item in &items {
                    let body = serde_json::to_vec(item).map_err(state_err)?;
                    table
                        .insert(encode_key(&item.pk, &item.sk).as_str(), body.as_slice())
                        .map_err(state_err)?;
                }
            }
            txn.commit().map_err(state_err)
        })
        .await
    }
}
