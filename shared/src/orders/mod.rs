//! order-writer: turns channel orders into Brightpearl sales orders exactly once, posts shipped
//! goods-out notes' tracking back to the channel, and reconciles missed webhooks.
//!
//! Read top to bottom, the files follow one order: `writer` takes a batch and its waves,
//! claims each job and loads its order; `rows` maps SKUs and builds the sales order;
//! `contacts` finds or creates the customer; `saga` records each step and `steps` runs the
//! Brightpearl writes (create, reserve, pay); `cancel` handles cancellations and updates;
//! `refunds` turns channel refunds into closed sales credits with their refund payments;
//! `shipments` posts tracking; `reconcile` catches orders whose webhook was missed.
//!
//! Exactly once, in three layers: the idempotency record on the job stops concurrent and
//! repeated deliveries; the saga record per channel order (compare-and-set by version) holds an
//! intent before every external effect and its result after it (`creating` → `created` →
//! `reserving` → `reserved` → `paying` → `done`); and Brightpearl's own uniqueness
//! (`externalRef` + instance id for orders, `transactionRef` + method for payments) is the
//! last guard. Every write ends `Applied`, `NotApplied` or `Unknown` (`brightpearl::outcome`);
//! an attempt that finds an intent without its result checks before it repeats: the
//! externalRef search for `creating`, the reservation GET for `reserving`, the payment search
//! by `transactionRef` for `paying`.
//!
//! Budget: the jobs of one wave (see `batch`) go through each step together: SKUs in one cached
//! lookup, contacts from the state cache (`contact#{email}`), sales-order POSTs, reservations
//! and payments each in multi-messages of up to 10, row ids in one ID-set GET.
//!
//! Rules chosen where the issues are silent:
//! - **Updates**: an update for an order not yet written creates it (the create webhook may be
//!   lost). Once written, an order note is added only when the delivery address or the lines
//!   (SKU, quantity) changed; never a second order, never row edits.
//! - **Cancellations** are read from the signed body only (`cancelled`), never from the topic
//!   header. Before the sales order exists, the cancellation is recorded and a later create is
//!   skipped. Afterwards, the configured (or the account's "Cancelled…") status is set with a
//!   note and recorded once Brightpearl accepted it; a refusal (shipped, invoiced, paid) adds a
//!   note and parks the job, whose replay tries again.
//! - **Reservations**: a refused reservation (no stock) leaves the order unreserved, as staff
//!   would; an order that already holds one counts as reserved.
//! - **Payments** carry `transactionRef` `{store}:{order}:paid` and the store's payment method
//!   for the order's gateway (`[stores.payments]`); a lost answer is resolved by the payment
//!   search on the next attempt, never by a blind repeat. An order written unpaid is paid when
//!   a later body says so.
//! - **Refunds** travel as `ChannelOrder` jobs with `OrderEvent::Refunded`, so they share the
//!   order's FIFO group and come after its create; each becomes one credit (see `refunds`).
//! - **Contacts**: found by exact primary email (state cache first), else created with the
//!   billing (or delivery) address. Orders without an email get a new contact.

mod cancel;
mod contacts;
mod payments;
mod reconcile;
mod refunds;
mod rows;
mod saga;
mod shipments;
mod steps;
mod writer;

pub use rows::{Refusal, order_rows, readback_mismatch, row_totals, sales_order};
pub use saga::{Credit, CreditStep, Saga, SagaRow, Step, credit_external_ref, external_ref, saga_key};
pub use writer::{OrderWriter, OrderWriterParts};

use crate::error::Result;
use serde::{Deserialize, Serialize};

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
    /// A batch's FIFO groups run in this many concurrent lanes (≥ 1), so a slow group holds
    /// back only its lane. Env `PEARLSYNC_ORDER_LANES`.
    pub lanes: usize,
    /// Times a failed group is tried again within the invocation before the queue retries it.
    /// Each retry goes alone, so it spends more of the shared Brightpearl budget (bench: 2.06
    /// requests per order at 2 lanes and 2 retries, 1.42 at 1 and 0) for a much shorter tail
    /// (p99 8.5 s against 43 s). Env `PEARLSYNC_ORDER_RETRIES_IN_INVOCATION`.
    pub retries_in_invocation: u32,
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
            lanes: 2,
            retries_in_invocation: 2,
        }
    }
}

impl OrdersConfig {
    /// `PEARLSYNC_PAYMENT_METHOD`, `PEARLSYNC_CANCELLED_STATUS_ID`, `PEARLSYNC_MISC_SKU`,
    /// `PEARLSYNC_ORDER_LOCK_SECS`, `PEARLSYNC_RECONCILE_OVERLAP_SECS`, `PEARLSYNC_ORDER_LANES`,
    /// `PEARLSYNC_ORDER_RETRIES_IN_INVOCATION`.
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
        if let Some(v) = parse_var(env, "PEARLSYNC_ORDER_LANES")? {
            self.lanes = v;
        }
        if let Some(v) = parse_var(env, "PEARLSYNC_ORDER_RETRIES_IN_INVOCATION")? {
            self.retries_in_invocation = v;
        }
        if self.lanes == 0 {
            return Err(crate::error::Error::config("orders.lanes", "must be at least 1"));
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
    /// Sales credits created for channel refunds, and their refund payments posted.
    pub credits_created: u64,
    pub refunds_paid: u64,
    pub cancelled: u64,
    pub notes_added: u64,
    pub tracking_posted: u64,
    /// Goods-out notes of orders this project did not write (another app's), skipped.
    pub foreign_notes_skipped: u64,
    /// Writes whose answer was lost, resolved by a check on a later attempt.
    pub unknown_outcomes: u64,
    /// Brightpearl HTTP requests made by the writer, retries included.
    pub brightpearl_requests: u64,
    /// Reserved or cancelled orders whose pending entry could not be settled (the poll
    /// settles them from the saga).
    pub pending_not_settled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub stores: usize,
    /// Orders the channels listed as created or updated since the cursors.
    pub listed: usize,
    /// Of those, orders not yet known, enqueued for the writer.
    pub enqueued: usize,
    /// Of the known orders, those whose listed refunds the saga has not all credited (a lost
    /// refund webhook), enqueued as refund jobs.
    pub refunds_enqueued: usize,
    /// Goods-out notes the tracking sweep found shipped since its cursor.
    pub shipped_notes_swept: usize,
    /// Stores whose listing failed (or `tracking`), with the reason; their cursor stays put.
    pub failed: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(pairs: &[(&str, &str)]) -> Result<OrdersConfig> {
        let mut config = OrdersConfig::default();
        config.apply_env(&|name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))?;
        Ok(config)
    }

    #[test]
    fn lanes_and_retries_come_from_the_environment_and_zero_lanes_is_refused() {
        let config =
            with_env(&[("PEARLSYNC_ORDER_LANES", "1"), ("PEARLSYNC_ORDER_RETRIES_IN_INVOCATION", "0")])
                .unwrap();
        assert_eq!((config.lanes, config.retries_in_invocation), (1, 0));
        let defaults = with_env(&[]).unwrap();
        assert_eq!((defaults.lanes, defaults.retries_in_invocation), (2, 2));
        let refused = with_env(&[("PEARLSYNC_ORDER_LANES", "0")]).unwrap_err();
        assert!(refused.to_string().contains("orders.lanes"), "{refused}");
    }
}
