//! The typed writes the concerns use: sales orders, reservations, customer payments and
//! purchase-order rows, sent in multi-messages of up to 10, each ending in one
//! [`WriteOutcome`] decided here (see `outcome` for the rule). Where Brightpearl offers a way to
//! tell a repeat from a first write, the write uses it before answering:
//! - a sales-order POST answered 200 without an id ("no changes will be made", apis.md §8.1)
//!   is resolved by the externalRef search, re-searched to cover index lag;
//! - a refused reservation is checked with the order's reservation GET (an existing one is
//!   the reservation we made on an earlier attempt);
//! - a refused payment is checked with `customer-payment-search` (a repeated
//!   `transactionRef` + `paymentMethodCode` is refused as a duplicate).

use super::client::{BrightpearlClient, loose_u64};
use super::multimessage::{MAX_MESSAGES, Message, parse_processed};
use super::outcome::WriteOutcome;
use super::search::CustomerPaymentSearchRow;
use super::transport::{Replay, SERVICE};
use super::types::*;
use crate::error::{Error, Result};
use crate::money;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One order's reservation in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub order_id: u64,
    pub warehouse_id: u64,
    pub rows: Vec<ReservationRow>,
}

fn unknown(detail: String) -> Error {
    Error::OutcomeUnknown { service: SERVICE, detail }
}

