//! Input Brightpearl documents as invalid, refused with a 400 envelope that names the field:
//! country codes that are not ISO 3166 alpha-3, rows without `taxCode`, money with more
//! decimals than Brightpearl keeps, unknown ids in an ID set.

use super::api::{Answer, error};
use super::state::State;
use serde_json::Value;

/// Decimals Brightpearl keeps on sales-order / credit row `net` and `tax`. The row PUT doc
/// says "up to 4 dp"; that the POST refuses more (rather than rounding) is our strict
/// assumption.
pub const ROW_DECIMALS: usize = 4;
/// The order-row POST doc: rowNet/rowTax "2 dp on POST".
pub const ORDER_ROW_DECIMALS: usize = 2;

/// Decimal places of a JSON number or numeric string, trailing zeros not counted; `None`
/// when the value is not a number.
pub fn decimals(v: &Value) -> Option<usize> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let lower = text.to_ascii_lowercase();
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i64>().ok()?),
        None => (lower.clone(), 0),
    };
    mantissa.trim_start_matches(['-', '+']).parse::<f64>().ok()?;
    let fraction = mantissa.split_once('.').map(|(_, f)| f.trim_end_matches('0').len()).unwrap_or(0) as i64;
    Some((fraction - exponent).max(0) as usize)
}

/// A quantity that is a whole number (`5`, `5.0`, `"5.0000"`).
pub fn is_whole(v: &Value) -> bool {
    decimals(v) == Some(0)
}

/// An ISO 3166-1 alpha-3 code that exists ("GBR"; "GB", "gbr" and "XXX" are refused).
pub fn country_code(obj: &Value, path: &str, code: &str) -> Result<(), Answer> {
    match obj.pointer(&format!("/{}", path.replace('.', "/"))) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(c))
            if c.len() == 3
                && c.bytes().all(|b| b.is_ascii_uppercase())
                && celes::Country::from_alpha3(c).is_ok() =>
        {
            Ok(())
        }
        Some(other) => {
            Err(error(400, code, format!("{path} {other} is not a 3-letter ISO 3166-1 alpha-3 country code")))
        }
    }
}

fn money(index: usize, field: &str, max: usize, value: Option<&Value>) -> Result<(), Answer> {
    let Some(v) = value else { return Ok(()) };
    match decimals(v) {
        Some(d) if d <= max => Ok(()),
        Some(d) => Err(error(
            400,
            "ORDC-017",
            format!("rows[{index}].{field} {v} has {d} decimal places; at most {max} are kept"),
        )),
        None => Err(error(400, "ORDC-017", format!("rows[{index}].{field} {v} is not a number"))),
    }
}

/// A sales-order or sales-credit POST body: address country codes, and per row a `taxCode`
/// and `net`/`tax` with at most [`ROW_DECIMALS`] decimals.
pub fn sales_document(body: &Value) -> Result<(), Answer> {
    for path in [
        "customer.address.countryIsoCode",
        "billing.address.countryIsoCode",
        "delivery.address.countryIsoCode",
    ] {
        country_code(body, path, "ORDC-018")?;
    }
    let rows = body.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (i, row) in rows.iter().enumerate() {
        if row.get("taxCode").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(error(400, "ORDC-015", format!("rows[{i}].taxCode is required")));
        }
        money(i, "net", ROW_DECIMALS, row.get("net"))?;
        money(i, "tax", ROW_DECIMALS, row.get("tax"))?;
    }
    Ok(())
}

/// An order-row POST body: `rowValue.rowNet.value` / `rowTax.value` at most 2 decimals.
pub fn order_row_values(body: &Value) -> Result<(), Answer> {
    money(0, "rowValue.rowNet.value", ORDER_ROW_DECIMALS, body.pointer("/rowValue/rowNet/value"))?;
    money(0, "rowValue.rowTax.value", ORDER_ROW_DECIMALS, body.pointer("/rowValue/rowTax/value"))
}

impl State {
    /// One unknown (invalid or deleted) id fails the whole ID-set request with a 400 that does
    /// not say which id (apis.md §8.1: a client must isolate it by splitting the set).
    pub(super) fn all_products_exist(&self, ids: &[u64]) -> Result<(), Answer> {
        if ids.iter().all(|id| self.products.contains_key(id)) {
            Ok(())
        } else {
            Err(error(400, "CMNC-400", "One or more ids in the ID set are not valid"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_count_as_written_without_trailing_zeros() {
        assert_eq!(decimals(&json!(12.5)), Some(1));
        assert_eq!(decimals(&json!("12.50000")), Some(1));
        assert_eq!(decimals(&json!(12.34567)), Some(5));
        assert_eq!(decimals(&json!(0.1 + 0.2)), Some(17));
        assert_eq!(decimals(&json!(1e-7)), Some(7));
        assert_eq!(decimals(&json!(7)), Some(0));
        assert_eq!(decimals(&json!("abc")), None);
        assert!(is_whole(&json!("5.0000")));
        assert!(!is_whole(&json!(1.5)));
    }

    #[test]
    fn country_codes_must_be_alpha_3() {
        assert!(country_code(&json!({"countryIsoCode": "GBR"}), "countryIsoCode", "X").is_ok());
        assert!(country_code(&json!({"countryIsoCode": "GB"}), "countryIsoCode", "X").is_err());
        assert!(country_code(&json!({"countryIsoCode": "gbr"}), "countryIsoCode", "X").is_err());
        assert!(country_code(&json!({"countryIsoCode": "XXX"}), "countryIsoCode", "X").is_err());
        assert!(country_code(&json!({}), "countryIsoCode", "X").is_ok());
        let nested = json!({"delivery": {"address": {"countryIsoCode": "US"}}});
        assert!(country_code(&nested, "delivery.address.countryIsoCode", "X").is_err());
    }
}
