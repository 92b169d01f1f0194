//! Sales credits (refunds): the POST, the externalRef search, the close, and the close check.
//!
//! Confirmed (apis.md §8.1, the sales-credit POST and close pages; Medusa's `createSalesCredit`):
//! `POST /order-service/sales-credit/` takes the sales-order shape plus `parentId` (the sales
//! order credited) and answers `{"response": id}`; a repeat with the same `externalRef` +
//! `installedIntegrationInstanceId` is not a second credit; `POST
//! /order-service/sales-credit/{id}/close` with an optional `{"taxDate": …}` closes it; credits
//! are `orderTypeId` 3 in `order-search`.
//! UNCONFIRMED: what a repeated POST answers (treated as for sales orders: an answer without an
//! id is resolved by the search), what closing a closed credit answers (a refusal is checked
//! with the credit's GET), and that the GET carries a readable closed flag (`closed`, else a
//! credit whose close was refused is taken as closed only if the GET says so).

use super::client::{BrightpearlClient, loose_u64};
use super::outcome::WriteOutcome;
use super::search::OrderSearchRow;
use super::transport::{Replay, SERVICE};
use super::types::NewSalesCredit;
use super::writes::sales_order_body;
use crate::error::{Error, Result};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Brightpearl's order type id of a sales credit (apis.md §8.1).
const SALES_CREDIT_TYPE: u64 = 3;

fn unknown(detail: String) -> Error {
    Error::OutcomeUnknown { service: SERVICE, detail }
}

impl BrightpearlClient {
    /// The credit with exactly this externalRef under our instance id (lowest id if several),
    /// searched again while the index may lag.
    pub(super) async fn sales_credit_by_ref(&self, external_ref: &str, retries: u32) -> Result<Option<u64>> {
        let instance = self.instance_id_for_writes()?;
        let wait = Duration::from_millis(self.inner.config.search_lag_wait_ms);
        for attempt in 0..=retries {
            let rows: Vec<OrderSearchRow> = self
                .search_all(
                    "/order-service/order-search",
                    &[
                        ("orderTypeId", SALES_CREDIT_TYPE.to_string()),
                        ("externalRef", external_ref.to_string()),
                        ("installedIntegrationInstanceId", instance.to_string()),
                    ],
                )
                .await?;
            let found = rows
                .into_iter()
                .filter(|r| r.external_ref.as_deref() == Some(external_ref))
                .filter(|r| r.order_type_id.is_none_or(|t| t == SALES_CREDIT_TYPE))
                .map(|r| r.order_id)
                .min();
            if found.is_some() || attempt == retries {
                return Ok(found);
            }
            tokio::time::sleep(wait).await;
        }
        Ok(None)
    }

    pub(super) async fn write_sales_credit(&self, credit: &NewSalesCredit) -> WriteOutcome<u64> {
        let instance = match self.instance_id_for_writes() {
            Ok(i) => i,
            Err(e) => return WriteOutcome::NotApplied(e),
        };
        let mut body = sales_order_body(&credit.order, instance);
        body["parentId"] = json!(credit.parent_id);
        let answer = self.write(Method::POST, "/order-service/sales-credit", &body, Replay::Unsafe).await;
        let external_ref = &credit.order.external_ref;
        match WriteOutcome::from_result(answer) {
            WriteOutcome::Applied(v) => match loose_u64(Some(&v)) {
                Some(id) => WriteOutcome::Applied(id),
                None => {
                    match self.sales_credit_by_ref(external_ref, self.inner.config.search_lag_retries).await {
                        Ok(Some(id)) => WriteOutcome::Applied(id),
                        Ok(None) => WriteOutcome::Unknown(unknown(format!(
                            "sales credit {external_ref} answered {v} without an id, and the search finds none yet"
                        ))),
                        Err(e) => WriteOutcome::Unknown(unknown(format!(
                            "sales credit {external_ref} answered without an id; the search failed: {e}"
                        ))),
                    }
                }
            },
            other => other.map(|_| 0),
        }
    }

    /// Whether the credit is closed, by its GET; `None` when the GET does not say.
    pub(super) async fn sales_credit_is_closed(&self, credit_id: u64) -> Result<Option<bool>> {
        let Some(v) = self.get_many(&format!("/order-service/sales-credit/{credit_id}"), &[]).await? else {
            return Ok(None);
        };
        let first = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
        Ok(first.get("closed").and_then(Value::as_bool))
    }

    /// Closes the credit. A refusal may mean it is closed already (our lost answer): the GET
    /// decides.
    pub(super) async fn write_close_sales_credit(&self, credit_id: u64) -> WriteOutcome<()> {
        let path = format!("/order-service/sales-credit/{credit_id}/close");
        let answer = self.write(Method::POST, &path, &json!({}), Replay::Unsafe).await;
        match WriteOutcome::from_result(answer) {
            WriteOutcome::Applied(_) => WriteOutcome::Applied(()),
            refused @ WriteOutcome::NotApplied(Error::Rejected { .. }) => {
                match self.sales_credit_is_closed(credit_id).await {
                    Ok(Some(true)) => WriteOutcome::Applied(()),
                    Ok(_) => refused.map(|_| ()),
                    Err(e) => WriteOutcome::NotApplied(e),
                }
            }
            other => other.map(|_| ()),
        }
    }
}
