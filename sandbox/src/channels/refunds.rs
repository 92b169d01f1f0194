//! Shop refunds (issue 15): a merchant refunds lines (restocked or not) and optionally the
//! shipping; each shop shows its refunds in its own documented shape (Shopify Refund resource,
//! WooCommerce order refunds, BigCommerce `payment_actions/refunds`) and lists them on the
//! order. Amounts come from the order's own pricing, pro rata per unit, in minor units.

use super::pricing::price;
use super::{Channel, ChannelSandbox, Gate, Order, finish, header_str};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct ShopRefund {
    pub id: u64,
    /// (line id, quantity refunded).
    pub lines: Vec<(u64, u32)>,
    pub shipping: bool,
    pub restock: bool,
    pub created_at: DateTime<Utc>,
}

/// One refunded part in minor units: (net, tax).
struct Parts {
    /// (line index, quantity, net, tax).
    lines: Vec<(usize, u32, i64, i64)>,
    shipping: Option<(i64, i64)>,
}

impl Parts {
    fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.2 + l.3).sum::<i64>() + self.shipping.map_or(0, |s| s.0 + s.1)
    }
    fn tax(&self) -> i64 {
        self.lines.iter().map(|l| l.3).sum::<i64>() + self.shipping.map_or(0, |s| s.1)
    }
}

fn pro_rata(v: i64, part: u32, whole: u32) -> i64 {
    if whole == 0 {
        return 0;
    }
    let (n, d) = (v as i128 * part as i128, whole as i128);
    let q = (2 * n.abs() + d) / (2 * d);
    (if n < 0 { -q } else { q }) as i64
}

fn parts(o: &Order, r: &ShopRefund) -> Parts {
    let p = price(o);
    let lines = r
        .lines
        .iter()
        .filter_map(|(line_id, qty)| {
            let i = o.lines.iter().position(|l| l.line_id == *line_id)?;
            let (whole, part) = (o.lines[i].quantity, p.lines[i]);
            // Gross pro rata first, so gross per unit is what the shop charged.
            let gross = pro_rata(part.net + part.tax, *qty, whole);
            let tax = pro_rata(part.tax, *qty, whole);
            Some((i, *qty, gross - tax, tax))
        })
        .collect();
    Parts { lines, shipping: r.shipping.then_some((p.shipping.net, p.shipping.tax)) }
}

/// Money refunded so far, minor units.
pub(crate) fn refunded_total(o: &Order) -> i64 {
    o.refunds.iter().map(|r| parts(o, r).total()).sum()
}

pub(crate) fn shopify_refund(o: &Order, r: &ShopRefund) -> Value {
    let p = price(o);
    let x = parts(o, r);
    let items: Vec<Value> = x
        .lines
        .iter()
        .map(|(i, qty, net, tax)| {
            let l = &o.lines[*i];
            let subtotal = if o.money.prices_include_tax { net + tax } else { *net };
            json!({"id": r.id * 100 + *i as u64, "line_item_id": l.line_id, "quantity": qty,
                "restock_type": if r.restock { "return" } else { "no_restock" },
                "subtotal": p.text(subtotal), "total_tax": p.text(*tax),
                "line_item": {"id": l.line_id, "sku": l.sku.clone().unwrap_or_default(), "name": l.name, "title": l.name}})
        })
        .collect();
    let adjustments: Vec<Value> = x
        .shipping
        .iter()
        .map(|(net, tax)| {
            json!({"id": r.id * 100 + 99, "kind": "shipping_refund", "reason": "Shipping refund",
            "amount": p.text(-net), "tax_amount": p.text(-tax)})
        })
        .collect();
    json!({"id": r.id, "order_id": o.id, "created_at": r.created_at.to_rfc3339(), "processed_at": r.created_at.to_rfc3339(),
        "note": null, "restock": r.restock, "refund_line_items": items, "order_adjustments": adjustments,
        "transactions": [{"id": r.id + 1, "order_id": o.id, "kind": "refund", "status": "success", "gateway": "manual",
            "amount": p.text(x.total()), "currency": o.currency}]})
}

