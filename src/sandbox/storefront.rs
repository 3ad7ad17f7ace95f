//! The simulated storefront catalog API: it accepts offer writes keyed by SKU, suppresses
//! replays of an `Idempotency-Key` it has already accepted, records what it accepted, and
//! fails or delays writes as the fault queue says. It owns the received writes only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::faults::FaultQueue;
use super::{ApiError, SandboxState};

/// The header a client sends to make a write idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header the storefront adds when it answers a replay without recording it.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// One write the storefront accepted and recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedWrite {
    /// The `Idempotency-Key` header, when the client sent one.
    pub key: Option<String>,
    /// The HTTP method (`PUT`, `POST` or `PATCH`).
    pub method: String,
    /// The request path, for example `/storefront/catalog/offers/sku-ab12-3`.
    pub path: String,
    /// The SKU from the path.
    pub sku: String,
    /// The JSON body.
    pub body: Value,
    /// When the storefront accepted the write.
    pub received_at: Timestamp,
}

/// Counters of the storefront's write traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StorefrontStats {
    /// Every write request that reached the storefront, whatever its fate.
    pub requests: usize,
    /// Writes accepted and recorded.
    pub records: usize,
    /// Writes answered as replays of an already accepted idempotency key.
    pub duplicates_suppressed: usize,
    /// Accepted writes that carried no `Idempotency-Key`.
    pub missing_idempotency_key: usize,
    /// Writes failed by an injected fault.
    pub faulted: usize,
    /// Writes refused because their body was not valid JSON.
    pub invalid_body: usize,
}

/// The storefront's in-memory state.
#[derive(Debug, Default)]
pub(crate) struct Storefront {
    pub(crate) records: Vec<ReceivedWrite>,
    pub(crate) stats: StorefrontStats,
    keys: HashSet<String>,
    skus: HashSet<String>,
    pub(crate) faults: FaultQueue,
}

/// `PUT|POST|PATCH /storefront/catalog/offers/{sku}`.
pub(crate) async fn write_offer(
    State(state): State<Arc<SandboxState>>,
    method: Method,
    uri: Uri,
    Path(sku): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let decision = {
        let mut storefront = state.storefront();
        storefront.stats.requests += 1;
        storefront.faults.decide(Instant::now())
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(failure) = decision.failure {
        state.storefront().stats.faulted += 1;
        tracing::info!(sku = %sku, "Sandbox storefront write failed by an injected fault.");
        return Ok(failure.into_response());
    }

    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key is not visible ASCII"))?
                .to_owned(),
        ),
    }
    .filter(|key| !key.is_empty());
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            state.storefront().stats.invalid_body += 1;
            return Err(ApiError::bad_request(format!(
                "body is not valid JSON: {err}"
            )));
        }
    };

    let mut storefront = state.storefront();
    if let Some(key) = &key {
        if storefront.keys.contains(key) {
            storefront.stats.duplicates_suppressed += 1;
            drop(storefront);
            let mut response = accepted(StatusCode::OK, &sku);
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            return Ok(response);
        }
        storefront.keys.insert(key.clone());
    } else {
        storefront.stats.missing_idempotency_key += 1;
    }
    let status = if storefront.skus.insert(sku.clone()) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    storefront.records.push(ReceivedWrite {
        key,
        method: method.to_string(),
        path: uri.path().to_owned(),
        sku: sku.clone(),
        body,
        received_at: Timestamp::now(),
    });
    storefront.stats.records += 1;
    drop(storefront);
    Ok(accepted(status, &sku))
}

/// `GET /_sandbox/storefront/received`.
pub(crate) async fn received(State(state): State<Arc<SandboxState>>) -> Json<Value> {
    let storefront = state.storefront();
    let stats = storefront.stats;
    Json(json!({
        "records": storefront.records,
        "requests": stats.requests,
        "duplicates_suppressed": stats.duplicates_suppressed,
        "missing_idempotency_key": stats.missing_idempotency_key,
        "faulted": stats.faulted,
        "invalid_body": stats.invalid_body,
    }))
}

fn accepted(status: StatusCode, sku: &str) -> Response {
    (status, Json(json!({ "sku": sku, "status": "accepted" }))).into_response()
}
