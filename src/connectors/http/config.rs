//! Settings of the HTTP connector: a system's (`systems.NAME.http:`), a flow's `from:` on
//! such a system and its `to:`. Plain types: the spec reads them, the connector opens them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mapping::MapField;

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

/// Authentication of an HTTP system: give one of `api_key`, `bearer`, `basic` or `oauth2`
/// (`bearer_env` is the older spelling of `bearer: { token: "${NAME}" }`). Secrets are
/// written as `${NAME}` references to environment variables, never inline; an unset one is a
/// validation error (E0702) at its line.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// A raw key sent as is in a named header (for example `X-Api-Key`).
    #[serde(default)]
    pub api_key: Option<ApiKeyAuth>,
    /// A bearer token: `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub bearer: Option<BearerAuth>,
    /// HTTP basic: `Authorization: Basic base64(user:password)`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// OAuth2 access tokens from a token endpoint, cached until they expire and renewed
    /// once when the API answers 401.
    #[serde(default)]
    pub oauth2: Option<OAuth2Auth>,
    /// Older spelling of `bearer: { token: "${NAME}" }`: the name of the variable holding a
    /// bearer token, read from the process environment.
    #[serde(default)]
    pub bearer_env: Option<String>,
}

/// `auth: { api_key: { header, key } }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// The header carrying the key (for example `X-Api-Key`, or `Authorization`).
    pub header: String,
    /// The key, as a `${NAME}` reference (for example `"${MKP_API_KEY}"`).
    pub key: String,
}

/// `auth: { bearer: { token } }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The token, as a `${NAME}` reference.
    pub token: String,
}

/// `auth: { basic: { username, password } }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name; `${NAME}` references are expanded.
    pub username: String,
    /// The password, as a `${NAME}` reference.
    pub password: String,
}

/// `auth: { oauth2: { ... } }`: tokens from a token endpoint (RFC 6749, form-encoded, the
/// client authenticated by HTTP basic).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    /// The token endpoint; `${NAME}` references are expanded.
    pub token_url: String,
    /// The client ID; `${NAME}` references are expanded.
    pub client_id: String,
    /// The client secret, as a `${NAME}` reference.
    pub client_secret: String,
    /// Scopes asked for, sent space-separated as `scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The grant: `client_credentials` (default) or `refresh_token`.
    #[serde(default)]
    pub grant: OAuth2Grant,
    /// `refresh_token` grant: the refresh token, as a `${NAME}` reference. A rotated refresh
    /// token returned by the endpoint replaces it for the rest of the run.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Time before a token's expiry at which it is renewed, as a duration. Defaults to `30s`.
    #[serde(default)]
    pub expiry_margin: Option<String>,
}

/// An OAuth2 grant type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    /// `grant_type=client_credentials`.
    #[default]
    ClientCredentials,
    /// `grant_type=refresh_token`, with `refresh_token`.
    RefreshToken,
}

impl HttpAuth {
    /// The settings that hold a secret (pointer under the system, text as written): each
    /// must be a `${NAME}` reference, so no secret is written in the spec.
    pub fn secrets(&self) -> Vec<(String, &str)> {
        let mut secrets = Vec::new();
        if let Some(key) = &self.api_key {
            secrets.push(("/auth/api_key/key".to_owned(), key.key.as_str()));
        }
        if let Some(bearer) = &self.bearer {
            secrets.push(("/auth/bearer/token".to_owned(), bearer.token.as_str()));
        }
        if let Some(basic) = &self.basic {
            secrets.push(("/auth/basic/password".to_owned(), basic.password.as_str()));
        }
        if let Some(oauth) = &self.oauth2 {
            secrets.push((
                "/auth/oauth2/client_secret".to_owned(),
                oauth.client_secret.as_str(),
            ));
            if let Some(refresh) = &oauth.refresh_token {
                secrets.push(("/auth/oauth2/refresh_token".to_owned(), refresh.as_str()));
            }
        }
        secrets
    }

    /// The schemes given, by key, to refuse more than one.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut schemes = Vec::new();
        if self.api_key.is_some() {
            schemes.push("api_key");
        }
        if self.bearer.is_some() {
            schemes.push("bearer");
        }
        if self.bearer_env.is_some() {
            schemes.push("bearer_env");
        }
        if self.basic.is_some() {
            schemes.push("basic");
        }
        if self.oauth2.is_some() {
            schemes.push("oauth2");
        }
        schemes
    }
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
    /// The request sent per record. Its path, query values and header values are templates
    /// over the mapped record; its JSON body is the mapped record, or `request.body` applied
    /// to it (so a field the path needs need not be sent).
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
    /// Extra headers; each value is a template, rendered per record (sinks) or per page
    /// (sources).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Sinks only: the JSON body, a mapping over the mapped record (same syntax as a flow's
    /// `map:`). Without it the body is the whole mapped record. Lets the path, query and
    /// headers use fields (say `order_id`) that the body must not carry.
    #[serde(default)]
    pub body: Option<IndexMap<String, MapField>>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
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
