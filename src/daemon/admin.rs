//! The admin API under `/admin`, behind `Authorization: Bearer <SWITCHYARD_ADMIN_TOKEN>`:
//! flow status, pause and resume, dead letters (list, replay, suppress) and deadlines. Every
//! operator action goes through the store, which audits it; this module holds no state.
//!
//! Without a token the API is only reachable on loopback, and a web page open in the
//! operator's browser is the attacker to keep out: every request passes [`guard`] first. On
//! a loopback listener `Host` must name loopback with the listener's port (a page whose DNS
//! name was rebound to 127.0.0.1 still sends its own name); a request carrying a foreign
//! `Origin` or `Sec-Fetch-Site` is refused; and a state-changing request must send JSON or no
//! body at all, because `text/plain` and form bodies are what a page can send cross-origin
//! without a CORS preflight (the daemon answers none).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DaemonState;
use crate::runtime::replay::{ReplayOutcome, replay};
use crate::runtime::{RunError, RunReport};
use crate::store::{DeadLetter, DeadLetterFilter, DeadLetterStatus, StoreError};

/// An admin request that failed; rendered as `{"error": ..., "message": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No or wrong bearer token.
    #[error("a valid `Authorization: Bearer` token is required")]
    Unauthorized,
    /// The request does not come from an operator's client: a foreign `Host` or `Origin`.
    #[error("{0}")]
    Forbidden(String),
    /// A state-changing request whose body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The flow or dead letter does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A parameter is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A replay could not run.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AdminError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AdminError::NotFound(_) | AdminError::Store(StoreError::NoSuchDeadLetter(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::Store(_) | AdminError::Run(_) => {
                tracing::error!(error = %self, "Admin request failed.");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response()
    }
}

/// One row of `GET /admin/flows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowView {
    /// The flow.
    pub name: String,
    /// Its trigger, in words (`poll 30s`, `cron ...`, `webhook /hooks/orders`, `manual`).
    pub trigger: String,
    /// Whether scheduled runs are paused.
    pub paused: bool,
    /// The last run's report.
    pub last_run: Option<RunReport>,
    /// When the last run finished (RFC 3339).
    pub last_run_at: Option<String>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// The committed source position.
    pub checkpoint: Option<serde_json::Value>,
}

/// Query of `GET /admin/dead-letters`.
#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterQuery {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this failure mode.
    pub failure: Option<String>,
    /// Only this status: `open`, `replayed` or `suppressed`.
    pub status: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// Body of `POST /admin/dead-letters/{id}/suppress`.
#[derive(Debug, Deserialize)]
pub struct SuppressRequest {
    /// Why the letter is accepted as undeliverable.
    pub reason: String,
    /// Who decided (recorded in the audit trail).
    pub actor: String,
}

/// Body of `POST /admin/dead-letters/{id}/replay` (optional).
#[derive(Debug, Default, Deserialize)]
pub struct ReplayRequest {
    /// Who replays (recorded in the audit trail); `admin-api` by default.
    #[serde(default)]
    pub actor: Option<String>,
}

/// The strength an admin token needs before the daemon listens beyond loopback.
pub const TOKEN_RULE: &str = "at least 32 characters of visible ASCII (no spaces) with at \
                              least 8 different characters";

/// Shortest admin token accepted beyond loopback: `openssl rand -hex 16` is 32 characters
/// (128 bits), the least a guessable-over-the-network secret should carry.
const MIN_TOKEN_CHARS: usize = 32;

/// Fewest different characters: refuses `aaaa...` and other padded or repeated tokens.
const MIN_TOKEN_DISTINCT: usize = 8;

/// Why an admin token is too weak to face the network (see [`TOKEN_RULE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenWeakness {
    /// Fewer than 32 characters.
    #[error("it is {0} characters long")]
    TooShort(usize),
    /// A space, control or non-ASCII character (it could not travel in a header as is).
    #[error("it contains a space, control or non-ASCII character")]
    NotVisibleAscii,
    /// Fewer than 8 different characters.
    #[error("it uses only {0} different characters")]
    Repetitive(usize),
}

/// Checks an admin token against [`TOKEN_RULE`].
pub fn check_token_strength(token: &str) -> Result<(), TokenWeakness> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenWeakness::NotVisibleAscii);
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(TokenWeakness::TooShort(token.len()));
    }
    let distinct = token
        .bytes()
        .collect::<std::collections::BTreeSet<u8>>()
        .len();
    if distinct < MIN_TOKEN_DISTINCT {
        return Err(TokenWeakness::Repetitive(distinct));
    }
    Ok(())
}

