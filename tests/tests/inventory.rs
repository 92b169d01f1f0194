//! inventory-poll against the sandbox (Brightpearl and the three channels over real HTTP) and
//! the DynamoDB emulator: exact quantities per store, delta-only pushes, availability ID sets,
//! repair after a failing channel, and manual channel edits.

use pearlsync::batch::BatchMessage;
use pearlsync::brightpearl::{BrightpearlClient, Priority};
use pearlsync::channels::{BufferRules, ChannelSet, SkuBuffer, StoreConfig};
use pearlsync::inventory::{
    ChannelReport, Conflict, InventoryConfig, InventoryPoll, PollReport, PollTrigger, Repair,
};
use pearlsync::metrics::Metrics;
use pearlsync::orders::saga_key;
use pearlsync::pending::{self, PendingOrder};
use pearlsync::queue::{ChannelKind, Job};
use pearlsync::secret::Secret;
use pearlsync::state::StateStore;
use pearlsync::state::{Condition, Item};
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::faults::Fault;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use pearlsync_tests::emulator;
use std::sync::Arc;
use std::time::Duration;

const AVAILABILITY: &str = "GET /warehouse-service/product-availability/{ids}";
const SHOPIFY_WRITE: &str = "graphql:inventorySetQuantities";
const BIGCOMMERCE_WRITE: &str = "v3/inventory/adjustments/absolute";
const WOOCOMMERCE_WRITE: &str = "products/batch";

async fn sandbox(products: u32, warehouses: u32) -> Sandbox {
    let bp = BrightpearlSandboxConfig {
        rate_limit: 100,
        rate_window: Duration::from_secs(1),
        seed: Some(SeedSpec { products, warehouses, suppliers: 2, seed: 5 }),
        ..Default::default()
    };
    pearlsync_sandbox::start(SandboxConfig { brightpearl: bp, ..Default::default() })
        .await
        .expect("sandbox starts")
}

fn brightpearl(sb: &Sandbox) -> BrightpearlClient {
    BrightpearlClient::new(pearlsync_tests::sandbox_brightpearl(sb, (100, Duration::from_secs(1))))
        .expect("client builds")
}

fn store(sb: &Sandbox, kind: ChannelKind, warehouses: Vec<u64>, buffer: BufferRules) -> StoreConfig {
    StoreConfig {
        name: format!("{kind}-main"),
        kind,
        base_url: sb.base_url.clone(),
        access_token: Secret::literal("token"),
        store_hash: sb.channels.config().bigcommerce_store_hash.clone(),
        consumer_key: Secret::literal("ck_x"),
        consumer_secret: Secret::literal("cs_x"),
        location_id: Some("1".into()),
        warehouses,
        buffer,
        max_retries: 1,
        ..StoreConfig::default()
    }
}

fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

fn write_endpoint(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Shopify => SHOPIFY_WRITE,
        ChannelKind::Bigcommerce => BIGCOMMERCE_WRITE,
        ChannelKind::Woocommerce => WOOCOMMERCE_WRITE,
    }
}

struct Rig {
    sb: Sandbox,
    stores: Vec<StoreConfig>,
    poll: InventoryPoll,
    state: Arc<dyn StateStore>,
}

async fn rig(sb: Sandbox, stores: Vec<StoreConfig>) -> Rig {
    rig_with(sb, stores, InventoryConfig::default()).await
}

async fn rig_with(sb: Sandbox, stores: Vec<StoreConfig>, config: InventoryConfig) -> Rig {
    let state: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let channels = Arc::new(ChannelSet::new(&stores, Arc::clone(&state)).expect("stores are valid"));
    let poll = InventoryPoll::from_parts(
        Arc::new(brightpearl(&sb).with_priority(Priority::Background)),
        channels,
        Arc::clone(&state),
        Arc::new(Metrics::new("inventory-poll")),
        config,
    );
    Rig { sb, stores, poll, state }
}

/// (product id, SKU) of the seeded catalogue.
fn catalogue(sb: &Sandbox) -> Vec<(u64, String)> {
    sb.brightpearl.with_state(|s| s.products.values().map(|p| (p.id, p.sku.clone())).collect())
}

