//! The SQS queue through the real SDK on the local emulator.

use pearlsync::queue::{ChannelKind, Job, JobQueue, OrderEvent, QueueName};
use pearlsync_tests::emulator;
use std::time::Duration;

fn order(id: usize, event: OrderEvent) -> Job {
    Job::ChannelOrder {
        channel: ChannelKind::Shopify,
        store: "main".into(),
        order_id: id.to_string(),
        event,
        payload: Some(serde_json::json!({"id": id})),
    }
}

async fn drain(queue: &dyn JobQueue, name: QueueName, expect: usize) -> Vec<Job> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= expect {
            break;
        }
        for r in queue.receive(name, 10, Duration::from_secs(1)).await.unwrap() {
            queue.ack(name, &r.receipt).await.unwrap();
            got.push(r.job);
        }
    }
    got
}

#[tokio::test]
async fn batches_of_ten_reach_each_queue_and_fifo_keeps_group_order() {
    let q = emulator::sqs_queues(5, 30).await;
    let mut jobs: Vec<Job> = (0..12).map(|i| order(i, OrderEvent::Created)).collect();
    jobs.push(order(3, OrderEvent::Updated));
    jobs.push(order(3, OrderEvent::Cancelled));
    jobs.push(Job::StockChanged { product_ids: vec![1, 2, 3] });
    jobs.push(Job::GoodsIn { goods_in_note_ids: vec![9] });
    // 14 orders (2 batches) + 1 stock + 1 purchasing.
    q.queue.send(&jobs).await.unwrap();

    let orders = drain(&q.queue, QueueName::Orders, 14).await;
    assert_eq!(orders.len(), 14);
    let order_3: Vec<&Job> = orders
        .iter()
        .filter(|j| matches!(j, Job::ChannelOrder { order_id, .. } if order_id == "3"))
        .collect();
    assert_eq!(
        order_3,
        [&order(3, OrderEvent::Created), &order(3, OrderEvent::Updated), &order(3, OrderEvent::Cancelled)]
    );
    assert_eq!(
        drain(&q.queue, QueueName::Stock, 1).await,
        [Job::StockChanged { product_ids: vec![1, 2, 3] }]
    );
    assert_eq!(
        drain(&q.queue, QueueName::Purchasing, 1).await,
        [Job::GoodsIn { goods_in_note_ids: vec![9] }]
    );
}

