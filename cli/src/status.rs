//! `pearlsync status`: per store, the last successful inventory poll, order reconciliation and
//! tracking sweep; the queues' depth and oldest age; parked work by code; the Brightpearl
//! budget as last seen.

use crate::commands::CliResult;
use pearlsync::backends::Backends;
use pearlsync::config::Config;
use pearlsync::failures;
use pearlsync::freshness::{self, Flow};
use pearlsync::queue::QueueName;
use pearlsync::state::now_epoch_millis;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub async fn status(config: &Config, backends: &Backends) -> CliResult<Value> {
    let now = now_epoch_millis();
    let fresh = freshness::read(backends.state.as_ref(), None).await?;
    let records = failures::list(backends.state.as_ref()).await?;
    let mut names: Vec<String> = config.stores.iter().map(|s| s.name.clone()).collect();
    for name in fresh.iter().map(|f| f.store.clone()).chain(records.iter().filter_map(|r| r.store.clone())) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let stores: Vec<Value> = names
        .iter()
        .map(|store| {
            let mut flows = serde_json::Map::new();
            for flow in Flow::ALL {
                let last = fresh.iter().find(|f| f.flow == flow && &f.store == store);
                flows.insert(
                    flow.as_str().into(),
                    json!({
                        "last_success_ms": last.map(|f| f.last_success_ms),
                        "age_seconds": last.map(|f| f.age_seconds),
                    }),
                );
            }
            let mut parked: BTreeMap<&str, usize> = BTreeMap::new();
            for r in records.iter().filter(|r| r.store.as_deref() == Some(store.as_str())) {
                *parked.entry(r.code.as_str()).or_default() += 1;
            }
            json!({"store": store, "flows": flows, "parked": parked})
        })
        .collect();
    let mut queues = serde_json::Map::new();
    for queue in QueueName::ALL {
        let stats = match backends.queue.stats(queue).await {
            Ok(stats) => json!(stats),
            Err(e) => json!({"error": e.to_string()}),
        };
        queues.insert(queue.as_str().into(), stats);
    }
    let summary = failures::summarise(&records, now);
    let budget = freshness::read_budget(backends.state.as_ref()).await?.map(|b| {
        json!({
            "limit": b.limit, "remaining": b.remaining, "used": b.limit.saturating_sub(b.remaining),
            "sent_last_minute": b.sent_last_minute, "seen_by": b.function,
            "seen_seconds_ago": (now - b.at_ms).max(0) / 1000,
        })
    });
    Ok(json!({
        "stores": stores,
        "queues": queues,
        "parked": {"total": summary.total, "by_code": summary.by_code, "oldest_age_seconds": summary.oldest_age_seconds},
        "brightpearl_budget": budget,
    }))
}

fn age(value: &Value) -> String {
    match value.as_i64() {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s}s ago"),
        Some(s) if s < 7200 => format!("{}m ago", s / 60),
        Some(s) => format!("{}h ago", s / 3600),
    }
}

pub fn status_text(value: &Value) -> String {
    let mut out = format!("{:<20} {:<14} {:<14} {:<14} PARKED\n", "STORE", "POLL", "RECONCILE", "TRACKING");
    for s in value["stores"].as_array().into_iter().flatten() {
        let parked: Vec<String> =
            s["parked"].as_object().into_iter().flatten().map(|(code, n)| format!("{code}={n}")).collect();
        out.push_str(&format!(
            "{:<20} {:<14} {:<14} {:<14} {}\n",
            s["store"].as_str().unwrap_or("?"),
            age(&s["flows"]["inventory_poll"]["age_seconds"]),
            age(&s["flows"]["order_reconciliation"]["age_seconds"]),
            age(&s["flows"]["tracking_sweep"]["age_seconds"]),
            if parked.is_empty() { "-".into() } else { parked.join(" ") }
        ));
    }
    out.push('\n');
    for (name, q) in value["queues"].as_object().into_iter().flatten() {
        if let Some(e) = q["error"].as_str() {
            out.push_str(&format!("queue {name:<11} unavailable: {e}\n"));
            continue;
        }
        out.push_str(&format!(
            "queue {name:<11} {} waiting, {} in flight, oldest {}\n",
            q["visible"],
            q["in_flight"],
            q["oldest_age_seconds"].as_i64().map_or("-".into(), |s| format!("{s}s"))
        ));
    }
    out.push_str(&format!(
        "\nparked      {} ({})\n",
        value["parked"]["total"],
        value["parked"]["by_code"].as_object().map_or(String::new(), |m| m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "))
    ));
    match value["brightpearl_budget"].as_object() {
        Some(b) => out.push_str(&format!(
            "brightpearl {} of {} used in the window ({} sent by {} in its last minute, seen {}s ago)\n",
            b["used"],
            b["limit"],
            b["sent_last_minute"],
            b["seen_by"].as_str().unwrap_or("?"),
            b["seen_seconds_ago"]
        )),
        None => out.push_str("brightpearl budget not seen yet\n"),
    }
    out
}
