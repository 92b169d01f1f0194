//! The writer: one SQS batch in, its waves through the steps, one outcome per message out.

use super::saga::{Saga, Step, saga_key};
use super::{OrderReport, OrdersConfig};
use crate::batch::{self, BatchMessage, BatchOptions, BatchReport, Outcome, WaveHandler};
use crate::brightpearl::{BrightpearlApi, NewSalesOrder};
use crate::channels::{ChannelOrder, ChannelSet, SalesChannel};
use crate::error::{Error, Result};
use crate::failures::{self, Failure, FailureCode};
use crate::metrics::{Metrics, names};
use crate::parking;
use crate::queue::{ChannelKind, Job, JobQueue, OrderEvent, QueueName};
use crate::state::idempotency::{Claim, Idempotency, Lease};
use crate::state::{Item, Key, StateStore, now_epoch_millis};
use async_trait::async_trait;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the writer needs; `App::order_writer` builds it from the configuration.
pub struct OrderWriterParts {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    pub brightpearl: Arc<dyn BrightpearlApi>,
    pub channels: Arc<ChannelSet>,
    pub metrics: Arc<Metrics>,
    pub config: OrdersConfig,
}

pub struct OrderWriter {
    pub(super) state: Arc<dyn StateStore>,
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) brightpearl: Arc<dyn BrightpearlApi>,
    pub(super) channels: Arc<ChannelSet>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) config: OrdersConfig,
    idempotency: Idempotency,
    /// One new customer at a time per email in this process (see `contacts.rs`).
    pub(super) contact_locks: super::contacts::ContactLocks,
    report: Mutex<OrderReport>,
    /// The running Lambda invocation's deadline (epoch ms), 0 outside Lambda: idempotency
    /// locks last until then, so a timed-out attempt frees its orders when it dies.
    deadline_ms: AtomicI64,
}

/// One channel-order job moving through a wave.
pub(super) struct Work {
    pub(super) message_id: String,
    pub(super) job: Job,
    pub(super) kind: ChannelKind,
    pub(super) store: String,
    pub(super) order_id: String,
    pub(super) event: OrderEvent,
    pub(super) lease: Option<Lease>,
    pub(super) channel: Option<Arc<dyn SalesChannel>>,
    pub(super) order: Option<ChannelOrder>,
    pub(super) saga: Option<Saga>,
    pub(super) version: Option<u64>,
    /// The sales order to post, built once SKUs are mapped.
    pub(super) new_order: Option<NewSalesOrder>,
    pub(super) outcome: Option<Outcome>,
    /// The typed failure behind a parked outcome, with its evidence.
    pub(super) failure: Option<Failure>,
    /// A WooCommerce deletion: the signed body is only `{"id": N}` and the order cannot be
    /// fetched any more, so it is cancelled by id.
    pub(super) deleted: bool,
    /// The step this attempt found on arrival: an intent there means an earlier attempt
    /// stopped after (or during) its external effect.
    pub(super) found_at: Option<Step>,
}

impl Work {
    fn new(message_id: String, job: Job) -> Option<Work> {
        let Job::ChannelOrder { channel, store, order_id, event, .. } = &job else { return None };
        Some(Work {
            message_id,
            kind: *channel,
            store: store.clone(),
            order_id: order_id.clone(),
            event: *event,
            job,
            lease: None,
            channel: None,
            order: None,
            saga: None,
            version: None,
            new_order: None,
            outcome: None,
            failure: None,
            deleted: false,
            found_at: None,
        })
    }

    pub(super) fn pending(&self) -> bool {
        self.outcome.is_none()
    }

    pub(super) fn at(&self, step: Step) -> bool {
        self.pending() && self.step() == Some(step)
    }

    pub(super) fn step(&self) -> Option<Step> {
        self.saga.as_ref().map(|s| s.step)
    }

    /// Found at `step` on arrival and still there: the effect after that intent is uncertain.
    pub(super) fn resumed_at(&self, step: Step) -> bool {
        self.at(step) && self.found_at == Some(step)
    }

    pub(super) fn sales_order_id(&self) -> Option<u64> {
        self.saga.as_ref().and_then(|s| s.sales_order_id)
    }

