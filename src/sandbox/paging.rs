//! The sandbox's demanding listing behaviour: a next-token listing of orders (token in the
//! body and in a `Link: <...>; rel="next"` header), a fault that makes it hand out the same
//! token again (a bug seen in real channel APIs), and per-operation rate limits that answer
//! 429 with `Retry-After` and count every violation, as real marketplace APIs do.
//!
//! Rate limits are a sliding window per operation (`METHOD /route/{pattern}`): `limit`
//! requests per `per_secs` seconds. A request over it is refused (it does not count against
//! the window) and counted as a violation; `GET /_sandbox/rate-limits` shows limits and
//! violations. No limit is set until a test or user asks for one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::marketplace::{number, updated_since};
use super::{ApiError, SandboxState};

/// Page size of the v2 orders listing when `limit` is not given, and its cap.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// One operation's rate limit, as `POST /_sandbox/rate-limits` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `METHOD /route` as the router matches it, e.g. `GET /marketplace/api/v2/orders` or
    /// `PUT /marketplace/api/orders/{order_id}/accept`.
    pub operation: String,
    /// Requests allowed per window.
    pub limit: u32,
    /// The window, in seconds.
    pub per_secs: u64,
}

/// Listing behaviour and rate-limit state, behind one lock never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Paging(Mutex<PagingState>);

#[derive(Debug, Default)]
struct PagingState {
    limits: HashMap<String, (RateLimit, VecDeque<Instant>)>,
    violations: BTreeMap<String, u64>,
    /// Pages of the v2 orders listing still to hand out a token already handed out.
    repeat_token: u32,
    last_token: Option<String>,
}

impl Paging {
    fn lock(&self) -> MutexGuard<'_, PagingState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or, with `limit` 0, removes) an operation's rate limit.
    pub(crate) fn set_limit(&self, limit: RateLimit) {
        let mut state = self.lock();
        if limit.limit == 0 {
            state.limits.remove(&limit.operation);
        } else {
            state
                .limits
                .insert(limit.operation.clone(), (limit, VecDeque::new()));
        }
    }

    /// Violations per operation so far.
    pub(crate) fn violations(&self) -> BTreeMap<String, u64> {
        self.lock().violations.clone()
    }

    /// Makes the next `pages` pages of the v2 orders listing repeat the previous token.
    pub(crate) fn repeat_token(&self, pages: u32) {
        self.lock().repeat_token = pages;
    }

    /// `Some((operation, wait))` when a request `METHOD /path` is over its operation's
    /// limit now (a violation, counted).
    fn admit(&self, method: &str, path: &str, now: Instant) -> Option<(String, Duration)> {
        let mut state = self.lock();
        let operation = state
            .limits
            .keys()
            .find(|op| operation_matches(op, method, path))?
            .clone();
        let (limit, window) = state.limits.get_mut(&operation)?;
        let per = Duration::from_secs(limit.per_secs);
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            window.pop_front();
        }
        if window.len() < limit.limit as usize {
            window.push_back(now);
            return None;
        }
        let oldest = window.front().copied().unwrap_or(now);
        let wait = per.saturating_sub(now.duration_since(oldest));
        *state.violations.entry(operation.clone()).or_default() += 1;
        Some((operation, wait))
    }
}

/// Whether `METHOD /route/{param}` names a request: the method equal, each route segment
/// equal or a `{param}`.
fn operation_matches(operation: &str, method: &str, path: &str) -> bool {
    let Some((op_method, route)) = operation.split_once(' ') else {
        return false;
    };
    if !op_method.eq_ignore_ascii_case(method) {
        return false;
    }
    let route: Vec<&str> = route.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    route.len() == path.len()
        && route
            .iter()
            .zip(&path)
            .all(|(r, p)| r == p || (r.starts_with('{') && r.ends_with('}') && !p.is_empty()))
}

/// Route middleware: refuses a request over its operation's rate limit with 429 and
/// `Retry-After` (whole seconds, rounded up).
pub(crate) async fn enforce_rate_limits(
    State(state): State<Arc<SandboxState>>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = state.paging.admit(
        request.method().as_str(),
        request.uri().path(),
        Instant::now(),
    );
    if let Some((operation, wait)) = admitted {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let body = json!({ "error": "rate limit exceeded", "operation": operation });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return response;
    }
    next.run(request).await
}

/// `GET /_sandbox/rate-limits`: the limits set and the violations counted.
pub(crate) async fn rate_limits(State(state): State<Arc<SandboxState>>) -> Response {
    let paging = state.paging.lock();
    let mut limits: Vec<&RateLimit> = paging.limits.values().map(|(l, _)| l).collect();
    limits.sort_by(|a, b| a.operation.cmp(&b.operation));
    let total: u64 = paging.violations.values().sum();
    Json(json!({ "limits": limits, "violations": paging.violations, "total_violations": total }))
        .into_response()
}

/// `POST /_sandbox/rate-limits` with a [`RateLimit`] (`limit: 0` removes it).
pub(crate) async fn set_rate_limit(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let limit: RateLimit = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid rate limit: {err}")))?;
    if limit.per_secs == 0 || !limit.operation.contains(" /") {
        return Err(ApiError::bad_request(
            "a rate limit needs `operation` as `METHOD /route` and `per_secs` of at least 1",
        ));
    }
    state.paging.set_limit(limit);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /_sandbox/marketplace/orders/repeat-token` with `{"pages": n}`: the next `n` pages
/// of the v2 orders listing hand out the token of the page before again.
pub(crate) async fn set_repeat_token(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        pages: u32,
    }
    let body: Body = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("expected {{\"pages\": n}}: {err}")))?;
    state.paging.repeat_token(body.pages);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /marketplace/api/v2/orders?updated_since=&page_token=&limit=`: orders by
/// `updated_at`, token pages. The next token is in the body (`next_page_token`) and in a
/// `Link: <...>; rel="next"` header; the token is opaque (it is the offset, prefixed).
pub(crate) async fn list_orders_v2(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let since = updated_since(&query)?;
    let offset = match query.get("page_token").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => token
            .strip_prefix("o")
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid page_token {token:?}")))?,
    };
    let limit = number(&query, "limit")?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let (orders, total) = {
        let mut book = state.orders();
        book.cancel_overdue(jiff::Timestamp::now());
        book.page(since, offset, limit)
    };
    let next = offset.saturating_add(orders.len());
    let mut token = (!orders.is_empty() && next < total).then(|| format!("o{next}"));
    {
        let mut paging = state.paging.lock();
        if paging.repeat_token > 0 && paging.last_token.is_some() {
            paging.repeat_token -= 1;
            token.clone_from(&paging.last_token);
        }
        paging.last_token.clone_from(&token);
    }
    let mut response = Json(json!({ "orders": orders, "next_page_token": token })).into_response();
    if let Some(token) = &token {
        let mut link = format!("</marketplace/api/v2/orders?page_token={token}&limit={limit}");
        if let Some(since) = query.get("updated_since").filter(|s| !s.is_empty()) {
            link.push_str("&updated_since=");
            link.push_str(&percent(since));
        }
        link.push_str(">; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Percent-encodes a query value (RFC 3339 timestamps carry `:` and `+`).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
