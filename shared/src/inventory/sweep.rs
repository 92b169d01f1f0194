//! Sweeps: chunk by chunk, read availability, load the chunks that moved, push a window at a time.

use super::state::{Chunk, Index};
use super::{InventoryPoll, Run, available};
use crate::brightpearl::{Availability, idset};
use crate::channels::StoreConfig;
use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Chunks held in memory before their updates are pushed and their state written back.
pub(super) const WINDOW_CHUNKS: usize = 10;

/// One loaded chunk in the push window.
pub(super) struct Work {
    pub(super) pos: (usize, usize),
    pub(super) chunk: Chunk,
    pub(super) original: Chunk,
    pub(super) ids: Vec<u64>,
    pub(super) availability: HashMap<u64, Availability>,
    /// Per store, the fingerprint to record once every SKU settled (None for targeted runs).
    pub(super) fingerprints: BTreeMap<String, String>,
    /// Stores with a SKU left pending in this chunk.
    pub(super) pending: BTreeSet<String>,
}

impl InventoryPoll {
    pub(super) async fn targeted(&self, index: &mut Index, run: &mut Run, ids: &[u64]) -> Result<()> {
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
    pub(super) async fn flush(
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

/// FNV-1a over the store settings and each product's sellable stock: stable across builds,
/// unlike `DefaultHasher`, because it is persisted.
pub(super) fn fingerprint(
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
