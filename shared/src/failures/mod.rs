//! Nothing fails quietly: every job that cannot succeed as it is gets parked with a typed
//! code, its store, the job (or the raw body), the human text and the evidence. `pearlsync
//! failures` lists, shows, resolves and replays them; alarms count them by family.

mod code;
mod record;
mod replay;

pub use code::{FailureCode, FailureFamily};
pub use record::{
    Evidence, Failure, PARTITION, ParkedRecord, find, list, park, park_undecodable, remove, snippet,
};
pub use replay::{
    PaymentResolution, ReplayReport, ReplayedRecord, Resolution, ResolveReport, Selector, SkippedRecord,
    clear_payment_resolution, payment_resolution, replay, replay_with_progress, resolve,
};

use crate::error::Result;
use crate::state::StateStore;
use serde::Serialize;
use std::collections::BTreeMap;

/// Counts for `failures list` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub oldest_age_seconds: Option<i64>,
    pub by_code: BTreeMap<String, usize>,
    pub by_store: BTreeMap<String, usize>,
    pub by_family: BTreeMap<String, usize>,
    /// One row per (code, store), oldest first.
    pub groups: Vec<SummaryGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryGroup {
    pub code: FailureCode,
    pub store: Option<String>,
    pub count: usize,
    pub oldest_age_seconds: i64,
}

/// The label of records no store is known for.
pub const NO_STORE: &str = "-";

pub fn summarise(records: &[ParkedRecord], now_ms: i64) -> Summary {
    let mut summary = Summary { total: records.len(), ..Summary::default() };
    let mut groups: BTreeMap<(FailureCode, Option<String>), (usize, i64)> = BTreeMap::new();
    for r in records {
        let age = r.age_seconds(now_ms);
        summary.oldest_age_seconds = Some(summary.oldest_age_seconds.map_or(age, |o| o.max(age)));
        *summary.by_code.entry(r.code.as_str().to_string()).or_default() += 1;
        *summary.by_store.entry(r.store.clone().unwrap_or_else(|| NO_STORE.into())).or_default() += 1;
        *summary.by_family.entry(r.family().as_str().to_string()).or_default() += 1;
        let group = groups.entry((r.code, r.store.clone())).or_insert((0, 0));
        group.0 += 1;
        group.1 = group.1.max(age);
    }
    summary.groups = groups
        .into_iter()
        .map(|((code, store), (count, oldest_age_seconds))| SummaryGroup {
            code,
            store,
            count,
            oldest_age_seconds,
        })
        .collect();
    summary.groups.sort_by_key(|g| std::cmp::Reverse(g.oldest_age_seconds));
    summary
}

