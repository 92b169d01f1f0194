//! The local environment of `demo` and `invoke`: the sandbox started in-process, and a
//! configuration that points Brightpearl and three channel stores at it, with the sample
//! secrets that `events/README.md` names (test values, not credentials).

use pearlsync::brightpearl::{AuthConfig, BrightpearlConfig};
use pearlsync::channels::{BufferRules, StoreConfig};
use pearlsync::config::{Config, IngressConfig};
use pearlsync::queue::ChannelKind;
use pearlsync::secret::Secret;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::channels::ChannelSandboxConfig;
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use std::time::Duration;

pub const SAMPLE_SHOPIFY_SECRET: &str = "sample-shopify-client-secret";
pub const SAMPLE_WOO_SECRET: &str = "sample-woo-webhook-secret";
pub const SAMPLE_BIGCOMMERCE_SECRET: &str = "sample-bigcommerce-header-secret";
pub const SAMPLE_BRIGHTPEARL_SECRET: &str = "sample-brightpearl-url-secret";

pub struct LocalSandbox {
    pub sandbox: Sandbox,
    pub config: Config,
}

pub struct LocalOptions {
    pub products: u32,
    pub warehouses: u32,
    pub suppliers: u32,
    /// Brightpearl's rolling window in the sandbox (requests, window).
    pub rate_limit: (u32, Duration),
}

/// Starts the sandbox, seeds Brightpearl, lists every SKU on the three stores, and returns a
/// configuration pointing at it.
pub async fn start(options: &LocalOptions) -> std::io::Result<LocalSandbox> {
    let bp = BrightpearlSandboxConfig {
        rate_limit: options.rate_limit.0,
        rate_window: options.rate_limit.1,
        seed: Some(SeedSpec {
            products: options.products,
            warehouses: options.warehouses,
            suppliers: options.suppliers,
            seed: 1,
        }),
        ..BrightpearlSandboxConfig::default()
    };
    let channels = ChannelSandboxConfig {
        shopify_client_secret: SAMPLE_SHOPIFY_SECRET.into(),
        ..ChannelSandboxConfig::default()
    };
    let sandbox = pearlsync_sandbox::start(SandboxConfig {
        brightpearl: bp.clone(),
        channels,
        ..SandboxConfig::default()
    })
    .await?;
    let skus: Vec<(String, i64)> = (1..=options.products).map(|n| (format!("SKU-{n:05}"), 0)).collect();
    for channel in [
        pearlsync_sandbox::channels::Channel::Shopify,
        pearlsync_sandbox::channels::Channel::Bigcommerce,
        pearlsync_sandbox::channels::Channel::Woocommerce,
    ] {
        sandbox.channels.seed_products(channel, &skus);
    }
    let config = sandbox_config(&sandbox, &bp, options.rate_limit);
    Ok(LocalSandbox { sandbox, config })
}

/// Three stores with different warehouse sets and buffers, so the demo shows the rules at work.
pub fn sandbox_config(sandbox: &Sandbox, bp: &BrightpearlSandboxConfig, rate: (u32, Duration)) -> Config {
    let channel_config = sandbox.channels.config();
    let base = StoreConfig {
        base_url: sandbox.base_url.clone(),
        access_token: Secret::literal("sandbox-token"),
        store_hash: channel_config.bigcommerce_store_hash.clone(),
        consumer_key: Secret::literal("ck_sandbox"),
        consumer_secret: Secret::literal("cs_sandbox"),
        location_id: Some(channel_config.shopify_location_id.to_string()),
        reservation_warehouse_id: Some(1),
        // Brightpearl refuses a row without a tax code; T20 is a UK account's standard rate.
        tax_code: Some("T20".into()),
        ..StoreConfig::default()
    };
    let stores = vec![
        StoreConfig {
            name: "demo-shopify".into(),
            kind: ChannelKind::Shopify,
            webhook_secret: Secret::literal(SAMPLE_SHOPIFY_SECRET),
            brightpearl_channel_id: Some(1),
            ..base.clone()
        },
        StoreConfig {
            name: "demo-bigcommerce".into(),
            kind: ChannelKind::Bigcommerce,
            webhook_secret: Secret::literal(SAMPLE_BIGCOMMERCE_SECRET),
            location_id: Some(channel_config.bigcommerce_location_id.to_string()),
            warehouses: vec![1],
            buffer: BufferRules { safety_stock: 2, ..BufferRules::default() },
            brightpearl_channel_id: Some(2),
            ..base.clone()
        },
        StoreConfig {
            name: "demo-woocommerce".into(),
            kind: ChannelKind::Woocommerce,
            webhook_secret: Secret::literal(SAMPLE_WOO_SECRET),
            buffer: BufferRules { percent: 10.0, cap: Some(500), ..BufferRules::default() },
            brightpearl_channel_id: Some(3),
            ..base
        },
    ];
    let brightpearl = BrightpearlConfig {
        base_url: Some(sandbox.base_url.clone()),
        account: bp.account.clone(),
        auth: AuthConfig {
            app_ref: bp.app_ref.clone(),
            staff_token: Secret::literal(bp.staff_token.clone()),
            ..AuthConfig::default()
        },
        // The instance the sandbox answers for: a different one stops writes.
        installed_integration_instance_id: bp
            .installed_integration_instance_id
            .as_deref()
            .and_then(|i| i.parse().ok()),
        rate_limit_requests: rate.0,
        rate_limit_window_ms: rate.1.as_millis() as u64,
        ..BrightpearlConfig::default()
    };
    Config {
        brightpearl,
        stores,
        ingress: IngressConfig {
            brightpearl_webhook_secret: Some(Secret::literal(SAMPLE_BRIGHTPEARL_SECRET)),
            ..IngressConfig::default()
        },
        ..Config::default()
    }
}
