//! Money (issue 14): exact decimals from the channel's JSON to Brightpearl's rows, rounded by
//! the currency's ISO 4217 minor unit, and the per-store money settings.
//!
//! Channel JSON carries money as strings ("12.50": parsed exactly) or numbers. serde_json keeps
//! a non-integer number as an f64, so a number is read from its shortest round-trip text, which
//! is the text the channel wrote for any amount of up to 15 significant digits; integers are
//! read exactly. Brightpearl takes row values as JSON numbers with at most 4 decimals
//! (apis.md §1.8): [`wire`] writes them so their printed form is the decimal itself.

use crate::error::{Error, Result};
pub use rust_decimal::Decimal;
use rust_decimal::RoundingStrategy;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Decimals Brightpearl keeps on sales-order row `net`/`tax` (row PUT doc: "up to 4 dp").
pub const BRIGHTPEARL_DECIMALS: u32 = 4;

/// An amount from a JSON string or number; absent, null or "" is zero.
pub fn parse(value: Option<&Value>) -> Result<Decimal> {
    match value {
        None | Some(Value::Null) => Ok(Decimal::ZERO),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Decimal::ZERO),
        Some(Value::String(s)) => parse_text(s.trim()),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Decimal::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(Decimal::from(u))
            } else {
                parse_text(&n.to_string())
            }
        }
        Some(other) => Err(Error::BadInput(format!("amount {other} is not a number"))),
    }
}

fn parse_text(s: &str) -> Result<Decimal> {
    let parsed = if s.contains(['e', 'E']) { Decimal::from_scientific(s) } else { s.parse::<Decimal>() };
    parsed.map_err(|_| Error::BadInput(format!("amount {s:?} is not a number")))
}

/// The currency's minor unit (JPY 0, GBP 2, KWD 3) from ISO 4217. An unknown code is a bad
/// order, not a guess of 2.
pub fn minor_unit(currency: &str) -> Result<u32> {
    let code = currency.trim().to_ascii_uppercase();
    let known = iso_currency::Currency::from_code(&code)
        .ok_or_else(|| Error::BadInput(format!("currency {currency:?} is not an ISO 4217 code")))?;
    // Funds and specials (XAU, XDR...) have no minor unit in the table: no shop sells in them.
    let exponent = known
        .exponent()
        .ok_or_else(|| Error::BadInput(format!("currency {code} has no minor unit in ISO 4217")))?;
    Ok(u32::from(exponent).min(BRIGHTPEARL_DECIMALS))
}

/// Rounded to `places`, half away from zero (how shops and tax authorities round).
pub fn round(value: Decimal, places: u32) -> Decimal {
    value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
}

/// Splits `total` over `weights` in proportion, each share rounded to `places`, by largest
/// remainder so the shares add up to `total` (itself rounded to `places`) exactly. Zero
/// weights everywhere: the total goes to the first share.
pub fn allocate(total: Decimal, weights: &[Decimal], places: u32) -> Vec<Decimal> {
    if weights.is_empty() {
        return Vec::new();
    }
    let total = round(total, places);
    let weight_sum: Decimal = weights.iter().map(|w| w.abs()).sum();
    if weight_sum.is_zero() {
        let mut shares = vec![Decimal::ZERO; weights.len()];
        shares[0] = total;
        return shares;
    }
    let exact: Vec<Decimal> = weights.iter().map(|w| total * w.abs() / weight_sum).collect();
    let rounded: Vec<Decimal> =
        exact.iter().map(|e| e.round_dp_with_strategy(places, towards_zero())).collect();
    distribute(total, exact, rounded, places)
}

/// Rounds every value to `places` so that the rounded values add up to their exact sum
/// rounded to `places` (largest remainder: the values that lost most get the spare units).
pub fn round_preserving_sum(values: &[Decimal], places: u32) -> Vec<Decimal> {
    round_to_sum(values, round(values.iter().copied().sum(), places), places)
}

/// Rounds every value to `places` so that they add up to `target` exactly, by largest
/// remainder. Used when the sum must meet a channel's own rounded figure.
pub fn round_to_sum(values: &[Decimal], target: Decimal, places: u32) -> Vec<Decimal> {
    let rounded: Vec<Decimal> =
        values.iter().map(|v| v.round_dp_with_strategy(places, towards_zero())).collect();
    distribute(target, values.to_vec(), rounded, places)
}

fn towards_zero() -> RoundingStrategy {
    RoundingStrategy::ToZero
}

