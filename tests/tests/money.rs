//! Money on real payloads (issue 14): the corpus in `tests/fixtures/orders/` parsed by the real
//! normalisers and turned into rows by the real rows code. Every expected row and total below
//! is worked out by hand from the fixture's own fields (the arithmetic is in the comments).

use pearlsync::brightpearl::{NewOrderRow, sales_order_body};
use pearlsync::channels::{ChannelOrder, StoreConfig, bigcommerce, shopify, woocommerce};
use pearlsync::money::{Decimal, SkuLessLines};
use pearlsync::orders::{Refusal, row_totals, sales_order};
use pearlsync_sandbox::brightpearl::validation;
use pearlsync_tests::fixture;
use serde_json::Value;
use std::collections::HashMap;

fn d(s: &str) -> Decimal {
    s.parse().expect("a decimal")
}

/// A store with every money setting set, so each row's nominal code shows its kind.
fn store() -> StoreConfig {
    let mut store =
        StoreConfig { name: "s".into(), tax_code: Some("T-DEFAULT".into()), ..StoreConfig::default() };
    let codes = &mut store.money.nominal_codes;
    codes.shipping = Some("4040".into());
    codes.fees = Some("4050".into());
    codes.discounts = Some("4060".into());
    codes.gift_cards = Some("2150".into());
    codes.tips = Some("4070".into());
    codes.custom_items = Some("4000".into());
    store.money.tax_codes.by_rate =
        [("20".to_string(), "T20".to_string()), ("0".to_string(), "T0".to_string())].into();
    store
}

fn products(skus: &[&str]) -> HashMap<String, u64> {
    skus.iter().enumerate().map(|(i, s)| (s.to_string(), 1000 + i as u64)).collect()
}

/// (product id or 0, name, quantity, net, tax, nominal code) per row.
type Row = (u64, Option<String>, i64, Decimal, Decimal, Option<String>);

fn shape(rows: &[NewOrderRow]) -> Vec<Row> {
    rows.iter()
        .map(|r| (r.product_id, r.name.clone(), r.quantity, r.net, r.tax, r.nominal_code.clone()))
        .collect()
}

fn named(name: &str, quantity: i64, net: &str, tax: &str, nominal: &str) -> Row {
    (0, Some(name.into()), quantity, d(net), d(tax), Some(nominal.into()))
}

fn product(id: u64, quantity: i64, net: &str, tax: &str) -> Row {
    (id, None, quantity, d(net), d(tax), None)
}

/// Rows of an order that must pass, with the body checked against the strict sandbox.
fn written(
    order: &ChannelOrder,
    store: &StoreConfig,
    map: &HashMap<String, u64>,
) -> pearlsync::brightpearl::NewSalesOrder {
    let so = match sales_order(order, store, map, None) {
        Ok(so) => so,
        Err(refusal) => panic!("order {} refused: {}", order.id, refusal.text()),
    };
    let body = sales_order_body(&so, 42);
    if let Err(answer) = validation::sales_document(&body) {
        panic!("the strict sandbox refuses order {}: {} {}", order.id, answer.status, answer.body);
    }
    so
}

#[test]
fn woo_docs_order_727_rows_and_totals() {
    let order =
        woocommerce::normalise("s", &fixture("orders/woocommerce/docs-retrieve-order-727.json")).unwrap();
    let so = written(&order, &store(), &products(&["Bar3"]));
    // Line 315 has sku "": a named custom-item row. 6.00 + 0.45, 12.00 + 0.90, shipping 10.00.
    assert_eq!(
        shape(&so.rows),
        vec![
            named("Woo Single #1", 2, "6.00", "0.45", "4000"),
            product(1000, 1, "12.00", "0.90"),
            named("Shipping: Flat Rate", 1, "10.00", "0.00", "4040"),
        ]
    );
    // 6 + 0.45 + 12 + 0.90 + 10 = 29.35 (the docs' total); tax 1.35.
    assert_eq!(row_totals(&so.rows), (d("29.35"), d("1.35")));
    assert_eq!(so.currency_code, "USD");
    // 0.45 on 6.00 is 7.5%: no configured rate fits, so the store's default code.
    assert_eq!(so.rows[0].tax_code.as_deref(), Some("T-DEFAULT"));
    assert_eq!(so.rows[2].tax_code.as_deref(), Some("T0"));
}

