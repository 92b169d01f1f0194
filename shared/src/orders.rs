//! order-writer: turns channel orders into Brightpearl sales orders exactly once, posts shipped
//! goods-out notes' tracking back to the channel, and reconciles missed webhooks.
//!
//! Exactly once, in three layers: the idempotency record on the job (channel + order id + job
//! content) stops concurrent and repeated deliveries; the saga record per channel order
//! (`order#{kind}:{store}:{order_id}` / `saga`, written with version compare-and-set) stores a
//! recovery point after each step (`creating` → `created` → `reserved` → `paying` → `done`), so a
//! retry resumes where it stopped; and Brightpearl's unique `externalRef` +
//! `installedIntegrationInstanceId` pair, searched before re-creating an order whose earlier
//! attempt stopped at `creating` (a first attempt makes no search).
//!
//! Budget: the jobs of one wave (see `batch`) go through each step together: SKUs in one cached
//! lookup, contacts from the state cache (`contact#{email}`), sales-order POSTs, reservations
//! and payments each in multi-messages of up to 10, row ids in one ID-set GET.
//!
//! Rules chosen where the issue is silent:
//! - **Updates**: an update for an order not yet written creates it (the create webhook may be
//!   lost). Once written, an order note is added only when the delivery address or the lines
//!   (SKU, quantity) changed; never a second order, never row edits.
//! - **Cancellations**: before the sales order exists, the cancellation is recorded and a later
//!   create is skipped. Afterwards, the configured (or the account's "Cancelled…") status is set
//!   with a note; when Brightpearl refuses (shipped, invoiced, paid), a note is added and the job
//!   is parked with that reason for a human.
//! - **Reservations**: a refused reservation (no stock) leaves the order unreserved, as staff
//!   would; a repeat refused because the reservation exists counts as reserved.
//! - **Payments**: the step `paying` is written before the POST. A payment whose answer was lost
//!   (no answer, or a timeout) cannot be checked through the API, so the order is parked for a
//!   human instead of risking a second payment. An HTTP 5xx answer means it was not taken.
//! - **Contacts**: found by exact primary email (state cache first), else created with the
//!   billing (or delivery) address. Orders without an email get a new contact.

use crate::app::App;
use crate::batch::{self, BatchMessage, BatchReport, Outcome, WaveHandler};
use crate::brightpearl::client::{customer_payment_body, reservation_body, sales_order_body};
use crate::brightpearl::{
    BrightpearlApi, Message, MessageResult, NewContact, NewCustomerPayment, NewOrderRow, NewSalesOrder,
    OrderAddress, PostalAddress, ReservationRow,
};
use crate::channels::{Address, ChannelOrder, ChannelSet, Fulfilment, SalesChannel, StoreConfig};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, names};
use crate::parking;
use crate::queue::{ChannelKind, Job, JobQueue, OrderEvent};
use crate::state::idempotency::{Claim, Idempotency, Lease};
use crate::state::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SAGA_SK: &str = "saga";
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[orders]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// Payment method code for customer payments; default the channel kind upper-cased
    /// (`SHOPIFY`, `BIGCOMMERCE`, `WOOCOMMERCE`).
    pub payment_method_code: Option<String>,
    /// Sales-order status for cancellations; default the account's SO status named "Cancelled…".
    pub cancelled_status_id: Option<u64>,
    /// SKU of a catch-all product for lines whose SKU Brightpearl lacks; unset parks the order.
    pub misc_sku: Option<String>,
    /// How long one job holds its idempotency lock (a crashed attempt frees it after this).
    pub lock_secs: u64,
    /// The reconciliation reads back this far before its cursor (dedup makes overlap harmless).
    pub reconcile_overlap_secs: u64,
    /// How far back the first reconciliation of a store looks.
    pub reconcile_initial_lookback_secs: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            payment_method_code: None,
            cancelled_status_id: None,
            misc_sku: None,
            lock_secs: 120,
            reconcile_overlap_secs: 300,
            reconcile_initial_lookback_secs: 24 * 3600,
        }
    }
}

impl OrdersConfig {
    /// `PEARLSYNC_PAYMENT_METHOD`, `PEARLSYNC_CANCELLED_STATUS_ID`, `PEARLSYNC_MISC_SKU`,
    /// `PEARLSYNC_ORDER_LOCK_SECS`, `PEARLSYNC_RECONCILE_OVERLAP_SECS`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        use crate::config::parse_var;
        if let Some(v) = env("PEARLSYNC_PAYMENT_METHOD").filter(|v| !v.trim().is_empty()) {
            self.payment_method_code = Some(v.trim().to_string());
        }
        if let Some(v) = parse_var(env, "PEARLSYNC_CANCELLED_STATUS_ID")? {
            self.cancelled_status_id = Some(v);
        }
        if let Some(v) = env("PEARLSYNC_MISC_SKU").filter(|v| !v.trim().is_empty()) {
            self.misc_sku = Some(v.trim().to_string());
        }
        if let Some(v) = parse_var(env, "PEARLSYNC_ORDER_LOCK_SECS")? {
            self.lock_secs = v;
        }
        if let Some(v) = parse_var(env, "PEARLSYNC_RECONCILE_OVERLAP_SECS")? {
            self.reconcile_overlap_secs = v;
        }
        Ok(())
    }
}

/// Counts since the writer was built (the CLI, soak test and benchmarks read them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderReport {
    pub created: u64,
    /// Jobs for work already done (repeated deliveries, orders already written).
    pub duplicates: u64,
    pub parked: u64,
    pub retried: u64,
    pub reserved: u64,
    pub paid: u64,
    pub cancelled: u64,
    pub notes_added: u64,
    pub tracking_posted: u64,
    /// Brightpearl HTTP requests made by the writer, retries included.
    pub brightpearl_requests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub stores: usize,
    /// Orders the channels listed as created or updated since the cursors.
    pub listed: usize,
    /// Of those, orders not yet known, enqueued for the writer.
    pub enqueued: usize,
    /// Stores whose listing failed, with the reason; their cursor stays put.
    pub failed: Vec<(String, String)>,
}