/// Hands out `total − Σ rounded` one minor unit at a time to the largest remainders.
fn distribute(total: Decimal, exact: Vec<Decimal>, mut rounded: Vec<Decimal>, places: u32) -> Vec<Decimal> {
    let unit = Decimal::new(1, places);
    let mut spare = total - rounded.iter().copied().sum::<Decimal>();
    let step = if spare.is_sign_negative() { -unit } else { unit };
    let mut order: Vec<usize> = (0..exact.len()).collect();
    // Largest remainder in the direction the spare goes; ties to the earlier value.
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - rounded[a], exact[b] - rounded[b]);
        let (ra, rb) = if step.is_sign_negative() { (-ra, -rb) } else { (ra, rb) };
        rb.cmp(&ra).then(a.cmp(&b))
    });
    let mut i = 0;
    while !spare.is_zero() && !order.is_empty() {
        rounded[order[i % order.len()]] += step;
        spare -= step;
        i += 1;
    }
    rounded
}

/// A Brightpearl money value as a JSON number: rounded to 4 places, trailing zeros dropped.
/// serde_json prints an f64 by its shortest round-trip form, which for a decimal of at most 4
/// places and under 10^11 is the decimal's own text, so Brightpearl reads exactly this value.
pub fn wire(value: Decimal) -> Value {
    let value = round(value, BRIGHTPEARL_DECIMALS).normalize();
    if value.scale() == 0
        && let Some(i) = value.to_i64()
    {
        return Value::from(i);
    }
    value.to_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
}

/// What happens to a channel line that has no SKU (a custom item) — `sku_less_lines`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkuLessLines {
    /// A named non-stock row (no product), like shipping.
    #[default]
    Row,
    /// The order is parked with reason `no_sku`.
    Park,
}

/// Nominal codes for the rows that are not products; unset codes are left to Brightpearl's
/// defaulting rules (apis.md §1.8: "missing nominalCode is defaulted by rules").
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NominalCodes {
    #[serde(default)]
    pub shipping: Option<String>,
    /// Fees and surcharges, handling and gift wrapping.
    #[serde(default)]
    pub fees: Option<String>,
    /// Order discounts not allocated to lines.
    #[serde(default)]
    pub discounts: Option<String>,
    /// Gift cards sold (a liability) and redeemed.
    #[serde(default)]
    pub gift_cards: Option<String>,
    #[serde(default)]
    pub tips: Option<String>,
    /// Lines without a SKU written as rows (custom items).
    #[serde(default)]
    pub custom_items: Option<String>,
}

/// Brightpearl tax codes for a store: by the row's tax rate (percent, e.g. `"20"`, `"5.5"`,
/// `"0"`), else by the delivery country (alpha-2 or alpha-3, the store's tax zone), else the
/// store's `tax_code`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxCodes {
    #[serde(default)]
    pub by_rate: BTreeMap<String, String>,
    #[serde(default)]
    pub by_zone: BTreeMap<String, String>,
}

/// `[stores.money]`: how a store's money becomes Brightpearl rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMoney {
    #[serde(default)]
    pub sku_less_lines: SkuLessLines,
    #[serde(default)]
    pub nominal_codes: NominalCodes,
    #[serde(default)]
    pub tax_codes: TaxCodes,
    /// The Brightpearl account's base currency. When the order's currency differs and the
    /// channel gives an exchange rate to it, the order carries that fixed rate; otherwise
    /// Brightpearl applies its own rate.
    #[serde(default)]
    pub brightpearl_base_currency: Option<String>,
}

/// Percentage points within which a row's effective rate matches a configured rate (tax is
/// rounded per line, so 0.45 on 6.00 reads as 7.5%).
const RATE_TOLERANCE: Decimal = Decimal::from_parts(5, 0, 0, false, 1);

