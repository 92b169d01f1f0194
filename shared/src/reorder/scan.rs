//! The catalogue scan, in slices that survive the end of an invocation.
//!
//! The catalogue and each product's primary supplier come from one product-search walk
//! (`columns=productId,primarySupplierId`, 500 a page). Each slice (default 1000 products)
//! costs: its pages, availability in ID sets of 200, warehouse defaults in ID sets of 200 per
//! warehouse, and `product/{ids}/supplier` for its short products without a primary. A
//! slice's order lines are stored under the run, then the cursor (the page where unscanned
//! products start, and the last product scanned) moves past it. A resumed scan re-reads one
//! page before the cursor and skips what it has scanned, so products deleted in between
//! cannot shift unscanned ones out of sight. Lines are turned into PO records only when the
//! whole catalogue is scanned, so each run raises one PO per supplier and warehouse (split
//! past `max_rows_per_po`), never one per slice.

use super::ReorderChecker;
use super::config::order_quantity;
use super::on_order::OnOrder;
use super::report::{PoLine, SkipReason, SkippedProduct};
use crate::brightpearl::search::PAGE_SIZE;
use crate::error::{Error, Result};
use crate::state::{Condition, Item, Key};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

pub(super) const SCAN_PARTITION: &str = "reorder#scan";
const CURSOR_SK: &str = "cursor";
/// Unfinished scans older than this are dropped and started afresh (stock has moved on).
pub(super) const SCAN_MAX_AGE_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ScanCursor {
    /// When the run began (epoch ms): names its slices, records and PO references.
    pub(super) run_ms: i64,
    /// `firstResult` of the page holding the first unscanned product.
    pub(super) first_result: u64,
    /// Highest product id scanned so far (the walk is in ascending product id).
    pub(super) last_product_id: u64,
    pub(super) slices: u32,
    /// The whole catalogue is scanned: what is left is planning and creating.
    pub(super) scanned: bool,
}

impl ScanCursor {
    pub(super) fn new(run_ms: i64) -> Self {
        ScanCursor { run_ms, first_result: 1, last_product_id: 0, slices: 0, scanned: false }
    }
}

/// One order line found by the scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PlannedLine {
    pub(super) supplier_id: u64,
    pub(super) warehouse_id: u64,
    pub(super) product_id: u64,
    pub(super) quantity: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SliceItem {
    lines: Vec<PlannedLine>,
}

/// What one slice found.
#[derive(Debug, Default)]
pub(super) struct SliceOutcome {
    pub(super) products: usize,
    pub(super) lines: Vec<PlannedLine>,
    pub(super) skipped: Vec<SkippedProduct>,
    pub(super) no_reorder_level: usize,
}

/// Pages through product-search from a cursor, handing out slices.
pub(super) struct Walker {
    next_fetch: Option<u64>,
    /// (product id, primary supplier, firstResult of its page).
    buffered: VecDeque<(u64, Option<u64>, u64)>,
    last_product_id: u64,
}

impl Walker {
    pub(super) fn resume(cursor: &ScanCursor) -> Self {
        let first = if cursor.last_product_id == 0 {
            1
        } else {
            cursor.first_result.saturating_sub(u64::from(PAGE_SIZE)).max(1)
        };
        Walker { next_fetch: Some(first), buffered: VecDeque::new(), last_product_id: cursor.last_product_id }
    }

    /// Up to `n` products not scanned yet; empty at the end of the catalogue.
    pub(super) async fn take(
        &mut self,
        checker: &ReorderChecker,
        n: usize,
    ) -> Result<Vec<(u64, Option<u64>)>> {
        while self.buffered.len() < n {
            let Some(first) = self.next_fetch else { break };
            let page = checker.brightpearl.primary_suppliers_page(first).await?;
            for (id, supplier) in page.rows {
                if id > self.last_product_id {
                    self.buffered.push_back((id, supplier, first));
                    self.last_product_id = id;
                }
            }
            self.next_fetch = page.next_first_result;
        }
        let take = n.min(self.buffered.len());
        Ok(self.buffered.drain(..take).map(|(id, s, _)| (id, s)).collect())
    }

