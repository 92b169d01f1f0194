//! The AWS SDK configuration and clients, made on first use rather than at init (issue 18):
//! loading the configuration resolves the region and the credential chain, and building a
//! client sets up its TLS context and runtime plugins, work a cold start need not do before
//! its first event. One configuration load serves every client of the process. Loading never
//! fails (a missing region or credentials surface on the first call, as a typed SDK error).

use aws_config::SdkConfig;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The process's one SDK configuration (with the bundled-roots HTTP client of `tls`), loaded by
/// the first client that needs it; clones share the load.
#[derive(Clone, Default)]
pub struct SharedSdkConfig {
    loaded: Arc<OnceCell<SdkConfig>>,
}

impl SharedSdkConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn get(&self) -> &SdkConfig {
        self.loaded
            .get_or_init(|| async {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(crate::tls::aws_http_client())
                    .load()
                    .await
            })
            .await
    }

    /// Whether some client has loaded it yet (tests check init loads nothing).
    pub fn is_loaded(&self) -> bool {
        self.loaded.initialized()
    }
}

/// An SDK client type built from an `SdkConfig`.
pub trait SdkClient: Send + Sync {
    fn from_sdk_config(config: &SdkConfig) -> Self;
}

impl SdkClient for aws_sdk_dynamodb::Client {
    fn from_sdk_config(config: &SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_sqs::Client {
    fn from_sdk_config(config: &SdkConfig) -> Self {
        Self::new(config)
    }
}

/// A client built from the shared configuration by its first call, or given ready-made (tests
/// pass clients for the emulator). Clones share the one client.
#[derive(Clone)]
pub struct LazyClient<C> {
    client: Arc<OnceCell<C>>,
    sdk: SharedSdkConfig,
}

impl<C: SdkClient> LazyClient<C> {
    pub fn ready(client: C) -> Self {
        LazyClient { client: Arc::new(OnceCell::new_with(Some(client))), sdk: SharedSdkConfig::new() }
    }

    pub fn on_first_use(sdk: SharedSdkConfig) -> Self {
        LazyClient { client: Arc::new(OnceCell::new()), sdk }
    }

    pub async fn get(&self) -> &C {
        self.client.get_or_init(|| async { C::from_sdk_config(self.sdk.get().await) }).await
    }

    pub fn is_built(&self) -> bool {
        self.client.initialized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_share_one_configuration_load_made_by_the_first_call() {
        let sdk = SharedSdkConfig::new();
        let dynamo: LazyClient<aws_sdk_dynamodb::Client> = LazyClient::on_first_use(sdk.clone());
        let sqs: LazyClient<aws_sdk_sqs::Client> = LazyClient::on_first_use(sdk.clone());
        assert!(!sdk.is_loaded() && !dynamo.is_built() && !sqs.is_built(), "nothing before a call");
        let region = dynamo.get().await.config().region().cloned();
        assert!(sdk.is_loaded() && dynamo.is_built());
        assert!(!sqs.is_built(), "the queue client waits for its own first call");
        let sqs_region = sqs.get().await.config().region().cloned();
        assert_eq!(region, sqs_region, "one configuration for both");
        let first: *const SdkConfig = sdk.get().await;
        let again: *const SdkConfig = sdk.clone().get().await;
        assert_eq!(first, again, "loaded once, shared by clones");
    }
}
