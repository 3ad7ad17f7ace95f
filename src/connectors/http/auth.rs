//! A system's `auth:`: the static credential headers (an API key in a named header, a bearer
//! token, HTTP basic) and OAuth2 access tokens from a token endpoint.
//!
//! Secrets are `${NAME}` references expanded when the workspace loads; an unset one is a
//! validation error at its line, and an empty one a setup error before any request. OAuth2 tokens
//! are cached until their expiry minus a margin; a 401 from the API renews the token once and
//! the request is sent again once. Renewal happens under one lock, so requests refused
//! together share one call to the token endpoint. Messages name the endpoint and the status,
//! never a secret or a token.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::HttpSetupError;
use super::config::{HttpAuth, OAuth2Auth, OAuth2Grant};

/// How long before its expiry a token is renewed when `expiry_margin` is not given.
const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The largest token endpoint response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A token request that failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The endpoint answered with a refusal (a wrong client ID, secret, scope or refresh
    /// token): fixing the configuration is the remedy, retrying is not.
    #[error("OAuth2 token endpoint {endpoint} refused the credentials: HTTP {status}{reason}")]
    Refused {
        /// The endpoint, redacted.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// `: error_code` when the endpoint said which (RFC 6749 `error`), else empty.
        reason: String,
    },
    /// The endpoint could not be reached, failed (5xx, 429) or answered something that is not
    /// a token: it may work later.
    #[error("OAuth2 token endpoint {endpoint}: {message}")]
    Unavailable {
        /// The endpoint, redacted.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
}

/// The value of a secret variable; unset and empty are the same mistake.
fn secret_var(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    what: &str,
) -> Result<String, HttpSetupError> {
    env(var).filter(|value| !value.is_empty()).ok_or_else(|| {
        HttpSetupError(format!(
            "environment variable {var} ({what}) is not set; export it before running"
        ))
    })
}

/// A secret setting, already expanded: empty means its variable was unset (validation
/// reported which, at its line).
fn secret(text: &str, setting: &str) -> Result<String, HttpSetupError> {
    if text.is_empty() {
        return Err(HttpSetupError(format!(
            "`auth` {setting} is empty: is its environment variable set? (`switchyard validate` names it)"
        )));
    }
    Ok(text.to_owned())
}

/// A header value that is kept out of debug output.
fn sensitive(text: &str, var: &str) -> Result<HeaderValue, HttpSetupError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        HttpSetupError(format!(
            "`auth` {var} holds characters a header cannot carry"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The static credential headers of `auth` (none for OAuth2, whose token is fetched).
pub(super) fn credential_headers(
    auth: &HttpAuth,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HttpSetupError> {
    let schemes = auth.schemes();
    if schemes.len() > 1 {
        return Err(HttpSetupError(format!(
            "`auth` gives {}; keep one",
            schemes.join(" and ")
        )));
    }
    let mut headers = Vec::new();
    if let Some(key) = &auth.api_key {
        let name = HeaderName::from_bytes(key.header.as_bytes())
            .map_err(|_| HttpSetupError(format!("`{}` is not a valid header name", key.header)))?;
        let value = secret(&key.key, "api_key.key")?;
        headers.push((name, sensitive(&value, "api_key.key")?));
    }
    let bearer = match (&auth.bearer, &auth.bearer_env) {
        (Some(bearer), _) => Some(secret(&bearer.token, "bearer.token")?),
        (None, Some(var)) => Some(secret_var(env, var, "bearer token")?),
        (None, None) => None,
    };
    if let Some(token) = bearer {
        headers.push((
            reqwest::header::AUTHORIZATION,
            sensitive(&format!("Bearer {token}"), "bearer token")?,
        ));
    }
    if let Some(basic) = &auth.basic {
        let user = secret(&basic.username, "basic.username")?;
        let password = secret(&basic.password, "basic.password")?;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.push((
            reqwest::header::AUTHORIZATION,
            sensitive(&format!("Basic {encoded}"), "basic")?,
        ));
    }
    Ok(headers)
}

/// An access token and when it stops being used.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    /// Expiry minus the margin; `None` when the endpoint gave no `expires_in`.
    renew_at: Option<Instant>,
}

/// What the token lock guards.
#[derive(Debug, Default)]
struct TokenState {
    current: Option<Token>,
    /// The latest refresh token (configured, or rotated by the endpoint).
    refresh_token: Option<String>,
}

/// OAuth2 tokens of one system, shared by all its requests.
#[derive(Debug)]
pub(super) struct OAuth2Tokens {
    token_url: Url,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    grant: OAuth2Grant,
    margin: Duration,
    state: Mutex<TokenState>,
}

impl OAuth2Tokens {
    /// Reads the secrets of `config` from `env`; fails on an unset one or a bad URL.
    pub(super) fn new(config: &OAuth2Auth) -> Result<Self, HttpSetupError> {
        let token_url = Url::parse(&config.token_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                HttpSetupError(format!(
                    "oauth2 token_url {:?} must be an http:// or https:// URL (is its variable set?)",
                    crate::redact::redact(&config.token_url)
                ))
            })?;
        let client_id = secret(&config.client_id, "oauth2.client_id")?;
        let client_secret = secret(&config.client_secret, "oauth2.client_secret")?;
        let refresh_token = match (config.grant, &config.refresh_token) {
            (_, Some(refresh)) => Some(secret(refresh, "oauth2.refresh_token")?),
            (OAuth2Grant::RefreshToken, None) => {
                return Err(HttpSetupError(
                    "oauth2 grant refresh_token needs refresh_token".into(),
                ));
            }
            (OAuth2Grant::ClientCredentials, None) => None,
        };
        let margin = config
            .expiry_margin
            .as_deref()
            .and_then(|m| crate::spec::parse_duration(m).ok())
            .unwrap_or(DEFAULT_EXPIRY_MARGIN);
        Ok(Self {
            token_url,
            client_id,
            client_secret,
            scopes: config.scopes.clone(),
            grant: config.grant,
            margin,
            state: Mutex::new(TokenState {
                current: None,
                refresh_token,
            }),
        })
    }

    /// A token to send: the cached one while it is fresh, else a new one.
    pub(super) async fn token(&self, client: &reqwest::Client) -> Result<String, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(token) = &state.current
            && token.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.value.clone());
        }
        self.fetch(client, &mut state).await
    }

    /// A token after the API refused `stale` with a 401: a newer one when another request
    /// renewed it meanwhile, else a new one from the endpoint.
    pub(super) async fn renew(
        &self,
        client: &reqwest::Client,
        stale: &str,
    ) -> Result<String, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(token) = &state.current
            && token.value != stale
        {
            return Ok(token.value.clone());
        }
        self.fetch(client, &mut state).await
    }

    /// Asks the endpoint for a token (the lock is held, so one request at a time).
    async fn fetch(
        &self,
        client: &reqwest::Client,
        state: &mut TokenState,
    ) -> Result<String, AuthError> {
        let endpoint = crate::redact::redact(self.token_url.as_str()).into_owned();
        let unavailable = |message: String| AuthError::Unavailable {
            endpoint: endpoint.clone(),
            message,
        };
        // The form body, encoded as a URL query is (application/x-www-form-urlencoded).
        let mut form =
            Url::parse("http://form.invalid/").map_err(|e| unavailable(e.to_string()))?;
        {
            let mut pairs = form.query_pairs_mut();
            match (&state.refresh_token, self.grant) {
                (Some(refresh), OAuth2Grant::RefreshToken) => {
                    pairs.append_pair("grant_type", "refresh_token");
                    pairs.append_pair("refresh_token", refresh);
                }
                _ => {
                    pairs.append_pair("grant_type", "client_credentials");
                }
            }
            if !self.scopes.is_empty() {
                pairs.append_pair("scope", &self.scopes.join(" "));
            }
        }
        let body = form.query().unwrap_or_default().to_owned();
        let issued_at = Instant::now();
        let mut response = client
            .post(self.token_url.clone())
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| unavailable(super::describe_error(err)))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| unavailable(super::describe_error(err)))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_TOKEN_RESPONSE {
                return Err(unavailable("the response is too large".into()));
            }
        }
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(unavailable(format!("HTTP {}", status.as_u16())));
            }
            // Only the RFC 6749 error code is quoted: a description may echo what was sent.
            let reason = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                .filter(|code| code.len() <= 64 && code.bytes().all(|b| b.is_ascii_graphic()))
                .map(|code| format!(": {code}"))
                .unwrap_or_default();
            return Err(AuthError::Refused {
                endpoint,
                status: status.as_u16(),
                reason,
            });
        }
        let json = json.ok_or_else(|| unavailable("the response is not JSON".into()))?;
        let value = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| unavailable("the response has no access_token".into()))?
            .to_owned();
        let renew_at = json
            .get("expires_in")
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
            .map(|seconds| {
                // A margin as long as the token's life would renew it on every call: a token
                // is used for at least half of its life.
                let life = Duration::from_secs(seconds);
                issued_at + life.saturating_sub(self.margin.min(life / 2))
            });
        if let Some(refresh) = json.get("refresh_token").and_then(Value::as_str)
            && !refresh.is_empty()
        {
            state.refresh_token = Some(refresh.to_owned());
        }
        state.current = Some(Token {
            value: value.clone(),
            renew_at,
        });
        Ok(value)
    }
}