    /// Where the next slice starts, once the products handed out are scanned.
    pub(super) fn advance(&self, cursor: &mut ScanCursor, last_scanned: u64) {
        cursor.last_product_id = cursor.last_product_id.max(last_scanned);
        match (self.buffered.front(), self.next_fetch) {
            (Some((_, _, page)), _) => cursor.first_result = *page,
            (None, Some(next)) => cursor.first_result = next,
            (None, None) => cursor.scanned = true,
        }
    }
}

fn slice_key(run_ms: i64, slice: u32) -> String {
    format!("slice#{run_ms}#{slice:06}")
}

fn to_state<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::State(e.to_string()))
}

impl ReorderChecker {
    pub(super) async fn load_cursor(&self) -> Result<Option<ScanCursor>> {
        let Some(item) = self.state.get(&Key::new(SCAN_PARTITION, CURSOR_SK)).await? else {
            return Ok(None);
        };
        serde_json::from_value(item.data)
            .map(Some)
            .map_err(|e| Error::State(format!("reorder scan cursor does not parse: {e}")))
    }

    pub(super) async fn save_cursor(&self, cursor: &ScanCursor) -> Result<()> {
        let item = Item::new(SCAN_PARTITION, CURSOR_SK, to_state(cursor)?);
        self.state.put(item, Condition::Always).await?;
        Ok(())
    }

    pub(super) async fn save_slice(&self, cursor: &ScanCursor, lines: Vec<PlannedLine>) -> Result<()> {
        let item = Item::new(
            SCAN_PARTITION,
            slice_key(cursor.run_ms, cursor.slices),
            to_state(&SliceItem { lines })?,
        );
        self.state.put(item, Condition::Always).await?;
        Ok(())
    }

    /// Every line the run's slices found.
    pub(super) async fn load_lines(&self, run_ms: i64) -> Result<Vec<PlannedLine>> {
        let mut lines = Vec::new();
        for item in self.state.query(SCAN_PARTITION, &format!("slice#{run_ms}#")).await? {
            let slice: SliceItem = serde_json::from_value(item.data)
                .map_err(|e| Error::State(format!("reorder slice {} does not parse: {e}", item.sk)))?;
            lines.extend(slice.lines);
        }
        Ok(lines)
    }

    /// Drops the cursor and every stored slice (of this run and any abandoned one).
    pub(super) async fn clear_scan(&self) -> Result<()> {
        for item in self.state.query(SCAN_PARTITION, "").await? {
            self.state.delete(&item.key(), Condition::Always).await?;
        }
        Ok(())
    }

