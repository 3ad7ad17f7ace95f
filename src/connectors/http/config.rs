//! Settings of the HTTP connector: a system's (`systems.NAME.http:`), a flow's `from:` on
//! such a system and its `to:`. Plain types: the spec reads them, the connector opens them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::raw::{HttpRequestConfig, PaginationConfig};

/// Connector settings of an HTTP system.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSystemConfig {
    /// Base URL every request path is joined to; `${ENV}` references are expanded.
    pub base_url: String,
    /// How requests authenticate.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Extra headers sent with every request; `${ENV}` references are expanded.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Time allowed for one request, as a duration such as `10s`. Defaults to `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Requests in flight at once towards this system. Defaults to 8.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// The largest response body read from this system, as a size such as `64MiB`, `512KiB`
    /// or `1GiB`. Defaults to `64MiB`. A source page over it fails the run as
    /// `source-unavailable` (a listing that large needs a smaller page size); a sink's
    /// acknowledgement over it is not read. Bodies are read in chunks and reading stops at the
    /// limit, so a huge or endless response never fills memory.
    #[serde(default)]
    pub max_response_size: Option<String>,
}

/// Authentication of an HTTP system.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// Name of the environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_env: Option<String>,
}

/// A flow's `from:` on an HTTP system (besides `system` and `author`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFromConfig {
    /// The request that lists records. Templates may use `{{cursor}}`.
    #[serde(default)]
    pub request: Option<HttpRequestConfig>,
    /// JSON Pointer to the array of records in a response body (for example `/offers`).
    /// Defaults to the whole body.
    #[serde(default)]
    pub records: Option<String>,
    /// How to fetch the next page.
    #[serde(default)]
    pub pagination: Option<PaginationConfig>,
    /// Field of each record whose largest committed value is the incremental cursor
    /// (for example `updated_at`). The cursor advances only after the sink acknowledged.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A flow's `to:` on an HTTP system (besides `system` and `capture`), and an
/// `acknowledge:` target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpToConfig {
    /// The request sent per record; the mapped record is its JSON body. The path is a
    /// template over the mapped record.
    #[serde(default)]
    pub request: Option<HttpRequestConfig>,
    /// Name of the header carrying the idempotency key. Defaults to `Idempotency-Key`.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}
