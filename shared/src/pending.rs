//! Units of a store's orders that the shop has sold but Brightpearl has not reserved yet.
//!
//! Between a shop's sale and the order's reservation in Brightpearl, the units are still in
//! Brightpearl's `onHand`: a push in that window would hand them back to the shop (an
//! oversell). So the inventory subtracts them: what a shop should show = sellable − pending −
//! buffer.
//!
//! The ledger: ingress records every order delivery of a store (`pending#{store}` /
//! `{order id}`, two-day TTL) with the lines its signed body carries. Each inventory run reads
//! the store's ledger and, per entry, the order's saga (`orders::saga_key`):
//! - no saga yet, or `creating`: the body's lines count, by SKU;
//! - `created` / `reserving`: the saga's rows count, by Brightpearl product id (BigCommerce's
//!   thin webhooks carry no lines, so their units count from here on);
//! - `reserved` or later, or cancelled: settled. The entry is deleted (only at the version read,
//!   so a newer delivery is kept) and the saga's products are reported as touched: their
//!   `onHand` moved without a goods movement (a reservation or a released one is not known to
//!   be one, apis.md §8.2), so the change-driven poll reads them again.
//!
//! The writer settles an entry itself as soon as it reserves or cancels the order ([`settle`]):
//! the entry then names the touched products and the poll reads no saga for it. A settlement
//! that fails costs nothing but that read: the poll still settles the entry from the saga.

use crate::channels::ChannelSet;
use crate::error::{Error, Result};
use crate::orders::{Saga, Step, saga_key};
use crate::queue::ChannelKind;
use crate::state::{Condition, Item, Key, StateStore, now_epoch_seconds};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

const PK_PREFIX: &str = "pending#";
/// An entry the writer never settles (a parked order) stops holding stock after two days.
const TTL_SECONDS: i64 = 2 * 24 * 3600;
/// Sagas read per `batch_get`.
const SAGA_BATCH: usize = 100;

/// One order delivery as ingress saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOrder {
    pub channel: ChannelKind,
    /// (SKU, units) from the signed body; empty when the body carries none or cancels.
    #[serde(default)]
    pub lines: Vec<(String, i64)>,
    /// The body says the order is cancelled.
    #[serde(default)]
    pub cancelled: bool,
    /// Written by the writer once the order is reserved or cancelled: the products whose
    /// `onHand` that moved. `None` while the order still holds units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<Vec<u64>>,
}

/// Pending units of one store, and the products whose orders settled since the last read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    pub by_sku: HashMap<String, i64>,
    pub by_product: HashMap<u64, i64>,
    /// Products of orders reserved or cancelled since the ledger was last read.
    pub touched: BTreeSet<u64>,
    /// Orders still holding units.
    pub open_orders: usize,
    /// Ledger entries found settled, with the version read: forgotten once a run has read
    /// their products ([`forget_settled`]).
    pub settled: Vec<(Key, u64)>,
}

impl Pending {
    /// Units held for this product (its id or its SKU: one order counts under one only).
    pub fn units(&self, product_id: u64, sku: &str) -> i64 {
        self.by_product.get(&product_id).copied().unwrap_or(0) + self.by_sku.get(sku).copied().unwrap_or(0)
    }
}

fn pk(store: &str) -> String {
    format!("{PK_PREFIX}{store}")
}

/// Records an order delivery (ingress, before the job is queued). A later delivery of the same
/// order replaces the entry: the newest body says what is sold.
pub async fn record(state: &dyn StateStore, store: &str, order_id: &str, order: &PendingOrder) -> Result<()> {
    let data = serde_json::to_value(order).map_err(|e| Error::State(e.to_string()))?;
    let item = Item::new(pk(store), order_id, data).with_expiry(now_epoch_seconds() + TTL_SECONDS);
    state.put(item, Condition::Always).await?;
    Ok(())
}

/// The entry ingress records for a delivery: the normalised order's SKU lines, or only the
/// cancellation. `None` when the body cannot be read (the writer will say why).
pub fn from_delivery(
    channels: &ChannelSet,
    store: &str,
    payload: Option<&serde_json::Value>,
) -> Option<PendingOrder> {
    let channel = channels.get(store)?;
    let kind = channel.kind();
    let Some(payload) = payload else {
        return Some(PendingOrder { channel: kind, lines: vec![], cancelled: false, settled: None });
    };
    let order = channel.normalise_order(payload).ok()?;
    // From the signed body only: a topic header decides nothing.
    let cancelled = order.cancelled;
    let lines = if cancelled {
        vec![]
    } else {
        order
            .lines
            .iter()
            .filter_map(|l| Some((l.sku.clone().filter(|s| !s.is_empty())?, i64::from(l.quantity))))
            .collect()
    };
    Some(PendingOrder { channel: kind, lines, cancelled, settled: None })
}

