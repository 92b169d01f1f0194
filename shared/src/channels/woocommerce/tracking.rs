//! WooCommerce tracking through the Shipment Tracking extension, in one of its two documented
//! forms: a provider of its list (`tracking_provider`: the store's `tracking_providers` map
//! first, else a provider of the extension's own list whose name is the carrier's, read once
//! from its public providers route), or a custom provider with its link (`custom_tracking_provider` +
//! `custom_tracking_link`, the link from the shipment or the store's
//! `tracking_url_templates`). When the extension is not installed (its routes answer 404
//! `rest_no_route`), or the carrier has neither a provider nor a link, the tracking goes into
//! a customer-visible order note with carrier, number and link. The order status is left to
//! the merchant.

use super::{SERVICE, WooCommerceChannel};
use crate::channels::http::{Reply, Retry, with_query};
use crate::channels::{Fulfilment, StoreConfig, text};
use crate::error::Result;
use chrono::Utc;
use serde_json::{Value, json};

/// The Shipment Tracking item for `fulfilment`, or `None` when neither documented form can be
/// made (no provider for the carrier, and no link). `listed` is the extension's provider names.
pub(crate) fn tracking_item(
    store: &StoreConfig,
    listed: &[String],
    fulfilment: &Fulfilment,
    date_shipped: &str,
) -> Option<Value> {
    let carrier = fulfilment.carrier.trim();
    let number = fulfilment.tracking_number.trim();
    let lookup = |map: &std::collections::BTreeMap<String, String>| {
        map.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(carrier)).map(|(_, v)| v.trim().to_string())
    };
    let provider = lookup(&store.tracking_providers).filter(|p| !p.is_empty()).or_else(|| {
        listed.iter().find(|name| !carrier.is_empty() && name.trim().eq_ignore_ascii_case(carrier)).cloned()
    });
    if let Some(provider) = provider {
        return Some(
            json!({"tracking_provider": provider, "tracking_number": number, "date_shipped": date_shipped}),
        );
    }
    let link = fulfilment
        .tracking_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .or_else(|| {
            lookup(&store.tracking_url_templates)
                .map(|t| t.replace("%1$s", number).replace("{number}", number))
        })?;
    if carrier.is_empty() {
        return None;
    }
    Some(json!({
        "custom_tracking_provider": carrier,
        "custom_tracking_link": link,
        "tracking_number": number,
        "date_shipped": date_shipped,
    }))
}

/// The note that carries the tracking when the extension cannot.
pub(crate) fn tracking_note(fulfilment: &Fulfilment, link: Option<&str>) -> String {
    let mut note =
        format!("Shipped with {}: tracking number {}", fulfilment.carrier, fulfilment.tracking_number);
    if let Some(link) = link {
        note.push_str(&format!(" ({link})"));
    }
    let lines = fulfilment.lines.iter().map(|(k, q)| format!("{q} × {k}")).collect::<Vec<_>>().join(", ");
    if !lines.is_empty() {
        note.push_str(&format!(". Items: {lines}"));
    }
    note
}

/// A 404 that says the route does not exist: the extension is not installed. A 404 for an
/// unknown order says something else and is an error.
fn no_route(reply: &Reply) -> bool {
    reply.status == 404
        && serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|b| b.get("code").and_then(Value::as_str).map(|c| c == "rest_no_route"))
            .unwrap_or(false)
}

/// The provider names of the extension's providers answer (`{"region": {"name": "link"}}`).
fn provider_names(answer: &Value) -> Vec<String> {
    answer
        .as_object()
        .into_iter()
        .flat_map(|regions| regions.values())
        .filter_map(Value::as_object)
        .flat_map(|providers| providers.keys().cloned())
        .collect()
}

