//! pearlsync: keeps a Brightpearl account and its web shops in step. This crate holds all
//! domain logic and clients; each Lambda's `main.rs` only wires it up.

pub mod app;
pub mod aws;
pub mod backends;
pub mod batch;
pub mod brightpearl;
pub mod channels;
pub mod config;
pub mod error;
pub mod failures;
pub mod freshness;
pub mod ingress;
pub mod inventory;
pub mod lambda;
pub mod metrics;
pub mod money;
pub mod orders;
pub mod parking;
pub mod pending;
pub mod queue;
pub mod reorder;
pub mod secret;
pub mod setup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod worker;

pub use error::{Error, ErrorClass, Result};
