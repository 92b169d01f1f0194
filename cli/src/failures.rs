//! `pearlsync failures list|show|resolve|replay`: parked work by code and store, what it is,
//! what to do, a person's decision, and the replay.

use crate::commands::CliResult;
use crate::progress;
use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::config::{Config, QueueBackend};
use pearlsync::failures::{self, ParkedRecord, Resolution, Selector};
use pearlsync::state::now_epoch_millis;
use pearlsync::worker::QueueWorker;
use serde_json::{Value, json};

/// Ids are long hashes; lists show this much of them (any unique start works in `show`).
const SHORT_ID: usize = 12;

fn short(id: &str) -> &str {
    &id[..id.len().min(SHORT_ID)]
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub async fn list(backends: &Backends) -> CliResult<Value> {
    let records = failures::list(backends.state.as_ref()).await?;
    let now = now_epoch_millis();
    let summary = failures::summarise(&records, now);
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "code": r.code, "store": r.store, "order": r.order_id(),
                "family": r.family(), "attempts": r.attempts, "age_seconds": r.age_seconds(now), "text": r.text,
            })
        })
        .collect();
    Ok(json!({"summary": summary, "records": items}))
}

pub fn list_text(value: &Value) -> String {
    let mut out = String::new();
    let summary = &value["summary"];
    let total = summary["total"].as_u64().unwrap_or(0);
    if total == 0 {
        return "No parked work.\n".into();
    }
    out.push_str(&format!(
        "{total} parked, oldest {}\n\n{:<26} {:<20} {:>5} {:>7}\n",
        age(summary["oldest_age_seconds"].as_i64().unwrap_or(0)),
        "CODE",
        "STORE",
        "COUNT",
        "OLDEST"
    ));
    for g in summary["groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<26} {:<20} {:>5} {:>7}\n",
            g["code"].as_str().unwrap_or("?"),
            g["store"].as_str().unwrap_or(failures::NO_STORE),
            g["count"],
            age(g["oldest_age_seconds"].as_i64().unwrap_or(0))
        ));
    }
    out.push_str(&format!("\n{:<13} {:<24} {:<18} {:<14} TEXT\n", "ID", "CODE", "STORE", "ORDER"));
    for r in value["records"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<13} {:<24} {:<18} {:<14} {}\n",
            short(r["id"].as_str().unwrap_or("")),
            r["code"].as_str().unwrap_or("?"),
            r["store"].as_str().unwrap_or(failures::NO_STORE),
            r["order"].as_str().unwrap_or("-"),
            r["text"].as_str().unwrap_or("")
        ));
    }
    out
}

fn record_json(record: &ParkedRecord) -> Value {
    let now = now_epoch_millis();
    json!({
        "id": record.id, "code": record.code, "family": record.family(), "store": record.store,
        "queue": record.queue, "order": record.order_id(), "job": record.job, "raw_body": record.raw_body,
        "text": record.text, "evidence": record.evidence, "attempts": record.attempts,
        "parked_at_ms": record.parked_at_ms, "first_parked_at_ms": record.first_parked_at_ms,
        "age_seconds": record.age_seconds(now), "what_to_do": record.code.advice(),
    })
}

pub async fn show(backends: &Backends, id: &str) -> CliResult<Value> {
    let (record, _) = failures::find(backends.state.as_ref(), id)
        .await?
        .ok_or_else(|| format!("no parked record {id:?}"))?;
    Ok(record_json(&record))
}

pub fn show_text(value: &Value) -> String {
    let mut out = format!(
        "{}  {}  store {}  parked {} time(s), first {} ago\n{}\n\nWhat to do: {}\n",
        value["id"].as_str().unwrap_or(""),
        value["code"].as_str().unwrap_or("?"),
        value["store"].as_str().unwrap_or(failures::NO_STORE),
        value["attempts"],
        age(value["age_seconds"].as_i64().unwrap_or(0)),
        value["text"].as_str().unwrap_or(""),
        value["what_to_do"].as_str().unwrap_or("")
    );
    if value["evidence"].as_object().is_some_and(|e| !e.is_empty()) {
        out.push_str(&format!("\nEvidence: {}\n", value["evidence"]));
    }
    if !value["job"].is_null() {
        out.push_str(&format!(
            "\nJob: {}\n",
            serde_json::to_string_pretty(&value["job"]).unwrap_or_default()
        ));
    }
    if let Some(raw) = value["raw_body"].as_str() {
        out.push_str(&format!("\nRaw body: {raw}\n"));
    }
    out
}

