//! The purchasing concern (issue 7): purchase orders raised from reorder points, one per
//! supplier and warehouse per run and never twice for the same need, and goods-in notes
//! tracked against them so the channels get the received stock.
//!
//! Rules (Brightpearl leaves these to the integrator):
//! - **Projected stock** of a product in a warehouse = physical on hand + on order − allocated.
//!   Availability gives `inStock` (physical = `onHand` + `allocated`) and `onHand` (the
//!   unallocated part), so projected = `onHand` + on order. On order = for every purchase order
//!   open in Brightpearl that delivers to the warehouse, ordered − received: our own POs from
//!   their state records (receipts from goods-in notes); POs raised elsewhere at their full
//!   ordered quantity (their receipts are not tracked; a PO without a delivery warehouse counts
//!   in every warehouse in scope), so a manual PO never gets a twin from us.
//! - **Quantity**: a product is short when projected < `reorderLevel`; need = level − projected.
//!   Round-up mode (default) orders `ceil(need / reorderQuantity) × reorderQuantity` when the
//!   reorder quantity is positive, else the need; fixed mode orders exactly `reorderQuantity`
//!   (or the need when it is not positive).
//! - **Skipped**: products with no positive reorder level in a warehouse (`no_reorder_level`),
//!   products Brightpearl gives no availability for, i.e. not stock tracked
//!   (`not_stock_tracked`), and short products whose record lists no supplier (`no_supplier`).
//!   The supplier is the first one listed (Brightpearl lists the default first).
//! - **PO rows** carry zero net and tax with the configured tax code: the buyer prices them.
//! - **Never twice**: before any write the plan is stored as a record
//!   (`pk = reorder#po`, `sk = {supplier}#{warehouse}#{created ms}`) holding its rows; the PO
//!   reference `pearlsync-reorder-{supplier}-{warehouse}-{created ms}` ties it to Brightpearl.
//!   Each write (header, then rows in multi-messages of 10) is flagged pending in the record
//!   before it is sent and cleared with its result after; a pending flag found on resume means
//!   the answer was lost, so Brightpearl is read (header by reference, rows by product) before
//!   anything is sent again. Unfinished records are resumed at the start of every run.
//! - **Closing**: a record closes when goods-in notes cover every row, or when Brightpearl no
//!   longer lists its PO as open (received or cancelled there) after its notes are applied.
//!   Closed records stay 30 days (TTL) so duplicate goods-in jobs are recognised.

use crate::app::App;
use crate::batch::{BatchMessage, BatchReport, Outcome, WaveHandler, process_batch};
use crate::brightpearl::multimessage::MAX_MESSAGES;
use crate::brightpearl::{BrightpearlApi, GoodsInNote, NewPurchaseOrder, NewPurchaseOrderRow};
use crate::config::parse_var;
use crate::error::{Error, Result};
use crate::lambda::{Trigger, batch_response, classify};
use crate::metrics::{Metrics, names};
use crate::queue::{Job, JobQueue};
use crate::state::{Condition, Item, PutOutcome, StateStore, now_epoch_millis, now_epoch_seconds};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

const PO_PARTITION: &str = "reorder#po";
const CLOSED_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// A record save that lost a race with a concurrent goods-in is retried this many times.
const SAVE_ATTEMPTS: usize = 3;
/// The schedule's task name (template input `{"pearlsync":"check-reorders"}`).
pub const TASK_CHECK: &str = "check-reorders";
/// A schedule task that only polls goods-in notes.
pub const TASK_POLL_GOODS_IN: &str = "poll-goods-in";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantityRule {
    /// Enough to reach the reorder level, rounded up to a multiple of the reorder quantity.
    #[default]
    RoundUp,
    /// Exactly the reorder quantity.
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderConfig {
    /// Warehouse ids to check; empty means every warehouse.
    #[serde(default)]
    pub warehouses: Vec<u64>,
    #[serde(default)]
    pub quantity_rule: QuantityRule,
    /// Plan only, never create (an event's `"dry_run": true` also asks for this).
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_currency")]
    pub currency_code: String,
    #[serde(default = "default_tax_code")]
    pub tax_code: String,
}

fn default_currency() -> String {
    "GBP".into()
}

fn default_tax_code() -> String {
    "T0".into()
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            warehouses: Vec::new(),
            quantity_rule: QuantityRule::default(),
            dry_run: false,
            currency_code: default_currency(),
            tax_code: default_tax_code(),
        }
    }
}

