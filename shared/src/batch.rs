//! Runs one SQS batch through a handler and reports partial failures. The business code sees
//! jobs, never the batch mechanics. On a FIFO queue, a failure also fails the later messages of
//! its group in the batch (SQS redelivers them in order); messages of other groups go on.
//!
//! Jobs reach the handler in waves: wave k holds the k-th message of every group still
//! healthy, so a handler may share Brightpearl requests across the jobs of a wave
//! (multi-messages, ID sets) without breaking per-group order.

use crate::queue::Job;
use async_trait::async_trait;
use std::collections::HashMap;

/// One message from the batch, as the Lambda event gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    pub message_id: String,
    pub body: String,
    /// FIFO message group; None on a standard queue.
    pub group_id: Option<String>,
    pub receive_count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done, or already done before: delete the message.
    Done,
    /// Cannot succeed as it is (bad payload, unknown SKU...): recorded with its reason and
    /// deleted; `pearlsync replay` brings it back after a fix.
    Parked(String),
    /// May succeed later (throttle, 5xx, timeout): reported as a batch item failure.
    Retry(String),
}

#[async_trait]
pub trait WaveHandler: Send + Sync {
    /// Handles jobs from different groups; returns one outcome per input, by message id.
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome>;

    /// A message whose body is not a job. Default: nothing to record beyond the outcome.
    async fn undecodable(&self, _message: &BatchMessage, _reason: &str) {}
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchReport {
    /// Message ids to return as `batchItemFailures`.
    pub failures: Vec<String>,
    pub done: usize,
    pub parked: Vec<(String, String)>,
    pub retried: Vec<(String, String)>,
}

pub async fn process_batch(messages: Vec<BatchMessage>, handler: &dyn WaveHandler) -> BatchReport {
    let mut report = BatchReport::default();
    // Groups in first-seen order; each keeps its messages in batch order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<BatchMessage>> = HashMap::new();
    for m in messages {
        let group = m.group_id.clone().unwrap_or_else(|| m.message_id.clone());
        if !groups.contains_key(&group) {
            order.push(group.clone());
        }
        groups.entry(group).or_default().push(m);
    }
    let mut cursor: HashMap<String, usize> = HashMap::new();
    let mut failed_groups: Vec<String> = Vec::new();
    loop {
        let mut wave: Vec<(String, Job)> = Vec::new();
        let mut wave_groups: HashMap<String, String> = HashMap::new();
        for group in &order {
            if failed_groups.contains(group) {
                continue;
            }
            let index = cursor.entry(group.clone()).or_insert(0);
            let Some(message) = groups.get(group).and_then(|g| g.get(*index)) else { continue };
            *index += 1;
            match Job::decode(&message.body) {
                Ok(job) => {
                    wave_groups.insert(message.message_id.clone(), group.clone());
                    wave.push((message.message_id.clone(), job));
                }
                Err(e) => {
                    let reason = e.to_string();
                    handler.undecodable(message, &reason).await;
                    report.parked.push((message.message_id.clone(), reason));
                }
            }
        }
        if wave.is_empty() {
            // Either every group is finished, or only undecodable messages were left this wave.
            let remaining = order.iter().any(|g| {
                !failed_groups.contains(g)
                    && cursor.get(g).copied().unwrap_or(0) < groups.get(g).map_or(0, Vec::len)
            });
            if remaining {
                continue;
            }
            break;
        }
        let ids: Vec<String> = wave.iter().map(|(id, _)| id.clone()).collect();
        let mut outcomes = handler.handle_wave(wave).await;
        for id in ids {
            // A handler that forgets a message must not lose it: retry.
            let outcome =
                outcomes.remove(&id).unwrap_or_else(|| Outcome::Retry("no outcome reported".into()));
            match outcome {
                Outcome::Done => report.done += 1,
                Outcome::Parked(reason) => report.parked.push((id, reason)),
                Outcome::Retry(reason) => {
                    report.failures.push(id.clone());
                    report.retried.push((id.clone(), reason));
                    if let Some(group) = wave_groups.get(&id) {
                        failed_groups.push(group.clone());
                    }
                }
            }
        }
    }
    // Later messages of a failed group were never tried: they fail with it, in order.
    for group in &failed_groups {
        let start = cursor.get(group).copied().unwrap_or(0);
        if let Some(messages) = groups.get(group) {
            for m in messages.iter().skip(start) {
                report.failures.push(m.message_id.clone());
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Script {
        fail: Vec<u64>,
        seen: Mutex<Vec<Vec<u64>>>,
    }

    #[async_trait]
    impl WaveHandler for Script {
        async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
            let mut wave = Vec::new();
            let mut out = HashMap::new();
            for (id, job) in jobs {
                let Job::StockChanged { product_ids } = job else { panic!("test jobs are stock jobs") };
                let n = product_ids[0];
                wave.push(n);
                let outcome =
                    if self.fail.contains(&n) { Outcome::Retry("boom".into()) } else { Outcome::Done };
                out.insert(id, outcome);
            }
            self.seen.lock().unwrap().push(wave);
            out
        }
    }

    fn message(id: u64, group: &str) -> BatchMessage {
        BatchMessage {
            message_id: format!("m{id}"),
            body: Job::StockChanged { product_ids: vec![id] }.encode(),
            group_id: Some(group.into()),
            receive_count: 1,
        }
    }

    #[tokio::test]
    async fn a_failure_fails_the_rest_of_its_group_and_only_that_group() {
        let handler = Script { fail: vec![2], seen: Mutex::new(Vec::new()) };
        let batch = vec![message(1, "a"), message(2, "b"), message(3, "a"), message(4, "b"), message(5, "b")];
        let report = process_batch(batch, &handler).await;
        assert_eq!(report.failures, ["m2", "m4", "m5"]);
        assert_eq!(report.done, 2);
        // Waves keep group order: 1 and 2 first, then 3; 4 and 5 never ran.
        assert_eq!(*handler.seen.lock().unwrap(), vec![vec![1, 2], vec![3]]);
    }

    #[tokio::test]
    async fn an_undecodable_message_is_parked_and_the_rest_run() {
        let handler = Script { fail: vec![], seen: Mutex::new(Vec::new()) };
        let mut bad = message(9, "a");
        bad.body = "{oops".into();
        let report = process_batch(vec![bad, message(1, "a"), message(2, "b")], &handler).await;
        assert!(report.failures.is_empty());
        assert_eq!(report.parked.len(), 1);
        assert_eq!(report.done, 2);
    }

    #[tokio::test]
    async fn standard_queue_messages_run_in_one_wave() {
        let handler = Script { fail: vec![1], seen: Mutex::new(Vec::new()) };
        let batch: Vec<BatchMessage> =
            (1..=3).map(|i| BatchMessage { group_id: None, ..message(i, "") }).collect();
        let report = process_batch(batch, &handler).await;
        assert_eq!(report.failures, ["m1"]);
        assert_eq!(handler.seen.lock().unwrap().len(), 1);
    }
}