pub(crate) fn woocommerce_refund(o: &Order, r: &ShopRefund) -> Value {
    let p = price(o);
    let x = parts(o, r);
    let items: Vec<Value> = x
        .lines
        .iter()
        .map(|(i, qty, net, tax)| {
            let l = &o.lines[*i];
            json!({"id": r.id * 100 + *i as u64, "name": l.name, "product_id": l.product.map(|p| p.0), "quantity": -(*qty as i64),
                "subtotal": p.text(-net), "subtotal_tax": p.text(-tax), "total": p.text(-net), "total_tax": p.text(-tax),
                "sku": l.sku.clone().unwrap_or_default(),
                "meta_data": [{"id": r.id * 100 + 50, "key": "_refunded_item_id", "value": l.line_id.to_string()}]})
        })
        .collect();
    let shipping: Vec<Value> = x
        .shipping
        .iter()
        .map(|(net, tax)| json!({"id": r.id * 100 + 99, "method_title": "Standard", "total": p.text(-net), "total_tax": p.text(-tax),
            "meta_data": [{"key": "_refunded_item_id", "value": "1"}]}))
        .collect();
    let gmt = r.created_at.format("%Y-%m-%dT%H:%M:%S").to_string();
    json!({"id": r.id, "date_created": gmt, "date_created_gmt": gmt, "amount": p.text(x.total()), "reason": "",
        "refunded_by": 1, "refunded_payment": false, "meta_data": [], "line_items": items, "shipping_lines": shipping,
        "fee_lines": []})
}

pub(crate) fn bigcommerce_refund(o: &Order, r: &ShopRefund) -> Value {
    let p = price(o);
    let x = parts(o, r);
    let mut items: Vec<Value> = x
        .lines
        .iter()
        .map(|(i, qty, _, _)| json!({"item_type": "PRODUCT", "item_id": o.lines[*i].line_id, "quantity": qty, "requested_amount": null}))
        .collect();
    if let Some((net, tax)) = x.shipping {
        items.push(
            json!({"item_type": "SHIPPING", "item_id": o.address_id, "requested_amount": p.text(net + tax)}),
        );
    }
    let amount: f64 = p.text(x.total()).parse().unwrap_or(0.0);
    json!({"id": r.id, "order_id": o.id, "user_id": 0, "created": r.created_at.to_rfc3339(), "reason": "Sandbox refund",
        "total_amount": amount, "total_tax": p.text(x.tax()).parse::<f64>().unwrap_or(0.0),
        "uses_merchant_override_values": false,
        "payments": [{"id": r.id + 1, "provider_id": "storecredit", "amount": amount, "offline": true, "is_declined": false, "declined_message": ""}],
        "items": items})
}

impl ChannelSandbox {
    /// A merchant refund of `lines` (SKU, quantity) and optionally the shipping; returns the
    /// refund id. Restocked goods go back on the shelf.
    pub fn refund_order(
        &self,
        channel: Channel,
        order_id: &str,
        lines: &[(&str, u32)],
        shipping: bool,
        restock: bool,
    ) -> Option<String> {
        let mut shop = self.shop(channel);
        let id = shop.next();
        let order = shop.orders.get_mut(&order_id.parse().ok()?)?;
        let picked: Vec<(u64, u32)> = lines
            .iter()
            .filter_map(|(sku, qty)| {
                order
                    .lines
                    .iter()
                    .find(|l| l.sku.as_deref() == Some(*sku))
                    .map(|l| (l.line_id, (*qty).min(l.quantity)))
            })
            .collect();
        order.refunds.push(ShopRefund {
            id,
            lines: picked.clone(),
            shipping,
            restock,
            created_at: Utc::now(),
        });
        order.updated_at = Utc::now();
        if restock {
            let skus: Vec<(String, u32)> = picked
                .iter()
                .filter_map(|(lid, q)| {
                    order
                        .lines
                        .iter()
                        .find(|l| l.line_id == *lid)
                        .and_then(|l| l.sku.clone())
                        .map(|s| (s, *q))
                })
                .collect();
            for (sku, q) in skus {
                if let Some(p) = shop.by_sku(&sku) {
                    p.quantity += i64::from(q);
                }
            }
        }
        Some(id.to_string())
    }