/// The recovery point of one channel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Intent written just before the sales-order POST.
    Creating,
    Created,
    Reserved,
    /// Intent written just before the payment POST.
    Paying,
    Done,
    /// Cancelled on the channel before any sales order existed: never create it.
    CancelledBeforeCreate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRow {
    pub row_id: u64,
    pub product_id: Option<u64>,
    pub quantity: i64,
    /// The channel line id (the row's externalRef).
    pub line_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub step: Step,
    pub contact_id: Option<u64>,
    pub sales_order_id: Option<u64>,
    #[serde(default)]
    pub rows: Vec<SagaRow>,
    /// Address and lines as last written, to tell updates that matter.
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub cancelled: bool,
}

/// The saga key of a channel order.
pub fn saga_key(kind: ChannelKind, store: &str, order_id: &str) -> Key {
    Key::new(format!("order#{kind}:{store}:{order_id}"), SAGA_SK)
}

fn sales_order_key(sales_order_id: u64) -> Key {
    Key::new(format!("salesorder#{sales_order_id}"), "channel-order")
}

fn contact_key(email: &str) -> Key {
    Key::new(format!("contact#{}", email.trim().to_lowercase()), "contact")
}

fn tracking_key(note_id: u64) -> Key {
    Key::new(format!("tracking#{note_id}"), "posted")
}

fn cursor_key(store: &str) -> Key {
    Key::new(format!("cursor#orders:{store}"), "reconcile")
}

/// The sales order's `externalRef`: the channel order id qualified by its store. Brightpearl's
/// unique pair (`externalRef` + `installedIntegrationInstanceId`) spans every store of the
/// account, and stores number their orders independently (BigCommerce #100 and WooCommerce
/// #100 are different orders), so the bare id would merge them.
pub fn external_ref(store: &str, order_id: &str) -> String {
    format!("{store}:{order_id}")
}

fn state_err(e: impl std::fmt::Display) -> Error {
    Error::State(e.to_string())
}

/// Whether a failed write surely did not happen: Brightpearl answered (a throttle, an HTTP 5xx
/// error envelope). A lost answer or a timeout may hide a write that was done.
fn surely_not_applied(e: &Error) -> bool {
    match e {
        Error::Throttled { .. } => true,
        // Brightpearl answered with an error envelope (or the connection was refused).
        Error::Unavailable { .. } => true,
        _ => false,
    }
}

fn outcome_of(e: &Error) -> Outcome {
    if e.is_retryable() { Outcome::Retry(e.to_string()) } else { Outcome::Parked(e.to_string()) }
}

fn message_error(r: &MessageResult) -> Error {
    let (code, message) = r.errors.first().cloned().unwrap_or_default();
    if r.status == 0 || r.status >= 500 || r.status == 429 {
        Error::Unavailable { service: "brightpearl", detail: format!("HTTP {} {code} {message}", r.status) }
    } else {
        Error::Rejected { service: "brightpearl", status: r.status, code, message }
    }
}

/// One channel-order job moving through a wave.
struct Work {
    message_id: String,
    job: Job,
    kind: ChannelKind,
    store: String,
    order_id: String,
    event: OrderEvent,
    lease: Option<Lease>,
    channel: Option<Arc<dyn SalesChannel>>,
    order: Option<ChannelOrder>,
    saga: Option<Saga>,
    version: Option<u64>,
    /// The sales order to post, built once SKUs are mapped.
    new_order: Option<NewSalesOrder>,
    outcome: Option<Outcome>,
    /// True when this attempt found the order at `creating` (an earlier attempt stopped).
    resumed_creating: bool,
}

impl Work {
    fn pending(&self) -> bool {
        self.outcome.is_none()
    }

    fn at(&self, step: Step) -> bool {
        self.pending() && self.saga.as_ref().map(|s| s.step) == Some(step)
    }

    fn key(&self) -> Key {
        saga_key(self.kind, &self.store, &self.order_id)
    }

    fn fail(&mut self, e: &Error) {
        self.outcome = Some(outcome_of(e));
    }
}

pub struct OrderWriter {
    state: Arc<dyn StateStore>,
    queue: Arc<dyn JobQueue>,
    brightpearl: Arc<dyn BrightpearlApi>,
    channels: Arc<ChannelSet>,
    metrics: Arc<Metrics>,
    config: OrdersConfig,
    installed_integration_instance_id: Option<u64>,
    idempotency: Idempotency,
    report: Mutex<OrderReport>,
    /// The running Lambda invocation's deadline (epoch ms), 0 outside Lambda: idempotency
    /// locks last until then, so a timed-out attempt frees its orders when it dies.
    deadline_ms: std::sync::atomic::AtomicI64,
}