/// What a store should show for a product, from the sandbox's stock and the store's rules.
fn expected(sb: &Sandbox, store: &StoreConfig, product_id: u64, sku: &str) -> i64 {
    let available: i64 = sb.brightpearl.with_state(|s| {
        s.stock
            .get(&product_id)
            .map(|by_warehouse| {
                by_warehouse
                    .iter()
                    .filter(|(w, _)| store.warehouses.is_empty() || store.warehouses.contains(w))
                    .map(|(_, level)| level.on_hand)
                    .sum()
            })
            .unwrap_or(0)
    });
    store.apply_buffer(available, sku)
}

fn seed_channel(sb: &Sandbox, kind: ChannelKind, skus: &[String]) {
    let products: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), 0)).collect();
    sb.channels.seed_products(sandbox_channel(kind), &products);
}

fn channel<'a>(report: &'a PollReport, store: &StoreConfig) -> &'a ChannelReport {
    report.channels.iter().find(|c| c.name == store.name).expect("every store is reported")
}

fn writes(sb: &Sandbox, kind: ChannelKind) -> u64 {
    sb.channels.counters(sandbox_channel(kind)).count(write_endpoint(kind))
}

fn reset_counters(sb: &Sandbox) {
    sb.brightpearl.reset_counters();
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce] {
        sb.channels.reset_counters(sandbox_channel(kind));
    }
}

#[tokio::test]
async fn three_stores_end_with_their_own_warehouse_sums_and_buffers_and_a_quiet_poll_writes_nothing() {
    let sb = sandbox(30, 3).await;
    let mut woo_rules = BufferRules { safety_stock: 1, ..BufferRules::default() };
    woo_rules.overrides.insert("SKU-00003".into(), SkuBuffer { fixed: Some(0), ..SkuBuffer::default() });
    let stores = vec![
        store(&sb, ChannelKind::Shopify, vec![1], BufferRules { safety_stock: 2, ..BufferRules::default() }),
        store(
            &sb,
            ChannelKind::Bigcommerce,
            vec![2, 3],
            BufferRules { percent: 50.0, cap: Some(15), ..BufferRules::default() },
        ),
        store(&sb, ChannelKind::Woocommerce, vec![], woo_rules),
    ];
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    // Shopify lists the first 20, BigCommerce the last 20, WooCommerce all but the last 5.
    seed_channel(&sb, ChannelKind::Shopify, &skus[..20]);
    seed_channel(&sb, ChannelKind::Bigcommerce, &skus[10..]);
    seed_channel(&sb, ChannelKind::Woocommerce, &skus[..25]);
    let rig = rig(sb, stores).await;

    let first = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    for (store, listed) in rig.stores.iter().zip([&skus[..20], &skus[10..], &skus[..25]]) {
        let ch = sandbox_channel(store.kind);
        for (id, sku) in products.iter().filter(|(_, s)| listed.contains(s)) {
            assert_eq!(
                rig.sb.channels.quantity(ch, sku),
                Some(expected(&rig.sb, store, *id, sku)),
                "{} {sku}",
                store.name
            );
        }
        let r = channel(&first, store);
        assert_eq!(r.skus_mapped, listed.len());
        assert_eq!(r.skus_read, listed.len());
        assert!(r.failures.is_empty() && r.conflicts.is_empty() && r.error.is_none(), "{r:?}");
        // Nothing was pushed before, so every listed SKU goes, in one batch per store.
        assert_eq!(r.pushed, listed.len());
        assert_eq!(writes(&rig.sb, store.kind), 1, "{}", store.name);
    }
    assert_eq!(rig.sb.channels.quantity(Channel::Woocommerce, "SKU-00003"), Some(0), "per-SKU override");
    assert_eq!(first.products_read, 30);
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 1);

    reset_counters(&rig.sb);
    let second = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    // Only the sweep's own time (the meta item), which the schedule reads.
    assert_eq!(second.state_writes, 1, "{second:?}");
    // Meta and one index page, and one (empty) pending-ledger query per store.
    assert!(second.state_reads <= 2 + rig.stores.len() as u64, "{second:?}");
    assert_eq!(second.chunks_changed, 0);
    for store in &rig.stores {
        assert_eq!(writes(&rig.sb, store.kind), 0, "{}", store.name);
        assert_eq!(channel(&second, store).pushed, 0);
    }
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 1);
}

