//! The `pearlsync` command line as a library, so tests and benchmarks drive the same code:
//! the local sandbox environment, the demo, invoke, serve, reconcile and replay.

pub mod commands;
pub mod demo;
pub mod local;
