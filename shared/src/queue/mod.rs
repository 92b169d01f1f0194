//! The queue seam: SQS on AWS, an in-process queue on one machine.

mod job;
mod local;
mod sqs;

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

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends each job to its queue, in batches of up to ten. Entries that fail are retried;
    /// if any still fail, the error names them and the caller must treat the whole send as
    /// failed (the ingress answers 5xx so the sender retries; consumers are idempotent).
    async fn send(&self, jobs: &[Job]) -> Result<()>;

    /// Up to `max` jobs from `queue`, waiting up to `wait` for the first. Received jobs stay
    /// hidden until acked, released, or their visibility timeout passes.
    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>>;

    /// The job is done: remove it.
    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()>;

    /// The job failed: make it visible again now, for the next receive.
    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()>;
}
