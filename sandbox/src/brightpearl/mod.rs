//! Simulated Brightpearl account (issue 3).

use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct BrightpearlSandboxConfig {}

pub struct BrightpearlSandbox {}

impl BrightpearlSandbox {
    pub fn new(_config: BrightpearlSandboxConfig, _base_url: &str) -> Self {
        BrightpearlSandbox {}
    }
}

pub fn router(_sandbox: Arc<BrightpearlSandbox>) -> axum::Router {
    axum::Router::new()
}
