//! The `pearlsync` command line as a library, so tests and benchmarks drive the same code:
//! the local sandbox environment, the demo, invoke, serve, reconcile, replay, failures, status.

pub mod commands;
pub mod demo;
pub mod failures;
pub mod local;
pub mod progress;
pub mod status;
