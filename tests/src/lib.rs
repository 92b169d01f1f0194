//! Test support shared by the integration tests: the local DynamoDB/SQS emulator (moto server,
//! started by `scripts/test.sh`) reached through the real AWS SDK.

pub mod emulator {
    use pearlsync::queue::{SqsQueue, SqsQueueUrls};
    use pearlsync::state::DynamoStore;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The emulator endpoint from `AWS_ENDPOINT_URL`. Fails the test (never skips) when it is
    /// missing, and refuses anything that is not on 127.0.0.1, so a test can never reach AWS.
    pub fn endpoint() -> String {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        assert!(
            !endpoint.is_empty(),
            "AWS_ENDPOINT_URL is not set: run the tests with scripts/test.sh, which starts the local \
             DynamoDB/SQS emulator (moto) on 127.0.0.1"
        );
        let host = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .and_then(|rest| rest.split([':', '/']).next())
            .unwrap_or_default();
        assert_eq!(
            host, "127.0.0.1",
            "refusing to run against {endpoint}: tests only talk to an emulator on 127.0.0.1"
        );
        endpoint
    }

    pub async fn sdk_config() -> aws_config::SdkConfig {
        let endpoint = endpoint();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "emulator",
            ))
            .load()
            .await
    }

    /// A name no other test (or parallel test process) uses.
    pub fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}-{}-{n}", &id[..12])
    }

    /// A fresh table with the production layout.
    pub async fn dynamo_store() -> DynamoStore {
        let config = sdk_config().await;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), unique_name("pearlsync-test"));
        store.create_table().await.expect("create table on the emulator");
        store
    }

    pub struct TestQueues {
        pub queue: SqsQueue,
        pub urls: SqsQueueUrls,
        pub client: aws_sdk_sqs::Client,
        pub dead_letter_urls: [String; 3],
    }

    /// Fresh orders (FIFO), stock and purchasing queues, each with a DLQ after `max_receives`.
    pub async fn sqs_queues(max_receives: u32, visibility_seconds: u32) -> TestQueues {
        use aws_sdk_sqs::types::QueueAttributeName;
        let config = sdk_config().await;
        let client = aws_sdk_sqs::Client::new(&config);
        let base = unique_name("ps");
        let mut urls = Vec::new();
        let mut dead = Vec::new();
        for (name, fifo) in [("orders", true), ("stock", false), ("purchasing", false)] {
            let suffix = if fifo { ".fifo" } else { "" };
            let mut dlq = client.create_queue().queue_name(format!("{base}-{name}-dlq{suffix}"));
            if fifo {
                dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
            }
            let dlq_url = dlq.send().await.expect("create DLQ").queue_url().unwrap_or_default().to_string();
            let arn = client
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("DLQ arn")
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .expect("DLQ has an ARN");
            let mut main = client
                .create_queue()
                .queue_name(format!("{base}-{name}{suffix}"))
                .attributes(QueueAttributeName::VisibilityTimeout, visibility_seconds.to_string())
                .attributes(
                    QueueAttributeName::RedrivePolicy,
                    serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives.to_string()})
                        .to_string(),
                );
            if fifo {
                main = main.attributes(QueueAttributeName::FifoQueue, "true");
            }
            let url = main.send().await.expect("create queue").queue_url().unwrap_or_default().to_string();
            urls.push(url);
            dead.push(dlq_url);
        }
        let urls =
            SqsQueueUrls { orders: urls[0].clone(), stock: urls[1].clone(), purchasing: urls[2].clone() };
        TestQueues {
            queue: SqsQueue::new(client.clone(), urls.clone()),
            urls,
            client,
            dead_letter_urls: [dead[0].clone(), dead[1].clone(), dead[2].clone()],
        }
    }
}

