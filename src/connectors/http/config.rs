//! Settings of the HTTP connector: a system's (`systems.NAME.http:`), a flow's `from:` on
//! such a system and its `to:`. Plain types: the spec reads them, the connector opens them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Client-side rate limit of every call to this system (sources, sinks,
    /// acknowledgements, from every flow of the process), as `COUNT/DURATION`: `10/1s`,
    /// `1/60s`, `100/1m`. Calls over it wait for a token (at most 15 minutes).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Calls allowed at once after a quiet spell under `rate_limit` (default: its count).
    #[serde(default)]
    pub burst: Option<u32>,
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

/// One HTTP request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestConfig {
    /// HTTP method. Defaults to `GET` for sources and `POST` for sinks.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// Path joined to the system's base URL; a template.
    pub path: String,
    /// Query parameters; each value is a template.
    #[serde(default)]
    pub query: IndexMap<String, String>,
    /// Extra headers; each value is a template.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Client-side rate limit of this operation (method and path), shared by every flow of
    /// the process that calls it, as `COUNT/DURATION` (`1/60s`); applies on top of the
    /// system's.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Calls allowed at once after a quiet spell under `rate_limit` (default: its count).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Read.
    Get,
    /// Create (or upsert where the API says so).
    Post,
    /// Replace.
    Put,
    /// Partial update.
    Patch,
}

/// Pagination of an HTTP source. Give `offset`, `page`, `next_token`, `next_link` or `seek`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaginationConfig {
    /// How pages are addressed.
    pub style: PaginationStyle,
    /// Query parameter carrying the offset, page number or token
    /// (defaults: `offset`, `page`, `page_token`).
    #[serde(default)]
    pub param: Option<String>,
    /// Query parameter carrying the page size (default `limit`).
    #[serde(default)]
    pub size_param: Option<String>,
    /// Records per page (default 100).
    #[serde(default)]
    pub size: Option<u32>,
    /// `next_token` style: JSON Pointer to the next page's token in the body
    /// (default `/next_page_token`); an absent or null token ends the listing.
    #[serde(default)]
    pub token_path: Option<String>,
    /// `seek` style: JSON Pointer into the last record of a page whose value is sent in
    /// `param` to ask for the records after it (default `/id`).
    #[serde(default)]
    pub from: Option<String>,
    /// Pages read at most per run (default 10000). When reached, the run ends after the
    /// pages read so far, with a warning; the next run continues from the checkpointed
    /// cursor (without a `cursor`, it starts the listing over).
    #[serde(default)]
    pub max_pages: Option<u32>,
}

/// How pages are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaginationStyle {
    /// A record offset that grows by the page size; a short page ends the listing.
    Offset,
    /// A page number starting at 1; a short page ends the listing.
    Page,
    /// An opaque token returned by the previous page (at `token_path` in its body).
    NextToken,
    /// The next page's URL in the previous response's `Link: <...>; rel="next"` header.
    NextLink,
    /// "After this key": the value at `from` in the last record read is sent in `param`.
    Seek,
}
