//! The OAuth token endpoint (apis.md §8.1): a refresh-token grant answers a new access token
//! AND a new refresh token (rotation); the refresh token presented is spent and refused after
//! use. Access tokens expire after `expires_in` seconds, or when the control API expires them.

use super::wire::parse_query;
use super::{BrightpearlSandbox, lock};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token state of the simulated installation.
#[derive(Default)]
pub(super) struct Tokens {
    /// The one refresh token that works now.
    pub refresh: Option<String>,
    /// Refresh tokens already used (refused with `invalid_grant`).
    pub spent: Vec<String>,
    /// Access token → when it stops working.
    pub access: Vec<(String, Instant)>,
    /// Access tokens that expired (answered "Authorization token expired").
    pub expired: Vec<String>,
    pub issued: u64,
}

/// Why a Bearer token was refused.
pub(super) enum TokenCheck {
    Valid,
    Expired,
    Invalid,
}

impl Tokens {
    pub fn check(&mut self, token: &str, now: Instant) -> TokenCheck {
        let (live, dead): (Vec<_>, Vec<_>) = self.access.drain(..).partition(|(_, until)| now < *until);
        self.access = live;
        self.expired.extend(dead.into_iter().map(|(t, _)| t));
        if self.access.iter().any(|(t, _)| t == token) {
            TokenCheck::Valid
        } else if self.expired.iter().any(|t| t == token) {
            TokenCheck::Expired
        } else {
            TokenCheck::Invalid
        }
    }

    pub fn expire_all(&mut self) {
        let tokens: Vec<String> = self.access.drain(..).map(|(t, _)| t).collect();
        self.expired.extend(tokens);
    }
}

fn token_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// `POST /__sandbox/brightpearl/oauth/token[/{account}]`, form-encoded:
/// `grant_type=refresh_token&refresh_token=…&client_id=…`. A `client_id` other than the app
/// ref is `400 {"error":"invalid_client"}`; an unknown or spent refresh token (or another
/// grant type) is `400 {"error":"invalid_grant"}`.
pub(super) async fn token_endpoint(AxState(sb): AxState<Arc<BrightpearlSandbox>>, body: Bytes) -> Response {
    let form = parse_query(&String::from_utf8_lossy(&body));
    if form.get("client_id") != Some(&sb.config.app_ref) {
        return token_error("invalid_client", "client_id is missing or unknown");
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return token_error("invalid_grant", "only the refresh_token grant is simulated");
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let expires_in = sb.config.oauth_expires_in.as_secs();
    let (access, refresh) = {
        let mut rt = lock(&sb.runtime);
        let tokens = &mut rt.tokens;
        if presented.is_empty() || tokens.refresh.as_deref() != Some(presented.as_str()) {
            return token_error("invalid_grant", "the refresh token is invalid or was already used");
        }
        tokens.issued += 1;
        let n = tokens.issued;
        let access = format!("sandbox-access-{n}-{:08x}", fastrand::u32(..));
        let refresh = format!("sandbox-refresh-{n}-{:08x}", fastrand::u32(..));
        tokens.spent.push(presented);
        tokens.refresh = Some(refresh.clone());
        tokens.access.push((access.clone(), Instant::now() + Duration::from_secs(expires_in)));
        (access, refresh)
    };
    Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "installation_instance_id": sb.config.installed_integration_instance_id.clone().unwrap_or_default(),
        "api_domain": sb.base_url.trim_start_matches("http://"),
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
    .into_response()
}
