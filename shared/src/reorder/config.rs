//! The reorder section of the configuration, the quantity rule, and per-run options.

use crate::config::parse_var;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantityRule {
    /// Enough to reach the reorder level, rounded up to a multiple of the reorder quantity.
    #[default]
    RoundUp,
    /// Exactly the reorder quantity.
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderConfig {
    /// Warehouse ids to check; empty means every warehouse.
    #[serde(default)]
    pub warehouses: Vec<u64>,
    #[serde(default)]
    pub quantity_rule: QuantityRule,
    /// Plan only, never create (an event's `"dry_run": true` also asks for this).
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_currency")]
    pub currency_code: String,
    #[serde(default = "default_tax_code")]
    pub tax_code: String,
    /// Purchase-order status ids in which a PO no longer counts as on order (received,
    /// closed, cancelled). Empty: taken from the account's status flags (see `on_order`).
    #[serde(default)]
    pub closed_po_status_ids: Vec<u64>,
    /// Rows per purchase order; a longer list for one supplier and warehouse is split.
    #[serde(default = "default_max_rows_per_po")]
    pub max_rows_per_po: usize,
    /// Products scanned per step of the check (a step is what a resumed run repeats at most).
    #[serde(default = "default_slice_products")]
    pub slice_products: usize,
}

fn default_currency() -> String {
    "GBP".into()
}

fn default_tax_code() -> String {
    "T0".into()
}

/// Keeps a PO record well under DynamoDB's 400 KB item limit (about 100 bytes a row).
fn default_max_rows_per_po() -> usize {
    500
}

/// Two product-search pages: five full ID sets of 200 per availability and warehouse read.
fn default_slice_products() -> usize {
    1000
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            warehouses: Vec::new(),
            quantity_rule: QuantityRule::default(),
            dry_run: false,
            currency_code: default_currency(),
            tax_code: default_tax_code(),
            closed_po_status_ids: Vec::new(),
            max_rows_per_po: default_max_rows_per_po(),
            slice_products: default_slice_products(),
        }
    }
}

fn id_list(variable: &str, list: &str) -> Result<Vec<u64>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| Error::config(variable, format!("{s:?}: {e}"))))
        .collect()
}

impl ReorderConfig {
    /// `REORDER_WAREHOUSES` (comma-separated ids), `REORDER_QUANTITY_RULE` (`round-up` or
    /// `fixed`), `REORDER_DRY_RUN`, `REORDER_CURRENCY`, `REORDER_TAX_CODE`,
    /// `REORDER_CLOSED_PO_STATUS_IDS` (comma-separated ids), `REORDER_MAX_ROWS_PER_PO`,
    /// `REORDER_SLICE_PRODUCTS`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(list) = env("REORDER_WAREHOUSES") {
            self.warehouses = id_list("REORDER_WAREHOUSES", &list)?;
        }
        if let Some(rule) = env("REORDER_QUANTITY_RULE") {
            self.quantity_rule = match rule.trim().to_ascii_lowercase().as_str() {
                "round-up" => QuantityRule::RoundUp,
                "fixed" => QuantityRule::Fixed,
                other => {
                    return Err(Error::config(
                        "REORDER_QUANTITY_RULE",
                        format!("{other:?} is not round-up or fixed"),
                    ));
                }
            };
        }
        if let Some(dry) = parse_var::<bool>(env, "REORDER_DRY_RUN")? {
            self.dry_run = dry;
        }
        if let Some(c) = env("REORDER_CURRENCY").filter(|c| !c.trim().is_empty()) {
            self.currency_code = c.trim().to_string();
        }
        if let Some(t) = env("REORDER_TAX_CODE").filter(|t| !t.trim().is_empty()) {
            self.tax_code = t.trim().to_string();
        }
        if let Some(list) = env("REORDER_CLOSED_PO_STATUS_IDS") {
            self.closed_po_status_ids = id_list("REORDER_CLOSED_PO_STATUS_IDS", &list)?;
        }
        if let Some(n) = parse_var::<usize>(env, "REORDER_MAX_ROWS_PER_PO")? {
            self.max_rows_per_po = n;
        }
        if let Some(n) = parse_var::<usize>(env, "REORDER_SLICE_PRODUCTS")? {
            self.slice_products = n;
        }
        if self.max_rows_per_po == 0 || self.slice_products == 0 {
            return Err(Error::config(
                "REORDER_MAX_ROWS_PER_PO / REORDER_SLICE_PRODUCTS",
                "must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// How much to order, or None when projected stock already reaches the level (see the module
/// doc for the rule).
pub fn order_quantity(
    rule: QuantityRule,
    reorder_level: i64,
    reorder_quantity: i64,
    projected: i64,
) -> Option<i64> {
    if projected >= reorder_level {
        return None;
    }
    let need = reorder_level - projected;
    Some(match rule {
        QuantityRule::RoundUp if reorder_quantity > 0 => {
            (need + reorder_quantity - 1) / reorder_quantity * reorder_quantity
        }
        QuantityRule::Fixed if reorder_quantity > 0 => reorder_quantity,
        _ => need,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Return the PO payloads without creating anything (also on when the config says so).
    pub dry_run: bool,
}

impl CheckOptions {
    /// From a schedule event: `"dry_run": true` asks for a dry run.
    pub fn from_event(input: &Value) -> Self {
        CheckOptions { dry_run: input.get("dry_run").and_then(Value::as_bool).unwrap_or(false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_reaches_the_level_in_multiples_of_the_reorder_quantity() {
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 3), Some(10));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 5), Some(5));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 0, 4), Some(6));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 25, -2), Some(25));
        assert_eq!(order_quantity(QuantityRule::RoundUp, 10, 5, 10), None);
    }

    #[test]
    fn fixed_orders_the_reorder_quantity_or_the_need() {
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 7, 0), Some(7));
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 0, 4), Some(6));
        assert_eq!(order_quantity(QuantityRule::Fixed, 10, 7, 12), None);
    }

    #[test]
    fn environment_sets_the_reorder_section() {
        let env = |name: &str| match name {
            "REORDER_WAREHOUSES" => Some("2, 3".to_string()),
            "REORDER_QUANTITY_RULE" => Some("fixed".to_string()),
            "REORDER_DRY_RUN" => Some("true".to_string()),
            "REORDER_CLOSED_PO_STATUS_IDS" => Some("8,9".to_string()),
            "REORDER_MAX_ROWS_PER_PO" => Some("50".to_string()),
            _ => None,
        };
        let mut config = ReorderConfig::default();
        config.apply_env(&env).unwrap();
        assert_eq!(config.warehouses, [2, 3]);
        assert_eq!(config.quantity_rule, QuantityRule::Fixed);
        assert!(config.dry_run);
        assert_eq!(config.closed_po_status_ids, [8, 9]);
        assert_eq!(config.max_rows_per_po, 50);
        assert_eq!(config.slice_products, 1000);
        let bad = |name: &str| (name == "REORDER_QUANTITY_RULE").then(|| "sometimes".to_string());
        assert!(
            ReorderConfig::default()
                .apply_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("REORDER_QUANTITY_RULE")
        );
        let zero = |name: &str| (name == "REORDER_MAX_ROWS_PER_PO").then(|| "0".to_string());
        assert!(ReorderConfig::default().apply_env(&zero).is_err());
    }
}
