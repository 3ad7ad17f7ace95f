//! The HTTP connector: a client per system (base URL, bearer token, headers, timeout),
//! paged sources with an incremental cursor, and per-record sinks with an idempotency key.
//!
//! A system's credentials (its `headers:`, the bearer token, userinfo in `base_url`) go to
//! the origin of its base URL only. Redirects are therefore followed here, not by reqwest,
//! which drops `Authorization` on a cross-origin hop but forwards every other header: a hop
//! to another scheme, host or port is sent without any of the system's configured headers.
//! Messages never quote the userinfo of a URL (see [`crate::redact`]).

mod auth;
mod body;
pub mod config;
pub mod lookup;
pub mod rate_limit;
mod sink;
mod source;

use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use async_trait::async_trait;
use serde_json::Value;

pub use self::auth::AuthError;
use self::auth::OAuth2Tokens;
use self::config::HttpRequestConfig;
pub use self::config::{HttpAuth, HttpFromConfig, HttpSystemConfig, HttpToConfig};
pub use self::sink::HttpSink;
pub use self::source::HttpSource;
use super::{Connector, ConnectorError, Problem, Roles, Setup, Sink, Source};
use crate::spec::Code;

/// The HTTP connector (`http:` under a system).
#[derive(Debug, Clone, Copy)]
pub struct Http;

#[async_trait]
impl Connector for Http {
    const NAME: &'static str = "http";
    const ROLES: Roles = Roles {
        source: true,
        sink: true,
    };
    type System = HttpSystemConfig;
    type From = HttpFromConfig;
    type To = HttpToConfig;

    fn check_system(system: &HttpSystemConfig) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(timeout) = &system.timeout
            && let Err(message) = crate::spec::parse_duration(timeout)
        {
            problems.push(
                Problem::new("/timeout", Code::InvalidDuration, message)
                    .with_hint("durations look like 30s, 15m, 1h30m, 250ms or PT15M"),
            );
        }
        if let Some(size) = &system.max_response_size
            && let Err(err) = crate::spec::parse_size(size)
        {
            problems.push(
                Problem::new("/max_response_size", Code::InvalidValue, err.to_string())
                    .with_hint("sizes look like 64MiB, 512KiB, 1GiB or 10MB"),
            );
        }
        if let Some(auth) = &system.auth {
            problems.extend(check_auth(auth));
        }
        problems.extend(check_rate("", system.rate_limit.as_deref(), system.burst));
        problems
    }

    fn check_from(_system: &HttpSystemConfig, from: &HttpFromConfig) -> Vec<Problem> {
        let mut problems = match from.request.as_ref().and_then(|r| r.body.as_ref()) {
            Some(_) => vec![
                Problem::new(
                    "/request/body",
                    Code::InvalidValue,
                    "a listing request (`from:`) sends no body",
                )
                .with_hint("remove `body`; use `query` or `headers` to pass values to a listing"),
            ],
            None => Vec::new(),
        };
        if let Some(request) = &from.request {
            problems.extend(check_rate(
                "/request",
                request.rate_limit.as_deref(),
                request.burst,
            ));
        }
        problems
    }

    fn check_to(_system: &HttpSystemConfig, to: &HttpToConfig) -> Vec<Problem> {
        to.request
            .as_ref()
            .map(|r| check_rate("/request", r.rate_limit.as_deref(), r.burst))
            .unwrap_or_default()
    }

    fn secret_vars(system: &HttpSystemConfig) -> Vec<(String, String)> {
        let legacy = system.auth.as_ref().and_then(|a| a.bearer_env.clone());
        legacy
            .map(|var| ("/auth/bearer_env".to_owned(), var))
            .into_iter()
            .collect()
    }

    fn source_templates(from: &HttpFromConfig) -> Vec<(String, String)> {
        from.request
            .as_ref()
            .map(request_templates)
            .unwrap_or_default()
    }

    fn sink_templates(to: &HttpToConfig) -> Vec<(String, String)> {
        to.request
            .as_ref()
            .map(request_templates)
            .unwrap_or_default()
    }

    async fn source(
        &self,
        _setup: &Setup<'_>,
        system: &HttpSystemConfig,
        from: &HttpFromConfig,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let source =
            HttpSource::new(client(system)?, from, position).map_err(ConnectorError::spec)?;
        Ok(Box::new(source))
    }

    async fn sink(
        &self,
        _setup: &Setup<'_>,
        system: &HttpSystemConfig,
        to: &HttpToConfig,
        _sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError> {
        let sink = HttpSink::new(client(system)?, to).map_err(ConnectorError::spec)?;
        Ok(Arc::new(sink))
    }
}

