//! The mapping: product id → SKU → the stores that list it, refreshed from Brightpearl.

use super::state::{CHUNKS_PER_PAGE, Chunk, ChunkRef, Index, Mapped, Page, Settled, StoreRef, idset_len};
use super::{CHUNK_SIZE, InventoryPoll, Run};
use crate::brightpearl::idset;
use crate::error::Result;
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};

/// SKUs per mapping step (channel resolution and chunk updates), to bound memory.
pub(super) const MAPPING_BATCH: usize = 100;
/// Products updated shortly before the cursor are read again, for clock skew.
pub(super) const CURSOR_SLACK_MINUTES: i64 = 5;

impl InventoryPoll {
    /// Products updated since the cursor (everything on the first run) join, change or leave
    /// the mapping. The cursor moves only when something was read, so a quiet poll writes
    /// nothing.
    pub(super) async fn refresh_mapping(&self, index: &mut Index, run: &mut Run) -> Result<()> {
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
    pub(super) async fn apply_mapping(
        &self,
        index: &mut Index,
        rows: Vec<(u64, String)>,
        run: &mut Run,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut located = index.chunk_ids()?;
        // In id order, so a batch touches few chunks (products fill chunks in id order); a batch
        // holds its chunks decoded twice (to tell a change), and at 1,000 rows a sparse batch
        // held 441 of them: the 100k poll peaked at 187 MB.
        let mut rows = rows;
        rows.sort_unstable_by_key(|(id, _)| *id);
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
                        let before = entry.stores.len();
                        entry.stores.retain(|s, _| stores.contains(s) || run.down.contains(s));
                        for s in stores {
                            entry.stores.entry(s).or_default();
                        }
                        // A listing with nothing settled yet must be pushed by the next run.
                        if entry.stores.len() != before || entry.stores.values().any(|s| s.d.is_none()) {
                            run.mapped.push(*id);
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
                    run.mapped.push(id);
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
    pub(super) fn sync_ref(&self, index: &mut Index, chunk_id: u32, chunk: Option<&Chunk>) {
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
}
