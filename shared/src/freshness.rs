//! Freshness per flow: when each store last had a successful inventory poll, order
//! reconciliation and tracking sweep. Scheduled runs record their successes and emit the age
//! of every store's last success (`FreshnessSeconds`), so an alarm sees a store that stopped
//! succeeding even while the function itself runs, and a function that stopped running at all
//! (the metric goes missing, which the alarm treats as breaching).

use crate::error::Result;
use crate::metrics::{Unit, emit, names};
use crate::state::{Condition, Item, StateStore, now_epoch_millis};
use serde::{Deserialize, Serialize};

const PARTITION: &str = "freshness";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    InventoryPoll,
    OrderReconciliation,
    TrackingSweep,
}

impl Flow {
    pub const ALL: [Flow; 3] = [Flow::InventoryPoll, Flow::OrderReconciliation, Flow::TrackingSweep];

    pub fn as_str(self) -> &'static str {
        match self {
            Flow::InventoryPoll => "inventory_poll",
            Flow::OrderReconciliation => "order_reconciliation",
            Flow::TrackingSweep => "tracking_sweep",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreFreshness {
    pub flow: Flow,
    pub store: String,
    pub last_success_ms: i64,
    pub age_seconds: i64,
}

fn sort_key(flow: Flow, store: &str) -> String {
    format!("{}#{store}", flow.as_str())
}

/// Records that `flow` just succeeded for `store`.
pub async fn record_success(state: &dyn StateStore, flow: Flow, store: &str) -> Result<()> {
    let data = serde_json::json!({"flow": flow, "store": store, "last_success_ms": now_epoch_millis()});
    state.put(Item::new(PARTITION, sort_key(flow, store), data), Condition::Always).await?;
    Ok(())
}

/// The last success of every store of `flow` (or of every flow when None).
pub async fn read(state: &dyn StateStore, flow: Option<Flow>) -> Result<Vec<StoreFreshness>> {
    let prefix = flow.map(|f| format!("{}#", f.as_str())).unwrap_or_default();
    let now = now_epoch_millis();
    Ok(state
        .query(PARTITION, &prefix)
        .await?
        .into_iter()
        .filter_map(|item| {
            // The budget snapshot shares the partition and has no flow: skipped here.
            let flow: Flow = serde_json::from_value(item.data["flow"].clone()).ok()?;
            let store = item.data["store"].as_str()?.to_string();
            let last_success_ms = item.data["last_success_ms"].as_i64()?;
            Some(StoreFreshness {
                flow,
                store,
                last_success_ms,
                age_seconds: (now - last_success_ms).max(0) / 1000,
            })
        })
        .collect())
}

/// Emits `FreshnessSeconds` for every store of `flow` in `stores` (a configured store that
/// never succeeded counts from `never_since_ms`, the process start). Each value also lands in
/// the `flow`-only series, whose Maximum (the stalest store) the template alarms on. Returns
/// the stalest age.
pub async fn emit_flow(
    state: &dyn StateStore,
    flow: Flow,
    stores: &[&str],
    never_since_ms: i64,
) -> Result<i64> {
    let known = read(state, Some(flow)).await?;
    let now = now_epoch_millis();
    let mut stalest = 0i64;
    for store in stores {
        let age = known
            .iter()
            .find(|f| f.store == *store)
            .map_or((now - never_since_ms).max(0) / 1000, |f| f.age_seconds);
        stalest = stalest.max(age);
        emit(
            names::FRESHNESS_SECONDS,
            Unit::Seconds,
            age as f64,
            &[("flow", flow.as_str()), ("store", store)],
        );
    }
    Ok(stalest)
}

/// One scheduled run's end: records the stores that succeeded, then emits the flow's ages.
/// The function the flows call: `freshness::record_run(state, Flow::InventoryPoll, &all, &ok, started_ms)`.
pub async fn record_run(
    state: &dyn StateStore,
    flow: Flow,
    configured: &[&str],
    succeeded: &[&str],
    started_ms: i64,
) -> Result<i64> {
    for store in succeeded {
        record_success(state, flow, store).await?;
    }
    emit_flow(state, flow, configured, started_ms).await
}

/// The Brightpearl budget as a process last saw it (`brightpearl-requests-remaining`), for
/// `pearlsync status`: the pool is per account, so any process's latest view is the account's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    pub limit: u32,
    pub remaining: u32,
    /// Requests this process sent in the last minute.
    pub sent_last_minute: u32,
    pub function: String,
    pub at_ms: i64,
}

const BUDGET_KEY: &str = "brightpearl-budget";

/// Called at the end of an invocation (or every few seconds by `serve`) with what the
/// Brightpearl client last saw.
pub async fn record_budget(state: &dyn StateStore, snapshot: &BudgetSnapshot) -> Result<()> {
    let data = serde_json::to_value(snapshot).map_err(|e| crate::Error::State(e.to_string()))?;
    state.put(Item::new(PARTITION, BUDGET_KEY, data), Condition::Always).await?;
    Ok(())
}

/// [`record_budget`] with what `brightpearl` saw, at the end of a run; a failure is logged, never
/// the run's.
pub async fn record_budget_seen(
    state: &dyn StateStore,
    brightpearl: &dyn crate::brightpearl::BrightpearlApi,
    function: &str,
) {
    let Some(view) = brightpearl.budget_view() else { return };
    let snapshot = BudgetSnapshot {
        limit: view.limit,
        remaining: view.remaining,
        sent_last_minute: view.sent_last_minute,
        function: function.to_string(),
        at_ms: crate::state::now_epoch_millis(),
    };
    if let Err(e) = record_budget(state, &snapshot).await {
        tracing::warn!(error = %e, "brightpearl budget snapshot not recorded");
    }
}

pub async fn read_budget(state: &dyn StateStore) -> Result<Option<BudgetSnapshot>> {
    Ok(state
        .get(&crate::state::Key::new(PARTITION, BUDGET_KEY))
        .await?
        .and_then(|item| serde_json::from_value(item.data).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EmbeddedStore;

    #[tokio::test]
    async fn a_store_that_stops_succeeding_grows_stale_while_the_others_stay_fresh() {
        let state = EmbeddedStore::in_memory().unwrap();
        let hour_ago = now_epoch_millis() - 3_600_000;
        let old = serde_json::json!({"flow": "inventory_poll", "store": "b", "last_success_ms": hour_ago});
        state
            .put(Item::new(PARTITION, sort_key(Flow::InventoryPoll, "b"), old), Condition::Always)
            .await
            .unwrap();
        let stalest =
            record_run(&state, Flow::InventoryPoll, &["a", "b"], &["a"], now_epoch_millis()).await.unwrap();
        assert!((3599..=3601).contains(&stalest), "{stalest}");
        let all = read(&state, None).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|f| f.store == "a" && f.age_seconds <= 1));
        assert!(read(&state, Some(Flow::TrackingSweep)).await.unwrap().is_empty());
        let never = emit_flow(&state, Flow::TrackingSweep, &["a"], hour_ago).await.unwrap();
        assert!(never >= 3599, "a store that never succeeded counts from the start");
    }
}
