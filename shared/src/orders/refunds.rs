//! Refunds → sales credits (issue 15): one closed sales credit per channel refund, parent the
//! sales order, with a `PAYMENT` customer payment for the money returned.
//!
//! When: an order already written whose job is a refund event (Shopify `refunds/create`,
//! BigCommerce `store/order/refund/created`), or whose body lists a refund id not yet credited
//! (Shopify and WooCommerce `refunds[]`; WooCommerce has no refund webhook, so an
//! `order.updated` whose refunds grew). The refunds themselves are always read from the
//! channel (`SalesChannel::fetch_refunds`), never from a header.
//!
//! Exactly once per refund, in the saga's `credits` map (`saga::Credit`): the `creating` intent
//! before the POST, found again → the externalRef search (`{store}:{order}:refund:{id}`) before
//! any repeat (and Brightpearl's externalRef + instance pair dedups a repeat anyway); the close
//! recorded once accepted (a refused re-close is checked with the credit's GET); the `paying`
//! intent before the payment, found again → `customer-payment-search` by its `transactionRef`
//! (`{store}:{order}:refund:{id}`), whose uniqueness also refuses a repeat.
//!
//! Rows (`credit_rows`): restocked goods as product rows by SKU (a SKU Brightpearl lacks
//! becomes a named row), shipping on the shipping nominal code, the rest as named non-stock
//! rows; Σ(net + tax) must meet the money the channel returned to the minor unit, else the job
//! parks `total_mismatch` before anything is written.

use super::rows::{readback_mismatch_of, tax_code};
use super::saga::{Credit, CreditStep, Step, credit_external_ref, transaction_ref};
use super::writer::{OrderWriter, Work};
use crate::batch::Outcome;
use crate::brightpearl::{
    NewCustomerPayment, NewOrderRow, NewSalesCredit, NewSalesOrder, PaymentType, WriteOutcome,
};
use crate::channels::{ChannelOrder, ChannelRefund, RefundLineKind, StoreConfig};
use crate::error::{Error, Result};
use crate::failures::FailureCode;
use crate::money::{minor_unit, round};
use crate::queue::OrderEvent;
use chrono::Utc;
use std::collections::HashMap;

/// How one refund's credit ended this attempt.
enum Credited {
    Done,
    /// Left for a later attempt (an unknown outcome, with the work's outcome set).
    Stopped,
}

/// The money check failed: the text of a `total_mismatch` park.
pub(super) fn credit_rows(
    order: &ChannelOrder,
    refund: &ChannelRefund,
    store: &StoreConfig,
    products: &HashMap<String, u64>,
) -> std::result::Result<Vec<NewOrderRow>, String> {
    let places = minor_unit(&order.currency).map_err(|e| e.to_string())?;
    let country = order
        .delivery_address
        .as_ref()
        .or(order.billing_address.as_ref())
        .and_then(|a| a.country_code.as_deref());
    let nominal = &store.money.nominal_codes;
    let rows: Vec<NewOrderRow> = refund
        .lines
        .iter()
        .map(|l| {
            let (net, tax) = (round(l.net, places), round(l.tax, places));
            let product = match l.kind {
                RefundLineKind::Restocked => l.sku.as_deref().and_then(|s| products.get(s.trim())).copied(),
                _ => None,
            };
            NewOrderRow {
                product_id: product.unwrap_or(0),
                name: Some(l.name.clone()),
                quantity: if product.is_some() { i64::from(l.quantity.max(1)) } else { 1 },
                net,
                tax,
                tax_code: tax_code(&store.money, store, net, tax, country),
                nominal_code: match l.kind {
                    RefundLineKind::Shipping => nominal.shipping.clone(),
                    RefundLineKind::Other if product.is_none() && l.sku.is_none() => {
                        nominal.custom_items.clone()
                    }
                    _ => None,
                },
                external_ref: l.line_id.clone(),
            }
        })
        .collect();
    let total: crate::money::Decimal = rows.iter().map(|r| r.net + r.tax).sum();
    let want = round(refund.total, places);
    if total != want {
        return Err(format!(
            "{}: refund {} of order {} itemises {total} but returned {want} {}",
            FailureCode::TotalMismatch.as_str(),
            refund.id,
            order.id,
            order.currency
        ));
    }
    if let Some(tax) = refund.tax {
        let rows_tax: crate::money::Decimal = rows.iter().map(|r| r.tax).sum();
        if rows_tax != round(tax, places) {
            return Err(format!(
                "{}: refund {} of order {} itemises tax {rows_tax} but states {tax}",
                FailureCode::TotalMismatch.as_str(),
                refund.id,
                order.id
            ));
        }
    }
    Ok(rows)
}

impl OrderWriter {
    /// Whether this job should look for refunds to credit: a refund event, a listed refund
    /// not yet credited, or a credit left half done.
    pub(super) fn refunds_due(w: &Work) -> bool {
        let Some(saga) = &w.saga else { return false };
        let unfinished = saga.credits.values().any(|c| c.step != CreditStep::Done);
        let listed_new = w.order.as_ref().is_some_and(|o| {
            o.refund_ids.iter().any(|id| saga.credits.get(id).is_none_or(|c| c.step != CreditStep::Done))
        });
        w.event == OrderEvent::Refunded || unfinished || listed_new
    }

