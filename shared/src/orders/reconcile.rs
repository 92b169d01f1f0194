//! Reconciliation: each store's orders created or updated since its cursor, enqueued when not
//! yet known, so a missed webhook delays an order and never loses it; the known ones whose
//! listed refunds are not all credited, enqueued as refund jobs, so a missed refund webhook
//! delays a credit and never loses it (the writer credits by refund id, once); and the goods-out notes
//! shipped since the tracking cursor, posted like a `goods-out-note.modified.shipped` webhook
//! (posting is once per note), so a missed shipment webhook delays tracking and never loses it.

use super::ReconcileReport;
use super::saga::{Credit, CreditStep, Saga, Step, saga_key};
use super::writer::OrderWriter;
use crate::batch::Outcome;
use crate::channels::{ListedRefunds, SalesChannel};
use crate::error::Result;
use crate::freshness::{self, Flow};
use crate::money::Decimal;
use crate::queue::{Job, OrderEvent};
use crate::state::{Condition, Item, Key};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

fn cursor_key(store: &str) -> Key {
    Key::new(format!("cursor#orders:{store}"), "reconcile")
}

fn tracking_cursor_key() -> Key {
    Key::new("cursor#tracking", "sweep")
}

impl OrderWriter {
    /// Lists each store's orders created or updated since its cursor and enqueues those not
    /// yet known, so a missed webhook delays an order and never loses it.
    pub async fn reconcile_orders(&self) -> Result<ReconcileReport> {
        let started_ms = crate::state::now_epoch_millis();
        let mut report = ReconcileReport::default();
        for channel in self.channels.iter() {
            report.stores += 1;
            let store = channel.store().name.clone();
            match self.reconcile_store(channel.as_ref()).await {
                Ok((listed, enqueued, refunds)) => {
                    report.listed += listed;
                    report.enqueued += enqueued;
                    report.refunds_enqueued += refunds;
                }
                Err(e) => {
                    tracing::warn!(store = %store, error = %e, "order reconciliation failed for a store");
                    report.failed.push((store, e.to_string()));
                }
            }
        }
        let tracked = match self.sweep_tracking().await {
            Ok(notes) => {
                report.shipped_notes_swept = notes;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "tracking sweep failed");
                report.failed.push(("tracking".into(), e.to_string()));
                false
            }
        };
        // Freshness per flow and store: what the "stopped running" alarms read.
        let stores: Vec<String> = self.channels.iter().map(|c| c.store().name.clone()).collect();
        let all: Vec<&str> = stores.iter().map(String::as_str).collect();
        let reconciled: Vec<&str> =
            all.iter().copied().filter(|s| !report.failed.iter().any(|(f, _)| f == s)).collect();
        let swept: Vec<&str> = if tracked { all.clone() } else { Vec::new() };
        for (flow, ok) in [(Flow::OrderReconciliation, &reconciled), (Flow::TrackingSweep, &swept)] {
            if let Err(e) = freshness::record_run(self.state.as_ref(), flow, &all, ok, started_ms).await {
                tracing::warn!(error = %e, flow = flow.as_str(), "freshness not recorded");
            }
        }
        // Scheduled runs (not every batch) leave the budget for `pearlsync status`: one write.
        freshness::record_budget_seen(
            self.state.as_ref(),
            self.brightpearl.as_ref(),
            self.metrics.function(),
        )
        .await;
        tracing::info!(
            stores = report.stores,
            listed = report.listed,
            enqueued = report.enqueued,
            refunds_enqueued = report.refunds_enqueued,
            shipped_notes = report.shipped_notes_swept,
            failed = report.failed.len(),
            "orders reconciled"
        );
        Ok(report)
    }

    /// The instant a cursor says, less the overlap; a first run looks back the initial window.
    async fn since(&self, key: &Key, started: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let cursor: Option<DateTime<Utc>> = self
            .state
            .get(key)
            .await?
            .and_then(|i| i.data.get("since").and_then(Value::as_str).map(str::to_string))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(match cursor {
            Some(c) => c - chrono::Duration::seconds(self.config.reconcile_overlap_secs as i64),
            None => started - chrono::Duration::seconds(self.config.reconcile_initial_lookback_secs as i64),
        })
    }

    async fn move_cursor(&self, key: Key, to: DateTime<Utc>) -> Result<()> {
        let data = json!({"since": to.to_rfc3339()});
        self.state.put(Item::new(key.pk, key.sk, data), Condition::Always).await?;
        Ok(())
    }

    /// Posts the tracking of goods-out notes shipped since the cursor; returns how many it saw.
    async fn sweep_tracking(&self) -> Result<usize> {
        let started = Utc::now();
        let key = tracking_cursor_key();
        let since = self.since(&key, started).await?;
        let notes = self.brightpearl.goods_out_notes_shipped_since(since).await?;
        for chunk in notes.chunks(200) {
            if let Outcome::Parked(reason) | Outcome::Retry(reason) = self.handle_shipment(chunk).await? {
                // The cursor stays: the next sweep tries these notes again.
                return Err(crate::Error::Unavailable { service: "brightpearl", detail: reason });
            }
        }
        self.move_cursor(key, started).await?;
        Ok(notes.len())
    }

    async fn reconcile_store(&self, channel: &dyn SalesChannel) -> Result<(usize, usize, usize)> {
        let store = channel.store().name.clone();
        let kind = channel.kind();
        let started = Utc::now();
        let key = cursor_key(&store);
        let since = self.since(&key, started).await?;
        let listed = channel.list_orders_since(since).await?;
        let keys: Vec<Key> = listed.iter().map(|o| saga_key(kind, &store, &o.id)).collect();
        let known: HashMap<Key, Item> =
            self.state.batch_get(&keys).await?.into_iter().map(|i| (i.key(), i)).collect();
        let job = |order_id: &str, event: OrderEvent, payload: Option<Value>| Job::ChannelOrder {
            channel: kind,
            store: store.clone(),
            order_id: order_id.to_string(),
            event,
            payload,
        };
        let mut jobs = Vec::new();
        let mut refunds = 0;
        for order in &listed {
            match known.get(&saga_key(kind, &store, &order.id)) {
                None => jobs.push(job(&order.id, OrderEvent::Created, None)),
                Some(item) => {
                    let Ok(saga) = serde_json::from_value::<Saga>(item.data.clone()) else { continue };
                    if let Some(what) = uncredited(&saga, &order.refunds) {
                        refunds += 1;
                        jobs.push(job(&order.id, OrderEvent::Refunded, Some(what)));
                    }
                }
            }
        }
        if !jobs.is_empty() {
            self.queue.send(&jobs).await?;
        }
        self.move_cursor(key, started).await?;
        Ok((listed.len(), jobs.len() - refunds, refunds))
    }
}