impl ReorderConfig {
    /// `REORDER_WAREHOUSES` (comma-separated ids), `REORDER_QUANTITY_RULE` (`round-up` or
    /// `fixed`), `REORDER_DRY_RUN`, `REORDER_CURRENCY`, `REORDER_TAX_CODE`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(list) = env("REORDER_WAREHOUSES") {
            self.warehouses = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|e| Error::config("REORDER_WAREHOUSES", format!("{s:?}: {e}"))))
                .collect::<Result<_>>()?;
        }
        if let Some(rule) = env("REORDER_QUANTITY_RULE") {
            self.quantity_rule = match rule.trim().to_ascii_lowercase().as_str() {
                "round-up" => QuantityRule::RoundUp,
                "fixed" => QuantityRule::Fixed,
                other => {
                    return Err(Error::config(
                        "REORDER_QUANTITY_RULE",
                        format!("{other:?} is not round-up or fixed"),
                    ));
                }
            };
        }
        if let Some(dry) = parse_var::<bool>(env, "REORDER_DRY_RUN")? {
            self.dry_run = dry;
        }
        if let Some(c) = env("REORDER_CURRENCY").filter(|c| !c.trim().is_empty()) {
            self.currency_code = c.trim().to_string();
        }
        if let Some(t) = env("REORDER_TAX_CODE").filter(|t| !t.trim().is_empty()) {
            self.tax_code = t.trim().to_string();
        }
        Ok(())
    }
}