impl BrightpearlClient {
    /// Sends writes in multi-messages of up to 10; one outcome per message, in order.
    pub(super) async fn send_messages(&self, messages: Vec<Message>) -> Vec<WriteOutcome<Value>> {
        let mut out = Vec::with_capacity(messages.len());
        let mut rest = messages.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Message> = rest.by_ref().take(MAX_MESSAGES).collect();
            out.extend(self.send_chunk(chunk).await);
        }
        out
    }

    async fn send_one(&self, message: &Message) -> WriteOutcome<Value> {
        let method = match Method::from_bytes(message.http_method.as_bytes()) {
            Ok(m) => m,
            Err(e) => return WriteOutcome::NotApplied(Error::BadInput(format!("HTTP method: {e}"))),
        };
        let answer = self.call(method, &message.uri, &[], Some(&message.body), Replay::Unsafe, false).await;
        WriteOutcome::from_result(answer.map(|v| v.unwrap_or(Value::Null)))
    }

    /// One chunk of ≤10 messages. A single message goes as a plain request (the 2-message
    /// minimum is UNCONFIRMED, and a plain request costs the same).
    async fn send_chunk(&self, chunk: Vec<Message>) -> Vec<WriteOutcome<Value>> {
        if let [only] = chunk.as_slice() {
            return vec![self.send_one(only).await];
        }
        let body = json!({"processingMode": "SEQUENTIAL", "onFail": "CONTINUE", "messages": chunk});
        let answer = match self.write(Method::POST, "/multi-message", &body, Replay::Unsafe).await {
            Ok(v) => v,
            // The envelope itself was refused (one malformed message can do that): nothing was
            // written, so each message goes alone and only the bad one is refused.
            Err(Error::Rejected { .. }) => {
                let mut out = Vec::with_capacity(chunk.len());
                for m in &chunk {
                    out.push(self.send_one(m).await);
                }
                return out;
            }
            Err(e) => return chunk.iter().map(|_| WriteOutcome::from_result(Err(e.clone()))).collect(),
        };
        let mut by_label: HashMap<String, WriteOutcome<Value>> = answer
            .get("processedMessages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(parse_processed)
            .collect();
        let unprocessed: Vec<&str> = answer
            .get("unprocessedMessages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        chunk
            .into_iter()
            .map(|m| {
                if let Some(outcome) = by_label.remove(&m.label) {
                    outcome
                } else if unprocessed.contains(&m.label.as_str()) {
                    WriteOutcome::NotApplied(Error::Unavailable {
                        service: SERVICE,
                        detail: format!("message {} was not processed", m.label),
                    })
                } else {
                    // Neither processed in a shape we can read nor listed as unprocessed.
                    WriteOutcome::Unknown(unknown(format!("message {}: no readable result", m.label)))
                }
            })
            .collect()
    }

    /// The sales order with exactly this externalRef under our instance id (the lowest id if
    /// several), searched again up to `retries` times while the search index may lag.
    pub(super) async fn sales_order_by_ref(&self, external_ref: &str, retries: u32) -> Result<Option<u64>> {
        let instance = self.instance_id_for_writes()?;
        let wait = Duration::from_millis(self.inner.config.search_lag_wait_ms);
        for attempt in 0..=retries {
            let rows = super::BrightpearlApi::find_sales_orders_by_external_ref(self, external_ref).await?;
            let found = rows
                .into_iter()
                .filter(|r| r.installed_integration_instance_id == Some(instance))
                .map(|r| r.sales_order_id)
                .min();
            if found.is_some() || attempt == retries {
                return Ok(found);
            }
            tokio::time::sleep(wait).await;
        }
        Ok(None)
    }

    pub(super) async fn write_sales_orders(&self, orders: &[NewSalesOrder]) -> Vec<WriteOutcome<u64>> {
        let instance = match self.instance_id_for_writes() {
            Ok(i) => i,
            Err(e) => return orders.iter().map(|_| WriteOutcome::NotApplied(e.clone())).collect(),
        };
        let messages: Vec<Message> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| {
                Message::post(format!("so-{i}"), "/order-service/sales-order", sales_order_body(o, instance))
            })
            .collect();
        let outcomes = self.send_messages(messages).await;
        let retries = self.inner.config.search_lag_retries;
        let mut out = Vec::with_capacity(orders.len());
        for (order, outcome) in orders.iter().zip(outcomes) {
            out.push(match outcome {
                WriteOutcome::Applied(v) => match loose_u64(Some(&v)) {
                    Some(id) => WriteOutcome::Applied(id),
                    // "No changes will be made": the order exists; its id comes from the search.
                    None => match self.sales_order_by_ref(&order.external_ref, retries).await {
                        Ok(Some(id)) => WriteOutcome::Applied(id),
                        Ok(None) => WriteOutcome::Unknown(unknown(format!(
                            "sales order {} answered {v} without an id, and the externalRef search finds none yet",
                            order.external_ref
                        ))),
                        Err(e) => WriteOutcome::Unknown(unknown(format!(
                            "sales order {} answered without an id; the search failed: {e}",
                            order.external_ref
                        ))),
                    },
                },
                other => other.map(|_| 0),
            });
        }
        out
    }

    pub(super) async fn write_reservations(&self, requests: &[ReservationRequest]) -> Vec<WriteOutcome<()>> {
        let messages: Vec<Message> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let uri = format!(
                    "/warehouse-service/order/{}/reservation/warehouse/{}",
                    r.order_id, r.warehouse_id
                );
                Message::post(format!("res-{i}"), uri, reservation_body(&r.rows))
            })
            .collect();
        let outcomes = self.send_messages(messages).await;
        let mut out = Vec::with_capacity(requests.len());
        for (request, outcome) in requests.iter().zip(outcomes) {
            out.push(match outcome {
                WriteOutcome::Applied(_) => WriteOutcome::Applied(()),
                // Refused: by no stock, or because the order is already reserved (ours, from an
                // attempt whose answer was lost). Only the GET can tell.
                refused @ WriteOutcome::NotApplied(Error::Rejected { .. }) => {
                    match super::BrightpearlApi::reservation(self, request.order_id).await {
                        Ok(Some(_)) => WriteOutcome::Applied(()),
                        Ok(None) => refused.map(|_| ()),
                        Err(e) => WriteOutcome::NotApplied(e),
                    }
                }
                other => other.map(|_| ()),
            });
        }
        out
    }

    pub(super) async fn write_payments(&self, payments: &[NewCustomerPayment]) -> Vec<WriteOutcome<u64>> {
        let messages: Vec<Message> = payments
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Message::post(
                    format!("pay-{i}"),
                    "/accounting-service/customer-payment",
                    customer_payment_body(p),
                )
            })
            .collect();
        let outcomes = self.send_messages(messages).await;
        let mut out = Vec::with_capacity(payments.len());
        for (payment, outcome) in payments.iter().zip(outcomes) {
            out.push(match outcome {
                WriteOutcome::Applied(v) => match loose_u64(Some(&v)) {
                    Some(id) => WriteOutcome::Applied(id),
                    None => {
                        WriteOutcome::Unknown(unknown(format!("customer payment answered {v} without an id")))
                    }
                },
                // A repeated transactionRef is refused: the payment we are after may exist.
                refused @ WriteOutcome::NotApplied(Error::Rejected { .. }) => {
                    match self.payment_by_ref(payment.order_id, &payment.transaction_ref).await {
                        Ok(Some(id)) => WriteOutcome::Applied(id),
                        Ok(None) => refused.map(|_| 0),
                        Err(e) => WriteOutcome::NotApplied(e),
                    }
                }
                other => other.map(|_| 0),
            });
        }
        out
    }

    /// The customer payment on `order_id` with this `transactionRef`, if Brightpearl has one.
    pub(super) async fn payment_by_ref(&self, order_id: u64, transaction_ref: &str) -> Result<Option<u64>> {
        let rows: Vec<CustomerPaymentSearchRow> = self
            .search_all("/accounting-service/customer-payment-search", &[("orderId", order_id.to_string())])
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.transaction_ref.as_deref() == Some(transaction_ref))
            .filter(|r| r.order_id.is_none_or(|o| o == order_id))
            .map(|r| r.customer_payment_id)
            .min())
    }

    pub(super) async fn write_purchase_order_rows(
        &self,
        order_id: u64,
        rows: &[NewPurchaseOrderRow],
    ) -> Result<Vec<u64>> {
        let messages: Vec<Message> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| purchase_row_message(order_id, format!("row-{i}"), r))
            .collect();
        let mut ids = Vec::with_capacity(rows.len());
        for (i, outcome) in self.send_messages(messages).await.into_iter().enumerate() {
            match outcome {
                WriteOutcome::Applied(v) => match loose_u64(Some(&v)) {
                    Some(id) => ids.push(id),
                    None => return Err(unknown(format!("PO {order_id} row-{i} answered {v} without an id"))),
                },
                WriteOutcome::NotApplied(Error::Rejected { status, code, message, .. }) => {
                    return Err(Error::Rejected {
                        service: SERVICE,
                        status,
                        code,
                        message: format!(
                            "PO {order_id} row-{i}: {message} ({} rows added before it)",
                            ids.len()
                        ),
                    });
                }
                WriteOutcome::NotApplied(e) | WriteOutcome::Unknown(e) => return Err(e),
            }
        }
        Ok(ids)
    }
}

