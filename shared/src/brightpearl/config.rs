//! `[brightpearl]` settings. Every field has a default so a partial file works; environment
//! variables override the file (see [`BrightpearlConfig::apply_env`]).

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Private staff app: `brightpearl-app-ref` + `brightpearl-staff-token`.
    #[default]
    Staff,
    /// Legacy private system app: `brightpearl-app-ref` + `brightpearl-account-token`.
    System,
    /// OAuth instance app: Bearer + `brightpearl-dev-ref` + `brightpearl-app-ref`.
    Oauth,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub kind: AuthKind,
    pub app_ref: String,
    pub staff_token: Secret,
    pub account_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub dev_ref: String,
    /// OAuth client secret (the developer secret), sent with the refresh grant when set.
    pub client_secret: Secret,
    /// OAuth token endpoint; default `https://oauth.brightpearlapp.com/token/{account}`.
    pub token_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrightpearlConfig {
    /// Explicit host root (`http://127.0.0.1:8080`, a moved account) or full prefix ending in
    /// `/public-api/{account}`. When unset the host comes from `datacentre`.
    pub base_url: Option<String>,
    /// `euw1`, `use1`… → `https://{datacentre}.brightpearlconnect.com`.
    pub datacentre: String,
    pub account: String,
    pub auth: AuthConfig,
    /// Stamped on every sales order and credit with its `externalRef` (the unique pair).
    /// Required for writes: without it Brightpearl does not deduplicate at all. It is the
    /// `Brightpearl-Installed-Integration-Instance-Id` header of any API answer; OAuth apps
    /// get it from the token answer (`installation_instance_id`) and may leave it unset.
    pub installed_integration_instance_id: Option<u64>,
    /// Ids per ID-set request (Brightpearl caps most at 200).
    pub id_set_chunk: usize,
    /// Requests per rolling window for the account's pool.
    pub rate_limit_requests: u32,
    pub rate_limit_window_ms: u64,
    /// Share of the window kept free for order writes (background work waits below it).
    pub background_reserve: f64,
    /// Per request, cut to what the invocation's deadline leaves. Brightpearl answers in well
    /// under a second normally; a long timeout only makes the queue behind a stuck call wait.
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// After a create whose answer held no id (or was lost), the externalRef search is
    /// repeated this many times, `search_lag_wait_ms` apart, to cover search-index lag.
    pub search_lag_retries: u32,
    pub search_lag_wait_ms: u64,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// How long warehouses, the SKU map and order statuses are trusted.
    pub cache_ttl_secs: u64,
}

impl Default for BrightpearlConfig {
    fn default() -> Self {
        BrightpearlConfig {
            base_url: None,
            datacentre: "euw1".into(),
            account: String::new(),
            auth: AuthConfig::default(),
            installed_integration_instance_id: None,
            id_set_chunk: 200,
            rate_limit_requests: 200,
            rate_limit_window_ms: 60_000,
            background_reserve: 0.2,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            search_lag_retries: 3,
            search_lag_wait_ms: 500,
            max_attempts: 8,
            backoff_base_ms: 100,
            backoff_cap_ms: 10_000,
            cache_ttl_secs: 600,
        }
    }
}

