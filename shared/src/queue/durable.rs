//! The one-box queue of `pearlsync serve`, kept in the embedded store's redb file so that an
//! accepted job survives kill -9 and a restart. It behaves like SQS where it matters: a
//! receive hides a message for the visibility timeout; ack deletes it; a message not acked
//! comes back after the timeout with its receive count raised; after `max_receives` it is
//! parked (`retries_exhausted`) instead of going round for ever. On the FIFO orders queue one
//! message per group is in flight at a time, in send order. A send returns only after its
//! write transaction committed (redb's default durability syncs the file), so an ingress
//! that answers after `send` acknowledges only durable work.
//!
//! No content deduplication: consumers are idempotent, and a dedup window here would only be
//! one more place where a replay could be swallowed.

use super::{JobQueue, QueueName, QueueStats, ReceivedJob};
use crate::error::{Error, Result};
use crate::failures::{self, Failure, FailureCode};
use crate::queue::Job;
use crate::state::{EmbeddedStore, now_epoch_millis};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("queue_messages");
const SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("queue_sequence");
const SEPARATOR: char = '\u{0}';
/// `serve`'s settings: a handler that hangs this long gives its message back; a job that fails
/// this many receives is parked. Released jobs come back after a backoff (1 s, 2 s, 4 s...
/// up to `RELEASE_BACKOFF_MAX`), so a short outage does not burn every receive at once.
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_RECEIVES: u32 = 10;
const RELEASE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often a waiting receive looks again for messages whose visibility timeout passed.
const RECHECK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    seq: u64,
    body: String,
    group: String,
    receive_count: u32,
    /// Epoch ms before which the message is hidden (in flight); 0 when visible.
    visible_at_ms: i64,
    sent_at_ms: i64,
    /// Received and neither acked nor released (a released message waits out its backoff
    /// with this false).
    #[serde(default)]
    in_flight: bool,
    /// Set when the receive limit passed; the message is parked and removed right after.
    #[serde(default)]
    dead: bool,
}

fn queue_err(e: impl std::fmt::Display) -> Error {
    Error::Queue(format!("durable queue: {e}"))
}

fn key(queue: QueueName, seq: u64) -> String {
    format!("{}{SEPARATOR}{seq:020}", queue.as_str())
}

fn prefix(queue: QueueName) -> String {
    format!("{}{SEPARATOR}", queue.as_str())
}

fn receipt(seq: u64, receive_count: u32) -> String {
    format!("{seq}:{receive_count}")
}

fn parse_receipt(receipt: &str) -> Result<(u64, u32)> {
    let (seq, count) =
        receipt.split_once(':').ok_or_else(|| queue_err(format!("bad receipt {receipt:?}")))?;
    Ok((seq.parse().map_err(queue_err)?, count.parse().map_err(queue_err)?))
}

fn decode(bytes: &[u8]) -> Result<Stored> {
    serde_json::from_slice(bytes).map_err(queue_err)
}

fn encode(stored: &Stored) -> Result<Vec<u8>> {
    serde_json::to_vec(stored).map_err(queue_err)
}

#[derive(Clone)]
pub struct DurableQueue {
    db: Arc<Database>,
    /// Where dead letters are parked (the same file).
    state: EmbeddedStore,
    arrived: Arc<Notify>,
    visibility: Duration,
    max_receives: u32,
}

/// What one receive transaction took, and what it found past the receive limit.
struct Taken {
    jobs: Vec<ReceivedJob>,
    dead: Vec<(String, Stored)>,
}