#[tokio::test]
async fn a_1000_sku_poll_reads_5_id_sets_and_3_changed_skus_make_one_write_per_channel() {
    let sb = sandbox(1000, 2).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    let kinds = [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce];
    for kind in kinds {
        seed_channel(&sb, kind, &skus);
    }
    let stores: Vec<StoreConfig> =
        kinds.iter().map(|k| store(&sb, *k, vec![], BufferRules::default())).collect();
    let rig = rig(sb, stores).await;

    let first = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 5);
    assert_eq!(first.products_read, 1000);
    for store in &rig.stores {
        assert_eq!(channel(&first, store).skus_read, 1000);
    }

    // Three products in three different chunks.
    let changed = [products[0].clone(), products[500].clone(), products[999].clone()];
    for (id, _) in &changed {
        let now = rig.sb.brightpearl.with_state(|s| s.stock[id][&1].on_hand);
        rig.sb.brightpearl.set_stock(*id, 1, now + 7);
    }
    reset_counters(&rig.sb);
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    for store in &rig.stores {
        assert_eq!(writes(&rig.sb, store.kind), 1, "{}", store.name);
        let r = channel(&report, store);
        assert_eq!((r.changed, r.pushed), (3, 3), "{r:?}");
        for (id, sku) in &changed {
            assert_eq!(
                rig.sb.channels.quantity(sandbox_channel(store.kind), sku),
                Some(expected(&rig.sb, store, *id, sku))
            );
        }
    }
    assert_eq!(report.chunks_changed, 3);
    // Three chunk items, their index page and the meta item (the sweep's time).
    assert_eq!(report.state_writes, 5, "{report:?}");
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 5);
}

#[tokio::test]
async fn a_channel_failing_mid_push_is_repaired_next_run_and_the_others_go_on() {
    let sb = sandbox(600, 2).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce] {
        seed_channel(&sb, kind, &skus);
    }
    let stores = vec![
        store(&sb, ChannelKind::Shopify, vec![], BufferRules::default()),
        store(&sb, ChannelKind::Bigcommerce, vec![], BufferRules::default()),
    ];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    for (id, _) in &products {
        let now = rig.sb.brightpearl.with_state(|s| s.stock[id][&1].on_hand);
        rig.sb.brightpearl.set_stock(*id, 1, now + 3);
    }
    reset_counters(&rig.sb);
    // Shopify takes the first mutation (250 SKUs), then fails the second and its retry.
    rig.sb.channels.faults(Channel::Shopify).script([
        None,
        Some(Fault::ServerError),
        Some(Fault::ServerError),
    ]);
    let broken = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let shopify = channel(&broken, &rig.stores[0]);
    assert!(shopify.error.is_some(), "{shopify:?}");
    assert_eq!(shopify.pushed, 250);
    assert_eq!(channel(&broken, &rig.stores[1]).pushed, 600, "BigCommerce is not held back");
    // The first mutation, then the failing one and its one retry; the third batch never went.
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 3);

    rig.sb.channels.faults(Channel::Shopify).clear();
    reset_counters(&rig.sb);
    let repaired = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let shopify = channel(&repaired, &rig.stores[0]);
    assert_eq!(shopify.pushed, 350, "only what did not land: {shopify:?}");
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 2, "250 + 100");
    assert_eq!(writes(&rig.sb, ChannelKind::Bigcommerce), 0);
    for (id, sku) in &products {
        assert_eq!(
            rig.sb.channels.quantity(Channel::Shopify, sku),
            Some(expected(&rig.sb, &rig.stores[0], *id, sku))
        );
    }
}

#[tokio::test]
async fn a_manual_shopify_edit_is_reported_not_overwritten_until_reconcile() {
    let sb = sandbox(5, 2).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    // This store opts into keeping its manual edits.
    let config =
        InventoryConfig { respect_manual_edits: vec![stores[0].name.clone()], ..InventoryConfig::default() };
    let rig = rig_with(sb, stores, config).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    let (id, sku) = products[1].clone();
    rig.sb.channels.set_quantity(Channel::Shopify, &sku, 99);
    let now = rig.sb.brightpearl.with_state(|s| s.stock[&id][&1].on_hand);
    rig.sb.brightpearl.set_stock(id, 1, now + 1);
    let desired = expected(&rig.sb, &rig.stores[0], id, &sku);
    assert_ne!(desired, 99);

    let drift = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let r = channel(&drift, &rig.stores[0]);
    assert_eq!(r.conflicts, vec![Conflict { sku: sku.clone(), desired, theirs: 99 }]);
    assert_eq!(r.pushed, 0);
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(99), "the edit survives");

    reset_counters(&rig.sb);
    let quiet = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert!(channel(&quiet, &rig.stores[0]).conflicts.is_empty());
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 0);
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(99));

    let fixed = rig.poll.run(PollTrigger::Full { reconcile: true }).await.unwrap();
    assert_eq!(
        channel(&fixed, &rig.stores[0]).repaired,
        vec![Repair { sku: sku.clone(), from: Some(99), to: desired }]
    );
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 1);
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(desired));
}