#[tokio::test]
async fn fifo_deduplicates_the_same_job_sent_twice() {
    let q = emulator::sqs_queues(5, 30).await;
    q.queue.send(&[order(1, OrderEvent::Created)]).await.unwrap();
    q.queue.send(&[order(1, OrderEvent::Created)]).await.unwrap();
    assert_eq!(drain(&q.queue, QueueName::Orders, 1).await.len(), 1);
    assert!(q.queue.receive(QueueName::Orders, 10, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn released_jobs_are_redelivered_and_reach_the_dlq_after_the_receive_limit() {
    let q = emulator::sqs_queues(2, 30).await;
    q.queue.send(&[Job::StockChanged { product_ids: vec![42] }]).await.unwrap();
    for attempt in 1..=2 {
        let got = q.queue.receive(QueueName::Stock, 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        q.queue.release(QueueName::Stock, &got[0].receipt).await.unwrap();
    }
    // The third receive moves it to the DLQ instead of delivering it.
    assert!(q.queue.receive(QueueName::Stock, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    let dead = q.client.receive_message().queue_url(&q.dead_letter_urls[1]).send().await.unwrap();
    let bodies: Vec<Job> =
        dead.messages().iter().filter_map(|m| m.body()).map(|b| Job::decode(b).unwrap()).collect();
    assert_eq!(bodies, [Job::StockChanged { product_ids: vec![42] }]);
}

#[tokio::test]
async fn an_undecodable_message_is_not_delivered_as_a_job() {
    let q = emulator::sqs_queues(5, 30).await;
    q.client.send_message().queue_url(&q.urls.stock).message_body("{not a job").send().await.unwrap();
    q.queue.send(&[Job::StockChanged { product_ids: vec![1] }]).await.unwrap();
    let got = drain(&q.queue, QueueName::Stock, 1).await;
    assert_eq!(got, [Job::StockChanged { product_ids: vec![1] }]);
}

#[tokio::test]
async fn a_missing_queue_url_is_a_named_configuration_error() {
    let q = emulator::sqs_queues(5, 30).await;
    let broken = pearlsync::queue::SqsQueue::new(
        q.client.clone(),
        pearlsync::queue::SqsQueueUrls { orders: q.urls.orders.clone(), ..Default::default() },
    );
    let err = broken.send(&[Job::GoodsIn { goods_in_note_ids: vec![1] }]).await.unwrap_err();
    assert!(err.to_string().contains("PURCHASING_QUEUE_URL"), "{err}");
}

#[tokio::test]
async fn a_replay_within_five_minutes_is_not_swallowed_as_a_duplicate() {
    use pearlsync::failures::{self, Failure, FailureCode, Selector};
    let q = emulator::sqs_queues(5, 30).await;
    let state = pearlsync::state::EmbeddedStore::in_memory().unwrap();
    let job = order(7, OrderEvent::Created);
    // The first delivery stays in the queue (received, not yet deleted) while we resend: the
    // emulator forgets a deduplication id once its message is deleted, where SQS keeps it
    // five minutes, so this is how the emulator is made to enforce the window.
    q.queue.send(std::slice::from_ref(&job)).await.unwrap();
    let first = q.queue.receive(QueueName::Orders, 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1);
    failures::park(&state, &job, Failure::new(FailureCode::UnknownSku, "unknown SKU X")).await.unwrap();
    // The control: the same job sent plainly is dropped by FIFO deduplication.
    q.queue.send(std::slice::from_ref(&job)).await.unwrap();
    let report = failures::replay(&state, &q.queue, &Selector::Code(FailureCode::UnknownSku)).await.unwrap();
    assert_eq!(report.replayed.len(), 1);
    assert!(failures::list(&state).await.unwrap().is_empty(), "removed once sent");
    q.queue.ack(QueueName::Orders, &first[0].receipt).await.unwrap();
    // Exactly one message follows: the replay; the plain resend was swallowed.
    assert_eq!(drain(&q.queue, QueueName::Orders, 1).await, std::slice::from_ref(&job));
    assert!(q.queue.receive(QueueName::Orders, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    // A second replay of the same job within the window also goes through.
    failures::park(&state, &job, Failure::new(FailureCode::UnknownSku, "unknown SKU X")).await.unwrap();
    failures::replay(&state, &q.queue, &Selector::All).await.unwrap();
    assert_eq!(drain(&q.queue, QueueName::Orders, 1).await, [job]);
}

#[tokio::test]
async fn a_failed_replay_send_keeps_the_record() {
    use pearlsync::failures::{self, Failure, FailureCode, Selector};
    let q = emulator::sqs_queues(5, 30).await;
    let state = pearlsync::state::EmbeddedStore::in_memory().unwrap();
    let broken = pearlsync::queue::SqsQueue::new(
        q.client.clone(),
        pearlsync::queue::SqsQueueUrls {
            orders: format!("{}-missing.fifo", q.urls.orders),
            ..q.urls.clone()
        },
    );
    let job = order(8, OrderEvent::Created);
    failures::park(&state, &job, Failure::new(FailureCode::UnknownSku, "unknown SKU X")).await.unwrap();
    assert!(failures::replay(&state, &broken, &Selector::All).await.is_err());
    assert_eq!(failures::list(&state).await.unwrap().len(), 1, "not sent, so still parked");
}

#[tokio::test]
async fn an_undecodable_message_is_parked_with_its_raw_body_and_deleted() {
    let q = emulator::sqs_queues(5, 1).await;
    let state = std::sync::Arc::new(pearlsync::state::EmbeddedStore::in_memory().unwrap());
    let queue = q.queue.clone().with_parking(state.clone());
    q.client.send_message().queue_url(&q.urls.stock).message_body("{not a job").send().await.unwrap();
    queue.send(&[Job::StockChanged { product_ids: vec![1] }]).await.unwrap();
    assert_eq!(drain(&queue, QueueName::Stock, 1).await, [Job::StockChanged { product_ids: vec![1] }]);
    let parked = pearlsync::failures::list(state.as_ref()).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].code, pearlsync::failures::FailureCode::Undecodable);
    assert_eq!(parked[0].raw_body.as_deref(), Some("{not a job"));
    assert_eq!(parked[0].queue, Some(QueueName::Stock));
    // Deleted, not left to come back after the 1 s visibility timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queue.receive(QueueName::Stock, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    let stats = queue.stats(QueueName::Stock).await.unwrap();
    assert_eq!(stats.visible + stats.in_flight, 0);
}

/// The deployed wiring: `Backends::from_config` builds its DynamoDB and SQS clients from the
/// standard AWS environment on first use (issue 18); the lazily made clients must still reach
/// the table and the queues.
#[tokio::test]
async fn backends_from_the_deployed_configuration_reach_the_table_and_queues_on_first_use() {
    use pearlsync::config::{Config, QueueBackend, StateBackend};
    use pearlsync::state::{Condition, Item, Key, StateStore};
    let table = emulator::dynamo_store().await;
    let q = emulator::sqs_queues(5, 30).await;
    let mut config = Config::default();
    config.state.backend = StateBackend::Dynamodb;
    config.state.table = table.table().to_string();
    config.queue.backend = QueueBackend::Sqs;
    config.queue.orders_url = q.urls.orders.clone();
    config.queue.stock_url = q.urls.stock.clone();
    config.queue.purchasing_url = q.urls.purchasing.clone();
    config.validate().unwrap();
    let backends = pearlsync::backends::Backends::from_config(&config).await.unwrap();
    let item = Item::new("lazy", "first-use", serde_json::json!({"n": 3}));
    backends.state.put(item, Condition::Absent).await.unwrap();
    // Read back through the test's own client: the lazy one wrote to this table.
    let stored = table.get(&Key::new("lazy", "first-use")).await.unwrap().expect("written");
    assert_eq!(stored.data, serde_json::json!({"n": 3}));
    let job = Job::StockChanged { product_ids: vec![11] };
    backends.queue.send(std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(drain(&q.queue, QueueName::Stock, 1).await, [job]);
}
