//! Parked records: what could not succeed as it is, kept in state with its code, its store, the
//! job (or the raw body of an undecodable message), the human text and the evidence, so that
//! `pearlsync failures` can list it, a person can decide, and a replay can bring it back.

use super::code::{FailureCode, FailureFamily};
use crate::error::{Error, Result};
use crate::queue::{Job, QueueName};
use crate::state::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_millis};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The state partition of parked records (the same as before typed codes, so old records list).
pub const PARTITION: &str = "parked";
/// Longest channel or Brightpearl answer kept as evidence.
const SNIPPET_MAX: usize = 600;
/// Conditional-write rounds when two workers park the same job at once.
const PARK_ROUNDS: u32 = 5;

/// What the remote side said, so a person can act without digging through logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Brightpearl's error code (`CMNC-010`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightpearl_code: Option<String>,
    /// Brightpearl's `Ruid` response header: the id its support asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruid: Option<String>,
    /// The start of a channel's (or Brightpearl's) answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl Evidence {
    pub fn is_empty(&self) -> bool {
        *self == Evidence::default()
    }

    /// What an error carries: the status and code of a refusal, and its message.
    pub fn from_error(error: &Error) -> Evidence {
        match error {
            Error::Rejected { service, status, code, message } => Evidence {
                http_status: Some(*status),
                brightpearl_code: (*service == "brightpearl" && !code.is_empty()).then(|| code.clone()),
                response: Some(snippet(&if *service == "brightpearl" || code.is_empty() {
                    message.clone()
                } else {
                    format!("{code}: {message}")
                })),
                ruid: None,
            },
            Error::Unauthorized { message, .. } => {
                Evidence { response: Some(snippet(message)), ..Evidence::default() }
            }
            _ => Evidence::default(),
        }
    }
}

/// Cuts `text` to the evidence limit on a character boundary.
pub fn snippet(text: &str) -> String {
    if text.len() <= SNIPPET_MAX {
        return text.to_string();
    }
    let mut end = SNIPPET_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Why a job is parked: the caller's side of `park`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: FailureCode,
    pub text: String,
    pub evidence: Evidence,
    /// Overrides the store the job names (a shipment job names none).
    pub store: Option<String>,
}

impl Failure {
    pub fn new(code: FailureCode, text: impl Into<String>) -> Failure {
        Failure { code, text: text.into(), evidence: Evidence::default(), store: None }
    }

    /// Code, text and evidence of a permanent error.
    pub fn from_error(error: &Error) -> Failure {
        Failure {
            code: FailureCode::from_error(error),
            text: error.to_string(),
            evidence: Evidence::from_error(error),
            store: None,
        }
    }

    pub fn with_evidence(mut self, evidence: Evidence) -> Failure {
        self.evidence = evidence;
        self
    }

    pub fn with_ruid(mut self, ruid: impl Into<String>) -> Failure {
        self.evidence.ruid = Some(ruid.into());
        self
    }

    pub fn with_store(mut self, store: impl Into<String>) -> Failure {
        self.store = Some(store.into());
        self
    }
}

/// One parked record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// Stable: parking the same job again updates its record instead of adding one.
    pub id: String,
    #[serde(default = "other_code")]
    pub code: FailureCode,
    #[serde(default)]
    pub family: Option<FailureFamily>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueName>,
    /// The job to replay; absent for an undecodable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// The message body exactly as received, for an undecodable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
    /// The human text (records from before typed codes called it `reason`).
    #[serde(alias = "reason")]
    pub text: String,
    #[serde(default, skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
    /// The last time it was parked.
    pub parked_at_ms: i64,
    #[serde(default)]
    pub first_parked_at_ms: i64,
    /// How many times it was parked (a replay that fails again adds one).
    #[serde(default = "one")]
    pub attempts: u32,
}

fn other_code() -> FailureCode {
    FailureCode::Other
}

fn one() -> u32 {
    1
}

impl ParkedRecord {
    pub fn family(&self) -> FailureFamily {
        self.family.unwrap_or_else(|| FailureFamily::of(self.code, self.queue))
    }

    /// The channel order id, when the job is one.
    pub fn order_id(&self) -> Option<&str> {
        match &self.job {
            Some(Job::ChannelOrder { order_id, .. }) => Some(order_id),
            _ => None,
        }
    }

    /// Seconds since it was first parked.
    pub fn age_seconds(&self, now_ms: i64) -> i64 {
        let since = if self.first_parked_at_ms > 0 { self.first_parked_at_ms } else { self.parked_at_ms };
        (now_ms - since).max(0) / 1000
    }
}

