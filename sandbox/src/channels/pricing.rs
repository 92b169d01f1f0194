//! How a simulated shop prices an order (issue 14): tax-inclusive or not, one tax rate, a
//! percentage discount on every line, shipping and a surcharge. Worked in the currency's minor
//! units and rounded per line, as shops do, so each channel's payload adds up the way a real
//! one does (and its rounding is the writer's problem, not the sandbox's).

use super::Order;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderMoney {
    /// Prices, shipping and discounts as shown include tax (Shopify `taxes_included`,
    /// WooCommerce `prices_include_tax`, BigCommerce tax-inclusive pricing).
    #[serde(default)]
    pub prices_include_tax: bool,
    #[serde(default)]
    pub tax_percent: u32,
    /// Taken off every line (a coupon / automatic discount).
    #[serde(default)]
    pub discount_percent: u32,
    /// Shipping as shown.
    #[serde(default = "default_shipping")]
    pub shipping: f64,
    /// A surcharge, ex tax: Woo `fee_lines`, BigCommerce handling; Shopify has none.
    #[serde(default)]
    pub fee: f64,
}

fn default_shipping() -> f64 {
    5.0
}

impl Default for OrderMoney {
    fn default() -> Self {
        OrderMoney {
            prices_include_tax: false,
            tax_percent: 0,
            discount_percent: 0,
            shipping: default_shipping(),
            fee: 0.0,
        }
    }
}

/// Minor units of the currencies the sandbox shops sell in (ISO 4217).
pub(crate) fn places(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" => 0,
        "KWD" | "BHD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// One priced part, in minor units.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Part {
    /// As the shop shows it (inc tax when prices include tax), before discounts.
    pub shown: i64,
    /// Discount as shown, and ex tax.
    pub discount_shown: i64,
    pub discount_ex: i64,
    /// Ex tax, after discounts.
    pub net: i64,
    pub tax: i64,
}

pub(crate) struct Priced {
    pub places: u32,
    pub unit_shown: Vec<i64>,
    pub lines: Vec<Part>,
    pub shipping: Part,
    pub fee: Part,
    pub total: i64,
    pub tax: i64,
}

fn minor(v: f64, places: u32) -> i64 {
    (v * 10f64.powi(places as i32)).round() as i64
}

/// `v × num / den` rounded half away from zero.
fn share(v: i64, num: i64, den: i64) -> i64 {
    if den == 0 {
        return 0;
    }
    let twice = 2 * v * num / den;
    (twice + twice.signum()) / 2
}

impl Priced {
    pub fn text(&self, minor_units: i64) -> String {
        let scale = 10i64.pow(self.places);
        let sign = if minor_units < 0 { "-" } else { "" };
        let v = minor_units.abs();
        if self.places == 0 {
            return format!("{sign}{v}");
        }
        format!("{sign}{}.{:0width$}", v / scale, v % scale, width = self.places as usize)
    }
}

pub(crate) fn price(o: &Order) -> Priced {
    let m = &o.money;
    let places = places(&o.currency);
    let rate = i64::from(m.tax_percent);
    let part = |shown: i64, discount_percent: u32| {
        let discount_shown = share(shown, i64::from(discount_percent), 100);
        let after = shown - discount_shown;
        let (net, tax, discount_ex) = if m.prices_include_tax {
            let tax = share(after, rate, 100 + rate);
            (after - tax, tax, discount_shown - share(discount_shown, rate, 100 + rate))
        } else {
            (after, share(after, rate, 100), discount_shown)
        };
        Part { shown, discount_shown, discount_ex, net, tax }
    };
    let unit_shown: Vec<i64> = o.lines.iter().map(|l| minor(l.price, places)).collect();
    let lines: Vec<Part> = o
        .lines
        .iter()
        .zip(&unit_shown)
        .map(|(l, u)| part(u * i64::from(l.quantity), m.discount_percent))
        .collect();
    let shipping = part(minor(m.shipping, places), 0);
    let fee_net = minor(m.fee, places);
    let fee = Part { shown: fee_net, net: fee_net, tax: share(fee_net, rate, 100), ..Part::default() };
    let parts = || lines.iter().chain([&shipping, &fee]);
    let tax = parts().map(|p| p.tax).sum();
    let total = parts().map(|p| p.net + p.tax).sum();
    Priced { places, unit_shown, lines, shipping, fee, total, tax }
}

#[cfg(test)]
mod tests {
    use super::super::{Channel, ChannelSandbox, ChannelSandboxConfig, NewOrder, NewOrderLine};
    use super::*;

    fn jpy_order(channel: Channel) -> serde_json::Value {
        let sb = ChannelSandbox::new(ChannelSandboxConfig::default(), "http://127.0.0.1:1");
        let new = NewOrder {
            email: None,
            first_name: "A".into(),
            last_name: "B".into(),
            currency: "JPY".into(),
            lines: vec![NewOrderLine {
                sku: Some("TEA".into()),
                name: "Tea".into(),
                quantity: 3,
                price: 1250.0,
            }],
        };
        let money = OrderMoney {
            prices_include_tax: true,
            tax_percent: 10,
            discount_percent: 10,
            shipping: 500.0,
            fee: 150.0,
        };
        sb.create_priced_order(channel, new, money).1
    }

    #[test]
    fn a_tax_inclusive_jpy_order_adds_up_in_whole_yen() {
        // 3 × 1250 = 3750 shown, 10% off = 375 → 3375 inc tax: tax 3375 × 10/110 = 306.8 → 307,
        // net 3068; the discount ex tax 375 − 34 = 341. Shipping 500 inc: 45 tax, 455 net.
        // Surcharge 150 ex + 15 tax. Total 3068 + 307 + 455 + 45 + 150 + 15 = 4040, tax 367.
        let woo = jpy_order(Channel::Woocommerce);
        assert_eq!((woo["total"].as_str(), woo["total_tax"].as_str()), (Some("4040"), Some("367")));
        let line = &woo["line_items"][0];
        assert_eq!(
            (line["subtotal"].as_str(), line["total"].as_str(), line["total_tax"].as_str()),
            (Some("3409"), Some("3068"), Some("307"))
        );
        assert_eq!(woo["fee_lines"][0]["total_tax"].as_str(), Some("15"));
        // Shopify shows the inclusive price and has no surcharge: 4040 − 165 = 3875.
        let shopify = jpy_order(Channel::Shopify);
        assert_eq!(shopify["line_items"][0]["price"].as_str(), Some("1250"));
        assert_eq!(shopify["line_items"][0]["discount_allocations"][0]["amount"].as_str(), Some("375"));
        assert_eq!(
            (shopify["total_price"].as_str(), shopify["total_tax"].as_str()),
            (Some("3875"), Some("352"))
        );
        assert_eq!(places("KWD"), 3);
    }
}
