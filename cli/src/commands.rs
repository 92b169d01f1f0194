//! `invoke`, `serve`, `reconcile`, `replay` and `setup-webhooks`.

use pearlsync::app::App;
use pearlsync::ingress::{Ingress, http};
use pearlsync::inventory::PollTrigger;
use pearlsync::queue::{Job, QueueName};
use pearlsync::reorder::CheckOptions;
use pearlsync::worker::QueueWorker;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Function {
    InventoryPoll,
    OrderWriter,
    WebhookIngress,
    ReorderChecker,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::InventoryPoll => "inventory-poll",
            Function::OrderWriter => "order-writer",
            Function::WebhookIngress => "webhook-ingress",
            Function::ReorderChecker => "reorder-checker",
        }
    }
}

/// Runs one function's handler on one event, exactly as its Lambda `main` does.
pub async fn invoke(app: &App, function: Function, event: Value) -> CliResult<Value> {
    let answer = match function {
        Function::InventoryPoll => app.inventory_poll().handle_event(event).await?,
        Function::OrderWriter => app.order_writer().handle_event(event).await?,
        Function::WebhookIngress => Ingress::from_app(app).handle_event(event).await?,
        Function::ReorderChecker => app.reorder_checker().handle_event(event).await?,
    };
    Ok(answer)
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub inventory_every: Duration,
    pub reorder_every: Duration,
    pub reconcile_every: Duration,
}

/// The four concerns in one process: the webhook listener, a queue worker and a scheduler.
/// On SIGTERM or Ctrl-C it stops taking webhooks, stops the schedules, and works the queue
/// empty before it exits, so no accepted job is lost.
pub async fn serve(
    app: App,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> CliResult<()> {
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    eprintln!("pearlsync serve: webhooks on http://{}/webhooks/...", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(listener, Arc::new(Ingress::from_app(&app)), async move {
        let _ = http_stop.changed().await;
    }));
    let worker = Arc::new(QueueWorker::new(&app));
    let mut tasks = Vec::new();
    for queue in QueueName::ALL.into_iter().flat_map(|q| std::iter::repeat_n(q, worker.consumers(q))) {
        let worker = Arc::clone(&worker);
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            // A batch in hand always finishes: stopping only ends the loop between batches.
            while !*stop.borrow() {
                if let Err(e) = worker.poll_once(queue, Duration::from_secs(1)).await {
                    tracing::error!(queue = queue.as_str(), error = %e, "queue worker");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for (name, every) in [
        ("poll-inventory", options.inventory_every),
        ("check-reorders", options.reorder_every),
        ("reconcile-orders", options.reconcile_every),
    ] {
        let worker = Arc::clone(&worker);
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.changed() => break,
                }
                let outcome = match name {
                    "poll-inventory" => worker.inventory.run(PollTrigger::Scheduled).await.map(|r| json!(r)),
                    "check-reorders" => {
                        worker.reorder.run_check(CheckOptions { dry_run: false }).await.map(|r| json!(r))
                    }
                    _ => worker.orders.reconcile_orders().await.map(|r| json!(r)),
                };
                match outcome {
                    Ok(report) => tracing::info!(task = name, %report, "scheduled run"),
                    Err(e) => tracing::error!(task = name, error = %e, "scheduled run failed"),
                }
            }
        }));
    }
    shutdown.await;
    eprintln!("pearlsync serve: stopping; finishing queued work");
    let _ = stop_tx.send(true);
    let _ = server.await;
    for t in tasks {
        let _ = t.await;
    }
    let drained = worker.drain(100_000).await?;
    eprintln!("pearlsync serve: drained {} messages; bye", drained.messages);
    Ok(())
}

/// SIGTERM (how a service manager stops us) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Drift between Brightpearl and one store, read-only; with `fix`, a reconciling poll
/// repairs it (that poll covers every store, as the scheduled one would).
pub async fn reconcile(app: &App, store: &str, fix: bool) -> CliResult<Value> {
    let poll = app.inventory_poll();
    let drift = poll.drift(store).await?;
    if !fix {
        return Ok(json!({"store": store, "fixed": false, "drift": drift}));
    }
    let report = poll.run(PollTrigger::Full { reconcile: true }).await?;
    let repaired = report.channels.into_iter().find(|c| c.name == store).map(|c| c.repaired);
    Ok(json!({"store": store, "fixed": true, "drift_before": drift, "repaired": repaired}))
}

/// Re-queues parked jobs whose text contains `reason` (fresh deduplication ids, records removed
/// after the send); with `dlq`, also moves SQS DLQ messages back to their queues.
pub async fn replay(app: &App, reason: &str, dlq_urls: &[(QueueName, String)]) -> CliResult<Value> {
    let selector = pearlsync::failures::Selector::Text(reason.to_string());
    let parked = pearlsync::failures::replay(app.state.as_ref(), app.queue.as_ref(), &selector).await?;
    let mut moved = 0usize;
    if !dlq_urls.is_empty() {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_sqs::Client::new(&config);
        for (queue, url) in dlq_urls {
            loop {
                let out = client.receive_message().queue_url(url).max_number_of_messages(10).send().await?;
                if out.messages().is_empty() {
                    break;
                }
                for message in out.messages() {
                    let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else {
                        continue;
                    };
                    let job = match Job::decode(body) {
                        Ok(job) if job.queue() == *queue => job,
                        Ok(_) | Err(_) => {
                            eprintln!("leaving an undecodable or misrouted message in {url}");
                            continue;
                        }
                    };
                    // A dead letter was delivered before: on FIFO its content id may still be
                    // inside the five-minute window, so it goes as a replay.
                    app.queue.send_replay(&[job]).await?;
                    client.delete_message().queue_url(url).receipt_handle(receipt).send().await?;
                    moved += 1;
                }
            }
        }
    }
    Ok(
        json!({"parked_replayed": parked.replayed.len(), "replayed": parked.replayed, "skipped": parked.skipped, "dlq_moved": moved}),
    )
}