impl TaxCodes {
    /// The configured code for a row's `net`/`tax` and the delivery country, if any.
    pub fn code_for(&self, net: Decimal, tax: Decimal, country: Option<&str>) -> Option<String> {
        if !self.by_rate.is_empty() {
            let rate = if net.is_zero() { Decimal::ZERO } else { tax * Decimal::ONE_HUNDRED / net.abs() };
            let best = self
                .by_rate
                .iter()
                .filter_map(|(k, code)| {
                    k.trim().trim_end_matches('%').parse::<Decimal>().ok().map(|r| (r, code))
                })
                .map(|(r, code)| ((r - rate).abs(), code))
                .filter(|(distance, _)| *distance <= RATE_TOLERANCE)
                .min_by(|a, b| a.0.cmp(&b.0));
            if let Some((_, code)) = best {
                return Some(code.clone());
            }
        }
        let country = country?.trim().to_ascii_uppercase();
        self.by_zone.iter().find(|(zone, _)| zone.eq_ignore_ascii_case(&country)).map(|(_, c)| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_strings_and_numbers_exactly() {
        assert_eq!(parse(Some(&json!("12.50"))).unwrap(), d("12.50"));
        assert_eq!(parse(Some(&json!(0.1))).unwrap(), d("0.1"));
        assert_eq!(parse(Some(&json!(19.99))).unwrap(), d("19.99"));
        assert_eq!(parse(Some(&json!(3))).unwrap(), d("3"));
        assert_eq!(parse(Some(&json!("1e2"))).unwrap(), d("100"));
        assert_eq!(parse(None).unwrap(), Decimal::ZERO);
        assert!(parse(Some(&json!("abc"))).is_err());
        assert!(parse(Some(&json!(true))).is_err());
    }

    #[test]
    fn minor_units_come_from_iso_4217() {
        assert_eq!(minor_unit("JPY").unwrap(), 0);
        assert_eq!(minor_unit("gbp").unwrap(), 2);
        assert_eq!(minor_unit("KWD").unwrap(), 3);
        assert_eq!(minor_unit("BHD").unwrap(), 3);
        assert!(minor_unit("XYZ").is_err());
    }

    #[test]
    fn allocation_adds_up_by_largest_remainder() {
        // 10.00 in three equal parts: 3.34 + 3.33 + 3.33.
        assert_eq!(allocate(d("10"), &[d("1"), d("1"), d("1")], 2), vec![d("3.34"), d("3.33"), d("3.33")]);
        // 100 JPY over 1:2: 33 and 67.
        assert_eq!(allocate(d("100"), &[d("1"), d("2")], 0), vec![d("33"), d("67")]);
        // Negative totals (a discount) allocate the same way.
        assert_eq!(allocate(d("-0.05"), &[d("1"), d("1")], 2), vec![d("-0.03"), d("-0.02")]);
        let kept = round_preserving_sum(&[d("1.005"), d("1.005"), d("1.005")], 2);
        assert_eq!(kept.iter().copied().sum::<Decimal>(), d("3.02"));
    }

    #[test]
    fn wire_values_print_as_the_decimal() {
        for (input, printed) in [
            ("12.5000", "12.5"),
            ("0.0001", "0.0001"),
            ("1234567.8912", "1234567.8912"),
            ("7", "7"),
            ("-3.10", "-3.1"),
            ("2.00005", "2.0001"),
        ] {
            assert_eq!(wire(d(input)).to_string(), printed);
        }
    }

    #[test]
    fn tax_codes_by_rate_then_zone() {
        let codes = TaxCodes {
            by_rate: [("20".to_string(), "T20".to_string()), ("0".to_string(), "T0".to_string())].into(),
            by_zone: [("US".to_string(), "US-SALES".to_string())].into(),
        };
        assert_eq!(codes.code_for(d("10"), d("2"), None).as_deref(), Some("T20"));
        assert_eq!(codes.code_for(d("10"), d("0"), None).as_deref(), Some("T0"));
        assert_eq!(codes.code_for(d("6.00"), d("0.45"), Some("us")).as_deref(), Some("US-SALES"));
        assert_eq!(codes.code_for(d("6.00"), d("0.45"), None), None);
    }

    #[test]
    fn store_money_settings_parse_from_toml() {
        let text = r#"
            [[stores]]
            name = "uk"
            kind = "woocommerce"
            base_url = "https://shop.example"
            [stores.money]
            sku_less_lines = "park"
            brightpearl_base_currency = "GBP"
            [stores.money.nominal_codes]
            shipping = "4040"
            tips = "4070"
            [stores.money.tax_codes.by_rate]
            "20" = "T20"
            [stores.money.tax_codes.by_zone]
            IE = "T-IE"
        "#;
        let config = crate::config::Config::from_toml(text).unwrap();
        let money = &config.stores[0].money;
        assert_eq!(money.sku_less_lines, SkuLessLines::Park);
        assert_eq!(money.nominal_codes.shipping.as_deref(), Some("4040"));
        assert_eq!(money.nominal_codes.fees, None);
        assert_eq!(money.tax_codes.code_for(d("5"), d("1"), None).as_deref(), Some("T20"));
        assert_eq!(money.tax_codes.code_for(d("5"), d("0.7"), Some("ie")).as_deref(), Some("T-IE"));
        assert!(crate::config::Config::from_toml(&text.replace("\"park\"", "\"retry\"")).is_err());
    }
}
