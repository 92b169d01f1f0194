//! The purchasing concern (issues 7 and 13): purchase orders raised from reorder points, one
//! per supplier and warehouse per run and never twice for the same need, and goods-in notes
//! tracked against them so the channels get the received stock.
//!
//! Rules (Brightpearl leaves these to the integrator):
//! - **Projected stock** of a product in a warehouse = physical on hand + on order − allocated.
//!   Availability gives `inStock` (physical = `onHand` + `allocated`) and `onHand` (the
//!   unallocated part), so projected = `onHand` + on order. On order = the open, unreceived
//!   quantities of every purchase order in Brightpearl that delivers to the warehouse, ours
//!   and others' alike (ordered − received per row, from PO rows and goods-in notes), plus the
//!   rows of our records Brightpearl does not hold yet. Which POs are open is decided by
//!   status id; see [`on_order`] for the rule and its configuration.
//! - **Quantity**: a product is short when projected < `reorderLevel`; need = level − projected.
//!   Round-up mode (default) orders `ceil(need / reorderQuantity) × reorderQuantity` when the
//!   reorder quantity is positive, else the need; fixed mode orders exactly `reorderQuantity`
//!   (or the need when it is not positive).
//! - **Supplier**: the product's `primarySupplierId` (read with the catalogue from
//!   product-search), else the first supplier `product/{ids}/supplier` lists. Short products
//!   with neither are skipped as `no_supplier`; products with a level but no availability as
//!   `not_stock_tracked`; products without a positive level are only counted.
//! - **PO rows** carry zero net and tax with the configured tax code: the buyer prices them.
//! - **Never twice**: before any write the plan is stored as a record
//!   (`pk = reorder#po`, `sk = {supplier}#{warehouse}#{run ms}#{part}`) holding its rows; the
//!   PO reference `pearlsync-reorder-{supplier}-{warehouse}-{run ms}-{part}` ties it to
//!   Brightpearl. Each write (header, then rows in multi-messages of 10) is flagged pending in
//!   the record before it is sent and cleared with its result after; a pending flag found on
//!   resume means the answer was lost, so Brightpearl is read (header by reference, rows by
//!   product) before anything is sent again. Unfinished records are resumed first in every run.
//! - **Refused**: a PO Brightpearl rejects (a 4xx) is closed with the reason and parked; its
//!   rows stop counting as on order, so the next check plans the need again.
//! - **Time**: the scan goes in slices with a cursor in the state store ([`scan`]); an
//!   invocation stops between units of work (one slice, one PO) when its deadline is near and
//!   the next one carries on. Every invocation does at least one unit, so a run always ends.
//! - **Closing**: a record closes when goods-in notes cover every row, or when Brightpearl no
//!   longer lists its PO as open (received or cancelled there) after its notes are applied.
//!   Closed records stay 30 days (TTL) so duplicate goods-in jobs are recognised.

pub mod config;
mod goods_in;
pub mod on_order;
mod record;
pub mod report;
pub mod scan;

pub use config::{CheckOptions, QuantityRule, ReorderConfig, order_quantity};
pub use report::{
    CreatedPo, FailedPo, GoodsInReport, OnOrderReport, PoLine, PurchaseOrderPlan, ReorderReport, SkipReason,
    SkippedProduct,
};

use crate::batch::{BatchMessage, BatchReport, process_batch};
use crate::brightpearl::BrightpearlApi;
use crate::error::{Error, Result};
use crate::lambda::{Trigger, batch_response, classify};
use crate::metrics::{Metrics, names};
use crate::queue::JobQueue;
use crate::state::{Condition, Item, PutOutcome, StateStore, now_epoch_millis};
use record::{Creation, PO_PARTITION, PoRecord};
use scan::{ScanCursor, SliceOutcome, Walker, group_lines};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The schedule's task name (template input `{"pearlsync":"check-reorders"}`).
pub const TASK_CHECK: &str = "check-reorders";
/// A schedule task that only polls goods-in notes.
pub const TASK_POLL_GOODS_IN: &str = "poll-goods-in";
/// Longest a check may hold its lease: the Lambda timeout (15 minutes).
const RUN_LEASE: Duration = Duration::from_secs(900);
/// Work stops this long before the Lambda deadline: the longest unit (a PO of 500 rows is
/// 51 requests, about 20 s at the background share of the budget) with room to spare.
pub const STOP_BEFORE_DEADLINE: Duration = Duration::from_secs(60);

