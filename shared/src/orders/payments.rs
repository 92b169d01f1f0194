//! The customer payments of an order, each behind the `paying` intent and its own deterministic
//! `transactionRef` (`{store}:{order}:{suffix}`), so a lost answer is found by the payment
//! search and a repeat is refused by Brightpearl's `transactionRef` + method uniqueness.
//!
//! What is due is worked out from the order as the signed body or the fetched order states it
//! and what the saga says was posted (`due`):
//! - **Paid** (Shopify `paid`, WooCommerce `date_paid` / processing, BigCommerce `captured`):
//!   the total less what was posted, suffix `paid`.
//! - **Partly captured** (Shopify `partially_paid`: `total_price` − `total_outstanding`): the
//!   captured amount less what was posted, suffix `captured:{amount captured}`, so each capture
//!   level has its own reference and the next one posts only the difference.
//! - **Authorised** (Shopify `authorized`; BigCommerce `authorized`, UNCONFIRMED): an `AUTH` of
//!   the total, suffix `auth`, only where the store says so (`[stores.payments]
//!   auth_then_capture`); its captures are then `CAPTURE`s, else `RECEIPT`s.

use super::saga::{PendingPayment, Saga, Step, transaction_ref};
use super::writer::{OrderWriter, Work};
use crate::brightpearl::{NewCustomerPayment, PaymentType, WriteOutcome};
use crate::channels::{ChannelOrder, StorePayments};
use crate::money::Decimal;
use chrono::Utc;

/// The next payment the order needs, if any.
pub(super) fn due(
    order: &ChannelOrder,
    saga: Option<&Saga>,
    payments: &StorePayments,
) -> Option<PendingPayment> {
    let posted = saga.and_then(|s| s.paid_amount).unwrap_or(Decimal::ZERO);
    let authorised = saga.is_some_and(|s| s.authorized);
    let settle =
        if payments.auth_then_capture && authorised { PaymentType::Capture } else { PaymentType::Receipt };
    let pending = |suffix: String, payment_type: PaymentType, amount: Decimal| {
        (amount > Decimal::ZERO).then(|| PendingPayment {
            suffix,
            payment_type: payment_type.as_str().into(),
            amount,
        })
    };
    if order.paid {
        return pending("paid".into(), settle, order.total - posted);
    }
    if let Some(captured) = order.captured {
        return pending(format!("captured:{}", captured.normalize()), settle, captured - posted);
    }
    if order.authorized && payments.auth_then_capture && !authorised {
        return pending("auth".into(), PaymentType::Auth, order.total);
    }
    None
}

fn payment_type(text: &str) -> PaymentType {
    match text {
        "AUTH" => PaymentType::Auth,
        "CAPTURE" => PaymentType::Capture,
        "PAYMENT" => PaymentType::Payment,
        "VOID" => PaymentType::Void,
        _ => PaymentType::Receipt,
    }
}

/// Records a payment Brightpearl holds: an `AUTH` marks the order authorised, anything else
/// adds to what was paid; the order counts as paid once that meets its total.
fn record(saga: &mut Saga, payment: &PendingPayment, total: Decimal) {
    if payment.payment_type == PaymentType::Auth.as_str() {
        saga.authorized = true;
    } else {
        let paid = saga.paid_amount.unwrap_or(Decimal::ZERO) + payment.amount;
        saga.paid_amount = Some(paid);
    }
    saga.pending_payment = None;
    saga.paid = Some(saga.paid_amount.is_some_and(|p| p >= total));
}

impl OrderWriter {
    /// The payment behind a `paying` intent (records from before partial payments: the
    /// whole total, suffix `paid`).
    fn pending_payment(w: &Work) -> Option<PendingPayment> {
        let saga = w.saga.as_ref()?;
        saga.pending_payment.clone().or_else(|| {
            w.order.as_ref().map(|o| PendingPayment {
                suffix: "paid".into(),
                payment_type: PaymentType::Receipt.as_str().into(),
                amount: o.total,
            })
        })
    }

    /// Moves an order at `reserved` (or a written one with a payment due) on to `paying` with
    /// the payment due, or to `done`.
    pub(super) async fn to_paying_or_done(&self, w: &mut Work) {
        let due = match (&w.order, &w.channel) {
            (Some(order), Some(channel)) => due(order, w.saga.as_ref(), &channel.store().payments),
            _ => None,
        };
        match due {
            Some(p) => {
                self.advance(w, Step::Paying, |s| s.pending_payment = Some(p)).await;
            }
            None => {
                self.advance(w, Step::Done, |s| {
                    if s.paid.is_none() {
                        s.paid = Some(false);
                    }
                })
                .await;
            }
        }
    }

    /// The customer payments of the wave, behind the `paying` intent. An order found at
    /// `paying` first searches for its payment by `transactionRef`; a repeat POST is harmless
    /// anyway, because Brightpearl refuses a second payment with the same reference.
    pub(super) async fn pay(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.resumed_at(Step::Paying)) {
            let (Some(so), Some(p)) = (w.sales_order_id(), Self::pending_payment(w)) else { continue };
            let reference = transaction_ref(&w.store, &w.order_id, &p.suffix);
            match self.brightpearl.find_customer_payment(so, &reference).await {
                Ok(Some(_)) => self.paid(w, &p).await,
                Ok(None) => {}
                Err(e) => w.fail(&e),
            }
        }
        for w in works.iter_mut().filter(|w| w.at(Step::Reserved)) {
            self.to_paying_or_done(w).await;
        }
        let mut posting: Vec<(usize, PendingPayment)> = Vec::new();
        let mut payments = Vec::new();
        for (i, w) in works.iter().enumerate() {
            let (true, Some(order), Some(order_id), Some(p)) =
                (w.at(Step::Paying), &w.order, w.sales_order_id(), Self::pending_payment(w))
            else {
                continue;
            };
            payments.push(NewCustomerPayment {
                order_id,
                transaction_ref: transaction_ref(&w.store, &w.order_id, &p.suffix),
                payment_type: payment_type(&p.payment_type),
                payment_method_code: match &w.channel {
                    Some(c) => self.payment_method(c.store(), order.gateway.as_deref()),
                    None => order.channel.as_str().to_uppercase(),
                },
                currency_code: order.currency.clone(),
                amount: p.amount,
                payment_date: order.created_at.unwrap_or_else(Utc::now),
                journal_ref: Some(format!("{} order {}", order.channel, order.number)),
            });
            posting.push((i, p));
        }
        if payments.is_empty() {
            return;
        }
        let outcomes = self.brightpearl.create_customer_payments(&payments).await;
        for ((i, p), outcome) in posting.into_iter().zip(outcomes) {
            let w = &mut works[i];
            match outcome {
                WriteOutcome::Applied(_) => self.paid(w, &p).await,
                WriteOutcome::NotApplied(e) => w.fail(&e),
                WriteOutcome::Unknown(e) => self.left_unknown(w, "customer payment POST", &e),
            }
        }
    }

    async fn paid(&self, w: &mut Work, p: &PendingPayment) {
        let total = w.order.as_ref().map_or(p.amount, |o| o.total);
        if self.advance(w, Step::Done, |s| record(s, p, total)).await {
            self.bump(|r| r.paid += 1);
        }
    }
}
