//! The customer of a new order: state cache, then exact-email search, then create. A contact
//! whose create answer was lost is found by the email search on the next attempt.
//!
//! The batch's groups run in concurrent lanes, so two orders of one new customer can meet here
//! at once, and Brightpearl's contact search lags its writes: each would create a contact. A
//! per-email lock in the process, with the state cache read again under it, makes the second
//! wait for the first and reuse its contact. (Two Lambda instances can still race, as before.)

use super::rows::{fingerprint, postal_address};
use super::saga::Step;
use super::writer::{OrderWriter, Work};
use crate::brightpearl::NewContact;
use crate::channels::ChannelOrder;
use crate::error::Result;
use crate::state::{Condition, Item, Key};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Per-email async locks, dropped once nobody holds or waits on them.
#[derive(Default)]
pub(super) struct ContactLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ContactLocks {
    fn for_email(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(map.entry(key.pk.clone()).or_default())
    }
}

fn contact_key(email: &str) -> Key {
    Key::new(format!("contact#{}", email.trim().to_lowercase()), "contact")
}

impl OrderWriter {
    /// Contacts for new orders; then the `creating` intent is stored with the contact.
    pub(super) async fn contacts(&self, works: &mut [Work]) {
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
            let mut cached = key.as_ref().and_then(|k| cache.get(k).copied());
            let lock = match (&key, cached) {
                (Some(k), None) => Some(self.contact_locks.for_email(k)),
                _ => None,
            };
            let _guard = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            if let (Some(k), None) = (&key, cached) {
                // Another lane may have created this customer while we waited.
                match self.state.get(k).await {
                    Ok(item) => cached = item.and_then(|i| i.data.get("contact_id").and_then(Value::as_u64)),
                    Err(e) => tracing::warn!(error = %e, "contact cache unreadable; searching Brightpearl"),
                }
                if let Some(id) = cached {
                    cache.insert(k.clone(), id);
                }
            }
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
}