#[test]
fn woo_tax_inclusive_store_is_not_taxed_twice_and_fees_are_rows() {
    let order = woocommerce::normalise("s", &fixture("orders/woocommerce/tax-inclusive-gbp-fee-coupon.json"))
        .unwrap();
    assert!(order.prices_include_tax);
    let so = written(&order, &store(), &products(&["HOOD-1"]));
    // Woo totals are ex tax even in a tax-inclusive store: the line is 45.00 net (50.00 less
    // the 5.00 coupon) + 9.00 VAT, not 45.00 − 9.00.
    assert_eq!(
        shape(&so.rows),
        vec![
            product(1000, 2, "45.00", "9.00"),
            named("Shipping: Royal Mail", 1, "5.00", "1.00", "4040"),
            named("Gift wrap surcharge", 1, "2.50", "0.50", "4050"),
        ]
    );
    // 45 + 9 + 5 + 1 + 2.50 + 0.50 = 63.00; tax 9 + 1 + 0.50 = 10.50.
    assert_eq!(row_totals(&so.rows), (d("63.00"), d("10.50")));
    assert_eq!(order.lines[0].discount, d("5.00"));
    assert!(so.rows.iter().all(|r| r.tax_code.as_deref() == Some("T20")), "every row is at 20%");
}

#[test]
fn woo_kwd_keeps_three_decimals_on_the_wire() {
    let order = woocommerce::normalise("s", &fixture("orders/woocommerce/kwd-three-decimals.json")).unwrap();
    let so = written(&order, &store(), &products(&["OUD-3"]));
    assert_eq!(
        shape(&so.rows),
        vec![product(1000, 3, "12.345", "0.617"), named("Shipping: Flat Rate", 1, "1.500", "0.000", "4040")]
    );
    // 12.345 + 0.617 + 1.500 = 14.462 KWD.
    assert_eq!(row_totals(&so.rows), (d("14.462"), d("0.617")));
    let body = sales_order_body(&so, 42);
    assert_eq!(body["rows"][0]["net"].to_string(), "12.345");
    assert_eq!(body["rows"][0]["tax"].to_string(), "0.617");
    assert_eq!(body["rows"][1]["net"].to_string(), "1.5");
}

#[test]
fn shopify_recorded_order_with_line_discounts() {
    let order =
        shopify::normalise("s", &fixture("orders/shopify/recorded-hkd-line-discounts-1071.json")).unwrap();
    let so = written(&order, &store(), &HashMap::new());
    // 99.00 − 14.10 − 5.00 = 79.90; 100.00 − 15.00 = 85.00; both lines have sku "".
    assert_eq!(
        shape(&so.rows),
        vec![
            named("aaa0103測試商品11aa", 1, "79.90", "0.00", "4000"),
            named("Green Snowboard", 1, "85.00", "0.00", "4000"),
            named("Shipping: Tran", 1, "22.00", "0.00", "4040"),
        ]
    );
    // 79.90 + 85.00 + 22.00 = 186.90, the recorded total_price.
    assert_eq!(row_totals(&so.rows), (d("186.90"), d("0.00")));
    assert!(order.charges.is_empty(), "total_discounts 34.10 is fully allocated to the lines");
}

#[test]
fn shopify_order_level_tax_is_spread_over_the_rows() {
    let order = shopify::normalise("s", &fixture("orders/shopify/order-level-tax-only.json")).unwrap();
    let so = written(&order, &store(), &products(&["MUG-RED", "COASTER"]));
    // 2.25 over 20.00 : 5.00 : 5.00 = 1.50, 0.375, 0.375; the spare cent of the two equal
    // remainders goes to the earlier row.
    assert_eq!(
        shape(&so.rows),
        vec![
            product(1000, 2, "20.00", "1.50"),
            product(1001, 1, "5.00", "0.38"),
            named("Shipping: Standard", 1, "5.00", "0.37", "4040"),
        ]
    );
    assert_eq!(row_totals(&so.rows), (d("32.25"), d("2.25")));
}

