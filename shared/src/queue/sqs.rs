//! SQS queues. The orders queue is FIFO (group = channel order, dedup = content hash); stock
//! and purchasing are standard queues. Each has a DLQ through its redrive policy.

use super::{JobQueue, QueueName, QueueStats, ReceivedJob, SEND_BATCH_MAX};
use crate::aws::{LazyClient, SharedSdkConfig};
use crate::error::{Error, Result};
use crate::queue::Job;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Failed batch entries that SQS did not blame on us are retried this many rounds.
const SEND_ROUNDS: u32 = 3;

#[derive(Debug, Clone, Default)]
pub struct SqsQueueUrls {
    pub orders: String,
    pub stock: String,
    pub purchasing: String,
}

impl SqsQueueUrls {
    fn get(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Orders => &self.orders,
            QueueName::Stock => &self.stock,
            QueueName::Purchasing => &self.purchasing,
        }
    }
}

#[derive(Clone)]
pub struct SqsQueue {
    /// Built by the first call (issue 18: init builds no AWS client).
    client: LazyClient<Client>,
    urls: SqsQueueUrls,
    /// Where `receive` parks a message whose body is not a job (then deletes it); without
    /// it such a message is left for the DLQ.
    parking: Option<Arc<dyn crate::state::StateStore>>,
}

/// How a send names its messages for FIFO deduplication.
#[derive(Clone, Copy)]
enum DedupMode {
    /// The job's content hash: the same job sent twice within five minutes is one message.
    Content,
    /// The content hash mixed with a fresh nonce: a deliberate repeat (a replay) goes through.
    Fresh,
}

fn sdk_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    op: &str,
    e: SdkError<E, R>,
) -> Error {
    match e.as_service_error() {
        Some(s) => Error::Queue(format!(
            "{op}: {} {}",
            s.code().unwrap_or("unknown"),
            s.message().unwrap_or_default()
        )),
        None => Error::Queue(format!("{op}: {e:?}")),
    }
}

impl SqsQueue {
    pub fn new(client: Client, urls: SqsQueueUrls) -> Self {
        SqsQueue { client: LazyClient::ready(client), urls, parking: None }
    }

    /// Queues whose client is built from `sdk` by the first call that needs it.
    pub fn on_first_use(sdk: SharedSdkConfig, urls: SqsQueueUrls) -> Self {
        SqsQueue { client: LazyClient::on_first_use(sdk), urls, parking: None }
    }

    /// Parks undecodable messages in `state` instead of leaving them for the DLQ.
    pub fn with_parking(mut self, state: Arc<dyn crate::state::StateStore>) -> Self {
        self.parking = Some(state);
        self
    }

    pub async fn client(&self) -> &Client {
        self.client.get().await
    }

    fn url(&self, queue: QueueName) -> Result<&str> {
        let url = self.urls.get(queue);
        if url.is_empty() {
            return Err(Error::config(
                format!("{}_QUEUE_URL", queue.as_str().to_uppercase()),
                "no queue URL configured",
            ));
        }
        Ok(url)
    }

    fn entry(id: usize, job: &Job, dedup_id: Option<&str>) -> Result<SendMessageBatchRequestEntry> {
        let mut entry = SendMessageBatchRequestEntry::builder().id(id.to_string()).message_body(job.encode());
        if let Some(dedup_id) = dedup_id {
            entry = entry.message_group_id(job.group_id()).message_deduplication_id(dedup_id);
        }
        entry.build().map_err(|e| Error::Queue(e.to_string()))
    }