#[tokio::test]
async fn stock_changed_jobs_of_a_batch_make_one_targeted_run() {
    let sb = sandbox(400, 2).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Woocommerce, &skus);
    let stores = vec![store(&sb, ChannelKind::Woocommerce, vec![2], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    let targets = [products[3].0, products[250].0];
    for id in targets {
        rig.sb.brightpearl.set_stock(id, 2, 33);
    }
    reset_counters(&rig.sb);
    let messages: Vec<BatchMessage> = targets
        .iter()
        .enumerate()
        .map(|(i, id)| BatchMessage {
            message_id: format!("m{i}"),
            body: Job::StockChanged { product_ids: vec![*id] }.encode(),
            group_id: None,
            receive_count: 1,
        })
        .collect();
    let batch = rig.poll.handle_batch(messages).await;
    assert_eq!(batch.done, 2);
    assert!(batch.failures.is_empty());
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 1, "both ids in one ID set");
    assert_eq!(rig.sb.brightpearl.counters().endpoint("GET /product-service/product-search"), 0);
    assert_eq!(writes(&rig.sb, ChannelKind::Woocommerce), 1);
    for id in targets {
        let sku = &products.iter().find(|(p, _)| *p == id).expect("seeded").1;
        assert_eq!(rig.sb.channels.quantity(Channel::Woocommerce, sku), Some(33));
    }
}

#[tokio::test]
async fn a_store_whose_api_is_down_while_resolving_skus_fails_alone() {
    let sb = sandbox(50, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    for kind in [ChannelKind::Shopify, ChannelKind::Bigcommerce] {
        seed_channel(&sb, kind, &skus);
    }
    let stores = vec![
        store(&sb, ChannelKind::Shopify, vec![], BufferRules::default()),
        store(&sb, ChannelKind::Bigcommerce, vec![], BufferRules::default()),
    ];
    let rig = rig(sb, stores).await;
    // BigCommerce answers every request with a 500 for this run.
    rig.sb.channels.faults(Channel::Bigcommerce).script(std::iter::repeat_n(Some(Fault::ServerError), 200));
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.expect("the poll goes on");
    let bigcommerce = channel(&report, &rig.stores[1]);
    assert!(bigcommerce.error.as_deref().is_some_and(|e| e.contains("resolving SKUs")), "{bigcommerce:?}");
    assert_eq!(bigcommerce.pushed, 0);
    let shopify = channel(&report, &rig.stores[0]);
    assert_eq!((shopify.error.as_deref(), shopify.pushed), (None, 50), "Shopify is not held back");
    for (id, sku) in &products {
        assert_eq!(
            rig.sb.channels.quantity(Channel::Shopify, sku),
            Some(expected(&rig.sb, &rig.stores[0], *id, sku))
        );
    }
    // Back up: the next run maps and pushes BigCommerce too.
    rig.sb.channels.faults(Channel::Bigcommerce).clear();
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.expect("poll");
    let bigcommerce = channel(&report, &rig.stores[1]);
    assert_eq!((bigcommerce.error.as_deref(), bigcommerce.pushed), (None, 50), "{bigcommerce:?}");
}

#[tokio::test]
async fn when_the_shop_and_brightpearl_both_sell_the_shop_ends_at_the_true_sellable_quantity() {
    let sb = sandbox(3, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    let (id, sku) = products[0].clone();
    rig.sb.brightpearl.set_stock(id, 1, 10);
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(10));

    // A Shopify sale takes Shopify to 9; a POS sale takes Brightpearl to 8.
    rig.sb.channels.set_quantity(Channel::Shopify, &sku, 9);
    rig.sb.brightpearl.set_stock(id, 1, 8);
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let r = channel(&report, &rig.stores[0]);
    // The push of 8 compared from 10 is stale; it is re-read and written again from 9.
    assert!(r.conflicts.is_empty(), "not a manual edit: {r:?}");
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(8), "never above what exists");
    assert_eq!(r.pushed, 1, "{r:?}");
    // Settled: the next run writes nothing.
    reset_counters(&rig.sb);
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 0);
}

