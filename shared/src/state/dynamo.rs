//! DynamoDB state: one table, string `pk`/`sk`, body in `data` (JSON text), `version`, and the
//! TTL attribute `expires_at`. TTL deletes lazily, so reads also filter expired items.

use super::{Condition, Item, Key, PutOutcome, StateStore, now_epoch_seconds};
use crate::aws::{LazyClient, SharedSdkConfig};
use crate::error::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    WriteRequest,
};
use std::collections::HashMap;
use std::time::Duration;

/// DynamoDB's own per-call maxima.
const BATCH_GET_MAX: usize = 100;
const BATCH_WRITE_MAX: usize = 25;
/// Unprocessed items are retried with backoff; past this many rounds the call fails (retryable).
const UNPROCESSED_ROUNDS: u32 = 8;

type Attributes = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    /// Built by the first call (issue 18: init builds no AWS client).
    client: LazyClient<Client>,
    table: String,
}

fn sdk_err<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    op: &str,
    e: SdkError<E, R>,
) -> Error {
    let detail = match e.as_service_error() {
        Some(service) => {
            format!("{op}: {} {}", service.code().unwrap_or("unknown"), service.message().unwrap_or_default())
        }
        None => format!("{op}: {e:?}"),
    };
    Error::State(detail)
}

fn to_attributes(item: &Item) -> Result<Attributes> {
    let mut attrs = HashMap::with_capacity(5);
    attrs.insert("pk".into(), AttributeValue::S(item.pk.clone()));
    attrs.insert("sk".into(), AttributeValue::S(item.sk.clone()));
    let body = serde_json::to_string(&item.data).map_err(|e| Error::State(format!("encode item: {e}")))?;
    attrs.insert("data".into(), AttributeValue::S(body));
    attrs.insert("version".into(), AttributeValue::N(item.version.to_string()));
    if let Some(at) = item.expires_at {
        attrs.insert("expires_at".into(), AttributeValue::N(at.to_string()));
    }
    Ok(attrs)
}

fn from_attributes(attrs: &Attributes) -> Result<Item> {
    let s = |name: &str| -> Result<String> {
        match attrs.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(Error::State(format!("item without string attribute {name}"))),
        }
    };
    let n = |name: &str| -> Option<i64> {
        match attrs.get(name) {
            Some(AttributeValue::N(v)) => v.parse().ok(),
            _ => None,
        }
    };
    let data = serde_json::from_str(&s("data")?).map_err(|e| Error::State(format!("decode item: {e}")))?;
    Ok(Item {
        pk: s("pk")?,
        sk: s("sk")?,
        data,
        version: n("version").unwrap_or(0).max(0) as u64,
        expires_at: n("expires_at"),
    })
}