/// A `rate_limit:` (and its `burst:`) under `at` that does not parse, at its line.
fn check_rate(at: &str, rate: Option<&str>, burst: Option<u32>) -> Vec<Problem> {
    let Some(text) = rate else {
        if burst.is_some() {
            return vec![
                Problem::new(
                    format!("{at}/burst"),
                    Code::InvalidValue,
                    "`burst` without `rate_limit` limits nothing".to_owned(),
                )
                .with_hint("add `rate_limit: 10/1s` (calls per duration) beside it"),
            ];
        }
        return Vec::new();
    };
    match rate_limit::Rate::parse(text, burst) {
        Ok(_) => Vec::new(),
        Err(err) => {
            let pointer = if burst == Some(0) && rate_limit::Rate::parse(text, None).is_ok() {
                format!("{at}/burst")
            } else {
                format!("{at}/rate_limit")
            };
            vec![
                Problem::new(pointer, Code::InvalidValue, err.to_string())
                    .with_hint(rate_limit::RATE_HINT),
            ]
        }
    }
}

/// The templates of a request: its path, query values and header values.
fn request_templates(request: &HttpRequestConfig) -> Vec<(String, String)> {
    let escape = crate::spec::source_map::escape;
    let mut templates = vec![("/request/path".to_owned(), request.path.clone())];
    for (name, value) in &request.query {
        templates.push((format!("/request/query/{}", escape(name)), value.clone()));
    }
    for (name, value) in &request.headers {
        templates.push((format!("/request/headers/{}", escape(name)), value.clone()));
    }
    for (name, field) in request.body.iter().flatten() {
        let at = format!("/request/body/{}", escape(name));
        match field {
            crate::mapping::MapField::Template(template) => templates.push((at, template.clone())),
            crate::mapping::MapField::Detailed(detail) => {
                if let Some(template) = &detail.template {
                    templates.push((format!("{at}/template"), template.clone()));
                }
            }
        }
    }
    templates
}

/// The client of a system, with its timeout.
fn client(config: &HttpSystemConfig) -> Result<HttpSystem, ConnectorError> {
    // Validation has checked the duration; a workspace built without it gets the default.
    let timeout = config
        .timeout
        .as_deref()
        .and_then(|t| crate::spec::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(30));
    HttpSystem::new(config, timeout, |name| std::env::var(name).ok())
        .map_err(|err| ConnectorError::spec(err.to_string()))
}

/// What types alone cannot say about `auth`: one scheme, a valid header name, a grant's needs.
fn check_auth(auth: &HttpAuth) -> Vec<Problem> {
    let mut problems = Vec::new();
    let schemes = auth.schemes();
    if schemes.len() > 1 {
        problems.push(
            Problem::new(
                format!("/auth/{}", schemes[1]),
                Code::InvalidValue,
                format!("`auth` gives {}", schemes.join(" and ")),
            )
            .with_hint("give one of api_key, bearer, basic or oauth2"),
        );
    }
    if let Some(key) = &auth.api_key
        && HeaderName::from_bytes(key.header.as_bytes()).is_err()
    {
        problems.push(
            Problem::new(
                "/auth/api_key/header",
                Code::InvalidValue,
                format!("`{}` is not a valid header name", key.header),
            )
            .with_hint("header names are letters, digits and dashes, such as X-Api-Key"),
        );
    }
    for (pointer, text) in auth.secrets() {
        if !text.contains("${") {
            problems.push(
                Problem::new(
                    pointer,
                    Code::InvalidValue,
                    "a secret is written in the spec",
                )
                .with_hint("name an environment variable instead, such as \"${MKP_SECRET}\""),
            );
        }
    }
    if let Some(oauth) = &auth.oauth2 {
        if oauth.grant == config::OAuth2Grant::RefreshToken && oauth.refresh_token.is_none() {
            problems.push(
                Problem::new(
                    "/auth/oauth2/grant",
                    Code::InvalidValue,
                    "grant refresh_token needs the refresh token",
                )
                .with_hint("add refresh_token: \"${NAME_OF_THE_VARIABLE}\""),
            );
        }
        if let Some(margin) = &oauth.expiry_margin
            && let Err(message) = crate::spec::parse_duration(margin)
        {
            problems.push(
                Problem::new("/auth/oauth2/expiry_margin", Code::InvalidDuration, message)
                    .with_hint("durations look like 30s, 1m or 250ms"),
            );
        }
    }
    problems
}

