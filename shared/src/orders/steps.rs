//! The Brightpearl writes of an order, each behind its intent and decided only by its
//! [`WriteOutcome`]: `Applied` records the result; `NotApplied` fails the work (retried or
//! parked by the error's class) with the intent still standing, which is harmless; `Unknown`
//! leaves the intent for the next attempt, which checks before it repeats.

use super::rows::readback_mismatch;
use super::saga::{SagaRow, Step, external_ref, sales_order_key};
use super::writer::{OrderWriter, Work};
use crate::batch::Outcome;
use crate::brightpearl::{ReservationRequest, ReservationRow, WriteOutcome};
use crate::error::Error;
use crate::failures::{self, Failure, FailureCode};
use crate::metrics::names;
use crate::pending;
use crate::state::{Condition, Item};
use serde_json::json;
use std::collections::HashMap;

impl OrderWriter {
    /// An ambiguous write: the intent stays, and the next attempt checks before repeating.
    pub(super) fn left_unknown(&self, w: &mut Work, what: &str, e: &Error) {
        tracing::warn!(order = %w.order_id, error = %e, "{what}: outcome unknown; the next attempt checks before repeating");
        self.bump(|r| r.unknown_outcomes += 1);
        w.outcome =
            Some(Outcome::Retry(format!("{what}: outcome unknown ({e}); checking on the next attempt")));
    }

