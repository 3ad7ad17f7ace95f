//! The admin API under `/admin`, behind `Authorization: Bearer <SWITCHYARD_ADMIN_TOKEN>`:
//! flow status, pause and resume, dead letters (list, replay, suppress) and deadlines. Every
//! operator action goes through the store, which audits it; this module holds no state.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
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

/// The admin routes, authenticated when the daemon has a token.
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
        .with_state(state)
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
        view.checkpoint = state.store.checkpoint(&view.name)?.map(|c| c.position);
    }
    Ok(Json(views))
}

async fn pause(
    State(state): State<Arc<DaemonState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    set_paused(&state, &name, true)
}

async fn resume(
    State(state): State<Arc<DaemonState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    set_paused(&state, &name, false)
}

fn set_paused(
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
        .audit(Some(name), action, "admin-api", &json!({}))?;
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
        Some("open") => Some(DeadLetterStatus::Open),
        Some("replayed") => Some(DeadLetterStatus::Replayed),
        Some("suppressed") => Some(DeadLetterStatus::Suppressed),
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "unknown status `{other}`; use open, replayed or suppressed"
            )));
        }
    };
    let filter = DeadLetterFilter {
        flow: query.flow,
        failure: query.failure,
        status,
        limit: Some(query.limit.unwrap_or(500).min(10_000)),
    };
    Ok(Json(state.store.dead_letters(&filter)?))
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
    let letter = state.store.dead_letter(id)?;
    if letter.status != DeadLetterStatus::Open {
        return Ok(Json(
            json!({"id": id, "outcome": "already-resolved", "status": letter.status}),
        ));
    }
    state.store.resolve_dead_letter(
        id,
        DeadLetterStatus::Suppressed,
        &request.actor,
        &request.reason,
    )?;
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