/// The shared bucket of a configured `rate_limit`, if any.
fn limit(
    name: &str,
    rate: Option<&str>,
    burst: Option<u32>,
) -> Result<Option<Arc<rate_limit::Bucket>>, HttpSetupError> {
    let Some(rate) = rate else {
        return Ok(None);
    };
    let rate = rate_limit::Rate::parse(rate, burst)
        .map_err(|err| HttpSetupError(format!("rate_limit: {err}")))?;
    Ok(Some(rate_limit::bucket(name.to_owned(), rate)))
}

/// Redirects followed per request before giving up.
const MAX_REDIRECTS: usize = 10;

/// A configured client for one system.
#[derive(Debug, Clone)]
pub struct HttpSystem {
    /// Base URL without a trailing slash, and without userinfo (that became a credential).
    pub base_url: String,
    /// The client, with the timeout; it follows no redirect by itself.
    client: reqwest::Client,
    /// The largest response body read from this system (`max_response_size`).
    pub max_response_bytes: u64,
    /// What only the base URL's origin may receive.
    credentials: Arc<Credentials>,
    /// OAuth2 tokens (`auth: { oauth2 }`), shared by the clones of this system.
    oauth2: Option<Arc<OAuth2Tokens>>,
    /// Client-side rate limits every call of this client waits for.
    limits: RateLimits,
}

/// The token buckets a client's calls take from: its operation's, then its system's.
#[derive(Debug, Clone, Default)]
struct RateLimits {
    system: Option<Arc<rate_limit::Bucket>>,
    operation: Option<Arc<rate_limit::Bucket>>,
}

impl RateLimits {
    async fn acquire(&self) -> Result<(), rate_limit::RateLimited> {
        for bucket in [&self.operation, &self.system].into_iter().flatten() {
            bucket.acquire().await?;
        }
        Ok(())
    }
}

/// A system's credentials and where they may go.
#[derive(Debug)]
struct Credentials {
    /// The configured headers, the bearer token, the base URL's userinfo as basic auth.
    headers: HeaderMap,
    /// The base URL, for its origin (scheme, host and port).
    base: Option<Url>,
}

/// `max_response_size` when a system does not set it: far above any page or acknowledgement
/// a marketplace API sends, far below what would hurt the process.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// An HTTP system that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("HTTP system: {0}")]
pub struct HttpSetupError(String);

