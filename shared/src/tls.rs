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
            match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
            {
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

/// The AWS SDK's HTTP client (rustls on AWS-LC, as its default) trusting the roots AWS service
/// endpoints chain to, compiled in. Its default reads the system store every time a client is
/// built: on Debian the bundle and then every file of /etc/ssl/certs, hundreds of opens at init
/// (strace, issue 18). The SDK takes roots only as PEM and parses them for each client and
/// connector it builds, so it gets the five roots Amazon Trust Services lists for custom trust
/// stores (Amazon Root CA 1–4, Starfield Services Root CA G2; amazontrust.com/repository, and
/// the AWS security blog on the move of DynamoDB and the other endpoints to ATS), not all 140.
/// An `AWS_ENDPOINT_URL` over https to anything else would be refused; the emulator is http.
pub fn aws_http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let mut store = TrustStore::empty().with_native_roots(false);
    for der in aws_roots() {
        store.add_pem_certificate(pem(der));
    }
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(store).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(e) => {
            tracing::warn!(error = %e, "bundled roots refused; the SDK reads the system store");
            builder.build_https()
        }
    }
}

/// The names (as they appear in the certificates' subjects) of the roots AWS endpoints use.
const AWS_ROOT_NAMES: [&[u8]; 5] = [
    b"Amazon Root CA 1",
    b"Amazon Root CA 2",
    b"Amazon Root CA 3",
    b"Amazon Root CA 4",
    b"Starfield Services Root Certificate Authority - G2",
];

/// The AWS roots among the compiled-in ones (all of them, should the list ever lack those).
fn aws_roots() -> Vec<&'static [u8]> {
    let all = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    let contains = |der: &[u8], name: &[u8]| der.windows(name.len()).any(|w| w == name);
    let aws: Vec<&'static [u8]> = all
        .iter()
        .map(|c| c.as_ref())
        .filter(|der| AWS_ROOT_NAMES.iter().any(|name| contains(der, name)))
        .collect();
    if aws.len() == AWS_ROOT_NAMES.len() { aws } else { all.iter().map(|c| c.as_ref()).collect() }
}

/// One certificate as PEM (base64 in 64-character lines).
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
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

    #[test]
    fn bundled_roots_round_trip_through_pem() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let first = &webpki_root_certs::TLS_SERVER_ROOT_CERTS[0];
        let parsed: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem(first.as_ref()))
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref(), first.as_ref());
        let _client = aws_http_client();
    }

    #[test]
    fn the_sdk_trusts_the_five_amazon_trust_services_roots() {
        let roots = aws_roots();
        assert_eq!(roots.len(), 5, "Amazon Root CA 1-4 and Starfield Services Root CA G2");
        for name in AWS_ROOT_NAMES {
            assert!(roots.iter().any(|der| der.windows(name.len()).any(|w| w == name)), "{name:?}");
        }
    }
}
