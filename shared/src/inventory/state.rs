//! The inventory's state: an index of chunk references (paged) and the chunks themselves.

use super::{InventoryPoll, Run};
use crate::brightpearl::idset;
use crate::error::{Error, Result};
use crate::state::{Condition, Item, Key};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const PK: &str = "inventory";
pub(super) const META_SK: &str = "meta";
pub(super) const PAGE_PREFIX: &str = "page#";
pub(super) const CHUNK_PK: &str = "inventory#chunk";
/// Products per chunk: one availability request each (Brightpearl's ID-set cap).
/// Chunk references per index page, so a page stays far below DynamoDB's 400 KB item limit.
pub(super) const CHUNKS_PER_PAGE: usize = 100;
/// Chunks held in memory before their updates are pushed and their state written back.

// ---- persisted shapes ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) cursor: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) next_chunk: u32,
    /// When a change-driven poll last refreshed the mapping (found nothing new, or mapped it).
    #[serde(default)]
    pub(super) mapping_polled: Option<DateTime<Utc>>,
    /// When the last complete sweep started.
    #[serde(default)]
    pub(super) last_sweep: Option<DateTime<Utc>>,
    /// Where the change-driven poll reads goods movements from (the start of the last run
    /// that saw everything).
    #[serde(default)]
    pub(super) changes_cursor: Option<DateTime<Utc>>,
    /// Goods movements the last change-driven poll saw (an ID set): the next one reads from
    /// its cursor less a slack, for search lag, and skips these.
    #[serde(default)]
    pub(super) seen_movements: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Page {
    pub(super) chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChunkRef {
    pub(super) id: u32,
    /// The chunk's product ids as an ID set.
    pub(super) ids: String,
    #[serde(default)]
    pub(super) stores: BTreeMap<String, StoreRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct StoreRef {
    /// Mapped SKUs of the chunk on this store.
    pub(super) n: u32,
    /// Fingerprint of the availability the chunk was last fully settled at; None = pending.
    #[serde(default)]
    pub(super) fp: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Chunk {
    pub(super) products: BTreeMap<u64, Mapped>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Mapped {
    pub(super) sku: String,
    /// Stores where the SKU exists.
    pub(super) stores: BTreeMap<String, Settled>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Settled {
    /// Desired quantity last settled; None = pending (push again).
    #[serde(default)]
    pub(super) d: Option<i64>,
    /// The channel's quantity as last known (what we pushed, or what a conflict showed).
    #[serde(default)]
    pub(super) p: Option<i64>,
}

pub(super) struct Index {
    pub(super) meta: Meta,
    pub(super) meta_exists: bool,
    pub(super) meta_dirty: bool,
    pub(super) pages: Vec<Page>,
    pub(super) dirty_pages: BTreeSet<usize>,
}

impl Index {
    pub(super) fn chunk_ids(&self) -> Result<HashMap<u64, (usize, usize)>> {
        let mut out = HashMap::new();
        for (pi, page) in self.pages.iter().enumerate() {
            for (ci, c) in page.chunks.iter().enumerate() {
                if c.ids.is_empty() {
                    continue;
                }
                for id in idset::parse(&c.ids)? {
                    out.insert(id, (pi, ci));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn positions(&self) -> Vec<(usize, usize)> {
        self.pages
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| (0..p.chunks.len()).map(move |ci| (pi, ci)))
            .collect()
    }
}

impl InventoryPoll {
    // ---- index ----

    pub(super) async fn load_index(&self, run: &mut Run) -> Result<Index> {
        let items = self.state.query(PK, "").await?;
        run.report.state_reads += items.len().max(1) as u64;
        let mut index = Index {
            meta: Meta::default(),
            meta_exists: false,
            meta_dirty: false,
            pages: Vec::new(),
            dirty_pages: BTreeSet::new(),
        };
        let mut pages: BTreeMap<String, Page> = BTreeMap::new();
        for item in items {
            if item.sk == META_SK {
                index.meta = decode(item.data, "inventory meta")?;
                index.meta_exists = true;
            } else if item.sk.starts_with(PAGE_PREFIX) {
                pages.insert(item.sk.clone(), decode(item.data, "inventory page")?);
            }
        }
        index.pages = pages.into_values().collect();
        Ok(index)
    }

    pub(super) async fn save_index(&self, index: &mut Index, run: &mut Run) -> Result<()> {
        for pi in std::mem::take(&mut index.dirty_pages) {
            let data = encode(&index.pages[pi])?;
            self.state.put(Item::new(PK, page_sk(pi), data), Condition::Always).await?;
            run.report.state_writes += 1;
        }
        if index.meta_dirty {
            self.state.put(Item::new(PK, META_SK, encode(&index.meta)?), Condition::Always).await?;
            run.report.state_writes += 1;
            index.meta_dirty = false;
        }
        Ok(())
    }

    pub(super) async fn load_chunk(&self, id: u32, run: &mut Run) -> Result<Chunk> {
        run.report.state_reads += 1;
        match self.state.get(&Key::new(CHUNK_PK, chunk_sk(id))).await? {
            Some(item) => decode(item.data, "inventory chunk"),
            None => Ok(Chunk::default()),
        }
    }

    pub(super) async fn save_chunk(&self, id: u32, chunk: &Chunk, run: &mut Run) -> Result<()> {
        self.state.put(Item::new(CHUNK_PK, chunk_sk(id), encode(chunk)?), Condition::Always).await?;
        run.report.state_writes += 1;
        Ok(())
    }
}

pub(super) fn page_sk(page: usize) -> String {
    format!("{PAGE_PREFIX}{page:04}")
}

pub(super) fn chunk_sk(id: u32) -> String {
    format!("{id:06}")
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(data: Value, what: &str) -> Result<T> {
    serde_json::from_value(data).map_err(|e| Error::State(format!("{what} is unreadable: {e}")))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::State(e.to_string()))
}

pub(super) fn idset_len(set: &str) -> usize {
    if set.is_empty() { 0 } else { idset::parse(set).map_or(0, |ids| ids.len()) }
}
