//! The simulated alert receiver: a webhook per failure owner that stores what it is sent,
//! with a fault queue so a test can prove alert delivery is retried. It owns the received
//! alerts only.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::faults::FaultQueue;
use super::{ApiError, SandboxState};

/// One alert the receiver accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedAlert {
    /// The owner from the path, for example `marketplace-ops`.
    pub owner: String,
    /// The JSON body.
    pub body: Value,
    /// When the receiver accepted the alert.
    pub received_at: Timestamp,
}

/// The alert receiver's in-memory state.
#[derive(Debug, Default)]
pub(crate) struct Alerts {
    pub(crate) received: Vec<ReceivedAlert>,
    /// Every alert request, including failed and refused ones.
    pub(crate) requests: usize,
    pub(crate) faults: FaultQueue,
}

/// `POST /alerts/{owner}`.
pub(crate) async fn post_alert(
    State(state): State<Arc<SandboxState>>,
    Path(owner): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let decision = {
        let mut alerts = state.alerts();
        alerts.requests += 1;
        alerts.faults.decide(Instant::now())
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(failure) = decision.failure {
        tracing::info!(owner = %owner, "Sandbox alert failed by an injected fault.");
        return Ok(failure.into_response());
    }
    let body: Value = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("body is not valid JSON: {err}")))?;
    tracing::info!(owner = %owner, "Sandbox alert received.");
    state.alerts().received.push(ReceivedAlert {
        owner,
        body,
        received_at: Timestamp::now(),
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /_sandbox/alerts`.
pub(crate) async fn list(State(state): State<Arc<SandboxState>>) -> Json<Value> {
    let alerts = state.alerts();
    Json(json!({ "alerts": alerts.received, "requests": alerts.requests }))
}
