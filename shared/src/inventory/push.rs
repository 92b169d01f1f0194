//! Planning and sending one store's differences, compare-and-set guarded, in the largest
//! batches the store takes: a partial batch waits for the next chunks (carried), so a sweep
//! sends `ceil(changed / batch)` writes whatever the catalogue size.

use super::report::{ChannelReport, Conflict, Repair};
use super::state::Settled;
use super::sweep::{Planned, Pool};
use super::{InventoryPoll, Run, available};
use crate::channels::{QuantityUpdate, SalesChannel};
use crate::queue::ChannelKind;
use std::collections::HashMap;

impl InventoryPoll {
    /// One store's part of a sweep step: plan the fresh chunks, send what fills batches.
    pub(super) async fn step_store(
        &self,
        channel: &dyn SalesChannel,
        pool: &mut Pool,
        fresh: &[usize],
        run: &mut Run,
        reconcile: bool,
        last: bool,
    ) {
        let name = channel.store().name.clone();
        let Some(mut report) = run.by_store.remove(&name) else { return };
        let mut down = run.down.contains(&name);
        let planned = self.plan_store(channel, pool, fresh, run, &mut report, &mut down, reconcile).await;
        let mut carry = pool.carry.remove(&name).unwrap_or_default();
        carry.extend(planned);
        let size = push_batch_size(channel.kind());
        while !carry.is_empty() && (last || carry.len() >= size || down) {
            let batch: Vec<Planned> = carry.drain(..size.min(carry.len())).collect();
            self.send(channel, pool, batch, &mut report, &mut down).await;
        }
        if !carry.is_empty() {
            pool.carry.insert(name.clone(), carry);
        }
        if down {
            run.down.insert(name.clone());
        }
        run.by_store.insert(name, report);
    }

    /// What each fresh SKU of this store should show, against what was last settled: the
    /// updates to send. What needs no write is settled here.
    #[allow(clippy::too_many_arguments)]
    async fn plan_store(
        &self,
        channel: &dyn SalesChannel,
        pool: &mut Pool,
        fresh: &[usize],
        run: &Run,
        report: &mut ChannelReport,
        down: &mut bool,
        reconcile: bool,
    ) -> Vec<Planned> {
        let store = channel.store();
        let name = store.name.as_str();
        let pending = run.pending.get(name);
        // (chunk, product id, SKU, desired)
        let mut candidates: Vec<(usize, u64, String, i64)> = Vec::new();
        for seq in fresh {
            let Some(work) = pool.works.get(seq) else { continue };
            for id in &work.ids {
                let (Some(m), Some(a)) = (work.chunk.products.get(id), work.availability.get(id)) else {
                    continue;
                };
                if m.stores.contains_key(name) {
                    let held = pending.map_or(0, |p| p.units(*id, &m.sku));
                    let desired = store.apply_buffer(available(store, a) - held, &m.sku);
                    candidates.push((*seq, *id, m.sku.clone(), desired));
                }
            }
        }
        let mut current: HashMap<String, i64> = HashMap::new();
        if reconcile && !*down && !candidates.is_empty() {
            let skus: Vec<String> = candidates.iter().map(|(_, _, sku, _)| sku.clone()).collect();
            match channel.read_quantities(&skus).await {
                Ok(q) => current = q,
                Err(e) => {
                    report.error = Some(e.to_string());
                    *down = true;
                }
            }
        }
        let mut planned = Vec::new();
        for (seq, id, sku, desired) in candidates {
            let Some(work) = pool.works.get_mut(&seq) else { continue };
            let Some(settled) = work.settled(id, name) else { continue };
            if *down {
                if settled.d != Some(desired) {
                    work.settle(id, name, Settled { d: None, ..settled });
                    work.pending.insert(name.to_string());
                }
                continue;
            }
            if reconcile {
                let now = current.get(&sku).copied();
                if now == Some(desired) {
                    work.settle(id, name, Settled { d: Some(desired), p: Some(desired) });
                } else {
                    report.repaired.push(Repair { sku: sku.clone(), from: now, to: desired });
                    planned.push(Planned {
                        work: seq,
                        id,
                        before: settled,
                        update: QuantityUpdate { sku, quantity: desired, last_pushed: now },
                    });
                }
                continue;
            }
            if settled.d == Some(desired) {
                continue;
            }
            report.changed += 1;
            if settled.p == Some(desired) {
                work.settle(id, name, Settled { d: Some(desired), ..settled });
                continue;
            }
            planned.push(Planned {
                work: seq,
                id,
                before: settled,
                update: QuantityUpdate { sku, quantity: desired, last_pushed: settled.p },
            });
        }
        planned
    }

