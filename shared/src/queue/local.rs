//! In-process queue for the demo and tests (not durable: `serve` uses `DurableQueue`). It keeps SQS's behaviour where it
//! matters: visibility while in flight, a receive count, dead letters after too many receives,
//! and on the FIFO orders queue one message in flight per group, in order.

use super::{JobQueue, QueueName, QueueStats, ReceivedJob};
use crate::error::Result;
use crate::queue::Job;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
struct Message {
    id: u64,
    job: Job,
    group: String,
    receive_count: u32,
}

#[derive(Default)]
struct Lane {
    ready: VecDeque<Message>,
    in_flight: HashMap<String, (Message, Instant)>,
    dead: Vec<Message>,
}

pub struct InProcessQueue {
    lanes: Mutex<HashMap<QueueName, Lane>>,
    arrived: Notify,
    visibility: Duration,
    max_receives: u32,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for InProcessQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(60), 5)
    }
}

impl InProcessQueue {
    pub fn new(visibility: Duration, max_receives: u32) -> Self {
        InProcessQueue {
            lanes: Mutex::new(HashMap::new()),
            arrived: Notify::new(),
            visibility,
            max_receives,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, Lane>> {
        // A panic while holding the lock cannot leave a lane half-updated in a way that matters
        // more than losing the whole queue, so recover the data.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Jobs waiting or in flight on a queue.
    pub fn depth(&self, queue: QueueName) -> usize {
        let lanes = self.lanes();
        lanes.get(&queue).map_or(0, |l| l.ready.len() + l.in_flight.len())
    }

    /// Jobs that exceeded the receive limit (the local dead-letter queue).
    pub fn dead_letters(&self, queue: QueueName) -> Vec<Job> {
        let lanes = self.lanes();
        lanes.get(&queue).map_or_else(Vec::new, |l| l.dead.iter().map(|m| m.job.clone()).collect())
    }

    /// Moves dead letters that match `filter` back onto their queue; returns how many.
    pub fn redrive(&self, queue: QueueName, filter: impl Fn(&Job) -> bool) -> usize {
        let mut lanes = self.lanes();
        let lane = lanes.entry(queue).or_default();
        let (back, keep): (Vec<Message>, Vec<Message>) = lane.dead.drain(..).partition(|m| filter(&m.job));
        lane.dead = keep;
        let moved = back.len();
        for mut m in back {
            m.receive_count = 0;
            lane.ready.push_back(m);
        }
        drop(lanes);
        self.arrived.notify_waiters();
        moved
    }

    fn take_ready(&self, queue: QueueName, max: usize) -> Vec<ReceivedJob> {
        let mut lanes = self.lanes();
        let lane = lanes.entry(queue).or_default();
        let now = Instant::now();
        // Visibility timeouts that passed put messages back at the front, in id order.
        let mut expired: Vec<String> =
            lane.in_flight.iter().filter(|(_, (_, until))| *until <= now).map(|(r, _)| r.clone()).collect();
        expired.sort();
        for receipt in expired.into_iter().rev() {
            if let Some((m, _)) = lane.in_flight.remove(&receipt) {
                lane.ready.push_front(m);
            }
        }
        let mut busy_groups: Vec<String> = if queue.is_fifo() {
            lane.in_flight.values().map(|(m, _)| m.group.clone()).collect()
        } else {
            Vec::new()
        };
        let mut taken = Vec::new();
        let mut index = 0;
        while taken.len() < max && index < lane.ready.len() {
            let group = lane.ready[index].group.clone();
            if queue.is_fifo() && busy_groups.contains(&group) {
                index += 1;
                continue;
            }
            let Some(mut m) = lane.ready.remove(index) else { break };
            m.receive_count += 1;
            if m.receive_count > self.max_receives {
                lane.dead.push(m);
                continue;
            }
            if queue.is_fifo() {
                // Later messages of this group wait until this one is acked.
                busy_groups.push(group);
            }
            let receipt = format!("{:020}-{}", m.id, m.receive_count);
            taken.push(ReceivedJob {
                job: m.job.clone(),
                receipt: receipt.clone(),
                message_id: m.id.to_string(),
                receive_count: m.receive_count,
            });
            lane.in_flight.insert(receipt, (m, now + self.visibility));
        }
        taken
    }
}

#[async_trait]
impl JobQueue for InProcessQueue {
    async fn send(&self, jobs: &[Job]) -> Result<()> {
        {
            let mut lanes = self.lanes();
            for job in jobs {
                let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                lanes.entry(job.queue()).or_default().ready.push_back(Message {
                    id,
                    job: job.clone(),
                    group: job.group_id(),
                    receive_count: 0,
                });
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn send_replay(&self, jobs: &[Job]) -> Result<()> {
        // No deduplication here, so a replay is an ordinary send.
        self.send(jobs).await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        let lanes = self.lanes();
        Ok(lanes.get(&queue).map_or_else(QueueStats::default, |l| QueueStats {
            visible: l.ready.len() as u64,
            in_flight: l.in_flight.len() as u64,
            oldest_age_seconds: None,
        }))
    }

    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let taken = self.take_ready(queue, max);
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wake on a send, or re-check soon for visibility timeouts.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(200)), notified).await;
        }
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.lanes().entry(queue).or_default().in_flight.remove(receipt);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()> {
        {
            let mut lanes = self.lanes();
            let lane = lanes.entry(queue).or_default();
            if let Some((m, _)) = lane.in_flight.remove(receipt) {
                // Back to the front, so the group's order holds.
                let position = lane.ready.iter().position(|r| r.id > m.id).unwrap_or(lane.ready.len());
                lane.ready.insert(position, m);
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ChannelKind, OrderEvent};

    fn order(id: &str, event: OrderEvent) -> Job {
        Job::ChannelOrder {
            channel: ChannelKind::Shopify,
            store: "main".into(),
            order_id: id.into(),
            event,
            payload: None,
        }
    }

    #[tokio::test]
    async fn fifo_group_holds_later_messages_until_the_first_is_acked() {
        let q = InProcessQueue::default();
        q.send(&[
            order("1", OrderEvent::Created),
            order("1", OrderEvent::Updated),
            order("2", OrderEvent::Created),
        ])
        .await
        .unwrap();
        let first = q.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 2, "one per group");
        assert_eq!(first[0].job, order("1", OrderEvent::Created));
        assert_eq!(first[1].job, order("2", OrderEvent::Created));
        assert!(q.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap().is_empty());
        q.ack(QueueName::Orders, &first[0].receipt).await.unwrap();
        let next = q.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].job, order("1", OrderEvent::Updated));
    }

    #[tokio::test]
    async fn released_jobs_come_back_and_go_dead_after_the_receive_limit() {
        let q = InProcessQueue::new(Duration::from_secs(60), 2);
        q.send(&[Job::StockChanged { product_ids: vec![7] }]).await.unwrap();
        for attempt in 1..=2 {
            let got = q.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, attempt);
            q.release(QueueName::Stock, &got[0].receipt).await.unwrap();
        }
        assert!(q.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.dead_letters(QueueName::Stock), vec![Job::StockChanged { product_ids: vec![7] }]);
        assert_eq!(q.redrive(QueueName::Stock, |_| true), 1);
        assert_eq!(q.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn visibility_timeout_redelivers() {
        let q = InProcessQueue::new(Duration::from_millis(50), 5);
        q.send(&[Job::GoodsIn { goods_in_note_ids: vec![3] }]).await.unwrap();
        let got = q.receive(QueueName::Purchasing, 1, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        let again = q.receive(QueueName::Purchasing, 1, Duration::from_millis(500)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
    }
}
