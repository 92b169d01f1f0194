//! A channel refund in the shape the order writer credits (issue 15): one `ChannelRefund` per
//! refund the channel recorded, its rows as the channel itemises them, and the money returned.
//! Each channel module says where each field comes from (`{shopify,woocommerce,bigcommerce}/refund.rs`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a refunded row is; it decides the sales-credit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundLineKind {
    /// Goods back in stock (restocked or returned): a product row by SKU.
    Restocked,
    /// Shipping refunded: a non-stock row on the shipping nominal code.
    Shipping,
    /// Anything else (goods refunded but kept, fees, amounts the channel does not itemise):
    /// a named non-stock row.
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundLine {
    pub kind: RefundLineKind,
    /// The order's line id the refund names (Shopify line item, Woo line, BigCommerce order product).
    pub line_id: Option<String>,
    pub sku: Option<String>,
    pub name: String,
    pub quantity: u32,
    /// The whole row, ex tax, positive for money returned.
    pub net: Decimal,
    pub tax: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRefund {
    /// The channel's refund id: the credit's externalRef is `{store}:{order}:refund:{id}`.
    pub id: String,
    pub lines: Vec<RefundLine>,
    /// Money returned to the customer, tax included: the rows must add up to it.
    pub total: Decimal,
    /// Tax returned, when the channel states it apart from the rows (BigCommerce).
    pub tax: Option<Decimal>,
    pub currency: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// The gateway or provider that paid it back (for the payment method map).
    pub gateway: Option<String>,
    pub reason: Option<String>,
}

impl ChannelRefund {
    /// Σ(net + tax) over the rows.
    pub fn rows_total(&self) -> Decimal {
        self.lines.iter().map(|l| l.net + l.tax).sum()
    }

    /// The part of `total` the channel did not itemise (an amount-only refund, a rounding
    /// difference), as a non-stock row, so the credit still meets the money returned. `None`
    /// when the rows meet or exceed it (an excess is a mismatch the writer parks).
    pub(crate) fn unitemised_line(&self) -> Option<RefundLine> {
        let rest = self.total - self.rows_total();
        (rest > Decimal::ZERO).then(|| RefundLine {
            kind: RefundLineKind::Other,
            line_id: None,
            sku: None,
            name: "Refund not itemised by the channel".into(),
            quantity: 1,
            net: rest,
            tax: Decimal::ZERO,
        })
    }
}