#[test]
fn shopify_presentment_currency_tip_gift_card_and_discounts() {
    let mut store = store();
    store.money.brightpearl_base_currency = Some("USD".into());
    let order =
        shopify::normalise("s", &fixture("orders/shopify/presentment-cad-tip-gift-card-discounts.json"))
            .unwrap();
    assert_eq!((order.currency.as_str(), order.shop_currency.as_deref()), ("CAD", Some("USD")));
    let so = written(&order, &store, &products(&["TENT-2P"]));
    // CAD (presentment): tent 40.00 − 4.00 = 36.00 + 1.80 GST; gift card 25.00; tip 5.00;
    // shipping 10.00 − 10.00 free-shipping discount = 0.00.
    assert_eq!(
        shape(&so.rows),
        vec![
            product(1000, 1, "36.00", "1.80"),
            named("Gift Card", 1, "25.00", "0.00", "2150"),
            named("Tip", 1, "5.00", "0.00", "4070"),
            named("Shipping: Canada Post", 1, "0.00", "0.00", "4040"),
        ]
    );
    // 36 + 1.80 + 25 + 5 = 67.80 CAD, the presentment total.
    assert_eq!(row_totals(&so.rows), (d("67.80"), d("1.80")));
    assert_eq!(so.currency_code, "CAD");
    // The channel's rate to the base currency: 67.80 CAD for 50.17 USD = 1.35140522224…
    assert_eq!(so.exchange_rate, Some(d("67.80") / d("50.17")));
    let body = sales_order_body(&so, 42);
    assert_eq!(body["currency"]["fixedExchangeRate"], Value::Bool(true));
    assert_eq!(body["currency"]["exchangeRate"], Value::String("1.3514052222".into()));
    // The tip is a line here: no order-level tip charge on top.
    assert!(order.charges.is_empty());
}

#[test]
fn shopify_jpy_has_no_minor_unit() {
    let order = shopify::normalise("s", &fixture("orders/shopify/jpy-tax-inclusive.json")).unwrap();
    let so = written(&order, &store(), &products(&["TEA-MATCHA"]));
    // Tax-inclusive: 2 × 1980 = 3960 of which 360 tax → 3600 net; shipping 770 − 70 = 700.
    assert_eq!(
        shape(&so.rows),
        vec![product(1000, 2, "3600", "360"), named("Shipping: Yamato", 1, "700", "70", "4040")]
    );
    assert_eq!(row_totals(&so.rows), (d("4730"), d("430")));
    let body = sales_order_body(&so, 42);
    assert_eq!(body["rows"][0]["net"].to_string(), "3600");
}

#[test]
fn bigcommerce_docs_order_218_does_not_add_up_and_is_parked() {
    let order = bigcommerce::normalise("s", &fixture("orders/bigcommerce/docs-order-218.json")).unwrap();
    // Both of the docs' fee spellings are read: A Fee `cost_exc_tax` 12.30, B Fee `cost_ex_tax` 4.00 + 8.00.
    let fees: Vec<(Decimal, Decimal)> = order.charges.iter().take(2).map(|c| (c.net, c.tax)).collect();
    assert_eq!(fees, vec![(d("12.30"), d("0")), (d("4.00"), d("8.00"))]);
    let refusal = sales_order(&order, &store(), &products(&["S-ORAN"]), None).expect_err("parked");
    // Product 55.99 − 1.59 = 54.40 + 9.24; shipping 11.09 + 0.91; fees 12.30, 4.00 + 8.00;
    // unallocated discount 5.00 + 5.00 − 1.59 = −8.41. Net 73.38 + tax 18.15 = 91.53, but
    // the docs' total_inc_tax is 69.84 (tax 5.31).
    assert_eq!(refusal.code(), Some("total_mismatch"));
    assert_eq!(
        refusal.text(),
        "total_mismatch: rows add up to 91.53 USD (tax 18.15) but the channel's order total is 69.84 (tax 5.31)"
    );
    assert!(matches!(refusal, Refusal::Park { .. }));
}

