//! Builds the state store and the queue that the configuration names, once per process.
//! On Lambda the embedded store's file is opened (created, if new) by the first call that
//! needs it, not at init: a cold start touches no disk (issue 18).

use crate::aws::SharedSdkConfig;
use crate::config::{Config, QueueBackend, StateBackend};
use crate::error::{Error, Result};
use crate::queue::{
    DurableQueue, InProcessQueue, JobQueue, QueueName, QueueStats, ReceivedJob, SqsQueue, SqsQueueUrls,
};
use crate::state::{Condition, DynamoStore, EmbeddedStore, Item, Key, PutOutcome, StateStore};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Backends {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
}

impl Backends {
    /// Builds nothing that talks to AWS: the DynamoDB and SQS clients, and the one SDK
    /// configuration they share, are made by the first call that needs them (issue 18), so a
    /// cold start loads no credentials chain and sets up no TLS context before its first event.
    /// A missing table or queue URL is still refused here, by `Config::validate`.
    pub async fn from_config(config: &Config) -> Result<Backends> {
        let aws = SharedSdkConfig::new();
        if crate::telemetry::on_lambda() && matches!(config.state.backend, StateBackend::Embedded) {
            return Ok(Self::embedded_on_first_use(config, &aws));
        }
        let embedded = match config.state.backend {
            StateBackend::Dynamodb => None,
            StateBackend::Embedded => Some(EmbeddedStore::open(&config.state.path)?),
        };
        let state: Arc<dyn StateStore> = match &embedded {
            Some(store) => Arc::new(store.clone()),
            None => Arc::new(DynamoStore::on_first_use(aws.clone(), config.state.table.clone())),
        };
        let queue: Arc<dyn JobQueue> = match (config.queue.backend, &embedded) {
            (QueueBackend::Sqs, _) => {
                Arc::new(SqsQueue::on_first_use(aws, sqs_urls(config)).with_parking(Arc::clone(&state)))
            }
            // The local queue lives in the state file, so accepted jobs survive a crash.
            (QueueBackend::Local, Some(store)) => Arc::new(DurableQueue::open_default(store)?),
            (QueueBackend::Local, None) => Arc::new(InProcessQueue::default()),
        };
        Ok(Backends { state, queue })
    }

    /// Embedded state (and the local queue in the same file) opened on first use.
    fn embedded_on_first_use(config: &Config, aws: &SharedSdkConfig) -> Backends {
        let local_queue = matches!(config.queue.backend, QueueBackend::Local);
        let lazy = Arc::new(LazyLocal {
            path: config.state.path.clone(),
            with_queue: local_queue,
            opened: tokio::sync::OnceCell::new(),
        });
        let state: Arc<dyn StateStore> = Arc::clone(&lazy) as Arc<dyn StateStore>;
        let queue: Arc<dyn JobQueue> = if local_queue {
            lazy
        } else {
            Arc::new(SqsQueue::on_first_use(aws.clone(), sqs_urls(config)).with_parking(Arc::clone(&state)))
        };
        Backends { state, queue }
    }
}

fn sqs_urls(config: &Config) -> SqsQueueUrls {
    SqsQueueUrls {
        orders: config.queue.orders_url.clone(),
        stock: config.queue.stock_url.clone(),
        purchasing: config.queue.purchasing_url.clone(),
    }
}

/// The embedded store, and with `with_queue` the durable queue in its file, opened by the first
/// call.
struct LazyLocal {
    path: PathBuf,
    with_queue: bool,
    opened: tokio::sync::OnceCell<(EmbeddedStore, Option<DurableQueue>)>,
}

impl LazyLocal {
    async fn opened(&self) -> Result<&(EmbeddedStore, Option<DurableQueue>)> {
        self.opened
            .get_or_try_init(|| async {
                let store = EmbeddedStore::open(&self.path)?;
                let queue = if self.with_queue { Some(DurableQueue::open_default(&store)?) } else { None };
                Ok((store, queue))
            })
            .await
    }

    async fn store(&self) -> Result<&EmbeddedStore> {
        Ok(&self.opened().await?.0)
    }

    async fn queue(&self) -> Result<&DurableQueue> {
        self.opened().await?.1.as_ref().ok_or_else(|| Error::Queue("no local queue configured".into()))
    }
}

#[async_trait]
impl StateStore for LazyLocal {
    fn held_by_this_process_alone(&self) -> bool {
        true
    }
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        self.store().await?.get(key).await
    }
    async fn put(&self, item: Item, condition: Condition) -> Result<PutOutcome> {
        self.store().await?.put(item, condition).await
    }
    async fn delete(&self, key: &Key, condition: Condition) -> Result<bool> {
        self.store().await?.delete(key, condition).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        self.store().await?.query(pk, sk_prefix).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>> {
        self.store().await?.batch_get(keys).await
    }
    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        self.store().await?.batch_put(items).await
    }
}

#[async_trait]
impl JobQueue for LazyLocal {
    async fn send(&self, jobs: &[crate::queue::Job]) -> Result<()> {
        self.queue().await?.send(jobs).await
    }
    async fn send_replay(&self, jobs: &[crate::queue::Job]) -> Result<()> {
        self.queue().await?.send_replay(jobs).await
    }
    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>> {
        self.queue().await?.receive(queue, max, wait).await
    }
    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.queue().await?.ack(queue, receipt).await
    }
    async fn release(&self, queue: QueueName, receipt: &str) -> Result<()> {
        self.queue().await?.release(queue, receipt).await
    }
    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        self.queue().await?.stats(queue).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lazy_local_backend_creates_its_file_on_the_first_call_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state").join("pearlsync.redb");
        let lazy = LazyLocal { path: path.clone(), with_queue: true, opened: tokio::sync::OnceCell::new() };
        assert!(!path.exists(), "nothing on disk before the first call");
        let job = crate::queue::Job::StockChanged { product_ids: vec![7] };
        lazy.send(std::slice::from_ref(&job)).await.expect("send");
        assert!(path.exists(), "created by the first call");
        let got = lazy.receive(QueueName::Stock, 10, Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, job);
        let item = Item::new("pk", "sk", serde_json::json!({"n": 1}));
        lazy.put(item, Condition::Always).await.expect("put");
        assert!(lazy.get(&Key::new("pk", "sk")).await.expect("get").is_some());
    }
}
