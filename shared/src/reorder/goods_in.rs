//! Receipts: goods-in notes matched against our open PO records (by job, by poll, and when
//! Brightpearl stops listing a PO as open), and the purchasing queue's wave handler.

use super::ReorderChecker;
use super::record::RecordState;
use super::report::GoodsInReport;
use crate::batch::{Outcome, WaveHandler};
use crate::brightpearl::GoodsInNote;
use crate::error::{Error, Result};
use crate::queue::Job;
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};

/// A record save that lost a race with a concurrent goods-in is retried this many times.
const SAVE_ATTEMPTS: usize = 3;

impl ReorderChecker {
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

    /// Records whose POs Brightpearl no longer lists as open: apply their goods-in notes, then
    /// close what is left open.
    pub(super) async fn close_gone(&self, po_ids: &[u64]) -> Result<GoodsInReport> {
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
    pub(super) async fn apply_goods_in(&self, notes: &[GoodsInNote]) -> Result<GoodsInReport> {
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
