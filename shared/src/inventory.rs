//! inventory-poll (issue 5): Brightpearl availability to every channel, aggregated per store,
//! buffered, and pushed as deltas, on a schedule and on `StockChanged` jobs.
//!
//! Rules (where the issue is silent):
//! - Brightpearl is the source of truth: a store's desired quantity is its buffer rules applied
//!   to the sum of `onHand` over its warehouses (all warehouses, i.e. `total.onHand`, when the
//!   store lists none). Products absent from the availability answer (not stock-tracked) are
//!   skipped.
//! - Scope: products whose SKU resolves on at least one store. The mapping (product id → SKU →
//!   stores) is persisted in chunks of ≤ 200 products and refreshed from the products Brightpearl
//!   reports as updated since a stored cursor, plus any unknown id a `StockChanged` job names.
//! - A SKU is pushed to a store when its desired quantity differs from the desired quantity last
//!   settled for it, and the channel is not already known to hold it.
//! - Compare-and-set conflict (a manual edit on the channel): nothing is overwritten. The
//!   channel's value becomes the baseline and the conflict is reported; the SKU is pushed again
//!   (with compare-and-set against that value) only when its desired quantity changes, or by a
//!   reconcile run. A conflict whose channel value already equals the desired one counts as
//!   pushed (our earlier write landed but was not recorded).
//! - Reconcile reads every mapped SKU's channel quantity and repairs each difference, listing it.
//! - A store whose push fails stops receiving pushes for the rest of the run; its unsettled SKUs
//!   stay pending (their chunk fingerprint is cleared) so the next run retries exactly them.
//!   Pushes are absolute, so a concurrent or repeated run can only repeat a write, not skew it.
//!
//! State layout (one table):
//! - `inventory` / `meta`: the mapping cursor and the next chunk id.
//! - `inventory` / `page#NNNN`: up to 100 chunk references each: the chunk's product ids (an ID
//!   set) and, per store, its mapped-SKU count and the fingerprint of the availability it was
//!   last settled at. A full poll reads these pages (one query) and only loads the chunks whose
//!   fingerprint moved, so reads and writes grow with the changes, not with the catalogue.
//! - `inventory#chunk` / `NNNNNN`: per product, its SKU and per store the last settled desired
//!   quantity (`d`) and the channel's quantity as last known (`p`).

use crate::batch::{self, BatchMessage, BatchReport, Outcome, WaveHandler};
use crate::brightpearl::{Availability, BrightpearlApi, idset};
use crate::channels::{ChannelSet, QuantityUpdate, SalesChannel, StoreConfig};
use crate::error::{Error, Result};
use crate::freshness::{self, Flow};
use crate::lambda::{self, Trigger};
use crate::metrics::{Metrics, names};
use crate::queue::{ChannelKind, Job};
use crate::state::{Condition, Item, Key, StateStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

const PK: &str = "inventory";
const META_SK: &str = "meta";
const PAGE_PREFIX: &str = "page#";
const CHUNK_PK: &str = "inventory#chunk";
/// Products per chunk: one availability request each (Brightpearl's ID-set cap).
const CHUNK_SIZE: usize = 200;
/// Chunk references per index page, so a page stays far below DynamoDB's 400 KB item limit.
const CHUNKS_PER_PAGE: usize = 100;
/// Chunks held in memory before their updates are pushed and their state written back.
const WINDOW_CHUNKS: usize = 10;
/// SKUs per mapping step (channel resolution and chunk updates), to bound memory.
const MAPPING_BATCH: usize = 1_000;
/// Products updated shortly before the cursor are read again, for clock skew.
const CURSOR_SLACK_MINUTES: i64 = 5;

/// `[inventory]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// Scheduled runs reconcile (read every channel quantity and repair drift) unless the
    /// event says `"reconcile": false`. Env `PEARLSYNC_INVENTORY_RECONCILE`.
    #[serde(default)]
    pub reconcile: bool,
    /// Stores whose own quantity edits are held back: a compare-and-set that finds the
    /// store's figure moved is reported as a conflict, not overwritten. Elsewhere Brightpearl
    /// is the truth: the store's own sales move its figure all the time, so a stale compare is
    /// re-read and written again at once.
    #[serde(default)]
    pub respect_manual_edits: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollTrigger {
    /// Everything mapped: a delta sync, or a drift repair when `reconcile`.
    Full { reconcile: bool },
    /// Only these Brightpearl products (a `StockChanged` job).
    Products(Vec<u64>),
}

/// What one run did, for the Lambda response, the log line and the benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    /// `full`, `reconcile` or `products`.
    pub mode: String,
    /// Products whose availability was read.
    pub products_read: usize,
    /// Chunks whose availability moved (or were forced by reconcile or a targeted run).
    pub chunks_changed: usize,
    pub mapping_added: usize,
    pub mapping_removed: usize,
    pub brightpearl_requests: u64,
    /// State items read and written by this module (channel SKU caches not included).
    pub state_reads: u64,
    pub state_writes: u64,
    pub channels: Vec<ChannelReport>,
}