    /// Marks the order paid or unpaid (a payment captured later, or an order awaiting one).
    pub fn set_paid(&self, channel: Channel, order_id: &str, paid: bool) -> bool {
        let mut shop = self.shop(channel);
        match order_id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(o) => {
                o.paid = paid;
                o.updated_at = Utc::now();
                true
            }
            None => false,
        }
    }

    /// Shopify, on an unpaid order: authorised, and captured in part (`captured` in the order's
    /// currency), as `financial_status` `authorized` / `partially_paid` show it.
    pub fn set_authorised_and_captured(
        &self,
        channel: Channel,
        order_id: &str,
        authorised: bool,
        captured: Option<f64>,
    ) -> bool {
        let mut shop = self.shop(channel);
        match order_id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(o) => {
                let places = super::pricing::places(&o.currency) as i32;
                o.paid = false;
                o.authorized = authorised;
                o.captured = captured.map(|c| (c * 10f64.powi(places)).round() as i64);
                o.updated_at = Utc::now();
                true
            }
            None => false,
        }
    }

    /// The order's refunds as the channel's refunds endpoint answers them.
    pub fn refunds_json(&self, channel: Channel, order_id: &str) -> Option<Value> {
        let shop = self.shop(channel);
        let o = shop.orders.get(&order_id.parse().ok()?)?;
        Some(match channel {
            Channel::Shopify => {
                json!({"refunds": o.refunds.iter().map(|r| shopify_refund(o, r)).collect::<Vec<_>>()})
            }
            Channel::Woocommerce => {
                Value::Array(o.refunds.iter().map(|r| woocommerce_refund(o, r)).collect())
            }
            Channel::Bigcommerce => {
                json!({"data": o.refunds.iter().map(|r| bigcommerce_refund(o, r)).collect::<Vec<_>>(), "meta": {}})
            }
        })
    }

    /// The body of the refund's webhook: Shopify's `refunds/create` carries the refund.
    pub(crate) fn refund_body(&self, channel: Channel, order_id: &str, refund_id: &str) -> Option<Value> {
        let shop = self.shop(channel);
        let o = shop.orders.get(&order_id.parse().ok()?)?;
        let r = o.refunds.iter().find(|r| r.id.to_string() == refund_id)?;
        Some(match channel {
            Channel::Shopify => shopify_refund(o, r),
            Channel::Woocommerce => woocommerce_refund(o, r),
            Channel::Bigcommerce => bigcommerce_refund(o, r),
        })
    }
}

async fn serve(
    sb: Arc<ChannelSandbox>,
    channel: Channel,
    endpoint: &str,
    authorised: bool,
    id: &str,
) -> Response {
    let lose = match sb.gate(channel, endpoint, authorised).await {
        Gate::Answer(r) => return r,
        Gate::Serve { lose } => lose,
    };
    let answer = match sb.refunds_json(channel, id) {
        Some(v) => Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"errors": "Not Found"}))).into_response(),
    };
    finish(lose, answer)
}

async fn shopify(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((_v, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    let ok = header_str(&h, "x-shopify-access-token").is_some();
    serve(sb, Channel::Shopify, "rest:refunds", ok, &id).await
}

async fn woocommerce(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Response {
    let ok = header_str(&h, "authorization").is_some();
    serve(sb, Channel::Woocommerce, "orders/refunds", ok, &id).await
}

/// BigCommerce's refunds count against the store's shared quota like every other call.
async fn bigcommerce(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    let (lose, left) = match super::bigcommerce::enter(&sb, &hash, "v3/refunds", &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let answer = match sb.refunds_json(Channel::Bigcommerce, &id) {
        Some(v) => Json(v).into_response(),
        None => {
            (StatusCode::NOT_FOUND, Json(json!([{"status": 404, "message": "Not found"}]))).into_response()
        }
    };
    super::bigcommerce::done(lose, left, answer)
}

pub(super) fn routes() -> axum::Router<Arc<ChannelSandbox>> {
    axum::Router::new()
        .route("/admin/api/{version}/orders/{id}/refunds.json", get(shopify))
        .route("/wp-json/wc/v3/orders/{id}/refunds", get(woocommerce))
        .route("/stores/{hash}/v3/orders/{id}/payment_actions/refunds", get(bigcommerce))
}
