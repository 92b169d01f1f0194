//! Shipments: each shipped goods-out note's carrier and tracking posted to the channel order,
//! once (`tracking#{note}` records what was posted).

use super::saga::{Saga, saga_key, sales_order_key};
use super::writer::OrderWriter;
use crate::batch::Outcome;
use crate::channels::Fulfilment;
use crate::error::Result;
use crate::queue::ChannelKind;
use crate::state::{Condition, Item, Key};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

fn tracking_key(note_id: u64) -> Key {
    Key::new(format!("tracking#{note_id}"), "posted")
}

impl OrderWriter {
    /// Posts each shipped goods-out note's carrier and tracking to the channel order, once.
    pub(super) async fn handle_shipment(&self, note_ids: &[u64]) -> Result<Outcome> {
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
            // Notes of orders another app wrote (or of a store no longer configured) are not
            // ours to post: skipped and counted, and the rest of the ID set goes on.
            let Some((kind, store, order_id)) = self.channel_order_of(note.order_id).await? else {
                tracing::info!(
                    note = note.id,
                    sales_order = note.order_id,
                    "goods-out note of an order we did not write; skipped"
                );
                self.bump(|r| r.foreign_notes_skipped += 1);
                continue;
            };
            let Some(channel) = self.channels.for_webhook(kind, &store).cloned() else {
                tracing::warn!(note = note.id, store = %store, "goods-out note of a store that is not configured; skipped");
                self.bump(|r| r.foreign_notes_skipped += 1);
                continue;
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
}
