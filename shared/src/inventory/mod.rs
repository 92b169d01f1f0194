//! inventory-poll (issues 5, 16): what each shop should show, pushed as absolute figures,
//! compare-and-set guarded, on a schedule and on `StockChanged` jobs.
//!
//! What a shop should show = Brightpearl's `onHand` summed over the store's warehouses (all,
//! i.e. `total.onHand`, when it lists none) − the units of that store's orders sold but not yet
//! reserved in Brightpearl (`crate::pending`) − the store's buffer. Products absent from the
//! availability answer (not stock-tracked) are skipped.
//!
//! Three kinds of run:
//! - the **sweep** (`Full`, hourly): every mapped product, chunk by chunk; a chunk is loaded
//!   only when the fingerprint of its figures moved. The reconciliation: it repairs whatever the
//!   change paths missed. With `reconcile` it also reads every channel figure and repairs drift.
//! - the **change-driven poll** (`Changes`, every 5 minutes): only products that may have
//!   changed since its cursor (`changes`, which says which path catches which change).
//! - **targeted** (`Products`, a `StockChanged` batch): those products, under a lease of its
//!   own, so it never waits on a sweep; it writes chunks but not the index.
//!
//! Rules (where the issue is silent):
//! - Scope: products whose SKU resolves on at least one store. The mapping (product id → SKU →
//!   stores) is persisted in chunks of ≤ 200 products and refreshed from the products Brightpearl
//!   reports as updated since a stored cursor.
//! - A SKU is pushed to a store when its figure differs from the one last settled for it, and
//!   the channel is not already known to hold it. Writes go in the largest batches the store
//!   takes; a partial batch is carried to the next chunks, so a sweep sends the minimum.
//! - A stale compare-and-set (the store sold, or someone edited) is re-read and written again
//!   at once: Brightpearl is the truth. Stores in `respect_manual_edits` keep their figure; it
//!   is reported as a conflict with both figures and pushed again when Brightpearl's moves, or
//!   by a reconcile run.
//! - A store whose push fails stops receiving pushes for the rest of the run; its unsettled SKUs
//!   stay pending (their chunk fingerprint is cleared) so the next sweep retries exactly them,
//!   and the change-driven cursor stays put.
//!
//! State layout (one table):
//! - `inventory` / `meta`: the mapping cursor, the last sweep, the change cursor with the goods
//!   movements it saw, and the next chunk id.
//! - `inventory` / `page#NNNN`: up to 100 chunk references each: the chunk's product ids (an ID
//!   set) and, per store, its mapped-SKU count and the fingerprint of the figures it was last
//!   settled at. A sweep reads these pages (one query) and only loads the chunks whose
//!   fingerprint moved, so reads and writes grow with the changes, not with the catalogue.
//! - `inventory#chunk` / `NNNNNN`: per product, its SKU and per store the last settled desired
//!   quantity (`d`) and the channel's quantity as last known (`p`).
//! - `pending#{store}` / `{order id}`: see `crate::pending`.

mod changes;
mod mapping;
mod push;
mod report;
mod state;
mod sweep;

pub use report::{ChangeSources, ChannelReport, Conflict, Drift, PollReport, Repair};

use crate::batch::{self, BatchMessage, BatchReport, Outcome, WaveHandler};
use crate::brightpearl::{Availability, BrightpearlApi};
use crate::channels::{ChannelSet, StoreConfig};
use crate::error::{Error, Result};
use crate::freshness::{self, Flow};
use crate::lambda::{self, Trigger};
use crate::metrics::{Metrics, names};
use crate::queue::Job;
use crate::state::StateStore;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Products per chunk: one availability request each (Brightpearl's ID-set cap).
const CHUNK_SIZE: usize = 200;

/// `[inventory]` in the config file.
#[derive(Debug, Clone, Deserialize)]
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
    /// A scheduled run sweeps the whole catalogue (the reconciliation that repairs what the
    /// change paths missed) when the last sweep is older than this; otherwise it reads only
    /// the products that may have changed. Default 60.
    #[serde(default = "default_sweep_every_minutes")]
    pub sweep_every_minutes: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            reconcile: false,
            respect_manual_edits: Vec::new(),
            sweep_every_minutes: default_sweep_every_minutes(),
        }
    }
}