/// Moves a product's stock the way a reservation does in the sandbox: `onHand` down,
/// `allocated` up, and no goods movement (the hard side of apis.md §8.2).
fn allocate(sb: &Sandbox, product_id: u64, warehouse: u64, units: i64) {
    sb.brightpearl.with_state_mut(|s| {
        let level = s.stock.entry(product_id).or_default().entry(warehouse).or_default();
        level.on_hand -= units;
        level.allocated += units;
    });
}

/// The saga the order writer leaves once Brightpearl reserved the order.
async fn reserved_saga(state: &dyn StateStore, store: &str, order_id: &str, product_id: u64, units: i64) {
    let key = saga_key(ChannelKind::Shopify, store, order_id);
    let data = serde_json::json!({
        "step": "reserved",
        "contact_id": 4,
        "sales_order_id": 900,
        "rows": [{"row_id": 1, "product_id": product_id, "quantity": units, "line_id": "1"}],
    });
    state.put(Item::new(key.pk, key.sk, data), Condition::Always).await.expect("saga written");
}

fn total_requests(sb: &Sandbox) -> u64 {
    sb.brightpearl.counters().requests
}

#[tokio::test]
async fn the_change_driven_poll_reads_only_products_that_moved() {
    let sb = sandbox(1000, 2).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    let changed = [products[0].clone(), products[500].clone(), products[999].clone()];
    for (id, _) in &changed {
        let now = rig.sb.brightpearl.with_state(|s| s.stock[id][&1].on_hand);
        rig.sb.brightpearl.set_stock(*id, 1, now + 4);
    }
    reset_counters(&rig.sb);
    let report = rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(report.mode, "changes");
    assert_eq!(report.products_read, 3, "{report:?}");
    assert_eq!(report.changes.as_ref().map(|c| c.goods_movements), Some(3), "{report:?}");
    // ceil(3/200) availability read + goods movements + the mapping's product search.
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 1);
    assert!(total_requests(&rig.sb) <= 1 + 4, "{:?}", rig.sb.brightpearl.counters().per_endpoint);
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 1);
    for (id, sku) in &changed {
        assert_eq!(
            rig.sb.channels.quantity(Channel::Shopify, sku),
            Some(expected(&rig.sb, &rig.stores[0], *id, sku))
        );
    }
    // Nothing moved since: the next poll reads no availability and writes nothing.
    reset_counters(&rig.sb);
    let quiet = rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(rig.sb.brightpearl.counters().endpoint(AVAILABILITY), 0, "{quiet:?}");
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 0);
}

#[tokio::test]
async fn a_schedule_sweeps_when_the_last_sweep_is_old_and_polls_changes_otherwise() {
    let sb = sandbox(20, 1).await;
    let skus: Vec<String> = catalogue(&sb).into_iter().map(|(_, s)| s).collect();
    seed_channel(&sb, ChannelKind::Woocommerce, &skus);
    let stores = vec![store(&sb, ChannelKind::Woocommerce, vec![], BufferRules::default())];
    let rig =
        rig_with(sb, stores, InventoryConfig { sweep_every_minutes: 60, ..InventoryConfig::default() }).await;
    let first = rig.poll.run(PollTrigger::Scheduled).await.unwrap();
    assert_eq!(first.mode, "full", "never swept: a sweep");
    let second = rig.poll.run(PollTrigger::Scheduled).await.unwrap();
    assert_eq!(second.mode, "changes", "swept a moment ago");

    let sb = sandbox(20, 1).await;
    let skus: Vec<String> = catalogue(&sb).into_iter().map(|(_, s)| s).collect();
    seed_channel(&sb, ChannelKind::Woocommerce, &skus);
    let stores = vec![store(&sb, ChannelKind::Woocommerce, vec![], BufferRules::default())];
    let rig =
        rig_with(sb, stores, InventoryConfig { sweep_every_minutes: 0, ..InventoryConfig::default() }).await;
    rig.poll.run(PollTrigger::Scheduled).await.unwrap();
    let again = rig.poll.run(PollTrigger::Scheduled).await.unwrap();
    assert_eq!(again.mode, "full", "a zero interval sweeps every time");
}