/// What a listed order's refunds hold that its saga has not credited, as the refund job's
/// payload (the writer fetches the refunds itself; the payload only makes each distinct gap
/// its own job, so a later loss on the same order is not taken for a repeat of this one).
/// `None` when everything listed is credited, or the order is not written (the create job
/// credits its refunds) or cancelled in Brightpearl.
fn uncredited(saga: &Saga, listed: &ListedRefunds) -> Option<Value> {
    if saga.step != Step::Done || saga.cancelled {
        return None;
    }
    let done = |c: &Credit| c.step == CreditStep::Done;
    match listed {
        ListedRefunds::Ids(ids) => {
            let missing: Vec<&String> =
                ids.iter().filter(|id| saga.credits.get(*id).is_none_or(|c| !done(c))).collect();
            (!missing.is_empty()).then(|| json!({"reconcile": "refunds", "missing": missing}))
        }
        ListedRefunds::Amount(refunded) => {
            // A credit written before amounts were kept counts as nothing: the job then fetches
            // the refunds and credits none twice (the saga knows each refund by id).
            let credited: Decimal = saga.credits.values().filter(|c| done(c)).filter_map(|c| c.amount).sum();
            (*refunded > credited).then(|| {
                json!({"reconcile": "refunds", "refunded_amount": refunded.to_string(), "credited": credited.to_string()})
            })
        }
    }
}
