//! Nothing is lost when a webhook is missed or a store is down (issue 13): the reconciliation
//! sweeps shipped goods-out notes since its cursor, and webhook setup goes on past a failing store.

use pearlsync::secret::Secret;
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::faults::Fault;
use pearlsync_tests::orders_env::*;

#[tokio::test]
async fn a_shipment_whose_webhook_was_missed_gets_its_tracking_from_the_sweep_once() {
    let env = setup().await;
    let (id, job) = shopify_job(&env, new_order("sweep@example.test", &[("SKU-00007", 2)]));
    assert_eq!(env.writer.handle_batch(vec![message("m1", &job)]).await.done, 1);
    let so = sales_order_id(&env, &id);
    // Shipped in Brightpearl; no webhook reaches us (nothing subscribed in this test).
    env.sb.brightpearl.ship_goods_out(so, "SWEPT-1", "DHL").expect("ship");
    assert!(env.sb.channels.fulfilments(Channel::Shopify, &id).is_empty());

    let report = env.writer.reconcile_orders().await.expect("reconcile");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.shipped_notes_swept, 1, "{report:?}");
    let fulfilments = env.sb.channels.fulfilments(Channel::Shopify, &id);
    assert_eq!(fulfilments.len(), 1, "{fulfilments:?}");
    assert_eq!(fulfilments[0].tracking_number, "SWEPT-1");

    // The next sweep overlaps its cursor and sees the note again: posted once all the same.
    env.writer.reconcile_orders().await.expect("reconcile");
    assert_eq!(env.sb.channels.fulfilments(Channel::Shopify, &id).len(), 1);
    assert_eq!(env.writer.report().tracking_posted, 1);
}

#[tokio::test]
async fn webhook_setup_goes_on_past_a_store_whose_api_is_down() {
    let env = setup().await;
    env.sb.channels.faults(Channel::Bigcommerce).script(std::iter::repeat_n(Some(Fault::ServerError), 50));
    let report = pearlsync::setup::register_webhooks(
        env.app.brightpearl.as_ref(),
        &env.app.channels,
        Some(&Secret::literal("bp-secret")),
        "https://hooks.example.test",
    )
    .await
    .expect("setup reports per store");
    assert_eq!(report.failed.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), vec!["bigcommerce-main"]);
    assert!(report.stores.contains(&"shopify-main".to_string()), "{report:?}");
    assert!(report.stores.contains(&"woocommerce-main".to_string()), "{report:?}");
    assert_eq!(report.brightpearl_created.len(), 3, "{report:?}");
}
