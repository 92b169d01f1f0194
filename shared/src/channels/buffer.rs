//! Buffer rules: how much of Brightpearl's availability a store may sell.

use serde::Deserialize;
use std::collections::HashMap;

/// Applied in order: subtract `safety_stock`, hold back `percent` % of what is left, floor at
/// zero (unless disabled), then cap. A per-SKU override replaces any field it sets; its
/// `fixed` value, when set, is published as is (e.g. 0 to stop selling a SKU).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferRules {
    #[serde(default)]
    pub safety_stock: i64,
    /// Percentage of the remaining stock held back, 0–100.
    #[serde(default)]
    pub percent: f64,
    #[serde(default = "yes")]
    pub floor_at_zero: bool,
    #[serde(default)]
    pub cap: Option<i64>,
    #[serde(default)]
    pub overrides: HashMap<String, SkuBuffer>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuBuffer {
    #[serde(default)]
    pub safety_stock: Option<i64>,
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub cap: Option<i64>,
    #[serde(default)]
    pub fixed: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Default for BufferRules {
    fn default() -> Self {
        BufferRules {
            safety_stock: 0,
            percent: 0.0,
            floor_at_zero: true,
            cap: None,
            overrides: HashMap::new(),
        }
    }
}

impl BufferRules {
    pub fn apply(&self, available: i64, sku: &str) -> i64 {
        let over = self.overrides.get(sku);
        if let Some(fixed) = over.and_then(|o| o.fixed) {
            return fixed;
        }
        let safety = over.and_then(|o| o.safety_stock).unwrap_or(self.safety_stock);
        let percent = over.and_then(|o| o.percent).unwrap_or(self.percent).clamp(0.0, 100.0);
        let cap = over.and_then(|o| o.cap).or(self.cap);
        let mut quantity = available.saturating_sub(safety);
        if quantity > 0 && percent > 0.0 {
            // Round down: never publish a unit the rule holds back.
            quantity = (quantity as f64 * (100.0 - percent) / 100.0).floor() as i64;
        }
        if self.floor_at_zero {
            quantity = quantity.max(0);
        }
        if let Some(cap) = cap {
            quantity = quantity.min(cap);
        }
        quantity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_stock_then_percentage_then_floor_then_cap() {
        let rules = BufferRules { safety_stock: 3, percent: 10.0, cap: Some(50), ..BufferRules::default() };
        // 23 - 3 = 20, less 10 % = 18.
        assert_eq!(rules.apply(23, "A"), 18);
        // 15 - 3 = 12, 10.8 rounds down.
        assert_eq!(rules.apply(15, "A"), 10);
        assert_eq!(rules.apply(2, "A"), 0);
        assert_eq!(rules.apply(-7, "A"), 0);
        assert_eq!(rules.apply(1_000, "A"), 50);
    }

    #[test]
    fn without_floor_negative_availability_passes_through() {
        let rules = BufferRules { safety_stock: 1, floor_at_zero: false, ..BufferRules::default() };
        assert_eq!(rules.apply(0, "A"), -1);
        assert_eq!(rules.apply(5, "A"), 4);
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let mut rules = BufferRules { safety_stock: 5, cap: Some(100), ..BufferRules::default() };
        rules.overrides.insert("LOW".into(), SkuBuffer { safety_stock: Some(0), ..SkuBuffer::default() });
        rules.overrides.insert("OFF".into(), SkuBuffer { fixed: Some(0), ..SkuBuffer::default() });
        rules.overrides.insert("HALF".into(), SkuBuffer { percent: Some(50.0), ..SkuBuffer::default() });
        assert_eq!(rules.apply(10, "LOW"), 10);
        assert_eq!(rules.apply(500, "LOW"), 100);
        assert_eq!(rules.apply(10, "OFF"), 0);
        assert_eq!(rules.apply(15, "HALF"), 5);
        assert_eq!(rules.apply(10, "OTHER"), 5);
    }
}