    pub(super) fn key(&self) -> Key {
        saga_key(self.kind, &self.store, &self.order_id)
    }

    pub(super) fn fail(&mut self, e: &Error) {
        self.outcome = Some(outcome_of(e));
        if !e.is_retryable() {
            self.failure = Some(Failure::from_error(e).with_store(self.store.clone()));
        }
    }
}

/// WooCommerce's `order.deleted` body: an object holding nothing but the order id.
fn is_deletion_body(payload: &serde_json::Value) -> bool {
    payload.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("id"))
}

/// A parked reason written as `code: text` (`cancel_refused: …`) carries its code; any other
/// text is read by the legacy rules.
pub(super) fn coded(reason: &str) -> Failure {
    let code = reason
        .split_once(':')
        .and_then(|(code, _)| FailureCode::parse(code))
        .unwrap_or_else(|| parking::code_of_legacy_text(reason));
    Failure::new(code, reason)
}

pub(super) fn outcome_of(e: &Error) -> Outcome {
    if e.is_retryable() { Outcome::Retry(e.to_string()) } else { Outcome::Parked(e.to_string()) }
}

impl OrderWriter {
    pub fn new(parts: OrderWriterParts) -> Self {
        OrderWriter {
            idempotency: Idempotency::new(Arc::clone(&parts.state), IDEMPOTENCY_TTL),
            state: parts.state,
            queue: parts.queue,
            brightpearl: parts.brightpearl,
            channels: parts.channels,
            metrics: parts.metrics,
            config: parts.config,
            contact_locks: super::contacts::ContactLocks::default(),
            report: Mutex::new(OrderReport::default()),
            deadline_ms: AtomicI64::new(0),
        }
    }

