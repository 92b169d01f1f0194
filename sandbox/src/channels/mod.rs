//! Simulated Shopify, BigCommerce and WooCommerce stores (issue 4).

use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct ChannelSandboxConfig {}

pub struct ChannelSandbox {}

impl ChannelSandbox {
    pub fn new(_config: ChannelSandboxConfig, _base_url: &str) -> Self {
        ChannelSandbox {}
    }
}

pub fn router(_sandbox: Arc<ChannelSandbox>) -> axum::Router {
    axum::Router::new()
}
