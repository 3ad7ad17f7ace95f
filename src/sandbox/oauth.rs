//! The marketplace's OAuth2 token endpoint, as real ones behave: `POST
//! /marketplace/oauth/token`, form-encoded, client credentials by HTTP basic (or in the form),
//! `client_credentials` and `refresh_token` grants, tokens that expire after a configurable
//! lifetime and refresh tokens that rotate. When it is on, every `/marketplace/api/...` route
//! requires a valid bearer token and answers 401 otherwise; `GET /_sandbox/marketplace/oauth`
//! counts tokens issued, refreshed and calls rejected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use super::{SandboxState, lock};

/// How the token endpoint is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The client ID it accepts.
    pub client_id: String,
    /// The client secret it accepts.
    pub client_secret: String,
    /// How long an access token is valid.
    pub token_lifetime: Duration,
    /// Whether `/marketplace/api/...` routes refuse calls without a valid token (401). Off,
    /// the token endpoint still works, so a workspace that authenticates runs either way.
    pub required: bool,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            client_id: "sandbox-client".to_owned(),
            client_secret: "sandbox-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(3600),
            required: false,
        }
    }
}

/// What the token endpoint did, for `GET /_sandbox/marketplace/oauth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OAuthStats {
    /// Access tokens issued by the `client_credentials` grant.
    pub issued: u64,
    /// Access tokens issued by the `refresh_token` grant.
    pub refreshed: u64,
    /// Token requests refused (bad client, grant or refresh token).
    pub refused: u64,
    /// API calls answered 401 (no token, an unknown or expired one).
    pub rejected: u64,
}

/// The issuer's state.
#[derive(Debug)]
pub(super) struct Issuer {
    config: OAuthConfig,
    /// Access tokens and when they expire.
    tokens: HashMap<String, Instant>,
    /// Refresh tokens not used yet (each is single-use: it rotates).
    refresh_tokens: HashSet<String>,
    next: u64,
    stats: OAuthStats,
}

impl Issuer {
    pub(super) fn new(config: OAuthConfig) -> Self {
        Self {
            config,
            tokens: HashMap::new(),
            refresh_tokens: HashSet::new(),
            next: 0,
            stats: OAuthStats::default(),
        }
    }

    pub(super) fn stats(&self) -> OAuthStats {
        self.stats
    }

    pub(super) fn config(&self) -> &OAuthConfig {
        &self.config
    }

    fn issue(&mut self) -> serde_json::Value {
        self.next += 1;
        let access = format!("sbx-at-{}", self.next);
        let refresh = format!("sbx-rt-{}", self.next);
        self.tokens
            .insert(access.clone(), Instant::now() + self.config.token_lifetime);
        self.refresh_tokens.insert(refresh.clone());
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.config.token_lifetime.as_secs(),
            "refresh_token": refresh,
        })
    }

    fn valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }
}

/// An RFC 6749 error response.
fn refusal(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// `POST /marketplace/oauth/token`.
pub(super) async fn token(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(issuer) = &state.oauth else {
        return refusal(StatusCode::NOT_FOUND, "oauth_not_enabled");
    };
    let form: HashMap<String, String> = form_pairs(&body);
    let (id, secret) = basic_credentials(&headers).unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    let mut issuer = lock(issuer);
    if id != issuer.config.client_id || secret != issuer.config.client_secret {
        issuer.stats.refused += 1;
        return refusal(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            issuer.stats.issued += 1;
            (StatusCode::OK, Json(issuer.issue())).into_response()
        }
        Some("refresh_token") => {
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            if !issuer.refresh_tokens.remove(&refresh) {
                issuer.stats.refused += 1;
                return refusal(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            issuer.stats.refreshed += 1;
            (StatusCode::OK, Json(issuer.issue())).into_response()
        }
        _ => {
            issuer.stats.refused += 1;
            refusal(StatusCode::BAD_REQUEST, "unsupported_grant_type")
        }
    }
}

/// `GET /_sandbox/marketplace/oauth`.
pub(super) async fn stats(State(state): State<Arc<SandboxState>>) -> Response {
    match &state.oauth {
        Some(issuer) => Json(lock(issuer).stats()).into_response(),
        None => Json(json!({ "enabled": false })).into_response(),
    }
}

/// Requires a valid bearer token on `/marketplace/api/...` when OAuth is on.
pub(super) async fn require_token(
    State(state): State<Arc<SandboxState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(issuer) = &state.oauth
        && request.uri().path().starts_with("/marketplace/api/")
        && lock(issuer).config.required
    {
        let token = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let mut issuer = lock(issuer);
        if !issuer.valid(&token) {
            issuer.stats.rejected += 1;
            return refusal(StatusCode::UNAUTHORIZED, "invalid_token");
        }
    }
    next.run(request).await
}

/// The pairs of a form-encoded body.
fn form_pairs(body: &str) -> HashMap<String, String> {
    let Ok(url) = reqwest::Url::parse(&format!("http://form.invalid/?{body}")) else {
        return HashMap::new();
    };
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The client ID and secret of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}
