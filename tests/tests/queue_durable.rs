//! The durable one-box queue (in the redb state file): jobs survive the process, at least once,
//! visibility timeouts and receive limits like SQS, dead letters parked.

use pearlsync::failures::{self, FailureCode};
use pearlsync::queue::{ChannelKind, DurableQueue, Job, JobQueue, OrderEvent, QueueName};
use pearlsync::state::EmbeddedStore;
use std::time::Duration;

fn order(id: &str, event: OrderEvent) -> Job {
    Job::ChannelOrder {
        channel: ChannelKind::Woocommerce,
        store: "shop".into(),
        order_id: id.into(),
        event,
        payload: Some(serde_json::json!({"id": id})),
    }
}

fn open(path: &std::path::Path, visibility: Duration, max_receives: u32) -> (EmbeddedStore, DurableQueue) {
    let store = EmbeddedStore::open(path).expect("open store");
    let queue = DurableQueue::open(&store, visibility, max_receives).expect("open queue");
    (store, queue)
}

#[tokio::test]
async fn sent_jobs_survive_dropping_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let (_store, queue) = open(&path, Duration::from_secs(600), 5);
        queue
            .send(&[order("1", OrderEvent::Created), Job::StockChanged { product_ids: vec![4] }])
            .await
            .unwrap();
        queue.send(&[order("2", OrderEvent::Created)]).await.unwrap();
        // One in flight when the process "dies": its receipt dies with it.
        let got = queue.receive(QueueName::Orders, 1, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].job, order("1", OrderEvent::Created));
        // A second open in the same process while the first holds the file is refused.
        assert!(EmbeddedStore::open(&path).is_err());
    }
    let (_store, queue) = open(&path, Duration::from_secs(600), 5);
    let got = queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
    let jobs: Vec<&Job> = got.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&order("1", OrderEvent::Created), &order("2", OrderEvent::Created)]);
    assert_eq!(got[0].receive_count, 2, "the orphaned delivery counts");
    assert_eq!(got[1].receive_count, 1);
    for r in &got {
        queue.ack(QueueName::Orders, &r.receipt).await.unwrap();
    }
    assert_eq!(queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap().len(), 1);
    drop(queue);
    drop(_store);
    // Acked work stays gone after a restart; the unacked stock job comes back.
    let (_store, queue) = open(&path, Duration::from_secs(600), 5);
    assert!(queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unacked_job_is_redelivered_after_the_visibility_timeout_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, queue) = open(&dir.path().join("s.redb"), Duration::from_millis(700), 5);
    queue.send(&[Job::GoodsIn { goods_in_note_ids: vec![3] }]).await.unwrap();
    let first = queue.receive(QueueName::Purchasing, 10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(queue.receive(QueueName::Purchasing, 10, Duration::from_millis(300)).await.unwrap().is_empty());
    let again = queue.receive(QueueName::Purchasing, 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    // The first receipt is stale now: acking with it does not delete the redelivered message.
    queue.ack(QueueName::Purchasing, &first[0].receipt).await.unwrap();
    assert_eq!(queue.stats(QueueName::Purchasing).await.unwrap().in_flight, 1);
    queue.ack(QueueName::Purchasing, &again[0].receipt).await.unwrap();
    let stats = queue.stats(QueueName::Purchasing).await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
}

#[tokio::test]
async fn fifo_groups_hold_later_messages_until_the_head_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, queue) = open(&dir.path().join("s.redb"), Duration::from_secs(60), 5);
    queue
        .send(&[
            order("1", OrderEvent::Created),
            order("1", OrderEvent::Cancelled),
            order("2", OrderEvent::Created),
        ])
        .await
        .unwrap();
    let first = queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
    let jobs: Vec<&Job> = first.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&order("1", OrderEvent::Created), &order("2", OrderEvent::Created)]);
    assert!(queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap().is_empty());
    queue.ack(QueueName::Orders, &first[0].receipt).await.unwrap();
    let next = queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job, order("1", OrderEvent::Cancelled));
}

#[tokio::test]
async fn a_job_past_the_receive_limit_is_parked_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = open(&dir.path().join("s.redb"), Duration::from_millis(100), 2);
    let job = Job::StockChanged { product_ids: vec![9] };
    queue.send(std::slice::from_ref(&job)).await.unwrap();
    for attempt in 1..=2 {
        let got = queue.receive(QueueName::Stock, 10, Duration::from_secs(3)).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        queue.release(QueueName::Stock, &got[0].receipt).await.unwrap();
    }
    assert!(queue.receive(QueueName::Stock, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    let parked = failures::list(&store).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].code, FailureCode::RetriesExhausted);
    assert_eq!(parked[0].job.as_ref(), Some(&job));
    let stats = queue.stats(QueueName::Stock).await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
    // Replayed through the same queue, it runs again.
    failures::replay(&store, &queue, &failures::Selector::All).await.unwrap();
    assert_eq!(queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap()[0].job, job);
}

#[tokio::test]
async fn an_undecodable_message_is_parked_with_its_raw_body() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = open(&dir.path().join("s.redb"), Duration::from_secs(60), 5);
    queue.send_raw(QueueName::Orders, r#"{"v":99,"type":"channel_order"}"#, "g").await.unwrap();
    queue.send(&[order("5", OrderEvent::Created)]).await.unwrap();
    let got = queue.receive(QueueName::Orders, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, order("5", OrderEvent::Created));
    let parked = failures::list(&store).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].code, FailureCode::Undecodable);
    assert_eq!(parked[0].raw_body.as_deref(), Some(r#"{"v":99,"type":"channel_order"}"#));
    assert!(parked[0].text.contains("does not parse"), "{}", parked[0].text);
}

#[tokio::test]
async fn a_released_job_keeps_its_backoff_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let (_store, queue) = open(&path, Duration::from_secs(60), 5);
        queue.send(&[Job::StockChanged { product_ids: vec![1] }]).await.unwrap();
        let got = queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap();
        queue.release(QueueName::Stock, &got[0].receipt).await.unwrap();
        // Released after its first receive: back after about 1 s, not at once.
        assert!(queue.receive(QueueName::Stock, 10, Duration::from_millis(300)).await.unwrap().is_empty());
    }
    let (_store, queue) = open(&path, Duration::from_secs(60), 5);
    assert!(
        queue.receive(QueueName::Stock, 10, Duration::ZERO).await.unwrap().is_empty(),
        "a restart does not cut a failed job's backoff short"
    );
    let again = queue.receive(QueueName::Stock, 10, Duration::from_secs(3)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
}