impl DurableQueue {
    /// The queue in `store`'s file. Messages a previous process had in flight become visible
    /// at once: redb locks the file to one process, so their receipts died with it. Released
    /// messages keep their backoff.
    pub fn open(store: &EmbeddedStore, visibility: Duration, max_receives: u32) -> Result<Self> {
        let db = store.database();
        let txn = db.begin_write().map_err(queue_err)?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(queue_err)?;
            txn.open_table(SEQUENCE).map_err(queue_err)?;
            let mut orphans = Vec::new();
            for entry in table.iter().map_err(queue_err)? {
                let (k, v) = entry.map_err(queue_err)?;
                let mut stored = decode(v.value())?;
                if stored.in_flight {
                    stored.in_flight = false;
                    stored.visible_at_ms = 0;
                    orphans.push((k.value().to_string(), stored));
                }
            }
            for (k, stored) in orphans {
                table.insert(k.as_str(), encode(&stored)?.as_slice()).map_err(queue_err)?;
            }
        }
        txn.commit().map_err(queue_err)?;
        Ok(DurableQueue {
            db,
            state: store.clone(),
            arrived: Arc::new(Notify::new()),
            visibility,
            max_receives: max_receives.max(1),
        })
    }

    pub fn open_default(store: &EmbeddedStore) -> Result<Self> {
        Self::open(store, DEFAULT_VISIBILITY, DEFAULT_MAX_RECEIVES)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(queue_err)?
    }

    fn take(
        db: &Database,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        max_receives: u32,
    ) -> Result<Taken> {
        let now = now_epoch_millis();
        let start = prefix(queue);
        let mut taken = Taken { jobs: Vec::new(), dead: Vec::new() };
        // A read first: most polls find nothing, and a read does not queue behind writers.
        {
            let txn = db.begin_read().map_err(queue_err)?;
            let table = txn.open_table(MESSAGES).map_err(queue_err)?;
            let mut any = false;
            for entry in table.range(start.as_str()..).map_err(queue_err)? {
                let (k, v) = entry.map_err(queue_err)?;
                if !k.value().starts_with(start.as_str()) {
                    break;
                }
                let stored = decode(v.value())?;
                if stored.dead || stored.visible_at_ms <= now {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(taken);
            }
        }
        let txn = db.begin_write().map_err(queue_err)?;
        let changed = {
            let mut table = txn.open_table(MESSAGES).map_err(queue_err)?;
            let mut busy_groups: Vec<String> = Vec::new();
            let mut updates: Vec<(String, Stored)> = Vec::new();
            for entry in table.range(start.as_str()..).map_err(queue_err)? {
                let (k, v) = entry.map_err(queue_err)?;
                let k = k.value().to_string();
                if !k.starts_with(start.as_str()) {
                    break;
                }
                let mut stored = decode(v.value())?;
                if stored.dead {
                    taken.dead.push((k, stored));
                    continue;
                }
                let fifo_busy = queue.is_fifo() && busy_groups.contains(&stored.group);
                if stored.visible_at_ms > now {
                    if queue.is_fifo() && !fifo_busy {
                        busy_groups.push(stored.group.clone());
                    }
                    continue;
                }
                if fifo_busy || taken.jobs.len() >= max {
                    continue;
                }
                stored.receive_count += 1;
                if stored.receive_count > max_receives {
                    // Like an SQS redrive: the group is free again once its head is gone.
                    stored.dead = true;
                    updates.push((k.clone(), stored.clone()));
                    taken.dead.push((k, stored));
                    continue;
                }
                stored.visible_at_ms = now + visibility.as_millis() as i64;
                stored.in_flight = true;
                if queue.is_fifo() {
                    busy_groups.push(stored.group.clone());
                }
                match Job::decode(&stored.body) {
                    Ok(job) => taken.jobs.push(ReceivedJob {
                        job,
                        receipt: receipt(stored.seq, stored.receive_count),
                        message_id: stored.seq.to_string(),
                        receive_count: stored.receive_count,
                    }),
                    Err(_) => {
                        stored.dead = true;
                        taken.dead.push((k.clone(), stored.clone()));
                    }
                }
                updates.push((k, stored));
            }
            for (k, stored) in &updates {
                table.insert(k.as_str(), encode(stored)?.as_slice()).map_err(queue_err)?;
            }
            !updates.is_empty()
        };
        if changed {
            txn.commit().map_err(queue_err)?;
        } else {
            txn.abort().map_err(queue_err)?;
        }
        Ok(taken)
    }

    /// Parks what went past the receive limit (or does not decode), then removes it. A crash
    /// in between leaves it marked dead, and the next receive parks it again (parking the same
    /// job updates one record).
    async fn bury(&self, queue: QueueName, dead: Vec<(String, Stored)>) -> Result<()> {
        for (k, stored) in dead {
            match Job::decode(&stored.body) {
                Ok(job) => {
                    let text = format!(
                        "received {} times on the {} queue without succeeding",
                        stored.receive_count.saturating_sub(1),
                        queue.as_str()
                    );
                    failures::park(&self.state, &job, Failure::new(FailureCode::RetriesExhausted, text))
                        .await?;
                }
                Err(e) => {
                    failures::park_undecodable(&self.state, queue, &stored.body, &e.to_string()).await?;
                }
            }
            self.blocking(move |db| {
                let txn = db.begin_write().map_err(queue_err)?;
                txn.open_table(MESSAGES).map_err(queue_err)?.remove(k.as_str()).map_err(queue_err)?;
                txn.commit().map_err(queue_err)
            })
            .await?;
        }
        Ok(())
    }

    /// Sends a raw body as it is, bypassing the job encoding: only tests use it, to put a
    /// message no consumer can decode on the queue.
    pub async fn send_raw(&self, queue: QueueName, body: &str, group: &str) -> Result<()> {
        let messages = vec![(queue, body.to_string(), group.to_string())];
        self.append(messages).await
    }

    async fn append(&self, messages: Vec<(QueueName, String, String)>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| {
            let now = now_epoch_millis();
            let txn = db.begin_write().map_err(queue_err)?;
            {
                let mut table = txn.open_table(MESSAGES).map_err(queue_err)?;
                let mut sequence = txn.open_table(SEQUENCE).map_err(queue_err)?;
                let mut next = sequence.get("next").map_err(queue_err)?.map_or(1, |v| v.value());
                for (queue, body, group) in messages {
                    let stored = Stored {
                        seq: next,
                        body,
                        group,
                        receive_count: 0,
                        visible_at_ms: 0,
                        sent_at_ms: now,
                        in_flight: false,
                        dead: false,
                    };
                    table
                        .insert(key(queue, next).as_str(), encode(&stored)?.as_slice())
                        .map_err(queue_err)?;
                    next += 1;
                }
                sequence.insert("next", next).map_err(queue_err)?;
            }
            txn.commit().map_err(queue_err)
        })
        .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Updates the message a receipt names, if that receipt is still the current one (a
    /// receipt from before a redelivery is stale and changes nothing, as on SQS FIFO).
    async fn settle(&self, queue: QueueName, receipt_text: &str, delete: bool) -> Result<()> {
        let (seq, count) = parse_receipt(receipt_text)?;
        let backoff = Duration::from_secs(1u64 << count.saturating_sub(1).min(16))
            .min(RELEASE_BACKOFF_MAX)
            .min(self.visibility);
        self.blocking(move |db| {
            let k = key(queue, seq);
            let txn = db.begin_write().map_err(queue_err)?;
            let changed = {
                let mut table = txn.open_table(MESSAGES).map_err(queue_err)?;
                let current = match table.get(k.as_str()).map_err(queue_err)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                match current {
                    Some(stored) if stored.receive_count == count && !stored.dead => {
                        if delete {
                            table.remove(k.as_str()).map_err(queue_err)?;
                        } else {
                            let visible_at_ms = now_epoch_millis() + backoff.as_millis() as i64;
                            let visible = Stored { visible_at_ms, in_flight: false, ..stored };
                            table.insert(k.as_str(), encode(&visible)?.as_slice()).map_err(queue_err)?;
                        }
                        true
                    }
                    _ => false,
                }
            };
            if changed { txn.commit().map_err(queue_err) } else { txn.abort().map_err(queue_err) }
        })
        .await?;
        self.arrived.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl JobQueue for DurableQueue {
    async fn send(&self, jobs: &[Job]) -> Result<()> {
        self.append(jobs.iter().map(|j| (j.queue(), j.encode(), j.group_id())).collect()).await
    }

    async fn send_replay(&self, jobs: &[Job]) -> Result<()> {
        // Nothing here deduplicates, so a replay is an ordinary send.
        self.send(jobs).await
    }

    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>> {
        let deadline = Instant::now() + wait;
        let (visibility, max_receives) = (self.visibility, self.max_receives);
        loop {
            let notified = self.arrived.notified();
            let taken =
                self.blocking(move |db| Self::take(db, queue, max.max(1), visibility, max_receives)).await?;
            if !taken.dead.is_empty() {
                self.bury(queue, taken.dead).await?;
            }
            if !taken.jobs.is_empty() {
                return Ok(taken.jobs);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout((deadline - now).min(RECHECK), notified).await;
        }
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.settle(queue, receipt, true).await
    }

    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.settle(queue, receipt, false).await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        self.blocking(move |db| {
            let now = now_epoch_millis();
            let start = prefix(queue);
            let txn = db.begin_read().map_err(queue_err)?;
            let table = txn.open_table(MESSAGES).map_err(queue_err)?;
            let mut stats = QueueStats::default();
            let mut oldest: Option<i64> = None;
            for entry in table.range(start.as_str()..).map_err(queue_err)? {
                let (k, v) = entry.map_err(queue_err)?;
                if !k.value().starts_with(start.as_str()) {
                    break;
                }
                let stored = decode(v.value())?;
                if stored.in_flight && stored.visible_at_ms > now {
                    stats.in_flight += 1;
                } else {
                    stats.visible += 1;
                }
                oldest = Some(oldest.map_or(stored.sent_at_ms, |o: i64| o.min(stored.sent_at_ms)));
            }
            stats.oldest_age_seconds = oldest.map(|o| (now - o).max(0) / 1000);
            Ok(stats)
        })
        .await
    }
}