/// The admin routes, authenticated when the daemon has a token, behind [`guard`].
pub fn admin_router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .route("/admin/flows", get(list_flows))
        .route("/admin/flows/{name}/pause", post(pause))
        .route("/admin/flows/{name}/resume", post(resume))
        .route("/admin/dead-letters", get(list_dead_letters))
        .route("/admin/dead-letters/{id}/replay", post(replay_letter))
        .route("/admin/dead-letters/{id}/suppress", post(suppress_letter))
        .route("/admin/deadlines", get(deadlines))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ))
        // Added last, so it runs first: a foreign request learns nothing about the token.
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// Refuses what a browser page could send (see the module doc): foreign `Host` on a loopback
/// listener (DNS rebinding), foreign `Origin` or `Sec-Fetch-Site` (CSRF), and non-JSON bodies
/// on state-changing requests.
async fn guard(
    State(state): State<Arc<DaemonState>>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let headers = request.headers();
    let listen = state.listen_addr().ok_or_else(|| {
        AdminError::Forbidden("the daemon's listen address is not known yet".into())
    })?;
    let host = request_host(&request)?;
    if listen.ip().is_loopback() {
        check_loopback_host(&host, listen)?;
    }
    check_same_origin(headers, &host)?;
    if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        check_json_or_empty(headers)?;
    }
    Ok(next.run(request).await)
}

/// Host and port the request is addressed to: the URI's authority in absolute form (which
/// takes precedence over `Host`), otherwise the `Host` header.
fn request_host(request: &Request) -> Result<HostPort, AdminError> {
    let text = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AdminError::Forbidden("a `Host` header is required".into()))?,
    };
    HostPort::parse(text)
        .ok_or_else(|| AdminError::Forbidden(format!("`Host: {text}` is not a host name")))
}

fn check_loopback_host(host: &HostPort, listen: SocketAddr) -> Result<(), AdminError> {
    let loopback_name = host.name == "localhost"
        || host
            .name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    // No port in `Host` means the scheme's default, which this plain-HTTP listener only has
    // on port 80.
    if loopback_name && host.port.unwrap_or(80) == listen.port() {
        return Ok(());
    }
    Err(AdminError::Forbidden(format!(
        "the admin API answers requests for localhost:{} only (got `Host: {}`)",
        listen.port(),
        host.text
    )))
}

fn check_same_origin(headers: &HeaderMap, host: &HostPort) -> Result<(), AdminError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        let same = text
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .and_then(|(_, rest)| HostPort::parse(rest))
            .is_some_and(|origin| {
                let default = if text.starts_with("https") { 443 } else { 80 };
                origin.name == host.name
                    && origin.port.unwrap_or(default) == host.port.unwrap_or(default)
            });
        if !same {
            return Err(AdminError::Forbidden(format!(
                "cross-origin request refused (`Origin: {text}`)"
            )));
        }
    }
    // Browsers also say where a request comes from; `none` is the operator typing the URL.
    let site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or(""));
    if let Some(site) = site.filter(|s| !matches!(*s, "same-origin" | "none")) {
        return Err(AdminError::Forbidden(format!(
            "cross-site request refused (`Sec-Fetch-Site: {site}`)"
        )));
    }
    Ok(())
}

/// A state-changing request sends `Content-Type: application/json`, or no body and no
/// content type at all (`curl -X POST .../pause`).
fn check_json_or_empty(headers: &HeaderMap) -> Result<(), AdminError> {
    match headers.get(header::CONTENT_TYPE) {
        Some(value) => {
            let essence = value
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            if essence.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(AdminError::UnsupportedMediaType(format!(
                    "`Content-Type: {essence}` refused; send `application/json`"
                )))
            }
        }
        None => {
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().parse::<u64>());
            let chunked = headers.contains_key(header::TRANSFER_ENCODING);
            match length {
                None | Some(Ok(0)) if !chunked => Ok(()),
                _ => Err(AdminError::UnsupportedMediaType(
                    "a request body needs `Content-Type: application/json`".into(),
                )),
            }
        }
    }
}

/// A `host[:port]` as sent in `Host` or an `Origin`, host lowercased.
struct HostPort {
    text: String,
    name: String,
    port: Option<u16>,
}

