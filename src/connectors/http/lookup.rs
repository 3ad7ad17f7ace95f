//! One-off reads for enrichment calls: a request rendered by the runtime, sent through the
//! system's client (credentials, redirects, size limit), answered with the JSON body or a
//! classified failure. Retries and caching are the runtime's (`crate::runtime::enrich`).

use serde_json::Value;

use super::body::{ERROR_BODY_PREFIX, read_limited, read_prefix};
use super::config::{HttpMethod, HttpRequestConfig};
use super::{HttpSystem, HttpSystemConfig, retry_after};
use crate::connectors::ConnectorError;

/// A request rendered for one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupRequest {
    /// The method.
    pub method: HttpMethod,
    /// The path after the base URL, already URL-encoded.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// The client of one system, for lookups.
#[derive(Debug, Clone)]
pub struct HttpLookup {
    system: HttpSystem,
}

impl HttpLookup {
    /// Opens a client for the system whose `http:` settings are `system_settings`, for the
    /// operation `request` (its `rate_limit:` on top of the system's).
    pub fn open(
        system_settings: &Value,
        request: &HttpRequestConfig,
    ) -> Result<Self, ConnectorError> {
        let config: HttpSystemConfig = serde_json::from_value(system_settings.clone())
            .map_err(|err| ConnectorError::spec(format!("http settings: {err}")))?;
        let method = match request.method.unwrap_or(HttpMethod::Get) {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        let system = super::client(&config)?
            .for_operation(&method, request)
            .map_err(|err| ConnectorError::spec(err.to_string()))?;
        Ok(Self { system })
    }

    /// The URL a request goes to (for messages and flow-test expectations).
    pub fn url(&self, request: &LookupRequest) -> String {
        format!("{}{}", self.system.base_url, request.path)
    }

    /// Sends the request once; returns the JSON body of a 2xx answer (`null` when empty).
    pub async fn fetch(&self, request: &LookupRequest) -> Result<Value, ConnectorError> {
        let method = match request.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        let url = self.url(request);
        let shown = crate::redact::redact(&url).into_owned();
        let mut builder = self
            .system
            .request(method.clone(), &url)
            .query(&request.query);
        for (name, value) in &request.headers {
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                ConnectorError::rejected(format!(
                    "request header `{name}`: the rendered value is not a valid header value"
                ))
            })?;
            builder = builder.header(name.as_str(), value);
        }
        let mut response = self
            .system
            .send(builder)
            .await
            .map_err(|err| err.into_connector_error(&format!("{method} {shown}")))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let body = read_limited(&mut response, self.system.max_response_bytes)
                .await
                .map_err(|err| {
                    let message = format!("{method} {shown}: {err}");
                    match err {
                        // The connection broke mid-body: another attempt can succeed.
                        super::body::BodyError::Read(_) => ConnectorError::unavailable(message),
                        super::body::BodyError::TooLarge { .. } => {
                            ConnectorError::rejected(message)
                        }
                    }
                })?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|err| {
                ConnectorError::rejected(format!(
                    "{method} {shown}: the response is not JSON: {err}"
                ))
            });
        }
        let wait = retry_after(response.headers());
        let prefix = read_prefix(&mut response, ERROR_BODY_PREFIX).await;
        let mut error = ConnectorError::from_status(
            status,
            wait.map(std::time::Duration::from_secs),
            &String::from_utf8_lossy(&prefix),
        );
        error.message = format!("{method} {shown}: {}", error.message);
        Err(error)
    }
}
