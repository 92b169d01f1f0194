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

fn quoted(text: &str) -> String {
    // A JSON string is a valid TOML basic string for everything we write here.
    serde_json::Value::String(text.to_string()).to_string()
}

/// The configuration as a TOML file, for child processes (`serve` under the crash benchmark,
/// the CLI tests) that must reach the same sandbox. Secrets are written literally: they are the
/// sandbox's sample values.
pub fn config_toml(config: &Config, state_path: &std::path::Path) -> String {
    use std::fmt::Write;
    let bp = &config.brightpearl;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[state]\nbackend = \"embedded\"\npath = {}\n",
        quoted(&state_path.display().to_string())
    );
    let _ = writeln!(out, "[queue]\nbackend = \"local\"\n");
    let _ = writeln!(out, "[brightpearl]");
    if let Some(url) = &bp.base_url {
        let _ = writeln!(out, "base_url = {}", quoted(url));
    }
    let _ = writeln!(out, "account = {}", quoted(&bp.account));
    if let Some(id) = bp.installed_integration_instance_id {
        let _ = writeln!(out, "installed_integration_instance_id = {id}");
    }
    let _ = writeln!(out, "rate_limit_requests = {}", bp.rate_limit_requests);
    let _ = writeln!(out, "rate_limit_window_ms = {}", bp.rate_limit_window_ms);
    let _ = writeln!(out, "[brightpearl.auth]");
    let _ = writeln!(out, "app_ref = {}", quoted(&bp.auth.app_ref));
    let _ = writeln!(out, "staff_token = {}\n", quoted(bp.auth.staff_token.expose()));
    if let Some(secret) = &config.ingress.brightpearl_webhook_secret {
        let _ = writeln!(out, "[ingress]\nbrightpearl_webhook_secret = {}\n", quoted(secret.expose()));
    }
    for store in &config.stores {
        let _ = writeln!(out, "[[stores]]");
        let _ = writeln!(out, "name = {}", quoted(&store.name));
        let _ = writeln!(out, "kind = {}", quoted(store.kind.as_str()));
        let _ = writeln!(out, "base_url = {}", quoted(&store.base_url));
        let _ = writeln!(out, "access_token = {}", quoted(store.access_token.expose()));
        let _ = writeln!(out, "webhook_secret = {}", quoted(store.webhook_secret.expose()));
        let _ = writeln!(out, "store_hash = {}", quoted(&store.store_hash));
        let _ = writeln!(out, "consumer_key = {}", quoted(store.consumer_key.expose()));
        let _ = writeln!(out, "consumer_secret = {}", quoted(store.consumer_secret.expose()));
        if let Some(location) = &store.location_id {
            let _ = writeln!(out, "location_id = {}", quoted(location));
        }
        let warehouses: Vec<String> = store.warehouses.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "warehouses = [{}]", warehouses.join(", "));
        if let Some(id) = store.brightpearl_channel_id {
            let _ = writeln!(out, "brightpearl_channel_id = {id}");
        }
        if let Some(id) = store.reservation_warehouse_id {
            let _ = writeln!(out, "reservation_warehouse_id = {id}");
        }
        if let Some(code) = &store.tax_code {
            let _ = writeln!(out, "tax_code = {}", quoted(code));
        }
        let _ = writeln!(out, "[stores.buffer]");
        let _ = writeln!(out, "safety_stock = {}", store.buffer.safety_stock);
        let _ = writeln!(out, "percent = {:?}", store.buffer.percent);
        if let Some(cap) = store.buffer.cap {
            let _ = writeln!(out, "cap = {cap}");
        }
        let _ = writeln!(out);
    }
    out
}

/// The `pearlsync` binary: `PEARLSYNC_BIN` when set, else the one beside the running
/// executable (tests and benchmarks live in the same target directory), built with cargo when
/// it is not there yet.
pub fn pearlsync_binary() -> std::io::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("PEARLSYNC_BIN") {
        return Ok(std::path::PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let name = format!("pearlsync{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join(&name));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let profile_dir = exe.parent().and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) });
    let release = profile_dir.is_some_and(|d| d.ends_with("release"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "-p", "pearlsync-cli", "--bin", "pearlsync"]);
    if release {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() {
        return Err(std::io::Error::other("cargo build of the pearlsync binary failed"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        std::io::Error::other("the pearlsync binary is not beside this executable after the build")
    })
}

/// Adds a product with `sku` and `on_hand` units in warehouse 1 to the sandbox's Brightpearl
/// (what a merchant does to fix an `unknown_sku`), and lists it on every store.
pub fn add_product(local: &LocalSandbox, sku: &str, on_hand: i64) -> u64 {
    use pearlsync_sandbox::brightpearl::state::StockRec;
    let id = local.sandbox.brightpearl.with_state_mut(|state| {
        let id = state.next("product");
        let now = chrono::Utc::now();
        // A copy of a seeded product with a new id and SKU, so every field the sandbox keeps
        // has a value it accepts.
        if let Some(mut product) = state.products.values().next().cloned() {
            product.id = id;
            product.sku = sku.to_string();
            product.name = format!("Product {sku}");
            product.created_on = now;
            product.updated_on = now;
            state.products.insert(id, product);
        }
        state.stock.entry(id).or_default().insert(1, StockRec { on_hand, allocated: 0 });
        id
    });
    for channel in [
        pearlsync_sandbox::channels::Channel::Shopify,
        pearlsync_sandbox::channels::Channel::Bigcommerce,
        pearlsync_sandbox::channels::Channel::Woocommerce,
    ] {
        local.sandbox.channels.seed_products(channel, &[(sku.to_string(), 0)]);
    }
    id
}