    /// Projects stock for one slice in every warehouse and finds what to order.
    pub(super) async fn scan_slice(
        &self,
        products: &[(u64, Option<u64>)],
        warehouses: &[u64],
        on_order: &OnOrder,
    ) -> Result<SliceOutcome> {
        let mut out = SliceOutcome { products: products.len(), ..Default::default() };
        let ids: Vec<u64> = products.iter().map(|(id, _)| *id).collect();
        let primary: HashMap<u64, u64> = products.iter().filter_map(|(id, s)| Some((*id, (*s)?))).collect();
        let availability = self.brightpearl.availability(&ids).await?;
        // (product, warehouse) → quantity, before suppliers are known.
        let mut short: BTreeMap<(u64, u64), i64> = BTreeMap::new();
        for &warehouse_id in warehouses {
            for d in self.brightpearl.warehouse_defaults(warehouse_id, &ids).await? {
                let Some(level) = d.reorder_level.filter(|l| *l > 0) else {
                    out.no_reorder_level += 1;
                    continue;
                };
                let Some(levels) = availability.get(&d.product_id) else {
                    out.skipped.push(SkippedProduct {
                        product_id: d.product_id,
                        warehouse_id,
                        reason: SkipReason::NotStockTracked,
                    });
                    continue;
                };
                // onHand is the unallocated part: allocated stock is already spoken for.
                let on_hand = levels.warehouses.get(&warehouse_id).map_or(0, |s| s.on_hand);
                let projected = on_hand + on_order.get(d.product_id, warehouse_id);
                if let Some(quantity) = order_quantity(
                    self.config.quantity_rule,
                    level,
                    d.reorder_quantity.unwrap_or(0),
                    projected,
                ) {
                    short.insert((d.product_id, warehouse_id), quantity);
                }
            }
        }
        let without_primary: Vec<u64> = short
            .keys()
            .map(|(p, _)| *p)
            .filter(|p| !primary.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let listed = if without_primary.is_empty() {
            Default::default()
        } else {
            self.brightpearl.product_suppliers(&without_primary).await?
        };
        for (id, reason) in &listed.refused {
            tracing::warn!(product_id = id, reason, "Brightpearl refused the product in a supplier read");
        }
        for ((product_id, warehouse_id), quantity) in short {
            let supplier = primary
                .get(&product_id)
                .copied()
                .or_else(|| listed.suppliers.get(&product_id).and_then(|list| list.first().copied()));
            match supplier {
                Some(supplier_id) => {
                    out.lines.push(PlannedLine { supplier_id, warehouse_id, product_id, quantity })
                }
                None => out.skipped.push(SkippedProduct {
                    product_id,
                    warehouse_id,
                    reason: SkipReason::NoSupplier,
                }),
            }
        }
        Ok(out)
    }
}

/// Lines grouped per (supplier, warehouse), rows in product order, split into parts of at
/// most `max_rows` rows.
pub(super) fn group_lines(lines: Vec<PlannedLine>, max_rows: usize) -> Vec<((u64, u64), u32, Vec<PoLine>)> {
    let mut groups: BTreeMap<(u64, u64), BTreeMap<u64, i64>> = BTreeMap::new();
    for l in lines {
        // A product appears once per warehouse in a scan; a repeat (a re-scanned slice) wins.
        groups.entry((l.supplier_id, l.warehouse_id)).or_default().insert(l.product_id, l.quantity);
    }
    let mut out = Vec::new();
    for (key, rows) in groups {
        let rows: Vec<PoLine> =
            rows.into_iter().map(|(product_id, quantity)| PoLine { product_id, quantity }).collect();
        for (part, chunk) in rows.chunks(max_rows.max(1)).enumerate() {
            out.push((key, part as u32, chunk.to_vec()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(supplier_id: u64, warehouse_id: u64, product_id: u64, quantity: i64) -> PlannedLine {
        PlannedLine { supplier_id, warehouse_id, product_id, quantity }
    }

    #[test]
    fn lines_group_per_supplier_and_warehouse_and_split_past_the_row_cap() {
        let lines = vec![
            line(7, 1, 30, 5),
            line(7, 1, 10, 2),
            line(7, 2, 10, 4),
            line(8, 1, 20, 1),
            line(7, 1, 20, 3),
        ];
        let groups = group_lines(lines, 2);
        let shape: Vec<((u64, u64), u32, Vec<u64>)> = groups
            .iter()
            .map(|(k, part, rows)| (*k, *part, rows.iter().map(|r| r.product_id).collect()))
            .collect();
        assert_eq!(
            shape,
            [((7, 1), 0, vec![10, 20]), ((7, 1), 1, vec![30]), ((7, 2), 0, vec![10]), ((8, 1), 0, vec![20])]
        );
    }

    #[test]
    fn a_resumed_walk_starts_a_page_early_and_the_cursor_follows_the_buffer() {
        let mut cursor = ScanCursor::new(1);
        assert_eq!(Walker::resume(&cursor).next_fetch, Some(1));
        cursor.first_result = 1001;
        cursor.last_product_id = 5000;
        let walker = Walker::resume(&cursor);
        assert_eq!(walker.next_fetch, Some(501));
        // Rows left from the page at 1001: the cursor stays on that page.
        let mut w = Walker {
            next_fetch: Some(1501),
            buffered: VecDeque::from([(6001, None, 1001)]),
            last_product_id: 6001,
        };
        w.advance(&mut cursor, 6000);
        assert_eq!((cursor.first_result, cursor.last_product_id, cursor.scanned), (1001, 6000, false));
        w.buffered.clear();
        w.advance(&mut cursor, 6001);
        assert_eq!(cursor.first_result, 1501);
        w.next_fetch = None;
        w.advance(&mut cursor, 6001);
        assert!(cursor.scanned);
    }
}
