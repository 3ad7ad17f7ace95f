//! Webhook intake: the route of every webhook flow. It authenticates an event (HMAC-SHA256
//! over `"<timestamp>.<raw body>"`, timestamp within tolerance), stores it in the durable
//! inbox and only then answers 2xx; it never runs a flow itself (the flow's runner is woken
//! and claims the inbox). Refused events (401, 413, 400) leave nothing in the store.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::DaemonState;
use super::events::{WebhookEventHandled, WebhookOutcome};
use crate::spec::model::{Trigger, WebhookAuth};
use crate::store::InboxInsert;

/// Why an event was refused as unauthenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent or not text.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// The timestamp header is not Unix seconds.
    #[error("timestamp is not Unix seconds")]
    BadTimestamp,
    /// The timestamp is outside the tolerance.
    #[error("timestamp is {0}s away from the daemon's clock (outside the tolerance)")]
    Stale(i64),
    /// The signature is not `sha256=<hex>` or does not match.
    #[error("signature does not match")]
    BadSignature,
}

/// Checks an event's signature and timestamp; returns its event ID.
pub fn verify(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<String, SignatureError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SignatureError::MissingHeader(name.to_owned()))
    };
    let signature = header(&auth.signature_header)?;
    let timestamp = header(&auth.timestamp_header)?;
    let event_id = header(&auth.event_id_header)?;
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now_unix.saturating_sub(signed_at);
    if skew.unsigned_abs() > auth.tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    let expected = signature
        .strip_prefix("sha256=")
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .ok_or(SignatureError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(auth.secret.expose())
        .map_err(|_| SignatureError::BadSignature)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::BadSignature)?;
    Ok(event_id.to_owned())
}

/// Signs a body the way senders must: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The fallback handler that serves every webhook path of the current workspace (paths
/// change on reload, so they are looked up per request rather than baked into the router).
pub(crate) async fn intake(
    State(state): State<Arc<DaemonState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let workspace = state.workspace();
    let found = workspace
        .flows
        .iter()
        .find_map(|(name, flow)| match &flow.trigger {
            Trigger::Webhook(path) if path == uri.path() => {
                Some((name.clone(), flow.webhook_auth.clone()))
            }
            _ => None,
        });
    let Some((flow, Some(auth))) = found else {
        return reply(StatusCode::NOT_FOUND, "not_found", "no route");
    };
    if method != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST events here",
        );
    }
    if state.is_shutting_down() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is stopping; retry later",
        );
    }
    let refuse = |outcome: WebhookOutcome, reason: &str| {
        WebhookEventHandled {
            flow: &flow,
            outcome,
            reason: Some(reason),
            intake: None,
        }
        .emit(&state.metrics);
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > auth.max_body as u64) {
        refuse(WebhookOutcome::TooLarge, "declared length over the limit");
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body over the limit",
        );
    }
    let bytes = match axum::body::to_bytes(body, auth.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            refuse(WebhookOutcome::TooLarge, "body over the limit");
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over the limit",
            );
        }
    };
    let event_id = match verify(&auth, &headers, &bytes, jiff::Timestamp::now().as_second()) {
        Ok(id) => id,
        Err(err) => {
            refuse(WebhookOutcome::Unauthorized, &err.to_string());
            return reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature verification failed",
            );
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if records_of(text).is_some() => text.to_owned(),
        _ => {
            refuse(
                WebhookOutcome::Invalid,
                "body is not a JSON object or array",
            );
            return reply(
                StatusCode::BAD_REQUEST,
                "invalid",
                "body must be a JSON object or array of objects",
            );
        }
    };
    let store = state.store.clone();
    let (flow_for_store, id_for_store) = (flow.clone(), event_id.clone());
    // The insert waits for fsync (`synchronous=FULL`): keep it off the async workers.
    let stored = tokio::task::spawn_blocking(move || {
        store.inbox_insert(&flow_for_store, &id_for_store, &text)
    })
    .await;
    match stored {
        Ok(Ok(InboxInsert::Stored(_))) => {
            WebhookEventHandled {
                flow: &flow,
                outcome: WebhookOutcome::Accepted,
                reason: None,
                intake: Some(received.elapsed()),
            }
            .emit(&state.metrics);
            state.wake(&flow);
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "accepted", "event_id": event_id})),
            )
                .into_response()
        }
        Ok(Ok(InboxInsert::Duplicate)) => {
            WebhookEventHandled {
                flow: &flow,
                outcome: WebhookOutcome::Duplicate,
                reason: None,
                intake: None,
            }
            .emit(&state.metrics);
            (
                StatusCode::OK,
                Json(json!({"status": "duplicate", "event_id": event_id})),
            )
                .into_response()
        }
        Ok(Err(err)) => {
            tracing::error!(flow = %flow, error = %err, "Could not store a webhook event; the sender will retry.");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "retry later",
            )
        }
        Err(err) => {
            tracing::error!(flow = %flow, error = %err, "Webhook store task failed; the sender will retry.");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "retry later",
            )
        }
    }
}

/// The records an event body carries: an object is one record, an array of objects several.
pub fn records_of(body: &str) -> Option<Vec<serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(body).ok()? {
        object @ serde_json::Value::Object(_) => Some(vec![object]),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) => Some(items),
        _ => None,
    }
}

fn reply(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}
