//! Per-record HTTP writes with an idempotency key header. Retries are the runtime's job; the
//! sink only reports whether a failure is worth retrying.

use serde_json::Value;

use super::HttpToConfig;
use super::body::{ERROR_BODY_PREFIX, read_limited, read_prefix};
use super::config::HttpMethod;
use super::{HttpSystem, retry_after};
use crate::connectors::{ConnectorError, Outgoing};
use crate::connectors::{Sink, SinkStyle};
use crate::mapping::{CompiledTemplate, Escape, Mapping};

/// A configured HTTP sink.
#[derive(Clone)]
pub struct HttpSink {
    system: HttpSystem,
    method: reqwest::Method,
    path: CompiledTemplate,
    /// Query parameters, each value rendered per record.
    query: Vec<(String, CompiledTemplate)>,
    /// Per-call headers, each value rendered per record.
    headers: Vec<(String, CompiledTemplate)>,
    /// `request.body`: the body as its own mapping over the mapped record.
    body: Option<Mapping>,
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
        let compile = |s: &str| CompiledTemplate::compile(s).map_err(|e| e.to_string());
        let compile_all = |pairs: &indexmap::IndexMap<String, String>| {
            pairs
                .iter()
                .map(|(name, value)| Ok((name.clone(), compile(value)?)))
                .collect::<Result<Vec<_>, String>>()
        };
        let body = match &request.body {
            Some(map) => Some(
                Mapping::compile(map)
                    .map_err(|e| format!("request.body.{}: {}", e.field, e.message))?,
            ),
            None => None,
        };
        Ok(Self {
            system,
            method,
            path: compile(&request.path)?,
            query: compile_all(&request.query)?,
            headers: compile_all(&request.headers)?,
            body,
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
        let mut query = Vec::with_capacity(self.query.len());
        for (name, template) in &self.query {
            let value = template
                .render(path_context, Escape::None)
                .map_err(|e| ConnectorError::rejected(format!("request query `{name}`: {e}")))?;
            query.push((name.as_str(), value));
        }
        let mut request = self
            .system
            .request(self.method.clone(), &url)
            .query(&query)
            .header(&self.idempotency_header, idempotency_key);
        for (name, template) in &self.headers {
            let value = template
                .render(path_context, Escape::None)
                .map_err(|e| ConnectorError::rejected(format!("request header `{name}`: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                ConnectorError::rejected(format!(
                    "request header `{name}`: the rendered value is not a valid header value \
                     (a line break or another control character)"
                ))
            })?;
            request = request.header(name.as_str(), value);
        }
        let body = match &self.body {
            Some(mapping) => std::borrow::Cow::Owned(mapping.apply(body).map_err(|e| {
                ConnectorError::rejected(format!("request.body.{}: {}", e.field, e.message))
            })?),
            None => std::borrow::Cow::Borrowed(body),
        };
        if !body.is_null() {
            request = request.json(body.as_ref());
        }
        let mut response = self
            .system
            .send(request)
            .await
            .map_err(|err| err.into_connector_error(&format!("{} {url}", self.method)))?;
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