    async fn send_batch(&self, queue: QueueName, jobs: &[&Job], mode: DedupMode) -> Result<()> {
        let url = self.url(queue)?;
        let fifo = url.ends_with(".fifo");
        // Fixed before the first round, so a retried entry keeps its id and SQS can still
        // drop a retry of an entry that did get through.
        let dedup_ids: Vec<Option<String>> = jobs
            .iter()
            .map(|job| {
                fifo.then(|| match mode {
                    DedupMode::Content => job.dedup_id(),
                    DedupMode::Fresh => replay_dedup_id(job, &uuid::Uuid::new_v4().to_string()),
                })
            })
            .collect();
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut last_failure = String::new();
        for round in 0..SEND_ROUNDS {
            let entries = pending
                .iter()
                .map(|&i| Self::entry(i, jobs[i], dedup_ids[i].as_deref()))
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client()
                .await
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_err("SendMessageBatch", e))?;
            let mut retry = Vec::new();
            for failed in out.failed() {
                last_failure = format!(
                    "entry {}: {} {}",
                    failed.id(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                );
                if failed.sender_fault() {
                    return Err(Error::Queue(format!("SendMessageBatch rejected {last_failure}")));
                }
                if let Ok(i) = failed.id().parse::<usize>() {
                    retry.push(i);
                }
            }
            if retry.is_empty() {
                return Ok(());
            }
            pending = retry;
            tokio::time::sleep(Duration::from_millis(100 << round)).await;
        }
        Err(Error::Queue(format!(
            "SendMessageBatch: {} entries still failing; last: {last_failure}",
            pending.len()
        )))
    }

    async fn send_all(&self, jobs: &[Job], mode: DedupMode) -> Result<()> {
        let mut by_queue: HashMap<QueueName, Vec<&Job>> = HashMap::new();
        for job in jobs {
            by_queue.entry(job.queue()).or_default().push(job);
        }
        for (queue, jobs) in by_queue {
            for chunk in jobs.chunks(SEND_BATCH_MAX) {
                self.send_batch(queue, chunk, mode).await?;
            }
        }
        Ok(())
    }

    /// Parks an undecodable message and deletes it; left in place (for the DLQ) when there
    /// is nowhere to park or the parking failed.
    async fn park_undecodable(&self, queue: QueueName, body: &str, receipt: &str, reason: &str) {
        let Some(state) = &self.parking else {
            tracing::warn!(queue = queue.as_str(), reason, "undecodable message left for the DLQ");
            return;
        };
        match crate::failures::park_undecodable(state.as_ref(), queue, body, reason).await {
            Ok(record) => {
                if let Err(e) = self.ack(queue, receipt).await {
                    tracing::warn!(queue = queue.as_str(), error = %e, id = %record.id, "parked undecodable message not deleted; it will be parked again");
                }
            }
            Err(e) => {
                tracing::error!(queue = queue.as_str(), error = %e, "undecodable message not parked; left for the DLQ")
            }
        }
    }
}

/// The FIFO deduplication id of a replay: the content hash and a nonce, hashed again so it
/// stays within SQS's 128 characters.
pub fn replay_dedup_id(job: &Job, nonce: &str) -> String {
    let digest = Sha256::digest(format!("{}:replay:{nonce}", job.dedup_id()).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, jobs: &[Job]) -> Result<()> {
        self.send_all(jobs, DedupMode::Content).await
    }

    async fn send_replay(&self, jobs: &[Job]) -> Result<()> {
        self.send_all(jobs, DedupMode::Fresh).await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        let out = self
            .client()
            .await
            .get_queue_attributes()
            .queue_url(self.url(queue)?)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_err("GetQueueAttributes", e))?;
        let read = |name: QueueAttributeName| {
            out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(QueueStats {
            visible: read(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            oldest_age_seconds: None,
        })
    }

    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>> {
        let out = self
            .client()
            .await
            .receive_message()
            .queue_url(self.url(queue)?)
            .max_number_of_messages(max.clamp(1, SEND_BATCH_MAX) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_err("ReceiveMessage", e))?;
        let mut received = Vec::new();
        for message in out.messages() {
            let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else { continue };
            match Job::decode(body) {
                Ok(job) => received.push(ReceivedJob {
                    job,
                    receipt: receipt.to_string(),
                    message_id: message.message_id().unwrap_or_default().to_string(),
                    receive_count: message
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                }),
                Err(e) => self.park_undecodable(queue, body, receipt, &e.to_string()).await,
            }
        }
        Ok(received)
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.client()
            .await
            .delete_message()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_err("DeleteMessage", e))?;
        Ok(())
    }

    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.client()
            .await
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| sdk_err("ChangeMessageVisibility", e))?;
        Ok(())
    }
}
