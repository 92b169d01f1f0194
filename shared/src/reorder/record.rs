//! Our purchase-order records: stored before any write, so a PO is never raised twice, and
//! resumed after any failure by reading Brightpearl before writing again.

use super::ReorderChecker;
use super::report::{CreatedPo, FailedPo, PoLine, PurchaseOrderPlan};
use crate::brightpearl::NewPurchaseOrderRow;
use crate::brightpearl::multimessage::MAX_MESSAGES;
use crate::error::{Error, Result};
use crate::queue::Job;
use crate::state::{Condition, Item, PutOutcome, now_epoch_seconds};
use serde::{Deserialize, Serialize};

pub(super) const PO_PARTITION: &str = "reorder#po";
const CLOSED_TTL_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RecordState {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RecordLine {
    pub(super) product_id: u64,
    pub(super) quantity: i64,
    #[serde(default)]
    pub(super) row_id: Option<u64>,
    #[serde(default)]
    pub(super) received: i64,
}

/// A PO in state, from plan to closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PoRecord {
    pub(super) plan: PurchaseOrderPlan,
    pub(super) created_at_ms: i64,
    /// Which of the run's POs for this supplier and warehouse (long lists are split).
    #[serde(default)]
    pub(super) part: u32,
    pub(super) state: RecordState,
    #[serde(default)]
    pub(super) purchase_order_id: Option<u64>,
    pub(super) lines: Vec<RecordLine>,
    /// A write was sent whose answer is not recorded: read Brightpearl before writing again.
    #[serde(default)]
    pub(super) write_pending: bool,
    #[serde(default)]
    pub(super) goods_in_note_ids: Vec<u64>,
    #[serde(default)]
    pub(super) closed_reason: Option<String>,
}

impl PoRecord {
    pub(super) fn new(plan: PurchaseOrderPlan, created_at_ms: i64, part: u32) -> Self {
        let lines = plan
            .rows
            .iter()
            .map(|r| RecordLine { product_id: r.product_id, quantity: r.quantity, row_id: None, received: 0 })
            .collect();
        PoRecord {
            plan,
            created_at_ms,
            part,
            state: RecordState::Open,
            purchase_order_id: None,
            lines,
            write_pending: false,
            goods_in_note_ids: Vec::new(),
            closed_reason: None,
        }
    }

    /// Deterministic per run, supplier, warehouse and part: planning the same scan twice
    /// (a crash between planning and cleaning up) finds the records already there.
    pub(super) fn sort_key(&self) -> String {
        format!(
            "{}#{}#{}#{:04}",
            self.plan.supplier_id, self.plan.warehouse_id, self.created_at_ms, self.part
        )
    }

    pub(super) fn is_created(&self) -> bool {
        self.purchase_order_id.is_some() && self.lines.iter().all(|l| l.row_id.is_some())
    }

    pub(super) fn fully_received(&self) -> bool {
        self.lines.iter().all(|l| l.received >= l.quantity)
    }

    pub(super) fn created(&self, resumed: bool) -> Option<CreatedPo> {
        Some(CreatedPo {
            supplier_id: self.plan.supplier_id,
            warehouse_id: self.plan.warehouse_id,
            purchase_order_id: self.purchase_order_id?,
            reference: self.plan.reference.clone(),
            rows: self.plan.rows.clone(),
            resumed,
        })
    }

    fn failed(&self, e: &Error, parked: bool) -> FailedPo {
        FailedPo {
            supplier_id: self.plan.supplier_id,
            warehouse_id: self.plan.warehouse_id,
            reference: self.plan.reference.clone(),
            reason: e.to_string(),
            retryable: e.is_retryable(),
            parked,
        }
    }

    pub(super) fn close(&mut self, reason: &str) {
        self.state = RecordState::Closed;
        self.closed_reason = Some(reason.to_string());
    }
}

/// A record with the version it was read at (0: not stored yet).
pub(super) struct Tracked {
    pub(super) version: u64,
    pub(super) record: PoRecord,
}

/// What creating one record came to.
pub(super) enum Creation {
    Created(CreatedPo),
    Failed(FailedPo),
}

impl ReorderChecker {
    pub(super) async fn load_open(&self) -> Result<Vec<Tracked>> {
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
    pub(super) async fn save(&self, t: &mut Tracked) -> Result<()> {
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

    /// Creates a recorded PO. A refusal from Brightpearl (a 4xx) is final: the record is
    /// closed with the reason, so its rows stop counting as on order, and the failure is
    /// parked for a person to look at. Anything retryable leaves the record for the next run.
    pub(super) async fn create_recorded(&self, t: &mut Tracked, resumed: bool) -> Creation {
        let e = match self.ensure_created(t).await {
            Ok(()) => {
                return match t.record.created(resumed) {
                    Some(created) => Creation::Created(created),
                    None => Creation::Failed(t.record.failed(&Error::State("PO has no id".into()), false)),
                };
            }
            Err(e) => e,
        };
        if !matches!(e, Error::Rejected { .. }) {
            return Creation::Failed(t.record.failed(&e, false));
        }
        let reason = format!("purchase order {} rejected by Brightpearl: {e}", t.record.plan.reference);
        t.record.close(&reason);
        t.record.write_pending = false;
        if let Err(save_error) = self.save(t).await {
            return Creation::Failed(t.record.failed(&save_error, false));
        }
        // The parked job names the PO's products: replaying it re-pushes their stock, and
        // the next check plans them again.
        let job = Job::StockChanged { product_ids: t.record.lines.iter().map(|l| l.product_id).collect() };
        let parked = crate::parking::park(self.state.as_ref(), &job, &reason).await.is_ok();
        tracing::warn!(reference = %t.record.plan.reference, reason, parked, "purchase order rejected");
        Creation::Failed(t.record.failed(&e, parked))
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
}