/// When an invocation must stop starting new work, from Lambda's deadline (epoch ms); None
/// when the deadline is too far off to matter.
pub fn stop_at(deadline_epoch_ms: i64) -> Option<Instant> {
    let left = u64::try_from(deadline_epoch_ms.saturating_sub(now_epoch_millis())).unwrap_or(0);
    Instant::now().checked_add(Duration::from_millis(left).saturating_sub(STOP_BEFORE_DEADLINE))
}

/// Whether there is time for another unit of work. The first unit always runs.
struct Clock {
    stop_at: Option<Instant>,
    worked: bool,
}

impl Clock {
    fn out_of_time(&self) -> bool {
        self.worked && self.stop_at.is_some_and(|at| Instant::now() >= at)
    }
}

pub struct ReorderChecker {
    brightpearl: Arc<dyn BrightpearlApi>,
    state: Arc<dyn StateStore>,
    queue: Arc<dyn JobQueue>,
    metrics: Arc<Metrics>,
    config: ReorderConfig,
}

impl ReorderChecker {
    pub fn from_parts(
        brightpearl: Arc<dyn BrightpearlApi>,
        state: Arc<dyn StateStore>,
        queue: Arc<dyn JobQueue>,
        metrics: Arc<Metrics>,
        config: ReorderConfig,
    ) -> Self {
        ReorderChecker { brightpearl, state, queue, metrics, config }
    }

    /// One event without a deadline (CLI, tests): see [`ReorderChecker::handle_invocation`].
    pub async fn handle_event(&self, event: Value) -> Result<Value> {
        self.handle_invocation(event, None).await
    }

    /// One Lambda event: a schedule (`check-reorders`, the default, or `poll-goods-in`) or a
    /// purchasing-queue batch. A check stops starting new work at `stop_at` and leaves the
    /// rest to the next invocation. Returns the report, or the partial-batch response.
    pub async fn handle_invocation(&self, event: Value, stop_at: Option<Instant>) -> Result<Value> {
        match classify(event) {
            Trigger::Schedule { task, input } => match task.as_deref() {
                None | Some(TASK_CHECK) => {
                    to_json(&self.run_check_until(CheckOptions::from_event(&input), stop_at).await?)
                }
                Some(TASK_POLL_GOODS_IN) => to_json(&self.poll_goods_in().await?),
                Some(other) => Err(Error::BadInput(format!("reorder-checker has no task {other:?}"))),
            },
            Trigger::Sqs(messages) => Ok(batch_response(&self.handle_batch(messages).await)),
            Trigger::Other(_) => {
                Err(Error::BadInput("reorder-checker takes a schedule or an SQS batch".into()))
            }
        }
    }

    /// The scheduled check, run to the end.
    pub async fn run_check(&self, options: CheckOptions) -> Result<ReorderReport> {
        self.run_check_until(options, None).await
    }

    /// The scheduled check: finish POs planned earlier, scan the catalogue from the cursor,
    /// raise one PO per supplier and warehouse for what is short, then poll goods-in notes of
    /// the open POs. Stops between units of work once `stop_at` has passed.
    pub async fn run_check_until(
        &self,
        options: CheckOptions,
        stop_at: Option<Instant>,
    ) -> Result<ReorderReport> {
        if options.dry_run || self.config.dry_run {
            return self.dry_run().await;
        }
        let exclusive = crate::state::idempotency::run_exclusively(
            Arc::clone(&self.state),
            "reorder-check",
            RUN_LEASE,
            self.check(stop_at),
        )
        .await?;
        Ok(exclusive.unwrap_or_else(|| {
            tracing::info!("another reorder check is running; this one skipped");
            ReorderReport { skipped_concurrent_run: true, ..ReorderReport::default() }
        }))
    }

