//! Webhook signature checks, in constant time.

use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// base64(HMAC-SHA256(body, secret)), as Shopify and WooCommerce sign deliveries.
pub fn hmac_sha256_base64(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature_b64` is the base64 HMAC-SHA256 of `body` under one of `secrets`.
/// The MAC comparison is constant time (`verify_slice`).
pub fn verify_hmac_sha256_base64(secrets: &[&Secret], body: &[u8], signature_b64: &str) -> bool {
    let Ok(expected) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    secrets.iter().any(|secret| {
        HmacSha256::new_from_slice(secret.expose().as_bytes())
            .map(|mut mac| {
                mac.update(body);
                mac.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false)
    })
}

/// Constant-time equality of a presented shared secret with the accepted ones.
pub fn verify_shared_secret(secrets: &[&Secret], presented: &str) -> bool {
    // Fold over every secret without short-circuiting, so timing does not reveal which matched.
    secrets.iter().fold(false, |found, secret| {
        let same: bool = secret.expose().as_bytes().ct_eq(presented.as_bytes()).into();
        found | same
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_round_trip_and_rejections() {
        let secret = Secret::literal("topsecret");
        let other = Secret::literal("other");
        let body = br#"{"id":1}"#;
        let sig = hmac_sha256_base64(b"topsecret", body);
        assert!(verify_hmac_sha256_base64(&[&secret], body, &sig));
        assert!(verify_hmac_sha256_base64(&[&other, &secret], body, &sig));
        assert!(!verify_hmac_sha256_base64(&[&other], body, &sig));
        assert!(!verify_hmac_sha256_base64(&[&secret], br#"{"id":2}"#, &sig));
        assert!(!verify_hmac_sha256_base64(&[&secret], body, "not base64!"));
        assert!(!verify_hmac_sha256_base64(&[], body, &sig));
    }

    #[test]
    fn shared_secret_compare() {
        let secret = Secret::literal("abc");
        assert!(verify_shared_secret(&[&secret], "abc"));
        assert!(!verify_shared_secret(&[&secret], "abd"));
        assert!(!verify_shared_secret(&[&secret], ""));
    }
}
