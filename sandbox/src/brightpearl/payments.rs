//! Customer payments (apis.md §8.1): the recorded POST body, the `paymentType` list, the
//! uniqueness of `transactionRef` + `paymentMethodCode`, every POST kept in state, and
//! `customer-payment-search` with the recorded columns.

use super::api::{Answer, error, f64_of, ok, period_contains, str_of, u64_of};
use super::search::{idset_filter, search};
use super::state::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

pub const PAYMENT_TYPES: &[&str] = &["AUTH", "CAPTURE", "PAYMENT", "RECEIPT", "VOID"];

/// A money field as the request wrote it: a JSON number's text, or a numeric string.
fn amount_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.trim().parse::<f64>().is_ok() => Some(s.trim().to_string()),
        _ => None,
    }
}

impl State {
    /// `POST /accounting-service/customer-payment`, plain or inside a multi-message. The
    /// attempt is kept in `payment_posts` whatever the answer.
    pub(super) fn create_customer_payment(&mut self, body: &Value, now: DateTime<Utc>) -> Answer {
        let outcome = self.accept_payment(body, now);
        let (status, payment_id, error_code) = match &outcome {
            Ok(id) => (200, Some(*id), None),
            Err(a) => {
                (a.status, None, a.body.pointer("/errors/0/code").and_then(Value::as_str).map(str::to_string))
            }
        };
        self.payment_posts.push(PaymentPostRec {
            order_id: body.get("orderId").and_then(u64_of),
            transaction_ref: str_of(body.get("transactionRef")),
            payment_method_code: str_of(body.get("paymentMethodCode")),
            payment_type: str_of(body.get("paymentType")),
            amount_paid: amount_text(body.get("amountPaid")),
            currency_iso_code: str_of(body.get("currencyIsoCode")),
            status,
            payment_id,
            error_code,
        });
        match outcome {
            Ok(id) => ok(json!(id)),
            Err(refused) => refused,
        }
    }

    fn accept_payment(&mut self, body: &Value, now: DateTime<Utc>) -> Result<u64, Answer> {
        let Some(order_id) = body.get("orderId").and_then(u64_of).filter(|id| self.orders.contains_key(id))
        else {
            return Err(error(400, "ACCC-100", "orderId must name an existing order"));
        };
        let payment_type = str_of(body.get("paymentType")).unwrap_or_default();
        if !PAYMENT_TYPES.contains(&payment_type.as_str()) {
            return Err(error(
                400,
                "ACCC-101",
                format!("paymentType {payment_type:?} must be one of {}", PAYMENT_TYPES.join(", ")),
            ));
        }
        let Some(method) = str_of(body.get("paymentMethodCode")).filter(|m| !m.is_empty()) else {
            return Err(error(400, "ACCC-102", "paymentMethodCode is required"));
        };
        let Some(amount_paid) = amount_text(body.get("amountPaid")) else {
            return Err(error(400, "ACCC-103", "amountPaid must be a number"));
        };
        let transaction_ref = str_of(body.get("transactionRef"));
        if let Some(r) = &transaction_ref {
            if r.chars().count() > 64 {
                return Err(error(400, "ACCC-104", "transactionRef is limited to 64 characters"));
            }
            if self.payments.iter().any(|p| p.transaction_ref.as_ref() == Some(r) && p.method == method) {
                return Err(error(
                    400,
                    "CMNC-400",
                    format!(
                        "Duplicate payment: a payment with transactionRef {r} and paymentMethodCode {method} already exists"
                    ),
                ));
            }
        }
        let id = self.next("payment");
        self.payments.push(PaymentRec {
            id,
            order_id,
            amount: body.get("amountPaid").map(f64_of).unwrap_or(0.0),
            currency: str_of(body.get("currencyIsoCode")).unwrap_or_default(),
            method,
            journal_ref: str_of(body.get("journalRef")),
            transaction_ref,
            transaction_code: str_of(body.get("transactionCode")),
            payment_type,
            amount_paid,
            payment_date: str_of(body.get("paymentDate")),
            created_on: now,
        });
        Ok(id)
    }

    /// `GET /accounting-service/customer-payment-search`, the recorded columns.
    pub(super) fn customer_payment_search(&self, q: &HashMap<String, String>) -> Answer {
        let payment_ids = idset_filter(q, "paymentId");
        let order_ids = idset_filter(q, "orderId");
        let text = |name: &str, v: Option<&String>| q.get(name).is_none_or(|want| v == Some(want));
        let rows = self
            .payments
            .iter()
            .filter(|p| payment_ids.as_ref().is_none_or(|l| l.contains(&p.id)))
            .filter(|p| order_ids.as_ref().is_none_or(|l| l.contains(&p.order_id)))
            .filter(|p| text("transactionRef", p.transaction_ref.as_ref()))
            .filter(|p| text("transactionCode", p.transaction_code.as_ref()))
            .filter(|p| text("paymentMethodCode", Some(&p.method)))
            .filter(|p| text("paymentType", Some(&p.payment_type)))
            .filter(|p| text("currencyCode", Some(&p.currency)))
            .filter(|p| q.get("createdOn").is_none_or(|f| period_contains(f, p.created_on)))
            .map(|p| {
                let authorised = if p.payment_type == "AUTH" { p.amount_paid.clone() } else { "0.00".into() };
                let paid = if p.payment_type == "AUTH" { "0.00".into() } else { p.amount_paid.clone() };
                vec![
                    json!(p.id),
                    json!(p.transaction_ref),
                    json!(p.transaction_code),
                    json!(p.method),
                    json!(p.payment_type),
                    json!(p.order_id),
                    json!(1),
                    json!(p.currency),
                    json!(authorised),
                    json!(paid),
                    Value::Null,
                    json!(p.payment_date),
                    json!(p.created_on),
                    Value::Null,
                ]
            })
            .collect();
        search(
            &[
                ("paymentId", "IDSET"),
                ("transactionRef", "STRING"),
                ("transactionCode", "STRING"),
                ("paymentMethodCode", "STRING"),
                ("paymentType", "STRING"),
                ("orderId", "IDSET"),
                ("currencyId", "IDSET"),
                ("currencyCode", "STRING"),
                ("amountAuthorized", "STRING"),
                ("amountPaid", "STRING"),
                ("expires", "PERIOD"),
                ("paymentDate", "PERIOD"),
                ("createdOn", "PERIOD"),
                ("journalId", "IDSET"),
            ],
            rows,
            q,
        )
    }
}
