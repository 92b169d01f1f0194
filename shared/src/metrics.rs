//! Counts as CloudWatch Embedded Metric Format lines on stdout: CloudWatch turns them into
//! metrics with no API call. Locally they are kept in memory for reports unless
//! `PEARLSYNC_METRICS=stdout`.

use std::collections::BTreeMap;
use std::sync::Mutex;

pub const NAMESPACE: &str = "pearlsync";

/// Metric names, so that dashboards and code agree.
pub mod names {
    pub const ORDERS_CREATED: &str = "OrdersCreated";
    pub const ORDERS_PARKED: &str = "OrdersParked";
    pub const DUPLICATES: &str = "Duplicates";
    pub const SKUS_PUSHED: &str = "SkusPushed";
    pub const BRIGHTPEARL_REQUESTS: &str = "BrightpearlRequests";
    pub const BRIGHTPEARL_THROTTLES: &str = "BrightpearlThrottles";
    pub const PURCHASE_ORDERS_CREATED: &str = "PurchaseOrdersCreated";
    pub const WEBHOOKS_REJECTED: &str = "WebhooksRejected";
    /// One per parked job, dimensions `family` and `code` (alarmed per family).
    pub const PARKED: &str = "Parked";
    /// Standing parked records per `family`, a gauge emitted by scheduled runs.
    pub const PARKED_WORK: &str = "ParkedWork";
    /// Seconds since the last successful run of a `flow` for a `store` (and, with the `flow`
    /// dimension only, the stalest store): alarmed past 3x the flow's schedule.
    pub const FRESHNESS_SECONDS: &str = "FreshnessSeconds";
    /// A reconciliation (orders or inventory) that failed for a store.
    pub const RECONCILE_FAILURES: &str = "ReconcileFailures";
    /// A stock push to a store that failed.
    pub const PUSH_FAILURES: &str = "PushFailures";
    /// An order delivery whose sold units could not be recorded as pending.
    pub const PENDING_NOT_RECORDED: &str = "PendingNotRecorded";
    /// A reserved or cancelled order whose pending entry the writer could not settle (the
    /// next inventory poll settles it from the saga).
    pub const PENDING_NOT_SETTLED: &str = "PendingNotSettled";
    /// A purchase order that could not be created.
    pub const PURCHASE_ORDER_FAILURES: &str = "PurchaseOrderFailures";
    /// A Brightpearl OAuth token refresh that failed.
    pub const OAUTH_REFRESH_FAILURES: &str = "OAuthRefreshFailures";
    /// Sales orders whose Brightpearl `totalValue` differs from what was sent.
    pub const ORDERS_TOTAL_MISMATCH: &str = "OrdersTotalMismatch";
}

/// CloudWatch units we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

fn emf_to_stdout() -> bool {
    crate::telemetry::on_lambda()
        || std::env::var("PEARLSYNC_METRICS").is_ok_and(|v| v.eq_ignore_ascii_case("stdout"))
}

/// One EMF document for one value with its own dimensions. It declares every leading part of
/// the dimension list as a set (`[family]` and `[family, code]`), so an alarm can watch the
/// coarse series (its Maximum or Sum covers every finer one) while dashboards split it.
pub fn emf_document(
    name: &str,
    unit: Unit,
    value: f64,
    dimensions: &[(&str, &str)],
    timestamp_ms: i64,
) -> String {
    let keys: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let sets: Vec<Vec<&str>> = if keys.is_empty() {
        vec![Vec::new()]
    } else {
        (1..=keys.len()).map(|n| keys[..n].to_vec()).collect()
    };
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": [{"Name": name, "Unit": unit.as_str()}],
            }]
        },
    });
    for (key, val) in dimensions {
        doc[*key] = serde_json::json!(val);
    }
    doc[name] = serde_json::json!(value);
    doc.to_string()
}

/// Emits one value at once with its own dimensions (parked work by family and code, freshness
/// by flow and store), where `Metrics` counts carry only the function. The failure counts the
/// template alarms on without dimensions (`PushFailures`, `ReconcileFailures`,
/// `PurchaseOrderFailures`, `OAuthRefreshFailures`) go through `emit(name, Unit::Count, 1.0, &[])`.
pub fn emit(name: &str, unit: Unit, value: f64, dimensions: &[(&str, &str)]) {
    if emf_to_stdout() {
        println!("{}", emf_document(name, unit, value, dimensions, chrono::Utc::now().timestamp_millis()));
    }
}

pub struct Metrics {
    function: String,
    counts: Mutex<BTreeMap<&'static str, f64>>,
    to_stdout: bool,
}

impl Metrics {
    /// The function these metrics are emitted for.
    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn new(function: impl Into<String>) -> Self {
        let to_stdout = emf_to_stdout();
        Metrics { function: function.into(), counts: Mutex::new(BTreeMap::new()), to_stdout }
    }

    pub fn count(&self, name: &'static str, value: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(name).or_insert(0.0) += value as f64;
    }

    pub fn get(&self, name: &str) -> f64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied().unwrap_or(0.0)
    }

    /// The EMF document for the counts so far, or None when nothing was counted.
    pub fn emf_line(&self, timestamp_ms: i64) -> Option<String> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.is_empty() {
            return None;
        }
        let metrics: Vec<serde_json::Value> =
            counts.keys().map(|name| serde_json::json!({"Name": name, "Unit": "Count"})).collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["function"]],
                    "Metrics": metrics,
                }]
            },
            "function": self.function,
        });
        for (name, value) in counts.iter() {
            doc[*name] = serde_json::json!(value);
        }
        Some(doc.to_string())
    }

    /// Writes the counts as one EMF line (on Lambda) and starts again from zero.
    pub fn flush(&self) {
        if let Some(line) = self.emf_line(chrono::Utc::now().timestamp_millis())
            && self.to_stdout
        {
            println!("{line}");
        }
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_counted_metric() {
        let m = Metrics::new("order-writer");
        assert!(m.emf_line(0).is_none());
        m.count(names::ORDERS_CREATED, 2);
        m.count(names::ORDERS_CREATED, 1);
        m.count(names::DUPLICATES, 4);
        let doc: serde_json::Value = serde_json::from_str(&m.emf_line(1_700_000_000_000).unwrap()).unwrap();
        assert_eq!(doc["OrdersCreated"], 3.0);
        assert_eq!(doc["Duplicates"], 4.0);
        assert_eq!(doc["function"], "order-writer");
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert_eq!(declared.len(), 2);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "function");
    }

    #[test]
    fn a_dimensioned_value_declares_its_dimensions_and_unit() {
        let line = emf_document(
            names::FRESHNESS_SECONDS,
            Unit::Seconds,
            42.0,
            &[("flow", "inventory_poll"), ("store", "main")],
            7,
        );
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Dimensions"], serde_json::json!([["flow"], ["flow", "store"]]));
        assert_eq!(declared["Metrics"][0]["Unit"], "Seconds");
        assert_eq!(doc["FreshnessSeconds"], 42.0);
        assert_eq!(doc["store"], "main");
        let bare: serde_json::Value =
            serde_json::from_str(&emf_document(names::PUSH_FAILURES, Unit::Count, 1.0, &[], 7)).unwrap();
        assert_eq!(bare["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([[]]));
    }
}
