//! Rows and money (issue 14): SKUs mapped to products (one cached lookup per wave), every
//! money component of the normalised order turned into a Brightpearl row, and the totals
//! invariant checked before anything is posted.
//!
//! Rows: a product line is a row by SKU; every other component is a named non-stock row (no
//! `productId`) on the store's nominal code for its kind (`[stores.money.nominal_codes]`).
//! Each row's net and tax are rounded to the currency's minor unit so that their sums keep
//! the exact sums (largest remainder). **Invariant**: Σ(net + tax) = the channel's total and
//! Σ tax = its tax, to the minor unit, or the order is parked `total_mismatch` with both
//! figures. A refusal here is permanent: the order is parked, never retried.

use super::saga::{Step, external_ref};
use super::writer::{OrderWriter, Work};
use crate::batch::Outcome;
use crate::brightpearl::{NewOrderRow, NewSalesOrder, OrderAddress, PostalAddress, SalesOrder};
use crate::channels::{Address, ChannelOrder, ChargeKind, LineKind, StoreConfig};
use crate::error::Error;
use crate::money::{Decimal, SkuLessLines, StoreMoney, minor_unit, round, round_to_sum};
use std::collections::{BTreeSet, HashMap};

/// Why an order cannot be written as it stands.
#[derive(Debug)]
pub enum Refusal {
    /// Parked with a typed code; the text reads `{code}: {details}` (the code is read from the
    /// prefix until the failures module takes typed codes).
    Park { code: &'static str, details: String },
    /// An error with its own class (an unknown SKU, a bad currency).
    Error(Error),
}

impl Refusal {
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Refusal::Park { code, .. } => Some(code),
            Refusal::Error(_) => None,
        }
    }

    /// The parked text: `code: details`, or the error's own text.
    pub fn text(&self) -> String {
        match self {
            Refusal::Park { code, details } => format!("{code}: {details}"),
            Refusal::Error(e) => e.to_string(),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Error(e)
    }
}

impl OrderWriter {
    /// Maps SKUs (one cached lookup for the wave) and builds the sales orders to post, for the
    /// orders not yet written (no saga, or an earlier attempt stopped at `creating`).
    pub(super) async fn prepare(&self, works: &mut [Work]) {
        let needs = |w: &Work| w.pending() && w.saga.as_ref().is_none_or(|s| s.step == Step::Creating);
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for w in works.iter().filter(|w| needs(w)) {
            let Some(order) = &w.order else { continue };
            skus.extend(
                order
                    .lines
                    .iter()
                    .filter(|l| l.kind == LineKind::Product)
                    .filter_map(|l| sku_of(l.sku.as_deref())),
            );
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
                Err(Refusal::Error(e)) => w.fail(&e),
                Err(park @ Refusal::Park { .. }) => {
                    tracing::warn!(order = %w.order_id, reason = %park.text(), "order parked before posting");
                    w.outcome = Some(Outcome::Parked(park.text()));
                }
            }
        }
    }
}