    async fn check(&self, stop_at: Option<Instant>) -> Result<ReorderReport> {
        let requests_before = self.brightpearl.stats().requests;
        let mut report = ReorderReport::default();
        let mut clock = Clock { stop_at, worked: false };

        if !self.create_unfinished(&mut report, &mut clock, &BTreeSet::new()).await? {
            return Ok(self.finish(report, requests_before));
        }
        let finished_earlier_run = clock.worked;
        report.warehouses = self.warehouses_in_scope().await?;
        let now = now_epoch_millis();
        let cursor = self.load_cursor().await?;
        if cursor.is_none() && finished_earlier_run {
            // This invocation finished an earlier scan's POs: that run is complete, and the
            // next schedule starts a fresh scan.
            report.complete = true;
            if !clock.out_of_time() {
                let polled = self.poll_goods_in().await?;
                report.goods_in.merge(polled);
            }
            return Ok(self.finish(report, requests_before));
        }
        let mut cursor = match cursor {
            Some(c) if now - c.run_ms < scan::SCAN_MAX_AGE_MS => {
                report.resumed_scan = true;
                c
            }
            Some(_) => {
                self.clear_scan().await?;
                ScanCursor::new(now)
            }
            None => ScanCursor::new(now),
        };
        if !cursor.scanned {
            let open = self.load_open().await?;
            let on_order = self.on_order(&open, &report.warehouses).await?;
            let gone: Vec<u64> = open
                .iter()
                .filter_map(|t| t.record.purchase_order_id)
                .filter(|id| !on_order.open_po_ids.contains(id))
                .collect();
            if !gone.is_empty() {
                let closed = self.close_gone(&gone).await?;
                report.goods_in.merge(closed);
            }
            report.on_order = on_order.report.clone();
            let mut walker = Walker::resume(&cursor);
            while !cursor.scanned {
                if clock.out_of_time() {
                    self.save_cursor(&cursor).await?;
                    return Ok(self.finish(report, requests_before));
                }
                let slice = walker.take(self, self.config.slice_products).await?;
                let Some(&(last_id, _)) = slice.last() else {
                    cursor.scanned = true;
                    break;
                };
                let outcome = self.scan_slice(&slice, &report.warehouses, &on_order).await?;
                let lines = merge_slice(&mut report, outcome);
                self.save_slice(&cursor, lines).await?;
                cursor.slices += 1;
                walker.advance(&mut cursor, last_id);
                self.save_cursor(&cursor).await?;
                clock.worked = true;
            }
            self.save_cursor(&cursor).await?;
        }

        let planned = self.plan_records(&cursor).await?;
        self.clear_scan().await?;
        report.complete = self.create_unfinished(&mut report, &mut clock, &planned).await?;
        if report.complete && !clock.out_of_time() {
            let polled = self.poll_goods_in().await?;
            report.goods_in.merge(polled);
        }
        Ok(self.finish(report, requests_before))
    }

    /// Scans everything in memory and reports the plans; nothing is stored or created.
    async fn dry_run(&self) -> Result<ReorderReport> {
        let requests_before = self.brightpearl.stats().requests;
        let mut report = ReorderReport { dry_run: true, complete: true, ..Default::default() };
        report.warehouses = self.warehouses_in_scope().await?;
        let open = self.load_open().await?;
        let on_order = self.on_order(&open, &report.warehouses).await?;
        report.on_order = on_order.report.clone();
        let mut walker = Walker::resume(&ScanCursor::new(0));
        let mut lines = Vec::new();
        loop {
            let slice = walker.take(self, self.config.slice_products).await?;
            if slice.is_empty() {
                break;
            }
            let outcome = self.scan_slice(&slice, &report.warehouses, &on_order).await?;
            lines.extend(merge_slice(&mut report, outcome));
        }
        let run_ms = now_epoch_millis();
        for ((supplier_id, warehouse_id), part, rows) in group_lines(lines, self.config.max_rows_per_po) {
            report.planned.push(self.plan(supplier_id, warehouse_id, run_ms, part, rows));
        }
        Ok(self.finish(report, requests_before))
    }

    fn plan(
        &self,
        supplier_id: u64,
        warehouse_id: u64,
        run_ms: i64,
        part: u32,
        rows: Vec<PoLine>,
    ) -> PurchaseOrderPlan {
        PurchaseOrderPlan {
            supplier_id,
            warehouse_id,
            reference: format!("pearlsync-reorder-{supplier_id}-{warehouse_id}-{run_ms}-{part}"),
            currency_code: self.config.currency_code.clone(),
            tax_code: self.config.tax_code.clone(),
            rows,
        }
    }

