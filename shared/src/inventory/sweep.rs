//! Sweeps: chunk by chunk, read availability, load the chunks that moved, push a window at a time.

use super::state::{Chunk, Index, Settled};
use super::{InventoryPoll, Run, available};
use crate::brightpearl::{Availability, idset};
use crate::channels::{QuantityUpdate, StoreConfig};
use crate::error::{Error, Result};
use crate::pending::Pending;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Chunks loaded between two planning steps (each step plans their pushes and sends the full
/// batches; a partial batch is carried to the next step).
pub(super) const WINDOW_CHUNKS: usize = 10;

/// One loaded chunk, kept until every update planned for it has been sent. A chunk waiting
/// only for carried updates is parked: held as its encoded bytes (a tenth of the decoded
/// maps), its outcomes kept as patches, so a sparse sweep holding hundreds of chunks for one
/// BigCommerce batch of 2,000 stays small.
pub(super) struct Work {
    pub(super) pos: (usize, usize),
    pub(super) chunk: Chunk,
    parked: Option<Vec<u8>>,
    patches: Vec<(u64, String, Settled)>,
    /// A settled figure changed: the chunk is written back.
    pub(super) dirty: bool,
    pub(super) ids: Vec<u64>,
    /// Dropped once every store planned (what the carried updates need is in them).
    pub(super) availability: HashMap<u64, Availability>,
    /// Per store, the fingerprint to record once every SKU settled (None for targeted runs).
    pub(super) fingerprints: BTreeMap<String, String>,
    /// Stores with a SKU left pending in this chunk.
    pub(super) pending: BTreeSet<String>,
}

impl Work {
    fn new(
        pos: (usize, usize),
        chunk: Chunk,
        ids: Vec<u64>,
        availability: HashMap<u64, Availability>,
    ) -> Self {
        Work {
            pos,
            chunk,
            parked: None,
            patches: Vec::new(),
            dirty: false,
            ids,
            availability,
            fingerprints: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    /// Sets one SKU's settled figures on one store, noting whether anything changed.
    pub(super) fn settle(&mut self, id: u64, store: &str, settled: Settled) {
        if self.parked.is_some() {
            self.patches.push((id, store.to_string(), settled));
            self.dirty = true;
            return;
        }
        if let Some(slot) = self.chunk.products.get_mut(&id).and_then(|m| m.stores.get_mut(store))
            && *slot != settled
        {
            *slot = settled;
            self.dirty = true;
        }
    }

    /// A live chunk's settled figures (planning happens before any chunk is parked).
    pub(super) fn settled(&self, id: u64, store: &str) -> Option<Settled> {
        self.chunk.products.get(&id).and_then(|m| m.stores.get(store)).copied()
    }

    fn park(&mut self) -> Result<()> {
        if self.parked.is_none() {
            self.parked = Some(serde_json::to_vec(&self.chunk).map_err(|e| Error::State(e.to_string()))?);
            self.chunk = Chunk::default();
        }
        Ok(())
    }

    /// The chunk with every outcome applied.
    fn into_chunk(self) -> Result<Chunk> {
        let Some(bytes) = self.parked else { return Ok(self.chunk) };
        let mut chunk: Chunk = serde_json::from_slice(&bytes).map_err(|e| Error::State(e.to_string()))?;
        for (id, store, settled) in self.patches {
            if let Some(slot) = chunk.products.get_mut(&id).and_then(|m| m.stores.get_mut(&store)) {
                *slot = settled;
            }
        }
        Ok(chunk)
    }
}

/// The sweep's loaded chunks by load order, and per store the updates planned but not sent.
#[derive(Default)]
pub(super) struct Pool {
    pub(super) works: BTreeMap<usize, Work>,
    pub(super) carry: BTreeMap<String, Vec<Planned>>,
    next: usize,
}

/// One update planned for a store: which chunk (load order) and product it settles, and the
/// product's settled figures when it was planned (its chunk may be parked by the time it goes).
pub(super) struct Planned {
    pub(super) work: usize,
    pub(super) id: u64,
    pub(super) before: Settled,
    pub(super) update: QuantityUpdate,
}

impl InventoryPoll {
    /// Only these products: read in ID sets of 200 whatever their chunks, pushed where they
    /// moved. Products not in the mapping are skipped (counted): the change-driven poll maps
    /// new products within one schedule, and a targeted run never writes the index.
    pub(super) async fn targeted(&self, index: &mut Index, run: &mut Run, ids: &[u64]) -> Result<()> {
        let located = index.chunk_ids()?;
        let targets: HashSet<u64> = ids.iter().copied().filter(|id| located.contains_key(id)).collect();
        run.report.products_unmapped += ids.len() - targets.len();
        if targets.is_empty() {
            return Ok(());
        }
        self.sweep(index, run, false, Some(&targets)).await
    }

    /// Chunk by chunk: read availability, decide which stores need a look, load those chunks,
    /// and push a window of chunks at a time.
    pub(super) async fn sweep(
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
        let mut pool = Pool::default();
        let mut fresh: Vec<usize> = Vec::new();
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
                let fp = fingerprint(
                    channel.store(),
                    &config_prints[name],
                    &ids,
                    &availability,
                    run.pending.get(name),
                );
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
            let seq = pool.next;
            pool.next += 1;
            let mut work = Work::new(pos, chunk, ids, availability);
            work.fingerprints = fingerprints;
            pool.works.insert(seq, work);
            fresh.push(seq);
            if fresh.len() >= WINDOW_CHUNKS {
                self.step(
                    &mut pool,
                    std::mem::take(&mut fresh),
                    index,
                    run,
                    reconcile,
                    targets.is_some(),
                    false,
                )
                .await?;
            }
        }
        self.step(&mut pool, fresh, index, run, reconcile, targets.is_some(), true).await
    }

    /// Plans the fresh chunks' updates store by store, sends every full batch (all of them on
    /// the last step), and writes back each chunk none of whose updates is still carried.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        pool: &mut Pool,
        fresh: Vec<usize>,
        index: &mut Index,
        run: &mut Run,
        reconcile: bool,
        targeted: bool,
        last: bool,
    ) -> Result<()> {
        for channel in self.channels.iter() {
            self.step_store(channel.as_ref(), pool, &fresh, run, reconcile, last).await;
        }
        for seq in &fresh {
            if let Some(w) = pool.works.get_mut(seq) {
                w.availability = HashMap::new();
            }
        }
        let carried: BTreeSet<usize> = pool.carry.values().flatten().map(|p| p.work).collect();
        for seq in &carried {
            if let Some(w) = pool.works.get_mut(seq) {
                w.park()?;
            }
        }
        let done: Vec<usize> = pool.works.keys().copied().filter(|s| !carried.contains(s)).collect();
        for seq in done {
            if let Some(work) = pool.works.remove(&seq) {
                self.finish(work, index, run, targeted).await?;
            }
        }
        Ok(())
    }

    /// Records what settled in one chunk: its fingerprints and, when a figure moved, the chunk.
    async fn finish(&self, work: Work, index: &mut Index, run: &mut Run, targeted: bool) -> Result<()> {
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
        if work.dirty {
            let chunk = work.into_chunk()?;
            self.save_chunk(chunk_id, &chunk, run).await?;
        }
        Ok(())
    }
}

/// The store settings that shape its quantities, in a stable order: a change re-settles
/// every chunk.
pub(super) fn store_print(store: &StoreConfig) -> String {
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

/// FNV-1a over the store settings and each product's sellable stock less the units its
/// store's orders hold by product id: stable across builds,
/// unlike `DefaultHasher`, because it is persisted.
pub(super) fn fingerprint(
    store: &StoreConfig,
    print: &str,
    ids: &[u64],
    availability: &HashMap<u64, Availability>,
    pending: Option<&Pending>,
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
            let held = pending.and_then(|p| p.by_product.get(id)).copied().unwrap_or(0);
            feed(&(available(store, a) - held).to_le_bytes());
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
    fn fingerprints_move_with_stock_and_settings_only() {
        let store = StoreConfig::default();
        let print = store_print(&store);
        let mut avail: HashMap<u64, Availability> =
            [(1, Availability { total: levels(3), ..Availability::default() })].into_iter().collect();
        let before = fingerprint(&store, &print, &[1], &avail, None);
        assert_eq!(before, fingerprint(&store, &print, &[1], &avail, None));
        avail.insert(1, Availability { total: levels(4), ..Availability::default() });
        assert_ne!(before, fingerprint(&store, &print, &[1], &avail, None));
        let mut capped = store.clone();
        capped.buffer.cap = Some(2);
        assert_ne!(print, store_print(&capped));
    }
}
