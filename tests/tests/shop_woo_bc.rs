//! WooCommerce and BigCommerce as they really answer (issue 13 items 5 and 7, issue 16 item
//! 6): Shipment Tracking items in the extension's two forms or an order note without it,
//! variable products with stock on the variation, v2 lists paged to the end. Over real HTTP
//! to the sandbox; what happened is read from the sandbox's own records.

use pearlsync::channels::{Fulfilment, QuantityUpdate, SalesChannel, SkipReason, StoreConfig, build_channel};
use pearlsync::queue::ChannelKind;
use pearlsync::secret::Secret;
use pearlsync::state::EmbeddedStore;
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use std::sync::Arc;

fn store(sandbox: &Sandbox, kind: ChannelKind) -> StoreConfig {
    let mut store = StoreConfig {
        name: format!("{kind}-shop"),
        kind,
        base_url: sandbox.base_url.clone(),
        access_token: Secret::literal("token"),
        store_hash: sandbox.channels.config().bigcommerce_store_hash.clone(),
        consumer_key: Secret::literal("ck_x"),
        consumer_secret: Secret::literal("cs_x"),
        location_id: Some(sandbox.channels.config().bigcommerce_location_id.to_string()),
        ..StoreConfig::default()
    };
    store.tracking_providers.insert("Royal Mail".into(), "royal-mail".into());
    store.tracking_url_templates.insert("Evri".into(), "https://www.evri.com/track/parcel/{number}".into());
    store
}

async fn setup(kind: ChannelKind) -> (Sandbox, Arc<dyn SalesChannel>) {
    let sandbox = pearlsync_sandbox::start(SandboxConfig::default()).await.unwrap();
    let channel = build_channel(&store(&sandbox, kind), Arc::new(EmbeddedStore::in_memory().unwrap()));
    (sandbox, channel)
}

fn order_of(sandbox: &Sandbox, channel: Channel, skus: &[String]) -> String {
    for sku in skus {
        sandbox.channels.seed_product(channel, sku, 50);
    }
    let lines = skus
        .iter()
        .map(|s| NewOrderLine { sku: Some(s.clone()), name: s.clone(), quantity: 2, price: 3.0 })
        .collect();
    let new = NewOrder {
        email: Some("w@example.com".into()),
        first_name: "W".into(),
        last_name: "C".into(),
        currency: "GBP".into(),
        lines,
    };
    sandbox.channels.create_order(channel, new).0
}

fn shipment(carrier: &str, number: &str, url: Option<&str>) -> Fulfilment {
    Fulfilment {
        tracking_number: number.into(),
        carrier: carrier.into(),
        tracking_url: url.map(str::to_string),
        lines: vec![("TEE".into(), 2)],
    }
}

async fn woo_trackings(sandbox: &Sandbox, order: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}/wp-json/wc-shipment-tracking/v3/orders/{order}/shipment-trackings",
            sandbox.base_url
        ))
        .basic_auth("ck", Some("cs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn woo_tracking_uses_the_mapped_provider() {
    let (sandbox, channel) = setup(ChannelKind::Woocommerce).await;
    let id = order_of(&sandbox, Channel::Woocommerce, &["TEE".to_string()]);
    channel.post_fulfilment(&id, &shipment("Royal Mail", "RM123456785GB", None)).await.unwrap();
    let items = woo_trackings(&sandbox, &id).await;
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["tracking_provider"], "royal-mail");
    assert_eq!(items[0]["custom_tracking_provider"], "");
    // The extension builds the link from its own provider list.
    let recorded = sandbox.channels.fulfilments(Channel::Woocommerce, &id);
    assert_eq!(recorded[0].carrier, "Royal Mail");
    assert!(recorded[0].tracking_url.as_deref().is_some_and(|u| u.contains("RM123456785GB")));
    assert!(sandbox.channels.order_notes(Channel::Woocommerce, &id).is_empty());

    // Not in the map, but named like a provider of the extension's own list: that provider.
    channel.post_fulfilment(&id, &shipment("USPS", "9400111899560000000000", None)).await.unwrap();
    let items = woo_trackings(&sandbox, &id).await;
    assert_eq!(items[1]["tracking_provider"], "usps", "{items}");
    assert!(sandbox.channels.order_notes(Channel::Woocommerce, &id).is_empty());
}

