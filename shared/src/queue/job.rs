//! The only thing that travels on a queue: a versioned, serde-tagged `Job`, JSON on the wire.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Wire format version; a consumer refuses versions it does not know.
pub const JOB_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Shopify,
    Bigcommerce,
    Woocommerce,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Shopify => "shopify",
            ChannelKind::Bigcommerce => "bigcommerce",
            ChannelKind::Woocommerce => "woocommerce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shopify" => Some(ChannelKind::Shopify),
            "bigcommerce" => Some(ChannelKind::Bigcommerce),
            "woocommerce" => Some(ChannelKind::Woocommerce),
            _ => None,
        }
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    Created,
    Updated,
    Cancelled,
    /// A refund was made on the channel (Shopify `refunds/create`, BigCommerce
    /// `store/order/refund/created`): the writer reads the order's refunds and credits new ones.
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// A channel order to write to Brightpearl. `store` names the configured store; `payload`
    /// is the order as the webhook carried it, absent when the writer must fetch it (BigCommerce,
    /// reconciliation).
    ChannelOrder {
        channel: ChannelKind,
        store: String,
        order_id: String,
        event: OrderEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
    },
    /// Shipped goods-out notes whose tracking goes back to the channel.
    Shipment { goods_out_note_ids: Vec<u64> },
    /// Products whose availability changed; inventory-poll pushes just these.
    StockChanged { product_ids: Vec<u64> },
    /// Goods-in notes to match against open purchase orders.
    GoodsIn { goods_in_note_ids: Vec<u64> },
}

/// The three work queues. Orders is FIFO, grouped by channel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Orders,
    Stock,
    Purchasing,
}

impl QueueName {
    pub const ALL: [QueueName; 3] = [QueueName::Orders, QueueName::Stock, QueueName::Purchasing];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Orders => "orders",
            QueueName::Stock => "stock",
            QueueName::Purchasing => "purchasing",
        }
    }

    pub fn is_fifo(self) -> bool {
        self == QueueName::Orders
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    job: Job,
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u32,
    #[serde(flatten)]
    job: &'a Job,
}

impl Job {
    pub fn queue(&self) -> QueueName {
        match self {
            Job::ChannelOrder { .. } | Job::Shipment { .. } => QueueName::Orders,
            Job::StockChanged { .. } => QueueName::Stock,
            Job::GoodsIn { .. } => QueueName::Purchasing,
        }
    }

    /// FIFO message group: events for one channel order stay in order.
    pub fn group_id(&self) -> String {
        match self {
            Job::ChannelOrder { channel, store, order_id, .. } => format!("{channel}:{store}:{order_id}"),
            Job::Shipment { goods_out_note_ids } => format!("shipment:{}", join_ids(goods_out_note_ids)),
            Job::StockChanged { .. } => "stock".into(),
            Job::GoodsIn { .. } => "goods-in".into(),
        }
    }

    /// Content hash: FIFO deduplication drops the same job sent twice within five minutes.
    pub fn dedup_id(&self) -> String {
        let digest = Sha256::digest(self.encode().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn encode(&self) -> String {
        // Serialising this enum cannot fail: every field is a plain JSON value.
        serde_json::to_string(&EnvelopeRef { v: JOB_VERSION, job: self }).unwrap_or_default()
    }

    pub fn decode(body: &str) -> Result<Job> {
        let envelope: Envelope =
            serde_json::from_str(body).map_err(|e| Error::BadInput(format!("job does not parse: {e}")))?;
        if envelope.v != JOB_VERSION {
            return Err(Error::BadInput(format!(
                "job version {} is not supported (expected {JOB_VERSION})",
                envelope.v
            )));
        }
        Ok(envelope.job)
    }
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_with_version_and_tag() {
        let job = Job::ChannelOrder {
            channel: ChannelKind::Shopify,
            store: "main".into(),
            order_id: "820982911946154508".into(),
            event: OrderEvent::Created,
            payload: Some(serde_json::json!({"id": 1})),
        };
        let body = job.encode();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["type"], "channel_order");
        assert_eq!(Job::decode(&body).unwrap(), job);
        assert_eq!(job.queue(), QueueName::Orders);
        assert_eq!(job.group_id(), "shopify:main:820982911946154508");
    }

    #[test]
    fn unknown_version_and_garbage_are_bad_input() {
        assert!(matches!(
            Job::decode(r#"{"v":2,"type":"stock_changed","product_ids":[1]}"#),
            Err(Error::BadInput(_))
        ));
        assert!(matches!(Job::decode("not json"), Err(Error::BadInput(_))));
        let ok = Job::decode(r#"{"v":1,"type":"stock_changed","product_ids":[1,2]}"#).unwrap();
        assert_eq!(ok, Job::StockChanged { product_ids: vec![1, 2] });
    }
}
