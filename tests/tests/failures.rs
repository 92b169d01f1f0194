//! `pearlsync failures` and `pearlsync status` through the binary, as an operator runs them,
//! against a state file and the sandbox: list, show, resolve and replay, and the effect of a
//! replay read back from the sandbox's own records.

use pearlsync::failures::{self, Failure, FailureCode};
use pearlsync::queue::{ChannelKind, Job, OrderEvent, QueueName};
use pearlsync::state::EmbeddedStore;
use pearlsync_cli::local;
use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Env {
    sandbox: local::LocalSandbox,
    _dir: tempfile::TempDir,
    state_path: PathBuf,
    config_path: PathBuf,
}

async fn env() -> Env {
    let sandbox = local::start(&local::LocalOptions {
        products: 10,
        warehouses: 2,
        suppliers: 2,
        rate_limit: (200, Duration::from_secs(10)),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.redb");
    let config_path = dir.path().join("pearlsync.toml");
    std::fs::write(&config_path, local::config_toml(&sandbox.config, &state_path)).unwrap();
    Env { sandbox, _dir: dir, state_path, config_path }
}

/// Runs the binary off the async runtime (the sandbox it talks to lives on this runtime).
async fn pearlsync(config: &Path, args: &[&str]) -> (bool, String, String) {
    let binary = local::pearlsync_binary().expect("pearlsync binary");
    let mut command = std::process::Command::new(binary);
    command.arg("--config").arg(config).args(args).env_remove("PEARLSYNC_CONFIG").env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("run pearlsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn json(config: &Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = pearlsync(config, args).await;
    assert!(ok, "pearlsync {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("pearlsync {args:?} printed no JSON ({e}): {stdout}"))
}

fn order_job(env: &Env, sku: &str) -> Job {
    let (id, payload) = env.sandbox.sandbox.channels.create_order(
        Channel::Shopify,
        NewOrder {
            email: Some("parked@example.test".into()),
            first_name: "Par".into(),
            last_name: "Ked".into(),
            currency: "GBP".into(),
            lines: vec![NewOrderLine {
                sku: Some(sku.into()),
                name: "Thing".into(),
                quantity: 1,
                price: 9.5,
            }],
        },
    );
    Job::ChannelOrder {
        channel: ChannelKind::Shopify,
        store: "demo-shopify".into(),
        order_id: id,
        event: OrderEvent::Created,
        payload: Some(payload),
    }
}

fn sales_orders_for(env: &Env, job: &Job) -> usize {
    let Job::ChannelOrder { store, order_id, .. } = job else { panic!("an order job") };
    let external_ref = pearlsync::orders::external_ref(store, order_id);
    env.sandbox
        .sandbox
        .brightpearl
        .state()
        .orders
        .values()
        .filter(|o| o.order_type == "SO" && o.external_ref.as_deref() == Some(external_ref.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_list_show_resolve_and_replay_through_the_binary() {
    let env = env().await;
    // The order names SKU-NEW-1, which Brightpearl does not have yet.
    let fixable = order_job(&env, "SKU-NEW-1");
    let payment = order_job(&env, "SKU-00002");
    {
        let state = EmbeddedStore::open(&env.state_path).unwrap();
        failures::park(
            &state,
            &fixable,
            Failure::from_error(&pearlsync::Error::UnknownSku("SKU-NEW-1".into())),
        )
        .await
        .unwrap();
        failures::park(&state, &payment, Failure::new(FailureCode::PaymentUnknown, "payment answer lost"))
            .await
            .unwrap();
        failures::park_undecodable(&state, QueueName::Orders, "{garbage", "job does not parse")
            .await
            .unwrap();
    }
    let config = env.config_path.as_path();

    let listed = json(config, &["failures", "list", "--json"]).await;
    assert_eq!(listed["summary"]["total"], 3);
    assert_eq!(listed["summary"]["by_code"]["unknown_sku"], 1);
    assert_eq!(listed["summary"]["by_code"]["payment_unknown"], 1);
    assert_eq!(listed["summary"]["by_code"]["undecodable"], 1);
    assert_eq!(listed["summary"]["by_store"]["demo-shopify"], 2);
    let text = pearlsync(config, &["failures", "list"]).await.1;
    assert!(text.contains("unknown_sku") && text.contains("demo-shopify"), "{text}");

    let id_of = |code: &str| {
        listed["records"].as_array().unwrap().iter().find(|r| r["code"] == code).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let unknown_id = id_of("unknown_sku");
    let shown = json(config, &["failures", "show", &unknown_id[..10], "--json"]).await;
    assert_eq!(shown["id"], unknown_id.as_str());
    assert_eq!(shown["job"]["type"], "channel_order");
    assert!(shown["what_to_do"].as_str().unwrap().contains("SKU"), "{shown}");
    let raw = json(config, &["failures", "show", &id_of("undecodable"), "--json"]).await;
    assert_eq!(raw["raw_body"], "{garbage");

    // paid/not-paid answer payment_unknown only.
    let (ok, _, stderr) = pearlsync(config, &["failures", "resolve", &unknown_id, "--as", "paid"]).await;
    assert!(!ok && stderr.contains("payment_unknown"), "{stderr}");
    let resolved =
        json(config, &["failures", "resolve", &id_of("payment_unknown"), "--as", "done", "--json"]).await;
    assert_eq!(resolved["resolution"], "done");
    assert_eq!(resolved["replayed"], false);

    // Replaying before the fix: the order runs and is parked again, not lost or dropped.
    let early = json(config, &["failures", "replay", "--code", "unknown_sku", "--json"]).await;
    assert_eq!(early["replayed"].as_array().unwrap().len(), 1);
    assert_eq!(early["ran"]["parked_again"].as_array().unwrap().len(), 1, "{early}");
    assert_eq!(sales_orders_for(&env, &fixable), 0);

    // The merchant adds the SKU; the replay now writes the order, once.
    local::add_product(&env.sandbox, "SKU-NEW-1", 5);
    let replayed = json(config, &["failures", "replay", "--code", "unknown_sku", "--json"]).await;
    assert_eq!(replayed["ran"]["succeeded"], 1, "{replayed}");
    assert_eq!(sales_orders_for(&env, &fixable), 1);

    let after = json(config, &["failures", "list", "--json"]).await;
    assert_eq!(after["summary"]["total"], 1);
    assert_eq!(after["summary"]["by_code"]["undecodable"], 1);
    let skipped = json(config, &["failures", "replay", "--all", "--json"]).await;
    assert_eq!(skipped["skipped"].as_array().unwrap().len(), 1, "no job to send for a raw body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_with_no_run_leaves_the_job_on_the_durable_queue_for_serve() {
    let env = env().await;
    let job = order_job(&env, "SKU-00003");
    {
        let state = EmbeddedStore::open(&env.state_path).unwrap();
        failures::park(&state, &job, Failure::new(FailureCode::Other, "test")).await.unwrap();
    }
    let replayed = json(&env.config_path, &["failures", "replay", "--all", "--no-run", "--json"]).await;
    assert_eq!(replayed["replayed"].as_array().unwrap().len(), 1);
    assert!(replayed["ran"].is_null());
    // The record is gone and the job is not: it waits in the state file's queue.
    let status = json(&env.config_path, &["status", "--json"]).await;
    assert_eq!(status["queues"]["orders"]["visible"], 1, "{status}");
    assert_eq!(status["parked"]["total"], 0);
    let stores: Vec<&str> =
        status["stores"].as_array().unwrap().iter().map(|s| s["store"].as_str().unwrap()).collect();
    assert_eq!(stores, ["demo-shopify", "demo-bigcommerce", "demo-woocommerce"]);
    assert!(status["stores"][0]["flows"]["inventory_poll"]["age_seconds"].is_null(), "never polled");
    let store = EmbeddedStore::open(&env.state_path).unwrap();
    let queue = pearlsync::queue::DurableQueue::open_default(&store).unwrap();
    let got =
        pearlsync::queue::JobQueue::receive(&queue, QueueName::Orders, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, job);
}
