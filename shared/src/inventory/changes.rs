//! The change-driven poll: between sweeps, only the products that may have changed since its
//! cursor are read. Which path catches which change:
//! - stock corrections, goods-in, goods-out (shipping unreserved stock), transfers: goods
//!   movements (`goods-movement-search` by `updatedOn`, from the cursor less a slack);
//! - this project's orders reserved or cancelled (`onHand` moves with no goods movement, as far
//!   as anyone knows: apis.md §8.2): the pending ledger, whose settled orders name their
//!   products (`crate::pending`);
//! - products new to the mapping or whose SKU changed: the mapping refresh (`updatedOn`);
//! - everything else that moves `onHand` without a goods movement (another app's reservation,
//!   a manual allocation): the `product.modified.on-hand-modified` webhook (a targeted run at
//!   once) and, for what that misses, the hourly sweep.

use super::report::ChangeSources;
use super::state::Index;
use super::{CHUNK_SIZE, InventoryPoll, Run};
use crate::brightpearl::idset;
use crate::error::Result;
use std::collections::BTreeSet;

/// A change set over 1/5 of the mapped products is read by a sweep instead.
const SWEEP_INSTEAD_FRACTION: usize = 5;
/// Movements updated shortly before the cursor are read again, for clock skew and search lag.
const MOVEMENT_SLACK_MINUTES: i64 = 5;

impl InventoryPoll {
    pub(super) async fn changes(&self, index: &mut Index, run: &mut Run) -> Result<()> {
        let Some(cursor) = index.meta.changes_cursor.or(index.meta.last_sweep) else {
            // Never swept: nothing to be relative to.
            run.report.mode = "full".into();
            return self.sweep(index, run, false, None).await;
        };
        let since = cursor - chrono::Duration::minutes(MOVEMENT_SLACK_MINUTES);
        let movements = self.brightpearl.goods_movements_since(since).await?;
        let seen: BTreeSet<u64> =
            idset::parse(&index.meta.seen_movements).unwrap_or_default().into_iter().collect();
        let moved: BTreeSet<u64> =
            movements.iter().filter(|m| !seen.contains(&m.goods_movement_id)).map(|m| m.product_id).collect();
        let now_seen: Vec<u64> = movements.iter().map(|m| m.goods_movement_id).collect();
        run.seen_movements = Some(idset::encode(&now_seen));
        let orders: BTreeSet<u64> = run.pending.values().flat_map(|p| p.touched.iter().copied()).collect();
        let mut ids: BTreeSet<u64> = moved.iter().copied().collect();
        ids.extend(orders.iter().copied());
        ids.extend(run.mapped.iter().copied());
        run.report.changes = Some(ChangeSources {
            goods_movements: moved.len(),
            orders: orders.len(),
            mapping: run.mapped.len(),
            total: ids.len(),
        });
        // Past a fifth of the catalogue (after an outage, say) the sweep is cheaper, and its
        // memory stays bounded where a targeted read holds every product's figures at once.
        let chunks: usize = index.pages.iter().map(|p| p.chunks.len()).sum();
        if ids.len() * SWEEP_INSTEAD_FRACTION > chunks * CHUNK_SIZE {
            run.report.mode = "full".into();
            return self.sweep(index, run, false, None).await;
        }
        let ids: Vec<u64> = ids.into_iter().collect();
        self.targeted(index, run, &ids).await
    }
}