#[tokio::test]
async fn a_targeted_push_goes_through_while_a_sweep_holds_its_lease() {
    let sb = sandbox(50, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let (id, sku) = products[7].clone();
    rig.sb.brightpearl.set_stock(id, 1, 41);

    // A sweep is running (it holds the sweep lease) when the StockChanged job arrives.
    let state = Arc::clone(&rig.state);
    let inside =
        pearlsync::state::idempotency::run_exclusively(state, "inventory", Duration::from_secs(60), async {
            let skipped = rig.poll.run(PollTrigger::Full { reconcile: false }).await?;
            assert_eq!(skipped.mode, "skipped", "one sweep at a time");
            rig.poll.run(PollTrigger::Products(vec![id])).await
        })
        .await
        .expect("the targeted run is not held back by the sweep")
        .expect("the sweep lease was free");
    assert_eq!(inside.mode, "products");
    assert_eq!(channel(&inside, &rig.stores[0]).pushed, 1);
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(41));
}

#[tokio::test]
async fn a_sweep_carries_partial_batches_so_sparse_changes_make_the_minimum_of_writes() {
    // 2,400 products: more than one planning step (2,000), every chunk with a few changes.
    let sb = sandbox(2400, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Woocommerce, &skus);
    let stores = vec![store(&sb, ChannelKind::Woocommerce, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    // Every 16th product: 150 changes spread over all 12 chunks.
    let changed: Vec<(u64, String)> = products.iter().step_by(16).cloned().collect();
    assert_eq!(changed.len(), 150);
    for (id, _) in &changed {
        let now = rig.sb.brightpearl.with_state(|s| s.stock[id][&1].on_hand);
        rig.sb.brightpearl.set_stock(*id, 1, now + 2);
    }
    reset_counters(&rig.sb);
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let r = channel(&report, &rig.stores[0]);
    assert_eq!((r.changed, r.pushed), (150, 150), "{r:?}");
    // ceil(150 / 100): the first step's remainder waited for the second step's changes.
    assert_eq!(writes(&rig.sb, ChannelKind::Woocommerce), 2);
    for (id, sku) in &changed {
        assert_eq!(
            rig.sb.channels.quantity(Channel::Woocommerce, sku),
            Some(expected(&rig.sb, &rig.stores[0], *id, sku))
        );
    }
    reset_counters(&rig.sb);
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(writes(&rig.sb, ChannelKind::Woocommerce), 0, "everything settled");
}

#[tokio::test]
async fn units_sold_but_not_yet_reserved_are_held_back_while_both_sides_sell() {
    let sb = sandbox(3, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    let name = rig.stores[0].name.clone();
    let (id, sku) = products[0].clone();
    rig.sb.brightpearl.set_stock(id, 1, 10);
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(10));

    // Shopify sells 2 (it shows 8; ingress records the order); before the writer reserves
    // it, a POS sale takes Brightpearl's onHand from 10 to 7.
    rig.sb.channels.set_quantity(Channel::Shopify, &sku, 8);
    let order = PendingOrder {
        channel: ChannelKind::Shopify,
        lines: vec![(sku.clone(), 2)],
        cancelled: false,
        settled: None,
    };
    pending::record(rig.state.as_ref(), &name, "5001", &order).await.unwrap();
    rig.sb.brightpearl.set_stock(id, 1, 7);
    // What truly remains to sell: 7 in Brightpearl, 2 of them already sold by Shopify.
    let true_sellable = 7 - 2;
    let report = rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(channel(&report, &rig.stores[0]).pending_orders, 1, "{report:?}");
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(true_sellable), "{report:?}");

    // The writer reserves the order: onHand 7 → 5 with no goods movement, and the saga says
    // reserved. The next poll finds the order settled, reads the product, and still shows 5.
    allocate(&rig.sb, id, 1, 2);
    reserved_saga(rig.state.as_ref(), &name, "5001", id, 2).await;
    reset_counters(&rig.sb);
    let report = rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(report.changes.as_ref().map(|c| c.orders), Some(1), "{report:?}");
    assert_eq!(report.products_read, 1, "{report:?}");
    assert_eq!(channel(&report, &rig.stores[0]).pending_orders, 0);
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(5));
    assert_eq!(writes(&rig.sb, ChannelKind::Shopify), 0, "already right");
    let left = rig.state.query(&format!("pending#{name}"), "").await.unwrap();
    assert!(left.is_empty(), "the settled entry is forgotten: {left:?}");

    // A cancelled and released order gives its units back: the ledger names the product.
    rig.sb.brightpearl.with_state_mut(|s| {
        let level = s.stock.entry(id).or_default().entry(1).or_default();
        level.on_hand += 2;
        level.allocated -= 2;
    });
    let cancelled =
        PendingOrder { channel: ChannelKind::Shopify, lines: vec![], cancelled: true, settled: None };
    pending::record(rig.state.as_ref(), &name, "5001", &cancelled).await.unwrap();
    rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(7));
}

