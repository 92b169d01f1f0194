//! One contract, two stores: the embedded redb file and DynamoDB (on the local emulator).

use pearlsync::state::{Condition, EmbeddedStore, Item, Key, PutOutcome, StateStore, now_epoch_seconds};
use pearlsync_tests::emulator;
use serde_json::json;
use std::sync::Arc;

async fn put_and_get_round_trip(store: Arc<dyn StateStore>) {
    let key = Key::new("sku#A-1", "product");
    assert_eq!(store.get(&key).await.unwrap(), None);
    let item = Item::new("sku#A-1", "product", json!({"product_id": 1001, "name": "Ünïcode ✓"}));
    assert_eq!(store.put(item.clone(), Condition::Always).await.unwrap(), PutOutcome::Written);
    assert_eq!(store.get(&key).await.unwrap(), Some(item));
}

async fn absent_condition_admits_one_writer(store: Arc<dyn StateStore>) {
    let first = Item::new("dedup#1", "event", json!({"n": 1}));
    let second = Item::new("dedup#1", "event", json!({"n": 2}));
    assert_eq!(store.put(first.clone(), Condition::Absent).await.unwrap(), PutOutcome::Written);
    match store.put(second, Condition::Absent).await.unwrap() {
        PutOutcome::ConditionFailed { current } => assert_eq!(current, Some(first.clone())),
        other => panic!("expected a failed condition, got {other:?}"),
    }
    assert_eq!(store.get(&first.key()).await.unwrap(), Some(first));
}

async fn version_condition_is_compare_and_set(store: Arc<dyn StateStore>) {
    let v1 = Item::new("order#9", "saga", json!({"step": "created"}));
    store.put(v1.clone(), Condition::Absent).await.unwrap();
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.data = json!({"step": "reserved"});
    assert_eq!(store.put(v2.clone(), Condition::VersionIs(1)).await.unwrap(), PutOutcome::Written);
    let mut stale = v1.clone();
    stale.version = 2;
    stale.data = json!({"step": "lost update"});
    assert!(matches!(
        store.put(stale, Condition::VersionIs(1)).await.unwrap(),
        PutOutcome::ConditionFailed { current: Some(ref c) } if c.version == 2
    ));
    assert_eq!(store.get(&v1.key()).await.unwrap(), Some(v2));
    // A version condition on a missing item fails.
    let missing = Item::new("order#none", "saga", json!({}));
    assert!(matches!(
        store.put(missing, Condition::VersionIs(1)).await.unwrap(),
        PutOutcome::ConditionFailed { current: None }
    ));
}

async fn expired_items_read_as_absent(store: Arc<dyn StateStore>) {
    let past = now_epoch_seconds() - 10;
    let expired = Item::new("dedup#old", "event", json!({})).with_expiry(past);
    store.put(expired.clone(), Condition::Always).await.unwrap();
    assert_eq!(store.get(&expired.key()).await.unwrap(), None);
    assert!(store.query("dedup#old", "").await.unwrap().is_empty());
    let fresh =
        Item::new("dedup#old", "event", json!({"again": true})).with_expiry(now_epoch_seconds() + 3600);
    assert_eq!(store.put(fresh.clone(), Condition::Absent).await.unwrap(), PutOutcome::Written);
    assert_eq!(store.get(&fresh.key()).await.unwrap(), Some(fresh));
}

async fn conditional_delete(store: Arc<dyn StateStore>) {
    let item = Item::new("lock#1", "x", json!({}));
    store.put(item.clone(), Condition::Always).await.unwrap();
    assert!(!store.delete(&item.key(), Condition::VersionIs(7)).await.unwrap());
    assert!(store.get(&item.key()).await.unwrap().is_some());
    assert!(store.delete(&item.key(), Condition::VersionIs(1)).await.unwrap());
    assert!(store.get(&item.key()).await.unwrap().is_none());
}

async fn query_by_prefix_in_sort_order(store: Arc<dyn StateStore>) {
    for sk in ["pushed#0003", "pushed#0001", "pushed#0002", "cursor", "other"] {
        store.put(Item::new("channel#shopify:main", sk, json!({"sk": sk})), Condition::Always).await.unwrap();
    }
    store.put(Item::new("channel#bigcommerce:x", "pushed#0001", json!({})), Condition::Always).await.unwrap();
    let found: Vec<String> =
        store.query("channel#shopify:main", "pushed#").await.unwrap().into_iter().map(|i| i.sk).collect();
    assert_eq!(found, ["pushed#0001", "pushed#0002", "pushed#0003"]);
    assert_eq!(store.query("channel#shopify:main", "").await.unwrap().len(), 5);
}

async fn batches_beyond_one_request(store: Arc<dyn StateStore>) {
    // 60 writes need three BatchWriteItem calls; 150 keys need two BatchGetItem calls.
    let items: Vec<Item> = (0..60).map(|i| Item::new(format!("map#{i:03}"), "m", json!({"i": i}))).collect();
    store.batch_put(items.clone()).await.unwrap();
    let mut keys: Vec<Key> = (0..150).map(|i| Key::new(format!("map#{i:03}"), "m")).collect();
    keys.push(Key::new("map#000", "m")); // a repeated key is read once
    let mut got = store.batch_get(&keys).await.unwrap();
    got.sort_by(|a, b| a.pk.cmp(&b.pk));
    assert_eq!(got, items);
}

macro_rules! contract {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn put_and_get_round_trip() {
                super::put_and_get_round_trip($make).await
            }
            #[tokio::test]
            async fn absent_condition_admits_one_writer() {
                super::absent_condition_admits_one_writer($make).await
            }
            #[tokio::test]
            async fn version_condition_is_compare_and_set() {
                super::version_condition_is_compare_and_set($make).await
            }
            #[tokio::test]
            async fn expired_items_read_as_absent() {
                super::expired_items_read_as_absent($make).await
            }
            #[tokio::test]
            async fn conditional_delete() {
                super::conditional_delete($make).await
            }
            #[tokio::test]
            async fn query_by_prefix_in_sort_order() {
                super::query_by_prefix_in_sort_order($make).await
            }
            #[tokio::test]
            async fn batches_beyond_one_request() {
                super::batches_beyond_one_request($make).await
            }
        }
    };
}

fn embedded_store() -> Arc<dyn StateStore> {
    // On Linux the open file stays usable after its folder is removed, so nothing is left behind.
    let dir = tempfile::tempdir().unwrap();
    Arc::new(EmbeddedStore::open(dir.path().join("state.redb")).unwrap())
}

contract!(embedded, embedded_store());
contract!(dynamodb, Arc::new(emulator::dynamo_store().await));

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.put(Item::new("a", "b", json!({"kept": true})), Condition::Always).await.unwrap();
    }
    let reopened = EmbeddedStore::open(&path).unwrap();
    assert_eq!(reopened.get(&Key::new("a", "b")).await.unwrap().unwrap().data, json!({"kept": true}));
}