#[tokio::test]
async fn woo_tracking_with_an_unmapped_carrier_is_a_custom_provider_with_a_link() {
    let (sandbox, channel) = setup(ChannelKind::Woocommerce).await;
    let id = order_of(&sandbox, Channel::Woocommerce, &["TEE".to_string()]);
    channel
        .post_fulfilment(
            &id,
            &shipment(
                "DPD Local",
                "15501234567890",
                Some("https://track.dpdlocal.co.uk/parcels/15501234567890"),
            ),
        )
        .await
        .unwrap();
    // No URL from the shipment: the store's template for the carrier makes the link.
    channel.post_fulfilment(&id, &shipment("Evri", "H00ABC0123456789", None)).await.unwrap();
    let items = woo_trackings(&sandbox, &id).await;
    assert_eq!(items.as_array().map(Vec::len), Some(2), "{items}");
    assert_eq!(items[0]["custom_tracking_provider"], "DPD Local");
    assert_eq!(items[0]["custom_tracking_link"], "https://track.dpdlocal.co.uk/parcels/15501234567890");
    assert_eq!(items[1]["custom_tracking_provider"], "Evri");
    assert_eq!(items[1]["custom_tracking_link"], "https://www.evri.com/track/parcel/H00ABC0123456789");
    assert!(sandbox.channels.order_notes(Channel::Woocommerce, &id).is_empty());
}

