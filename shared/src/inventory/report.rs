//! What one inventory run did: the Lambda answer, the log line and the benchmarks.

use serde::Serialize;

/// What one run did, for the Lambda response, the log line and the benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    /// `full`, `reconcile` or `products`.
    pub mode: String,
    /// Products whose availability was read.
    pub products_read: usize,
    /// Chunks whose availability moved (or were forced by reconcile or a targeted run).
    pub chunks_changed: usize,
    pub mapping_added: usize,
    pub mapping_removed: usize,
    pub brightpearl_requests: u64,
    /// State items read and written by this module (channel SKU caches not included).
    pub state_reads: u64,
    pub state_writes: u64,
    pub channels: Vec<ChannelReport>,
}

/// A SKU whose store quantity differs from what Brightpearl says it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub sku: String,
    pub expected: i64,
    pub shown: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    pub name: String,
    /// SKUs mapped to this store.
    pub skus_mapped: usize,
    /// Mapped SKUs of this store whose availability this run read.
    pub skus_read: usize,
    /// SKUs whose desired quantity differed from the one last settled.
    pub changed: usize,
    pub pushed: usize,
    /// Manual edits found by compare-and-set: (SKU, the channel's quantity). Not overwritten.
    pub conflicts: Vec<(String, i64)>,
    /// Reconcile only: drift repaired.
    pub repaired: Vec<Repair>,
    /// SKUs not written, with the reason; retried next run.
    pub failures: Vec<(String, String)>,
    /// The store's push failed as a whole (it got no more pushes this run).
    pub error: Option<String>,
    /// HTTP requests made to the store.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub sku: String,
    /// The channel's quantity before (None when the channel had no level).
    pub from: Option<i64>,
    pub to: i64,
}
