//! Registers the webhooks pearlsync needs against a deployed ingress URL: Brightpearl's stock,
//! shipped goods-out and goods-in events, and each store's order webhooks. Existing
//! subscriptions are kept, so running it twice changes nothing.

use crate::brightpearl::{BrightpearlApi, WebhookSubscription};
use crate::channels::ChannelSet;
use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::Serialize;

/// The Brightpearl events the functions consume (see `ingress`).
pub const BRIGHTPEARL_EVENTS: [&str; 3] =
    ["product.modified.on-hand-modified", "goods-out-note.modified.shipped", "goods-in-note.created"];

/// Our body template: every value a string, the id an ID set (`idSetAccepted`).
pub const BRIGHTPEARL_BODY_TEMPLATE: &str = r#"{"accountCode":"${account-code}","resourceType":"${resource-type}","id":"${resource-id}","lifecycleEvent":"${lifecycle-event}","fullEvent":"${full-event}","raisedOn":"${raised-on}","brightpearlVersion":"${brightpearl-version}"}"#;

#[derive(Debug, Default, Serialize)]
pub struct SetupReport {
    pub brightpearl_created: Vec<String>,
    pub brightpearl_existing: Vec<String>,
    pub stores: Vec<String>,
    /// Stores whose registration failed, with the reason; the others were registered.
    pub failed: Vec<(String, String)>,
}

pub async fn register_webhooks(
    brightpearl: &dyn BrightpearlApi,
    channels: &ChannelSet,
    brightpearl_secret: Option<&Secret>,
    base_url: &str,
) -> Result<SetupReport> {
    let base = base_url.trim_end_matches('/');
    let mut report = SetupReport::default();
    let secret = brightpearl_secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        Error::config("BRIGHTPEARL_WEBHOOK_SECRET", "needed to build the Brightpearl webhook URL")
    })?;
    let uri = format!("{base}/webhooks/brightpearl/{}", secret.expose());
    let existing = brightpearl.list_webhooks().await?;
    for event in BRIGHTPEARL_EVENTS {
        if existing.iter().any(|w| w.subscribe_to == event && w.uri_template == uri) {
            report.brightpearl_existing.push(event.to_string());
            continue;
        }
        brightpearl
            .subscribe_webhook(&WebhookSubscription {
                id: None,
                subscribe_to: event.to_string(),
                http_method: "POST".into(),
                uri_template: uri.clone(),
                body_template: Some(BRIGHTPEARL_BODY_TEMPLATE.into()),
                content_type: Some("application/json".into()),
                id_set_accepted: true,
                // At-least-once: retried on every failure but a 4xx (apis.md §1.13).
                quality_of_service: 1,
            })
            .await?;
        report.brightpearl_created.push(event.to_string());
    }
    // A store that fails is reported and the others still get their webhooks.
    for channel in channels.iter() {
        let store = channel.store();
        match channel.register_webhooks(&format!("{base}/webhooks/{}/{}", store.kind, store.name)).await {
            Ok(()) => report.stores.push(store.name.clone()),
            Err(e) => {
                tracing::warn!(store = %store.name, error = %e, "webhook registration failed for a store");
                report.failed.push((store.name.clone(), e.to_string()));
            }
        }
    }
    Ok(report)
}