    /// Sends one batch and records each SKU's outcome in its chunk. A stale compare (the
    /// store sold, or someone edited) is written again at once from the figure the store now
    /// shows, unless this store holds its manual edits back.
    async fn send(
        &self,
        channel: &dyn SalesChannel,
        pool: &mut Pool,
        batch: Vec<Planned>,
        report: &mut ChannelReport,
        down: &mut bool,
    ) {
        let name = channel.store().name.clone();
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut conflicts: HashMap<String, i64> = HashMap::new();
        let mut all_failed = false;
        if *down {
            all_failed = true;
        } else {
            let list: Vec<QuantityUpdate> = batch.iter().map(|p| p.update.clone()).collect();
            match channel.set_quantities(&list).await {
                Ok(pushed) => {
                    failed.extend(pushed.failed);
                    conflicts.extend(pushed.conflicts);
                    report.skipped.extend(pushed.skipped);
                }
                Err(e) => {
                    tracing::warn!(store = %name, error = %e, "push failed; the rest waits for the next run");
                    report.error = Some(e.to_string());
                    *down = true;
                    all_failed = true;
                }
            }
        }
        if !conflicts.is_empty() && !self.config.respect_manual_edits.contains(&name) {
            let again: Vec<QuantityUpdate> = batch
                .iter()
                .filter_map(|p| {
                    let theirs = *conflicts.get(&p.update.sku)?;
                    (theirs != p.update.quantity)
                        .then(|| QuantityUpdate { last_pushed: Some(theirs), ..p.update.clone() })
                })
                .collect();
            if !again.is_empty() {
                match channel.set_quantities(&again).await {
                    Ok(pushed) => {
                        let still: HashMap<String, i64> = pushed.conflicts.into_iter().collect();
                        for u in &again {
                            conflicts.remove(&u.sku);
                            if still.contains_key(&u.sku) {
                                // Moved again between the two writes: the next run tries again.
                                failed.insert(u.sku.clone(), "store quantity kept moving".into());
                            }
                        }
                        failed.extend(pushed.failed);
                    }
                    Err(e) => {
                        tracing::warn!(store = %name, error = %e, "re-push after a stale compare failed");
                        for u in &again {
                            conflicts.remove(&u.sku);
                            failed.insert(u.sku.clone(), format!("re-push failed: {e}"));
                        }
                    }
                }
            }
        }
        for p in batch {
            let Some(work) = pool.works.get_mut(&p.work) else { continue };
            let settled = p.before;
            let u = p.update;
            if all_failed {
                work.settle(p.id, &name, Settled { d: None, ..settled });
                work.pending.insert(name.clone());
            } else if let Some(reason) = failed.remove(&u.sku) {
                work.settle(p.id, &name, Settled { d: None, ..settled });
                work.pending.insert(name.clone());
                report.failures.push((u.sku, reason));
            } else if let Some(theirs) = conflicts.remove(&u.sku).filter(|c| *c != u.quantity) {
                work.settle(p.id, &name, Settled { d: Some(u.quantity), p: Some(theirs) });
                report.conflicts.push(Conflict { sku: u.sku, desired: u.quantity, theirs });
            } else {
                work.settle(p.id, &name, Settled { d: Some(u.quantity), p: Some(u.quantity) });
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