/// Settles an order's entry (the writer, once it reserved or cancelled the order): its units
/// stop counting, and `products` (its Brightpearl products, whose `onHand` moved) are read by
/// the next poll, which then forgets the entry. Written whether or not ingress recorded one,
/// so the poll learns of the products either way; it expires like any entry.
pub async fn settle(
    state: &dyn StateStore,
    store: &str,
    order_id: &str,
    channel: ChannelKind,
    products: Vec<u64>,
) -> Result<()> {
    let settled = PendingOrder { channel, lines: vec![], cancelled: false, settled: Some(products) };
    record(state, store, order_id, &settled).await
}

/// Reads a store's ledger against the sagas (see the module doc); returns the state reads.
pub async fn load(state: &dyn StateStore, store: &str) -> Result<(Pending, u64)> {
    let entries = state.query(&pk(store), "").await?;
    let mut reads = entries.len().max(1) as u64;
    let mut pending = Pending::default();
    let mut decoded: Vec<(Item, PendingOrder)> = Vec::with_capacity(entries.len());
    for item in entries {
        match serde_json::from_value::<PendingOrder>(item.data.clone()) {
            Ok(order) => decoded.push((item, order)),
            Err(e) => {
                tracing::warn!(store, order = %item.sk, error = %e, "pending entry unreadable; ignored")
            }
        }
    }
    // Entries the writer settled need no saga read.
    let (settled_by_writer, decoded): (Vec<_>, Vec<_>) =
        decoded.into_iter().partition(|(_, o)| o.settled.is_some());
    for (item, order) in settled_by_writer {
        pending.touched.extend(order.settled.unwrap_or_default());
        pending.settled.push((item.key(), item.version));
    }
    for batch in decoded.chunks(SAGA_BATCH) {
        let keys: Vec<Key> = batch.iter().map(|(item, o)| saga_key(o.channel, store, &item.sk)).collect();
        let sagas: HashMap<String, Saga> = state
            .batch_get(&keys)
            .await?
            .into_iter()
            .filter_map(|i| Some((i.pk, serde_json::from_value::<Saga>(i.data).ok()?)))
            .collect();
        reads += batch.len() as u64;
        for ((item, order), key) in batch.iter().zip(keys) {
            let saga = sagas.get(&key.pk);
            let settled = match saga {
                Some(s) => s.cancelled || s.step >= Step::Reserved,
                None => order.cancelled,
            };
            if settled {
                if let Some(s) = saga {
                    pending.touched.extend(s.rows.iter().filter_map(|r| r.product_id));
                }
                pending.settled.push((item.key(), item.version));
                continue;
            }
            pending.open_orders += 1;
            match saga {
                Some(s) if s.step >= Step::Created && !s.rows.is_empty() => {
                    for r in &s.rows {
                        if let Some(p) = r.product_id {
                            *pending.by_product.entry(p).or_default() += r.quantity;
                        }
                    }
                }
                _ => {
                    for (sku, units) in &order.lines {
                        *pending.by_sku.entry(sku.clone()).or_default() += units;
                    }
                }
            }
        }
    }
    Ok((pending, reads))
}

/// Deletes the settled entries, each only at the version read: a delivery recorded since
/// then is kept. Returns the writes made.
pub async fn forget_settled(state: &dyn StateStore, pending: &Pending) -> Result<u64> {
    for (key, version) in &pending.settled {
        state.delete(key, Condition::VersionIs(*version)).await?;
    }
    Ok(pending.settled.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_counts_under_its_product_or_its_sku() {
        let pending = Pending {
            by_sku: [("A".to_string(), 2)].into_iter().collect(),
            by_product: [(7, 3)].into_iter().collect(),
            ..Pending::default()
        };
        assert_eq!(pending.units(7, "A"), 5);
        assert_eq!(pending.units(8, "A"), 2);
        assert_eq!(pending.units(7, "B"), 3);
        assert_eq!(pending.units(9, "C"), 0);
    }
}
