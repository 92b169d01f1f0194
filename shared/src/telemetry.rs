//! Logging: JSON lines on Lambda (CloudWatch parses them), readable text locally.
//! `RUST_LOG` wins, then `AWS_LAMBDA_LOG_LEVEL`, then `info`.

use tracing_subscriber::EnvFilter;

pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

fn filter(default: &str) -> EnvFilter {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|v| v.to_lowercase()))
        .unwrap_or_else(|| default.to_string());
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the global subscriber once; later calls are ignored (tests call it freely).
pub fn init() {
    init_with_default("info")
}

/// As `init`, with another level when neither variable is set (the demo shows warnings only).
pub fn init_with_default(default: &str) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(default)).with_writer(std::io::stderr);
    let result = if on_lambda() {
        builder.json().with_current_span(false).with_ansi(false).without_time().try_init()
    } else {
        builder.with_target(false).compact().try_init()
    };
    // Already installed: keep the first one.
    let _ = result;
}