impl OrderWriter {
    pub fn new(app: &App) -> Self {
        OrderWriter {
            state: Arc::clone(&app.state),
            queue: Arc::clone(&app.queue),
            brightpearl: app.order_brightpearl(),
            channels: Arc::clone(&app.channels),
            metrics: Arc::clone(&app.metrics),
            config: app.config.orders.clone(),
            installed_integration_instance_id: app.config.brightpearl.installed_integration_instance_id,
            idempotency: Idempotency::new(Arc::clone(&app.state), IDEMPOTENCY_TTL),
            report: Mutex::new(OrderReport::default()),
            deadline_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Counts since this writer was built.
    pub fn report(&self) -> OrderReport {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bump(&self, f: impl FnOnce(&mut OrderReport)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// One Lambda invocation: an `orders.fifo` batch (partial-batch answer) or the
    /// reconciliation schedule (`{"pearlsync":"reconcile-orders"}` or a plain schedule).
    /// As `handle_event`, for a Lambda invocation that ends at `deadline_ms` (epoch ms).
    pub async fn handle_invocation(
        &self,
        event: serde_json::Value,
        deadline_ms: i64,
    ) -> Result<serde_json::Value> {
        self.deadline_ms.store(deadline_ms, std::sync::atomic::Ordering::Relaxed);
        self.handle_event(event).await
    }

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
        let before = self.brightpearl.stats().requests;
        let count = messages.len();
        let report = batch::process_batch(messages, self).await;
        let requests = self.brightpearl.stats().requests.saturating_sub(before);
        self.bump(|r| {
            r.brightpearl_requests += requests;
            r.parked += report.parked.len() as u64;
            r.retried += report.retried.len() as u64;
        });
        self.metrics.count(names::BRIGHTPEARL_REQUESTS, requests);
        self.metrics.count(names::ORDERS_PARKED, report.parked.len() as u64);
        tracing::info!(
            messages = count,
            done = report.done,
            parked = report.parked.len(),
            retried = report.retried.len(),
            brightpearl_requests = requests,
            "order batch handled"
        );
        report
    }

    // ---------- channel orders ----------

    async fn handle_orders(&self, mut works: Vec<Work>) -> Vec<Work> {
        self.claim(&mut works).await;
        self.load(&mut works).await;
        // Cancellations and updates of written orders take their own path.
        for w in works.iter_mut().filter(|w| w.pending()) {
            let cancelled = w.event == OrderEvent::Cancelled || w.order.as_ref().is_some_and(|o| o.cancelled);
            let step = w.saga.as_ref().map(|s| s.step);
            let closed =
                step == Some(Step::CancelledBeforeCreate) || w.saga.as_ref().is_some_and(|s| s.cancelled);
            if closed || step == Some(Step::Done) && !cancelled {
                if w.event == OrderEvent::Updated && step == Some(Step::Done) && !closed {
                    let r = self.note_update(w).await;
                    w.outcome = Some(r.map_or_else(|e| outcome_of(&e), |_| Outcome::Done));
                } else {
                    self.bump(|r| r.duplicates += 1);
                    self.metrics.count(names::DUPLICATES, 1);
                    w.outcome = Some(Outcome::Done);
                }
            } else if cancelled {
                let r = self.cancel(w).await;
                w.outcome = Some(r.unwrap_or_else(|e| outcome_of(&e)));
            }
        }
        self.prepare(&mut works).await;
        self.contacts(&mut works).await;
        self.create(&mut works).await;
        self.read_rows(&mut works).await;
        self.reserve(&mut works).await;
        self.pay(&mut works).await;
        works
    }

    /// Takes each job's idempotency lock; repeats and concurrent duplicates end here.
    async fn claim(&self, works: &mut [Work]) {
        let now = now_epoch_millis();
        let deadline = self.deadline_ms.load(std::sync::atomic::Ordering::Relaxed);
        // On Lambda: until the invocation's deadline (the design's "remaining time");
        // elsewhere: the configured lock time.
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
                        w.resumed_creating = s.step == Step::Creating;
                        w.saga = Some(s);
                        w.version = Some(item.version);
                    }
                    Err(e) => {
                        w.fail(&state_err(format!("saga of {}: {e}", w.order_id)));
                        continue;
                    }
                }
            }
            let Some(channel) = self.channels.for_webhook(w.kind, &w.store).cloned() else {
                w.fail(&Error::BadInput(format!("no {} store named {:?} is configured", w.kind, w.store)));
                continue;
            };
            let payload = match &w.job {
                Job::ChannelOrder { payload: Some(p), .. } => Ok(p.clone()),
                _ => channel.fetch_order(&w.order_id).await,
            };
            match payload.and_then(|p| channel.normalise_order(&p)) {
                Ok(order) => w.order = Some(order),
                Err(e) => w.fail(&e),
            }
            w.channel = Some(channel);
        }
    }

    async fn save(&self, w: &mut Work, saga: Saga) -> Result<()> {
        let key = w.key();
        let data = serde_json::to_value(&saga).map_err(state_err)?;
        let (condition, version) = match w.version {
            None => (Condition::Absent, 1),
            Some(v) => (Condition::VersionIs(v), v + 1),
        };
        let item = Item { pk: key.pk, sk: key.sk, data, version, expires_at: None };
        match self.state.put(item, condition).await? {
            PutOutcome::Written => {
                w.saga = Some(saga);
                w.version = Some(version);
                Ok(())
            }
            PutOutcome::ConditionFailed { .. } => {
                Err(state_err(format!("order {} changed concurrently; retrying", w.order_id)))
            }
        }
    }

    /// Saves the saga at `step` (with `edit`), failing the work on error.
    async fn advance(&self, w: &mut Work, step: Step, edit: impl FnOnce(&mut Saga)) -> bool {
        let mut saga = w.saga.clone().unwrap_or(Saga {
            step,
            contact_id: None,
            sales_order_id: None,
            rows: vec![],
            fingerprint: String::new(),
            cancelled: false,
        });
        saga.step = step;
        edit(&mut saga);
        match self.save(w, saga).await {
            Ok(()) => true,
            Err(e) => {
                w.fail(&e);
                false
            }
        }
    }

    /// Maps SKUs (one cached lookup for the wave) and builds the sales orders to post.
    async fn prepare(&self, works: &mut [Work]) {
        let needs = |w: &Work| w.pending() && w.saga.as_ref().is_none_or(|s| s.step == Step::Creating);
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for w in works.iter().filter(|w| needs(w)) {
            let Some(order) = &w.order else { continue };
            skus.extend(order.lines.iter().filter_map(|l| l.sku.clone()));
            if let Some(s) = w.channel.as_ref().and_then(|c| c.store().shipping_product_sku.clone()) {
                skus.insert(s);
            }
        }
        if let Some(misc) = &self.config.misc_sku {
            skus.insert(misc.clone());
        }
        if skus.is_empty() {
            return;
        }
        let skus: Vec<String> = skus.into_iter().collect();
        let products = match self.brightpearl.products_by_sku(&skus).await {
            Ok(p) => p,
            Err(e) => {
                works.iter_mut().filter(|w| needs(w)).for_each(|w| w.fail(&e));
                return;
            }
        };
        let misc = self.config.misc_sku.as_ref().and_then(|s| products.get(s).copied());
        for w in works.iter_mut().filter(|w| needs(w)) {
            let (Some(order), Some(channel)) = (&w.order, &w.channel) else { continue };
            match self.sales_order(order, channel.store(), &products, misc) {
                Ok(o) => w.new_order = Some(o),
                Err(e) => w.fail(&e),
            }
        }
    }

    /// The Brightpearl sales order for a channel order (customer id filled in later).
    fn sales_order(
        &self,
        order: &ChannelOrder,
        store: &StoreConfig,
        products: &HashMap<String, u64>,
        misc: Option<u64>,
    ) -> Result<NewSalesOrder> {
        let mut rows = Vec::new();
        for line in &order.lines {
            let product = match &line.sku {
                Some(sku) => {
                    products.get(sku).copied().or(misc).ok_or_else(|| Error::UnknownSku(sku.clone()))
                }
                None => misc.ok_or_else(|| Error::BadInput(format!("line {:?} has no SKU", line.name))),
            }?;
            let gross = line.unit_price * f64::from(line.quantity) - line.discount;
            let net = if order.prices_include_tax { gross - line.tax } else { gross };
            rows.push(NewOrderRow {
                product_id: product,
                // The catch-all product keeps the channel's description.
                name: (Some(product) == misc).then(|| line.name.clone()),
                quantity: i64::from(line.quantity),
                net: round4(net),
                tax: round4(line.tax),
                tax_code: store.tax_code.clone(),
                external_ref: Some(line.line_id.clone()),
            });
        }
        for s in &order.shipping_lines {
            let net = if order.prices_include_tax { s.price - s.tax } else { s.price };
            let product = store.shipping_product_sku.as_ref().and_then(|sku| products.get(sku).copied());
            rows.push(NewOrderRow {
                // 0: a named row without a product when no shipping product is configured.
                product_id: product.unwrap_or(0),
                name: Some(format!("Shipping: {}", s.title)),
                quantity: 1,
                net: round4(net),
                tax: round4(s.tax),
                tax_code: store.tax_code.clone(),
                external_ref: None,
            });
        }
        Ok(NewSalesOrder {
            customer_id: 0,
            external_ref: external_ref(&order.store, &order.id),
            installed_integration_instance_id: self.installed_integration_instance_id,
            reference: Some(order.number.clone()),
            channel_id: store.brightpearl_channel_id,
            currency_code: order.currency.clone(),
            price_list_id: store.price_list_id,
            warehouse_id: store.reservation_warehouse_id,
            status_id: None,
            placed_on: order.created_at,
            delivery_address: order
                .delivery_address
                .as_ref()
                .or(order.billing_address.as_ref())
                .map(order_address),
            shipping_method_id: None,
            rows,
        })
    }

    /// Contacts for new orders: state cache, then exact-email search, then create; then the
    /// `creating` intent is stored with the contact.
    async fn contacts(&self, works: &mut [Work]) {
        let fresh = |w: &Work| w.pending() && w.saga.is_none() && w.new_order.is_some();
        let emails: Vec<Key> = works
            .iter()
            .filter(|w| fresh(w))
            .filter_map(|w| w.order.as_ref()?.email.as_deref().map(contact_key))
            .collect::<BTreeSet<Key>>()
            .into_iter()
            .collect();
        let mut cache: HashMap<Key, u64> = HashMap::new();
        match self.state.batch_get(&emails).await {
            Ok(items) => {
                for i in items {
                    if let Some(id) = i.data.get("contact_id").and_then(Value::as_u64) {
                        cache.insert(i.key(), id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "contact cache unreadable; searching Brightpearl"),
        }
        for w in works.iter_mut() {
            if !fresh(w) {
                continue;
            }
            let Some(order) = w.order.clone() else { continue };
            let key = order.email.as_deref().map(contact_key);
            let cached = key.as_ref().and_then(|k| cache.get(k).copied());
            let contact = match cached {
                Some(id) => Ok(id),
                None => self.find_or_create_contact(&order).await,
            };
            let contact = match contact {
                Ok(id) => id,
                Err(e) => {
                    w.fail(&e);
                    continue;
                }
            };
            if let (Some(k), None) = (&key, cached) {
                cache.insert(k.clone(), contact);
                let item = Item::new(k.pk.clone(), k.sk.clone(), json!({"contact_id": contact}));
                if let Err(e) = self.state.put(item, Condition::Always).await {
                    tracing::warn!(error = %e, "contact cache not written");
                }
            }
            let fingerprint = fingerprint(&order);
            self.advance(w, Step::Creating, |s| {
                s.contact_id = Some(contact);
                s.fingerprint = fingerprint;
            })
            .await;
        }
    }

    async fn find_or_create_contact(&self, order: &ChannelOrder) -> Result<u64> {
        if let Some(email) = &order.email
            && let Some(c) = self.brightpearl.find_contact_by_email(email).await?
        {
            return Ok(c.id);
        }
        let address = order.billing_address.as_ref().or(order.delivery_address.as_ref());
        let postal_address_id = match address.and_then(postal_address) {
            Some(a) => Some(self.brightpearl.create_postal_address(&a).await?),
            None => None,
        };
        let name = order
            .customer_name
            .clone()
            .or_else(|| address.and_then(|a| a.full_name.clone()))
            .unwrap_or_else(|| order.email.clone().unwrap_or_else(|| format!("Order {}", order.number)));
        let (first, last) = match name.trim().rsplit_once(' ') {
            Some((f, l)) => (f.to_string(), l.to_string()),
            None => (String::new(), name.trim().to_string()),
        };
        self.brightpearl
            .create_contact(&NewContact {
                first_name: first,
                last_name: last,
                email: order.email.clone(),
                telephone: order.phone.clone().or_else(|| address.and_then(|a| a.phone.clone())),
                postal_address_id,
                is_supplier: false,
            })
            .await
    }

    /// Posts the sales orders of the wave in multi-messages. Orders found at `creating` from an
    /// earlier attempt are first searched by externalRef.
    async fn create(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.at(Step::Creating) && w.resumed_creating) {
            match self.existing_sales_order(&external_ref(&w.store, &w.order_id)).await {
                Ok(Some(id)) => {
                    self.created(w, id).await;
                }
                Ok(None) => {}
                Err(e) => w.fail(&e),
            }
        }
        let mut posts: Vec<(usize, Message)> = Vec::new();
        for (i, w) in works.iter_mut().enumerate() {
            if !w.at(Step::Creating) {
                continue;
            }
            let (Some(mut order), Some(contact)) =
                (w.new_order.clone(), w.saga.as_ref().and_then(|s| s.contact_id))
            else {
                continue;
            };
            order.customer_id = contact;
            let body = sales_order_body(&order, self.installed_integration_instance_id);
            posts.push((i, Message::post(format!("so-{i}"), "/order-service/sales-order", body)));
        }
        for chunk in posts.chunks(crate::brightpearl::multimessage::MAX_MESSAGES) {
            let messages: Vec<Message> = chunk.iter().map(|(_, m)| m.clone()).collect();
            match self.brightpearl.multi_message(messages).await {
                Ok(results) => {
                    for ((i, _), r) in chunk.iter().zip(results) {
                        let w = &mut works[*i];
                        match r.created_id().filter(|_| r.is_success()) {
                            Some(id) => {
                                self.created(w, id).await;
                            }
                            None => w.fail(&message_error(&r)),
                        }
                    }
                }
                Err(e) => chunk.iter().for_each(|(i, _)| works[*i].fail(&e)),
            }
        }
    }

    async fn existing_sales_order(&self, external_ref: &str) -> Result<Option<u64>> {
        let found = self.brightpearl.find_sales_orders_by_external_ref(external_ref).await?;
        let instance = self.installed_integration_instance_id;
        Ok(found
            .into_iter()
            .filter(|o| instance.is_none() || o.installed_integration_instance_id == instance)
            .map(|o| o.sales_order_id)
            .min())
    }

    /// Records a created sales order and the reverse mapping used by shipments.
    async fn created(&self, w: &mut Work, sales_order_id: u64) -> bool {
        let mapping = sales_order_key(sales_order_id);
        let data = json!({"kind": w.kind, "store": w.store, "order_id": w.order_id});
        if let Err(e) = self.state.put(Item::new(mapping.pk, mapping.sk, data), Condition::Always).await {
            w.fail(&e);
            return false;
        }
        let ok = self.advance(w, Step::Created, |s| s.sales_order_id = Some(sales_order_id)).await;
        if ok {
            self.bump(|r| r.created += 1);
            self.metrics.count(names::ORDERS_CREATED, 1);
        }
        ok
    }

    /// Row ids of the created orders, in one ID-set GET.
    async fn read_rows(&self, works: &mut [Work]) {
        let ids: Vec<u64> = works
            .iter()
            .filter(|w| w.at(Step::Created))
            .filter_map(|w| w.saga.as_ref()?.sales_order_id)
            .collect();
        if ids.is_empty() {
            return;
        }
        match self.brightpearl.sales_orders(&ids).await {
            Ok(orders) => {
                let by_id: HashMap<u64, _> = orders.into_iter().map(|o| (o.id, o)).collect();
                for w in works.iter_mut().filter(|w| w.at(Step::Created)) {
                    let Some(so) = w.saga.as_ref().and_then(|s| s.sales_order_id) else { continue };
                    match by_id.get(&so) {
                        Some(o) => {
                            if let Some(s) = w.saga.as_mut() {
                                s.rows = o
                                    .rows
                                    .iter()
                                    .map(|r| SagaRow {
                                        row_id: r.id,
                                        product_id: r.product_id,
                                        quantity: r.quantity,
                                        line_id: r.external_ref.clone(),
                                    })
                                    .collect();
                            }
                        }
                        None => w.fail(&Error::Unavailable {
                            service: "brightpearl",
                            detail: format!("sales order {so} not readable yet"),
                        }),
                    }
                }
            }
            Err(e) => works.iter_mut().filter(|w| w.at(Step::Created)).for_each(|w| w.fail(&e)),
        }
    }

    /// Reservations in the store's warehouse, in multi-messages; then `reserved` with the rows.
    async fn reserve(&self, works: &mut [Work]) {
        let mut posts: Vec<(usize, Message)> = Vec::new();
        for (i, w) in works.iter().enumerate() {
            if !w.at(Step::Created) {
                continue;
            }
            let (Some(saga), Some(warehouse)) =
                (&w.saga, w.channel.as_ref().and_then(|c| c.store().reservation_warehouse_id))
            else {
                continue;
            };
            let rows: Vec<ReservationRow> = saga
                .rows
                .iter()
                .filter_map(|r| {
                    Some(ReservationRow { row_id: r.row_id, product_id: r.product_id?, quantity: r.quantity })
                })
                .collect();
            let Some(so) = saga.sales_order_id.filter(|_| !rows.is_empty()) else { continue };
            let uri = format!("/warehouse-service/order/{so}/reservation/warehouse/{warehouse}");
            posts.push((i, Message::post(format!("res-{i}"), uri, reservation_body(&rows))));
        }
        let mut reserved: Vec<usize> = Vec::new();
        for chunk in posts.chunks(crate::brightpearl::multimessage::MAX_MESSAGES) {
            let messages: Vec<Message> = chunk.iter().map(|(_, m)| m.clone()).collect();
            match self.brightpearl.multi_message(messages).await {
                Ok(results) => {
                    for ((i, _), r) in chunk.iter().zip(results) {
                        let w = &mut works[*i];
                        let already = r.errors.iter().any(|(code, _)| code == "WHSC-102");
                        match message_error(&r) {
                            _ if r.is_success() || already => reserved.push(*i),
                            e @ Error::Rejected { .. } => {
                                tracing::warn!(order = %w.order_id, error = %e, "reservation refused; order left unreserved");
                            }
                            e => w.fail(&e),
                        }
                    }
                }
                Err(e) => chunk.iter().for_each(|(i, _)| works[*i].fail(&e)),
            }
        }
        self.bump(|r| r.reserved += reserved.len() as u64);
        for w in works.iter_mut().filter(|w| w.at(Step::Created)) {
            let rows = w.saga.as_ref().map(|s| s.rows.clone()).unwrap_or_default();
            self.advance(w, Step::Reserved, |s| s.rows = rows).await;
        }
    }

    /// Customer payments for paid orders, in multi-messages, behind the `paying` intent.
    async fn pay(&self, works: &mut [Work]) {
        for w in works.iter_mut().filter(|w| w.at(Step::Paying)) {
            let so = w.saga.as_ref().and_then(|s| s.sales_order_id).unwrap_or_default();
            w.outcome = Some(Outcome::Parked(format!(
                "customer payment for sales order {so} may have been taken (answer lost): check it, then replay"
            )));
        }
        let mut posts: Vec<(usize, Message)> = Vec::new();
        for (i, w) in works.iter_mut().enumerate() {
            if !w.at(Step::Reserved) {
                continue;
            }
            let Some(order) = w.order.clone() else { continue };
            if !order.paid {
                self.advance(w, Step::Done, |_| {}).await;
                continue;
            }
            if !self.advance(w, Step::Paying, |_| {}).await {
                continue;
            }
            let so = w.saga.as_ref().and_then(|s| s.sales_order_id).unwrap_or_default();
            let payment = NewCustomerPayment {
                order_id: so,
                payment_method_code: self
                    .config
                    .payment_method_code
                    .clone()
                    .unwrap_or_else(|| order.channel.as_str().to_uppercase()),
                currency_code: order.currency.clone(),
                amount: round4(order.total),
                payment_date: order.created_at.unwrap_or_else(Utc::now),
                journal_ref: Some(format!("{} order {}", order.channel, order.number)),
            };
            let body = customer_payment_body(&payment);
            posts.push((i, Message::post(format!("pay-{i}"), "/accounting-service/customer-payment", body)));
        }
        for chunk in posts.chunks(crate::brightpearl::multimessage::MAX_MESSAGES) {
            let messages: Vec<Message> = chunk.iter().map(|(_, m)| m.clone()).collect();
            let results = self.brightpearl.multi_message(messages).await;
            for (n, (i, _)) in chunk.iter().enumerate() {
                let w = &mut works[*i];
                let result = match &results {
                    Ok(r) => r.get(n).map_or(Err(Error::BadInput("no payment result".into())), |r| {
                        if r.is_success() { Ok(()) } else { Err(message_error(r)) }
                    }),
                    Err(e) => Err(clone_error(e)),
                };
                match result {
                    Ok(()) => {
                        if self.advance(w, Step::Done, |_| {}).await {
                            self.bump(|r| r.paid += 1);
                        }
                    }
                    // Not taken: step back so a retry posts it again.
                    Err(e) if surely_not_applied(&e) || matches!(e, Error::Rejected { .. }) => {
                        self.advance(w, Step::Reserved, |_| {}).await;
                        w.fail(&e);
                    }
                    Err(e) => w.fail(&e),
                }
            }
        }
    }

    async fn cancelled_status(&self) -> Result<u64> {
        if let Some(id) = self.config.cancelled_status_id {
            return Ok(id);
        }
        self.brightpearl
            .order_statuses()
            .await?
            .into_iter()
            .find(|s| s.order_type_code == "SO" && s.name.to_lowercase().starts_with("cancel"))
            .map(|s| s.id)
            .ok_or_else(|| {
                Error::config("orders.cancelled_status_id", "the account has no SO status named Cancelled")
            })
    }

    /// The cancellation rule (see the module doc).
    async fn cancel(&self, w: &mut Work) -> Result<Outcome> {
        let step = w.saga.as_ref().map(|s| s.step);
        let mut so = w.saga.as_ref().and_then(|s| s.sales_order_id);
        if step == Some(Step::Creating) && so.is_none() {
            so = self.existing_sales_order(&external_ref(&w.store, &w.order_id)).await?;
        }
        let Some(so) = so else {
            self.save(
                w,
                Saga {
                    step: Step::CancelledBeforeCreate,
                    contact_id: None,
                    sales_order_id: None,
                    rows: vec![],
                    fingerprint: String::new(),
                    cancelled: true,
                },
            )
            .await?;
            self.bump(|r| r.cancelled += 1);
            return Ok(Outcome::Done);
        };
        if w.saga.as_ref().is_some_and(|s| s.cancelled) {
            self.bump(|r| r.duplicates += 1);
            return Ok(Outcome::Done);
        }
        let status = self.cancelled_status().await?;
        let note = format!("Cancelled on {} (order {}).", w.kind, w.order_id);
        let outcome = match self.brightpearl.update_order_status(so, status, Some(&note)).await {
            Ok(()) => {
                self.bump(|r| r.cancelled += 1);
                Outcome::Done
            }
            Err(Error::Rejected { message, .. }) => {
                let text = format!("Cancelled on {} but Brightpearl refused to cancel: {message}", w.kind);
                self.brightpearl.add_order_note(so, &text).await?;
                self.bump(|r| r.notes_added += 1);
                Outcome::Parked(format!("cannot cancel sales order {so}: {message}"))
            }
            Err(e) => return Err(e),
        };
        let mut saga = w.saga.clone().unwrap_or(Saga {
            step: Step::Created,
            contact_id: None,
            sales_order_id: Some(so),
            rows: vec![],
            fingerprint: String::new(),
            cancelled: false,
        });
        saga.sales_order_id = Some(so);
        saga.cancelled = true;
        self.save(w, saga).await?;
        Ok(outcome)
    }

    /// The update rule (see the module doc): a note only when address or lines changed.
    async fn note_update(&self, w: &mut Work) -> Result<()> {
        let (Some(order), Some(saga)) = (w.order.clone(), w.saga.clone()) else { return Ok(()) };
        let now = fingerprint(&order);
        if now == saga.fingerprint {
            self.bump(|r| r.duplicates += 1);
            return Ok(());
        }
        let Some(so) = saga.sales_order_id else { return Ok(()) };
        let text = format!(
            "Changed on {} (order {}): delivery address or lines now {now}. Please review.",
            w.kind, order.number
        );
        self.brightpearl.add_order_note(so, &text).await?;
        self.bump(|r| r.notes_added += 1);
        let mut next = saga;
        next.fingerprint = now;
        self.save(w, next).await
    }

    /// Releases or completes each lease according to the outcome.
    async fn finish(&self, works: &mut [Work]) -> HashMap<String, Outcome> {
        let mut out = HashMap::new();
        for w in works.iter_mut() {
            let mut outcome = w.outcome.clone().unwrap_or_else(|| {
                // Every step ran: what is left undone (no row ids yet...) is retried.
                match w.saga.as_ref().map(|s| s.step) {
                    Some(Step::Done) | Some(Step::CancelledBeforeCreate) => Outcome::Done,
                    _ => Outcome::Retry("order not finished; resuming on the next delivery".into()),
                }
            });
            if let Outcome::Parked(reason) = &outcome
                && let Err(e) = parking::park(self.state.as_ref(), &w.job, reason).await
            {
                outcome = outcome_of(&e);
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

    // ---------- shipments ----------

    /// Posts each shipped goods-out note's carrier and tracking to the channel order, once.
    async fn handle_shipment(&self, note_ids: &[u64]) -> Result<Outcome> {
        let notes = self.brightpearl.goods_out_notes(note_ids).await?;
        if notes.is_empty() {
            return Ok(Outcome::Parked(format!("goods-out notes {note_ids:?} not found")));
        }
        let posted: BTreeSet<Key> = self
            .state
            .batch_get(&notes.iter().map(|n| tracking_key(n.id)).collect::<Vec<_>>())
            .await?
            .into_iter()
            .map(|i| i.key())
            .collect();
        for note in notes.iter().filter(|n| n.shipped) {
            if posted.contains(&tracking_key(note.id)) {
                self.bump(|r| r.duplicates += 1);
                continue;
            }
            let Some((kind, store, order_id)) = self.channel_order_of(note.order_id).await? else {
                return Ok(Outcome::Parked(format!("no channel order for sales order {}", note.order_id)));
            };
            let Some(channel) = self.channels.for_webhook(kind, &store).cloned() else {
                return Ok(Outcome::Parked(format!("no {kind} store named {store:?} is configured")));
            };
            let line_of = self.row_lines(kind, &store, &order_id, note.order_id).await?;
            let mut lines: Vec<(String, u32)> = Vec::new();
            for r in &note.rows {
                let Some(line) = r.order_row_id.and_then(|row| line_of.get(&row).cloned()) else { continue };
                let quantity = u32::try_from(r.quantity).unwrap_or(0);
                match lines.iter_mut().find(|(l, _)| *l == line) {
                    Some((_, q)) => *q += quantity,
                    None => lines.push((line, quantity)),
                }
            }
            let fulfilment = Fulfilment {
                tracking_number: note.tracking_reference.clone().unwrap_or_default(),
                carrier: note.carrier.clone().unwrap_or_default(),
                tracking_url: None,
                lines,
            };
            channel.post_fulfilment(&order_id, &fulfilment).await?;
            let k = tracking_key(note.id);
            let data = json!({"kind": kind, "store": store, "order_id": order_id, "tracking": fulfilment.tracking_number});
            self.state.put(Item::new(k.pk, k.sk, data), Condition::Always).await?;
            self.bump(|r| r.tracking_posted += 1);
        }
        Ok(Outcome::Done)
    }

    /// The channel order of a sales order: our mapping, else the order's externalRef and channel.
    async fn channel_order_of(&self, sales_order_id: u64) -> Result<Option<(ChannelKind, String, String)>> {
        if let Some(item) = self.state.get(&sales_order_key(sales_order_id)).await? {
            let kind = item.data.get("kind").and_then(Value::as_str).and_then(ChannelKind::parse);
            let store = item.data.get("store").and_then(Value::as_str);
            let order = item.data.get("order_id").and_then(Value::as_str);
            if let (Some(k), Some(s), Some(o)) = (kind, store, order) {
                return Ok(Some((k, s.to_string(), o.to_string())));
            }
        }
        let Some(so) = self.brightpearl.sales_orders(&[sales_order_id]).await?.into_iter().next() else {
            return Ok(None);
        };
        let channel = self
            .channels
            .iter()
            .find(|c| so.channel_id.is_some() && c.store().brightpearl_channel_id == so.channel_id);
        Ok(match (channel, so.external_ref) {
            (Some(c), Some(r)) => {
                let store = c.store().name.clone();
                let order_id = r.strip_prefix(&format!("{store}:")).unwrap_or(&r).to_string();
                Some((c.kind(), store, order_id))
            }
            _ => None,
        })
    }

    /// Sales-order row id → channel line id, from the saga, else from the order's rows.
    async fn row_lines(
        &self,
        kind: ChannelKind,
        store: &str,
        order_id: &str,
        sales_order_id: u64,
    ) -> Result<HashMap<u64, String>> {
        if let Some(item) = self.state.get(&saga_key(kind, store, order_id)).await?
            && let Ok(saga) = serde_json::from_value::<Saga>(item.data)
            && !saga.rows.is_empty()
        {
            return Ok(saga.rows.into_iter().filter_map(|r| Some((r.row_id, r.line_id?))).collect());
        }
        let orders = self.brightpearl.sales_orders(&[sales_order_id]).await?;
        Ok(orders.into_iter().flat_map(|o| o.rows).filter_map(|r| Some((r.id, r.external_ref?))).collect())
    }

    // ---------- reconciliation ----------

    /// Lists each store's orders created or updated since its cursor and enqueues those not
    /// yet known, so a missed webhook delays an order and never loses it.
    pub async fn reconcile_orders(&self) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for channel in self.channels.iter() {
            report.stores += 1;
            let store = channel.store().name.clone();
            match self.reconcile_store(channel.as_ref()).await {
                Ok((listed, enqueued)) => {
                    report.listed += listed;
                    report.enqueued += enqueued;
                }
                Err(e) => {
                    tracing::warn!(store = %store, error = %e, "order reconciliation failed for a store");
                    report.failed.push((store, e.to_string()));
                }
            }
        }
        tracing::info!(
            stores = report.stores,
            listed = report.listed,
            enqueued = report.enqueued,
            failed = report.failed.len(),
            "orders reconciled"
        );
        Ok(report)
    }

    async fn reconcile_store(&self, channel: &dyn SalesChannel) -> Result<(usize, usize)> {
        let store = channel.store().name.clone();
        let kind = channel.kind();
        let started = Utc::now();
        let key = cursor_key(&store);
        let cursor: Option<DateTime<Utc>> = self
            .state
            .get(&key)
            .await?
            .and_then(|i| i.data.get("since").and_then(Value::as_str).map(str::to_string))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc));
        let since = match cursor {
            Some(c) => c - chrono::Duration::seconds(self.config.reconcile_overlap_secs as i64),
            None => started - chrono::Duration::seconds(self.config.reconcile_initial_lookback_secs as i64),
        };
        let listed = channel.list_orders_since(since).await?;
        let keys: Vec<Key> = listed.iter().map(|(id, _)| saga_key(kind, &store, id)).collect();
        let known: BTreeSet<Key> = self.state.batch_get(&keys).await?.into_iter().map(|i| i.key()).collect();
        let jobs: Vec<Job> = listed
            .iter()
            .filter(|(id, _)| !known.contains(&saga_key(kind, &store, id)))
            .map(|(id, _)| Job::ChannelOrder {
                channel: kind,
                store: store.clone(),
                order_id: id.clone(),
                event: OrderEvent::Created,
                payload: None,
            })
            .collect();
        if !jobs.is_empty() {
            self.queue.send(&jobs).await?;
        }
        let data = json!({"since": started.to_rfc3339()});
        self.state.put(Item::new(key.pk, key.sk, data), Condition::Always).await?;
        Ok((listed.len(), jobs.len()))
    }
}

#[async_trait]
impl WaveHandler for OrderWriter {
    async fn handle_wave(&self, jobs: Vec<(String, Job)>) -> HashMap<String, Outcome> {
        let mut out = HashMap::new();
        let mut works = Vec::new();
        for (message_id, job) in jobs {
            match &job {
                Job::ChannelOrder { channel, store, order_id, event, .. } => works.push(Work {
                    message_id,
                    kind: *channel,
                    store: store.clone(),
                    order_id: order_id.clone(),
                    event: *event,
                    job: job.clone(),
                    lease: None,
                    channel: None,
                    order: None,
                    saga: None,
                    version: None,
                    new_order: None,
                    outcome: None,
                    resumed_creating: false,
                }),
                Job::Shipment { goods_out_note_ids } => {
                    let outcome =
                        self.handle_shipment(goods_out_note_ids).await.unwrap_or_else(|e| outcome_of(&e));
                    let outcome = match outcome {
                        Outcome::Parked(reason) => {
                            match parking::park(self.state.as_ref(), &job, &reason).await {
                                Ok(_) => Outcome::Parked(reason),
                                Err(e) => outcome_of(&e),
                            }
                        }
                        other => other,
                    };
                    out.insert(message_id, outcome);
                }
                other => {
                    let reason = format!("{} jobs do not belong on the orders queue", other.group_id());
                    let outcome = match parking::park(self.state.as_ref(), other, &reason).await {
                        Ok(_) => Outcome::Parked(reason),
                        Err(e) => outcome_of(&e),
                    };
                    out.insert(message_id, outcome);
                }
            }
        }
        if !works.is_empty() {
            let mut works = self.handle_orders(works).await;
            out.extend(self.finish(&mut works).await);
        }
        out
    }

    async fn undecodable(&self, message: &BatchMessage, reason: &str) {
        tracing::warn!(message_id = %message.message_id, reason, "order message is not a job; dropped");
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Throttled { service, retry_after } => Error::Throttled { service, retry_after: *retry_after },
        Error::Unavailable { service, detail } => Error::Unavailable { service, detail: detail.clone() },
        // Must stay "unknown": treating it as a plain outage could repeat a payment.
        Error::OutcomeUnknown { service, detail } => {
            Error::OutcomeUnknown { service, detail: detail.clone() }
        }
        Error::Rejected { service, status, code, message } => {
            Error::Rejected { service, status: *status, code: code.clone(), message: message.clone() }
        }
        other => Error::Unavailable { service: "brightpearl", detail: other.to_string() },
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn order_address(a: &Address) -> OrderAddress {
    OrderAddress {
        address_full_name: a.full_name.clone(),
        company_name: a.company.clone(),
        address_line1: a.line1.clone().unwrap_or_default(),
        address_line2: a.line2.clone(),
        address_line3: a.line3.clone(),
        address_line4: a.line4.clone(),
        postal_code: a.postcode.clone().unwrap_or_default(),
        // Channels give alpha-2; whether Brightpearl takes it is UNCONFIRMED (apis.md).
        country_iso_code: a.country_code.clone(),
        telephone: a.phone.clone(),
        email: a.email.clone(),
    }
}

fn postal_address(a: &Address) -> Option<PostalAddress> {
    Some(PostalAddress {
        address_line1: a.line1.clone().filter(|l| !l.trim().is_empty())?,
        address_line2: a.line2.clone(),
        address_line3: a.line3.clone(),
        address_line4: a.line4.clone(),
        postal_code: a.postcode.clone().unwrap_or_default(),
        country_iso_code: a.country_code.clone(),
    })
}

/// What matters for an update: the delivery address and the lines (SKU × quantity).
fn fingerprint(order: &ChannelOrder) -> String {
    let address = order
        .delivery_address
        .as_ref()
        .map(|a| {
            [&a.line1, &a.line2, &a.line3, &a.line4, &a.postcode, &a.country_code]
                .iter()
                .filter_map(|p| p.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let lines = order
        .lines
        .iter()
        .map(|l| format!("{} x{}", l.sku.as_deref().unwrap_or(&l.name), l.quantity))
        .collect::<Vec<_>>()
        .join("; ");
    format!("address [{address}], lines [{lines}]")
}
