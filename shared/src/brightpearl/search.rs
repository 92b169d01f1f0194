//! Resource searches (`…-search`): positional rows described by `metaData.columns`, paged with
//! `firstResult`/`pageSize`. We turn each row into a JSON object keyed by column name and let
//! serde map it onto a typed row, so new columns Brightpearl adds never break us.

use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Rows per search page. 500 is what public clients ask for (maximum UNCONFIRMED).
pub const PAGE_SIZE: u32 = 500;

/// One page of a search answer.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchPage {
    #[serde(default)]
    pub results: Vec<Vec<Value>>,
    #[serde(rename = "metaData")]
    pub meta: SearchMeta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMeta {
    #[serde(default)]
    pub results_available: u64,
    #[serde(default)]
    pub results_returned: u64,
    #[serde(default)]
    pub first_result: u64,
    #[serde(default)]
    pub last_result: u64,
    /// Present on real answers (recorded); page on it, because `resultsAvailable` can be
    /// wrong (apis.md §8.1).
    #[serde(default)]
    pub more_pages_available: Option<bool>,
    #[serde(default)]
    pub columns: Vec<SearchColumn>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchColumn {
    pub name: String,
    #[serde(default)]
    pub report_data_type: Option<String>,
}

impl SearchPage {
    /// Maps every row onto `T` through the column names.
    pub fn rows<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.results
            .iter()
            .map(|row| {
                let object: Map<String, Value> =
                    self.meta.columns.iter().map(|c| c.name.clone()).zip(row.iter().cloned()).collect();
                serde_json::from_value(Value::Object(object))
                    // An answer of an unexpected shape is Brightpearl's to fix, not the job's:
                    // retryable, so it never parks the orders that asked.
                    .map_err(|e| Error::Unavailable {
                        service: "brightpearl",
                        detail: format!("search row does not fit: {e}"),
                    })
            })
            .collect()
    }

    /// The `firstResult` of the next page, if there is one. `lastResult < resultsAvailable`
    /// is the paging rule public clients use; an empty page always ends the walk.
    pub fn next_first_result(&self) -> Option<u64> {
        if self.results.is_empty() {
            return None;
        }
        let next = self.meta.last_result.max(self.meta.first_result + self.results.len() as u64 - 1) + 1;
        match self.meta.more_pages_available {
            Some(more) => more.then_some(next),
            // Older answers without the flag: fall back on the counts.
            None => (self.meta.last_result < self.meta.results_available).then_some(next),
        }
    }
}

/// A PERIOD filter: `from/`, `/to` or `from/to` (ISO-8601 UTC). Only the open-ended
/// `updatedOn=<iso>/` form is observed in the wild; the sandbox accepts all three.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    pub fn since(from: DateTime<Utc>) -> Self {
        Period { from: Some(from), to: None }
    }

    pub fn encode(&self) -> String {
        let f = |d: &Option<DateTime<Utc>>| {
            d.map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
        };
        format!("{}/{}", f(&self.from), f(&self.to))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('/')?;
        let p = |x: &str| -> Option<Option<DateTime<Utc>>> {
            if x.is_empty() {
                Some(None)
            } else {
                DateTime::parse_from_rfc3339(x).ok().map(|d| Some(d.with_timezone(&Utc)))
            }
        };
        Some(Period { from: p(a)?, to: p(b)? })
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t <= to)
    }
}

/// Typed rows of the searches we use. Unknown columns are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductSearchRow {
    pub product_id: u64,
    #[serde(rename = "SKU", default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub updated_on: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContactSearchRow {
    pub contact_id: u64,
    #[serde(default)]
    pub primary_email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub is_supplier: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SalesOrderSearchRow {
    pub sales_order_id: u64,
    #[serde(default)]
    pub customer_id: Option<u64>,
    #[serde(default)]
    pub order_status_id: Option<u64>,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub installed_integration_instance_id: Option<u64>,
    #[serde(default)]
    pub channel_id: Option<u64>,
}

/// A `goods-note/goods-out-search` row.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoodsOutSearchRow {
    pub goods_note_id: u64,
    #[serde(default)]
    pub order_id: Option<u64>,
}

/// A `customer-payment-search` row (columns named as in the search's metadata).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPaymentSearchRow {
    #[serde(alias = "paymentId")]
    pub customer_payment_id: u64,
    #[serde(default)]
    pub order_id: Option<u64>,
    #[serde(default)]
    pub transaction_ref: Option<String>,
    #[serde(default)]
    pub payment_method_code: Option<String>,
    #[serde(default)]
    pub payment_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderSearchRow {
    pub order_id: u64,
    #[serde(default)]
    pub order_type_id: Option<u64>,
    #[serde(default)]
    pub contact_id: Option<u64>,
    #[serde(default)]
    pub order_status_id: Option<u64>,
    #[serde(default)]
    pub external_ref: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> SearchPage {
        serde_json::from_value(serde_json::json!({
            "results": [[1001, "Misc", "MISC1", "2007-10-11T11:33:26.000Z"], [1002, "Other", null, null]],
            "metaData": {"resultsAvailable": 7, "resultsReturned": 2, "firstResult": 1, "lastResult": 2,
                "columns": [{"name": "productId", "reportDataType": "IDSET"}, {"name": "productName"},
                            {"name": "SKU"}, {"name": "updatedOn"}]}
        }))
        .unwrap()
    }

    #[test]
    fn rows_map_through_column_names_and_paging_continues() {
        let p = page();
        let rows: Vec<ProductSearchRow> = p.rows().unwrap();
        assert_eq!(rows[0].product_id, 1001);
        assert_eq!(rows[0].sku.as_deref(), Some("MISC1"));
        assert!(rows[0].updated_on.is_some());
        assert_eq!(rows[1].sku, None);
        assert_eq!(p.next_first_result(), Some(3));
    }

    #[test]
    fn last_page_and_empty_pages_stop() {
        let mut p = page();
        p.meta.last_result = 7;
        assert_eq!(p.next_first_result(), None);
        p.meta.last_result = 2;
        p.results.clear();
        assert_eq!(p.next_first_result(), None);
    }

    #[test]
    fn a_row_that_cannot_fit_is_an_error_not_a_panic() {
        let mut p = page();
        p.results[0][0] = Value::String("x".into());
        assert!(p.rows::<ProductSearchRow>().is_err());
    }

    #[test]
    fn periods_round_trip() {
        let from = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let p = Period::since(from);
        assert_eq!(p.encode(), "2026-07-01T00:00:00.000Z/");
        assert_eq!(Period::parse(&p.encode()), Some(p));
        assert!(p.contains(from));
        assert!(!p.contains(from - chrono::Duration::seconds(1)));
        assert_eq!(Period::parse("nonsense"), None);
    }
}