    /// Turns a finished scan's lines into PO records. Keys are the run's, so planning the
    /// same scan again finds its records and adds none. Returns the keys stored now.
    async fn plan_records(&self, cursor: &ScanCursor) -> Result<BTreeSet<String>> {
        let lines = self.load_lines(cursor.run_ms).await?;
        let mut planned = BTreeSet::new();
        for ((supplier_id, warehouse_id), part, rows) in group_lines(lines, self.config.max_rows_per_po) {
            let record = PoRecord::new(
                self.plan(supplier_id, warehouse_id, cursor.run_ms, part, rows),
                cursor.run_ms,
                part,
            );
            let key = record.sort_key();
            let data = serde_json::to_value(&record).map_err(|e| Error::State(e.to_string()))?;
            let mut item = Item::new(PO_PARTITION, key.clone(), data);
            item.version = 1;
            if let PutOutcome::Written = self.state.put(item, Condition::Absent).await? {
                planned.insert(key);
            }
        }
        Ok(planned)
    }

    /// Creates every recorded PO not yet complete in Brightpearl, one at a time while there
    /// is time. True when none is left to retry.
    async fn create_unfinished(
        &self,
        report: &mut ReorderReport,
        clock: &mut Clock,
        planned_now: &BTreeSet<String>,
    ) -> Result<bool> {
        let mut finished = true;
        for mut t in self.load_open().await?.into_iter().filter(|t| !t.record.is_created()) {
            if clock.out_of_time() {
                return Ok(false);
            }
            let resumed = !planned_now.contains(&t.record.sort_key());
            match self.create_recorded(&mut t, resumed).await {
                Creation::Created(created) => {
                    self.metrics.count(names::PURCHASE_ORDERS_CREATED, 1);
                    report.purchase_orders.push(created);
                }
                Creation::Failed(failed) => {
                    finished &= !failed.retryable;
                    report.failed.push(failed);
                }
            }
            clock.worked = true;
        }
        Ok(finished)
    }

    fn finish(&self, mut report: ReorderReport, requests_before: u64) -> ReorderReport {
        report.brightpearl_requests = self.brightpearl.stats().requests.saturating_sub(requests_before);
        self.metrics.count(names::BRIGHTPEARL_REQUESTS, report.brightpearl_requests);
        tracing::info!(
            dry_run = report.dry_run,
            complete = report.complete,
            resumed_scan = report.resumed_scan,
            warehouses = report.warehouses.len(),
            products = report.products_checked,
            purchase_orders = report.purchase_orders.len(),
            planned = report.planned.len(),
            skipped = report.skipped.len(),
            failed = report.failed.len(),
            goods_in_notes = report.goods_in.notes_applied.len(),
            brightpearl_requests = report.brightpearl_requests,
            "reorder check finished"
        );
        report
    }

    /// The purchasing queue: `GoodsIn` jobs. The notes of a wave are read in one ID-set GET.
    pub async fn handle_batch(&self, messages: Vec<BatchMessage>) -> BatchReport {
        let report = process_batch(messages, self).await;
        tracing::info!(
            done = report.done,
            parked = report.parked.len(),
            retried = report.retried.len(),
            "purchasing batch finished"
        );
        report
    }

    async fn warehouses_in_scope(&self) -> Result<Vec<u64>> {
        if !self.config.warehouses.is_empty() {
            return Ok(self.config.warehouses.clone());
        }
        Ok(self.brightpearl.warehouses().await?.into_iter().map(|w| w.id).collect())
    }
}

/// Adds a slice's counts and skips to the report; returns its lines.
fn merge_slice(report: &mut ReorderReport, outcome: SliceOutcome) -> Vec<scan::PlannedLine> {
    report.products_checked += outcome.products;
    report.no_reorder_level += outcome.no_reorder_level;
    report.skipped.extend(outcome.skipped);
    outcome.lines
}

fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::BadInput(format!("report does not serialise: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_stops_a_margin_before_the_lambda_deadline() {
        let in_ten_minutes = now_epoch_millis() + 600_000;
        let at = stop_at(in_ten_minutes).expect("a stop time");
        let left = at.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(540) && left > Duration::from_secs(530), "{left:?}");
        assert!(stop_at(now_epoch_millis() - 1).is_some_and(|at| at <= Instant::now()));
        // No deadline to speak of, and no overflow.
        let _ = stop_at(i64::MAX);
        let clock = Clock { stop_at: Some(Instant::now()), worked: false };
        assert!(!clock.out_of_time(), "the first unit always runs");
        assert!(Clock { worked: true, ..clock }.out_of_time());
    }
}
