//! The text-only parking API of before typed failure codes, kept while its callers move to
//! `crate::failures` (`failures::park(state, job, Failure::from_error(&e))`). Delete once no
//! caller is left.

use crate::error::Result;
use crate::failures::{self, Failure, FailureCode};
use crate::queue::{Job, JobQueue};
use crate::state::StateStore;

#[derive(Debug, Clone, PartialEq)]
pub struct ParkedJob {
    pub id: String,
    pub job: Job,
    pub reason: String,
    pub parked_at_ms: i64,
}

impl ParkedJob {
    fn from_record(record: failures::ParkedRecord) -> Option<ParkedJob> {
        Some(ParkedJob {
            job: record.job?,
            id: record.id,
            reason: record.text,
            parked_at_ms: record.parked_at_ms,
        })
    }
}

/// The code a text-only caller meant, read from the texts those callers produce today
/// (`Error::UnknownSku`'s display, the wrong-queue messages); everything else is `other`.
pub(crate) fn code_of_legacy_text(reason: &str) -> FailureCode {
    if reason.starts_with("unknown SKU") {
        FailureCode::UnknownSku
    } else if reason.contains("may have been taken (answer lost)") {
        FailureCode::PaymentUnknown
    } else if reason.starts_with("not a purchasing job") || reason.starts_with("the stock queue takes") {
        FailureCode::WrongQueue
    } else {
        FailureCode::Other
    }
}

/// `failures::park` with a code read from the text.
pub async fn park(state: &dyn StateStore, job: &Job, reason: &str) -> Result<ParkedJob> {
    park_text(state, job, reason).await
}

pub async fn park_text(state: &dyn StateStore, job: &Job, reason: &str) -> Result<ParkedJob> {
    let record = failures::park(state, job, Failure::new(code_of_legacy_text(reason), reason)).await?;
    Ok(ParkedJob { id: record.id, job: job.clone(), reason: record.text, parked_at_ms: record.parked_at_ms })
}

/// Parked jobs whose text contains `reason_filter` (all when empty), oldest first; records
/// without a job (undecodable bodies) are left out.
pub async fn list(state: &dyn StateStore, reason_filter: &str) -> Result<Vec<ParkedJob>> {
    Ok(failures::list(state)
        .await?
        .into_iter()
        .filter(|r| r.text.contains(reason_filter))
        .filter_map(ParkedJob::from_record)
        .collect())
}

/// `failures::replay` by text.
pub async fn replay(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    reason_filter: &str,
) -> Result<Vec<ParkedJob>> {
    let wanted = list(state, reason_filter).await?;
    let report = failures::replay(state, queue, &failures::Selector::Text(reason_filter.to_string())).await?;
    Ok(wanted.into_iter().filter(|p| report.replayed.iter().any(|r| r.id == p.id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn legacy_texts_get_their_codes() {
        let state = crate::state::EmbeddedStore::in_memory().unwrap();
        let job = Job::StockChanged { product_ids: vec![1] };
        park(&state, &job, &crate::Error::UnknownSku("X-1".into()).to_string()).await.unwrap();
        assert_eq!(failures::list(&state).await.unwrap()[0].code, FailureCode::UnknownSku);
        assert_eq!(list(&state, "X-1").await.unwrap()[0].job, job);
    }
}
