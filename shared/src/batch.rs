//! Runs one SQS batch through a handler and reports partial failures. The business code sees
//! jobs, never the batch mechanics. On a FIFO queue, a failure also fails the later messages of
//! its group in the batch (SQS redelivers them in order); messages of other groups go on.
//!
//! Jobs reach the handler in waves: wave k holds the k-th message of every group still
//! healthy, so a handler may share Brightpearl requests across the jobs of a wave
//! (multi-messages, ID sets) without breaking per-group order.
//!
//! A handler may ask ([`WaveHandler::batch_options`]) for its groups to be split into a few
//! **lanes** that run concurrently, each still in waves (so a wave keeps sharing requests
//! within its lane), and for a group whose message failed with `Retry` to be **retried in this
//! invocation**, alone in a lane of its own after a short jittered pause, instead of waiting out
//! the queue's visibility timeout. Either way a slow or failing group holds back only the
//! groups of its own wave, never the rest of the batch. Per-group order holds: a group's next
//! message runs only after its previous one is done, and a retry repeats from the message that
//! failed (the handler's own checks make the repeat safe, as on a redelivery).

use crate::queue::Job;
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// How a handler wants its batches run. The default is one lane and no retry in the
/// invocation: every group in the same waves, a failure left to the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    /// Most lanes run at once (≥ 1). Groups are dealt to lanes in turn.
    pub lanes: usize,
    /// Times a failed group is tried again within the invocation.
    pub retries: u32,
    /// The first retry's pause (doubled for each further one), jittered to half–full.
    pub retry_pause: Duration,
    /// The invocation's deadline: no retry starts with less than `RETRY_MIN_TIME_LEFT` left.
    pub deadline: Option<Instant>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { lanes: 1, retries: 0, retry_pause: Duration::ZERO, deadline: None }
    }
}

/// A retry needs time for its own checks and writes, and the invocation time to report.
pub const RETRY_MIN_TIME_LEFT: Duration = Duration::from_secs(5);

impl BatchOptions {
    /// The order writer's setting (`[orders] lanes`, `retries_in_invocation`), by default 2 lanes (a batch of 10 groups as two waves of 5, so a
    /// multi-message still carries 5 orders: each further lane costs about 4 requests a batch)
    /// and 2 retries, 50–100 ms then 100–200 ms after the failure.
    ///
    /// Measured (issue-12 bench, 2026-12-02): the retries, each alone, are what cost requests
    /// (2.07 per order with 1 lane and 1 consumer against 1.42 without them), the lanes and
    /// the second consumer hardly any; but without them p99 is 43 s. Retrying failed groups
    /// together first shares the writes again yet makes as many requests (more checks) and
    /// p99 30 s; 1 retry gives 2.0 and p99 11.5 s.
    pub fn concurrent_groups(lanes: usize, retries: u32, deadline: Option<Instant>) -> Self {
        BatchOptions { lanes: lanes.max(1), retries, retry_pause: Duration::from_millis(100), deadline }
    }

    fn may_retry(&self, attempts: u32) -> bool {
        attempts < self.retries
            && self.deadline.is_none_or(|d| d.saturating_duration_since(Instant::now()) > RETRY_MIN_TIME_LEFT)
    }

    fn pause_before(&self, attempt: u32) -> Duration {
        let full = self.retry_pause.saturating_mul(1u32 << attempt.saturating_sub(1).min(8));
        let half = full / 2;
        half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
    }
}

#[async_trait]
pub trait WaveHandler: Send + Sync {
    /// Handles jobs from different groups; returns one outcome per input, by message id.
    /// With more than one lane it is called concurrently, with disjoint groups.
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome>;

    /// A message whose body is not a job. Default: nothing to record beyond the outcome.
    async fn undecodable(&self, _message: &BatchMessage, _reason: &str) {}

