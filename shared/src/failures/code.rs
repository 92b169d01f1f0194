//! Failure codes: one stable snake_case name per reason a job cannot succeed as it is, the
//! family an alarm groups it under, and what a person should do about it.

use crate::error::Error;
use crate::queue::QueueName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// A channel line's SKU has no Brightpearl product.
    UnknownSku,
    /// A channel line carries no SKU at all.
    NoSku,
    /// The order's rows do not add up to the channel's total.
    TotalMismatch,
    /// A payment went out and its answer was lost: only a person (or a lookup) can tell.
    PaymentUnknown,
    /// Brightpearl refused a cancellation (the order is shipped, invoiced...).
    CancelRefused,
    /// Brightpearl understood a write and refused it (4xx error envelope).
    RejectedByBrightpearl,
    /// A channel understood a write and refused it.
    RejectedByChannel,
    /// A queue message whose body is not a job; kept with its raw body.
    Undecodable,
    /// A job that arrived on a queue that does not take its kind.
    WrongQueue,
    /// A payload we were given cannot be used (missing field, bad shape).
    BadInput,
    /// A reorder needs a supplier and the product has none.
    NoSupplier,
    /// A store refused our credentials.
    ChannelAuth,
    /// Brightpearl refused our credentials, or their refresh failed.
    BrightpearlAuth,
    /// Something the job names does not exist (any more).
    NotFound,
    /// The configuration is missing or wrong for this job.
    Config,
    /// The job was received the configured number of times without succeeding.
    RetriesExhausted,
    Other,
}

/// What alarms group parked work by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureFamily {
    Orders,
    Stock,
    Purchasing,
    Auth,
}

impl FailureFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureFamily::Orders => "orders",
            FailureFamily::Stock => "stock",
            FailureFamily::Purchasing => "purchasing",
            FailureFamily::Auth => "auth",
        }
    }

    /// Credentials failures are one family whatever flow hit them; the rest follow the queue
    /// the work came from (orders when unknown: orders are what users miss first).
    pub fn of(code: FailureCode, queue: Option<QueueName>) -> FailureFamily {
        match (code, queue) {
            (FailureCode::ChannelAuth | FailureCode::BrightpearlAuth, _) => FailureFamily::Auth,
            (FailureCode::NoSupplier, _) | (_, Some(QueueName::Purchasing)) => FailureFamily::Purchasing,
            (_, Some(QueueName::Stock)) => FailureFamily::Stock,
            (_, Some(QueueName::Orders) | None) => FailureFamily::Orders,
        }
    }
}

