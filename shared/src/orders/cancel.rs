//! Cancellations and updates of orders already known, and the routing that tells them from
//! new orders. An order's state is read from the signed body only (`ChannelOrder::cancelled`):
//! the topic header is unsigned and chooses nothing.

use super::rows::fingerprint;
use super::saga::{Saga, Step, external_ref};
use super::writer::{OrderWriter, Work, outcome_of};
use crate::batch::Outcome;
use crate::error::{Error, Result};
use crate::metrics::names;
use crate::queue::OrderEvent;

impl OrderWriter {
    /// Sends a loaded order down its path: duplicate, update note, cancellation, or (left
    /// pending) the create steps.
    pub(super) async fn route(&self, w: &mut Work) {
        let cancelled = w.deleted || w.order.as_ref().is_some_and(|o| o.cancelled);
        if w.event == OrderEvent::Cancelled && !cancelled {
            tracing::warn!(order = %w.order_id, "cancel topic but the signed body is not cancelled; handled as an update");
        }
        let step = w.step();
        // A refund event of a written order credits its refunds and no more: the order may be
        // cancelled too, but trying (and parking) that cancel is its own event's route.
        let refund_route = w.event == OrderEvent::Refunded;
        let closed =
            step == Some(Step::CancelledBeforeCreate) || w.saga.as_ref().is_some_and(|s| s.cancelled);
        if closed {
            self.bump(|r| r.duplicates += 1);
            self.metrics.count(names::DUPLICATES, 1);
            w.outcome = Some(Outcome::Done);
        } else if cancelled && !(refund_route && step == Some(Step::Done)) {
            // Cancelled and refunded (Shopify's cancel with refund; a WooCommerce order
            // cancelled after its refunds): the credits first. Brightpearl refuses to cancel a
            // paid order, and the refunds must not wait on that refusal: the credits are the
            // record of the money returned, whatever the cancel's answer.
            if step == Some(Step::Done) && Self::refunds_due(w) {
                if let Err(e) = self.credit_refunds(w).await {
                    w.fail(&e);
                    return;
                }
                if !w.pending() {
                    // A credit left unknown or parked: the cancel waits for the next attempt.
                    return;
                }
            }
            let r = self.cancel(w).await;
            w.outcome = Some(r.unwrap_or_else(|e| outcome_of(&e)));
        } else if step == Some(Step::Done) {
            // Paid after it was written (Shopify pending → paid, Woo on-hold → processing):
            // the saga knows it was written unpaid, the signed body says it is paid now.
            // A partial capture or an authorisation counts too (see `payments::due`).
            let paid_later = w.saga.as_ref().and_then(|s| s.paid) == Some(false)
                && match (&w.order, &w.channel) {
                    (Some(o), Some(c)) => {
                        super::payments::due(o, w.saga.as_ref(), &c.store().payments).is_some()
                    }
                    _ => false,
                };
            if !matches!(w.event, OrderEvent::Created | OrderEvent::Refunded) || paid_later {
                if let Err(e) = self.note_update(w).await {
                    w.fail(&e);
                    return;
                }
            } else if w.event != OrderEvent::Refunded {
                self.bump(|r| r.duplicates += 1);
                self.metrics.count(names::DUPLICATES, 1);
            }
            if paid_later {
                // On to the payment step, behind its intent like any payment.
                self.to_paying_or_done(w).await;
            } else if !Self::refunds_due(w) {
                w.outcome = Some(Outcome::Done);
            }
            // Otherwise left pending at `done`: the refunds step credits what is new.
        }
    }

    async fn cancelled_status(&self) -> Result<u64> {
        if let Some(id) = self.config.cancelled_status_id {
            return Ok(id);
        }
        self.brightpearl
            .order_statuses()
            .await?
            .into_iter()
            .find(|s| s.order_type_code == "SO" && s.name.to_lowercase().starts_with("cancel"))
            .map(|s| s.id)
            .ok_or_else(|| {
                Error::config("orders.cancelled_status_id", "the account has no SO status named Cancelled")
            })
    }

    /// Before the sales order exists the cancellation is recorded; afterwards the cancelled
    /// status is set, and recorded only once Brightpearl accepted it.
    async fn cancel(&self, w: &mut Work) -> Result<Outcome> {
        let mut so = w.sales_order_id();
        if so.is_none() && w.step() == Some(Step::Creating) {
            so = self.brightpearl.find_sales_order_id(&external_ref(&w.store, &w.order_id)).await?;
        }
        let Some(so) = so else {
            self.record_cancelled_before_create(w).await?;
            self.bump(|r| r.cancelled += 1);
            self.settle_pending(w).await;
            return Ok(Outcome::Done);
        };
        let status = self.cancelled_status().await?;
        let note = format!("Cancelled on {} (order {}).", w.kind, w.order_id);
        match self.brightpearl.update_order_status(so, status, Some(&note)).await {
            Ok(()) => {
                let mut saga = w.saga.clone().unwrap_or_else(|| Saga::at(Step::Created));
                saga.sales_order_id = Some(so);
                saga.cancelled = true;
                self.save(w, saga).await?;
                self.bump(|r| r.cancelled += 1);
                self.settle_pending(w).await;
                Ok(Outcome::Done)
            }
            Err(Error::Rejected { message, .. }) => {
                let text = format!("Cancelled on {} but Brightpearl refused to cancel: {message}", w.kind);
                if let Err(e) = self.brightpearl.add_order_note(so, &text).await {
                    tracing::warn!(order = %w.order_id, error = %e, "refusal note not added");
                } else {
                    self.bump(|r| r.notes_added += 1);
                }
                // Not recorded as cancelled: the replay tries the cancellation again.
                Ok(Outcome::Parked(format!("cancel_refused: cannot cancel sales order {so}: {message}")))
            }
            Err(e) => Err(e),
        }
    }

    /// An update of a written order: a note only when address or lines changed.
    async fn note_update(&self, w: &mut Work) -> Result<()> {
        let (Some(order), Some(saga)) = (w.order.clone(), w.saga.clone()) else { return Ok(()) };
        let now = fingerprint(&order);
        if now == saga.fingerprint {
            self.bump(|r| r.duplicates += 1);
            return Ok(());
        }
        let Some(so) = saga.sales_order_id else { return Ok(()) };
        let text = format!(
            "Changed on {} (order {}): delivery address or lines now {now}. Please review.",
            w.kind, order.number
        );
        self.brightpearl.add_order_note(so, &text).await?;
        self.bump(|r| r.notes_added += 1);
        let mut next = saga;
        next.fingerprint = now;
        self.save(w, next).await
    }
}