    /// How this handler's batches run (lanes, retries in the invocation).
    fn batch_options(&self) -> BatchOptions {
        BatchOptions::default()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchReport {
    /// Message ids to return as `batchItemFailures`.
    pub failures: Vec<String>,
    pub done: usize,
    pub parked: Vec<(String, String)>,
    pub retried: Vec<(String, String)>,
    /// Failed messages that were tried again within the invocation (whatever came of it).
    pub retried_in_batch: usize,
}

/// One FIFO group's messages in batch order, and how far it got.
struct Group {
    /// Index in first-seen order (the report lists failures in this order).
    rank: usize,
    messages: Vec<BatchMessage>,
    next: usize,
    /// Retries in this invocation so far.
    attempts: u32,
}

/// What one lane did: per-message results, and the groups that stopped at a `Retry`
/// (their `next` is the message that failed).
#[derive(Default)]
struct LaneOutput {
    done: usize,
    parked: Vec<(String, String)>,
    failed: Vec<(Group, String)>,
}

async fn run_lane(mut groups: Vec<Group>, pause: Duration, handler: &dyn WaveHandler) -> LaneOutput {
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let mut out = LaneOutput::default();
    loop {
        let mut wave: Vec<(String, Job)> = Vec::new();
        // Message id → its group's index in `groups`.
        let mut wave_groups: HashMap<String, usize> = HashMap::new();
        let mut any_left = false;
        for (index, group) in groups.iter_mut().enumerate() {
            let Some(message) = group.messages.get(group.next) else { continue };
            any_left = true;
            match Job::decode(&message.body) {
                Ok(job) => {
                    wave_groups.insert(message.message_id.clone(), index);
                    wave.push((message.message_id.clone(), job));
                }
                Err(e) => {
                    // Parked with its body; the group goes on with its next message.
                    let reason = e.to_string();
                    handler.undecodable(message, &reason).await;
                    out.parked.push((message.message_id.clone(), reason));
                    group.next += 1;
                }
            }
        }
        if !any_left {
            break;
        }
        if wave.is_empty() {
            // Only undecodable messages were left this wave.
            continue;
        }
        let ids: Vec<String> = wave.iter().map(|(id, _)| id.clone()).collect();
        let mut outcomes = handler.handle_wave(wave).await;
        let mut stopped: Vec<(usize, String)> = Vec::new();
        for id in ids {
            let Some(&index) = wave_groups.get(&id) else { continue };
            // A handler that forgets a message must not lose it: retry.
            let outcome =
                outcomes.remove(&id).unwrap_or_else(|| Outcome::Retry("no outcome reported".into()));
            match outcome {
                Outcome::Done => {
                    out.done += 1;
                    groups[index].next += 1;
                }
                Outcome::Parked(reason) => {
                    out.parked.push((id, reason));
                    groups[index].next += 1;
                }
                Outcome::Retry(reason) => stopped.push((index, reason)),
            }
        }
        // Failed groups leave the lane (highest index first, so the others keep theirs).
        stopped.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (index, reason) in stopped {
            out.failed.push((groups.remove(index), reason));
        }
    }
    out
}

pub async fn process_batch(messages: Vec<BatchMessage>, handler: &dyn WaveHandler) -> BatchReport {
    let options = handler.batch_options();
    let mut report = BatchReport::default();
    // Groups in first-seen order; each keeps its messages in batch order.
    let mut groups: Vec<Group> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for m in messages {
        let name = m.group_id.clone().unwrap_or_else(|| m.message_id.clone());
        let index = *by_name.entry(name).or_insert_with(|| {
            groups.push(Group { rank: groups.len(), messages: Vec::new(), next: 0, attempts: 0 });
            groups.len() - 1
        });
        groups[index].messages.push(m);
    }
    let lane_count = options.lanes.clamp(1, groups.len().max(1));
    let mut lanes: Vec<Vec<Group>> = (0..lane_count).map(|_| Vec::new()).collect();
    for (i, group) in groups.into_iter().enumerate() {
        lanes[i % lane_count].push(group);
    }
    let mut running = FuturesUnordered::new();
    for lane in lanes {
        running.push(run_lane(lane, Duration::ZERO, handler));
    }
    // Groups that failed for good, with their reason: (rank, failed and later message ids).
    let mut failed: Vec<(usize, Vec<String>, String)> = Vec::new();
    while let Some(out) = running.next().await {
        report.done += out.done;
        report.parked.extend(out.parked);
        for (mut group, reason) in out.failed {
            if options.may_retry(group.attempts) {
                group.attempts += 1;
                report.retried_in_batch += 1;
                tracing::info!(
                    attempt = group.attempts,
                    reason,
                    "retrying a failed group in this invocation"
                );
                let pause = options.pause_before(group.attempts);
                running.push(run_lane(vec![group], pause, handler));
                continue;
            }
            // Later messages of a failed group were never tried: they fail with it, in order.
            let ids = group.messages.iter().skip(group.next).map(|m| m.message_id.clone()).collect();
            failed.push((group.rank, ids, reason));
        }
    }
    failed.sort_by_key(|(rank, _, _)| *rank);
    for (_, ids, reason) in failed {
        if let Some(first) = ids.first() {
            report.retried.push((first.clone(), reason));
        }
        report.failures.extend(ids);
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

    /// Job n takes `slow[n]` ms; fails its first `flaky[n]` tries; records when each finished.
    struct Timed {
        slow: HashMap<u64, u64>,
        flaky: Mutex<HashMap<u64, u32>>,
        options: BatchOptions,
        started: Instant,
        finished: Mutex<Vec<(u64, Duration)>>,
        waves: Mutex<Vec<Vec<u64>>>,
    }

    impl Timed {
        fn new(options: BatchOptions) -> Self {
            Timed {
                slow: HashMap::new(),
                flaky: Mutex::new(HashMap::new()),
                options,
                started: Instant::now(),
                finished: Mutex::new(Vec::new()),
                waves: Mutex::new(Vec::new()),
            }
        }

        fn finished_at(&self, n: u64) -> Vec<Duration> {
            self.finished.lock().unwrap().iter().filter(|(m, _)| *m == n).map(|(_, t)| *t).collect()
        }
    }

    #[async_trait]
    impl WaveHandler for Timed {
        async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
            let numbers: Vec<(String, u64)> = jobs
                .into_iter()
                .map(|(id, job)| match job {
                    Job::StockChanged { product_ids } => (id, product_ids[0]),
                    _ => panic!("test jobs are stock jobs"),
                })
                .collect();
            self.waves.lock().unwrap().push(numbers.iter().map(|(_, n)| *n).collect());
            // A wave lasts as long as its slowest job (they share requests).
            let longest = numbers.iter().filter_map(|(_, n)| self.slow.get(n)).max().copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(longest)).await;
            let mut out = HashMap::new();
            for (id, n) in numbers {
                let fails_left = {
                    let mut flaky = self.flaky.lock().unwrap();
                    let left = flaky.entry(n).or_insert(0);
                    let now = *left;
                    *left = left.saturating_sub(1);
                    now
                };
                let outcome = if fails_left > 0 {
                    Outcome::Retry("connection dropped".into())
                } else {
                    self.finished.lock().unwrap().push((n, self.started.elapsed()));
                    Outcome::Done
                };
                out.insert(id, outcome);
            }
            out
        }

        fn batch_options(&self) -> BatchOptions {
            self.options
        }
    }

    fn lanes(lanes: usize, retries: u32) -> BatchOptions {
        BatchOptions { lanes, retries, retry_pause: Duration::from_millis(20), deadline: None }
    }

    #[tokio::test]
    async fn a_slow_group_holds_back_only_its_own_lane() {
        let mut handler = Timed::new(lanes(3, 0));
        // Group a's first message takes 400 ms; every other job is instant.
        handler.slow.insert(1, 400);
        let batch = vec![
            message(1, "a"),
            message(2, "b"),
            message(3, "c"),
            message(4, "a"),
            message(5, "b"),
            message(6, "c"),
        ];
        let report = process_batch(batch, &handler).await;
        assert_eq!(report.done, 6);
        assert!(report.failures.is_empty());
        // b and c (their own lanes) finish both their messages long before a's first is done.
        for n in [2, 3, 5, 6] {
            let at = handler.finished_at(n)[0];
            assert!(at < Duration::from_millis(200), "job {n} finished at {at:?}");
        }
        assert!(handler.finished_at(1)[0] >= Duration::from_millis(400));
        // Group order holds: a's second message runs after its first.
        assert!(handler.finished_at(4)[0] >= handler.finished_at(1)[0]);
    }

    #[tokio::test]
    async fn groups_in_one_lane_still_share_waves() {
        let handler = Timed::new(lanes(2, 0));
        let batch: Vec<BatchMessage> = (1..=6).map(|i| message(i, &format!("g{i}"))).collect();
        process_batch(batch, &handler).await;
        let mut waves = handler.waves.lock().unwrap().clone();
        waves.iter_mut().for_each(|w| w.sort());
        waves.sort();
        // Six groups in two lanes, dealt in turn: two waves of three.
        assert_eq!(waves, vec![vec![1, 3, 5], vec![2, 4, 6]]);
    }

    #[tokio::test]
    async fn a_failed_group_is_retried_in_the_invocation_in_order_and_alone() {
        let handler = Timed::new(lanes(1, 2));
        // Job 2 (group b) fails twice, then works; group b's second message (4) must wait.
        handler.flaky.lock().unwrap().insert(2, 2);
        let batch = vec![message(1, "a"), message(2, "b"), message(3, "a"), message(4, "b")];
        let report = process_batch(batch, &handler).await;
        assert_eq!(report.done, 4, "{report:?}");
        assert!(report.failures.is_empty());
        assert_eq!(report.retried_in_batch, 2);
        let waves = handler.waves.lock().unwrap().clone();
        // a runs on without b; b's retries are lanes of their own; 4 only after 2 is done.
        assert_eq!(waves, vec![vec![1, 2], vec![3], vec![2], vec![2], vec![4]]);
        assert!(handler.finished_at(4)[0] >= handler.finished_at(2)[0]);
    }

    #[tokio::test]
    async fn a_group_that_keeps_failing_fails_with_the_rest_of_its_messages_after_its_retries() {
        let handler = Timed::new(lanes(2, 2));
        handler.flaky.lock().unwrap().insert(2, 10);
        let batch = vec![message(1, "a"), message(2, "b"), message(3, "a"), message(4, "b")];
        let report = process_batch(batch, &handler).await;
        assert_eq!(report.failures, ["m2", "m4"]);
        assert_eq!(report.retried, vec![("m2".to_string(), "connection dropped".to_string())]);
        assert_eq!(report.retried_in_batch, 2);
        assert_eq!(report.done, 2);
        // Tried three times in all (the first try and two retries); 4 never ran.
        let tries_of_2 = handler.waves.lock().unwrap().iter().filter(|w| w.contains(&2)).count();
        assert_eq!(tries_of_2, 3);
        assert!(handler.waves.lock().unwrap().iter().all(|w| !w.contains(&4)));
    }

    #[tokio::test]
    async fn no_retry_starts_near_the_deadline() {
        let mut options = lanes(1, 2);
        options.deadline = Some(Instant::now() + RETRY_MIN_TIME_LEFT / 2);
        let handler = Timed::new(options);
        handler.flaky.lock().unwrap().insert(1, 1);
        let report = process_batch(vec![message(1, "a")], &handler).await;
        assert_eq!(report.failures, ["m1"]);
        assert_eq!(report.retried_in_batch, 0);
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
