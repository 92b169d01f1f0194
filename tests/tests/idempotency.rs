//! Idempotency records with Powertools semantics, on both stores; the races run on DynamoDB.

use pearlsync::Error;
use pearlsync::state::idempotency::{Claim, Idempotency};
use pearlsync::state::{EmbeddedStore, StateStore, now_epoch_millis};
use pearlsync_tests::emulator;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn lock_for(ms: i64) -> i64 {
    now_epoch_millis() + ms
}

async fn first_call_runs_and_a_repeat_gets_the_stored_result(store: Arc<dyn StateStore>) {
    let idem = Idempotency::new(store, DAY);
    let payload = json!({"order": "1001"});
    let Claim::Acquired(lease) = idem.begin("shopify:main:1001", &payload, lock_for(30_000)).await.unwrap()
    else {
        panic!("the first call must acquire");
    };
    // While it runs, a duplicate is told so.
    assert!(matches!(
        idem.begin("shopify:main:1001", &payload, lock_for(30_000)).await.unwrap(),
        Claim::InProgress { .. }
    ));
    idem.complete(lease, &json!({"sales_order_id": 77})).await.unwrap();
    match idem.begin("shopify:main:1001", &payload, lock_for(30_000)).await.unwrap() {
        Claim::Completed(result) => assert_eq!(result, json!({"sales_order_id": 77})),
        other => panic!("expected the stored result, got {other:?}"),
    }
}

async fn a_different_payload_under_the_same_key_is_an_error(store: Arc<dyn StateStore>) {
    let idem = Idempotency::new(store, DAY);
    let Claim::Acquired(lease) = idem.begin("k", &json!({"a": 1}), lock_for(30_000)).await.unwrap() else {
        panic!("acquire");
    };
    idem.complete(lease, &json!(null)).await.unwrap();
    let err = idem.begin("k", &json!({"a": 2}), lock_for(30_000)).await.unwrap_err();
    assert!(matches!(err, Error::IdempotencyPayloadMismatch { ref key } if key == "k"), "{err}");
    assert!(!err.is_retryable());
}

async fn an_expired_lock_is_taken_over(store: Arc<dyn StateStore>) {
    let idem = Idempotency::new(store, DAY);
    let payload = json!({"x": 1});
    // A crashed attempt: its lock has already run out.
    let Claim::Acquired(crashed) = idem.begin("crash", &payload, lock_for(-1)).await.unwrap() else {
        panic!("acquire");
    };
    let Claim::Acquired(takeover) = idem.begin("crash", &payload, lock_for(30_000)).await.unwrap() else {
        panic!("an expired lock must be taken over");
    };
    // The crashed attempt can no longer complete over the new owner.
    assert!(idem.complete(crashed, &json!("late")).await.is_err());
    idem.complete(takeover, &json!("done")).await.unwrap();
    assert!(
        matches!(idem.begin("crash", &payload, lock_for(1)).await.unwrap(), Claim::Completed(v) if v == json!("done"))
    );
}

async fn released_keys_can_run_again_at_once(store: Arc<dyn StateStore>) {
    let idem = Idempotency::new(store, DAY);
    let payload = json!({});
    let Claim::Acquired(lease) = idem.begin("retry-me", &payload, lock_for(60_000)).await.unwrap() else {
        panic!("acquire");
    };
    idem.release(lease).await.unwrap();
    assert!(matches!(idem.begin("retry-me", &payload, lock_for(60_000)).await.unwrap(), Claim::Acquired(_)));
}

async fn records_expire_by_ttl(store: Arc<dyn StateStore>) {
    // A zero TTL: the record is born expired, so the key is free again, as after DynamoDB's TTL.
    let idem = Idempotency::new(store, Duration::ZERO);
    let payload = json!({"v": 1});
    let Claim::Acquired(lease) = idem.begin("ttl", &payload, lock_for(60_000)).await.unwrap() else {
        panic!("acquire");
    };
    idem.complete(lease, &json!(1)).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        idem.begin("ttl", &json!({"v": 2}), lock_for(60_000)).await.unwrap(),
        Claim::Acquired(_)
    ));
}

macro_rules! cases {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn first_call_runs_and_a_repeat_gets_the_stored_result() {
                super::first_call_runs_and_a_repeat_gets_the_stored_result($make).await
            }
            #[tokio::test]
            async fn a_different_payload_under_the_same_key_is_an_error() {
                super::a_different_payload_under_the_same_key_is_an_error($make).await
            }
            #[tokio::test]
            async fn an_expired_lock_is_taken_over() {
                super::an_expired_lock_is_taken_over($make).await
            }
            #[tokio::test]
            async fn released_keys_can_run_again_at_once() {
                super::released_keys_can_run_again_at_once($make).await
            }
            #[tokio::test]
            async fn records_expire_by_ttl() {
                super::records_expire_by_ttl($make).await
            }
        }
    };
}

cases!(embedded, Arc::new(EmbeddedStore::in_memory().unwrap()));
cases!(dynamodb, Arc::new(emulator::dynamo_store().await));

async fn race(store: Arc<dyn StateStore>, key: &'static str, lock_ms: i64, tasks: usize) -> usize {
    let idem = Idempotency::new(store, DAY);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let idem = idem.clone();
        handles.push(tokio::spawn(async move {
            matches!(
                idem.begin(key, &json!({"same": true}), lock_for(lock_ms)).await.unwrap(),
                Claim::Acquired(_)
            )
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.unwrap());
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_racing_on_one_key_against_dynamodb_have_exactly_one_winner() {
    let store: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    assert_eq!(race(store, "race", 60_000, 32).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_racing_to_take_over_an_expired_lock_have_exactly_one_winner() {
    let store: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let idem = Idempotency::new(Arc::clone(&store), DAY);
    let Claim::Acquired(_crashed) =
        idem.begin("takeover", &json!({"same": true}), lock_for(-1)).await.unwrap()
    else {
        panic!("acquire");
    };
    assert_eq!(race(store, "takeover", 60_000, 32).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_of_two_overlapping_runs_does_the_work_and_the_lease_is_released_after() {
    use pearlsync::state::idempotency::run_exclusively;
    let store: Arc<dyn StateStore> = Arc::new(emulator::dynamo_store().await);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let first =
        tokio::spawn(run_exclusively(Arc::clone(&store), "poll", Duration::from_secs(60), async move {
            let _ = started_tx.send(());
            let _ = finish_rx.await;
            Ok::<_, Error>("first")
        }));
    started_rx.await.unwrap();
    let second =
        run_exclusively(Arc::clone(&store), "poll", Duration::from_secs(60), async { Ok("second") }).await;
    assert_eq!(second.unwrap(), None, "the overlapping run must not run");
    finish_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), Some("first"));
    let third = run_exclusively(store, "poll", Duration::from_secs(60), async { Ok("third") }).await;
    assert_eq!(third.unwrap(), Some("third"), "the lease is free once the first run ended");
}
