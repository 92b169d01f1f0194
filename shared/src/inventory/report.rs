//! What one inventory run did: the Lambda answer, the log line and the benchmarks.

use serde::Serialize;

/// What one run did, for the Lambda response, the log line and the benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    /// `full` / `reconcile` (the sweep), `changes` (the change-driven poll), `products`
    /// (targeted) or `skipped` (another run held the lease).
    pub mode: String,
    /// Products whose availability was read.
    pub products_read: usize,
    /// Chunks whose availability moved (or were forced by reconcile or a targeted run).
    pub chunks_changed: usize,
    /// Change-driven poll: products that may have changed, by the path that named them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeSources>,
    /// Targeted and change-driven runs: products named that are not in the mapping (not
    /// listed on any store, or too new: the next poll maps them).
    pub products_unmapped: usize,
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
    /// Stores in `respect_manual_edits` only: a compare-and-set found the store's figure
    /// moved, and it was kept. Elsewhere a stale compare is re-read and written again.
    pub conflicts: Vec<Conflict>,
    /// Orders of this store sold but not reserved in Brightpearl yet (their units are held back).
    pub pending_orders: usize,
    /// Reconcile only: drift repaired.
    pub repaired: Vec<Repair>,
    /// SKUs the store will not take as they stand (a Shopify bundle parent, an item not
    /// stocked at the location, a WooCommerce variable product): held, not sent again until
    /// Brightpearl's figure for them moves.
    pub skipped: Vec<(String, crate::channels::SkipReason)>,
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

/// A store's own figure held back (the store respects manual edits), with both figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub sku: String,
    /// What Brightpearl says the store should show.
    pub desired: i64,
    /// What the store shows.
    pub theirs: i64,
}

/// Where the change-driven poll's products came from (a product may come from several).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSources {
    /// Products with a goods movement updated since the cursor.
    pub goods_movements: usize,
    /// Products of this project's orders reserved or cancelled since the last run.
    pub orders: usize,
    /// Products new to the mapping, or whose SKU or listings changed.
    pub mapping: usize,
    /// Distinct products read.
    pub total: usize,
}
