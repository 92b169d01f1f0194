//! What a merchant (or a test) does to a simulated store: products, bundles, variations,
//! stock edits, orders and where their lines sit, scripted failures, installed extensions.

use super::{Channel, ChannelSandbox, Line, NewOrder, Order, OrderMoney, Product};
use chrono::Utc;
use serde_json::Value;

impl ChannelSandbox {
    /// Adds (or updates) a product with stock at the channel's location; returns its product id.
    pub fn seed_product(&self, channel: Channel, sku: &str, quantity: i64) -> u64 {
        let mut shop = self.shop(channel);
        if let Some(p) = shop.by_sku(sku) {
            p.quantity = quantity;
            return p.product_id;
        }
        let product_id = shop.next();
        let variant_id = shop.next();
        let inventory_item_id = shop.next();
        shop.products.push(Product {
            sku: sku.to_string(),
            product_id,
            variant_id,
            inventory_item_id,
            name: format!("Product {sku}"),
            price: 10.0,
            quantity,
            requires_components: false,
            stocked: true,
            parent_id: None,
            variable: false,
        });
        product_id
    }

    /// Shopify: makes the SKU's variant a parent bundle (`requiresComponents`), or not.
    pub fn set_requires_components(&self, channel: Channel, sku: &str, bundle: bool) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.requires_components = bundle).is_some()
    }

    /// Shopify: stocks the SKU's item at the store's location, or takes it off.
    pub fn set_stocked(&self, channel: Channel, sku: &str, stocked: bool) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.stocked = stocked).is_some()
    }

    /// WooCommerce: a variation `sku` of the variable product `parent_sku` (created, without
    /// stock of its own, when missing); returns (parent id, variation id).
    pub fn seed_variation(&self, parent_sku: &str, sku: &str, quantity: i64) -> (u64, u64) {
        let channel = Channel::Woocommerce;
        let parent = self.seed_product(channel, parent_sku, 0);
        let variation = self.seed_product(channel, sku, quantity);
        let mut shop = self.shop(channel);
        for p in shop.products.iter_mut() {
            if p.product_id == parent {
                p.variable = true;
            }
            if p.product_id == variation {
                p.parent_id = Some(parent);
            }
        }
        (parent, variation)
    }

    /// Shopify: the next `count` inventory writes fail on Shopify's side (an HTTP 500 after the
    /// idempotency key was recorded as failed), so a retry under the same key is answered
    /// `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`.
    pub fn fail_inventory_writes(&self, count: u32) {
        self.shop(Channel::Shopify).fail_inventory_writes = count;
    }

    /// WooCommerce: installs or removes the Shipment Tracking extension.
    pub fn set_shipment_tracking(&self, installed: bool) {
        self.shop(Channel::Woocommerce).shipment_tracking_missing = !installed;
    }

    /// Shopify: moves line `i` of the order to `locations[i]` (lines past the end stay), so
    /// the order has one fulfilment order per location holding lines.
    pub fn assign_line_locations(&self, channel: Channel, order_id: &str, locations: &[u64]) -> bool {
        let mut shop = self.shop(channel);
        let Some(id) = order_id.parse::<u64>().ok().filter(|id| shop.orders.contains_key(id)) else {
            return false;
        };
        let mut wanted: Vec<u64> = Vec::new();
        if let Some(order) = shop.orders.get_mut(&id) {
            for (line, location) in order.lines.iter_mut().zip(locations) {
                line.location_id = *location;
            }
            for line in &order.lines {
                if !wanted.contains(&line.location_id) {
                    wanted.push(line.location_id);
                }
            }
        }
        let mut fos = Vec::new();
        for location in wanted {
            let existing = shop.orders[&id].fulfillment_orders.iter().find(|(_, l)| *l == location).copied();
            fos.push(existing.unwrap_or_else(|| (shop.next(), location)));
        }
        if let Some(order) = shop.orders.get_mut(&id) {
            order.fulfillment_orders = fos;
        }
        true
    }

    pub fn seed_products(&self, channel: Channel, products: &[(String, i64)]) {
        for (sku, quantity) in products {
            self.seed_product(channel, sku, *quantity);
        }
    }

    /// The SKU's available quantity at the channel's location.
    pub fn quantity(&self, channel: Channel, sku: &str) -> Option<i64> {
        self.shop(channel).by_sku(sku).map(|p| p.quantity)
    }

    /// A merchant edit.
    pub fn set_quantity(&self, channel: Channel, sku: &str, quantity: i64) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.quantity = quantity).is_some()
    }

    /// Creates an order; returns its id and the JSON the channel would send for it.
    pub fn create_order(&self, channel: Channel, new: NewOrder) -> (String, Value) {
        self.create_priced_order(channel, new, OrderMoney::default())
    }

    /// As `create_order`, priced by the shop's tax, discount, shipping and fee settings.
    pub fn create_priced_order(&self, channel: Channel, new: NewOrder, money: OrderMoney) -> (String, Value) {
        let id = {
            let mut shop = self.shop(channel);
            let id = shop.next();
            let address_id = shop.next();
            let mut lines = Vec::new();
            for l in &new.lines {
                let line_id = shop.next();
                let fo_line_id = shop.next();
                let found = l.sku.as_deref().and_then(|s| shop.by_sku(s));
                let product = found.as_ref().map(|p| (p.product_id, p.variant_id));
                let parent = found.and_then(|p| p.parent_id);
                lines.push(Line {
                    line_id,
                    fo_line_id,
                    sku: l.sku.clone().filter(|s| !s.is_empty()),
                    name: if l.name.is_empty() {
                        l.sku.clone().unwrap_or_else(|| "Item".into())
                    } else {
                        l.name.clone()
                    },
                    quantity: l.quantity,
                    price: l.price,
                    shipped: 0,
                    product,
                    parent,
                    location_id: self.config.shopify_location_id,
                });
            }
            let now = Utc::now();
            let number = shop.orders.len() as u64 + 1001;
            let fulfillment_order = (shop.next(), self.config.shopify_location_id);
            shop.orders.insert(
                id,
                Order {
                    id,
                    number,
                    email: new.email.clone(),
                    first_name: new.first_name.clone(),
                    last_name: new.last_name.clone(),
                    currency: if new.currency.is_empty() { "GBP".into() } else { new.currency.clone() },
                    lines,
                    address_id,
                    created_at: now,
                    updated_at: now,
                    cancelled: false,
                    fulfilments: Vec::new(),
                    notes: Vec::new(),
                    fulfillment_orders: vec![fulfillment_order],
                    money,
                    paid: true,
                    authorized: false,
                    captured: None,
                    refunds: Vec::new(),
                },
            );
            id
        };
        let json = self.order_json(channel, &id.to_string()).unwrap_or(Value::Null);
        (id.to_string(), json)
    }

    /// Marks the order cancelled (a merchant action).
    pub fn cancel_order(&self, channel: Channel, order_id: &str) -> bool {
        let mut shop = self.shop(channel);
        match order_id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(order) => {
                order.cancelled = true;
                order.updated_at = Utc::now();
                true
            }
            None => false,
        }
    }
}
