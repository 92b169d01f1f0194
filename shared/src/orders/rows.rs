//! Rows and money: SKUs mapped to products (one cached lookup per wave) and the sales order
//! built from the normalised channel order.

use super::saga::{Step, external_ref};
use super::writer::{OrderWriter, Work};
use crate::brightpearl::{NewOrderRow, NewSalesOrder, OrderAddress, PostalAddress};
use crate::channels::{Address, ChannelOrder, StoreConfig};
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

impl OrderWriter {
    /// Maps SKUs (one cached lookup for the wave) and builds the sales orders to post, for the
    /// orders not yet written (no saga, or an earlier attempt stopped at `creating`).
    pub(super) async fn prepare(&self, works: &mut [Work]) {
        let needs = |w: &Work| w.pending() && w.saga.as_ref().is_none_or(|s| s.step == Step::Creating);
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for w in works.iter().filter(|w| needs(w)) {
            let Some(order) = &w.order else { continue };
            skus.extend(order.lines.iter().filter_map(|l| l.sku.clone()));
            if let Some(s) = w.channel.as_ref().and_then(|c| c.store().shipping_product_sku.clone()) {
                skus.insert(s);
            }
        }
        if let Some(misc) = &self.config.misc_sku {
            skus.insert(misc.clone());
        }
        if !works.iter().any(needs) {
            return;
        }
        let skus: Vec<String> = skus.into_iter().collect();
        let products = if skus.is_empty() {
            HashMap::new()
        } else {
            match self.brightpearl.products_by_sku(&skus).await {
                Ok(p) => p,
                Err(e) => {
                    works.iter_mut().filter(|w| needs(w)).for_each(|w| w.fail(&e));
                    return;
                }
            }
        };
        let misc = self.config.misc_sku.as_ref().and_then(|s| products.get(s).copied());
        for w in works.iter_mut().filter(|w| needs(w)) {
            let (Some(order), Some(channel)) = (&w.order, &w.channel) else { continue };
            match sales_order(order, channel.store(), &products, misc) {
                Ok(o) => w.new_order = Some(o),
                Err(e) => w.fail(&e),
            }
        }
    }
}

/// The Brightpearl sales order for a channel order (customer id filled in later).
fn sales_order(
    order: &ChannelOrder,
    store: &StoreConfig,
    products: &HashMap<String, u64>,
    misc: Option<u64>,
) -> Result<NewSalesOrder> {
    let mut rows = Vec::new();
    for line in &order.lines {
        let product = match line.sku.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(sku) => {
                products.get(sku).copied().or(misc).ok_or_else(|| Error::UnknownSku(sku.to_string()))?
            }
            // A line without a SKU (a tip, a custom item) becomes a named row without a product.
            None => 0,
        };
        let gross = line.unit_price * f64::from(line.quantity) - line.discount;
        let net = if order.prices_include_tax { gross - line.tax } else { gross };
        rows.push(NewOrderRow {
            product_id: product,
            // The catch-all product and product-less rows keep the channel's description.
            name: (product == 0 || Some(product) == misc).then(|| line.name.clone()),
            quantity: i64::from(line.quantity),
            net: round4(net),
            tax: round4(line.tax),
            tax_code: store.tax_code.clone(),
            external_ref: Some(line.line_id.clone()),
        });
    }
    for s in &order.shipping_lines {
        let net = if order.prices_include_tax { s.price - s.tax } else { s.price };
        let product = store.shipping_product_sku.as_ref().and_then(|sku| products.get(sku).copied());
        rows.push(NewOrderRow {
            // 0: a named row without a product when no shipping product is configured.
            product_id: product.unwrap_or(0),
            name: Some(format!("Shipping: {}", s.title)),
            quantity: 1,
            net: round4(net),
            tax: round4(s.tax),
            tax_code: store.tax_code.clone(),
            external_ref: None,
        });
    }
    Ok(NewSalesOrder {
        customer_id: 0,
        external_ref: external_ref(&order.store, &order.id),
        reference: Some(order.number.clone()),
        channel_id: store.brightpearl_channel_id,
        currency_code: order.currency.clone(),
        price_list_id: store.price_list_id,
        warehouse_id: store.reservation_warehouse_id,
        status_id: None,
        placed_on: order.created_at,
        delivery_address: order
            .delivery_address
            .as_ref()
            .or(order.billing_address.as_ref())
            .map(order_address),
        shipping_method_id: None,
        rows,
    })
}

/// ISO 3166 alpha-3, which Brightpearl documents, from the alpha-2 the channels send (an
/// alpha-3 passes through; anything else is dropped rather than refused).
pub(super) fn country_alpha3(code: Option<&str>) -> Option<String> {
    let code = code?.trim();
    let country = match code.len() {
        2 => celes::Country::from_alpha2(code).ok()?,
        3 => celes::Country::from_alpha3(code).ok()?,
        _ => return None,
    };
    Some(country.alpha3.to_string())
}

fn order_address(a: &Address) -> OrderAddress {
    OrderAddress {
        address_full_name: a.full_name.clone(),
        company_name: a.company.clone(),
        address_line1: a.line1.clone().unwrap_or_default(),
        address_line2: a.line2.clone(),
        address_line3: a.line3.clone(),
        address_line4: a.line4.clone(),
        postal_code: a.postcode.clone().unwrap_or_default(),
        country_iso_code: country_alpha3(a.country_code.as_deref()),
        telephone: a.phone.clone(),
        email: a.email.clone(),
    }
}

pub(super) fn postal_address(a: &Address) -> Option<PostalAddress> {
    Some(PostalAddress {
        address_line1: a.line1.clone().filter(|l| !l.trim().is_empty())?,
        address_line2: a.line2.clone(),
        address_line3: a.line3.clone(),
        address_line4: a.line4.clone(),
        postal_code: a.postcode.clone().unwrap_or_default(),
        country_iso_code: country_alpha3(a.country_code.as_deref()),
    })
}

/// What matters for an update: the delivery address and the lines (SKU × quantity).
pub(super) fn fingerprint(order: &ChannelOrder) -> String {
    let address = order
        .delivery_address
        .as_ref()
        .map(|a| {
            [&a.line1, &a.line2, &a.line3, &a.line4, &a.postcode, &a.country_code]
                .iter()
                .filter_map(|p| p.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let lines = order
        .lines
        .iter()
        .map(|l| format!("{} x{}", l.sku.as_deref().unwrap_or(&l.name), l.quantity))
        .collect::<Vec<_>>()
        .join("; ");
    format!("address [{address}], lines [{lines}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_go_out_as_alpha3() {
        assert_eq!(country_alpha3(Some("GB")).as_deref(), Some("GBR"));
        assert_eq!(country_alpha3(Some("us")).as_deref(), Some("USA"));
        assert_eq!(country_alpha3(Some("DEU")).as_deref(), Some("DEU"));
        assert_eq!(country_alpha3(Some("XX")), None);
        assert_eq!(country_alpha3(None), None);
    }
}
