//! Enrichment calls: a flow's `enrich:` block, one HTTP lookup per record whose answer is
//! merged into the record (as a named field) before `where:`, the contract and the mapping.
//!
//! ```yaml
//! enrich:
//!   items:                                # merged into the record as `items`
//!     system: marketplace                 # an HTTP system of the workspace
//!     request: { path: "/api/orders/{{order_id}}/items" }   # over the record as read
//!     records: /items                     # optional JSON Pointer into the response
//!     retry: { window: 2m }               # defaults to the flow's retry policy
//!     on_failure: dead-letter             # or `skip` (counted) or `continue` (field absent)
//! ```
//!
//! This module owns the spec side only (config types and the compiled [`EnrichPlan`]); it
//! does no I/O. The calls themselves are made by `crate::runtime::enrich` through the HTTP
//! connector's client.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connectors::http::config::HttpMethod;
use crate::mapping::CompiledTemplate;
use crate::spec::model::RetryPolicy;
use crate::spec::raw::RetryConfig;

/// One enrichment: the call made per record, and what becomes of a record whose call fails.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// The HTTP system called (its base URL, credentials, timeout and size limit apply).
    pub system: String,
    /// The request, with templates over the record as read (after `lookup:`).
    pub request: EnrichRequestConfig,
    /// JSON Pointer to the part of the response merged into the record (for example
    /// `/items`); the whole response body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// How long and how often a failing call is retried (5xx, 429, 408, network errors; a
    /// 4xx is not retried). Defaults to the flow's retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// What becomes of a record whose call fails for good (default `dead-letter`).
    #[serde(default)]
    pub on_failure: OnEnrichFailure,
}

/// The request of an enrichment call.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichRequestConfig {
    /// HTTP method (default `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Path after the system's base URL, a template over the record (values URL-encoded).
    pub path: String,
    /// Query parameters, each value a template over the record.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub query: IndexMap<String, String>,
    /// Headers sent with the call, each value a template over the record.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    /// Client-side rate limit of this operation (method and path), shared by every flow of
    /// the process that calls it, as `COUNT/DURATION` (`1/60s`); applies on top of the
    /// system's `rate_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Calls allowed at once after a quiet spell under `rate_limit` (default: its count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl EnrichRequestConfig {
    /// The request as the HTTP connector's request settings (no body), for its client.
    pub fn as_http(&self) -> crate::connectors::http::config::HttpRequestConfig {
        crate::connectors::http::config::HttpRequestConfig {
            method: Some(self.method.unwrap_or(HttpMethod::Get)),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: None,
            rate_limit: self.rate_limit.clone(),
            burst: self.burst,
        }
    }
}

/// What becomes of a record whose enrichment call fails for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnEnrichFailure {
    /// The record becomes an `enrichment-failed` dead letter, routed to that mode's owner.
    #[default]
    DeadLetter,
    /// The record is skipped and counted as filtered (not delivered, not dead-lettered); it
    /// is read again should it change.
    Skip,
    /// The record goes on without the field (the mapping may treat it as missing).
    Continue,
}

impl OnEnrichFailure {
    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            OnEnrichFailure::DeadLetter => "dead-letter",
            OnEnrichFailure::Skip => "skip",
            OnEnrichFailure::Continue => "continue",
        }
    }
}

/// The answer a flow test gives an enrichment request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichResponse {
    /// The HTTP status (default 200); a 5xx or 429 is retried on the enrichment's policy.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// The JSON body.
    #[serde(default)]
    pub body: serde_json::Value,
}

fn ok_status() -> u16 {
    200
}

/// A compiled enrichment, built once per load.
#[derive(Debug, Clone)]
pub struct EnrichPlan {
    /// The field the answer is merged into.
    pub field: String,
    /// The system called.
    pub system: String,
    /// The method.
    pub method: HttpMethod,
    /// The path template.
    pub path: CompiledTemplate,
    /// Query templates.
    pub query: Vec<(String, CompiledTemplate)>,
    /// Header templates.
    pub headers: Vec<(String, CompiledTemplate)>,
    /// The pointer into the response, if any.
    pub records: Option<String>,
    /// The retry policy, with the flow's applied.
    pub retry: RetryPolicy,
    /// What a failure does to the record.
    pub on_failure: OnEnrichFailure,
    /// The request as configured, for the HTTP client (its operation's rate limit).
    pub request: EnrichRequestConfig,
}

/// An enrichment that does not compile. Validation reports it with its line; this is the
/// guard for what it let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enrich.{field}: {message}")]
pub struct EnrichCompileError {
    /// The enrichment's field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl EnrichPlan {
    /// Compiles a flow's `enrich:` block; `flow_retry` is the flow's resolved policy.
    pub fn compile_all(
        enrich: &IndexMap<String, EnrichConfig>,
        flow_retry: &RetryPolicy,
    ) -> Result<Vec<Self>, EnrichCompileError> {
        enrich
            .iter()
            .map(|(field, config)| Self::compile(field, config, flow_retry))
            .collect()
    }

