//! Webhook intake: the route of every webhook flow. It authenticates an event (HMAC-SHA256
//! over `"<timestamp>.<event id>.<raw body>"`, or over `"<timestamp>.<raw body>"` for
//! senders that do not sign the event ID; timestamp within tolerance), refuses a signature
//! already accepted for another event, stores the event in the durable inbox and only then
//! answers 2xx; it never runs a flow itself (the flow's runner is woken and claims the
//! inbox). Refused events (401, 413, 400, 503) leave nothing in the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

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
    /// The signature was already accepted for another event (a captured request replayed
    /// under a new event ID, or to another flow).
    #[error("signature already accepted for another event (replay)")]
    Replayed,
}

/// An authenticated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's event ID.
    pub event_id: String,
    /// Whether the signature covers the event ID (`"<timestamp>.<event id>.<body>"`).
    pub event_id_signed: bool,
    /// The signing time, Unix seconds.
    pub signed_at: i64,
    /// The HMAC the sender sent, the replay cache's key.
    pub mac: [u8; 32],
}

/// Checks an event's signature and timestamp; returns its event ID. Replays are caught by
/// the daemon's [`ReplayCache`], not here.
pub fn verify(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<String, SignatureError> {
    verify_event(auth, headers, body, now_unix).map(|verified| verified.event_id)
}

/// Checks an event's signature (with or without the event ID signed) and timestamp.
pub fn verify_event(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<Verified, SignatureError> {
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
    // The timestamp is hashed as the sender sent it, so `+17...` or `017...` must be signed
    // that way too. A body is JSON, which never starts with `<id>.`, so the two forms cannot
    // be mistaken for each other.
    let matches = |event_id: Option<&str>| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(auth.secret.expose()) else {
            return false;
        };
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        if let Some(id) = event_id {
            mac.update(id.as_bytes());
            mac.update(b".");
        }
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&expected).is_ok()
    };
    let event_id_signed = if matches(Some(event_id)) {
        true
    } else if matches(None) {
        false
    } else {
        return Err(SignatureError::BadSignature);
    };
    // A matching HMAC-SHA256 tag is 32 bytes.
    let mac =
        <[u8; 32]>::try_from(expected.as_slice()).map_err(|_| SignatureError::BadSignature)?;
    Ok(Verified {
        event_id: event_id.to_owned(),
        event_id_signed,
        signed_at,
        mac,
    })
}

/// Signs a body the way senders that do not sign the event ID do:
/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`. Prefer [`sign_event`].
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hmac_hex(secret, &[timestamp.to_string().as_bytes(), b".", body])
}

/// Signs an event the recommended way, binding its ID:
/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<event id>.<body>">`.
pub fn sign_event(secret: &[u8], timestamp: i64, event_id: &str, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    hmac_hex(
        secret,
        &[timestamp.as_bytes(), b".", event_id.as_bytes(), b".", body],
    )
}

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    for part in parts {
        mac.update(part);
    }
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Most signatures remembered at once. At the 5-minute default tolerance this is over 1,600
/// events a second, sustained; past it, intake answers 503 and senders retry once older
/// signatures expire, rather than forgetting one that could still be replayed.
const REPLAY_CACHE_CAPACITY: usize = 500_000;

/// Signatures accepted while their timestamp is still within tolerance, each with the
/// (flow, event ID) it was accepted for. A signature that covers only `"<timestamp>.<body>"`
/// could otherwise be replayed under a new event ID, or to another flow sharing the
/// secret, until it goes stale. The same event again (a sender's redelivery) is let through
/// to the inbox, which answers it as a duplicate.
///
/// It lives in memory: after a restart, a request captured before it can be replayed until
/// its timestamp goes stale, unless the sender signs the event ID ([`sign_event`]).
#[derive(Default)]
pub(crate) struct ReplayCache {
    inner: Mutex<ReplayEntries>,
}

#[derive(Default)]
struct ReplayEntries {
    /// MAC -> (SHA-256 of flow and event ID, expiry in Unix seconds).
    seen: HashMap<[u8; 32], ([u8; 32], i64)>,
    /// Expiries, soonest first, to forget signatures once they are stale.
    expiries: BinaryHeap<Reverse<(i64, [u8; 32])>>,
}

/// Why the replay cache refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// The signature was accepted for another event.
    Replayed,
    /// The cache is full; the sender should retry.
    Full,
}

impl ReplayCache {
    /// Admits `verified` for `flow` unless its signature was accepted for another event;
    /// remembers it until `expires_unix`.
    pub(crate) fn admit(
        &self,
        flow: &str,
        verified: &Verified,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<(), ReplayRefusal> {
        // A cryptographic hash: with a weak one an attacker could pick a new event ID that
        // collides with the captured one.
        let event: [u8; 32] = Sha256::new()
            .chain_update(flow.as_bytes())
            .chain_update([0])
            .chain_update(verified.event_id.as_bytes())
            .finalize()
            .into();
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        entries.forget_until(now_unix);
        match entries.seen.get(&verified.mac) {
            Some((seen, _)) if *seen == event => Ok(()),
            Some(_) => Err(ReplayRefusal::Replayed),
            None if entries.seen.len() >= REPLAY_CACHE_CAPACITY => Err(ReplayRefusal::Full),
            None => {
                entries.seen.insert(verified.mac, (event, expires_unix));
                entries.expiries.push(Reverse((expires_unix, verified.mac)));
                Ok(())
            }
        }
    }
}

impl ReplayEntries {
    fn forget_until(&mut self, now_unix: i64) {
        while let Some(Reverse((expires, _))) = self.expiries.peek() {
            if *expires >= now_unix {
                break;
            }
            if let Some(Reverse((_, mac))) = self.expiries.pop() {
                self.seen.remove(&mac);
            }
        }
    }
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
    let now = jiff::Timestamp::now().as_second();
    let verified = match verify_event(&auth, &headers, &bytes, now) {
        Ok(verified) => verified,
        Err(err) => {
            refuse(WebhookOutcome::Unauthorized, &err.to_string());
            return reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature verification failed",
            );
        }
    };
    // Stale once `now - signed_at` exceeds the tolerance; a second of slack for rounding.
    let expires = verified
        .signed_at
        .saturating_add(auth.tolerance.as_secs().min(i64::MAX as u64) as i64)
        .saturating_add(1);
    match state.webhook_replays.admit(&flow, &verified, expires, now) {
        Ok(()) => {}
        Err(ReplayRefusal::Replayed) => {
            refuse(
                WebhookOutcome::Unauthorized,
                &SignatureError::Replayed.to_string(),
            );
            return reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature verification failed",
            );
        }
        Err(ReplayRefusal::Full) => {
            tracing::warn!(flow = %flow, "Webhook replay cache full; asking the sender to retry.");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many recent events; retry later",
            );
        }
    }
    let event_id = verified.event_id;
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
    // The insert waits for the store's durable write (the backend keeps it off the async
    // workers).
    let stored = state.store.inbox_insert(&flow, &event_id, &text).await;
    match stored {
        Ok(InboxInsert::Stored(_)) => {
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
        Ok(InboxInsert::Duplicate) => {
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
        Err(err) => {
            tracing::error!(flow = %flow, error = %err, "Could not store a webhook event; the sender will retry.");
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