#[test]
fn bigcommerce_sixty_lines_with_handling_and_wrapping() {
    let payload = fixture("orders/bigcommerce/sixty-lines-handling-wrapping.json");
    let order = bigcommerce::normalise("s", &payload).unwrap();
    assert_eq!(order.lines.len(), 60);
    let skus: Vec<String> = (1..=60).map(|i| format!("SEED-{i:02}")).collect();
    let map: HashMap<String, u64> =
        skus.iter().enumerate().map(|(i, s)| (s.clone(), 1000 + i as u64)).collect();
    let so = written(&order, &store(), &map);
    assert_eq!(so.rows.len(), 63);
    // Channel: total_inc_tax 500.9940 → 500.99, total_tax 83.4980 → 83.50, so the nets must
    // make 417.49. Taxes: 60 × 1.3333 floors to 1.33 (79.80) + 2 + 1 + 0.50 = 83.30; the 20
    // spare cents go to the first 20 products (equal remainders). Nets: 60 × 6.6666 floors
    // to 6.66 (399.60) + 10 + 5 + 2.50 = 417.10; 39 spare cents to the first 39 products.
    for (i, row) in so.rows.iter().take(60).enumerate() {
        let net = if i < 39 { d("6.67") } else { d("6.66") };
        let tax = if i < 20 { d("1.34") } else { d("1.33") };
        assert_eq!(
            (row.product_id, row.quantity, row.net, row.tax),
            (1000 + i as u64, 2, net, tax),
            "row {i}"
        );
    }
    assert_eq!(
        shape(&so.rows[60..]),
        vec![
            named("Shipping: Royal Mail 48", 1, "10.00", "2.00", "4040"),
            named("Handling", 1, "5.00", "1.00", "4050"),
            named("Gift wrapping", 1, "2.50", "0.50", "4050"),
        ]
    );
    assert_eq!(row_totals(&so.rows), (d("500.99"), d("83.50")));
}

#[test]
fn sku_less_lines_park_when_the_store_says_so() {
    let mut store = store();
    store.money.sku_less_lines = SkuLessLines::Park;
    let order =
        woocommerce::normalise("s", &fixture("orders/woocommerce/docs-retrieve-order-727.json")).unwrap();
    let refusal = sales_order(&order, &store, &products(&["Bar3"]), None).expect_err("parked");
    assert_eq!(refusal.code(), Some("no_sku"));
    assert!(refusal.text().starts_with("no_sku: line 315"), "{}", refusal.text());
}

#[test]
fn a_tampered_total_is_parked_with_both_figures() {
    let mut payload = fixture("orders/shopify/jpy-tax-inclusive.json");
    payload["total_price"] = Value::String("4731".into());
    let order = shopify::normalise("s", &payload).unwrap();
    let refusal = sales_order(&order, &store(), &products(&["TEA-MATCHA"]), None).expect_err("parked");
    assert_eq!(
        refusal.text(),
        "total_mismatch: rows add up to 4730 JPY (tax 430) but the channel's order total is 4731 (tax 430)"
    );
}

#[test]
fn long_names_and_address_lines_are_cut_with_the_full_text_in_a_note() {
    let mut payload = fixture("orders/woocommerce/docs-retrieve-order-727.json");
    let street = "Flat 12, The Old Granary Building, 969 Market Street Between Fifth and Sixth Avenue";
    payload["shipping"]["address_1"] = Value::String(street.into());
    let order = woocommerce::normalise("s", &payload).unwrap();
    let so = written(&order, &store(), &products(&["Bar3"]));
    let address = so.delivery_address.expect("address");
    assert_eq!(address.address_line1.chars().count(), 64);
    assert!(street.starts_with(&address.address_line1));
    assert_eq!(address.country_iso_code.as_deref(), Some("USA"));
    assert_eq!(so.notes.len(), 1);
    assert!(so.notes[0].contains(street), "{}", so.notes[0]);
}

mod over_http {
    //! One order of the corpus written through the order writer to the strict sandbox over
    //! HTTP (state on the DynamoDB emulator); the sandbox's own records are the evidence.
    use super::*;
    use pearlsync::queue::{ChannelKind, Job, OrderEvent};
    use pearlsync_tests::orders_env::*;

    const SO_POST: &str = "POST /order-service/sales-order";