fn store_of(job: &Job) -> Option<String> {
    match job {
        Job::ChannelOrder { store, .. } => Some(store.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_item(record: &ParkedRecord, version: u64) -> Result<Item> {
    let data = serde_json::to_value(record).map_err(|e| Error::State(e.to_string()))?;
    Ok(Item { version, ..Item::new(PARTITION, record.id.clone(), data) })
}

fn from_item(item: Item) -> Option<(ParkedRecord, u64)> {
    let version = item.version;
    match serde_json::from_value::<ParkedRecord>(item.data) {
        Ok(record) => Some((record, version)),
        Err(e) => {
            tracing::warn!(id = %item.sk, error = %e, "unreadable parked record skipped");
            None
        }
    }
}

/// Writes `fresh` as the record, or folds it into the record already there (attempts + 1,
/// first time kept), with a version check so two parkers do not lose a count.
async fn upsert(state: &dyn StateStore, mut fresh: ParkedRecord) -> Result<ParkedRecord> {
    let key = Key::new(PARTITION, fresh.id.clone());
    for _ in 0..PARK_ROUNDS {
        let current = state.get(&key).await?.and_then(from_item);
        let (condition, version) = match &current {
            Some((old, version)) => {
                fresh.attempts = old.attempts.saturating_add(1);
                fresh.first_parked_at_ms = old.first_parked_at_ms.min(fresh.parked_at_ms);
                if fresh.first_parked_at_ms == 0 {
                    fresh.first_parked_at_ms = old.parked_at_ms;
                }
                (Condition::VersionIs(*version), version + 1)
            }
            None => (Condition::Absent, 1),
        };
        if state.put(to_item(&fresh, version)?, condition).await? == PutOutcome::Written {
            return Ok(fresh);
        }
    }
    Err(Error::State(format!("parked record {} kept changing while parking", fresh.id)))
}

/// Parks `job` with `failure`: the record replaces an earlier one of the same job, counting
/// the attempt. Emits the `Parked` metric by family and code.
pub async fn park(state: &dyn StateStore, job: &Job, failure: Failure) -> Result<ParkedRecord> {
    let now = now_epoch_millis();
    let queue = job.queue();
    let record = ParkedRecord {
        id: job.dedup_id(),
        code: failure.code,
        family: Some(FailureFamily::of(failure.code, Some(queue))),
        store: failure.store.or_else(|| store_of(job)),
        queue: Some(queue),
        job: Some(job.clone()),
        raw_body: None,
        text: failure.text,
        evidence: failure.evidence,
        parked_at_ms: now,
        first_parked_at_ms: now,
        attempts: 1,
    };
    let record = upsert(state, record).await?;
    announce(&record);
    Ok(record)
}

/// Parks a queue message whose body is not a job, keeping the body as received. The id is
/// the body's hash, so a redelivery of the same message does not add a record.
pub async fn park_undecodable(
    state: &dyn StateStore,
    queue: QueueName,
    raw_body: &str,
    reason: &str,
) -> Result<ParkedRecord> {
    let now = now_epoch_millis();
    let record = ParkedRecord {
        id: format!("raw-{}", hex(&Sha256::digest(raw_body.as_bytes()))),
        code: FailureCode::Undecodable,
        family: Some(FailureFamily::of(FailureCode::Undecodable, Some(queue))),
        store: None,
        queue: Some(queue),
        job: None,
        raw_body: Some(raw_body.to_string()),
        text: reason.to_string(),
        evidence: Evidence::default(),
        parked_at_ms: now,
        first_parked_at_ms: now,
        attempts: 1,
    };
    let record = upsert(state, record).await?;
    announce(&record);
    Ok(record)
}

fn announce(record: &ParkedRecord) {
    crate::metrics::emit(
        crate::metrics::names::PARKED,
        crate::metrics::Unit::Count,
        1.0,
        &[("family", record.family().as_str()), ("code", record.code.as_str())],
    );
    tracing::warn!(
        id = %record.id,
        code = record.code.as_str(),
        store = record.store.as_deref().unwrap_or("-"),
        attempts = record.attempts,
        text = %record.text,
        "work parked"
    );
}

/// Every parked record, oldest first.
pub async fn list(state: &dyn StateStore) -> Result<Vec<ParkedRecord>> {
    Ok(list_versioned(state).await?.into_iter().map(|(r, _)| r).collect())
}

pub(crate) async fn list_versioned(state: &dyn StateStore) -> Result<Vec<(ParkedRecord, u64)>> {
    let mut records: Vec<(ParkedRecord, u64)> =
        state.query(PARTITION, "").await?.into_iter().filter_map(from_item).collect();
    records.sort_by(|a, b| a.0.parked_at_ms.cmp(&b.0.parked_at_ms).then_with(|| a.0.id.cmp(&b.0.id)));
    Ok(records)
}

/// The record whose id is `id` or starts with it (ids are long; lists show their start).
/// An ambiguous prefix is an error naming how many matched.
pub async fn find(state: &dyn StateStore, id: &str) -> Result<Option<(ParkedRecord, u64)>> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Error::BadInput("an empty failure id".into()));
    }
    let mut matches: Vec<(ParkedRecord, u64)> =
        state.query(PARTITION, id).await?.into_iter().filter_map(from_item).collect();
    if let Some(exact) = matches.iter().position(|(r, _)| r.id == id) {
        return Ok(Some(matches.swap_remove(exact)));
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        n => Err(Error::BadInput(format!("{n} parked records start with {id:?}; give more of the id"))),
    }
}

/// Removes a record, but only the version that was read: a record parked again meanwhile
/// (its replay failed again) stays. Returns whether it went.
pub async fn remove(state: &dyn StateStore, id: &str, version: u64) -> Result<bool> {
    state.delete(&Key::new(PARTITION, id.to_string()), Condition::VersionIs(version)).await
}
