//! Secrets in configuration. A value is written as `env:NAME` (read from the environment at
//! load, the way SAM passes resolved SSM/Secrets Manager values), or literally (local runs and
//! the sandbox only). The value never appears in `Debug` output or logs.

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    /// Where the value came from, for error messages: `env:NAME` or `literal`.
    source: String,
    value: String,
}

impl Secret {
    pub fn literal(value: impl Into<String>) -> Self {
        Secret { source: "literal".into(), value: value.into() }
    }

    /// Parses a reference and resolves it through `env`.
    pub fn resolve(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        match reference.strip_prefix("env:") {
            Some(name) => {
                let value = env(name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| Error::config(name, "secret variable is not set"))?;
                Ok(Secret { source: reference.to_string(), value })
            }
            None => Ok(Secret::literal(reference)),
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, redacted)", self.source)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let reference = String::deserialize(deserializer)?;
        Secret::resolve(&reference, &|name| std::env::var(name).ok()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_resolve_and_never_print() {
        let s = Secret::resolve("env:SHOP_SECRET", &|n| (n == "SHOP_SECRET").then(|| "hunter2".to_string())).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let missing = Secret::resolve("env:NOPE", &|_| None).unwrap_err();
        assert!(missing.to_string().contains("NOPE"));
        assert_eq!(Secret::resolve("plain", &|_| None).unwrap().expose(), "plain");
    }
}
