//! Replaying and resolving parked work. A replay sends the job again as a replay (a fresh
//! deduplication id, so a FIFO queue does not drop it as a repeat of its first delivery) and
//! removes the record only after the send succeeded, and only the version it read.

use super::code::FailureCode;
use super::record::{ParkedRecord, find, list_versioned, remove};
use crate::error::{Error, Result};
use crate::queue::{Job, JobQueue};
use crate::state::{Condition, Item, Key, StateStore, now_epoch_millis, now_epoch_seconds};
use serde::{Deserialize, Serialize};

/// Resolved records are kept this long for `failures list --resolved`-style audits.
const RESOLVED_KEEP_SECONDS: i64 = 30 * 24 * 3600;
const RESOLVED_PARTITION: &str = "parked-resolved";
/// A person's answer to `payment_unknown`, read by the order saga on the replay.
const PAYMENT_RESOLUTION_PARTITION: &str = "payment-resolution";
const PAYMENT_RESOLUTION_KEEP_SECONDS: i64 = 7 * 24 * 3600;

/// Which parked records a replay takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    All,
    Code(FailureCode),
    /// An id or the start of one.
    Id(String),
    /// Records whose text contains this (the old `replay --reason`).
    Text(String),
}

impl Selector {
    fn matches(&self, record: &ParkedRecord) -> bool {
        match self {
            Selector::All => true,
            Selector::Code(code) => record.code == *code,
            Selector::Id(id) => record.id.starts_with(id.as_str()),
            Selector::Text(text) => record.text.contains(text.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    pub replayed: Vec<ReplayedRecord>,
    /// Records left parked, with why (an undecodable body has no job to send).
    pub skipped: Vec<SkippedRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayedRecord {
    pub id: String,
    pub code: FailureCode,
    pub store: Option<String>,
    pub order: Option<String>,
    /// False when the record was parked again while we sent (its replay already failed):
    /// that newer record stays.
    pub record_removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedRecord {
    pub id: String,
    pub code: FailureCode,
    pub reason: String,
}

/// Replays every record the selector takes, oldest first. A failed send stops the replay with
/// the error; records sent before it are already removed, the rest stay parked.
pub async fn replay(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    selector: &Selector,
) -> Result<ReplayReport> {
    replay_with_progress(state, queue, selector, &mut |_, _| {}).await
}

/// `replay`, calling `progress(done, total)` after each record (the CLI draws a bar).
pub async fn replay_with_progress(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    selector: &Selector,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<ReplayReport> {
    let chosen: Vec<(ParkedRecord, u64)> =
        list_versioned(state).await?.into_iter().filter(|(r, _)| selector.matches(r)).collect();
    let total = chosen.len();
    let mut report = ReplayReport::default();
    for (done, (record, version)) in chosen.into_iter().enumerate() {
        match replay_one(state, queue, &record, version).await? {
            Ok(replayed) => report.replayed.push(replayed),
            Err(skipped) => report.skipped.push(skipped),
        }
        progress(done + 1, total);
    }
    Ok(report)
}

async fn replay_one(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    record: &ParkedRecord,
    version: u64,
) -> Result<Result<ReplayedRecord, SkippedRecord>> {
    let Some(job) = &record.job else {
        return Ok(Err(SkippedRecord {
            id: record.id.clone(),
            code: record.code,
            reason: "no job to send (the raw body is kept); resolve it as done once handled".into(),
        }));
    };
    queue.send_replay(std::slice::from_ref(job)).await?;
    let record_removed = remove(state, &record.id, version).await?;
    tracing::info!(id = %record.id, code = record.code.as_str(), record_removed, "parked work replayed");
    Ok(Ok(ReplayedRecord {
        id: record.id.clone(),
        code: record.code,
        store: record.store.clone(),
        order: record.order_id().map(str::to_string),
        record_removed,
    }))
}

/// A person's decision on one parked record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// The payment is in Brightpearl: the saga records it as paid without posting it again.
    Paid,
    /// The payment is not in Brightpearl: the saga posts it (once).
    NotPaid,
    /// Handled by hand: the record goes (kept 30 days among the resolved).
    Done,
    /// Replay it as it is.
    Retry,
}

impl Resolution {
    pub fn parse(text: &str) -> Option<Resolution> {
        match text.trim() {
            "paid" => Some(Resolution::Paid),
            "not-paid" => Some(Resolution::NotPaid),
            "done" => Some(Resolution::Done),
            "retry" => Some(Resolution::Retry),
            _ => None,
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Resolution::parse(s).ok_or_else(|| format!("{s:?} is not one of paid, not-paid, done, retry"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolveReport {
    pub id: String,
    pub code: FailureCode,
    pub resolution: Resolution,
    /// Whether the job went back on its queue.
    pub replayed: bool,
}

/// The payment answer a person gave for the order of `job`, if any: the saga's `paying` step
/// reads it on the replay before deciding to post or not, then clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentResolution {
    Paid,
    NotPaid,
}

fn payment_key(job: &Job) -> Key {
    Key::new(PAYMENT_RESOLUTION_PARTITION, job.group_id())
}

pub async fn payment_resolution(state: &dyn StateStore, job: &Job) -> Result<Option<PaymentResolution>> {
    Ok(state
        .get(&payment_key(job))
        .await?
        .and_then(|item| serde_json::from_value::<PaymentResolution>(item.data["resolution"].clone()).ok()))
}

/// Called by the saga once it acted on the answer.
pub async fn clear_payment_resolution(state: &dyn StateStore, job: &Job) -> Result<()> {
    state.delete(&payment_key(job), Condition::Always).await?;
    Ok(())
}

/// Applies a person's decision to the record `id` (or the one its prefix names).
pub async fn resolve(
    state: &dyn StateStore,
    queue: &dyn JobQueue,
    id: &str,
    resolution: Resolution,
) -> Result<ResolveReport> {
    let (record, version) =
        find(state, id).await?.ok_or_else(|| Error::BadInput(format!("no parked record {id:?}")))?;
    let payment = match resolution {
        Resolution::Paid => Some(PaymentResolution::Paid),
        Resolution::NotPaid => Some(PaymentResolution::NotPaid),
        Resolution::Done | Resolution::Retry => None,
    };
    if let Some(answer) = payment {
        if record.code != FailureCode::PaymentUnknown {
            return Err(Error::BadInput(format!(
                "--as paid/not-paid answers payment_unknown; record {} is {}",
                record.id, record.code
            )));
        }
        let Some(job) = &record.job else {
            return Err(Error::BadInput(format!("record {} has no job", record.id)));
        };
        let data =
            serde_json::json!({"resolution": answer, "record": record.id, "at_ms": now_epoch_millis()});
        let item = Item::new(PAYMENT_RESOLUTION_PARTITION, job.group_id(), data)
            .with_expiry(now_epoch_seconds() + PAYMENT_RESOLUTION_KEEP_SECONDS);
        state.put(item, Condition::Always).await?;
    }
    let replayed = match resolution {
        Resolution::Done => {
            keep_resolved(state, &record, resolution).await?;
            remove(state, &record.id, version).await?;
            false
        }
        Resolution::Paid | Resolution::NotPaid | Resolution::Retry => {
            match replay_one(state, queue, &record, version).await? {
                Ok(_) => {
                    keep_resolved(state, &record, resolution).await?;
                    true
                }
                Err(skipped) => return Err(Error::BadInput(skipped.reason)),
            }
        }
    };
    Ok(ResolveReport { id: record.id, code: record.code, resolution, replayed })
}

async fn keep_resolved(state: &dyn StateStore, record: &ParkedRecord, resolution: Resolution) -> Result<()> {
    let data =
        serde_json::json!({"record": record, "resolution": resolution, "resolved_at_ms": now_epoch_millis()});
    let data_key = format!("{}#{}", record.id, now_epoch_millis());
    let item = Item::new(RESOLVED_PARTITION, data_key, data)
        .with_expiry(now_epoch_seconds() + RESOLVED_KEEP_SECONDS);
    state.put(item, Condition::Always).await?;
    Ok(())
}
