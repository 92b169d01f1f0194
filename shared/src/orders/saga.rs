//! The saga record of one channel order (`order#{kind}:{store}:{order_id}` / `saga`, no TTL,
//! written with version compare-and-set) and the identities it hands to Brightpearl.

use super::writer::{OrderWriter, Work};
use crate::error::{Error, Result};
use crate::queue::ChannelKind;
use crate::state::{Condition, Item, Key, PutOutcome};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const SAGA_SK: &str = "saga";
/// Brightpearl's limit on `transactionRef`.
const TRANSACTION_REF_MAX: usize = 64;

/// The recovery point of one channel order. An intent (`Creating`, `Reserving`, `Paying`) is
/// written just before its external effect; finding one on a later attempt means the effect
/// may have happened, so that attempt checks before it repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Intent: the sales-order POST is about to go (the contact is known).
    Creating,
    Created,
    /// Intent: the reservation POST is about to go (the rows are known).
    Reserving,
    Reserved,
    /// Intent: the payment POST is about to go.
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
    /// Set only once Brightpearl accepted the cancellation.
    #[serde(default)]
    pub cancelled: bool,
    /// Whether the order's payment is in Brightpearl: `Some(false)` for an order written
    /// unpaid, so a later update that makes it paid posts the payment. `None` on records
    /// older than this field (their payment, if any, was posted at creation).
    #[serde(default)]
    pub paid: Option<bool>,
    /// Σ of the RECEIPT / CAPTURE payments posted (partial captures post the difference).
    /// `None` on records older than this field.
    #[serde(default)]
    pub paid_amount: Option<rust_decimal::Decimal>,
    /// An AUTH payment was posted (stores with `auth_then_capture`).
    #[serde(default)]
    pub authorized: bool,
    /// The payment behind the `paying` intent (see `payments`).
    #[serde(default)]
    pub pending_payment: Option<PendingPayment>,
    /// One sales credit per channel refund, by the channel's refund id (see `refunds`).
    #[serde(default)]
    pub credits: BTreeMap<String, Credit>,
}

/// A payment about to be posted: its `transactionRef` suffix, type and amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPayment {
    pub suffix: String,
    /// `AUTH`, `CAPTURE` or `RECEIPT`.
    pub payment_type: String,
    pub amount: rust_decimal::Decimal,
}

/// The recovery point of one refund's sales credit: `creating` → `created` (closed or not) →
/// `paying` → `done`. An intent found on a later attempt is checked before it is repeated:
/// the externalRef search for `creating`, the payment search by `transactionRef` for `paying`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditStep {
    Creating,
    Created,
    Paying,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub step: CreditStep,
    pub credit_id: Option<u64>,
    /// Set once Brightpearl accepted the close.
    #[serde(default)]
    pub closed: bool,
    /// The money the refund returned, so the reconciliation can tell a BigCommerce order's
    /// `refunded_amount` from what was credited (absent on credits written before it was kept).
    #[serde(default)]
    pub amount: Option<crate::money::Decimal>,
}

impl Saga {
    pub(super) fn at(step: Step) -> Saga {
        Saga {
            step,
            contact_id: None,
            sales_order_id: None,
            rows: vec![],
            fingerprint: String::new(),
            cancelled: false,
            paid: None,
            paid_amount: None,
            authorized: false,
            pending_payment: None,
            credits: BTreeMap::new(),
        }
    }
}

/// A sales credit's `externalRef`: `{store}:{order}:refund:{refund id}`.
pub fn credit_external_ref(store: &str, order_id: &str, refund_id: &str) -> String {
    format!("{store}:{order_id}:refund:{refund_id}")
}

/// The saga key of a channel order.
pub fn saga_key(kind: ChannelKind, store: &str, order_id: &str) -> Key {
    Key::new(format!("order#{kind}:{store}:{order_id}"), SAGA_SK)
}

/// Sales order → channel order, for shipments.
pub(super) fn sales_order_key(sales_order_id: u64) -> Key {
    Key::new(format!("salesorder#{sales_order_id}"), "channel-order")
}

/// The sales order's `externalRef`: the channel order id qualified by its store. Brightpearl's
/// unique pair (`externalRef` + `installedIntegrationInstanceId`) spans every store of the
/// account, and stores number their orders independently (BigCommerce #100 and WooCommerce
/// #100 are different orders), so the bare id would merge them.
pub fn external_ref(store: &str, order_id: &str) -> String {
    format!("{store}:{order_id}")
}

/// A payment's `transactionRef`: `{store}:{order}:{transaction}`, deterministic so that a
/// repeat is refused by Brightpearl instead of paying twice. Longer than Brightpearl's 64
/// characters, the order part is replaced by a digest (still deterministic and unique).
pub(super) fn transaction_ref(store: &str, order_id: &str, transaction: &str) -> String {
    let full = format!("{store}:{order_id}:{transaction}");
    if full.len() <= TRANSACTION_REF_MAX {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let keep = TRANSACTION_REF_MAX - hex.len() - 1;
    let head: String = full.chars().take(keep).collect();
    format!("{head}~{hex}")
}

fn state_err(e: impl std::fmt::Display) -> Error {
    Error::State(e.to_string())
}

impl OrderWriter {
    /// Writes `saga` if the record is still at the version this attempt read.
    pub(super) async fn save(&self, w: &mut Work, saga: Saga) -> Result<()> {
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

    /// Saves the saga at `step` (with `edit`); on failure the work fails and false is returned.
    pub(super) async fn advance(&self, w: &mut Work, step: Step, edit: impl FnOnce(&mut Saga)) -> bool {
        let mut saga = w.saga.clone().unwrap_or_else(|| Saga::at(step));
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

    /// A fresh record for an order cancelled before it was ever written.
    pub(super) async fn record_cancelled_before_create(&self, w: &mut Work) -> Result<()> {
        let mut saga = Saga::at(Step::CancelledBeforeCreate);
        saga.cancelled = true;
        self.save(w, saga).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_refs_are_deterministic_and_fit_brightpearl() {
        assert_eq!(transaction_ref("main", "1001", "paid"), "main:1001:paid");
        let long_order = "x".repeat(80);
        let a = transaction_ref("main", &long_order, "paid");
        assert_eq!(a.len(), TRANSACTION_REF_MAX);
        assert_eq!(a, transaction_ref("main", &long_order, "paid"));
        assert_ne!(a, transaction_ref("main", &long_order, "refund-1"));
    }

    #[test]
    fn old_records_still_read() {
        let v = serde_json::json!({"step": "reserved", "contact_id": 1, "sales_order_id": 2});
        let s: Saga = serde_json::from_value(v).unwrap();
        assert_eq!(s.step, Step::Reserved);
        assert!(!s.cancelled);
    }
}