/// A request that got no final response.
#[derive(Debug, thiserror::Error)]
pub enum HttpSendError {
    /// The request could not be built or sent, or the response not read (URL redacted).
    #[error("{0}")]
    Request(String),
    /// Redirected more than [`MAX_REDIRECTS`] times.
    #[error("more than {MAX_REDIRECTS} redirects, the last to {0}")]
    TooManyRedirects(String),
    /// No OAuth2 token could be had.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Not sent: the client-side rate limit would have waited too long.
    #[error(transparent)]
    RateLimited(#[from] rate_limit::RateLimited),
}

impl HttpSendError {
    /// The connector error: a token endpoint refusing the credentials is a spec error (the
    /// configuration must change); anything else may pass (the system is unavailable), after
    /// what a rate limit asks to wait. `context` prefixes the message.
    pub fn into_connector_error(self, context: &str) -> ConnectorError {
        let message = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        match self {
            HttpSendError::Auth(AuthError::Refused { .. }) => ConnectorError::spec(message),
            HttpSendError::RateLimited(limited) => ConnectorError {
                retry_after: Some(limited.wait),
                ..ConnectorError::unavailable(message)
            },
            _ => ConnectorError::unavailable(message),
        }
    }
}

impl From<reqwest::Error> for HttpSendError {
    fn from(err: reqwest::Error) -> Self {
        HttpSendError::Request(describe_error(err))
    }
}

impl HttpSystem {
    /// Builds the client of a system. `timeout` comes from the validated spec.
    pub fn new(
        config: &HttpSystemConfig,
        timeout: Duration,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, HttpSetupError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpSetupError(format!("`{name}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| HttpSetupError(format!("header `{name}` has an invalid value")))?;
            // Any of them may carry a `${SECRET}`; keep them all out of debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut oauth2 = None;
        if let Some(auth) = &config.auth {
            for (name, value) in auth::credential_headers(auth, &env)? {
                headers.insert(name, value);
            }
            if let Some(oauth) = &auth.oauth2 {
                oauth2 = Some(Arc::new(OAuth2Tokens::new(oauth)?));
            }
        }
        let mut base_url = config.base_url.trim_end_matches('/').to_owned();
        if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
            return Err(HttpSetupError(format!(
                "base_url {:?} must start with http:// or https:// (is its variable set?)",
                crate::redact::redact(&base_url)
            )));
        }
        let client = client_builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| HttpSetupError(format!("cannot build the HTTP client: {err}")))?;
        let parsed = Url::parse(&base_url).ok();
        if parsed
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
        {
            // reqwest turns userinfo into `Authorization: Basic` (decoding it as it does for
            // any request) and leaves the URL without it: keep both apart from then on.
            let request = client
                .get(&base_url)
                .build()
                .map_err(|err| HttpSetupError(format!("base_url: {}", describe_error(err))))?;
            if let Some(value) = request.headers().get(reqwest::header::AUTHORIZATION) {
                if headers.contains_key(reqwest::header::AUTHORIZATION) {
                    return Err(HttpSetupError(
                        "base_url has userinfo and `auth` sets an Authorization header; keep one"
                            .into(),
                    ));
                }
                let mut value = value.clone();
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            base_url = request.url().as_str().trim_end_matches('/').to_owned();
        }
        // Validation has checked the size; a workspace built without it gets the default.
        let max_response_bytes = config
            .max_response_size
            .as_deref()
            .and_then(|size| crate::spec::parse_size(size).ok())
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        let limits = RateLimits {
            system: limit(&base_url, config.rate_limit.as_deref(), config.burst)?,
            operation: None,
        };
        Ok(Self {
            limits,
            base_url,
            max_response_bytes,
            client,
            credentials: Arc::new(Credentials {
                headers,
                base: parsed,
            }),
            oauth2,
        })
    }

    /// This client for one operation: its calls also wait for the operation's rate limit
    /// (`rate_limit:` on the request), shared by every flow calling the same method and path.
    pub fn for_operation(
        &self,
        method: &Method,
        request: &HttpRequestConfig,
    ) -> Result<Self, HttpSetupError> {
        let name = rate_limit::operation_name(&self.base_url, method.as_str(), &request.path);
        let mut client = self.clone();
        client.limits.operation = limit(&name, request.rate_limit.as_deref(), request.burst)?;
        Ok(client)
    }

    /// A request to `url`; send it with [`Self::send`], which adds the credentials.
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request built with [`Self::request`], following redirects: the system's
    /// credentials go with each hop to the base URL's origin and with no other. Returns the
    /// first response that is not a redirect (or a redirect that cannot be followed).
    /// With OAuth2, the request carries the cached token; a 401 renews it once and the
    /// request is sent again once.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HttpSendError> {
        let request = request.build()?;
        // Every call takes from the rate limits, a call sent again after a 401 included.
        self.limits.acquire().await?;
        let Some(oauth2) = &self.oauth2 else {
            return self.send_following(request, None).await;
        };
        let token = oauth2.token(&self.client).await?;
        let again = request.try_clone();
        let response = self.send_following(request, Some(&token)).await?;
        match again {
            Some(again) if response.status() == StatusCode::UNAUTHORIZED => {
                let token = oauth2.renew(&self.client, &token).await?;
                self.limits.acquire().await?;
                self.send_following(again, Some(&token)).await
            }
            _ => Ok(response),
        }
    }