/// A Brightpearl client configuration for the in-process sandbox: its default credentials,
/// the given rolling window, and short timeouts and backoffs so fault tests stay fast.
pub fn sandbox_brightpearl(
    sandbox: &pearlsync_sandbox::Sandbox,
    rate: (u32, std::time::Duration),
) -> pearlsync::brightpearl::BrightpearlConfig {
    let d = pearlsync_sandbox::brightpearl::BrightpearlSandboxConfig::default();
    pearlsync::brightpearl::BrightpearlConfig {
        base_url: Some(sandbox.base_url.clone()),
        account: d.account,
        auth: pearlsync::brightpearl::AuthConfig {
            app_ref: d.app_ref,
            staff_token: pearlsync::secret::Secret::literal(d.staff_token),
            ..Default::default()
        },
        installed_integration_instance_id: Some(42),
        rate_limit_requests: rate.0,
        rate_limit_window_ms: rate.1.as_millis() as u64,
        request_timeout_ms: 3_000,
        backoff_base_ms: 10,
        backoff_cap_ms: 200,
        ..Default::default()
    }
}

/// A JSON fixture under `tests/fixtures/` (e.g. `orders/shopify/…`), which must name its
/// `_source` (the vendor's docs or the recording it was taken from).
pub fn fixture(path: &str) -> serde_json::Value {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    assert!(
        value.get("_source").and_then(serde_json::Value::as_str).is_some_and(|s| !s.is_empty()),
        "{path} names its source"
    );
    value
}

/// The channel order id inside a sales order's `externalRef` (`{store}:{order id}`).
pub fn channel_order_id(external_ref: &Option<String>) -> String {
    let r = external_ref.as_deref().unwrap_or_default();
    r.split_once(':').map_or(r, |(_, id)| id).to_string()
}

/// The order writer against the sandbox (Brightpearl + channels over real HTTP) with its state
/// on the DynamoDB emulator: the setup the order tests share.
pub mod orders_env {
    use pearlsync::app::App;
    use pearlsync::backends::Backends;
    use pearlsync::batch::{BatchMessage, BatchReport};
    use pearlsync::brightpearl::BrightpearlConfig;
    use pearlsync::channels::StoreConfig;
    use pearlsync::config::Config;
    use pearlsync::orders::OrderWriter;
    use pearlsync::queue::{ChannelKind, InProcessQueue, Job, OrderEvent};
    use pearlsync::secret::Secret;
    use pearlsync::state::StateStore;
    use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
    use pearlsync_sandbox::channels::{Channel, NewOrder, NewOrderLine};
    use pearlsync_sandbox::{Sandbox, SandboxConfig};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    /// Fast window: these tests are not about the rate limit.
    pub const RATE: (u32, Duration) = (200, Duration::from_millis(200));

    pub struct Env {
        pub sb: Sandbox,
        pub app: App,
        pub writer: OrderWriter,
    }

    pub fn store(sb: &Sandbox, kind: ChannelKind) -> StoreConfig {
        StoreConfig {
            name: format!("{kind}-main"),
            kind,
            base_url: sb.base_url.clone(),
            access_token: Secret::literal("token"),
            webhook_secret: Secret::literal("hook-secret"),
            store_hash: sb.channels.config().bigcommerce_store_hash.clone(),
            consumer_key: Secret::literal("ck_sandbox"),
            consumer_secret: Secret::literal("cs_sandbox"),
            location_id: Some("1".into()),
            brightpearl_channel_id: Some(match kind {
                ChannelKind::Shopify => 1,
                ChannelKind::Bigcommerce => 2,
                ChannelKind::Woocommerce => 3,
            }),
            price_list_id: Some(1),
            reservation_warehouse_id: Some(1),
            tax_code: Some("T20".into()),
            ..StoreConfig::default()
        }
    }

    pub async fn setup() -> Env {
        let (sb, config) = sandbox_and_config().await;
        let state: Arc<dyn StateStore> = Arc::new(crate::emulator::dynamo_store().await);
        setup_with(sb, config, state)
    }