/// The Sales Order POST body. A row with `product_id` 0 is a named row without a product
/// (e.g. shipping).
pub fn sales_order_body(o: &NewSalesOrder, instance: u64) -> Value {
    let rows: Vec<Value> = o
        .rows
        .iter()
        .map(|r| {
            let mut row = json!({
                "quantity": r.quantity,
                "net": money::wire(r.net),
                "tax": money::wire(r.tax),
            });
            if r.product_id != 0 {
                row["productId"] = json!(r.product_id);
            }
            if let Some(n) = &r.name {
                row["name"] = json!(n);
            }
            if let Some(t) = &r.tax_code {
                row["taxCode"] = json!(t);
            }
            if let Some(n) = &r.nominal_code {
                row["nominalCode"] = json!(n);
            }
            if let Some(e) = &r.external_ref {
                row["externalRef"] = json!(e);
            }
            row
        })
        .collect();
    let mut body = json!({
        "customer": {"id": o.customer_id},
        "externalRef": o.external_ref,
        "installedIntegrationInstanceId": instance,
        "currency": currency(o),
        "rows": rows,
    });
    let opt = |body: &mut Value, key: &str, v: Option<Value>| {
        if let Some(v) = v {
            body[key] = v;
        }
    };
    opt(&mut body, "ref", o.reference.as_ref().map(|r| json!(r)));
    opt(&mut body, "channelId", o.channel_id.map(|c| json!(c)));
    opt(&mut body, "priceListId", o.price_list_id.map(|c| json!(c)));
    opt(&mut body, "warehouseId", o.warehouse_id.map(|c| json!(c)));
    opt(&mut body, "statusId", o.status_id.map(|c| json!(c)));
    opt(&mut body, "placedOn", o.placed_on.map(|d| json!(d.to_rfc3339())));
    if o.delivery_address.is_some() || o.shipping_method_id.is_some() {
        let mut delivery = json!({});
        opt(&mut delivery, "address", o.delivery_address.as_ref().map(|a| json!(a)));
        opt(&mut delivery, "shippingMethodId", o.shipping_method_id.map(|s| json!(s)));
        body["delivery"] = delivery;
    }
    body
}

/// The order's currency; with a channel's rate, fixed at it (apis.md §1.8: `exchangeRate` is a
/// string there).
fn currency(o: &NewSalesOrder) -> Value {
    match o.exchange_rate {
        Some(rate) => json!({
            "code": o.currency_code,
            "fixedExchangeRate": true,
            "exchangeRate": money::round(rate, 10).normalize().to_string(),
        }),
        None => json!({"code": o.currency_code}),
    }
}

/// The Customer Payment POST body (recorded shape, apis.md §8.1).
pub fn customer_payment_body(p: &NewCustomerPayment) -> Value {
    let mut body = json!({
        "transactionRef": p.transaction_ref,
        "paymentMethodCode": p.payment_method_code,
        "paymentType": p.payment_type.as_str(),
        "orderId": p.order_id,
        "currencyIsoCode": p.currency_code,
        "exchangeRate": 1,
        "amountPaid": money::wire(p.amount),
        "paymentDate": p.payment_date.to_rfc3339(),
    });
    if let Some(j) = &p.journal_ref {
        body["journalRef"] = json!(j);
    }
    body
}

/// The Reservation POST body.
pub fn reservation_body(rows: &[ReservationRow]) -> Value {
    // One entry per row with the total: two entries for one row can double-reserve.
    let mut per_row: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for r in rows {
        let e = per_row.entry(r.row_id).or_insert((r.product_id, 0));
        e.1 += r.quantity;
    }
    let products: Vec<Value> = per_row
        .iter()
        .map(|(row, (product, qty))| json!({"productId": product, "salesOrderRowId": row, "quantity": qty}))
        .collect();
    json!({"products": products})
}

fn purchase_row_message(order_id: u64, label: String, r: &NewPurchaseOrderRow) -> Message {
    Message::post(
        label,
        format!("/order-service/order/{order_id}/row"),
        json!({
            "productId": r.product_id,
            "quantity": {"magnitude": r.quantity},
            "rowValue": {"taxCode": r.tax_code, "rowNet": {"value": r.net}, "rowTax": {"value": r.tax}},
        }),
    )
}