#[tokio::test]
async fn a_shopify_key_spent_by_a_failed_attempt_is_replaced_and_the_push_lands() {
    let sb = sandbox(5, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    let (id, sku) = products[2].clone();
    rig.sb.brightpearl.set_stock(id, 1, 17);
    // Shopify fails the next write on its side after taking the key (a 500): the client's
    // retry under that key is answered IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED.
    rig.sb.channels.fail_inventory_writes(1);
    let report = rig.poll.run(PollTrigger::Changes).await.unwrap();
    let r = channel(&report, &rig.stores[0]);
    assert_eq!((r.pushed, r.failures.len(), r.error.as_deref()), (1, 0, None), "{r:?}");
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(17));
    assert_eq!(
        rig.sb.channels.counters(Channel::Shopify).spent_keys_refused,
        1,
        "the spent key was tried once"
    );
}

#[tokio::test]
async fn a_shop_order_through_ingress_holds_its_units_back_from_the_next_push() {
    use pearlsync::ingress::{Ingress, IngressRequest};
    use pearlsync_sandbox::channels::{NewOrder, NewOrderLine, OrderTopic};
    let sb = sandbox(3, 1).await;
    let products = catalogue(&sb);
    let skus: Vec<String> = products.iter().map(|(_, s)| s.clone()).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let secret = sb.channels.config().shopify_client_secret.clone();
    let stores = vec![StoreConfig {
        webhook_secret: Secret::literal(secret.clone()),
        ..store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())
    }];
    let rig = rig(sb, stores).await;
    let (id, sku) = products[0].clone();
    rig.sb.brightpearl.set_stock(id, 1, 10);
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    // The shop sells 3 and its signed webhook reaches ingress; the writer has not run yet.
    let line = NewOrderLine { sku: Some(sku.clone()), name: "Widget".into(), quantity: 3, price: 9.5 };
    let order = NewOrder {
        email: Some("ada@example.com".into()),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        currency: "GBP".into(),
        lines: vec![line],
    };
    let order_id = rig.sb.channels.create_order(Channel::Shopify, order).0;
    let (mut headers, body) = rig
        .sb
        .channels
        .webhook_request(Channel::Shopify, &order_id, OrderTopic::Created, &secret, 0)
        .unwrap();
    headers.push(("Content-Type".into(), "application/json".into()));
    let channels = Arc::new(ChannelSet::new(&rig.stores, Arc::clone(&rig.state)).expect("stores"));
    let ingress = Ingress::new(
        channels,
        Arc::clone(&rig.state),
        Arc::new(pearlsync::queue::InProcessQueue::default()),
        None,
        Arc::new(Metrics::new("test")),
    );
    let path = format!("/webhooks/shopify/{}", rig.stores[0].name);
    let answer = ingress
        .handle(IngressRequest { method: "POST".into(), path, headers, body: body.into_bytes() })
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    rig.sb.channels.set_quantity(Channel::Shopify, &sku, 7);

    // A POS sale takes Brightpearl from 10 to 8: 8 exist, 3 of them sold by the shop.
    rig.sb.brightpearl.set_stock(id, 1, 8);
    rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, &sku), Some(5), "never above 8 - 3");
}