fn parse_num<T: std::str::FromStr>(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<T>> {
    match env(name) {
        None => Ok(None),
        Some(v) => {
            v.trim().parse().map(Some).map_err(|_| Error::config(name, format!("not a number: {v:?}")))
        }
    }
}

impl BrightpearlConfig {
    /// `BRIGHTPEARL_*` variables override the file. Tokens may be `env:NAME` references.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = env("BRIGHTPEARL_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = env("BRIGHTPEARL_DATACENTRE") {
            self.datacentre = v;
        }
        if let Some(v) = env("BRIGHTPEARL_ACCOUNT") {
            self.account = v;
        }
        if let Some(v) = env("BRIGHTPEARL_AUTH") {
            self.auth.kind = match v.to_ascii_lowercase().as_str() {
                "staff" => AuthKind::Staff,
                "system" => AuthKind::System,
                "oauth" => AuthKind::Oauth,
                other => {
                    return Err(Error::config(
                        "BRIGHTPEARL_AUTH",
                        format!("expected staff, system or oauth, got {other:?}"),
                    ));
                }
            };
        }
        if let Some(v) = env("BRIGHTPEARL_APP_REF") {
            self.auth.app_ref = v;
        }
        if let Some(v) = env("BRIGHTPEARL_DEV_REF") {
            self.auth.dev_ref = v;
        }
        if let Some(v) = env("BRIGHTPEARL_TOKEN_URL") {
            self.auth.token_url = Some(v);
        }
        for (name, slot) in [
            ("BRIGHTPEARL_STAFF_TOKEN", &mut self.auth.staff_token),
            ("BRIGHTPEARL_ACCOUNT_TOKEN", &mut self.auth.account_token),
            ("BRIGHTPEARL_ACCESS_TOKEN", &mut self.auth.access_token),
            ("BRIGHTPEARL_REFRESH_TOKEN", &mut self.auth.refresh_token),
            ("BRIGHTPEARL_CLIENT_SECRET", &mut self.auth.client_secret),
        ] {
            if let Some(v) = env(name) {
                *slot = Secret::resolve(&v, env)?;
            }
        }
        if let Some(v) = parse_num(env, "BRIGHTPEARL_INSTALLED_INTEGRATION_INSTANCE_ID")? {
            self.installed_integration_instance_id = Some(v);
        }
        if let Some(v) = parse_num(env, "BRIGHTPEARL_ID_SET_CHUNK")? {
            self.id_set_chunk = v;
        }
        if let Some(v) = parse_num(env, "BRIGHTPEARL_BACKGROUND_RESERVE")? {
            self.background_reserve = v;
        }
        if let Some(v) = env("BRIGHTPEARL_RATE_LIMIT") {
            let (requests, window) = parse_rate_limit(&v).ok_or_else(|| {
                Error::config("BRIGHTPEARL_RATE_LIMIT", format!("expected REQUESTS/SECONDS, got {v:?}"))
            })?;
            self.rate_limit_requests = requests;
            self.rate_limit_window_ms = window.as_millis() as u64;
        }
        Ok(())
    }

    /// The URI prefix every path is appended to: `{host}/public-api/{account}`.
    pub fn prefix(&self) -> Result<String> {
        if self.account.trim().is_empty() && !self.base_url.as_deref().unwrap_or("").contains("/public-api/")
        {
            return Err(Error::config("BRIGHTPEARL_ACCOUNT", "the Brightpearl account code is not set"));
        }
        let host = match &self.base_url {
            Some(url) if url.contains("/public-api/") => return Ok(url.trim_end_matches('/').to_string()),
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                if self.datacentre.trim().is_empty() {
                    return Err(Error::config(
                        "BRIGHTPEARL_DATACENTRE",
                        "set a datacentre or BRIGHTPEARL_BASE_URL",
                    ));
                }
                format!("https://{}.brightpearlconnect.com", self.datacentre.trim())
            }
        };
        Ok(format!("{host}/public-api/{}", self.account.trim()))
    }

    pub fn validate(&self) -> Result<()> {
        self.prefix()?;
        if self.id_set_chunk == 0 {
            return Err(Error::config("BRIGHTPEARL_ID_SET_CHUNK", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.background_reserve) {
            return Err(Error::config("BRIGHTPEARL_BACKGROUND_RESERVE", "must be in 0.0..1.0"));
        }
        let missing = |what: &str| Err(Error::config(what, "needed by the configured Brightpearl auth kind"));
        if self.auth.app_ref.is_empty() {
            return missing("BRIGHTPEARL_APP_REF");
        }
        match self.auth.kind {
            AuthKind::Staff if self.auth.staff_token.is_empty() => missing("BRIGHTPEARL_STAFF_TOKEN"),
            AuthKind::System if self.auth.account_token.is_empty() => missing("BRIGHTPEARL_ACCOUNT_TOKEN"),
            AuthKind::Oauth if self.auth.access_token.is_empty() && self.auth.refresh_token.is_empty() => {
                missing("BRIGHTPEARL_ACCESS_TOKEN")
            }
            AuthKind::Oauth if self.auth.dev_ref.is_empty() => missing("BRIGHTPEARL_DEV_REF"),
            _ => Ok(()),
        }
    }
}

/// `200/60` → (200, 60 s). Fractions of a second are allowed (`50/0.5`).
pub fn parse_rate_limit(s: &str) -> Option<(u32, std::time::Duration)> {
    let (r, w) = s.split_once('/')?;
    let requests: u32 = r.trim().parse().ok()?;
    let seconds: f64 = w.trim().parse().ok()?;
    (requests > 0 && seconds > 0.0 && seconds.is_finite())
        .then(|| (requests, std::time::Duration::from_secs_f64(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_from_datacentre_or_explicit_url() {
        let mut c = BrightpearlConfig { account: "acme".into(), ..Default::default() };
        assert_eq!(c.prefix().unwrap(), "https://euw1.brightpearlconnect.com/public-api/acme");
        c.base_url = Some("http://127.0.0.1:9/".into());
        assert_eq!(c.prefix().unwrap(), "http://127.0.0.1:9/public-api/acme");
        c.base_url = Some("https://use1.brightpearlconnect.com/public-api/moved".into());
        assert_eq!(c.prefix().unwrap(), "https://use1.brightpearlconnect.com/public-api/moved");
        assert!(BrightpearlConfig::default().prefix().is_err());
    }

    #[test]
    fn env_overrides_and_secret_references() {
        let vars = [
            ("BRIGHTPEARL_ACCOUNT", "acme"),
            ("BRIGHTPEARL_APP_REF", "acme_sync"),
            ("BRIGHTPEARL_STAFF_TOKEN", "env:BP_TOKEN"),
            ("BP_TOKEN", "s3cret"),
            ("BRIGHTPEARL_ID_SET_CHUNK", "100"),
            ("BRIGHTPEARL_RATE_LIMIT", "50/1"),
        ];
        let env = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let mut c = BrightpearlConfig::default();
        c.apply_env(&env).unwrap();
        assert_eq!(c.auth.staff_token.expose(), "s3cret");
        assert_eq!(c.id_set_chunk, 100);
        assert_eq!((c.rate_limit_requests, c.rate_limit_window_ms), (50, 1000));
        c.validate().unwrap();
        let bad = |n: &str| (n == "BRIGHTPEARL_ID_SET_CHUNK").then(|| "lots".to_string());
        assert!(
            BrightpearlConfig::default()
                .apply_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("BRIGHTPEARL_ID_SET_CHUNK")
        );
    }

    #[test]
    fn rate_limit_flag_parses() {
        assert_eq!(parse_rate_limit("200/60"), Some((200, std::time::Duration::from_secs(60))));
        assert_eq!(parse_rate_limit("50/0.5"), Some((50, std::time::Duration::from_millis(500))));
        assert_eq!(parse_rate_limit("0/1"), None);
        assert_eq!(parse_rate_limit("x"), None);
    }

    #[test]
    fn toml_with_defaults() {
        let c: BrightpearlConfig = toml::from_str(
            "account = \"acme\"\n[auth]\nkind = \"system\"\napp_ref = \"a\"\naccount_token = \"t\"\n",
        )
        .unwrap();
        assert_eq!(c.auth.kind, AuthKind::System);
        assert_eq!(c.id_set_chunk, 200);
        c.validate().unwrap();
    }
}