    /// The CAD Shopify fixture, its tent mapped to a SKU the sandbox holds.
    fn cad_job(order_id: &str, total: Option<&str>) -> Job {
        let mut payload = fixture("orders/shopify/presentment-cad-tip-gift-card-discounts.json");
        payload["id"] = Value::from(order_id.parse::<u64>().expect("numeric id"));
        payload["line_items"][0]["sku"] = Value::String("SKU-00001".into());
        if let Some(t) = total {
            payload["total_price_set"]["presentment_money"]["amount"] = Value::String(t.into());
        }
        Job::ChannelOrder {
            channel: ChannelKind::Shopify,
            store: "shopify-main".into(),
            order_id: order_id.into(),
            event: OrderEvent::Created,
            payload: Some(payload),
        }
    }

    #[tokio::test]
    async fn a_corpus_order_lands_in_the_strict_sandbox_to_the_cent() {
        let env = setup().await;
        let job = cad_job("880001", None);
        let report = env.writer.handle_batch(vec![message("m1", &job)]).await;
        assert_eq!(report.done, 1, "{report:?}");
        let so = sales_order_id(&env, "880001");
        env.sb.brightpearl.with_state(|s| {
            let order = &s.orders[&so];
            assert_eq!(order.currency, "CAD");
            // Tent 36.00 + 1.80, gift card 25.00, tip 5.00, shipping 0.00: four rows.
            assert_eq!(order.rows.len(), 4);
            let net: f64 = order.rows.iter().map(|r| r.net).sum();
            let tax: f64 = order.rows.iter().map(|r| r.tax).sum();
            assert!((net + tax - 67.80).abs() < 1e-9, "stored total {}", net + tax);
            assert!((tax - 1.80).abs() < 1e-9, "stored tax {tax}");
            assert_eq!(
                order.rows.iter().filter(|r| r.product_id.is_some()).count(),
                1,
                "only the tent is a product"
            );
            let payment = s.payments.iter().find(|p| p.order_id == so).expect("a payment");
            assert!((payment.amount - 67.80).abs() < 1e-9, "paid {}", payment.amount);
            assert_eq!(payment.currency, "CAD");
        });
        // Brightpearl's own totalValue, read back with the row ids, agrees with what was sent.
        use pearlsync::brightpearl::BrightpearlApi;
        let read = env.app.brightpearl.sales_orders(&[so]).await.expect("sales order GET");
        assert_eq!(read[0].total_value, Some(d("67.8")));
        let mut payload = fixture("orders/shopify/presentment-cad-tip-gift-card-discounts.json");
        payload["line_items"][0]["sku"] = Value::String("SKU-00001".into());
        let order = shopify::normalise("shopify-main", &payload).unwrap();
        let sent = written(&order, &super::store(), &products(&["SKU-00001"]));
        assert_eq!(pearlsync::orders::readback_mismatch(&sent, &read[0]), None);
        let mut differs = read[0].clone();
        differs.total_value = Some(d("67.79"));
        assert_eq!(
            pearlsync::orders::readback_mismatch(&sent, &differs).as_deref(),
            Some(
                format!(
                    "total_mismatch: Brightpearl's totalValue for sales order {so} is 67.79 CAD but its rows were sent adding up to 67.80"
                )
                .as_str()
            )
        );
    }

    #[tokio::test]
    async fn an_order_that_does_not_add_up_is_parked_and_never_posted() {
        let env = setup().await;
        // 67.81 where the components make 67.80.
        let job = cad_job("880002", Some("67.81"));
        let report = env.writer.handle_batch(vec![message("m1", &job)]).await;
        assert_eq!(report.parked.len(), 1, "{report:?}");
        let reason = &report.parked[0].1;
        assert_eq!(
            reason,
            "total_mismatch: rows add up to 67.80 CAD (tax 1.80) but the channel's order total is 67.81 (tax 1.80)"
        );
        assert_eq!(env.sb.brightpearl.counters().endpoint(SO_POST), 0, "nothing is posted");
        // Parked once, not retried: a second delivery parks again without a write.
        let again = env.writer.handle_batch(vec![message("m2", &job)]).await;
        assert!(again.failures.is_empty(), "{again:?}");
        assert_eq!(env.sb.brightpearl.counters().endpoint(SO_POST), 0);
    }
}
