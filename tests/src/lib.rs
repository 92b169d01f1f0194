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

/// The channel order id inside a sales order's `externalRef` (`{store}:{order id}`).
pub fn channel_order_id(external_ref: &Option<String>) -> String {
    let r = external_ref.as_deref().unwrap_or_default();
    r.split_once(':').map_or(r, |(_, id)| id).to_string()
}
