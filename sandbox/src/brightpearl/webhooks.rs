//! Webhooks: events raised by the account, delivered to the subscriptions in the background
//! with the QoS retry rule (apis.md §8.1).

use super::api::{self, Event};
use super::{BrightpearlSandbox, WebhookDelivery, lock, state};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

impl BrightpearlSandbox {
    /// Delivers events to matching subscriptions in the background.
    pub(super) fn fire(&self, events: Vec<Event>) {
        let hooks: Vec<state::WebhookRec> = lock(&self.state).webhooks.values().cloned().collect();
        if hooks.is_empty() || events.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        for event in events {
            if event.ids.is_empty() {
                continue;
            }
            for hook in hooks.iter().filter(|h| subscribes(&h.subscribe_to, event.full_event)) {
                let id_sets: Vec<String> = if hook.id_set_accepted {
                    vec![api::idset_string(&event.ids)]
                } else {
                    event.ids.iter().map(u64::to_string).collect()
                };
                for id_set in id_sets {
                    let (url, body) = render(hook, &self.config.account, event.full_event, &id_set);
                    let http = self.http.clone();
                    let hook = hook.clone();
                    let log = Arc::clone(&self.hook_log);
                    handle.spawn(async move {
                        let status = deliver(&http, &hook, &url, body.clone()).await;
                        lock(&log).push(WebhookDelivery { subscription_id: hook.id, url, body, status });
                    });
                }
            }
        }
    }
}

fn subscribes(subscribe_to: &str, full_event: &str) -> bool {
    full_event == subscribe_to
        || full_event.strip_prefix(subscribe_to).is_some_and(|rest| rest.starts_with('.'))
}

fn render(
    hook: &state::WebhookRec,
    account: &str,
    full_event: &str,
    id_set: &str,
) -> (String, Option<String>) {
    let mut parts = full_event.splitn(3, '.');
    let resource_type = parts.next().unwrap_or_default();
    let lifecycle = parts.next().unwrap_or_default();
    let specifier = parts.next().unwrap_or_default();
    let raised_on = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fill = |t: &str| {
        t.replace("${account-code}", account)
            .replace("${resource-type}", resource_type)
            .replace("${resource-id}", id_set)
            .replace("${lifecycle-event}", lifecycle)
            .replace("${resource-specifier}", specifier)
            .replace("${full-event}", full_event)
            .replace("${raised-on}", &raised_on)
            .replace("${brightpearl-version}", "sandbox-1.0")
    };
    let body = matches!(hook.http_method.to_ascii_uppercase().as_str(), "POST" | "PUT")
        .then(|| hook.body_template.as_deref().map(fill).unwrap_or_default());
    (fill(&hook.uri_template), body)
}

/// QoS 0 retries only on 503; QoS 1 on every failure except 4xx. Three retries at most.
async fn deliver(http: &reqwest::Client, hook: &state::WebhookRec, url: &str, body: Option<String>) -> u16 {
    let method = reqwest::Method::from_bytes(hook.http_method.to_ascii_uppercase().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut status = 0;
    for attempt in 0..4u32 {
        let mut req = http.request(method.clone(), url);
        if let Some(b) = &body {
            req = req
                .header("content-type", hook.content_type.as_deref().unwrap_or("application/json"))
                .body(b.clone());
        }
        status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        let retry = match hook.quality_of_service {
            0 => status == 503,
            _ => !(200..500).contains(&status),
        };
        if !retry {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_prefixes_at_dots() {
        assert!(subscribes("product", "product.modified.on-hand-modified"));
        assert!(subscribes("product.modified.on-hand-modified", "product.modified.on-hand-modified"));
        assert!(!subscribes("prod", "product.modified"));
        assert!(!subscribes("goods-in-note.created", "goods-out-note.modified.shipped"));
    }
}
