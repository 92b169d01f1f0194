//! The queue worker of one-box runs (`pearlsync serve`, the demo): it takes batches from the
//! three queues, hands them to the same handlers the Lambdas use, acks what is done or parked
//! and releases what must be retried, exactly as SQS's partial batch response would.
//!
//! The orders queue has [`ORDER_CONSUMERS`] consumers, like the order writer's
//! `OrdersMaxConcurrency` on AWS: a batch stuck on a slow group does not hold back the next
//! one. Both queues (in-process and durable) hand out one message per FIFO group at a time,
//! so concurrent batches never share a group and per-group order holds.

use crate::app::App;
use crate::batch::{BatchMessage, BatchReport};
use crate::error::Result;
use crate::inventory::InventoryPoll;
use crate::orders::OrderWriter;
use crate::queue::{JobQueue, QueueName, ReceivedJob};
use crate::reorder::ReorderChecker;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The `BatchMessage` Lambda would build for this delivery.
pub fn batch_message(queue: QueueName, received: &ReceivedJob) -> BatchMessage {
    BatchMessage {
        message_id: received.message_id.clone(),
        body: received.job.encode(),
        group_id: queue.is_fifo().then(|| received.job.group_id()),
        receive_count: received.receive_count,
    }
}

/// Batches of the orders queue handled at once (the template's `OrdersMaxConcurrency` default).
pub const ORDER_CONSUMERS: usize = 2;

pub struct QueueWorker {
    pub queue: Arc<dyn JobQueue>,
    pub orders: OrderWriter,
    pub inventory: InventoryPoll,
    pub reorder: ReorderChecker,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DrainReport {
    pub batches: usize,
    pub messages: usize,
    pub done: usize,
    pub parked: usize,
    pub retried: usize,
}

impl QueueWorker {
    pub fn new(app: &App) -> Self {
        QueueWorker {
            queue: Arc::clone(&app.queue),
            orders: app.order_writer(),
            inventory: app.inventory_poll(),
            reorder: app.reorder_checker(),
        }
    }

    /// How many batches of `queue` may be in hand at once.
    pub fn consumers(&self, queue: QueueName) -> usize {
        if queue == QueueName::Orders { ORDER_CONSUMERS } else { 1 }
    }

    /// One batch of up to ten from `queue`, waiting up to `wait` for it. Returns the batch's
    /// report (empty when nothing came).
    pub async fn poll_once(&self, queue: QueueName, wait: Duration) -> Result<BatchReport> {
        let received = self.queue.receive(queue, 10, wait).await?;
        if received.is_empty() {
            return Ok(BatchReport::default());
        }
        let messages: Vec<BatchMessage> = received.iter().map(|r| batch_message(queue, r)).collect();
        let report = match queue {
            QueueName::Orders => self.orders.handle_batch(messages).await,
            QueueName::Stock => self.inventory.handle_batch(messages).await,
            QueueName::Purchasing => self.reorder.handle_batch(messages).await,
        };
        let failed: HashSet<&str> = report.failures.iter().map(String::as_str).collect();
        for r in &received {
            if failed.contains(r.message_id.as_str()) {
                self.queue.release(queue, &r.receipt).await?;
            } else {
                self.queue.ack(queue, &r.receipt).await?;
            }
        }
        Ok(report)
    }

    /// Works every queue until all are empty (retries included) or `max_batches` ran.
    pub async fn drain(&self, max_batches: usize) -> Result<DrainReport> {
        let mut total = DrainReport::default();
        while total.batches < max_batches {
            let mut idle = true;
            for queue in QueueName::ALL {
                let polls = (0..self.consumers(queue)).map(|_| self.poll_once(queue, Duration::ZERO));
                let mut any_failed = false;
                for report in futures_util::future::join_all(polls).await {
                    let report = report?;
                    let handled = report.done + report.parked.len() + report.failures.len();
                    if handled == 0 {
                        continue;
                    }
                    idle = false;
                    total.batches += 1;
                    total.messages += handled;
                    total.done += report.done;
                    total.parked += report.parked.len();
                    total.retried += report.failures.len();
                    any_failed |= !report.failures.is_empty();
                }
                if any_failed {
                    // Give a throttled or failing dependency a moment before the retry.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if idle {
                break;
            }
        }
        Ok(total)
    }
}
