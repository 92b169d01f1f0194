//! Everything a function needs, built once per process from the configuration: state, queue,
//! the Brightpearl client, the channel clients and the metrics. Lambda `main`s, the CLI, tests
//! and the benchmarks all build it the same way.

use crate::backends::Backends;
use crate::brightpearl::{BrightpearlApi, BrightpearlClient, Priority};
use crate::channels::ChannelSet;
use crate::config::Config;
use crate::error::Result;
use crate::inventory::InventoryPoll;
use crate::metrics::Metrics;
use crate::orders::{OrderWriter, OrderWriterParts};
use crate::queue::JobQueue;
use crate::reorder::ReorderChecker;
use crate::state::StateStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    /// The client at order priority; `background_brightpearl` shares its budget.
    pub brightpearl: Arc<BrightpearlClient>,
    pub channels: Arc<ChannelSet>,
    pub metrics: Arc<Metrics>,
}

impl App {
    /// Builds the backends the configuration names (DynamoDB/SQS or embedded/in-process).
    pub async fn from_config(config: Config, function: &str) -> Result<App> {
        let backends = Backends::from_config(&config).await?;
        Self::with_backends(config, backends, function)
    }

    /// Builds the clients over given backends (tests, the demo and the CLI pass their own).
    pub fn with_backends(config: Config, backends: Backends, function: &str) -> Result<App> {
        let brightpearl = Arc::new(BrightpearlClient::with_token_store(
            config.brightpearl.clone(),
            Some(Arc::clone(&backends.state)),
        )?);
        let channels = Arc::new(ChannelSet::new(&config.stores, Arc::clone(&backends.state))?);
        Ok(App {
            config,
            state: backends.state,
            queue: backends.queue,
            brightpearl,
            channels,
            metrics: Arc::new(Metrics::new(function)),
        })
    }

    /// The Brightpearl client for polls and checks: it yields to order work when the shared
    /// budget runs low.
    pub fn background_brightpearl(&self) -> Arc<dyn BrightpearlApi> {
        Arc::new(self.brightpearl.with_priority(Priority::Background))
    }

    pub fn order_brightpearl(&self) -> Arc<dyn BrightpearlApi> {
        Arc::clone(&self.brightpearl) as Arc<dyn BrightpearlApi>
    }

    /// The inventory poll. Polls are background work: they use the client handle that yields
    /// to orders.
    pub fn inventory_poll(&self) -> InventoryPoll {
        InventoryPoll::from_parts(
            self.background_brightpearl(),
            Arc::clone(&self.channels),
            Arc::clone(&self.state),
            Arc::clone(&self.metrics),
            self.config.inventory.clone(),
        )
    }

    /// The reorder checker. Background priority: checks yield to order work when the budget
    /// runs low.
    pub fn reorder_checker(&self) -> ReorderChecker {
        ReorderChecker::from_parts(
            self.background_brightpearl(),
            Arc::clone(&self.state),
            Arc::clone(&self.queue),
            Arc::clone(&self.metrics),
            self.config.reorder.clone(),
        )
    }

    /// The order writer over this app's state, queue, clients and `[orders]` settings.
    pub fn order_writer(&self) -> OrderWriter {
        OrderWriter::new(OrderWriterParts {
            state: Arc::clone(&self.state),
            queue: Arc::clone(&self.queue),
            brightpearl: self.order_brightpearl(),
            channels: Arc::clone(&self.channels),
            metrics: Arc::clone(&self.metrics),
            config: self.config.orders.clone(),
        })
    }
}