fn sku_of(sku: Option<&str>) -> Option<String> {
    sku.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// One row before rounding.
struct Draft {
    product_id: u64,
    name: Option<String>,
    quantity: i64,
    net: Decimal,
    tax: Decimal,
    nominal_code: Option<String>,
    external_ref: Option<String>,
}

fn named(name: &str, net: Decimal, tax: Decimal, nominal: &Option<String>) -> Draft {
    Draft {
        product_id: 0,
        name: Some(name.to_string()),
        quantity: 1,
        net,
        tax,
        nominal_code: nominal.clone(),
        external_ref: None,
    }
}

/// Every money component of the order as an unrounded row.
fn drafts(
    order: &ChannelOrder,
    store: &StoreConfig,
    products: &HashMap<String, u64>,
    misc: Option<u64>,
) -> Result<Vec<Draft>, Refusal> {
    let codes = &store.money.nominal_codes;
    let mut rows = Vec::new();
    for line in &order.lines {
        let quantity = i64::from(line.quantity);
        let external_ref = Some(line.line_id.clone());
        let (product_id, name, nominal) = match (line.kind, sku_of(line.sku.as_deref())) {
            (LineKind::GiftCard, _) => (0, Some(line.name.clone()), codes.gift_cards.clone()),
            (LineKind::Tip, _) => (0, Some(line.name.clone()), codes.tips.clone()),
            (LineKind::Product, Some(sku)) => {
                let product = products.get(&sku).copied().or(misc).ok_or(Error::UnknownSku(sku))?;
                // The catch-all product keeps the channel's description.
                (product, (Some(product) == misc).then(|| line.name.clone()), None)
            }
            (LineKind::Product, None) => match store.money.sku_less_lines {
                SkuLessLines::Row => (0, Some(line.name.clone()), codes.custom_items.clone()),
                SkuLessLines::Park => {
                    return Err(Refusal::Park {
                        code: "no_sku",
                        details: format!(
                            "line {} ({:?}) has no SKU and the store parks such lines",
                            line.line_id, line.name
                        ),
                    });
                }
            },
        };
        rows.push(Draft {
            product_id,
            name,
            quantity,
            net: line.net,
            tax: line.tax,
            nominal_code: nominal,
            external_ref,
        });
    }
    let shipping_product = store.shipping_product_sku.as_ref().and_then(|sku| products.get(sku).copied());
    for s in &order.shipping_lines {
        let mut row = named(&format!("Shipping: {}", s.title), s.net, s.tax, &codes.shipping);
        // 0: a named row without a product when no shipping product is configured.
        row.product_id = shipping_product.unwrap_or(0);
        rows.push(row);
    }
    for c in &order.charges {
        let nominal = match c.kind {
            ChargeKind::Fee | ChargeKind::Handling | ChargeKind::Wrapping => &codes.fees,
            ChargeKind::Discount => &codes.discounts,
            ChargeKind::GiftCard => &codes.gift_cards,
            ChargeKind::Tip => &codes.tips,
        };
        rows.push(named(&c.name, c.net, c.tax, nominal));
    }
    Ok(rows)
}

/// The Brightpearl rows for a channel order, rounded to its currency's minor unit, after the
/// totals invariant. `products` maps SKUs to product ids; `misc` is the catch-all product.
pub fn order_rows(
    order: &ChannelOrder,
    store: &StoreConfig,
    products: &HashMap<String, u64>,
    misc: Option<u64>,
) -> Result<Vec<NewOrderRow>, Refusal> {
    let places = minor_unit(&order.currency)?;
    let drafts = drafts(order, store, products, misc)?;
    check_totals(order, &drafts, places)?;
    // Rounded to the minor unit so the rows meet the channel's own rounded figures exactly.
    let (want_total, want_tax) = (round(order.total, places), round(order.total_tax, places));
    let taxes = round_to_sum(&drafts.iter().map(|d| d.tax).collect::<Vec<_>>(), want_tax, places);
    let nets = round_to_sum(&drafts.iter().map(|d| d.net).collect::<Vec<_>>(), want_total - want_tax, places);
    let country = order
        .delivery_address
        .as_ref()
        .or(order.billing_address.as_ref())
        .and_then(|a| a.country_code.as_deref());
    Ok(drafts
        .into_iter()
        .zip(nets.into_iter().zip(taxes))
        .map(|(d, (net, tax))| NewOrderRow {
            product_id: d.product_id,
            name: d.name,
            quantity: d.quantity,
            net,
            tax,
            tax_code: tax_code(&store.money, store, net, tax, country),
            nominal_code: d.nominal_code,
            external_ref: d.external_ref,
        })
        .collect())
}

pub(super) fn tax_code(
    money: &StoreMoney,
    store: &StoreConfig,
    net: Decimal,
    tax: Decimal,
    country: Option<&str>,
) -> Option<String> {
    money.tax_codes.code_for(net, tax, country).or_else(|| store.tax_code.clone())
}

/// Σ(net + tax) and Σ tax of the rows.
pub fn row_totals(rows: &[NewOrderRow]) -> (Decimal, Decimal) {
    let tax: Decimal = rows.iter().map(|r| r.tax).sum();
    (rows.iter().map(|r| r.net).sum::<Decimal>() + tax, tax)
}

/// The invariant: the components add up to the channel's total and tax, to the minor unit.
fn check_totals(order: &ChannelOrder, drafts: &[Draft], places: u32) -> Result<(), Refusal> {
    let tax: Decimal = drafts.iter().map(|d| d.tax).sum();
    let total = drafts.iter().map(|d| d.net).sum::<Decimal>() + tax;
    let (total, tax) = (round(total, places), round(tax, places));
    let (want_total, want_tax) = (round(order.total, places), round(order.total_tax, places));
    if total == want_total && tax == want_tax {
        return Ok(());
    }
    Err(Refusal::Park {
        code: "total_mismatch",
        details: format!(
            "rows add up to {total} {currency} (tax {tax}) but the channel's order total is {want_total} (tax {want_tax})",
            currency = order.currency
        ),
    })
}

/// After posting: Brightpearl's own `totalValue` for the order against what the rows add up to.
/// `Some(text)` (`total_mismatch: …`, both figures) when they differ; `None` when they agree or
/// Brightpearl did not say. The caller adds the text as an order note, counts a metric and
/// parks a record.
pub fn readback_mismatch(sent: &NewSalesOrder, read: &SalesOrder) -> Option<String> {
    readback_mismatch_of("sales order", sent, read)
}

/// As [`readback_mismatch`], for any order type Brightpearl totals (`what`: "sales credit").
pub(super) fn readback_mismatch_of(what: &str, sent: &NewSalesOrder, read: &SalesOrder) -> Option<String> {
    let brightpearl = read.total_value?;
    let places = minor_unit(&sent.currency_code).unwrap_or(crate::money::BRIGHTPEARL_DECIMALS);
    let (ours, _) = row_totals(&sent.rows);
    (round(brightpearl, places) != round(ours, places)).then(|| {
        format!(
            "total_mismatch: Brightpearl's totalValue for {what} {} is {brightpearl} {} but its rows were sent adding up to {ours}",
            read.id, sent.currency_code
        )
    })
}

/// The Brightpearl sales order for a channel order (customer id filled in later).
pub fn sales_order(
    order: &ChannelOrder,
    store: &StoreConfig,
    products: &HashMap<String, u64>,
    misc: Option<u64>,
) -> Result<NewSalesOrder, Refusal> {
    let rows = order_rows(order, store, products, misc)?;
    let mut notes = Vec::new();
    let delivery_address = order.delivery_address.as_ref().or(order.billing_address.as_ref()).map(|a| {
        let (address, truncated) = order_address(a);
        if !truncated.is_empty() {
            notes.push(format!(
                "Address shortened to Brightpearl's field lengths; as the customer wrote it: {}",
                truncated.join("; ")
            ));
        }
        address
    });
    let base = store.money.brightpearl_base_currency.as_deref().map(str::to_ascii_uppercase);
    // A fixed rate only when the channel's rate is to the account's base currency.
    let exchange_rate = match (&base, &order.shop_currency, order.exchange_rate) {
        (Some(base), Some(shop), Some(rate))
            if *base == shop.to_ascii_uppercase() && *base != order.currency =>
        {
            Some(rate)
        }
        _ => None,
    };
    Ok(NewSalesOrder {
        customer_id: 0,
        external_ref: external_ref(&order.store, &order.id),
        reference: Some(order.number.clone()),
        channel_id: store.brightpearl_channel_id,
        currency_code: order.currency.clone(),
        exchange_rate,
        price_list_id: store.price_list_id,
        warehouse_id: store.reservation_warehouse_id,
        status_id: None,
        placed_on: order.created_at,
        delivery_address,
        shipping_method_id: None,
        rows,
        notes,
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

/// Brightpearl's address field lengths. Not in the API docs we hold (apis.md §1.8 lists the
/// keys only): these are conservative assumptions, shorter than any limit seen in clients.
pub const NAME_LIMIT: usize = 64;
pub const ADDRESS_LINE_LIMIT: usize = 64;
pub const POSTCODE_LIMIT: usize = 20;

/// `text` cut to `limit` characters (never inside a character); the full text is pushed to
/// `truncated` when it was cut.
fn fit(text: Option<&String>, limit: usize, field: &str, truncated: &mut Vec<String>) -> Option<String> {
    let text = text?;
    if text.chars().count() <= limit {
        return Some(text.clone());
    }
    truncated.push(format!("{field}: {text}"));
    Some(text.chars().take(limit).collect::<String>().trim_end().to_string())
}

/// The delivery address in Brightpearl's shape, and the full text of each field it shortened.
fn order_address(a: &Address) -> (OrderAddress, Vec<String>) {
    let mut cut = Vec::new();
    let address = OrderAddress {
        address_full_name: fit(a.full_name.as_ref(), NAME_LIMIT, "name", &mut cut),
        company_name: fit(a.company.as_ref(), NAME_LIMIT, "company", &mut cut),
        address_line1: fit(a.line1.as_ref(), ADDRESS_LINE_LIMIT, "line 1", &mut cut).unwrap_or_default(),
        address_line2: fit(a.line2.as_ref(), ADDRESS_LINE_LIMIT, "line 2", &mut cut),
        address_line3: fit(a.line3.as_ref(), ADDRESS_LINE_LIMIT, "city", &mut cut),
        address_line4: fit(a.line4.as_ref(), ADDRESS_LINE_LIMIT, "region", &mut cut),
        postal_code: fit(a.postcode.as_ref(), POSTCODE_LIMIT, "postcode", &mut cut).unwrap_or_default(),
        country_iso_code: country_alpha3(a.country_code.as_deref()),
        telephone: a.phone.clone(),
        email: a.email.clone(),
    };
    (address, cut)
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
