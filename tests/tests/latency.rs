//! Issue 18: one slow or failing FIFO group holds back only its own lane of the batch, and a
//! dropped connection is retried within the invocation, still exactly once. Counted from the
//! sandbox's own records (when each sales order was created, how many there are), over real
//! HTTP and DynamoDB state on the emulator.

use pearlsync::queue::{ChannelKind, Job, OrderEvent};
use pearlsync_sandbox::channels::Channel;
use pearlsync_sandbox::faults::Fault;
use pearlsync_tests::orders_env::*;
use std::collections::BTreeMap;

const MULTI_MESSAGE: &str = "POST /multi-message";
const SLOW_FETCH_MS: u64 = 2_500;

/// When the sandbox created each sales order, by channel order id.
fn created_at(env: &Env) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    env.sb.brightpearl.with_state(|s| {
        s.orders
            .values()
            .filter(|o| o.order_type == "SO")
            .map(|o| (pearlsync_tests::channel_order_id(&o.external_ref), o.created_on))
            .collect()
    })
}

#[tokio::test]
async fn a_slow_group_does_not_hold_back_the_groups_of_other_lanes() {
    let env = setup().await;
    // A BigCommerce order comes without payload: the writer fetches it, and that fetch is slow.
    let (slow_id, _) = env
        .sb
        .channels
        .create_order(Channel::Bigcommerce, new_order("slow@example.test", &[("SKU-00004", 1)]));
    let slow_job = Job::ChannelOrder {
        channel: ChannelKind::Bigcommerce,
        store: "bigcommerce-main".into(),
        order_id: slow_id.clone(),
        event: OrderEvent::Created,
        payload: None,
    };
    env.sb.channels.faults(Channel::Bigcommerce).script([Some(Fault::Slow { millis: SLOW_FETCH_MS })]);
    let mut batch = vec![message("slow", &slow_job)];
    let mut fast_ids = Vec::new();
    for n in 0..5 {
        let (id, job) = shopify_job(&env, new_order(&format!("fast{n}@example.test"), &[("SKU-00003", 1)]));
        batch.push(message(&format!("fast{n}"), &job));
        fast_ids.push(id);
    }
    let report = env.writer.handle_batch(batch).await;
    assert_eq!((report.done, report.failures.len(), report.parked.len()), (6, 0, 0), "{report:?}");

    let created = created_at(&env);
    let slow_written = created[&slow_id];
    // Written at least most of the slow fetch before the slow order: not held back by it.
    let ahead: Vec<&String> = fast_ids
        .iter()
        .filter(|id| (slow_written - created[*id]).num_milliseconds() >= (SLOW_FETCH_MS as i64) * 4 / 5)
        .collect();
    // Six groups in two lanes, dealt in turn: the three in the other lane, at least, ran ahead.
    assert!(
        ahead.len() >= 3,
        "orders written well before the slow one: {ahead:?} of {fast_ids:?}; {created:?}"
    );
    assert!(ahead.len() < fast_ids.len(), "the slow group's own lane waits for its wave: {created:?}");
    for id in fast_ids.iter().chain([&slow_id]) {
        assert_eq!(sales_orders(&env).get(id), Some(&1), "{id}: one sales order");
    }
}

#[tokio::test]
async fn a_connection_dropped_after_the_write_is_resolved_in_the_same_invocation_exactly_once() {
    let env = setup().await;
    // Brightpearl's own externalRef dedup off: only the writer's check can stop a second order.
    let mut settings = env.sb.brightpearl.settings();
    settings.external_ref_dedup_off = true;
    env.sb.brightpearl.set_settings(settings);
    // The first multi-message (a lane's sales-order POSTs) commits, then its connection drops.
    env.sb.brightpearl.fault_at(MULTI_MESSAGE, 1, Fault::DropAfterWrite);
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for n in 0..6 {
        let (id, job) = shopify_job(&env, new_order(&format!("drop{n}@example.test"), &[("SKU-00005", 1)]));
        batch.push(message(&format!("m{n}"), &job));
        ids.push(id);
    }
    let report = env.writer.handle_batch(batch).await;
    // Nothing goes back to the queue to wait out its visibility timeout.
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.done, 6, "{report:?}");
    assert!(report.retried_in_batch >= 1, "the dropped lane was retried in the invocation: {report:?}");
    let orders = sales_orders(&env);
    for id in &ids {
        assert_eq!(orders.get(id), Some(&1), "{id}: exactly one sales order: {orders:?}");
    }
    let payments = payments_per_order(&env);
    assert_eq!(payments.len(), 6, "{payments:?}");
    assert!(payments.values().all(|n| *n == 1), "each paid once: {payments:?}");
    assert_eq!(env.sb.brightpearl.counters().faults.drop_after_write, 1);
}

#[tokio::test]
async fn two_orders_of_one_new_customer_in_two_lanes_make_one_contact() {
    let env = setup().await;
    let email = "twice-new@example.test";
    let (first, a) = shopify_job(&env, new_order(email, &[("SKU-00003", 1)]));
    let (second, b) = shopify_job(&env, new_order(email, &[("SKU-00004", 1)]));
    // Both lanes meet a customer Brightpearl does not know yet, and its contact search lags
    // its writes: without a guard each lane searches, finds nobody and creates a contact.
    env.sb.brightpearl.set_search_lag(std::time::Duration::from_secs(5));
    let report = env.writer.handle_batch(vec![message("a", &a), message("b", &b)]).await;
    assert_eq!((report.done, report.failures.len()), (2, 0), "{report:?}");

    let contacts = env
        .sb
        .brightpearl
        .with_state(|s| s.contacts.values().filter(|c| c.email.as_deref() == Some(email)).count());
    assert_eq!(contacts, 1, "one contact for one customer");
    let customers: Vec<u64> = env
        .sb
        .brightpearl
        .with_state(|s| s.orders.values().filter(|o| o.order_type == "SO").map(|o| o.contact_id).collect());
    assert_eq!(customers.len(), 2, "{first} and {second}: two sales orders");
    assert_eq!(customers[0], customers[1], "both for the one contact");
}