/// What a replay did; with the local queue it also ran the jobs (nothing else would: `serve`
/// holds the state file while it runs, so it is not running now).
pub async fn replay(
    config: &Config,
    backends: Backends,
    selector: &Selector,
    run_now: bool,
) -> CliResult<Value> {
    let total = failures::list(backends.state.as_ref()).await?.len() as u64;
    let bar = progress::bar(total, "replaying");
    let mut on_progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let report = failures::replay_with_progress(
        backends.state.as_ref(),
        backends.queue.as_ref(),
        selector,
        &mut on_progress,
    )
    .await?;
    bar.finish_and_clear();
    let mut answer = json!({
        "replayed": report.replayed, "skipped": report.skipped,
        "queue": match config.queue.backend { QueueBackend::Sqs => "sqs", QueueBackend::Local => "local" },
    });
    if config.queue.backend == QueueBackend::Local && run_now && !report.replayed.is_empty() {
        answer["ran"] = run_local(config, backends, &report.replayed).await?;
    }
    Ok(answer)
}

/// Works the local queue empty with the replayed jobs in it, and says which came back parked.
async fn run_local(
    config: &Config,
    backends: Backends,
    replayed: &[failures::ReplayedRecord],
) -> CliResult<Value> {
    let app = App::with_backends(config.clone(), backends, "replay")?;
    let worker = QueueWorker::new(&app);
    let spinner = progress::spinner("running replayed jobs");
    let drained = worker.drain(100_000).await?;
    spinner.finish_and_clear();
    let still: Vec<String> = failures::list(app.state.as_ref()).await?.into_iter().map(|r| r.id).collect();
    let parked_again: Vec<&str> =
        replayed.iter().filter(|r| still.contains(&r.id)).map(|r| r.id.as_str()).collect();
    Ok(
        json!({"drain": drained, "parked_again": parked_again, "succeeded": replayed.len() - parked_again.len()}),
    )
}

pub fn replay_text(value: &Value) -> String {
    let replayed = value["replayed"].as_array().map_or(0, Vec::len);
    let skipped = value["skipped"].as_array().map_or(0, Vec::len);
    let mut out = format!(
        "{replayed} replayed onto the {} queue, {skipped} skipped\n",
        value["queue"].as_str().unwrap_or("?")
    );
    for s in value["skipped"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  skipped {}: {}\n",
            short(s["id"].as_str().unwrap_or("")),
            s["reason"].as_str().unwrap_or("")
        ));
    }
    if !value["ran"].is_null() {
        out.push_str(&format!(
            "ran them now: {} succeeded, {} parked again\n",
            value["ran"]["succeeded"],
            value["ran"]["parked_again"].as_array().map_or(0, Vec::len)
        ));
    } else if value["queue"] == "local" && replayed > 0 {
        out.push_str("they run when `pearlsync serve` starts\n");
    }
    out
}

pub async fn resolve(
    config: &Config,
    backends: Backends,
    id: &str,
    resolution: Resolution,
    run_now: bool,
) -> CliResult<Value> {
    let report = failures::resolve(backends.state.as_ref(), backends.queue.as_ref(), id, resolution).await?;
    let mut answer = serde_json::to_value(&report)?;
    if report.replayed && config.queue.backend == QueueBackend::Local && run_now {
        let replayed = [failures::ReplayedRecord {
            id: report.id.clone(),
            code: report.code,
            store: None,
            order: None,
            record_removed: true,
        }];
        answer["ran"] = run_local(config, backends, &replayed).await?;
    }
    Ok(answer)
}

pub fn resolve_text(value: &Value) -> String {
    format!(
        "{} ({}) resolved as {}{}\n",
        short(value["id"].as_str().unwrap_or("")),
        value["code"].as_str().unwrap_or("?"),
        value["resolution"].as_str().unwrap_or("?"),
        if value["replayed"] == true { "; replayed" } else { "" }
    )
}
