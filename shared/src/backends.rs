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
        // One AWS configuration for both clients: loading it resolves the region and the
        // credential chain (profile files included), which a cold start should do once.
        let needs_aws = matches!(config.state.backend, StateBackend::Dynamodb)
            || matches!(config.queue.backend, QueueBackend::Sqs);
        let aws = match needs_aws {
            true => Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await),
            false => None,
        };
        let embedded = match config.state.backend {
            StateBackend::Dynamodb => None,
            StateBackend::Embedded => Some(EmbeddedStore::open(&config.state.path)?),
        };
        let state: Arc<dyn StateStore> = match (&embedded, &aws) {
            (Some(store), _) => Arc::new(store.clone()),
            (None, Some(aws)) => {
                Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(aws), config.state.table.clone()))
            }
            (None, None) => Arc::new(DynamoStore::from_env(config.state.table.clone()).await),
        };
        let queue: Arc<dyn JobQueue> = match (config.queue.backend, &embedded) {
            (QueueBackend::Sqs, _) => {
                let urls = SqsQueueUrls {
                    orders: config.queue.orders_url.clone(),
                    stock: config.queue.stock_url.clone(),
                    purchasing: config.queue.purchasing_url.clone(),
                };
                let sqs = match &aws {
                    Some(aws) => SqsQueue::new(aws_sdk_sqs::Client::new(aws), urls),
                    None => SqsQueue::from_env(urls).await,
                };
                Arc::new(sqs.with_parking(Arc::clone(&state)))
            }
            // The local queue lives in the state file, so accepted jobs survive a crash.
            (QueueBackend::Local, Some(store)) => Arc::new(DurableQueue::open_default(store)?),
            (QueueBackend::Local, None) => Arc::new(InProcessQueue::default()),
        };
        Ok(Backends { state, queue })
    }
}
