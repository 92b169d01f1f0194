//! Sales channels (issue 4): the `SalesChannel` trait and one module per channel.

use serde::Deserialize;

/// One `[[stores]]` entry in the config file: a channel store with its own credentials,
/// warehouse set and buffer rules.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoreConfig {}