impl HostPort {
    /// Parses `host[:port]`.
    fn parse(text: &str) -> Option<Self> {
        let authority: axum::http::uri::Authority = text.parse().ok()?;
        // Userinfo has no place in `Host` or an `Origin`.
        if authority.as_str().contains('@') {
            return None;
        }
        let name = authority.host().trim_end_matches('.').to_ascii_lowercase();
        (!name.is_empty()).then(|| Self {
            text: text.to_owned(),
            name,
            port: authority.port_u16(),
        })
    }
}

async fn require_token(
    State(state): State<Arc<DaemonState>>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    if let Some(token) = &state.admin_token {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Err(AdminError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

async fn list_flows(
    State(state): State<Arc<DaemonState>>,
) -> Result<Json<Vec<FlowView>>, AdminError> {
    let mut views = state.flow_views();
    for view in &mut views {
        view.checkpoint = state
            .store
            .checkpoint(&view.name)
            .await?
            .map(|c| c.position);
    }
    Ok(Json(views))
}

async fn pause(
    State(state): State<Arc<DaemonState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    set_paused(&state, &name, true).await
}

async fn resume(
    State(state): State<Arc<DaemonState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    set_paused(&state, &name, false).await
}

async fn set_paused(
    state: &DaemonState,
    name: &str,
    paused: bool,
) -> Result<Json<serde_json::Value>, AdminError> {
    if !state.set_paused(name, paused) {
        return Err(AdminError::NotFound(format!("no flow named `{name}`")));
    }
    let action = if paused {
        "flow-paused"
    } else {
        "flow-resumed"
    };
    state
        .store
        .audit(Some(name), action, "admin-api", &json!({}))
        .await?;
    if paused {
        tracing::info!(flow = %name, "Flow paused.");
    } else {
        tracing::info!(flow = %name, "Flow resumed.");
        state.wake(name);
    }
    Ok(Json(json!({"flow": name, "paused": paused})))
}

async fn list_dead_letters(
    State(state): State<Arc<DaemonState>>,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetter>>, AdminError> {
    let status = match query.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(name) if DeadLetterStatus::from_name(name).is_some() => {
            DeadLetterStatus::from_name(name)
        }
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "unknown status `{other}`; use open, replayed, suppressed, resolved or all"
            )));
        }
    };
    let filter = DeadLetterFilter {
        flow: query.flow,
        failure: query.failure,
        status,
        limit: Some(query.limit.unwrap_or(500).min(10_000)),
    };
    Ok(Json(state.store.dead_letters(&filter).await?))
}

async fn replay_letter(
    State(state): State<Arc<DaemonState>>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let request: ReplayRequest = if body.is_empty() {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AdminError::BadRequest(e.to_string()))?
    };
    let actor = request.actor.unwrap_or_else(|| "admin-api".into());
    let workspace = state.workspace();
    let outcome = replay(&workspace, &state.store, id, &actor).await?;
    let body = match outcome {
        ReplayOutcome::Delivered => json!({"id": id, "outcome": "delivered"}),
        ReplayOutcome::Failed(error) => json!({"id": id, "outcome": "failed", "error": error}),
        ReplayOutcome::AlreadyResolved(status) => {
            json!({"id": id, "outcome": "already-resolved", "status": status})
        }
    };
    Ok(Json(body))
}

async fn suppress_letter(
    State(state): State<Arc<DaemonState>>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let request: SuppressRequest =
        serde_json::from_slice(&body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    if request.reason.trim().is_empty() || request.actor.trim().is_empty() {
        return Err(AdminError::BadRequest(
            "`reason` and `actor` must not be empty".into(),
        ));
    }
    let letter = state.store.dead_letter(id).await?;
    if letter.status != DeadLetterStatus::Open {
        return Ok(Json(
            json!({"id": id, "outcome": "already-resolved", "status": letter.status}),
        ));
    }
    state
        .store
        .resolve_dead_letter(
            id,
            DeadLetterStatus::Suppressed,
            &request.actor,
            &request.reason,
        )
        .await?;
    Ok(Json(json!({"id": id, "outcome": "suppressed"})))
}

/// Records open against a deadline, soonest first, with the seconds left.
async fn deadlines(State(state): State<Arc<DaemonState>>) -> Json<Vec<serde_json::Value>> {
    let now = jiff::Timestamp::now().as_millisecond();
    Json(
        state
            .deadlines
            .snapshot()
            .into_iter()
            .map(|d| {
                json!({
                    "flow": d.flow, "record_key": d.record_key,
                    "deadline": jiff::Timestamp::from_millisecond(d.due_ms).ok().map(|t| t.to_string()),
                    "seconds_left": (d.due_ms - now) as f64 / 1e3, "warned": d.warned,
                })
            })
            .collect(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
