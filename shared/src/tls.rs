//! The one TLS setup every HTTPS client of a process shares (Brightpearl, the shops, the
//! parameters extension): rustls on AWS-LC, as reqwest's `rustls` feature would build it, but
//! trusting Mozilla's root list compiled into the binary (webpki-roots) rather than the
//! platform verifier, which reads and parses the system certificate store each time a client
//! is built. On a cold start that read was most of init (issue 18); the compiled-in anchors
//! are copied, not parsed. Built once, on first use.

use std::sync::{Arc, OnceLock};

/// The shared client configuration (TLS 1.2 and 1.3, no client certificate). None only if the
/// provider refused its own default versions, which it never does; then clients fall back to
/// reqwest's own setup.
pub fn client_config() -> Option<rustls::ClientConfig> {
    static CONFIG: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
                Ok(builder) => Some(builder.with_root_certificates(roots).with_no_client_auth()),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS setup refused; using reqwest's own");
                    None
                }
            }
        })
        .clone()
}

/// A reqwest builder over the shared TLS setup; callers add their timeouts.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    match client_config() {
        Some(config) => reqwest::Client::builder().tls_backend_preconfigured(config),
        None => reqwest::Client::builder(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_setup_trusts_the_compiled_in_roots_and_builds_clients() {
        let config = client_config().expect("the default provider takes its default versions");
        // Mozilla's list holds well over a hundred roots; an empty store would refuse every site.
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        assert!(config.alpn_protocols.is_empty(), "HTTP/1.1 only, as reqwest without http2");
        assert!(http_client_builder().build().is_ok());
    }
}
