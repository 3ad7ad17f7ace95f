//! The HTTP connector: a client per system (base URL, bearer token, headers, timeout),
//! paged sources with an incremental cursor, and per-record sinks with an idempotency key.

mod body;
mod sink;
mod source;

use std::sync::Once;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub use self::sink::HttpSink;
pub use self::source::HttpSource;
use crate::spec::raw::HttpSystemConfig;

/// A configured client for one system.
#[derive(Debug, Clone)]
pub struct HttpSystem {
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// The client, with default headers and timeout.
    pub client: reqwest::Client,
    /// The largest response body read from this system (`max_response_size`).
    pub max_response_bytes: u64,
}

/// `max_response_size` when a system does not set it: far above any page or acknowledgement
/// a marketplace API sends, far below what would hurt the process.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// An HTTP system that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("HTTP system: {0}")]
pub struct HttpSetupError(String);

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
            let value = HeaderValue::from_str(value)
                .map_err(|_| HttpSetupError(format!("header `{name}` has an invalid value")))?;
            headers.insert(name, value);
        }
        if let Some(var) = config.auth.as_ref().and_then(|a| a.bearer_env.as_deref()) {
            let token = env(var).ok_or_else(|| {
                HttpSetupError(format!(
                    "environment variable {var} (bearer token) is not set"
                ))
            })?;
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| HttpSetupError(format!("{var} holds an invalid token")))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
            return Err(HttpSetupError(format!(
                "base_url {base_url:?} must start with http:// or https:// (is its variable set?)"
            )));
        }
        // Validation has checked the size; a workspace built without it gets the default.
        let max_response_bytes = config
            .max_response_size
            .as_deref()
            .and_then(|size| crate::spec::parse_size(size).ok())
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        Ok(Self {
            base_url,
            max_response_bytes,
            client: client_builder()
                .default_headers(headers)
                .timeout(timeout)
                .build()
                .map_err(|err| HttpSetupError(format!("cannot build the HTTP client: {err}")))?,
        })
    }
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
