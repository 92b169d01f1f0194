//! Configuration: one TOML file (optional, `PEARLSYNC_CONFIG`) plus environment overrides,
//! with defaults that run on one machine. Errors name the variable or key at fault.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub brightpearl: crate::brightpearl::BrightpearlConfig,
    #[serde(default)]
    pub stores: Vec<crate::channels::StoreConfig>,
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub reorder: crate::reorder::ReorderConfig,
    #[serde(default)]
    pub orders: crate::orders::OrdersConfig,
    #[serde(default)]
    pub inventory: crate::inventory::InventoryConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// The secret path segment of Brightpearl webhook URLs (`/webhooks/brightpearl/{secret}`);
    /// absent turns the Brightpearl route off.
    #[serde(default)]
    pub brightpearl_webhook_secret: Option<crate::secret::Secret>,
    /// Largest accepted body in bytes (default 1 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Embedded,
    Dynamodb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackend,
    /// DynamoDB table name.
    #[serde(default = "default_table")]
    pub table: String,
    /// Embedded store file.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { backend: StateBackend::default(), table: default_table(), path: default_state_path() }
    }
}

fn default_table() -> String {
    "pearlsync".into()
}

fn default_state_path() -> PathBuf {
    PathBuf::from(".pearlsync/state.redb")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    #[default]
    Local,
    Sqs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default)]
    pub backend: QueueBackend,
    #[serde(default)]
    pub orders_url: String,
    #[serde(default)]
    pub stock_url: String,
    #[serde(default)]
    pub purchasing_url: String,
}

/// Reads one variable through `env`, parsing it; the error names the variable.
pub fn parse_var<T: std::str::FromStr>(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => {
            raw.trim().parse::<T>().map(Some).map_err(|e| Error::config(name, format!("{raw:?}: {e}")))
        }
    }
}

fn parse_backend<T>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    options: &[(&str, T)],
) -> Result<Option<T>>
where
    T: Copy,
{
    match env(name) {
        None => Ok(None),
        Some(raw) => options
            .iter()
            .find(|(label, _)| label.eq_ignore_ascii_case(raw.trim()))
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                let expected: Vec<&str> = options.iter().map(|(l, _)| *l).collect();
                Error::config(name, format!("{raw:?} is not one of {}", expected.join(", ")))
            }),
    }
}

impl Config {
    /// The file named by `PEARLSYNC_CONFIG` (if any), then the environment on top.
    pub fn load() -> Result<Config> {
        Self::load_with(&|name| std::env::var(name).ok())
    }

    pub fn load_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config = match env("PEARLSYNC_CONFIG") {
            Some(path) if !path.trim().is_empty() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::config("PEARLSYNC_CONFIG", format!("cannot read {path}: {e}")))?;
                Self::from_toml(&text).map_err(|e| match e {
                    Error::Config { variable, reason } => {
                        Error::config(format!("{path}: {variable}"), reason)
                    }
                    other => other,
                })?
            }
            _ => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// On Lambda: the TOML document in the SSM SecureString parameter named by
    /// `PEARLSYNC_CONFIG_SSM`, read through the AWS Parameters and Secrets Lambda Extension
    /// (so secrets never sit in the template or environment), then the environment on top.
    /// Without that variable, the same as `load`.
    pub async fn load_for_lambda() -> Result<Config> {
        let env = |name: &str| std::env::var(name).ok();
        let Some(parameter) = env("PEARLSYNC_CONFIG_SSM").filter(|p| !p.trim().is_empty()) else {
            return Self::load();
        };
        let text = fetch_ssm_parameter(&parameter).await?;
        let mut config = Self::from_toml(&text)
            .map_err(|e| Error::config("PEARLSYNC_CONFIG_SSM", format!("parameter {parameter}: {e}")))?;
        config.apply_env(&env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::config("config file", e.message().to_string()))
    }

    /// Environment variables override the file, one variable per setting.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(b) = parse_backend(
            env,
            "PEARLSYNC_STATE_BACKEND",
            &[("embedded", StateBackend::Embedded), ("dynamodb", StateBackend::Dynamodb)],
        )? {
            self.state.backend = b;
        }
        if let Some(t) = env("PEARLSYNC_TABLE").or_else(|| env("TABLE_NAME")) {
            self.state.table = t;
        }
        if let Some(p) = env("PEARLSYNC_STATE_PATH") {
            self.state.path = PathBuf::from(p);
        }
        if let Some(b) = parse_backend(
            env,
            "PEARLSYNC_QUEUE_BACKEND",
            &[("local", QueueBackend::Local), ("sqs", QueueBackend::Sqs)],
        )? {
            self.queue.backend = b;
        }
        if let Some(u) = env("ORDERS_QUEUE_URL") {
            self.queue.orders_url = u;
        }
        if let Some(u) = env("STOCK_QUEUE_URL") {
            self.queue.stock_url = u;
        }
        if let Some(u) = env("PURCHASING_QUEUE_URL") {
            self.queue.purchasing_url = u;
        }
        self.brightpearl.apply_env(env)?;
        self.reorder.apply_env(env)?;
        if let Some(reference) = env("BRIGHTPEARL_WEBHOOK_SECRET") {
            self.ingress.brightpearl_webhook_secret = Some(crate::secret::Secret::resolve(&reference, env)?);
        }
        if let Some(bytes) = parse_var::<usize>(env, "PEARLSYNC_MAX_BODY_BYTES")? {
            self.ingress.max_body_bytes = Some(bytes);
        }
        self.orders.apply_env(env)?;
        if let Some(reconcile) = parse_var::<bool>(env, "PEARLSYNC_INVENTORY_RECONCILE")? {
            self.inventory.reconcile = reconcile;
        }
        if let Some(minutes) = parse_var::<u64>(env, "PEARLSYNC_INVENTORY_SWEEP_EVERY_MINUTES")? {
            self.inventory.sweep_every_minutes = minutes;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        if self.state.backend == StateBackend::Dynamodb && self.state.table.trim().is_empty() {
            return Err(Error::config("PEARLSYNC_TABLE", "the DynamoDB backend needs a table name"));
        }
        if self.queue.backend == QueueBackend::Sqs {
            for (name, url) in [
                ("ORDERS_QUEUE_URL", &self.queue.orders_url),
                ("STOCK_QUEUE_URL", &self.queue.stock_url),
                ("PURCHASING_QUEUE_URL", &self.queue.purchasing_url),
            ] {
                if url.trim().is_empty() {
                    return Err(Error::config(name, "the SQS backend needs this queue URL"));
                }
            }
            if !self.queue.orders_url.ends_with(".fifo") {
                return Err(Error::config("ORDERS_QUEUE_URL", "the orders queue must be FIFO (.fifo)"));
            }
        }
        Ok(())
    }
}

