//! BigCommerce shipments with tracking: `POST /v2/orders/{id}/shipments` for the shipped order
//! products, after reading the order's shipments (all pages) to skip a tracking number that is
//! already there, and its products (all pages) to find the shipped lines.

use super::BigCommerceChannel;
use crate::channels::http::{Retry, with_query};
use crate::channels::{Fulfilment, id_of, quantity_of, text};
use crate::error::{Error, Result};
use serde_json::{Value, json};

impl BigCommerceChannel {
    pub(super) async fn ship(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        let shipments = self.get_all(&format!("v2/orders/{order_id}/shipments")).await?;
        let already = shipments
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| text(s, "tracking_number").as_deref() == Some(fulfilment.tracking_number.as_str()));
        if already {
            tracing::info!(store = %self.store.name, order_id, "shipment with this tracking number exists; skipped");
            return Ok(());
        }
        let products = self.get_all(&format!("v2/orders/{order_id}/products")).await?;
        let products = products.as_array().cloned().unwrap_or_default();
        let mut items = Vec::new();
        let mut address_id = None;
        let wanted: Vec<(String, u32)> = if fulfilment.lines.is_empty() {
            products.iter().filter_map(|p| Some((id_of(p, "id")?, quantity_of(p, "product").ok()?))).collect()
        } else {
            fulfilment.lines.clone()
        };
        for (key, quantity) in &wanted {
            let found = products.iter().find(|p| {
                let open = p.get("quantity").and_then(Value::as_u64).unwrap_or(0)
                    > p.get("quantity_shipped").and_then(Value::as_u64).unwrap_or(0);
                open && (text(p, "sku").as_deref() == Some(key.as_str())
                    || id_of(p, "id").as_deref() == Some(key.as_str()))
            });
            let Some(product) = found else {
                tracing::warn!(store = %self.store.name, order_id, line = %key, "no open BigCommerce order product for shipped line");
                continue;
            };
            address_id = address_id.or_else(|| id_of(product, "order_address_id"));
            items.push(json!({"order_product_id": product.get("id"), "quantity": quantity}));
        }
        if items.is_empty() {
            return Err(Error::BadInput(format!(
                "BigCommerce order {order_id} has nothing open for these lines"
            )));
        }
        let address_id = match address_id {
            Some(id) => id,
            None => {
                let addresses = self.get(&format!("v2/orders/{order_id}/shipping_addresses"), &[]).await?;
                addresses.as_array().and_then(|a| a.first()).and_then(|a| id_of(a, "id")).ok_or_else(
                    || Error::BadInput(format!("BigCommerce order {order_id} has no shipping address")),
                )?
            }
        };
        let mut body = json!({
            "order_address_id": address_id.parse::<u64>().unwrap_or_default(),
            "tracking_number": fulfilment.tracking_number,
            "shipping_provider": "",
            "tracking_carrier": fulfilment.carrier,
            "items": items,
        });
        if let Some(url) = &fulfilment.tracking_url {
            body["tracking_link"] = json!(url);
        }
        let url = with_query(&self.url(&format!("v2/orders/{order_id}/shipments")), &[])?;
        self.call(reqwest::Method::POST, url, Some(body), Retry::ThrottleOnly).await?;
        Ok(())
    }
}