    /// [`Self::send`] without the OAuth2 retry: follows redirects, adding the credentials
    /// (and `token` as a bearer token) on each hop to the base URL's origin.
    async fn send_following(
        &self,
        mut request: reqwest::Request,
        token: Option<&str>,
    ) -> Result<reqwest::Response, HttpSendError> {
        let bearer = match token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        HttpSendError::Request(
                            "the OAuth2 access token is not a valid header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        for _ in 0..=MAX_REDIRECTS {
            // Bodies here are buffered JSON, so a request can always be sent again.
            let mut attempt = request.try_clone().ok_or_else(|| {
                HttpSendError::Request("the request body cannot be sent twice".into())
            })?;
            let credentials = &self.credentials;
            if credentials.base.as_ref().map(Url::origin) == Some(attempt.url().origin()) {
                for (name, value) in credentials.headers.iter() {
                    if !attempt.headers().contains_key(name) {
                        attempt.headers_mut().insert(name, value.clone());
                    }
                }
                if let Some(bearer) = &bearer
                    && !attempt
                        .headers()
                        .contains_key(reqwest::header::AUTHORIZATION)
                {
                    attempt
                        .headers_mut()
                        .insert(reqwest::header::AUTHORIZATION, bearer.clone());
                }
            }
            let response = self.client.execute(attempt).await?;
            let Some(next) = redirect_target(&response, request.url()) else {
                return Ok(response);
            };
            let status = response.status();
            *request.url_mut() = next;
            let to_get = match status {
                StatusCode::SEE_OTHER => *request.method() != Method::HEAD,
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => {
                    *request.method() == Method::POST
                }
                _ => false,
            };
            if to_get {
                *request.method_mut() = Method::GET;
                *request.body_mut() = None;
                let headers = request.headers_mut();
                headers.remove(reqwest::header::CONTENT_TYPE);
                headers.remove(reqwest::header::CONTENT_LENGTH);
            }
        }
        let last = crate::redact::redact(request.url().as_str()).into_owned();
        Err(HttpSendError::TooManyRedirects(last))
    }
}

/// Where a redirect response points, resolved against the request URL; `None` when the
/// response is not a redirect or points somewhere this client must not go.
fn redirect_target(response: &reqwest::Response, from: &Url) -> Option<Url> {
    if !matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return None;
    }
    let location = response.headers().get(reqwest::header::LOCATION)?;
    let mut next = from.join(location.to_str().ok()?).ok()?;
    if !matches!(next.scheme(), "http" | "https") {
        return None;
    }
    // Userinfo in a `Location` would be turned into credentials the sender chose.
    let _ = next.set_username("");
    let _ = next.set_password(None);
    Some(next)
}

/// A reqwest error as one line: what failed and why (its causes), with any URL's userinfo
/// redacted.
pub(crate) fn describe_error(err: reqwest::Error) -> String {
    let url = err
        .url()
        .map(|u| crate::redact::redact(u.as_str()).into_owned());
    let err = err.without_url();
    let mut text = err.to_string();
    if let Some(url) = url {
        text.push_str(&format!(" for url ({url})"));
    }
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::redact::redact(&text).into_owned()
}

/// A client builder with the TLS provider installed (rustls with ring; no OpenSSL).
pub fn client_builder() -> reqwest::ClientBuilder {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
}

/// Reads a `Retry-After` header given in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    let date = jiff::fmt::rfc2822::parse(text).ok()?;
    let wait = date.timestamp().as_second() - jiff::Timestamp::now().as_second();
    Some(wait.max(0) as u64)
}