/// Emits the standing count of parked records per family as a gauge (`ParkedWork`), zero for
/// families with none, so an alarm on `> 0` also clears. Scheduled runs call it.
pub async fn emit_parked_gauge(state: &dyn StateStore) -> Result<Summary> {
    let records = list(state).await?;
    let summary = summarise(&records, crate::state::now_epoch_millis());
    for family in
        [FailureFamily::Orders, FailureFamily::Stock, FailureFamily::Purchasing, FailureFamily::Auth]
    {
        let count = summary.by_family.get(family.as_str()).copied().unwrap_or(0);
        crate::metrics::emit(
            crate::metrics::names::PARKED_WORK,
            crate::metrics::Unit::Count,
            count as f64,
            &[("family", family.as_str())],
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::queue::{ChannelKind, InProcessQueue, Job, JobQueue, OrderEvent, QueueName};
    use crate::state::EmbeddedStore;
    use std::time::Duration;

    fn order(id: &str) -> Job {
        Job::ChannelOrder {
            channel: ChannelKind::Shopify,
            store: "main".into(),
            order_id: id.into(),
            event: OrderEvent::Created,
            payload: None,
        }
    }

    #[tokio::test]
    async fn a_parked_record_keeps_code_store_evidence_and_counts_attempts() {
        let state = EmbeddedStore::in_memory().unwrap();
        let error = Error::Rejected {
            service: "brightpearl",
            status: 400,
            code: "CMNC-010".into(),
            message: "Invalid nominal code".into(),
        };
        let first = park(&state, &order("1"), Failure::from_error(&error).with_ruid("r-1")).await.unwrap();
        assert_eq!(first.code, FailureCode::RejectedByBrightpearl);
        assert_eq!(first.store.as_deref(), Some("main"));
        assert_eq!(first.evidence.brightpearl_code.as_deref(), Some("CMNC-010"));
        assert_eq!(first.evidence.ruid.as_deref(), Some("r-1"));
        assert_eq!(first.evidence.http_status, Some(400));
        let again =
            park(&state, &order("1"), Failure::new(FailureCode::UnknownSku, "unknown SKU X")).await.unwrap();
        assert_eq!(again.attempts, 2);
        assert_eq!(again.first_parked_at_ms, first.first_parked_at_ms);
        let all = list(&state).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].code, FailureCode::UnknownSku);
        assert_eq!(all[0].attempts, 2);
    }

    #[tokio::test]
    async fn old_text_only_records_still_list() {
        let state = EmbeddedStore::in_memory().unwrap();
        let old = serde_json::json!({
            "id": "abc", "job": {"type": "stock_changed", "product_ids": [1]},
            "reason": "unknown SKU X", "parked_at_ms": 5
        });
        state
            .put(crate::state::Item::new(PARTITION, "abc", old), crate::state::Condition::Always)
            .await
            .unwrap();
        let all = list(&state).await.unwrap();
        assert_eq!(all[0].text, "unknown SKU X");
        assert_eq!(all[0].code, FailureCode::Other);
        assert_eq!(all[0].attempts, 1);
    }

    #[tokio::test]
    async fn replay_by_code_sends_and_removes_only_what_it_sent() {
        let state = EmbeddedStore::in_memory().unwrap();
        let queue = InProcessQueue::default();
        park(&state, &order("1"), Failure::new(FailureCode::UnknownSku, "unknown SKU A")).await.unwrap();
        park(&state, &order("2"), Failure::new(FailureCode::TotalMismatch, "off by 0.01")).await.unwrap();
        park_undecodable(&state, QueueName::Orders, "{oops", "job does not parse").await.unwrap();
        let report = replay(&state, &queue, &Selector::Code(FailureCode::UnknownSku)).await.unwrap();
        assert_eq!(report.replayed.len(), 1);
        assert_eq!(report.replayed[0].order.as_deref(), Some("1"));
        let got = queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, order("1"));
        let left: Vec<FailureCode> = list(&state).await.unwrap().iter().map(|r| r.code).collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&FailureCode::UnknownSku));
        let all = replay(&state, &queue, &Selector::All).await.unwrap();
        assert_eq!(all.replayed.len(), 1);
        assert_eq!(all.skipped.len(), 1, "the undecodable body has no job");
        assert_eq!(list(&state).await.unwrap()[0].raw_body.as_deref(), Some("{oops"));
    }

    #[tokio::test]
    async fn a_record_parked_again_during_the_send_stays() {
        let state = EmbeddedStore::in_memory().unwrap();
        let parked = park(&state, &order("1"), Failure::new(FailureCode::UnknownSku, "A")).await.unwrap();
        let (record, version) = find(&state, &parked.id).await.unwrap().unwrap();
        park(&state, &order("1"), Failure::new(FailureCode::UnknownSku, "A again")).await.unwrap();
        assert!(!remove(&state, &record.id, version).await.unwrap());
        assert_eq!(list(&state).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn payment_answers_only_resolve_payment_unknown() {
        let state = EmbeddedStore::in_memory().unwrap();
        let queue = InProcessQueue::default();
        let mismatch =
            park(&state, &order("1"), Failure::new(FailureCode::TotalMismatch, "x")).await.unwrap();
        assert!(resolve(&state, &queue, &mismatch.id, Resolution::Paid).await.is_err());
        let unknown =
            park(&state, &order("2"), Failure::new(FailureCode::PaymentUnknown, "lost")).await.unwrap();
        let report = resolve(&state, &queue, &unknown.id[..12], Resolution::Paid).await.unwrap();
        assert!(report.replayed);
        assert_eq!(payment_resolution(&state, &order("2")).await.unwrap(), Some(PaymentResolution::Paid));
        assert_eq!(queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap().len(), 1);
        let done = resolve(&state, &queue, &mismatch.id, Resolution::Done).await.unwrap();
        assert!(!done.replayed);
        assert!(list(&state).await.unwrap().is_empty());
    }

    #[test]
    fn summary_counts_by_code_and_store() {
        let record = |code, store: Option<&str>, at| ParkedRecord {
            id: format!("{code}{at}"),
            code,
            family: None,
            store: store.map(str::to_string),
            queue: Some(QueueName::Orders),
            job: None,
            raw_body: None,
            text: String::new(),
            evidence: Evidence::default(),
            parked_at_ms: at,
            first_parked_at_ms: at,
            attempts: 1,
        };
        let records = [
            record(FailureCode::UnknownSku, Some("a"), 1_000),
            record(FailureCode::UnknownSku, Some("b"), 50_000),
            record(FailureCode::UnknownSku, Some("a"), 60_000),
            record(FailureCode::Undecodable, None, 90_000),
        ];
        let s = summarise(&records, 101_000);
        assert_eq!(s.total, 4);
        assert_eq!(s.oldest_age_seconds, Some(100));
        assert_eq!(s.by_code["unknown_sku"], 3);
        assert_eq!(s.by_store["a"], 2);
        assert_eq!(s.by_store[NO_STORE], 1);
        assert_eq!(s.groups[0].count, 2, "unknown_sku at a is the oldest group");
        assert_eq!(s.groups[0].oldest_age_seconds, 100);
    }
}
