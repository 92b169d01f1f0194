//! Reconciliation: each store's orders created or updated since its cursor, enqueued when not
//! yet known, so a missed webhook delays an order and never loses it.

use super::ReconcileReport;
use super::saga::saga_key;
use super::writer::OrderWriter;
use crate::channels::SalesChannel;
use crate::error::Result;
use crate::queue::{Job, OrderEvent};
use crate::state::{Condition, Item, Key};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn cursor_key(store: &str) -> Key {
    Key::new(format!("cursor#orders:{store}"), "reconcile")
}

impl OrderWriter {
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