    /// Posts the sales orders of the wave. An order found at `creating` (an earlier attempt
    /// stopped there) is first searched by externalRef; only if none exists is it posted again.
    pub(super) async fn create(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.resumed_at(Step::Creating)) {
            match self.brightpearl.find_sales_order_id(&external_ref(&w.store, &w.order_id)).await {
                Ok(Some(id)) => {
                    self.created(w, id).await;
                }
                Ok(None) => {}
                Err(e) => w.fail(&e),
            }
        }
        let mut posting: Vec<usize> = Vec::new();
        let mut orders = Vec::new();
        for (i, w) in works.iter().enumerate() {
            let (true, Some(mut order), Some(contact)) =
                (w.at(Step::Creating), w.new_order.clone(), w.saga.as_ref().and_then(|s| s.contact_id))
            else {
                continue;
            };
            order.customer_id = contact;
            posting.push(i);
            orders.push(order);
        }
        if orders.is_empty() {
            return;
        }
        let outcomes = self.brightpearl.create_sales_orders(&orders).await;
        for (i, outcome) in posting.into_iter().zip(outcomes) {
            let w = &mut works[i];
            match outcome {
                WriteOutcome::Applied(id) => {
                    self.created(w, id).await;
                }
                WriteOutcome::NotApplied(e) => w.fail(&e),
                WriteOutcome::Unknown(e) => self.left_unknown(w, "sales order POST", &e),
            }
        }
    }

    /// Records a created sales order and the reverse mapping used by shipments.
    async fn created(&self, w: &mut Work, sales_order_id: u64) -> bool {
        let mapping = sales_order_key(sales_order_id);
        let data = json!({"kind": w.kind, "store": w.store, "order_id": w.order_id});
        if let Err(e) = self.state.put(Item::new(mapping.pk, mapping.sk, data), Condition::Always).await {
            w.fail(&e);
            return false;
        }
        let ok = self.advance(w, Step::Created, |s| s.sales_order_id = Some(sales_order_id)).await;
        if ok {
            self.bump(|r| r.created += 1);
            self.metrics.count(names::ORDERS_CREATED, 1);
            // Text cut to Brightpearl's field limits keeps its full form in a note.
            for text in w.new_order.as_ref().map(|o| o.notes.clone()).unwrap_or_default() {
                match self.brightpearl.add_order_note(sales_order_id, &text).await {
                    Ok(_) => self.bump(|r| r.notes_added += 1),
                    Err(e) => tracing::warn!(order = %w.order_id, error = %e, "address note not added"),
                }
            }
        }
        ok
    }

    /// Row ids of the created orders, in one ID-set GET.
    pub(super) async fn read_rows(&self, works: &mut [Work]) {
        let ids: Vec<u64> =
            works.iter().filter(|w| w.at(Step::Created)).filter_map(Work::sales_order_id).collect();
        if ids.is_empty() {
            return;
        }
        let orders = match self.brightpearl.sales_orders(&ids).await {
            Ok(orders) => orders,
            Err(e) => {
                works.iter_mut().filter(|w| w.at(Step::Created)).for_each(|w| w.fail(&e));
                return;
            }
        };
        let by_id: HashMap<u64, _> = orders.into_iter().map(|o| (o.id, o)).collect();
        for w in works.iter_mut().filter(|w| w.at(Step::Created)) {
            let Some(so) = w.sales_order_id() else { continue };
            match by_id.get(&so) {
                Some(o) => {
                    if let Some(text) = w.new_order.as_ref().and_then(|sent| readback_mismatch(sent, o)) {
                        self.total_differs(w, so, text).await;
                    }
                    if let Some(s) = w.saga.as_mut() {
                        s.rows = o
                            .rows
                            .iter()
                            .map(|r| SagaRow {
                                row_id: r.id,
                                product_id: r.product_id,
                                quantity: r.quantity,
                                line_id: r.external_ref.clone(),
                            })
                            .collect();
                    }
                }
                None => w.fail(&Error::Unavailable {
                    service: "brightpearl",
                    detail: format!("sales order {so} not readable yet"),
                }),
            }
        }
    }

    /// Brightpearl's own total differs from what was sent: the order (or credit) stands (it
    /// exists), and a note on it, a metric and a parked record tell a person.
    pub(super) async fn total_differs(&self, w: &Work, so: u64, text: String) {
        tracing::error!(order = %w.order_id, sales_order = so, text, "Brightpearl total differs from the channel's");
        self.metrics.count(names::ORDERS_TOTAL_MISMATCH, 1);
        if let Err(e) = self.brightpearl.add_order_note(so, &text).await {
            tracing::warn!(order = %w.order_id, error = %e, "mismatch note not added");
        }
        let failure = Failure::new(FailureCode::TotalMismatch, text).with_store(w.store.clone());
        if let Err(e) = failures::park(self.state.as_ref(), &w.job, failure).await {
            tracing::warn!(order = %w.order_id, error = %e, "mismatch not recorded");
        }
    }

    /// Reservations in the store's warehouse, behind the `reserving` intent. An order found at
    /// `reserving` first asks Brightpearl whether it holds a reservation.
    pub(super) async fn reserve(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.resumed_at(Step::Reserving)) {
            let Some(so) = w.sales_order_id() else { continue };
            match self.brightpearl.reservation(so).await {
                Ok(Some(_)) => {
                    if self.advance(w, Step::Reserved, |_| {}).await {
                        self.bump(|r| r.reserved += 1);
                        self.settle_pending(w).await;
                    }
                }
                Ok(None) => {}
                Err(e) => w.fail(&e),
            }
        }
        for w in works.iter_mut().filter(|w| w.at(Step::Created)) {
            let rows = w.saga.as_ref().map(|s| s.rows.clone()).unwrap_or_default();
            let warehouse = w.channel.as_ref().and_then(|c| c.store().reservation_warehouse_id);
            let reservable = warehouse.is_some() && rows.iter().any(|r| r.product_id.is_some());
            let next = if reservable { Step::Reserving } else { Step::Reserved };
            if self.advance(w, next, |s| s.rows = rows).await && next == Step::Reserved {
                self.settle_pending(w).await;
            }
        }
        let mut posting: Vec<usize> = Vec::new();
        let mut requests = Vec::new();
        for (i, w) in works.iter().enumerate() {
            if !w.at(Step::Reserving) {
                continue;
            }
            let (Some(saga), Some(warehouse_id)) =
                (&w.saga, w.channel.as_ref().and_then(|c| c.store().reservation_warehouse_id))
            else {
                continue;
            };
            let rows: Vec<ReservationRow> = saga
                .rows
                .iter()
                .filter_map(|r| {
                    Some(ReservationRow { row_id: r.row_id, product_id: r.product_id?, quantity: r.quantity })
                })
                .collect();
            let Some(order_id) = saga.sales_order_id else { continue };
            posting.push(i);
            requests.push(ReservationRequest { order_id, warehouse_id, rows });
        }
        if requests.is_empty() {
            return;
        }
        let outcomes = self.brightpearl.reserve_orders(&requests).await;
        for (i, outcome) in posting.into_iter().zip(outcomes) {
            let w = &mut works[i];
            match outcome {
                WriteOutcome::Applied(()) => {
                    if self.advance(w, Step::Reserved, |_| {}).await {
                        self.bump(|r| r.reserved += 1);
                        self.settle_pending(w).await;
                    }
                }
                // Refused (no stock): left unreserved, as staff would leave it.
                refused @ WriteOutcome::NotApplied(_) if refused.is_refused() => {
                    if let WriteOutcome::NotApplied(e) = &refused {
                        tracing::warn!(order = %w.order_id, error = %e, "reservation refused; order left unreserved");
                    }
                    if self.advance(w, Step::Reserved, |_| {}).await {
                        self.settle_pending(w).await;
                    }
                }
                WriteOutcome::NotApplied(e) => w.fail(&e),
                WriteOutcome::Unknown(e) => self.left_unknown(w, "reservation POST", &e),
            }
        }
    }

    /// The order no longer holds shop-sold units (reserved, cancelled, or left unreserved as
    /// the poll would count it): its pending entry is settled now rather than at the next
    /// poll's saga read. A failure is logged and counted, never the order's: the poll still
    /// settles the entry from the saga.
    pub(super) async fn settle_pending(&self, w: &Work) {
        let products: Vec<u64> =
            w.saga.as_ref().map(|s| s.rows.iter().filter_map(|r| r.product_id).collect()).unwrap_or_default();
        if let Err(e) = pending::settle(self.state.as_ref(), &w.store, &w.order_id, w.kind, products).await {
            tracing::warn!(order = %w.order_id, error = %e, "pending entry not settled; the next poll settles it from the saga");
            self.bump(|r| r.pending_not_settled += 1);
            self.metrics.count(names::PENDING_NOT_SETTLED, 1);
        }
    }
}