    /// A seeded sandbox with stock, and a configuration for a Shopify and a BigCommerce store.
    pub async fn sandbox_and_config() -> (Sandbox, Config) {
        let bp = BrightpearlSandboxConfig {
            rate_limit: RATE.0,
            rate_window: RATE.1,
            seed: Some(SeedSpec { products: 20, warehouses: 2, suppliers: 2, seed: 3 }),
            ..Default::default()
        };
        let sb = pearlsync_sandbox::start(SandboxConfig { brightpearl: bp, ..Default::default() })
            .await
            .expect("sandbox starts");
        let products: Vec<u64> = sb.brightpearl.with_state(|s| s.products.keys().copied().collect());
        for p in products {
            sb.brightpearl.set_stock(p, 1, 100_000);
        }
        let config = Config {
            brightpearl: BrightpearlConfig {
                backoff_base_ms: 5,
                backoff_cap_ms: 50,
                ..crate::sandbox_brightpearl(&sb, RATE)
            },
            stores: vec![
                store(&sb, ChannelKind::Shopify),
                store(&sb, ChannelKind::Bigcommerce),
                store(&sb, ChannelKind::Woocommerce),
            ],
            ..Config::default()
        };
        (sb, config)
    }

    /// As `setup`, over a given state store (a fault-injecting wrapper, say).
    pub fn setup_with(sb: Sandbox, config: Config, state: Arc<dyn StateStore>) -> Env {
        let backends = Backends { state, queue: Arc::new(InProcessQueue::default()) };
        let app = App::with_backends(config, backends, "order-writer").expect("app builds");
        let writer = app.order_writer();
        Env { sb, app, writer }
    }

    pub fn new_order(email: &str, lines: &[(&str, u32)]) -> NewOrder {
        NewOrder {
            email: Some(email.into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            currency: "GBP".into(),
            lines: lines
                .iter()
                .map(|(sku, q)| NewOrderLine {
                    sku: Some(sku.to_string()),
                    name: String::new(),
                    quantity: *q,
                    price: 12.5,
                })
                .collect(),
        }
    }

    pub fn shopify_job(env: &Env, order: NewOrder) -> (String, Job) {
        let (id, payload) = env.sb.channels.create_order(Channel::Shopify, order);
        let job = Job::ChannelOrder {
            channel: ChannelKind::Shopify,
            store: "shopify-main".into(),
            order_id: id.clone(),
            event: OrderEvent::Created,
            payload: Some(payload),
        };
        (id, job)
    }

    pub fn message(id: &str, job: &Job) -> BatchMessage {
        BatchMessage {
            message_id: id.into(),
            body: job.encode(),
            group_id: Some(job.group_id()),
            receive_count: 1,
        }
    }

    /// Sales orders per externalRef.
    pub fn sales_orders(env: &Env) -> BTreeMap<String, u64> {
        env.sb.brightpearl.with_state(|s| {
            let mut by_ref = BTreeMap::new();
            for o in s.orders.values().filter(|o| o.order_type == "SO") {
                *by_ref.entry(crate::channel_order_id(&o.external_ref)).or_insert(0) += 1;
            }
            by_ref
        })
    }

    pub fn sales_order_id(env: &Env, external_ref: &str) -> u64 {
        env.sb.brightpearl.with_state(|s| {
            s.orders
                .values()
                .find(|o| o.order_type == "SO" && crate::channel_order_id(&o.external_ref) == external_ref)
                .map(|o| o.id)
                .expect("the sales order exists")
        })
    }

    pub fn payments_per_order(env: &Env) -> BTreeMap<u64, usize> {
        env.sb.brightpearl.with_state(|s| {
            let mut per = BTreeMap::new();
            for p in &s.payments {
                *per.entry(p.order_id).or_insert(0) += 1;
            }
            per
        })
    }

    /// Feeds batches of 10 until every message is done or parked, redelivering failures.
    pub async fn run_to_completion(
        writer: &OrderWriter,
        mut pending: Vec<BatchMessage>,
        max_rounds: usize,
    ) -> BatchReport {
        let mut total = BatchReport::default();
        for _ in 0..max_rounds {
            if pending.is_empty() {
                return total;
            }
            let mut next = Vec::new();
            for chunk in pending.chunks(10) {
                let report = writer.handle_batch(chunk.to_vec()).await;
                next.extend(chunk.iter().filter(|m| report.failures.contains(&m.message_id)).cloned());
                total.done += report.done;
                total.parked.extend(report.parked);
            }
            pending = next;
        }
        assert!(pending.is_empty(), "{} messages still failing after {max_rounds} rounds", pending.len());
        total
    }
}
