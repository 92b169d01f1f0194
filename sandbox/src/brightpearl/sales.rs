//! Sales orders and sales credits through the atomic POSTs (apis.md §1.8, §8.1): one shape for
//! both (a credit adds `parentId`), the externalRef dedup that holds only when the instance
//! id is sent too, the search-index lag, and the credit's close.

use super::api::{Answer, error, ids, not_found, ok, sales_order_json, str_of, u64_of};
use super::state::*;
use super::validation;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

impl State {
    pub(super) fn create_sales_order(&mut self, body: &Value, now: DateTime<Utc>) -> Answer {
        self.create_sales_document("SO", body, now)
    }

    /// `POST /order-service/sales-credit/`: the sales-order shape plus `parentId`, the sales
    /// order credited.
    pub(super) fn create_sales_credit(&mut self, body: &Value, now: DateTime<Utc>) -> Answer {
        self.create_sales_document("SC", body, now)
    }

    fn create_sales_document(&mut self, kind: &str, body: &Value, now: DateTime<Utc>) -> Answer {
        let Some(customer) = body.pointer("/customer/id").or_else(|| body.get("customerId")).and_then(u64_of)
        else {
            return error(400, "ORDC-010", "customer.id is required");
        };
        if !self.contacts.contains_key(&customer) {
            return error(400, "ORDC-011", format!("contact {customer} does not exist"));
        }
        let parent = if kind == "SC" {
            match body.get("parentId").and_then(u64_of) {
                Some(p) if self.orders.get(&p).is_some_and(|o| o.order_type == "SO") => Some(p),
                _ => return error(400, "ORDC-030", "parentId must name an existing sales order"),
            }
        } else {
            None
        };
        if let Err(refused) = validation::sales_document(body) {
            return refused;
        }
        let external_ref = str_of(body.get("externalRef"));
        let instance = body.get("installedIntegrationInstanceId").and_then(u64_of);
        // The pair is a unique key only when both halves are sent (apis.md §8.1): without an
        // instance id Brightpearl does not deduplicate at all.
        if let (false, Some(r), Some(i)) = (self.settings.external_ref_dedup_off, &external_ref, instance)
            && let Some(existing) = self.orders.values().find(|o| {
                o.order_type == kind
                    && o.external_ref.as_ref() == Some(r)
                    && o.installed_integration_instance_id == Some(i)
            })
        {
            return self.duplicate_answer(kind, existing.id);
        }
        let rows = match self
            .parse_rows(body.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]))
        {
            Ok(r) => r,
            Err(e) => return e,
        };
        let id = self.next("order");
        self.orders.insert(
            id,
            OrderRec {
                id,
                order_type: kind.into(),
                contact_id: customer,
                reference: str_of(body.get("ref")),
                external_ref,
                installed_integration_instance_id: instance,
                channel_id: body.get("channelId").and_then(u64_of),
                currency: str_of(body.pointer("/currency/code")).unwrap_or_else(|| "GBP".into()),
                price_list_id: body.get("priceListId").and_then(u64_of),
                warehouse_id: body.get("warehouseId").and_then(u64_of),
                status_id: body.get("statusId").and_then(u64_of).unwrap_or(SO_STATUS_NEW),
                delivery: body.get("delivery").cloned().unwrap_or(Value::Null),
                rows,
                notes: vec![],
                created_on: now,
                updated_on: now,
            },
        );
        if let Some(parent_id) = parent {
            self.credits.insert(id, CreditRec { credit_id: id, parent_id, closed: false, tax_date: None });
        }
        let lag = self.settings.search_lag_ms;
        if lag > 0 {
            self.search_visible_from.insert(id, now + Duration::milliseconds(lag as i64));
        }
        ok(json!(id))
    }

    /// 200 "no changes will be made", in the body the `duplicate_post_answer` switch picks.
    fn duplicate_answer(&self, kind: &str, existing: u64) -> Answer {
        let what = if kind == "SC" { "Sales credit" } else { "Sales order" };
        match self.settings.duplicate_post_answer {
            DuplicatePostAnswer::NoId => ok(json!(format!("{what} already exists, no changes will be made"))),
            DuplicatePostAnswer::Empty => Answer { status: 200, body: Value::Null, events: vec![] },
            DuplicatePostAnswer::OriginalId => ok(json!(existing)),
        }
    }

    /// `GET /order-service/sales-credit/{ids}`: the sales-order shape plus `parentId`.
    pub(super) fn sales_credits_get(&self, set: &str, max_ids: usize) -> Answer {
        let list = match ids(set, max_ids) {
            Ok(Some(list)) => list,
            Ok(None) => return error(400, "CMNC-400", "an ID set is required"),
            Err(e) => return e,
        };
        let items: Vec<Value> = list
            .iter()
            .filter_map(|id| self.orders.get(id).zip(self.credits.get(id)))
            .map(|(o, c)| {
                let mut v = sales_order_json(o, &self.settings);
                v["parentId"] = json!(c.parent_id);
                v["closed"] = json!(c.closed);
                v
            })
            .collect();
        if items.is_empty() { not_found("sales credits") } else { ok(Value::Array(items)) }
    }

    /// `POST /order-service/sales-credit/{id}/close`, optional `{"taxDate": …}`. Closing a
    /// closed credit is refused (what Brightpearl answers is unknown; a refusal makes a
    /// client check instead of repeating blindly).
    pub(super) fn close_sales_credit(&mut self, id: &str, body: &Value, now: DateTime<Utc>) -> Answer {
        let Some(credit) = id.parse::<u64>().ok().and_then(|id| self.credits.get_mut(&id)) else {
            return not_found("sales credit");
        };
        if credit.closed {
            return error(400, "ORDC-031", format!("sales credit {} is already closed", credit.credit_id));
        }
        credit.closed = true;
        credit.tax_date = str_of(body.get("taxDate"));
        let credit_id = credit.credit_id;
        if let Some(o) = self.orders.get_mut(&credit_id) {
            o.updated_on = now;
        }
        ok(Value::Null)
    }
}