impl FailureCode {
    pub const ALL: [FailureCode; 17] = [
        FailureCode::UnknownSku,
        FailureCode::NoSku,
        FailureCode::TotalMismatch,
        FailureCode::PaymentUnknown,
        FailureCode::CancelRefused,
        FailureCode::RejectedByBrightpearl,
        FailureCode::RejectedByChannel,
        FailureCode::Undecodable,
        FailureCode::WrongQueue,
        FailureCode::BadInput,
        FailureCode::NoSupplier,
        FailureCode::ChannelAuth,
        FailureCode::BrightpearlAuth,
        FailureCode::NotFound,
        FailureCode::Config,
        FailureCode::RetriesExhausted,
        FailureCode::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::UnknownSku => "unknown_sku",
            FailureCode::NoSku => "no_sku",
            FailureCode::TotalMismatch => "total_mismatch",
            FailureCode::PaymentUnknown => "payment_unknown",
            FailureCode::CancelRefused => "cancel_refused",
            FailureCode::RejectedByBrightpearl => "rejected_by_brightpearl",
            FailureCode::RejectedByChannel => "rejected_by_channel",
            FailureCode::Undecodable => "undecodable",
            FailureCode::WrongQueue => "wrong_queue",
            FailureCode::BadInput => "bad_input",
            FailureCode::NoSupplier => "no_supplier",
            FailureCode::ChannelAuth => "channel_auth",
            FailureCode::BrightpearlAuth => "brightpearl_auth",
            FailureCode::NotFound => "not_found",
            FailureCode::Config => "config",
            FailureCode::RetriesExhausted => "retries_exhausted",
            FailureCode::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<FailureCode> {
        FailureCode::ALL.into_iter().find(|c| c.as_str() == text.trim())
    }

    /// The code for a permanent error. Errors added later fall to `Other` until they get
    /// their own code, so a new variant never stops parking from compiling or working.
    pub fn from_error(error: &Error) -> FailureCode {
        match error {
            Error::UnknownSku(_) => FailureCode::UnknownSku,
            Error::Config { .. } => FailureCode::Config,
            Error::Unauthorized { service: "brightpearl", .. } => FailureCode::BrightpearlAuth,
            Error::Unauthorized { .. } => FailureCode::ChannelAuth,
            Error::Rejected { status: 404, .. } => FailureCode::NotFound,
            Error::Rejected { service: "brightpearl", .. } => FailureCode::RejectedByBrightpearl,
            Error::Rejected { .. } => FailureCode::RejectedByChannel,
            Error::BadInput(_) => FailureCode::BadInput,
            Error::OutcomeUnknown { .. } => FailureCode::Other,
            #[allow(unreachable_patterns)]
            _ => FailureCode::Other,
        }
    }

    /// What a person should do, shown by `pearlsync failures show`.
    pub fn advice(self) -> &'static str {
        match self {
            FailureCode::UnknownSku => {
                "Add the SKU to the Brightpearl product (or fix it on the store), then `pearlsync failures replay --code unknown_sku`."
            }
            FailureCode::NoSku => {
                "Give the store's product variant a SKU that exists in Brightpearl, then replay the order."
            }
            FailureCode::TotalMismatch => {
                "Compare the order's lines, shipping, discounts and taxes with the store; fix the store order or the tax/nominal mapping, then replay."
            }
            FailureCode::PaymentUnknown => {
                "Look at the sales order's payments in Brightpearl. If the payment is there: `resolve ID --as paid`; if not: `resolve ID --as not-paid` (it is then posted once)."
            }
            FailureCode::CancelRefused => {
                "Brightpearl refused the cancellation (shipped or invoiced?). Cancel or credit it by hand, then `resolve ID --as done`."
            }
            FailureCode::RejectedByBrightpearl => {
                "Read the Brightpearl error code in the evidence, fix the data or mapping it names, then replay."
            }
            FailureCode::RejectedByChannel => {
                "Read the store's answer in the evidence, fix what it names, then replay."
            }
            FailureCode::Undecodable => {
                "The queue message is not a job this version understands (raw body kept). Re-send the event from the store if needed, then `resolve ID --as done`."
            }
            FailureCode::WrongQueue => {
                "A job reached a queue that does not take it (a routing bug or a hand-sent message). Replay re-routes it by its kind."
            }
            FailureCode::BadInput => "The payload cannot be used; fix it at the source, then replay.",
            FailureCode::NoSupplier => "Give the product a primary supplier in Brightpearl, then replay.",
            FailureCode::ChannelAuth => {
                "Renew the store's API credentials in the configuration, then replay."
            }
            FailureCode::BrightpearlAuth => {
                "Re-authorise the Brightpearl app (staff token or OAuth refresh token), then replay."
            }
            FailureCode::NotFound => {
                "What the job names no longer exists; if that is expected, `resolve ID --as done`."
            }
            FailureCode::Config => "Fix the configuration key named in the text, then replay.",
            FailureCode::RetriesExhausted => {
                "The job failed every delivery; read the logs for its group, fix the cause, then replay."
            }
            FailureCode::Other => "Read the text and evidence; replay once the cause is fixed.",
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FailureCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureCode::parse(s).ok_or_else(|| {
            let known: Vec<&str> = FailureCode::ALL.iter().map(|c| c.as_str()).collect();
            format!("{s:?} is not a failure code (one of {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_text_and_json() {
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()));
            assert_eq!(serde_json::from_value::<FailureCode>(json).unwrap(), code);
            assert!(!code.advice().is_empty());
        }
        let mut names: Vec<&str> = FailureCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureCode::ALL.len(), "codes are unique");
        assert!("unknown-sku".parse::<FailureCode>().is_err());
    }

    #[test]
    fn errors_map_to_codes_and_families() {
        let rejected = |service, status| Error::Rejected {
            service,
            status,
            code: "CMNC-010".into(),
            message: "no".into(),
        };
        assert_eq!(FailureCode::from_error(&Error::UnknownSku("X".into())), FailureCode::UnknownSku);
        assert_eq!(
            FailureCode::from_error(&rejected("brightpearl", 400)),
            FailureCode::RejectedByBrightpearl
        );
        assert_eq!(FailureCode::from_error(&rejected("shopify", 422)), FailureCode::RejectedByChannel);
        assert_eq!(FailureCode::from_error(&rejected("brightpearl", 404)), FailureCode::NotFound);
        let auth = |service| Error::Unauthorized { service, message: "expired".into() };
        assert_eq!(FailureCode::from_error(&auth("brightpearl")), FailureCode::BrightpearlAuth);
        assert_eq!(FailureCode::from_error(&auth("woocommerce")), FailureCode::ChannelAuth);
        assert_eq!(FailureCode::from_error(&Error::config("X", "y")), FailureCode::Config);
        assert_eq!(FailureFamily::of(FailureCode::ChannelAuth, Some(QueueName::Stock)), FailureFamily::Auth);
        assert_eq!(FailureFamily::of(FailureCode::Other, Some(QueueName::Stock)), FailureFamily::Stock);
        assert_eq!(FailureFamily::of(FailureCode::NoSupplier, None), FailureFamily::Purchasing);
        assert_eq!(FailureFamily::of(FailureCode::UnknownSku, None), FailureFamily::Orders);
    }
}