#[tokio::test]
async fn woo_tracking_without_a_provider_or_a_link_or_without_the_extension_is_an_order_note() {
    let (sandbox, channel) = setup(ChannelKind::Woocommerce).await;
    let id = order_of(&sandbox, Channel::Woocommerce, &["TEE".to_string()]);
    // The extension refuses an empty custom provider with no link, as the real one does.
    let refused = reqwest::Client::new()
        .post(format!("{}/wp-json/wc-shipment-tracking/v3/orders/{id}/shipment-trackings", sandbox.base_url))
        .basic_auth("ck", Some("cs"))
        .json(&json!({"custom_tracking_provider": "", "tracking_number": "X1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);

    // A carrier with neither a provider nor a link: a note, not a refused item.
    channel.post_fulfilment(&id, &shipment("Pigeon Post", "PP-1", None)).await.unwrap();
    assert!(sandbox.channels.fulfilments(Channel::Woocommerce, &id).is_empty());

    // The extension not installed: a note with carrier, number and link.
    sandbox.channels.set_shipment_tracking(false);
    let dpd = shipment("DPD", "DPD-9", Some("https://track.dpd.co.uk/parcels/DPD-9"));
    channel.post_fulfilment(&id, &dpd).await.unwrap();
    channel.post_fulfilment(&id, &dpd).await.unwrap();
    let notes = sandbox.channels.order_notes(Channel::Woocommerce, &id);
    assert_eq!(notes.len(), 2, "one per shipment, the repeat skipped: {notes:?}");
    assert!(notes[0].contains("Pigeon Post") && notes[0].contains("PP-1"));
    assert!(
        notes[1].contains("DPD")
            && notes[1].contains("DPD-9")
            && notes[1].contains("https://track.dpd.co.uk/parcels/DPD-9")
    );
    assert!(sandbox.channels.fulfilments(Channel::Woocommerce, &id).is_empty());
}

#[tokio::test]
async fn woo_variable_product_stock_goes_on_the_variation() {
    let (sandbox, channel) = setup(ChannelKind::Woocommerce).await;
    let (_parent, _red) = sandbox.channels.seed_variation("TEE", "TEE-RED", 0);
    sandbox.channels.seed_variation("TEE", "TEE-BLUE", 0);
    sandbox.channels.seed_product(Channel::Woocommerce, "MUG", 0);
    let updates: Vec<QuantityUpdate> = [("TEE-RED", 7), ("TEE-BLUE", 3), ("TEE", 10), ("MUG", 4)]
        .iter()
        .map(|(s, q)| QuantityUpdate { sku: s.to_string(), quantity: *q, last_pushed: None })
        .collect();
    let report = channel.set_quantities(&updates).await.unwrap();
    let mut pushed = report.pushed.clone();
    pushed.sort();
    assert_eq!(pushed, vec!["MUG".to_string(), "TEE-BLUE".to_string(), "TEE-RED".to_string()], "{report:?}");
    assert_eq!(report.skipped, vec![("TEE".to_string(), SkipReason::VariableProduct)]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(sandbox.channels.quantity(Channel::Woocommerce, "TEE-RED"), Some(7));
    assert_eq!(sandbox.channels.quantity(Channel::Woocommerce, "TEE-BLUE"), Some(3));
    assert_eq!(sandbox.channels.quantity(Channel::Woocommerce, "MUG"), Some(4));
    let counters = sandbox.channels.counters(Channel::Woocommerce);
    assert_eq!(counters.count("variations/batch"), 1, "both variations in their parent's one batch");
    assert_eq!(counters.count("products/batch"), 1, "the simple product in the products batch");
    let read = channel.read_quantities(&["TEE-RED".to_string(), "MUG".to_string()]).await.unwrap();
    assert_eq!((read.get("TEE-RED"), read.get("MUG")), (Some(&7), Some(&4)));

    // A variation sent to the products batch is refused: it belongs to its parent's batch.
    let red_id = sandbox_product_id(&sandbox, "TEE-RED").await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/wp-json/wc/v3/products/batch", sandbox.base_url))
        .basic_auth("ck", Some("cs"))
        .json(&json!({"update": [{"id": red_id, "stock_quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["update"][0].get("error").is_some(), "{answer}");
    assert_eq!(sandbox.channels.quantity(Channel::Woocommerce, "TEE-RED"), Some(7));
}

async fn sandbox_product_id(sandbox: &Sandbox, sku: &str) -> u64 {
    let found: Value = reqwest::Client::new()
        .get(format!("{}/wp-json/wc/v3/products?sku={sku}", sandbox.base_url))
        .basic_auth("ck", Some("cs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    found[0]["id"].as_u64().unwrap()
}

#[tokio::test]
async fn a_bigcommerce_order_with_60_products_is_read_whole_and_its_last_lines_ship() {
    let (sandbox, channel) = setup(ChannelKind::Bigcommerce).await;
    let skus: Vec<String> = (1..=60).map(|i| format!("BC-{i:02}")).collect();
    let id = order_of(&sandbox, Channel::Bigcommerce, &skus);

    // BigCommerce gives 50 rows when no limit is sent.
    let first_page: Value = reqwest::Client::new()
        .get(format!(
            "{}/stores/{}/v2/orders/{id}/products",
            sandbox.base_url,
            sandbox.channels.config().bigcommerce_store_hash
        ))
        .header("X-Auth-Token", "t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first_page.as_array().map(Vec::len), Some(50));

    let order = channel.normalise_order(&channel.fetch_order(&id).await.unwrap()).unwrap();
    assert_eq!(order.lines.len(), 60);
    assert_eq!(order.lines[59].sku.as_deref(), Some("BC-60"));

    let last = Fulfilment {
        tracking_number: "1Z999AA10123456784".into(),
        carrier: "UPS".into(),
        tracking_url: None,
        lines: vec![("BC-59".into(), 2), ("BC-60".into(), 2)],
    };
    channel.post_fulfilment(&id, &last).await.unwrap();
    channel.post_fulfilment(&id, &last).await.unwrap();
    let recorded = sandbox.channels.fulfilments(Channel::Bigcommerce, &id);
    assert_eq!(recorded.len(), 1, "the repeat is skipped");
    assert_eq!(recorded[0].lines, vec![("BC-59".to_string(), 2), ("BC-60".to_string(), 2)]);
}

#[tokio::test]
async fn bigcommerce_shipments_are_read_past_the_first_page() {
    // 55 shipments take some 170 requests: a Pro store's quota (450 per 30 s) keeps it quick.
    let mut config = SandboxConfig::default();
    config.channels.bigcommerce_quota = 450;
    let sandbox = pearlsync_sandbox::start(config).await.unwrap();
    let channel = build_channel(
        &store(&sandbox, ChannelKind::Bigcommerce),
        Arc::new(EmbeddedStore::in_memory().unwrap()),
    );
    let skus: Vec<String> = (1..=55).map(|i| format!("S-{i:02}")).collect();
    let id = order_of(&sandbox, Channel::Bigcommerce, &skus);
    for (i, sku) in skus.iter().enumerate() {
        let f = Fulfilment {
            tracking_number: format!("T-{i:02}"),
            carrier: "UPS".into(),
            tracking_url: None,
            lines: vec![(sku.clone(), 1)],
        };
        channel.post_fulfilment(&id, &f).await.unwrap();
    }
    assert_eq!(sandbox.channels.fulfilments(Channel::Bigcommerce, &id).len(), 55);
    // The 55th shipment is on the second page of 50: a repeat of it must still be seen.
    let again = Fulfilment {
        tracking_number: "T-54".into(),
        carrier: "UPS".into(),
        tracking_url: None,
        lines: vec![("S-55".into(), 1)],
    };
    channel.post_fulfilment(&id, &again).await.unwrap();
    assert_eq!(sandbox.channels.fulfilments(Channel::Bigcommerce, &id).len(), 55);
}
