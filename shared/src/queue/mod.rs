//! The queue seam: SQS on AWS, an in-process queue on one machine.

mod durable;
mod job;
mod local;
mod sqs;

pub use durable::DurableQueue;
pub use job::{ChannelKind, JOB_VERSION, Job, OrderEvent, QueueName};
pub use local::InProcessQueue;
pub use sqs::{SqsQueue, SqsQueueUrls};

use crate::error::Result;
use async_trait::async_trait;
use std::time::Duration;

/// Largest batch SQS takes in one SendMessageBatch.
pub const SEND_BATCH_MAX: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedJob {
    pub job: Job,
    /// Opaque handle for `ack` and `release`.
    pub receipt: String,
    pub message_id: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// How much work waits on a queue (`pearlsync status`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    /// Age of the oldest message; None when empty or when the queue cannot tell (SQS keeps it
    /// as the CloudWatch metric `ApproximateAgeOfOldestMessage` only).
    pub oldest_age_seconds: Option<i64>,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends each job to its queue, in batches of up to ten. Entries that fail are retried;
    /// if any still fail, the error names them and the caller must treat the whole send as
    /// failed (the ingress answers 5xx so the sender retries; consumers are idempotent).
    async fn send(&self, jobs: &[Job]) -> Result<()>;

    /// Sends jobs again on purpose (a replay of parked work): each gets a fresh deduplication
    /// id, so a FIFO queue does not drop it as a repeat of its first delivery.
    async fn send_replay(&self, jobs: &[Job]) -> Result<()>;

    /// Up to `max` jobs from `queue`, waiting up to `wait` for the first. Received jobs stay
    /// hidden until acked, released, or their visibility timeout passes.
    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>>;

    /// The job is done: remove it.
    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()>;

    /// The job failed: make it visible again for a later receive (SQS and the in-process
    /// queue: at once; the durable queue: after a backoff growing with the receive count).
    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()>;

    async fn stats(&self, queue: QueueName) -> Result<QueueStats>;
}
