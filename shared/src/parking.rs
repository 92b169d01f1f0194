//! Parked work: jobs that cannot succeed as they are (unknown SKU, rejected payload), kept in
//! state with their reason so they are visible and can be replayed once the cause is fixed.

use crate::error::{Error, Result};
use crate::queue::{Job, JobQueue};
use crate::state::{Condition, Key, StateStore, now_epoch_millis};
use serde::{Deserialize, Serialize};

const PARTITION: &str = "parked";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedJob {
    /// Stable id: re-parking the same job replaces its record instead of adding one.
    pub id: String,
    pub job: Job,
    pub reason: String,
    pub parked_at_ms: i64,
}

/// Records `job` as parked with `reason`.
pub async fn park(state: &dyn StateStore, job: &Job, reason: &str) -> Result<ParkedJob> {
    let parked = ParkedJob {
        id: job.dedup_id(),
        job: job.clone(),
        reason: reason.to_string(),
        parked_at_ms: now_epoch_millis(),
    };
    let data = serde_json::to_value(&parked).map_err(|e| Error::State(e.to_string()))?;
    state.put(crate::state::Item::new(PARTITION, parked.id.clone(), data), Condition::Always).await?;
    tracing::warn!(job = %job.group_id(), reason, "job parked");
    Ok(parked)
}

/// Parked jobs whose reason contains `reason_filter` (all when empty), oldest first.
pub async fn list(state: &dyn StateStore, reason_filter: &str) -> Result<Vec<ParkedJob>> {
    let mut parked: Vec<ParkedJob> = state
        .query(PARTITION, "")
        .await?
        .into_iter()
        .filter_map(|item| serde_json::from_value(item.data).ok())
        .filter(|p: &ParkedJob| p.reason.contains(reason_filter))
        .collect();
    parked.sort_by_key(|p| p.parked_at_ms);
    Ok(parked)
}

/// Re-enqueues matching parked jobs and removes their records; returns them.
/// The record goes only after the send succeeded, so nothing is lost in between.
pub async fn replay(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    reason_filter: &str,
) -> Result<Vec<ParkedJob>> {
    let parked = list(state, reason_filter).await?;
    for p in &parked {
        queue.send(std::slice::from_ref(&p.job)).await?;
        state.delete(&Key::new(PARTITION, p.id.clone()), Condition::Always).await?;
    }
    Ok(parked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{InProcessQueue, QueueName};
    use crate::state::EmbeddedStore;
    use std::time::Duration;

    #[tokio::test]
    async fn parked_jobs_are_listed_by_reason_and_replayed_once() {
        let state = EmbeddedStore::in_memory().unwrap();
        let queue = InProcessQueue::default();
        let a = Job::StockChanged { product_ids: vec![1] };
        let b = Job::GoodsIn { goods_in_note_ids: vec![2] };
        park(&state, &a, "unknown SKU X-1").await.unwrap();
        park(&state, &a, "unknown SKU X-1").await.unwrap();
        park(&state, &b, "rejected by Brightpearl").await.unwrap();
        assert_eq!(list(&state, "").await.unwrap().len(), 2);
        let replayed = replay(&state, &queue, "unknown SKU").await.unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap()[0].job, a);
        assert_eq!(list(&state, "").await.unwrap().len(), 1);
    }
}
