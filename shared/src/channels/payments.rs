//! `[stores.payments]`: which Brightpearl payment method a store's payments are posted with.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorePayments {
    /// The channel's gateway name (Shopify `gateway`, WooCommerce `payment_method`, BigCommerce
    /// `payment_method` / refund `provider_id`) → a payment method code set up in Brightpearl,
    /// e.g. `shopify_payments = "SHOPIFYPAY"`, `paypal = "PAYPAL"`. Matched without regard to case.
    #[serde(default)]
    pub methods: BTreeMap<String, String>,
    /// The code for gateways the map does not name; unset falls back to `[orders]
    /// payment_method_code`, then to the channel kind upper-cased.
    #[serde(default)]
    pub default_method: Option<String>,
    /// The store authorises first and captures later: post an `AUTH` when the order is
    /// authorised and `CAPTURE`s as it is captured (else one `RECEIPT` per capture).
    #[serde(default)]
    pub auth_then_capture: bool,
}

impl StorePayments {
    /// The store's code for `gateway`, if the store names one.
    pub fn method_for(&self, gateway: Option<&str>) -> Option<String> {
        gateway
            .and_then(|g| self.methods.iter().find(|(k, _)| k.eq_ignore_ascii_case(g.trim())))
            .map(|(_, code)| code.clone())
            .or_else(|| self.default_method.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_map_to_codes_with_a_default() {
        let p = StorePayments {
            methods: [("shopify_payments".to_string(), "SHOPIFYPAY".to_string())].into(),
            default_method: Some("OTHER".into()),
            auth_then_capture: false,
        };
        assert_eq!(p.method_for(Some("Shopify_Payments")).as_deref(), Some("SHOPIFYPAY"));
        assert_eq!(p.method_for(Some("paypal")).as_deref(), Some("OTHER"));
        assert_eq!(p.method_for(None).as_deref(), Some("OTHER"));
        assert_eq!(StorePayments::default().method_for(Some("paypal")), None);
    }
}