    /// Counts since this writer was built.
    pub fn report(&self) -> OrderReport {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn bump(&self, f: impl FnOnce(&mut OrderReport)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// As `handle_event`, for a Lambda invocation that ends at `deadline_ms` (epoch ms): every
    /// Brightpearl call and idempotency lock knows the deadline.
    pub async fn handle_invocation(
        &self,
        event: serde_json::Value,
        deadline_ms: i64,
    ) -> Result<serde_json::Value> {
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
        let left = Duration::from_millis(u64::try_from(deadline_ms - now_epoch_millis()).unwrap_or(0));
        self.brightpearl.set_deadline(Some(Instant::now() + left));
        let answer = self.handle_event(event).await;
        self.brightpearl.set_deadline(None);
        answer
    }

    /// One invocation: an `orders.fifo` batch (partial-batch answer) or the reconciliation
    /// schedule (`{"pearlsync":"reconcile-orders"}` or a plain schedule).
    pub async fn handle_event(&self, event: serde_json::Value) -> Result<serde_json::Value> {
        use crate::lambda::{Trigger, batch_response, classify};
        let answer = match classify(event) {
            Trigger::Sqs(messages) => Ok(batch_response(&self.handle_batch(messages).await)),
            Trigger::Schedule { task, .. } if task.as_deref().is_none_or(|t| t == "reconcile-orders") => self
                .reconcile_orders()
                .await
                .and_then(|r| serde_json::to_value(r).map_err(|e| Error::BadInput(e.to_string()))),
            other => Err(Error::BadInput(format!("not an order-writer event: {other:?}"))),
        };
        self.metrics.flush();
        answer
    }

    /// One SQS batch from `orders.fifo`: `ChannelOrder` and `Shipment` jobs.
    pub async fn handle_batch(&self, messages: Vec<BatchMessage>) -> BatchReport {
        let before = self.brightpearl.stats();
        let count = messages.len();
        let report = batch::process_batch(messages, self).await;
        let after = self.brightpearl.stats();
        let requests = after.requests.saturating_sub(before.requests);
        let throttles = after.throttled.saturating_sub(before.throttled);
        self.bump(|r| {
            r.brightpearl_requests += requests;
            r.parked += report.parked.len() as u64;
            r.retried += report.retried.len() as u64;
        });
        self.metrics.count(names::BRIGHTPEARL_REQUESTS, requests);
        self.metrics.count(names::BRIGHTPEARL_THROTTLES, throttles);
        self.metrics.count(names::ORDERS_PARKED, report.parked.len() as u64);
        tracing::info!(
            messages = count,
            done = report.done,
            parked = report.parked.len(),
            retried = report.retried.len(),
            brightpearl_requests = requests,
            brightpearl_throttles = throttles,
            "order batch handled"
        );
        report
    }

    /// One wave of channel orders through every step. Each step acts only on the orders
    /// still pending at the step it handles, so one order's failure never stops another's.
    async fn handle_orders(&self, mut works: Vec<Work>) -> Vec<Work> {
        self.claim(&mut works).await;
        self.load(&mut works).await;
        for w in works.iter_mut().filter(|w| w.pending()) {
            self.route(w).await;
        }
        self.prepare(&mut works).await;
        self.contacts(&mut works).await;
        self.create(&mut works).await;
        self.read_rows(&mut works).await;
        self.reserve(&mut works).await;
        self.pay(&mut works).await;
        self.refunds(&mut works).await;
        works
    }

    /// Takes each job's idempotency lock; repeats and concurrent duplicates end here.
    async fn claim(&self, works: &mut [Work]) {
        let now = now_epoch_millis();
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        // On Lambda: until the invocation's deadline; elsewhere: the configured lock time.
        let lock_until = if deadline > now { deadline } else { now + (self.config.lock_secs as i64) * 1000 };
        for w in works.iter_mut() {
            let key = format!("order:{}:{}:{}:{}", w.kind, w.store, w.order_id, w.job.dedup_id());
            match self.idempotency.begin(&key, &json!({"job": w.job.dedup_id()}), lock_until).await {
                Ok(Claim::Acquired(lease)) => w.lease = Some(lease),
                Ok(Claim::Completed(_)) => {
                    self.bump(|r| r.duplicates += 1);
                    self.metrics.count(names::DUPLICATES, 1);
                    w.outcome = Some(Outcome::Done);
                }
                Ok(Claim::InProgress { .. }) => {
                    w.outcome = Some(Outcome::Retry("the same job is being handled concurrently".into()));
                }
                Err(e) => w.fail(&e),
            }
        }
    }

    /// Reads sagas in one batch, then the orders (payload or fetched) and normalises them.
    async fn load(&self, works: &mut [Work]) {
        let keys: Vec<Key> = works.iter().filter(|w| w.pending()).map(Work::key).collect();
        let items = match self.state.batch_get(&keys).await {
            Ok(items) => items,
            Err(e) => {
                works.iter_mut().filter(|w| w.pending()).for_each(|w| w.fail(&e));
                return;
            }
        };
        let by_key: HashMap<Key, Item> = items.into_iter().map(|i| (i.key(), i)).collect();
        for w in works.iter_mut().filter(|w| w.pending()) {
            if let Some(item) = by_key.get(&w.key()) {
                match serde_json::from_value::<Saga>(item.data.clone()) {
                    Ok(s) => {
                        w.found_at = Some(s.step);
                        w.saga = Some(s);
                        w.version = Some(item.version);
                    }
                    Err(e) => {
                        w.fail(&Error::State(format!("saga of {}: {e}", w.order_id)));
                        continue;
                    }
                }
            }
            let Some(channel) = self.channels.for_webhook(w.kind, &w.store).cloned() else {
                w.fail(&Error::config(
                    format!("stores.{}", w.store),
                    format!("no {} store named {:?} is configured", w.kind, w.store),
                ));
                continue;
            };
            // A refund event's body is the refund (or nothing), and BigCommerce's webhooks are
            // thin (the payload only names the event): the order is fetched.
            let payload = match &w.job {
                Job::ChannelOrder { payload: Some(p), event, .. }
                    if *event != OrderEvent::Refunded && w.kind != ChannelKind::Bigcommerce =>
                {
                    Ok(p.clone())
                }
                _ => channel.fetch_order(&w.order_id).await,
            };
            if w.kind == ChannelKind::Woocommerce && payload.as_ref().is_ok_and(is_deletion_body) {
                w.deleted = true;
                w.channel = Some(channel);
                continue;
            }
            match payload.and_then(|p| channel.normalise_order(&p)) {
                Ok(order) => w.order = Some(order),
                Err(e) => w.fail(&e),
            }
            w.channel = Some(channel);
        }
    }

    /// Releases or completes each lease according to the outcome; parks what cannot succeed.
    async fn finish(&self, works: &mut [Work]) -> HashMap<String, Outcome> {
        let mut out = HashMap::new();
        for w in works.iter_mut() {
            let mut outcome = w.outcome.clone().unwrap_or_else(|| match w.step() {
                Some(Step::Done) | Some(Step::CancelledBeforeCreate) => Outcome::Done,
                // Every step ran and something is left (an intent awaiting its check).
                _ => Outcome::Retry("order not finished; resuming on the next delivery".into()),
            });
            if let Outcome::Parked(reason) = &outcome {
                let failure = w.failure.take().unwrap_or_else(|| coded(reason).with_store(w.store.clone()));
                if let Err(e) = failures::park(self.state.as_ref(), &w.job, failure).await {
                    outcome = outcome_of(&e);
                }
            }
            if let Some(lease) = w.lease.take() {
                let r = match outcome {
                    Outcome::Done => self.idempotency.complete(lease, &json!({"order_id": w.order_id})).await,
                    // A parked job stays replayable; a retried one must be free to run again.
                    _ => self.idempotency.release(lease).await,
                };
                if let Err(e) = r {
                    tracing::warn!(order = %w.order_id, error = %e, "idempotency record not updated");
                }
            }
            out.insert(w.message_id.clone(), outcome);
        }
        out
    }

    async fn park_other(&self, job: &Job, failure: Failure) -> Outcome {
        let reason = failure.text.clone();
        match failures::park(self.state.as_ref(), job, failure).await {
            Ok(_) => Outcome::Parked(reason),
            Err(e) => outcome_of(&e),
        }
    }
}

#[async_trait]
impl WaveHandler for OrderWriter {
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
        let mut out = HashMap::new();
        let mut works = Vec::new();
        for (message_id, job) in jobs {
            match &job {
                Job::ChannelOrder { .. } => works.extend(Work::new(message_id, job)),
                Job::Shipment { goods_out_note_ids } => {
                    let outcome = match self.handle_shipment(goods_out_note_ids).await {
                        Ok(Outcome::Parked(reason)) => self.park_other(&job, coded(&reason)).await,
                        Ok(other) => other,
                        Err(e) if !e.is_retryable() => self.park_other(&job, Failure::from_error(&e)).await,
                        Err(e) => outcome_of(&e),
                    };
                    out.insert(message_id, outcome);
                }
                other => {
                    let reason = format!("{} jobs do not belong on the orders queue", other.group_id());
                    out.insert(
                        message_id,
                        self.park_other(other, Failure::new(FailureCode::WrongQueue, reason)).await,
                    );
                }
            }
        }
        if !works.is_empty() {
            let mut works = self.handle_orders(works).await;
            out.extend(self.finish(&mut works).await);
        }
        out
    }

    /// Groups in concurrent lanes, a failed group retried in the invocation (its intents make
    /// the repeat check first), never past the invocation's deadline.
    fn batch_options(&self) -> BatchOptions {
        let left = self.deadline_ms.load(Ordering::Relaxed) - now_epoch_millis();
        let deadline = (self.deadline_ms.load(Ordering::Relaxed) > 0)
            .then(|| Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        BatchOptions::concurrent_groups(self.config.lanes, self.config.retries_in_invocation, deadline)
    }

    /// Kept with its raw body and reason, never dropped (`pearlsync failures show`).
    async fn undecodable(&self, message: &BatchMessage, reason: &str) {
        tracing::warn!(message_id = %message.message_id, reason, "order message is not a job; parked");
        if let Err(e) =
            failures::park_undecodable(self.state.as_ref(), QueueName::Orders, &message.body, reason).await
        {
            tracing::error!(message_id = %message.message_id, error = %e, "undecodable message not parked");
        }
    }
}