/// A SKU whose store quantity differs from what Brightpearl says it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub sku: String,
    pub expected: i64,
    pub shown: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    pub name: String,
    /// SKUs mapped to this store.
    pub skus_mapped: usize,
    /// Mapped SKUs of this store whose availability this run read.
    pub skus_read: usize,
    /// SKUs whose desired quantity differed from the one last settled.
    pub changed: usize,
    pub pushed: usize,
    /// Manual edits found by compare-and-set: (SKU, the channel's quantity). Not overwritten.
    pub conflicts: Vec<(String, i64)>,
    /// Reconcile only: drift repaired.
    pub repaired: Vec<Repair>,
    /// SKUs not written, with the reason; retried next run.
    pub failures: Vec<(String, String)>,
    /// The store's push failed as a whole (it got no more pushes this run).
    pub error: Option<String>,
    /// HTTP requests made to the store.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub sku: String,
    /// The channel's quantity before (None when the channel had no level).
    pub from: Option<i64>,
    pub to: i64,
}

// ---- persisted shapes ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    cursor: Option<DateTime<Utc>>,
    #[serde(default)]
    next_chunk: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Page {
    chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkRef {
    id: u32,
    /// The chunk's product ids as an ID set.
    ids: String,
    #[serde(default)]
    stores: BTreeMap<String, StoreRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StoreRef {
    /// Mapped SKUs of the chunk on this store.
    n: u32,
    /// Fingerprint of the availability the chunk was last fully settled at; None = pending.
    #[serde(default)]
    fp: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Chunk {
    products: BTreeMap<u64, Mapped>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Mapped {
    sku: String,
    /// Stores where the SKU exists.
    stores: BTreeMap<String, Settled>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Settled {
    /// Desired quantity last settled; None = pending (push again).
    #[serde(default)]
    d: Option<i64>,
    /// The channel's quantity as last known (what we pushed, or what a conflict showed).
    #[serde(default)]
    p: Option<i64>,
}

struct Index {
    meta: Meta,
    meta_exists: bool,
    meta_dirty: bool,
    pages: Vec<Page>,
    dirty_pages: BTreeSet<usize>,
}

impl Index {
    fn chunk_ids(&self) -> Result<HashMap<u64, (usize, usize)>> {
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

    fn positions(&self) -> Vec<(usize, usize)> {
        self.pages
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| (0..p.chunks.len()).map(move |ci| (pi, ci)))
            .collect()
    }
}

/// One loaded chunk in the push window.
struct Work {
    pos: (usize, usize),
    chunk: Chunk,
    original: Chunk,
    ids: Vec<u64>,
    availability: HashMap<u64, Availability>,
    /// Per store, the fingerprint to record once every SKU settled (None for targeted runs).
    fingerprints: BTreeMap<String, String>,
    /// Stores with a SKU left pending in this chunk.
    pending: BTreeSet<String>,
}

struct Run {
    report: PollReport,
    by_store: BTreeMap<String, ChannelReport>,
    down: BTreeSet<String>,
}

/// Longest a run may hold its lease: the Lambda timeout (15 minutes).
const RUN_LEASE: std::time::Duration = std::time::Duration::from_secs(900);

pub struct InventoryPoll {
    brightpearl: Arc<dyn BrightpearlApi>,
    channels: Arc<ChannelSet>,
    state: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    config: InventoryConfig,
}

impl InventoryPoll {
    pub fn from_parts(
        brightpearl: Arc<dyn BrightpearlApi>,
        channels: Arc<ChannelSet>,
        state: Arc<dyn StateStore>,
        metrics: Arc<Metrics>,
        config: InventoryConfig,
    ) -> Self {
        InventoryPoll { brightpearl, channels, state, metrics, config }
    }

    /// One Lambda invocation: a schedule (`"reconcile": true|false` overrides the config) or
    /// a `stock` queue batch. Returns the report, or the partial-batch answer for SQS.
    pub async fn handle_event(&self, event: Value) -> Result<Value> {
        let answer = match lambda::classify(event) {
            Trigger::Sqs(messages) => Ok(lambda::batch_response(&self.handle_batch(messages).await)),
            Trigger::Schedule { input, .. } => {
                let reconcile =
                    input.get("reconcile").and_then(Value::as_bool).unwrap_or(self.config.reconcile);
                self.run(PollTrigger::Full { reconcile }).await.and_then(|report| {
                    serde_json::to_value(report).map_err(|e| Error::BadInput(e.to_string()))
                })
            }
            Trigger::Other(other) => Err(Error::BadInput(format!("not an inventory-poll event: {other}"))),
        };
        self.metrics.flush();
        answer
    }

    /// A `stock` queue batch: all product ids of the batch's `StockChanged` jobs in one
    /// targeted run. Other job kinds are parked.
    pub async fn handle_batch(&self, messages: Vec<BatchMessage>) -> BatchReport {
        batch::process_batch(messages, self).await
    }

    /// Read-only drift report for one store: every catalogue SKU the store lists, with what
    /// Brightpearl's availability and the store's rules say it should show, where the store
    /// shows something else. Writes nothing (`reconcile: true` repairs). Costs a catalogue
    /// sweep and ceil(N/200) availability reads: an operator's command, not a schedule.
    pub async fn drift(&self, store_name: &str) -> Result<Vec<Drift>> {
        let channel = self
            .channels
            .get(store_name)
            .ok_or_else(|| Error::config("store", format!("no store named {store_name:?}")))?;
        let store = channel.store();
        let catalogue = self.brightpearl.product_skus_since(None).await?;
        let mut drift = Vec::new();
        for chunk in catalogue.chunks(CHUNK_SIZE) {
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let availability = self.brightpearl.availability(&ids).await?;
            let skus: Vec<String> = chunk.iter().map(|(_, sku)| sku.clone()).collect();
            let shown = channel.read_quantities(&skus).await?;
            for (id, sku) in chunk {
                let (Some(a), Some(&channel_quantity)) = (availability.get(id), shown.get(sku)) else {
                    continue;
                };
                let expected = store.apply_buffer(available(store, a), sku);
                if expected != channel_quantity {
                    drift.push(Drift { sku: sku.clone(), expected, shown: channel_quantity });
                }
            }
        }
        Ok(drift)
    }

    /// One run at a time: a full poll that finds another run in progress reports
    /// `mode = "skipped"`; a targeted run fails as retryable so its jobs come back later.
    pub async fn run(&self, trigger: PollTrigger) -> Result<PollReport> {
        let targeted = matches!(trigger, PollTrigger::Products(_));
        let exclusive = crate::state::idempotency::run_exclusively(
            Arc::clone(&self.state),
            "inventory",
            RUN_LEASE,
            self.run_unlocked(trigger),
        )
        .await?;
        match exclusive {
            Some(report) => Ok(report),
            None if targeted => Err(Error::State("another inventory run is in progress".into())),
            None => Ok(PollReport { mode: "skipped".into(), ..PollReport::default() }),
        }
    }

    async fn run_unlocked(&self, trigger: PollTrigger) -> Result<PollReport> {
        let bp_before = self.brightpearl.stats().requests;
        let ch_before: BTreeMap<String, u64> =
            self.channels.iter().map(|c| (c.store().name.clone(), c.stats().requests)).collect();
        let mut run = Run {
            report: PollReport::default(),
            by_store: self
                .channels
                .iter()
                .map(|c| {
                    let name = c.store().name.clone();
                    (name.clone(), ChannelReport { name, ..ChannelReport::default() })
                })
                .collect(),
            down: BTreeSet::new(),
        };
        let mut index = self.load_index(&mut run).await?;
        let outcome = match &trigger {
            PollTrigger::Full { reconcile } => {
                run.report.mode = if *reconcile { "reconcile" } else { "full" }.into();
                match self.refresh_mapping(&mut index, &mut run).await {
                    Ok(()) => self.sweep(&mut index, &mut run, *reconcile, None).await,
                    Err(e) => Err(e),
                }
            }
            PollTrigger::Products(ids) => {
                run.report.mode = "products".into();
                self.targeted(&mut index, &mut run, ids).await
            }
        };
        // Whatever settled before a failure is kept.
        let saved = self.save_index(&mut index, &mut run).await;
        outcome?;
        saved?;

        for (name, r) in run.by_store.iter_mut() {
            r.skus_mapped = index
                .pages
                .iter()
                .flat_map(|p| &p.chunks)
                .map(|c| c.stores.get(name).map_or(0, |s| s.n as usize))
                .sum();
            let now = self.channels.get(name).map_or(0, |c| c.stats().requests);
            r.requests = now.saturating_sub(ch_before.get(name).copied().unwrap_or(0));
        }
        let mut report = run.report;
        report.channels = run.by_store.into_values().collect();
        if matches!(trigger, PollTrigger::Full { .. }) {
            // Freshness per store: what the "inventory stopped" alarms read.
            let all: Vec<&str> = report.channels.iter().map(|c| c.name.as_str()).collect();
            let ok: Vec<&str> =
                report.channels.iter().filter(|c| c.error.is_none()).map(|c| c.name.as_str()).collect();
            let started_ms = crate::state::now_epoch_millis();
            if let Err(e) =
                freshness::record_run(self.state.as_ref(), Flow::InventoryPoll, &all, &ok, started_ms).await
            {
                tracing::warn!(error = %e, "inventory freshness not recorded");
            }
        }
        report.brightpearl_requests = self.brightpearl.stats().requests.saturating_sub(bp_before);
        let pushed: usize = report.channels.iter().map(|c| c.pushed).sum();
        self.metrics.count(names::SKUS_PUSHED, pushed as u64);
        self.metrics.count(names::BRIGHTPEARL_REQUESTS, report.brightpearl_requests);
        tracing::info!(
            report = %serde_json::to_string(&report).unwrap_or_default(),
            "inventory poll finished"
        );
        Ok(report)
    }

    // ---- index ----

    async fn load_index(&self, run: &mut Run) -> Result<Index> {
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

    async fn save_index(&self, index: &mut Index, run: &mut Run) -> Result<()> {
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

    async fn load_chunk(&self, id: u32, run: &mut Run) -> Result<Chunk> {
        run.report.state_reads += 1;
        match self.state.get(&Key::new(CHUNK_PK, chunk_sk(id))).await? {
            Some(item) => decode(item.data, "inventory chunk"),
            None => Ok(Chunk::default()),
        }
    }

    async fn save_chunk(&self, id: u32, chunk: &Chunk, run: &mut Run) -> Result<()> {
        self.state.put(Item::new(CHUNK_PK, chunk_sk(id), encode(chunk)?), Condition::Always).await?;
        run.report.state_writes += 1;
        Ok(())
    }

    // ---- mapping ----

    /// Products updated since the cursor (everything on the first run) join, change or leave
    /// the mapping. The cursor moves only when something was read, so a quiet poll writes
    /// nothing.
    async fn refresh_mapping(&self, index: &mut Index, run: &mut Run) -> Result<()> {
        let started = Utc::now();
        let since = index.meta.cursor.map(|c| c - chrono::Duration::minutes(CURSOR_SLACK_MINUTES));
        let rows = self.brightpearl.product_skus_since(since).await?;
        let read_any = !rows.is_empty();
        self.apply_mapping(index, rows, run).await?;
        // A store that could not resolve SKUs must see these products again next run, so the
        // cursor stays where it was.
        if run.down.is_empty() && (read_any || !index.meta_exists) {
            index.meta.cursor = Some(started);
            index.meta_exists = true;
            index.meta_dirty = true;
        }
        Ok(())
    }

    /// Adds, updates or removes products given (id, SKU) from Brightpearl, resolving each SKU
    /// on every store. Only chunks that actually change are written.
    async fn apply_mapping(&self, index: &mut Index, rows: Vec<(u64, String)>, run: &mut Run) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut located = index.chunk_ids()?;
        for batch in rows.chunks(MAPPING_BATCH) {
            let skus: Vec<String> = batch.iter().map(|(_, s)| s.clone()).collect();
            let mut presence: HashMap<&str, Vec<String>> = HashMap::new();
            for channel in self.channels.iter() {
                let name = channel.store().name.clone();
                if run.down.contains(&name) {
                    continue;
                }
                // A store that cannot resolve SKUs keeps its mapping as it was and gets no
                // pushes this run; the other stores go on.
                let found = match channel.resolve_skus(&skus).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(store = %name, error = %e, "resolving SKUs failed; the store is skipped this run");
                        if let Some(r) = run.by_store.get_mut(&name) {
                            r.error = Some(format!("resolving SKUs: {e}"));
                        }
                        run.down.insert(name);
                        continue;
                    }
                };
                for (_, sku) in batch {
                    if found.contains_key(sku) {
                        presence.entry(sku.as_str()).or_default().push(name.clone());
                    }
                }
            }
            // Existing products: load their chunks once.
            let mut touched: BTreeMap<u32, (Chunk, Chunk)> = BTreeMap::new();
            let mut additions: Vec<(u64, Mapped)> = Vec::new();
            for (id, sku) in batch {
                let stores: Vec<String> = presence.get(sku.as_str()).cloned().unwrap_or_default();
                match located.get(id).copied() {
                    Some((pi, ci)) => {
                        let chunk_id = index.pages[pi].chunks[ci].id;
                        if let std::collections::btree_map::Entry::Vacant(slot) = touched.entry(chunk_id) {
                            let chunk = self.load_chunk(chunk_id, run).await?;
                            slot.insert((chunk.clone(), chunk));
                        }
                        let Some((chunk, _)) = touched.get_mut(&chunk_id) else { continue };
                        let on_a_down_store = chunk
                            .products
                            .get(id)
                            .is_some_and(|e| e.stores.keys().any(|s| run.down.contains(s)));
                        if stores.is_empty() && !on_a_down_store {
                            chunk.products.remove(id);
                            located.remove(id);
                            run.report.mapping_removed += 1;
                            continue;
                        }
                        let entry = chunk
                            .products
                            .entry(*id)
                            .or_insert_with(|| Mapped { sku: sku.clone(), stores: BTreeMap::new() });
                        if entry.sku != *sku {
                            // A new SKU is a new listing: nothing is known about it yet.
                            *entry = Mapped { sku: sku.clone(), stores: BTreeMap::new() };
                        }
                        entry.stores.retain(|s, _| stores.contains(s) || run.down.contains(s));
                        for s in stores {
                            entry.stores.entry(s).or_default();
                        }
                    }
                    None if !stores.is_empty() => additions.push((
                        *id,
                        Mapped {
                            sku: sku.clone(),
                            stores: stores.into_iter().map(|s| (s, Settled::default())).collect(),
                        },
                    )),
                    None => {}
                }
            }
            // New products fill the last chunk, then new ones.
            for (id, mapped) in additions {
                let open = index
                    .pages
                    .last()
                    .and_then(|p| p.chunks.last())
                    .filter(|c| idset_len(&c.ids) < CHUNK_SIZE)
                    .map(|c| c.id);
                let chunk_id = match open {
                    Some(id) => id,
                    None => {
                        let id = index.meta.next_chunk;
                        index.meta.next_chunk += 1;
                        index.meta_dirty = true;
                        if index.pages.last().is_none_or(|p| p.chunks.len() >= CHUNKS_PER_PAGE) {
                            index.pages.push(Page::default());
                        }
                        let pi = index.pages.len() - 1;
                        index.pages[pi].chunks.push(ChunkRef {
                            id,
                            ids: String::new(),
                            stores: BTreeMap::new(),
                        });
                        touched.insert(id, (Chunk::default(), Chunk::default()));
                        id
                    }
                };
                if let std::collections::btree_map::Entry::Vacant(slot) = touched.entry(chunk_id) {
                    let chunk = self.load_chunk(chunk_id, run).await?;
                    slot.insert((chunk.clone(), chunk));
                }
                if let Some((chunk, _)) = touched.get_mut(&chunk_id) {
                    chunk.products.insert(id, mapped);
                    run.report.mapping_added += 1;
                }
                // Keep the reference's id list current so the next addition sees the fill.
                self.sync_ref(index, chunk_id, touched.get(&chunk_id).map(|(c, _)| c));
                let pi = index.pages.len() - 1;
                if let Some(ci) = index.pages[pi].chunks.iter().position(|c| c.id == chunk_id) {
                    located.insert(id, (pi, ci));
                }
            }
            for (chunk_id, (chunk, original)) in touched {
                if chunk != original {
                    self.sync_ref(index, chunk_id, Some(&chunk));
                    self.save_chunk(chunk_id, &chunk, run).await?;
                }
            }
        }
        Ok(())
    }

    /// Rewrites a chunk reference's id list and per-store counts from the chunk, clearing
    /// fingerprints of stores whose SKUs changed so the next sweep settles them.
    fn sync_ref(&self, index: &mut Index, chunk_id: u32, chunk: Option<&Chunk>) {
        let Some(chunk) = chunk else { return };
        for (pi, page) in index.pages.iter_mut().enumerate() {
            let Some(c) = page.chunks.iter_mut().find(|c| c.id == chunk_id) else { continue };
            let ids: Vec<u64> = chunk.products.keys().copied().collect();
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for m in chunk.products.values() {
                for s in m.stores.keys() {
                    *counts.entry(s.clone()).or_default() += 1;
                }
            }
            let stores: BTreeMap<String, StoreRef> = counts
                .into_iter()
                .map(|(s, n)| {
                    let fp = c.stores.get(&s).filter(|r| r.n == n).and_then(|r| r.fp.clone());
                    (s, StoreRef { n, fp })
                })
                .collect();
            let ids = idset::encode(&ids);
            // Any membership change invalidates fingerprints: a new SKU must be settled.
            let stores = if ids != c.ids {
                stores.into_iter().map(|(s, r)| (s, StoreRef { fp: None, ..r })).collect()
            } else {
                stores
            };
            if c.ids != ids || c.stores != stores {
                c.ids = ids;
                c.stores = stores;
                index.dirty_pages.insert(pi);
            }
            return;
        }
    }

    // ---- sweeps ----

    async fn targeted(&self, index: &mut Index, run: &mut Run, ids: &[u64]) -> Result<()> {
        let located = index.chunk_ids()?;
        let unknown: Vec<u64> = ids.iter().copied().filter(|id| !located.contains_key(id)).collect();
        if !unknown.is_empty() {
            let rows: Vec<(u64, String)> = self
                .brightpearl
                .products(&unknown)
                .await?
                .into_iter()
                .filter_map(|p| p.sku.filter(|s| !s.is_empty()).map(|sku| (p.id, sku)))
                .collect();
            self.apply_mapping(index, rows, run).await?;
        }
        let targets: HashSet<u64> = ids.iter().copied().collect();
        self.sweep(index, run, false, Some(&targets)).await
    }

    /// Chunk by chunk: read availability, decide which stores need a look, load those chunks,
    /// and push a window of chunks at a time.
    async fn sweep(
        &self,
        index: &mut Index,
        run: &mut Run,
        reconcile: bool,
        targets: Option<&HashSet<u64>>,
    ) -> Result<()> {
        let config_prints: BTreeMap<String, String> =
            self.channels.iter().map(|c| (c.store().name.clone(), store_print(c.store()))).collect();
        // A targeted run reads all its ids at once: one ID set per 200, whatever their chunks.
        let mut prefetched = match targets {
            Some(t) => {
                let ids: Vec<u64> = t.iter().copied().collect();
                Some(self.brightpearl.availability(&ids).await?)
            }
            None => None,
        };
        let mut window: Vec<Work> = Vec::new();
        for pos in index.positions() {
            let cref = &index.pages[pos.0].chunks[pos.1];
            if cref.ids.is_empty() {
                continue;
            }
            let mut ids = idset::parse(&cref.ids)?;
            if let Some(t) = targets {
                ids.retain(|id| t.contains(id));
                if ids.is_empty() {
                    continue;
                }
            }
            let availability = match prefetched.as_mut() {
                Some(all) => ids.iter().filter_map(|id| all.remove(id).map(|a| (*id, a))).collect(),
                None => self.brightpearl.availability(&ids).await?,
            };
            run.report.products_read += availability.len();
            let mut fingerprints = BTreeMap::new();
            let mut look = targets.is_some() || reconcile;
            for channel in self.channels.iter() {
                let name = &channel.store().name;
                let Some(sref) = cref.stores.get(name).filter(|s| s.n > 0) else { continue };
                let fp = fingerprint(channel.store(), &config_prints[name], &ids, &availability);
                if targets.is_none() {
                    if let Some(r) = run.by_store.get_mut(name) {
                        r.skus_read += sref.n as usize;
                    }
                    look |= sref.fp.as_deref() != Some(fp.as_str());
                    fingerprints.insert(name.clone(), fp);
                }
            }
            if !look {
                continue;
            }
            run.report.chunks_changed += 1;
            let chunk = self.load_chunk(cref.id, run).await?;
            if targets.is_some() {
                for m in ids.iter().filter_map(|id| chunk.products.get(id)) {
                    for s in m.stores.keys() {
                        if let Some(r) = run.by_store.get_mut(s) {
                            r.skus_read += 1;
                        }
                    }
                }
            }
            window.push(Work {
                pos,
                original: chunk.clone(),
                chunk,
                ids,
                availability,
                fingerprints,
                pending: BTreeSet::new(),
            });
            if window.len() >= WINDOW_CHUNKS {
                self.flush(std::mem::take(&mut window), index, run, reconcile, targets.is_some()).await?;
            }
        }
        if !window.is_empty() {
            self.flush(window, index, run, reconcile, targets.is_some()).await?;
        }
        Ok(())
    }

    /// Pushes the window's updates store by store, then records what settled.
    async fn flush(
        &self,
        mut window: Vec<Work>,
        index: &mut Index,
        run: &mut Run,
        reconcile: bool,
        targeted: bool,
    ) -> Result<()> {
        for channel in self.channels.iter() {
            self.flush_store(channel.as_ref(), &mut window, run, reconcile).await;
        }
        for work in window {
            let (pi, ci) = work.pos;
            let cref = &mut index.pages[pi].chunks[ci];
            let chunk_id = cref.id;
            let mut page_dirty = false;
            for (name, sref) in cref.stores.iter_mut() {
                let next = if work.pending.contains(name) || run.down.contains(name) {
                    None
                } else if targeted {
                    // Only part of the chunk was read: the full poll re-checks the rest.
                    continue;
                } else {
                    work.fingerprints.get(name).cloned()
                };
                if sref.fp != next {
                    sref.fp = next;
                    page_dirty = true;
                }
            }
            if page_dirty {
                index.dirty_pages.insert(pi);
            }
            if work.chunk != work.original {
                self.save_chunk(chunk_id, &work.chunk, run).await?;
            }
        }
        Ok(())
    }

    async fn flush_store(
        &self,
        channel: &dyn SalesChannel,
        window: &mut [Work],
        run: &mut Run,
        reconcile: bool,
    ) {
        let store = channel.store();
        let name = store.name.clone();
        let Some(mut report) = run.by_store.remove(&name) else { return };
        let mut down = run.down.contains(&name);
        self.settle_store(channel, window, &mut report, &mut down, reconcile).await;
        if down {
            run.down.insert(name.clone());
        }
        run.by_store.insert(name, report);
    }

    async fn settle_store(
        &self,
        channel: &dyn SalesChannel,
        window: &mut [Work],
        report: &mut ChannelReport,
        down: &mut bool,
        reconcile: bool,
    ) {
        let store = channel.store();
        let name = store.name.clone();
        // (window index, product id, desired)
        let mut candidates: Vec<(usize, u64, i64)> = Vec::new();
        for (wi, work) in window.iter().enumerate() {
            for id in &work.ids {
                let (Some(m), Some(a)) = (work.chunk.products.get(id), work.availability.get(id)) else {
                    continue;
                };
                if m.stores.contains_key(&name) {
                    candidates.push((wi, *id, store.apply_buffer(available(store, a), &m.sku)));
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        let sku_of = |window: &[Work], wi: usize, id: u64| -> String {
            window[wi].chunk.products.get(&id).map(|m| m.sku.clone()).unwrap_or_default()
        };
        let mut current: HashMap<String, i64> = HashMap::new();
        if reconcile && !*down {
            let skus: Vec<String> = candidates.iter().map(|(wi, id, _)| sku_of(window, *wi, *id)).collect();
            match channel.read_quantities(&skus).await {
                Ok(q) => current = q,
                Err(e) => {
                    report.error = Some(e.to_string());
                    *down = true;
                }
            }
        }
        let mut updates: Vec<(usize, u64, QuantityUpdate)> = Vec::new();
        for (wi, id, desired) in candidates {
            let sku = sku_of(window, wi, id);
            let Some(settled) = window[wi].chunk.products.get_mut(&id).and_then(|m| m.stores.get_mut(&name))
            else {
                continue;
            };
            if *down {
                if settled.d != Some(desired) {
                    settled.d = None;
                    window[wi].pending.insert(name.clone());
                }
                continue;
            }
            if reconcile {
                let now = current.get(&sku).copied();
                if now == Some(desired) {
                    *settled = Settled { d: Some(desired), p: Some(desired) };
                } else {
                    report.repaired.push(Repair { sku: sku.clone(), from: now, to: desired });
                    updates.push((wi, id, QuantityUpdate { sku, quantity: desired, last_pushed: now }));
                }
                continue;
            }
            if settled.d == Some(desired) {
                continue;
            }
            report.changed += 1;
            if settled.p == Some(desired) {
                settled.d = Some(desired);
                continue;
            }
            updates.push((wi, id, QuantityUpdate { sku, quantity: desired, last_pushed: settled.p }));
        }
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut conflicts: HashMap<String, i64> = HashMap::new();
        let mut down_at: Option<usize> = None;
        let size = push_batch_size(channel.kind());
        for (n, batch) in updates.chunks(size).enumerate() {
            let list: Vec<QuantityUpdate> = batch.iter().map(|(_, _, u)| u.clone()).collect();
            match channel.set_quantities(&list).await {
                Ok(pushed) => {
                    failed.extend(pushed.failed);
                    conflicts.extend(pushed.conflicts);
                }
                Err(e) => {
                    tracing::warn!(store = %name, error = %e, "push failed; the rest waits for the next run");
                    report.error = Some(e.to_string());
                    *down = true;
                    down_at = Some(n * size);
                    break;
                }
            }
        }
        // A stale compare (the store sold, or someone edited): write again at once from the
        // figure the store now shows, unless this store holds its manual edits back.
        if !conflicts.is_empty() && !self.config.respect_manual_edits.contains(&name) {
            let again: Vec<QuantityUpdate> = updates
                .iter()
                .filter_map(|(_, _, u)| {
                    let theirs = *conflicts.get(&u.sku)?;
                    (theirs != u.quantity).then(|| QuantityUpdate { last_pushed: Some(theirs), ..u.clone() })
                })
                .collect();
            for batch in again.chunks(size) {
                match channel.set_quantities(batch).await {
                    Ok(pushed) => {
                        let still: HashMap<String, i64> = pushed.conflicts.into_iter().collect();
                        for u in batch {
                            match still.get(&u.sku) {
                                // Moved again between the two writes: the next run tries again.
                                Some(_) => {
                                    conflicts.remove(&u.sku);
                                    failed.insert(u.sku.clone(), "store quantity kept moving".into());
                                }
                                None => {
                                    conflicts.remove(&u.sku);
                                }
                            }
                        }
                        failed.extend(pushed.failed);
                    }
                    Err(e) => {
                        tracing::warn!(store = %name, error = %e, "re-push after a stale compare failed");
                        for u in batch {
                            conflicts.remove(&u.sku);
                            failed.insert(u.sku.clone(), format!("re-push failed: {e}"));
                        }
                    }
                }
            }
        }
        for (i, (wi, id, update)) in updates.into_iter().enumerate() {
            let Some(settled) = window[wi].chunk.products.get_mut(&id).and_then(|m| m.stores.get_mut(&name))
            else {
                continue;
            };
            if down_at.is_some_and(|at| i >= at) {
                settled.d = None;
                window[wi].pending.insert(name.clone());
            } else if let Some(reason) = failed.remove(&update.sku) {
                settled.d = None;
                window[wi].pending.insert(name.clone());
                report.failures.push((update.sku, reason));
            } else if let Some(theirs) = conflicts.remove(&update.sku).filter(|c| *c != update.quantity) {
                *settled = Settled { d: Some(update.quantity), p: Some(theirs) };
                report.conflicts.push((update.sku, theirs));
            } else {
                *settled = Settled { d: Some(update.quantity), p: Some(update.quantity) };
                report.pushed += 1;
            }
        }
    }
}

#[async_trait]
impl WaveHandler for InventoryPoll {
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
        let mut outcomes = HashMap::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut stock_jobs = Vec::new();
        for (message_id, job) in jobs {
            match job {
                Job::StockChanged { product_ids } => {
                    ids.extend(product_ids);
                    stock_jobs.push(message_id);
                }
                other => {
                    let reason =
                        format!("the stock queue takes stock_changed jobs, not {}", other.group_id());
                    if let Err(e) = crate::parking::park(self.state.as_ref(), &other, &reason).await {
                        outcomes.insert(message_id, Outcome::Retry(e.to_string()));
                    } else {
                        outcomes.insert(message_id, Outcome::Parked(reason));
                    }
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let outcome = if ids.is_empty() {
            Outcome::Done
        } else {
            match self.run(PollTrigger::Products(ids)).await {
                Ok(_) => Outcome::Done,
                // Permanent errors retry too: the ids are not at fault, so there is nothing to
                // park per message, and the DLQ keeps them after the receive limit.
                Err(e) => Outcome::Retry(e.to_string()),
            }
        };
        for id in stock_jobs {
            outcomes.insert(id, outcome.clone());
        }
        outcomes
    }
}

// ---- helpers ----

fn page_sk(page: usize) -> String {
    format!("{PAGE_PREFIX}{page:04}")
}

fn chunk_sk(id: u32) -> String {
    format!("{id:06}")
}

fn decode<T: serde::de::DeserializeOwned>(data: Value, what: &str) -> Result<T> {
    serde_json::from_value(data).map_err(|e| Error::State(format!("{what} is unreadable: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::State(e.to_string()))
}

fn idset_len(set: &str) -> usize {
    if set.is_empty() { 0 } else { idset::parse(set).map_or(0, |ids| ids.len()) }
}

fn push_batch_size(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Shopify => crate::channels::shopify::MAX_QUANTITIES_PER_CALL,
        ChannelKind::Bigcommerce => crate::channels::bigcommerce::MAX_ADJUSTMENTS_PER_CALL,
        ChannelKind::Woocommerce => crate::channels::woocommerce::MAX_BATCH_ITEMS,
    }
}

/// Sellable stock for a store: `onHand` summed over its warehouses, or the total when it
/// lists none.
fn available(store: &StoreConfig, a: &Availability) -> i64 {
    if store.warehouses.is_empty() {
        a.total.on_hand
    } else {
        store.warehouses.iter().filter_map(|w| a.warehouses.get(w)).map(|l| l.on_hand).sum()
    }
}

/// The store settings that shape its quantities, in a stable order: a change re-settles
/// every chunk.
fn store_print(store: &StoreConfig) -> String {
    let b = &store.buffer;
    let mut overrides: Vec<String> = b.overrides.iter().map(|(sku, o)| format!("{sku}={o:?}")).collect();
    overrides.sort();
    format!(
        "{:?}|{}|{}|{}|{:?}|{}",
        store.warehouses,
        b.safety_stock,
        b.percent,
        b.floor_at_zero,
        b.cap,
        overrides.join(";")
    )
}

/// FNV-1a over the store settings and each product's sellable stock: stable across builds,
/// unlike `DefaultHasher`, because it is persisted.
fn fingerprint(
    store: &StoreConfig,
    print: &str,
    ids: &[u64],
    availability: &HashMap<u64, Availability>,
) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(print.as_bytes());
    for id in ids {
        if let Some(a) = availability.get(id) {
            feed(&id.to_le_bytes());
            feed(&available(store, a).to_le_bytes());
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brightpearl::StockLevels;

    fn levels(on_hand: i64) -> StockLevels {
        StockLevels { on_hand, ..StockLevels::default() }
    }

    #[test]
    fn availability_sums_the_store_warehouses_or_takes_the_total() {
        let a = Availability {
            total: levels(12),
            warehouses: [(1, levels(5)), (2, levels(7))].into_iter().collect(),
        };
        let all = StoreConfig::default();
        let second = StoreConfig { warehouses: vec![2, 9], ..StoreConfig::default() };
        assert_eq!(available(&all, &a), 12);
        assert_eq!(available(&second, &a), 7);
    }

    #[test]
    fn fingerprints_move_with_stock_and_settings_only() {
        let store = StoreConfig::default();
        let print = store_print(&store);
        let mut avail: HashMap<u64, Availability> =
            [(1, Availability { total: levels(3), ..Availability::default() })].into_iter().collect();
        let before = fingerprint(&store, &print, &[1], &avail);
        assert_eq!(before, fingerprint(&store, &print, &[1], &avail));
        avail.insert(1, Availability { total: levels(4), ..Availability::default() });
        assert_ne!(before, fingerprint(&store, &print, &[1], &avail));
        let mut capped = store.clone();
        capped.buffer.cap = Some(2);
        assert_ne!(print, store_print(&capped));
    }
}
