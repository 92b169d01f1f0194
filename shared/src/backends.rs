//! Builds the state store and the queue that the configuration names, once per process.

use crate::config::{Config, QueueBackend, StateBackend};
use crate::error::Result;
use crate::queue::{InProcessQueue, JobQueue, SqsQueue, SqsQueueUrls};
use crate::state::{DynamoStore, EmbeddedStore, StateStore};
use std::sync::Arc;

#[derive(Clone)]
pub struct Backends {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
}

impl Backends {
    pub async fn from_config(config: &Config) -> Result<Backends> {
        let state: Arc<dyn StateStore> = match config.state.backend {
            StateBackend::Dynamodb => Arc::new(DynamoStore::from_env(config.state.table.clone()).await),
            StateBackend::Embedded => Arc::new(EmbeddedStore::open(&config.state.path)?),
        };
        let queue: Arc<dyn JobQueue> = match config.queue.backend {
            QueueBackend::Sqs => Arc::new(
                SqsQueue::from_env(SqsQueueUrls {
                    orders: config.queue.orders_url.clone(),
                    stock: config.queue.stock_url.clone(),
                    purchasing: config.queue.purchasing_url.clone(),
                })
                .await,
            ),
            QueueBackend::Local => Arc::new(InProcessQueue::default()),
        };
        Ok(Backends { state, queue })
    }
}