/// A product new to Brightpearl (a copy of a seeded one under a new id and SKU), listed on
/// Shopify with nothing in stock there yet.
fn new_product(sb: &Sandbox, sku: &str, on_hand: i64) -> u64 {
    use pearlsync_sandbox::brightpearl::state::StockRec;
    let id = sb.brightpearl.with_state_mut(|state| {
        let id = state.next("product");
        let now = chrono::Utc::now();
        if let Some(mut product) = state.products.values().next().cloned() {
            product.id = id;
            product.sku = sku.to_string();
            product.created_on = now;
            product.updated_on = now;
            state.products.insert(id, product);
        }
        state.stock.entry(id).or_default().insert(1, StockRec { on_hand, allocated: 0 });
        id
    });
    sb.channels.seed_products(Channel::Shopify, &[(sku.to_string(), 0)]);
    id
}

#[tokio::test]
async fn a_new_product_is_mapped_and_pushed_by_the_next_sweep_or_poll() {
    let sb = sandbox(10, 1).await;
    let skus: Vec<String> = catalogue(&sb).into_iter().map(|(_, s)| s).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();

    // No poll ran since the sweep: the next sweep refreshes the mapping itself.
    new_product(&rig.sb, "NEW-A", 6);
    let swept = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert_eq!(swept.mapping_added, 1, "{swept:?}");
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, "NEW-A"), Some(6));

    // The change-driven poll maps a new product and pushes it, with no goods movement.
    new_product(&rig.sb, "NEW-B", 4);
    let polled = rig.poll.run(PollTrigger::Changes).await.unwrap();
    assert_eq!(polled.changes.as_ref().map(|c| c.mapping), Some(1), "{polled:?}");
    assert_eq!(rig.sb.channels.quantity(Channel::Shopify, "NEW-B"), Some(4));
}

#[tokio::test]
async fn a_scheduled_run_leaves_the_budget_it_saw_for_pearlsync_status() {
    let sb = sandbox(10, 1).await;
    let skus: Vec<String> = catalogue(&sb).into_iter().map(|(_, s)| s).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    assert_eq!(pearlsync::freshness::read_budget(rig.state.as_ref()).await.unwrap(), None);

    let before_ms = pearlsync::state::now_epoch_millis();
    let report = rig.poll.run(PollTrigger::Full { reconcile: false }).await.unwrap();
    assert!(report.brightpearl_requests > 0, "{report:?}");
    let seen =
        pearlsync::freshness::read_budget(rig.state.as_ref()).await.unwrap().expect("recorded by the run");
    assert_eq!((seen.limit, seen.function.as_str()), (100, "inventory-poll"));
    assert!(
        seen.remaining <= seen.limit && u64::from(seen.sent_last_minute) <= report.brightpearl_requests,
        "{seen:?}"
    );
    assert!(seen.at_ms >= before_ms, "{seen:?}");

    // A targeted push is not a scheduled run: it leaves the snapshot as it was.
    let product = catalogue(&rig.sb)[0].0;
    rig.poll.run(PollTrigger::Products(vec![product])).await.unwrap();
    let again = pearlsync::freshness::read_budget(rig.state.as_ref()).await.unwrap().expect("still there");
    assert_eq!(again.at_ms, seen.at_ms);
}

#[tokio::test]
async fn the_sweep_schedule_sample_sweeps_and_an_unknown_mode_is_refused_before_any_request() {
    let sb = sandbox(10, 1).await;
    let skus: Vec<String> = catalogue(&sb).into_iter().map(|(_, s)| s).collect();
    seed_channel(&sb, ChannelKind::Shopify, &skus);
    let stores = vec![store(&sb, ChannelKind::Shopify, vec![], BufferRules::default())];
    let rig = rig(sb, stores).await;
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../events/inventory-poll/sweep-schedule.json")).unwrap();
    let answer = rig.poll.handle_event(sample).await.unwrap();
    assert_eq!(answer["mode"], "full", "{answer}");

    reset_counters(&rig.sb);
    let refused =
        rig.poll.handle_event(serde_json::json!({"pearlsync": "poll-inventory", "mode": "everything"})).await;
    let error = refused.expect_err("an unknown mode is bad input");
    assert!(!error.is_retryable() && error.to_string().contains("\"everything\""), "{error}");
    assert_eq!(rig.sb.brightpearl.counters().requests, 0, "nothing read for a refused event");
}
