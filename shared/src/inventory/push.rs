//! Pushing one window's differences to one store, compare-and-set guarded.

use super::report::{ChannelReport, Repair};
use super::state::Settled;
use super::sweep::Work;
use super::{InventoryPoll, Run, available};
use crate::channels::{QuantityUpdate, SalesChannel};
use crate::queue::ChannelKind;
use std::collections::HashMap;

impl InventoryPoll {
    pub(super) async fn flush_store(
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

    pub(super) async fn settle_store(
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

pub(super) fn push_batch_size(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Shopify => crate::channels::shopify::MAX_QUANTITIES_PER_CALL,
        ChannelKind::Bigcommerce => crate::channels::bigcommerce::MAX_ADJUSTMENTS_PER_CALL,
        ChannelKind::Woocommerce => crate::channels::woocommerce::MAX_BATCH_ITEMS,
    }
}