fn key_attributes(key: &Key) -> Attributes {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(key.pk.clone())),
        ("sk".to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

fn live(attrs: &Attributes, now: i64) -> Result<Option<Item>> {
    let item = from_attributes(attrs)?;
    Ok((!item.is_expired(now)).then_some(item))
}

/// The condition expression and its values, or None for an unconditional write.
fn condition_expression(condition: Condition, now: i64) -> Option<(String, Attributes)> {
    let now_value = AttributeValue::N(now.to_string());
    match condition {
        Condition::Always => None,
        Condition::Absent => Some((
            "attribute_not_exists(pk) OR expires_at <= :now".into(),
            HashMap::from([(":now".to_string(), now_value)]),
        )),
        Condition::VersionIs(v) => Some((
            "version = :v AND (attribute_not_exists(expires_at) OR expires_at > :now)".into(),
            HashMap::from([
                (":v".to_string(), AttributeValue::N(v.to_string())),
                (":now".to_string(), now_value),
            ]),
        )),
    }
}

async fn backoff(round: u32) {
    let base = 50u64 << round.min(6);
    tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client: LazyClient::ready(client), table: table.into() }
    }

    /// A store whose client is built from `sdk` by its first call (the standard AWS environment:
    /// `AWS_ENDPOINT_URL` points it at an emulator).
    pub fn on_first_use(sdk: SharedSdkConfig, table: impl Into<String>) -> Self {
        DynamoStore { client: LazyClient::on_first_use(sdk), table: table.into() }
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as the SAM template does (on demand, TTL on `expires_at`).
    /// An existing table is left as it is. Used by tests and one-box setups.
    pub async fn create_table(&self) -> Result<()> {
        let created = self
            .client()
            .await
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(sdk_err("CreateTable", e)),
        }
        self.client()
            .await
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| sdk_err("UpdateTimeToLive", e))?;
        Ok(())
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let out = self
            .client()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        match out.item() {
            Some(attrs) => live(attrs, now_epoch_seconds()),
            None => Ok(None),
        }
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<PutOutcome> {
        let now = now_epoch_seconds();
        let mut request =
            self.client().await.put_item().table_name(&self.table).set_item(Some(to_attributes(&item)?));
        if let Some((expression, values)) = condition_expression(condition, now) {
            request = request
                .condition_expression(expression)
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        }
        match request.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) => match e.into_service_error() {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                    failed,
                ) => {
                    let current = match failed.item() {
                        Some(attrs) => live(attrs, now)?,
                        None => None,
                    };
                    Ok(PutOutcome::ConditionFailed { current })
                }
                other => Err(Error::State(format!(
                    "PutItem: {} {}",
                    other.code().unwrap_or("unknown"),
                    other.message().unwrap_or_default()
                ))),
            },
        }
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<bool> {
        let mut request =
            self.client().await.delete_item().table_name(&self.table).set_key(Some(key_attributes(key)));
        if let Some((expression, values)) = condition_expression(condition, now_epoch_seconds()) {
            request = request.condition_expression(expression).set_expression_attribute_values(Some(values));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(e) => Err(sdk_err("DeleteItem", e)),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let now = now_epoch_seconds();
        let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(pk.to_string()))]);
        let expression = if sk_prefix.is_empty() {
            "pk = :pk"
        } else {
            values.insert(":prefix".into(), AttributeValue::S(sk_prefix.to_string()));
            "pk = :pk AND begins_with(sk, :prefix)"
        };
        let mut items = Vec::new();
        let mut start: Option<Attributes> = None;
        loop {
            let out = self
                .client()
                .await
                .query()
                .table_name(&self.table)
                .key_condition_expression(expression)
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_err("Query", e))?;
            for attrs in out.items() {
                if let Some(item) = live(attrs, now)? {
                    items.push(item);
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>> {
        let now = now_epoch_seconds();
        let mut unique: Vec<&Key> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut items = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|k| key_attributes(k)).collect()))
                .consistent_read(true)
                .build()
                .map_err(|e| Error::State(e.to_string()))?;
            let mut round = 0;
            loop {
                let out = self
                    .client()
                    .await
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchGetItem", e))?;
                if let Some(found) = out.responses().and_then(|r| r.get(&self.table)) {
                    for attrs in found {
                        if let Some(item) = live(attrs, now)? {
                            items.push(item);
                        }
                    }
                }
                match out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        round += 1;
                        if round > UNPROCESSED_ROUNDS {
                            return Err(Error::State(
                                "BatchGetItem: keys still unprocessed after retries".into(),
                            ));
                        }
                        pending = rest.clone();
                        backoff(round).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(items)
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        // A batch may not hold the same key twice: the last write for a key wins, as it would in sequence.
        let mut latest: HashMap<Key, Item> = HashMap::with_capacity(items.len());
        for item in items {
            latest.insert(item.key(), item);
        }
        let requests: Vec<WriteRequest> = latest
            .values()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(to_attributes(item)?))
                    .build()
                    .map_err(|e| Error::State(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_>>()?;
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            loop {
                let out = self
                    .client()
                    .await
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                match out.unprocessed_items().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.is_empty() => {
                        round += 1;
                        if round > UNPROCESSED_ROUNDS {
                            return Err(Error::State(
                                "BatchWriteItem: items still unprocessed after retries".into(),
                            ));
                        }
                        pending = rest.clone();
                        backoff(round).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }
}
