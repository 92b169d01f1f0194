//! Brightpearl API client (issue 3): auth, envelope, ID sets, search, budget pacing,
//! multi-message, typed calls, reference-data cache.

use serde::Deserialize;

/// `[brightpearl]` in the config file; environment overrides in `apply_env`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BrightpearlConfig {}

impl BrightpearlConfig {
    pub fn apply_env(&mut self, _env: &dyn Fn(&str) -> Option<String>) -> crate::Result<()> {
        Ok(())
    }
}
