//! Per-record HTTP writes with an idempotency key header. Retries are the runtime's job; the
//! sink only reports whether a failure is worth retrying.

use serde_json::Value;

use super::HttpToConfig;
use super::body::{ERROR_BODY_PREFIX, read_limited, read_prefix};
use super::config::HttpMethod;
use super::{HttpSystem, retry_after};
use crate::connectors::{ConnectorError, Outgoing};
use crate::connectors::{Sink, SinkStyle};
use crate::mapping::{CompiledTemplate, Escape};

/// A configured HTTP sink.
#[derive(Clone)]
pub struct HttpSink {
    system: HttpSystem,
    method: reqwest::Method,
    path: CompiledTemplate,
    idempotency_header: String,
}

impl HttpSink {
    /// Prepares the sink from the flow's `to` section.
    pub fn new(system: HttpSystem, config: &HttpToConfig) -> Result<Self, String> {
        let request = config
            .request
            .as_ref()
            .ok_or("an HTTP sink needs `request`")?;
        let method = match request.method.unwrap_or(HttpMethod::Post) {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        let system = system
            .for_operation(&method, request)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            system,
            method,
            path: CompiledTemplate::compile(&request.path).map_err(|e| e.to_string())?,
            idempotency_header: config
                .idempotency_header
                .clone()
                .unwrap_or_else(|| "Idempotency-Key".into()),
        })
    }

    /// The request path for a mapped record (values percent-encoded).
    pub fn path_for(&self, outgoing: &Outgoing) -> Result<String, String> {
        self.path
            .render(&outgoing.body, Escape::Url)
            .map_err(|e| format!("request path: {e}"))
    }

    /// Sends one record as the JSON body; returns the response body.
    pub async fn send(&self, outgoing: &Outgoing) -> Result<Value, ConnectorError> {
        self.send_json(&outgoing.body, &outgoing.body, &outgoing.idempotency_key)
            .await
    }

    /// Sends `body` to the path rendered over `path_context`; returns the response body
    /// (`null` when it is empty or not JSON).
    pub async fn send_json(
        &self,
        path_context: &Value,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Value, ConnectorError> {
        let path = self
            .path
            .render(path_context, Escape::Url)
            .map_err(|e| ConnectorError::rejected(format!("request path: {e}")))?;
        let url = format!("{}{}", self.system.base_url, path);
        let mut request = self
            .system
            .request(self.method.clone(), &url)
            .header(&self.idempotency_header, idempotency_key);
        if !body.is_null() {
            request = request.json(body);
        }
        let mut response = self
            .system
            .send(request)
            .await
            .map_err(|err| err.into_connector_error(format_args!("{} {url}: ", self.method)))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        if (200..300).contains(&status) {
            // The write is acknowledged whatever the body holds; a body that cannot be read
            // (or is over the limit) only means nothing can be captured from it.
            return Ok(
                match read_limited(&mut response, self.system.max_response_bytes).await {
                    Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
                    Err(err) => {
                        tracing::warn!(url = %url, status, error = %err, "Sink response not read; the write is acknowledged.");
                        Value::Null
                    }
                },
            );
        }
        // Only the start of an error body is quoted, so only the start is read.
        let prefix = read_prefix(&mut response, ERROR_BODY_PREFIX).await;
        Err(ConnectorError::from_status(
            status,
            wait.map(std::time::Duration::from_secs),
            &String::from_utf8_lossy(&prefix),
        ))
    }
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::PerRecord
    }

    async fn send(&self, record: &Outgoing, body: &Value) -> Result<Value, ConnectorError> {
        self.send_json(&record.body, body, &record.idempotency_key)
            .await
    }
}