/// Port of the AWS Parameters and Secrets Lambda Extension (its documented default).
const EXTENSION_PORT_DEFAULT: u16 = 2773;

async fn fetch_ssm_parameter(name: &str) -> Result<String> {
    let variable = "PEARLSYNC_CONFIG_SSM";
    let port = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(EXTENSION_PORT_DEFAULT);
    let token = std::env::var("AWS_SESSION_TOKEN")
        .map_err(|_| Error::config("AWS_SESSION_TOKEN", "needed to call the parameters extension"))?;
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url =
        format!("http://localhost:{port}/systemsmanager/parameters/get?name={encoded}&withDecryption=true");
    let client = crate::tls::http_client_builder().build().unwrap_or_default();
    let mut last = String::new();
    // The extension starts beside the function; give it a moment on a cold start.
    for attempt in 0..5u64 {
        match client.get(&url).header("X-Aws-Parameters-Secrets-Token", &token).send().await {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| Error::config(variable, format!("extension answer: {e}")))?;
                return body["Parameter"]["Value"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::config(variable, format!("parameter {name} has no value")));
            }
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100 * (attempt + 1))).await;
    }
    Err(Error::config(variable, format!("cannot read parameter {name} through the extension: {last}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_run_on_one_machine() {
        let config = Config::load_with(&env_of(&[])).unwrap();
        assert_eq!(config.state.backend, StateBackend::Embedded);
        assert_eq!(config.queue.backend, QueueBackend::Local);
    }

    #[test]
    fn a_malformed_variable_is_named() {
        let err = Config::load_with(&env_of(&[("PEARLSYNC_STATE_BACKEND", "postgres")])).unwrap_err();
        assert!(err.to_string().contains("PEARLSYNC_STATE_BACKEND"), "{err}");
        let err = Config::load_with(&env_of(&[
            ("PEARLSYNC_QUEUE_BACKEND", "sqs"),
            ("ORDERS_QUEUE_URL", "http://127.0.0.1/q/orders.fifo"),
            ("STOCK_QUEUE_URL", "http://127.0.0.1/q/stock"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PURCHASING_QUEUE_URL"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config =
            Config::from_toml("[state]\nbackend = \"dynamodb\"\ntable = \"from-file\"\n").unwrap();
        config.apply_env(&env_of(&[("PEARLSYNC_TABLE", "from-env")])).unwrap();
        assert_eq!(config.state.backend, StateBackend::Dynamodb);
        assert_eq!(config.state.table, "from-env");
        assert!(Config::from_toml("[state]\nbogus = 1\n").is_err());
    }
}