fn default_sweep_every_minutes() -> u64 {
    60
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollTrigger {
    /// The sweep: everything mapped, a delta sync, or a drift repair when `reconcile`.
    Full { reconcile: bool },
    /// The change-driven poll: only products that may have changed since its cursor (goods
    /// movements, this project's orders reserved or cancelled, products new to the mapping).
    Changes,
    /// What a schedule asks for: a sweep when the last one is `sweep_every_minutes` old (or
    /// there was none), else the change-driven poll.
    Scheduled,
    /// Only these Brightpearl products (a `StockChanged` job). Runs beside the others, under
    /// its own lease: pushes are absolute and compare-and-set guarded, so overlapping runs can
    /// only repeat a write; it writes chunks but never the index (mapping, cursors).
    Products(Vec<u64>),
}

struct Run {
    report: PollReport,
    by_store: BTreeMap<String, ChannelReport>,
    down: BTreeSet<String>,
    /// Per store: units sold but not yet reserved, and products whose orders settled.
    pending: HashMap<String, crate::pending::Pending>,
    /// Products the mapping added or changed this run.
    mapped: Vec<u64>,
    /// The change-driven poll: the goods movements it read, recorded with its cursor.
    seen_movements: Option<String>,
}

/// Longest a run may hold its lease: the Lambda timeout (15 minutes).
const RUN_LEASE: std::time::Duration = std::time::Duration::from_secs(900);
/// The sweep's and the change-driven poll's lease.
const SWEEP_LEASE: &str = "inventory";
/// Targeted pushes have their own, so they never wait on a sweep.
const TARGETED_LEASE: &str = "inventory-targeted";
/// How long a targeted run waits for another targeted run (they are short) before it gives
/// its jobs back to the queue.
const TARGETED_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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
                let reconcile = input.get("reconcile").and_then(Value::as_bool);
                let trigger = match (input.get("mode").and_then(Value::as_str), reconcile) {
                    (_, Some(true)) => PollTrigger::Full { reconcile: true },
                    (Some("sweep"), r) => PollTrigger::Full { reconcile: r.unwrap_or(self.config.reconcile) },
                    (Some("changes"), _) => PollTrigger::Changes,
                    (None, _) => PollTrigger::Scheduled,
                    (Some(other), _) => {
                        return Err(Error::BadInput(format!(
                            "inventory mode {other:?}: expected \"sweep\" or \"changes\""
                        )));
                    }
                };
                self.run(trigger).await.and_then(|report| {
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
        let (pending, _) = crate::pending::load(self.state.as_ref(), store_name).await?;
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
                let expected = store.apply_buffer(available(store, a) - pending.units(*id, sku), sku);
                if expected != channel_quantity {
                    drift.push(Drift { sku: sku.clone(), expected, shown: channel_quantity });
                }
            }
        }
        Ok(drift)
    }

    /// One sweep or change-driven poll at a time: one that finds another in progress reports
    /// `mode = "skipped"`. Targeted runs take their own lease (`run_targeted`).
    pub async fn run(&self, trigger: PollTrigger) -> Result<PollReport> {
        if let PollTrigger::Products(ids) = trigger {
            return self.run_targeted(ids).await;
        }
        let exclusive = crate::state::idempotency::run_exclusively(
            Arc::clone(&self.state),
            SWEEP_LEASE,
            RUN_LEASE,
            self.run_unlocked(trigger),
        )
        .await?;
        Ok(exclusive.unwrap_or_else(|| PollReport { mode: "skipped".into(), ..PollReport::default() }))
    }

    /// A targeted run under its own lease: a sweep in progress never holds it back; another
    /// targeted run (they are short) is waited for a little, then the jobs go back to the
    /// queue (retryable).
    async fn run_targeted(&self, ids: Vec<u64>) -> Result<PollReport> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(200);
        loop {
            let work = self.run_unlocked(PollTrigger::Products(ids.clone()));
            let exclusive = crate::state::idempotency::run_exclusively(
                Arc::clone(&self.state),
                TARGETED_LEASE,
                RUN_LEASE,
                work,
            )
            .await?;
            if let Some(report) = exclusive {
                return Ok(report);
            }
            if started.elapsed() >= TARGETED_WAIT {
                return Err(Error::State("another targeted inventory run is in progress".into()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
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
            pending: HashMap::new(),
            mapped: Vec::new(),
            seen_movements: None,
        };
        let started = chrono::Utc::now();
        let mut index = self.load_index(&mut run).await?;
        self.load_pending(&mut run).await?;
        let trigger = match trigger {
            PollTrigger::Scheduled => {
                let every = chrono::Duration::minutes(self.config.sweep_every_minutes as i64);
                match index.meta.last_sweep {
                    Some(at) if started - at < every => PollTrigger::Changes,
                    _ => PollTrigger::Full { reconcile: self.config.reconcile },
                }
            }
            other => other,
        };
        let outcome = match &trigger {
            PollTrigger::Full { reconcile } => {
                run.report.mode = if *reconcile { "reconcile" } else { "full" }.into();
                // The change-driven poll keeps the mapping fresh; a sweep refreshes it only when
                // no poll did lately, so the sweep costs its ceil(N/200) availability reads.
                let fresh = index.meta.mapping_polled.is_some_and(|c| started - c < mapping_fresh_for());
                let mapped = if fresh { Ok(()) } else { self.refresh_mapping(&mut index, &mut run).await };
                match mapped {
                    Ok(()) => self.sweep(&mut index, &mut run, *reconcile, None).await,
                    Err(e) => Err(e),
                }
            }
            PollTrigger::Changes | PollTrigger::Scheduled => {
                run.report.mode = "changes".into();
                match self.refresh_mapping(&mut index, &mut run).await {
                    Ok(()) => {
                        if run.down.is_empty() {
                            index.meta.mapping_polled = Some(started);
                            index.meta_dirty = true;
                        }
                        self.changes(&mut index, &mut run).await
                    }
                    Err(e) => Err(e),
                }
            }
            PollTrigger::Products(ids) => {
                run.report.mode = "products".into();
                self.targeted(&mut index, &mut run, ids).await
            }
        };
        if outcome.is_ok() && run.down.is_empty() {
            // Everything up to `started` was seen: the next change-driven poll starts there.
            match &trigger {
                PollTrigger::Full { .. } => {
                    index.meta.last_sweep = Some(started);
                    index.meta.changes_cursor = Some(started);
                    index.meta.seen_movements = String::new();
                    index.meta_dirty = true;
                }
                PollTrigger::Changes => {
                    index.meta.changes_cursor = Some(started);
                    if let Some(seen) = run.seen_movements.take() {
                        index.meta.seen_movements = seen;
                    }
                    index.meta_dirty = true;
                }
                _ => {}
            }
        }
        if outcome.is_ok() && !matches!(trigger, PollTrigger::Products(_)) {
            // Settled orders' products were read: their ledger entries can go.
            for (name, pending) in &run.pending {
                if run.down.contains(name) {
                    continue;
                }
                match crate::pending::forget_settled(self.state.as_ref(), pending).await {
                    Ok(writes) => run.report.state_writes += writes,
                    Err(e) => {
                        tracing::warn!(store = %name, error = %e, "settled pending entries kept; read again next run")
                    }
                }
            }
        }
        // Whatever settled before a failure is kept. A targeted run never writes the index:
        // it runs beside the sweep, whose copy would race it.
        let saved = if matches!(trigger, PollTrigger::Products(_)) {
            Ok(())
        } else {
            self.save_index(&mut index, &mut run).await
        };
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
        if !matches!(trigger, PollTrigger::Products(_)) {
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
            freshness::record_budget_seen(
                self.state.as_ref(),
                self.brightpearl.as_ref(),
                self.metrics.function(),
            )
            .await;
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

    /// Each store's pending units (orders sold, not yet reserved). A store whose ledger cannot
    /// be read gets no pushes this run: without it a push could hand sold units back.
    async fn load_pending(&self, run: &mut Run) -> Result<()> {
        for channel in self.channels.iter() {
            let name = channel.store().name.clone();
            match crate::pending::load(self.state.as_ref(), &name).await {
                Ok((pending, reads)) => {
                    run.report.state_reads += reads;
                    if let Some(r) = run.by_store.get_mut(&name) {
                        r.pending_orders = pending.open_orders;
                    }
                    run.pending.insert(name, pending);
                }
                Err(e) => {
                    tracing::warn!(store = %name, error = %e, "pending units unreadable; the store is skipped this run");
                    if let Some(r) = run.by_store.get_mut(&name) {
                        r.error = Some(format!("reading pending units: {e}"));
                    }
                    run.down.insert(name);
                }
            }
        }
        Ok(())
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

/// A mapping refreshed this recently (by a change-driven poll: every 5 minutes by default) is
/// fresh enough for a sweep.
fn mapping_fresh_for() -> chrono::Duration {
    chrono::Duration::minutes(15)
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
}