    /// The payment method for a payment through `gateway`: the store's map, then `[orders]`,
    /// then the channel kind.
    pub(super) fn payment_method(&self, store: &StoreConfig, gateway: Option<&str>) -> String {
        store
            .payments
            .method_for(gateway)
            .or_else(|| self.config.payment_method_code.clone())
            .unwrap_or_else(|| store.kind.as_str().to_uppercase())
    }

    /// Credits the new refunds of the written orders of the wave.
    pub(super) async fn refunds(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.at(Step::Done) && Self::refunds_due(w)) {
            if let Err(e) = self.credit_refunds(w).await {
                w.fail(&e);
            }
        }
    }

    /// Credits each refund the channel lists for the order and the saga has not finished.
    pub(super) async fn credit_refunds(&self, w: &mut Work) -> Result<()> {
        let (Some(order), Some(channel)) = (w.order.clone(), w.channel.clone()) else { return Ok(()) };
        let mut refunds = channel.fetch_refunds(&order).await?;
        refunds.sort_by(|a, b| (a.id.len(), &a.id).cmp(&(b.id.len(), &b.id)));
        let todo: Vec<ChannelRefund> = refunds
            .into_iter()
            .filter(|r| {
                w.saga.as_ref().and_then(|s| s.credits.get(&r.id)).is_none_or(|c| c.step != CreditStep::Done)
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let skus: Vec<String> = todo
            .iter()
            .flat_map(|r| r.lines.iter())
            .filter(|l| l.kind == RefundLineKind::Restocked)
            .filter_map(|l| l.sku.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
            .collect();
        let products =
            if skus.is_empty() { HashMap::new() } else { self.brightpearl.products_by_sku(&skus).await? };
        for refund in &todo {
            match self.credit_one(w, &order, channel.store(), refund, &products).await? {
                Credited::Done => {}
                Credited::Stopped => return Ok(()),
            }
        }
        Ok(())
    }

    fn credit_of(w: &Work, refund_id: &str) -> Option<Credit> {
        w.saga.as_ref().and_then(|s| s.credits.get(refund_id).cloned())
    }

    async fn save_credit(&self, w: &mut Work, refund_id: &str, credit: Credit) -> Result<()> {
        let mut saga =
            w.saga.clone().ok_or_else(|| Error::State("refund of an order without a saga".into()))?;
        saga.credits.insert(refund_id.to_string(), credit);
        self.save(w, saga).await
    }

    fn stopped(&self, w: &mut Work, what: &str, e: &Error) -> Credited {
        tracing::warn!(order = %w.order_id, error = %e, "{what}: outcome unknown; the next attempt checks before repeating");
        self.bump(|r| r.unknown_outcomes += 1);
        w.outcome =
            Some(Outcome::Retry(format!("{what}: outcome unknown ({e}); checking on the next attempt")));
        Credited::Stopped
    }

    async fn credit_one(
        &self,
        w: &mut Work,
        order: &ChannelOrder,
        store: &StoreConfig,
        refund: &ChannelRefund,
        products: &HashMap<String, u64>,
    ) -> Result<Credited> {
        let id = refund.id.as_str();
        let external = credit_external_ref(&w.store, &w.order_id, id);
        let Some(parent) = w.sales_order_id() else { return Ok(Credited::Done) };

        // 1. The credit, behind `creating`.
        let mut credit = Self::credit_of(w, id);
        if credit.as_ref().is_none_or(|c| c.step == CreditStep::Creating) {
            let mut found = None;
            if credit.is_some() {
                // An earlier attempt may have posted it: search before repeating.
                found = self.brightpearl.find_sales_credit_id(&external).await?;
            }
            let credit_id = match found {
                Some(cid) => cid,
                None => {
                    let rows = match credit_rows(order, refund, store, products) {
                        Ok(rows) => rows,
                        Err(text) => {
                            tracing::warn!(order = %w.order_id, refund = id, text, "refund parked before posting");
                            w.outcome = Some(Outcome::Parked(text));
                            return Ok(Credited::Stopped);
                        }
                    };
                    let customer_id = self.credit_customer(w, parent).await?;
                    let new = NewSalesCredit {
                        parent_id: parent,
                        order: NewSalesOrder {
                            customer_id,
                            external_ref: external.clone(),
                            reference: Some(format!("{} refund {id}", order.number)),
                            channel_id: store.brightpearl_channel_id,
                            currency_code: order.currency.clone(),
                            exchange_rate: order
                                .exchange_rate
                                .filter(|_| store.money.brightpearl_base_currency.is_some()),
                            price_list_id: store.price_list_id,
                            warehouse_id: store.reservation_warehouse_id,
                            placed_on: refund.created_at,
                            rows,
                            ..NewSalesOrder::default()
                        },
                    };
                    if credit.is_none() {
                        let intent = Credit {
                            step: CreditStep::Creating,
                            credit_id: None,
                            closed: false,
                            amount: Some(refund.total),
                        };
                        self.save_credit(w, id, intent).await?;
                    }
                    match self.brightpearl.create_sales_credit(&new).await {
                        WriteOutcome::Applied(cid) => {
                            self.read_credit_back(w, cid, &new.order).await;
                            cid
                        }
                        WriteOutcome::NotApplied(e) => return Err(e),
                        WriteOutcome::Unknown(e) => return Ok(self.stopped(w, "sales credit POST", &e)),
                    }
                }
            };
            let created = Credit {
                step: CreditStep::Created,
                credit_id: Some(credit_id),
                closed: false,
                amount: Some(refund.total),
            };
            self.save_credit(w, id, created.clone()).await?;
            self.bump(|r| r.credits_created += 1);
            credit = Some(created);
        }
        let Some(mut credit) = credit else { return Ok(Credited::Done) };
        let Some(credit_id) = credit.credit_id else {
            return Err(Error::State(format!("credit of refund {id} has no id")));
        };

        // 2. Closed, recorded once accepted.
        if credit.step == CreditStep::Created && !credit.closed {
            match self.brightpearl.close_sales_credit(credit_id).await {
                WriteOutcome::Applied(()) => {
                    credit.closed = true;
                    self.save_credit(w, id, credit.clone()).await?;
                }
                WriteOutcome::NotApplied(e) => return Err(e),
                WriteOutcome::Unknown(e) => return Ok(self.stopped(w, "sales credit close", &e)),
            }
        }

        // 3. The money back, behind `paying`.
        let reference = transaction_ref(&w.store, &w.order_id, &format!("refund:{id}"));
        if credit.step == CreditStep::Paying
            && self.brightpearl.find_customer_payment(credit_id, &reference).await?.is_some()
        {
            credit.step = CreditStep::Done;
            self.save_credit(w, id, credit).await?;
            self.bump(|r| r.refunds_paid += 1);
            return Ok(Credited::Done);
        }
        if credit.step != CreditStep::Paying {
            credit.step = CreditStep::Paying;
            self.save_credit(w, id, credit.clone()).await?;
        }
        let payment = NewCustomerPayment {
            order_id: credit_id,
            transaction_ref: reference,
            payment_type: PaymentType::Payment,
            payment_method_code: self
                .payment_method(store, refund.gateway.as_deref().or(order.gateway.as_deref())),
            currency_code: refund.currency.clone().unwrap_or_else(|| order.currency.clone()),
            amount: refund.total,
            payment_date: refund.created_at.unwrap_or_else(Utc::now),
            journal_ref: Some(format!("{} refund {id} of order {}", order.channel, order.number)),
        };
        let outcome = self
            .brightpearl
            .create_customer_payments(std::slice::from_ref(&payment))
            .await
            .into_iter()
            .next();
        match outcome.unwrap_or_else(|| {
            WriteOutcome::Unknown(Error::OutcomeUnknown {
                service: "brightpearl",
                detail: "no answer for the refund payment".into(),
            })
        }) {
            WriteOutcome::Applied(_) => {
                credit.step = CreditStep::Done;
                self.save_credit(w, id, credit).await?;
                self.bump(|r| r.refunds_paid += 1);
                Ok(Credited::Done)
            }
            WriteOutcome::NotApplied(e) => Err(e),
            WriteOutcome::Unknown(e) => Ok(self.stopped(w, "refund payment POST", &e)),
        }
    }

    /// Brightpearl's totalValue of a credit just posted against the rows sent, as for orders
    /// (`read_rows`). The credit stands either way; a GET that fails leaves it unchecked, with a
    /// warning (the credit is written; the check is a report, not a gate).
    async fn read_credit_back(&self, w: &Work, credit_id: u64, sent: &NewSalesOrder) {
        match self.brightpearl.sales_credits(&[credit_id]).await {
            Ok(read) => {
                let text = read
                    .iter()
                    .find(|c| c.id == credit_id)
                    .and_then(|c| readback_mismatch_of("sales credit", sent, c));
                if let Some(text) = text {
                    self.total_differs(w, credit_id, text).await;
                }
            }
            Err(e) => {
                tracing::warn!(order = %w.order_id, credit = credit_id, error = %e, "sales credit not read back; its total is unchecked");
            }
        }
    }

    /// The credit's customer: the saga's contact, else the parent sales order's.
    async fn credit_customer(&self, w: &Work, parent: u64) -> Result<u64> {
        if let Some(c) = w.saga.as_ref().and_then(|s| s.contact_id) {
            return Ok(c);
        }
        self.brightpearl.sales_orders(&[parent]).await?.into_iter().find_map(|o| o.customer_id).ok_or_else(
            || Error::Unavailable {
                service: "brightpearl",
                detail: format!("sales order {parent} has no customer"),
            },
        )
    }
}