/// How much to order, or None when projected stock already reaches the level (see the module
/// doc for the rule).
pub fn order_quantity(
    rule: QuantityRule,
    reorder_level: i64,
    reorder_quantity: i64,
    projected: i64,
) -> Option<i64> {
    if projected >= reorder_level {
        return None;
    }
    let need = reorder_level - projected;
    Some(match rule {
        QuantityRule::RoundUp if reorder_quantity > 0 => {
            (need + reorder_quantity - 1) / reorder_quantity * reorder_quantity
        }
        QuantityRule::Fixed if reorder_quantity > 0 => reorder_quantity,
        _ => need,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Return the PO payloads without creating anything (also on when the config says so).
    pub dry_run: bool,
}

impl CheckOptions {
    /// From a schedule event: `"dry_run": true` asks for a dry run.
    pub fn from_event(input: &Value) -> Self {
        CheckOptions { dry_run: input.get("dry_run").and_then(Value::as_bool).unwrap_or(false) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoLine {
    pub product_id: u64,
    pub quantity: i64,
}

/// A PO as we send it: header fields and rows. Dry runs report these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseOrderPlan {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub reference: String,
    pub currency_code: String,
    pub tax_code: String,
    pub rows: Vec<PoLine>,
}

impl PurchaseOrderPlan {
    fn header(&self) -> NewPurchaseOrder {
        NewPurchaseOrder {
            supplier_id: self.supplier_id,
            warehouse_id: Some(self.warehouse_id),
            currency_code: self.currency_code.clone(),
            reference: Some(self.reference.clone()),
            ..Default::default()
        }
    }

    fn row(&self, line: &PoLine) -> NewPurchaseOrderRow {
        NewPurchaseOrderRow {
            product_id: line.product_id,
            quantity: line.quantity,
            net: 0.0,
            tax: 0.0,
            tax_code: self.tax_code.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    NoReorderLevel,
    NotStockTracked,
    NoSupplier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedProduct {
    pub product_id: u64,
    pub warehouse_id: u64,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedPo {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub purchase_order_id: u64,
    pub reference: String,
    pub rows: Vec<PoLine>,
    /// Finished from an earlier run's record rather than planned in this one.
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPo {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub reference: String,
    pub reason: String,
    /// The next run resumes it.
    pub retryable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GoodsInReport {
    pub purchase_orders_checked: usize,
    pub notes_applied: Vec<u64>,
    /// POs whose records closed (fully received, or no longer open in Brightpearl).
    pub closed: Vec<u64>,
    /// Products sent to inventory-poll as `StockChanged`.
    pub products_received: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReorderReport {
    pub dry_run: bool,
    pub warehouses: Vec<u64>,
    pub products_checked: usize,
    /// POs created (or finished) by this run.
    pub purchase_orders: Vec<CreatedPo>,
    /// Dry run: what would be sent, per supplier and warehouse.
    pub planned: Vec<PurchaseOrderPlan>,
    pub skipped: Vec<SkippedProduct>,
    pub failed: Vec<FailedPo>,
    pub goods_in: GoodsInReport,
    /// Requests this run made to Brightpearl.
    pub brightpearl_requests: u64,
    /// Another check was running: this one did nothing (two at once could both raise a PO).
    pub skipped_concurrent_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecordState {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordLine {
    product_id: u64,
    quantity: i64,
    #[serde(default)]
    row_id: Option<u64>,
    #[serde(default)]
    received: i64,
}

/// A PO in state, from plan to closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PoRecord {
    plan: PurchaseOrderPlan,
    created_at_ms: i64,
    state: RecordState,
    #[serde(default)]
    purchase_order_id: Option<u64>,
    lines: Vec<RecordLine>,
    /// A write was sent whose answer is not recorded: read Brightpearl before writing again.
    #[serde(default)]
    write_pending: bool,
    #[serde(default)]
    goods_in_note_ids: Vec<u64>,
    #[serde(default)]
    closed_reason: Option<String>,
}

impl PoRecord {
    fn sort_key(&self) -> String {
        format!("{}#{}#{}", self.plan.supplier_id, self.plan.warehouse_id, self.created_at_ms)
    }

    fn is_created(&self) -> bool {
        self.purchase_order_id.is_some() && self.lines.iter().all(|l| l.row_id.is_some())
    }

    fn fully_received(&self) -> bool {
        self.lines.iter().all(|l| l.received >= l.quantity)
    }

    fn created(&self, resumed: bool) -> Option<CreatedPo> {
        Some(CreatedPo {
            supplier_id: self.plan.supplier_id,
            warehouse_id: self.plan.warehouse_id,
            purchase_order_id: self.purchase_order_id?,
            reference: self.plan.reference.clone(),
            rows: self.plan.rows.clone(),
            resumed,
        })
    }

    fn failed(&self, e: &Error) -> FailedPo {
        FailedPo {
            supplier_id: self.plan.supplier_id,
            warehouse_id: self.plan.warehouse_id,
            reference: self.plan.reference.clone(),
            reason: e.to_string(),
            retryable: e.is_retryable(),
        }
    }

    fn close(&mut self, reason: &str) {
        self.state = RecordState::Closed;
        self.closed_reason = Some(reason.to_string());
    }
}

/// A record with the version it was read at (0: not stored yet).
struct Tracked {
    version: u64,
    record: PoRecord,
}

/// Longest a check may hold its lease: the Lambda timeout (15 minutes).
const RUN_LEASE: std::time::Duration = std::time::Duration::from_secs(900);

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

    /// Background priority: reorder checks yield to order work when the budget runs low.
    pub fn new(app: &App) -> Self {
        Self::from_parts(
            app.background_brightpearl(),
            Arc::clone(&app.state),
            Arc::clone(&app.queue),
            Arc::clone(&app.metrics),
            app.config.reorder.clone(),
        )
    }

    /// One Lambda event: a schedule (`check-reorders`, the default, or `poll-goods-in`) or a
    /// purchasing-queue batch. Returns the report, or the partial-batch response.
    pub async fn handle_event(&self, event: Value) -> Result<Value> {
        match classify(event) {
            Trigger::Schedule { task, input } => match task.as_deref() {
                None | Some(TASK_CHECK) => to_json(&self.run_check(CheckOptions::from_event(&input)).await?),
                Some(TASK_POLL_GOODS_IN) => to_json(&self.poll_goods_in().await?),
                Some(other) => Err(Error::BadInput(format!("reorder-checker has no task {other:?}"))),
            },
            Trigger::Sqs(messages) => Ok(batch_response(&self.handle_batch(messages).await)),
            Trigger::Other(_) => {
                Err(Error::BadInput("reorder-checker takes a schedule or an SQS batch".into()))
            }
        }
    }

    /// The scheduled check: resume unfinished POs, project stock, raise one PO per supplier and
    /// warehouse for what is short, then poll goods-in notes of the open POs.
    pub async fn run_check(&self, options: CheckOptions) -> Result<ReorderReport> {
        if options.dry_run || self.config.dry_run {
            return self.check(options).await;
        }
        let exclusive = crate::state::idempotency::run_exclusively(
            Arc::clone(&self.state),
            "reorder-check",
            RUN_LEASE,
            self.check(options),
        )
        .await?;
        Ok(exclusive.unwrap_or_else(|| {
            tracing::info!("another reorder check is running; this one skipped");
            ReorderReport { skipped_concurrent_run: true, ..ReorderReport::default() }
        }))
    }

    async fn check(&self, options: CheckOptions) -> Result<ReorderReport> {
        let requests_before = self.brightpearl.stats().requests;
        let dry_run = options.dry_run || self.config.dry_run;
        let mut report = ReorderReport { dry_run, ..Default::default() };

        let mut open = self.load_open().await?;
        if !dry_run {
            for t in open.iter_mut().filter(|t| !t.record.is_created()) {
                match self.ensure_created(t).await {
                    Ok(()) => report.purchase_orders.extend(t.record.created(true)),
                    Err(e) => report.failed.push(t.record.failed(&e)),
                }
            }
        }

        report.warehouses = self.warehouses_in_scope().await?;
        let product_ids = self.brightpearl.catalogue_product_ids().await?;
        report.products_checked = product_ids.len();
        let availability = self.brightpearl.availability(&product_ids).await?;

        // Short before counting what is on order: those are the products whose supplier and
        // open POs we need to know.
        let mut candidates: Vec<Candidate> = Vec::new();
        for &warehouse_id in &report.warehouses {
            for d in self.brightpearl.warehouse_defaults(warehouse_id, &product_ids).await? {
                let skip = |reason| SkippedProduct { product_id: d.product_id, warehouse_id, reason };
                let Some(level) = d.reorder_level.filter(|l| *l > 0) else {
                    report.skipped.push(skip(SkipReason::NoReorderLevel));
                    continue;
                };
                let Some(levels) = availability.get(&d.product_id) else {
                    report.skipped.push(skip(SkipReason::NotStockTracked));
                    continue;
                };
                let on_hand = levels.warehouses.get(&warehouse_id).map_or(0, |s| s.on_hand);
                if on_hand < level {
                    candidates.push(Candidate {
                        product_id: d.product_id,
                        warehouse_id,
                        on_hand,
                        level,
                        reorder_quantity: d.reorder_quantity.unwrap_or(0),
                    });
                }
            }
        }
        let short_ids: Vec<u64> =
            candidates.iter().map(|c| c.product_id).collect::<BTreeSet<_>>().into_iter().collect();
        let suppliers: HashMap<u64, u64> = if short_ids.is_empty() {
            HashMap::new()
        } else {
            self.brightpearl
                .products(&short_ids)
                .await?
                .into_iter()
                .filter_map(|p| Some((p.id, *p.supplier_ids.first()?)))
                .collect()
        };

        // Brightpearl's open POs for every supplier involved: ours that left the list are
        // received or cancelled there; others count as on order.
        let supplier_set: BTreeSet<u64> = candidates
            .iter()
            .filter_map(|c| suppliers.get(&c.product_id).copied())
            .chain(open.iter().map(|t| t.record.plan.supplier_id))
            .collect();
        let mut open_in_brightpearl: HashSet<u64> = HashSet::new();
        for &supplier in &supplier_set {
            open_in_brightpearl.extend(
                self.brightpearl.open_purchase_orders(supplier).await?.into_iter().map(|r| r.order_id),
            );
        }
        let gone: Vec<u64> = open
            .iter()
            .filter_map(|t| t.record.purchase_order_id)
            .filter(|id| !open_in_brightpearl.contains(id))
            .collect();
        if !gone.is_empty() && !dry_run {
            let closed = self.close_gone(&gone).await?;
            report.goods_in.merge(closed);
            open = self.load_open().await?;
        }
        let ours: HashSet<u64> = open.iter().filter_map(|t| t.record.purchase_order_id).collect();
        let foreign: Vec<u64> = open_in_brightpearl
            .iter()
            .copied()
            .filter(|id| !ours.contains(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let mut on_order: HashMap<(u64, u64), i64> = HashMap::new();
        for t in open.iter().filter(|t| t.record.purchase_order_id.is_none_or(|id| !gone.contains(&id))) {
            for l in &t.record.lines {
                *on_order.entry((l.product_id, t.record.plan.warehouse_id)).or_default() +=
                    (l.quantity - l.received).max(0);
            }
        }
        if !foreign.is_empty() {
            for po in self.brightpearl.purchase_orders(&foreign).await? {
                let into: Vec<u64> = po.warehouse_id.map_or_else(|| report.warehouses.clone(), |w| vec![w]);
                for row in &po.rows {
                    let Some(product_id) = row.product_id else { continue };
                    for &w in &into {
                        *on_order.entry((product_id, w)).or_default() += row.quantity.max(0);
                    }
                }
            }
        }

        let mut groups: BTreeMap<(u64, u64), Vec<PoLine>> = BTreeMap::new();
        for c in &candidates {
            let Some(&supplier_id) = suppliers.get(&c.product_id) else {
                report.skipped.push(SkippedProduct {
                    product_id: c.product_id,
                    warehouse_id: c.warehouse_id,
                    reason: SkipReason::NoSupplier,
                });
                continue;
            };
            let projected = c.on_hand + on_order.get(&(c.product_id, c.warehouse_id)).copied().unwrap_or(0);
            if let Some(quantity) =
                order_quantity(self.config.quantity_rule, c.level, c.reorder_quantity, projected)
            {
                groups
                    .entry((supplier_id, c.warehouse_id))
                    .or_default()
                    .push(PoLine { product_id: c.product_id, quantity });
            }
        }

        let created_at_ms = now_epoch_millis();
        for ((supplier_id, warehouse_id), rows) in groups {
            let plan = PurchaseOrderPlan {
                supplier_id,
                warehouse_id,
                reference: format!("pearlsync-reorder-{supplier_id}-{warehouse_id}-{created_at_ms}"),
                currency_code: self.config.currency_code.clone(),
                tax_code: self.config.tax_code.clone(),
                rows,
            };
            if dry_run {
                report.planned.push(plan);
                continue;
            }
            let lines = plan
                .rows
                .iter()
                .map(|r| RecordLine {
                    product_id: r.product_id,
                    quantity: r.quantity,
                    row_id: None,
                    received: 0,
                })
                .collect();
            let mut t = Tracked {
                version: 0,
                record: PoRecord {
                    plan,
                    created_at_ms,
                    state: RecordState::Open,
                    purchase_order_id: None,
                    lines,
                    write_pending: false,
                    goods_in_note_ids: Vec::new(),
                    closed_reason: None,
                },
            };
            let result = match self.save(&mut t).await {
                Ok(()) => self.ensure_created(&mut t).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    self.metrics.count(names::PURCHASE_ORDERS_CREATED, 1);
                    report.purchase_orders.extend(t.record.created(false));
                }
                Err(e) => report.failed.push(t.record.failed(&e)),
            }
        }

        if !dry_run {
            let polled = self.poll_goods_in().await?;
            report.goods_in.merge(polled);
        }
        report.brightpearl_requests = self.brightpearl.stats().requests.saturating_sub(requests_before);
        self.metrics.count(names::BRIGHTPEARL_REQUESTS, report.brightpearl_requests);
        tracing::info!(
            dry_run,
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
        Ok(report)
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

    /// The fallback for lost goods-in webhooks: reads the goods-in notes of every open PO and
    /// applies the ones not seen yet.
    pub async fn poll_goods_in(&self) -> Result<GoodsInReport> {
        let po_ids: Vec<u64> =
            self.load_open().await?.iter().filter_map(|t| t.record.purchase_order_id).collect();
        if po_ids.is_empty() {
            return Ok(GoodsInReport::default());
        }
        let notes = self.brightpearl.goods_in_notes_for_orders(&po_ids).await?;
        let mut report = self.apply_goods_in(&notes).await?;
        report.purchase_orders_checked = po_ids.len();
        Ok(report)
    }

    async fn warehouses_in_scope(&self) -> Result<Vec<u64>> {
        if !self.config.warehouses.is_empty() {
            return Ok(self.config.warehouses.clone());
        }
        Ok(self.brightpearl.warehouses().await?.into_iter().map(|w| w.id).collect())
    }

    async fn load_open(&self) -> Result<Vec<Tracked>> {
        let mut open = Vec::new();
        for item in self.state.query(PO_PARTITION, "").await? {
            let record: PoRecord = serde_json::from_value(item.data)
                .map_err(|e| Error::State(format!("PO record {} does not parse: {e}", item.sk)))?;
            if record.state == RecordState::Open {
                open.push(Tracked { version: item.version, record });
            }
        }
        Ok(open)
    }

    /// Conditional on the version read, so a concurrent goods-in is never overwritten.
    async fn save(&self, t: &mut Tracked) -> Result<()> {
        let data = serde_json::to_value(&t.record).map_err(|e| Error::State(e.to_string()))?;
        let mut item = Item::new(PO_PARTITION, t.record.sort_key(), data);
        item.version = t.version + 1;
        if t.record.state == RecordState::Closed {
            item = item.with_expiry(now_epoch_seconds() + CLOSED_TTL_SECONDS);
        }
        let condition = if t.version == 0 { Condition::Absent } else { Condition::VersionIs(t.version) };
        match self.state.put(item, condition).await? {
            PutOutcome::Written => {
                t.version += 1;
                Ok(())
            }
            PutOutcome::ConditionFailed { .. } => {
                Err(Error::State(format!("PO record {} changed concurrently", t.record.sort_key())))
            }
        }
    }

    /// Creates the header and the missing rows of a recorded PO, resuming after any failure.
    async fn ensure_created(&self, t: &mut Tracked) -> Result<()> {
        let bp = &self.brightpearl;
        if t.record.purchase_order_id.is_none() {
            if t.record.write_pending {
                t.record.purchase_order_id = self.find_by_reference(&t.record.plan).await?;
            }
            if t.record.purchase_order_id.is_none() {
                t.record.write_pending = true;
                self.save(t).await?;
                t.record.purchase_order_id =
                    Some(bp.create_purchase_order_header(&t.record.plan.header()).await?);
            }
            t.record.write_pending = false;
            self.save(t).await?;
        }
        let Some(po_id) = t.record.purchase_order_id else { return Ok(()) };
        if t.record.write_pending {
            // The last row chunk may have landed: adopt Brightpearl's rows before sending more.
            let existing: Vec<(u64, u64)> = bp
                .purchase_orders(&[po_id])
                .await?
                .into_iter()
                .flat_map(|po| po.rows)
                .filter_map(|r| Some((r.product_id?, r.id)))
                .collect();
            for line in t.record.lines.iter_mut().filter(|l| l.row_id.is_none()) {
                line.row_id = existing.iter().find(|(p, _)| *p == line.product_id).map(|(_, id)| *id);
            }
            t.record.write_pending = false;
            self.save(t).await?;
        }
        loop {
            let missing: Vec<usize> = (0..t.record.lines.len())
                .filter(|&i| t.record.lines[i].row_id.is_none())
                .take(MAX_MESSAGES)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let rows: Vec<NewPurchaseOrderRow> = missing
                .iter()
                .map(|&i| {
                    let l = &t.record.lines[i];
                    t.record.plan.row(&PoLine { product_id: l.product_id, quantity: l.quantity })
                })
                .collect();
            t.record.write_pending = true;
            self.save(t).await?;
            let row_ids = bp.add_purchase_order_rows(po_id, &rows).await?;
            for (&i, id) in missing.iter().zip(row_ids) {
                t.record.lines[i].row_id = Some(id);
            }
            t.record.write_pending = false;
            self.save(t).await?;
        }
    }

    /// Our PO whose header POST lost its answer, found by its reference among the supplier's
    /// open POs.
    async fn find_by_reference(&self, plan: &PurchaseOrderPlan) -> Result<Option<u64>> {
        let ids: Vec<u64> = self
            .brightpearl
            .open_purchase_orders(plan.supplier_id)
            .await?
            .into_iter()
            .map(|r| r.order_id)
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        Ok(self
            .brightpearl
            .purchase_orders(&ids)
            .await?
            .into_iter()
            .find(|po| po.reference.as_deref() == Some(plan.reference.as_str()))
            .map(|po| po.id))
    }

    /// Records whose POs Brightpearl no longer lists as open: apply their goods-in notes, then
    /// close what is left open.
    async fn close_gone(&self, po_ids: &[u64]) -> Result<GoodsInReport> {
        let notes = self.brightpearl.goods_in_notes_for_orders(po_ids).await?;
        let mut report = self.apply_goods_in(&notes).await?;
        for mut t in self.load_open().await? {
            if let Some(id) = t.record.purchase_order_id.filter(|id| po_ids.contains(id)) {
                t.record.close("no longer open in Brightpearl");
                self.save(&mut t).await?;
                report.closed.push(id);
            }
        }
        Ok(report)
    }

    /// Marks received quantities on our open POs; duplicate notes are ignored by id. The
    /// `StockChanged` job goes out before the records are saved: a failed save retries the
    /// work and at worst asks inventory-poll twice, never zero times.
    async fn apply_goods_in(&self, notes: &[GoodsInNote]) -> Result<GoodsInReport> {
        let mut last_error = None;
        for _ in 0..SAVE_ATTEMPTS {
            let mut open = self.load_open().await?;
            let mut report = GoodsInReport::default();
            let mut touched: BTreeSet<usize> = BTreeSet::new();
            let mut products: BTreeSet<u64> = BTreeSet::new();
            for note in notes {
                let Some(i) =
                    open.iter().position(|t| t.record.purchase_order_id == Some(note.purchase_order_id))
                else {
                    continue;
                };
                let record = &mut open[i].record;
                if record.goods_in_note_ids.contains(&note.id) {
                    continue;
                }
                for row in &note.rows {
                    let by_row = record
                        .lines
                        .iter()
                        .position(|l| row.order_row_id.is_some() && l.row_id == row.order_row_id);
                    let by_product = || record.lines.iter().position(|l| l.product_id == row.product_id);
                    if let Some(j) = by_row.or_else(by_product) {
                        record.lines[j].received += row.quantity;
                        products.insert(record.lines[j].product_id);
                    }
                }
                record.goods_in_note_ids.push(note.id);
                report.notes_applied.push(note.id);
                if record.fully_received() && record.state == RecordState::Open {
                    record.close("fully received");
                    report.closed.extend(record.purchase_order_id);
                }
                touched.insert(i);
            }
            if touched.is_empty() {
                return Ok(report);
            }
            if !products.is_empty() {
                let product_ids: Vec<u64> = products.iter().copied().collect();
                self.queue.send(&[Job::StockChanged { product_ids: product_ids.clone() }]).await?;
                report.products_received = product_ids;
            }
            let mut conflict = false;
            for i in touched {
                if let Err(e) = self.save(&mut open[i]).await {
                    conflict = true;
                    last_error = Some(e);
                    break;
                }
            }
            if !conflict {
                tracing::info!(
                    notes = report.notes_applied.len(),
                    closed = report.closed.len(),
                    products = report.products_received.len(),
                    "goods-in applied"
                );
                return Ok(report);
            }
        }
        Err(last_error.unwrap_or_else(|| Error::State("goods-in records kept changing".into())))
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::BadInput(format!("report does not serialise: {e}")))
}

struct Candidate {
    product_id: u64,
    warehouse_id: u64,
    on_hand: i64,
    level: i64,
    reorder_quantity: i64,
}

impl GoodsInReport {
    fn merge(&mut self, other: GoodsInReport) {
        self.purchase_orders_checked += other.purchase_orders_checked;
        self.notes_applied.extend(other.notes_applied);
        self.closed.extend(other.closed);
        for p in other.products_received {
            if !self.products_received.contains(&p) {
                self.products_received.push(p);
            }
        }
    }
}

#[async_trait]
impl WaveHandler for ReorderChecker {
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
        let mut outcomes = HashMap::new();
        let mut goods_in: Vec<(String, Job)> = Vec::new();
        for (id, job) in jobs {
            if let Job::GoodsIn { .. } = job {
                goods_in.push((id, job));
            } else {
                let reason = "not a purchasing job";
                if let Err(e) = crate::parking::park(self.state.as_ref(), &job, reason).await {
                    outcomes.insert(id, Outcome::Retry(e.to_string()));
                    continue;
                }
                outcomes.insert(id, Outcome::Parked(reason.into()));
            }
        }
        let note_ids: Vec<u64> = goods_in
            .iter()
            .flat_map(|(_, job)| match job {
                Job::GoodsIn { goods_in_note_ids } => goods_in_note_ids.clone(),
                _ => Vec::new(),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let result = match note_ids.is_empty() {
            true => Ok(GoodsInReport::default()),
            false => match self.brightpearl.goods_in_notes(&note_ids).await {
                Ok(notes) => self.apply_goods_in(&notes).await,
                Err(e) => Err(e),
            },
        };
        for (id, job) in goods_in {
            let outcome = match &result {
                Ok(_) => Outcome::Done,
                Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
                Err(e) => match crate::parking::park(self.state.as_ref(), &job, &e.to_string()).await {
                    Ok(_) => Outcome::Parked(e.to_string()),
                    Err(park_error) => Outcome::Retry(park_error.to_string()),
                },
            };
            outcomes.insert(id, outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_reaches_the_level_in_multiples_of_the_reorder_quantity() {
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 3), Some(10));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 5), Some(5));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 0, 4), Some(6));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 25, -2), Some(25));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 10), None);
    }

    #[test]
    fn fixed_orders_the_reorder_quantity_or_the_need() {
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 7, 0), Some(7));
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 0, 4), Some(6));
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 7, 12), None);
    }

    #[test]
    fn environment_sets_the_reorder_section() {
        let env = |name: &str| match name {
            "REORDER_WAREHOUSES" => Some("2, 3".to_string()),
            "REORDER_QUANTITY_RULE" => Some("fixed".to_string()),
            "REORDER_DRY_RUN" => Some("true".to_string()),
            _ => None,
        };
        let mut config = ReorderConfig::default();
        config.apply_env(&env).unwrap();
        assert_eq!(config.warehouses, [2, 3]);
        assert_eq!(config.quantity_rule, QuantityRule::Fixed);
        assert!(config.dry_run);
        let bad = |name: &str| (name == "REORDER_QUANTITY_RULE").then(|| "sometimes".to_string());
        assert!(
            ReorderConfig::default()
                .apply_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("REORDER_QUANTITY_RULE")
        );
    }
}