    fn compile(
        field: &str,
        config: &EnrichConfig,
        flow_retry: &RetryPolicy,
    ) -> Result<Self, EnrichCompileError> {
        let fail = |message: String| EnrichCompileError {
            field: field.to_owned(),
            message,
        };
        let template = |at: &str, text: &str| {
            CompiledTemplate::compile(text).map_err(|e| fail(format!("{at}: {e}")))
        };
        let all = |what: &str, pairs: &IndexMap<String, String>| {
            pairs
                .iter()
                .map(|(name, text)| Ok((name.clone(), template(&format!("{what}.{name}"), text)?)))
                .collect::<Result<Vec<_>, EnrichCompileError>>()
        };
        if let Some(records) = &config.records
            && !records.is_empty()
            && !records.starts_with('/')
        {
            return Err(fail(format!("records \"{records}\" is not a JSON Pointer")));
        }
        let retry = match &config.retry {
            Some(own) => overlay_retry(own, flow_retry),
            None => *flow_retry,
        };
        Ok(Self {
            field: field.to_owned(),
            system: config.system.clone(),
            method: config.request.method.unwrap_or(HttpMethod::Get),
            path: template("request.path", &config.request.path)?,
            query: all("request.query", &config.request.query)?,
            headers: all("request.headers", &config.request.headers)?,
            records: config.records.clone().filter(|r| !r.is_empty()),
            retry,
            on_failure: config.on_failure,
            request: config.request.clone(),
        })
    }
}

impl EnrichPlan {
    /// The enrichment in a sentence, for `explain`.
    pub fn describe(&self) -> String {
        let method = match self.method {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
        };
        let part = match &self.records {
            Some(pointer) => format!("{pointer} of the answer"),
            None => "the answer".to_owned(),
        };
        let failure = match self.on_failure {
            OnEnrichFailure::DeadLetter => "dead-lettered as enrichment-failed",
            OnEnrichFailure::Skip => "skipped and counted as filtered",
            OnEnrichFailure::Continue => "passed on without it",
        };
        format!(
            "Before filtering and mapping, each record gets `{}` from {method} {} on {} ({part}; \
             one call per distinct request per run, retried for {} on 5xx and 429, never on \
             other 4xx); a record whose call fails is {failure}.",
            self.field,
            self.path.source(),
            self.system,
            crate::spec::explain::human(self.retry.window),
        )
    }
}

/// The enrichment's own retry block over the flow's policy, field by field.
fn overlay_retry(own: &RetryConfig, flow: &RetryPolicy) -> RetryPolicy {
    let pick = |text: &Option<String>, fallback: std::time::Duration| {
        text.as_deref()
            .and_then(|t| crate::spec::duration::parse_duration(t).ok())
            .unwrap_or(fallback)
    };
    RetryPolicy {
        exponential: own.backoff.map_or(flow.exponential, |b| {
            b == crate::spec::raw::Backoff::Exponential
        }),
        initial: pick(&own.initial, flow.initial),
        max_delay: pick(&own.max_delay, flow.max_delay),
        window: pick(&own.window, flow.window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> EnrichConfig {
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn compiles_with_defaults_and_its_own_window() {
        let flow = RetryPolicy::default();
        let mut enrich = IndexMap::new();
        enrich.insert(
            "items".to_owned(),
            config(
                r#"{"system":"m","request":{"path":"/o/{{id}}/items"},"records":"/items",
                    "retry":{"window":"2m"}}"#,
            ),
        );
        let plans = EnrichPlan::compile_all(&enrich, &flow).unwrap();
        let plan = &plans[0];
        assert_eq!(plan.method, HttpMethod::Get);
        assert_eq!(plan.on_failure, OnEnrichFailure::DeadLetter);
        assert_eq!(plan.retry.window, std::time::Duration::from_secs(120));
        assert_eq!(plan.retry.initial, flow.initial);
        assert_eq!(plan.records.as_deref(), Some("/items"));
    }

    #[test]
    fn refuses_a_bad_template_and_a_records_path() {
        let flow = RetryPolicy::default();
        let mut enrich = IndexMap::new();
        enrich.insert(
            "items".to_owned(),
            config(r#"{"system":"m","request":{"path":"/o/{{id"}}"#),
        );
        assert!(EnrichPlan::compile_all(&enrich, &flow).is_err());
        enrich.insert(
            "items".to_owned(),
            config(r#"{"system":"m","request":{"path":"/o"},"records":"items"}"#),
        );
        let err = EnrichPlan::compile_all(&enrich, &flow).unwrap_err();
        assert!(err.message.contains("JSON Pointer"), "{err}");
    }

    #[test]
    fn on_failure_is_kebab_case() {
        let c = config(r#"{"system":"m","request":{"path":"/"},"on_failure":"skip"}"#);
        assert_eq!(c.on_failure, OnEnrichFailure::Skip);
    }
}