impl WooCommerceChannel {
    /// The extension's provider names, read once per client; empty without the extension.
    async fn listed_providers(&self) -> Result<Vec<String>> {
        if let Some(names) = self.providers.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(names);
        }
        let url = with_query(&self.url("wc-shipment-tracking/v3/shipment-trackings/providers"), &[])?;
        let reply = self.call(reqwest::Method::GET, url, None, Retry::Idempotent).await?;
        let names =
            if no_route(&reply) { Vec::new() } else { provider_names(&reply.ok(SERVICE)?.json(SERVICE)?) };
        *self.providers.lock().unwrap_or_else(|p| p.into_inner()) = Some(names.clone());
        Ok(names)
    }

    pub(super) async fn post_tracking(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        let tracking_path = format!("wc-shipment-tracking/v3/orders/{order_id}/shipment-trackings");
        let url = with_query(&self.url(&tracking_path), &[])?;
        let existing = self.call(reqwest::Method::GET, url, None, Retry::Idempotent).await?;
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let mut item = tracking_item(&self.store, &[], fulfilment, &today);
        if !no_route(&existing) {
            let existing = existing.ok(SERVICE)?.json(SERVICE)?;
            let already =
                existing.as_array().into_iter().flatten().any(|t| {
                    text(t, "tracking_number").as_deref() == Some(fulfilment.tracking_number.trim())
                });
            if already {
                tracing::info!(store = %self.store.name, order_id, "tracking already recorded; skipped");
                return Ok(());
            }
            if item.as_ref().is_none_or(|i| i.get("tracking_provider").is_none()) {
                // Not in the store's map: a provider of the extension's list by the same name?
                let listed = self.listed_providers().await?;
                item = tracking_item(&self.store, &listed, fulfilment, &today);
            }
            if let Some(body) = &item {
                let reply = self.post(&tracking_path, body.clone(), Retry::ThrottleOnly).await?;
                if !no_route(&reply) {
                    reply.ok(SERVICE)?;
                    return Ok(());
                }
            } else {
                tracing::warn!(store = %self.store.name, order_id, carrier = %fulfilment.carrier, "no tracking provider or link for this carrier; writing an order note instead");
            }
        }
        let link = item
            .as_ref()
            .and_then(|i| i.get("custom_tracking_link"))
            .and_then(Value::as_str)
            .or(fulfilment.tracking_url.as_deref());
        self.post_note(order_id, fulfilment, link).await
    }

    async fn post_note(&self, order_id: &str, fulfilment: &Fulfilment, link: Option<&str>) -> Result<()> {
        let notes_path = format!("wc/v3/orders/{order_id}/notes");
        let notes = self.get(&notes_path, &[("per_page", "100".into())]).await?;
        let already = notes
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| text(n, "note").is_some_and(|t| t.contains(fulfilment.tracking_number.trim())));
        if already {
            return Ok(());
        }
        let note = tracking_note(fulfilment, link);
        self.post(&notes_path, json!({"note": note, "customer_note": true}), Retry::ThrottleOnly)
            .await?
            .ok(SERVICE)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StoreConfig {
        let mut store = StoreConfig::default();
        store.tracking_providers.insert("Royal Mail".into(), "royal-mail".into());
        store
            .tracking_url_templates
            .insert("Evri".into(), "https://www.evri.com/track/parcel/{number}".into());
        store
    }

    fn shipment(carrier: &str, url: Option<&str>) -> Fulfilment {
        Fulfilment {
            tracking_number: "AB123".into(),
            carrier: carrier.into(),
            tracking_url: url.map(str::to_string),
            lines: vec![("SHIRT".into(), 2)],
        }
    }

    #[test]
    fn a_mapped_carrier_is_a_known_provider() {
        let item = tracking_item(&store(), &[], &shipment(" royal mail ", None), "2026-12-01").unwrap();
        assert_eq!(item["tracking_provider"], "royal-mail");
        assert!(item.get("custom_tracking_provider").is_none());
        assert_eq!(item["tracking_number"], "AB123");
    }

    #[test]
    fn an_unmapped_carrier_is_custom_with_a_link_from_the_shipment_or_a_template() {
        let item =
            tracking_item(&store(), &[], &shipment("DPD Local", Some("https://dpd.example/AB123")), "d")
                .unwrap();
        assert_eq!(
            (item["custom_tracking_provider"].as_str(), item["custom_tracking_link"].as_str()),
            (Some("DPD Local"), Some("https://dpd.example/AB123"))
        );
        let item = tracking_item(&store(), &[], &shipment("Evri", None), "d").unwrap();
        assert_eq!(item["custom_tracking_link"], "https://www.evri.com/track/parcel/AB123");
    }

    #[test]
    fn a_carrier_named_like_a_listed_provider_is_that_provider() {
        let answer =
            json!({"Global": {"Aramex": "https://a/%1$s"}, "United States": {"USPS": "https://u/%1$s"}});
        let listed = provider_names(&answer);
        let item = tracking_item(&store(), &listed, &shipment("usps", None), "d").unwrap();
        assert_eq!(item["tracking_provider"], "USPS");
        assert!(tracking_item(&store(), &listed, &shipment("Pigeon Post", None), "d").is_none());
    }

    #[test]
    fn no_provider_and_no_link_makes_no_item() {
        assert!(tracking_item(&store(), &[], &shipment("Pigeon Post", None), "d").is_none());
        assert!(tracking_item(&store(), &[], &shipment("", Some("https://x.example/1")), "d").is_none());
    }

    #[test]
    fn the_note_carries_carrier_number_and_link() {
        let note = tracking_note(&shipment("DPD", None), Some("https://dpd.example/AB123"));
        assert!(
            note.contains("DPD") && note.contains("AB123") && note.contains("https://dpd.example/AB123"),
            "{note}"
        );
    }
}
