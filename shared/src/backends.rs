//! Builds the state store and the queue that the configuration names, once per process.

use crate::config::{Config, QueueBackend, StateBackend};
use crate::error::Result;
use crate::queue::{DurableQueue, InProcessQueue, JobQueue, SqsQueue, SqsQueueUrls};
use crate::state::{DynamoStore, EmbeddedStore, StateStore};
use std::sync::Arc;

#[derive(Clone)]
pub struct Backends {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
}

impl Backends {
    pub async fn from_config(config: &Config) -> Result<Backends> {
        let embedded = match config.state.backend {
            StateBackend::Dynamodb => None,
            StateBackend::Embedded => Some(EmbeddedStore::open(&config.state.path)?),
        };
        let state: Arc<dyn StateStore> = match &embedded {
            Some(store) => Arc::new(store.clone()),
            None => Arc::new(DynamoStore::from_env(config.state.table.clone()).await),
        };
        let queue: Arc<dyn JobQueue> = match (config.queue.backend, &embedded) {
            (QueueBackend::Sqs, _) => Arc::new(
                SqsQueue::from_env(SqsQueueUrls {
                    orders: config.queue.orders_url.clone(),
                    stock: config.queue.stock_url.clone(),
                    purchasing: config.queue.purchasing_url.clone(),
                })
                .await
                .with_parking(Arc::clone(&state)),
            ),
            // The local queue lives in the state file, so accepted jobs survive a crash.
            (QueueBackend::Local, Some(store)) => Arc::new(DurableQueue::open_default(store)?),
            (QueueBackend::Local, None) => Arc::new(InProcessQueue::default()),
        };
        Ok(Backends { state, queue })
    }
}
