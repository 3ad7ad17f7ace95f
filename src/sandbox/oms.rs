//! The simulated order management system (the seller side): it receives one order per seller
//! leg under an `Idempotency-Key`, refuses a second order for the same marketplace order,
//! fails or delays receipts as its fault queue says, and ships what it received — one
//! shipment per order, or two partial ones for about a fifth of orders — a configurable delay
//! after receipt. It owns the received orders and its shipments only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::faults::FaultQueue;
use super::{ApiError, SandboxState};

/// The header a client sends to make an order delivery idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header the OMS adds when it answers a replay without recording it.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The share of orders shipped in two parts.
const SPLIT_SHIPMENT_SHARE: f64 = 0.2;
/// Where the received lines may be, in order of preference: flows name them differently.
const LINE_KEYS: &[&str] = &["lines", "order_lines", "items"];
const CARRIERS: &[&str] = &["DHL", "UPS", "DPD", "GLS", "Colissimo"];

/// One order the OMS accepted and recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedOmsOrder {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// The ID the OMS gave the order, `OMS-<n>`.
    pub oms_order_id: String,
    /// The body's `marketplace_order_id`.
    pub marketplace_order_id: String,
    /// The JSON body.
    pub body: Value,
    /// When the OMS accepted the order.
    pub received_at: Timestamp,
}

/// Counters of the OMS's order traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OmsStats {
    /// Every order request that reached the OMS, whatever its fate.
    pub requests: usize,
    /// Orders accepted and recorded.
    pub received: usize,
    /// Requests answered as replays of an already accepted idempotency key.
    pub replays: usize,
    /// Requests refused with 409: a marketplace order already received under another key.
    pub duplicate_orders: usize,
    /// Requests refused with 422: a known key reused for a different marketplace order.
    pub key_reused: usize,
    /// Requests without an `Idempotency-Key`, refused with 400.
    pub missing_idempotency_key: usize,
    /// Requests failed by an injected fault.
    pub faulted: usize,
    /// Requests refused because the body was not a JSON object with a
    /// `marketplace_order_id`.
    pub invalid_body: usize,
    /// Shipments created, visible or not yet.
    pub shipments: usize,
}

/// The OMS's in-memory state.
#[derive(Debug)]
pub(crate) struct Oms {
    pub(crate) received: Vec<ReceivedOmsOrder>,
    pub(crate) stats: OmsStats,
    by_key: HashMap<String, usize>,
    by_marketplace_id: HashMap<String, usize>,
    /// In creation order; a shipment is listed once `visible_at` has passed.
    shipments: Vec<Shipment>,
    seed: u64,
    ship_after: SignedDuration,
    pub(crate) faults: FaultQueue,
}

#[derive(Debug)]
struct Shipment {
    visible_at: Timestamp,
    body: Value,
}

impl Oms {
    /// An empty OMS shipping from `seed`, `ship_after_ms` after each receipt.
    pub(crate) fn new(seed: u64, ship_after_ms: u64) -> Self {
        Self {
            received: Vec::new(),
            stats: OmsStats::default(),
            by_key: HashMap::new(),
            by_marketplace_id: HashMap::new(),
            shipments: Vec::new(),
            seed,
            ship_after: SignedDuration::from_millis(
                i64::try_from(ship_after_ms).unwrap_or(i64::MAX),
            ),
            faults: FaultQueue::default(),
        }
    }

    /// The shipments visible at `now` and updated at or after `since`, in delivery order,
    /// from `offset`, at most `max`; and how many match in total.
    pub(crate) fn page(
        &self,
        now: Timestamp,
        since: Option<Timestamp>,
        offset: usize,
        max: usize,
    ) -> (Vec<Value>, usize) {
        let mut matching: Vec<(Timestamp, usize)> = self
            .shipments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.visible_at <= now && since.is_none_or(|since| s.visible_at >= since))
            .map(|(i, s)| (s.visible_at, i))
            .collect();
        matching.sort_unstable();
        let page = matching
            .iter()
            .skip(offset)
            .take(max)
            .map(|(_, i)| self.shipments[*i].body.clone())
            .collect();
        (page, matching.len())
    }

    fn receive(&mut self, key: String, marketplace_order_id: String, body: Value) -> Response {
        if let Some(&i) = self.by_key.get(&key) {
            let existing = &self.received[i];
            if existing.marketplace_order_id != marketplace_order_id {
                self.stats.key_reused += 1;
                return ApiError::unprocessable(format!(
                    "Idempotency-Key {key:?} was used for marketplace order {:?}",
                    existing.marketplace_order_id
                ))
                .into_response();
            }
            self.stats.replays += 1;
            let mut response = created(StatusCode::OK, &existing.oms_order_id);
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            return response;
        }
        if let Some(&i) = self.by_marketplace_id.get(&marketplace_order_id) {
            self.stats.duplicate_orders += 1;
            let oms_order_id = &self.received[i].oms_order_id;
            tracing::info!(
                marketplace_order_id = %marketplace_order_id,
                "Sandbox OMS refused a duplicate marketplace order."
            );
            return (
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "duplicate marketplace order",
                    "oms_order_id": oms_order_id,
                })),
            )
                .into_response();
        }
        let oms_order_id = format!("OMS-{}", self.received.len() + 1);
        let received_at = Timestamp::now();
        self.plan_shipments(&oms_order_id, &marketplace_order_id, &body, received_at);
        self.by_key.insert(key.clone(), self.received.len());
        self.by_marketplace_id
            .insert(marketplace_order_id.clone(), self.received.len());
        self.received.push(ReceivedOmsOrder {
            key,
            oms_order_id: oms_order_id.clone(),
            marketplace_order_id: marketplace_order_id.clone(),
            body,
            received_at,
        });
        self.stats.received += 1;
        tracing::info!(
            marketplace_order_id = %marketplace_order_id,
            oms_order_id = %oms_order_id,
            "Sandbox OMS received an order."
        );
        created(StatusCode::CREATED, &oms_order_id)
    }

    /// Creates the shipments of a received order, deterministically from the seed and the
    /// marketplace order ID so a rerun of the same flow sees the same split.
    fn plan_shipments(
        &mut self,
        oms_order_id: &str,
        marketplace_order_id: &str,
        body: &Value,
        received_at: Timestamp,
    ) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ fnv1a(marketplace_order_id.as_bytes()));
        let lines = received_lines(body);
        let split = rng.random_bool(SPLIT_SHIPMENT_SHARE);
        let parts: Vec<Vec<Value>> = match lines.len() {
            n if split && n >= 2 => {
                let (first, rest) = lines.split_at(n / 2);
                vec![first.to_vec(), rest.to_vec()]
            }
            1 if split && quantity(&lines[0]) >= 2 => {
                // One multi-unit line: ship part of the units first.
                let total = quantity(&lines[0]);
                let mut first = lines[0].clone();
                let mut rest = lines[0].clone();
                first["quantity"] = json!(total / 2);
                rest["quantity"] = json!(total - total / 2);
                vec![vec![first], vec![rest]]
            }
            _ => vec![lines],
        };
        let carrier = CARRIERS[rng.random_range(0..CARRIERS.len())];
        for (part, lines) in parts.into_iter().enumerate() {
            // A later part ships one more delay later, so it is a separate, later update.
            let delay = self.ship_after * i32::try_from(part + 1).unwrap_or(1);
            let visible_at = received_at.checked_add(delay).unwrap_or(received_at);
            let number = self.shipments.len() + 1;
            let tracking_number = format!(
                "{}{:012}",
                &carrier[..2].to_uppercase(),
                rng.random_range(0..1_000_000_000_000_u64)
            );
            self.shipments.push(Shipment {
                visible_at,
                body: json!({
                    "shipment_id": format!("OMS-SHP-{number}"),
                    "oms_order_id": oms_order_id,
                    "marketplace_order_id": marketplace_order_id,
                    "carrier": carrier,
                    "tracking_number": tracking_number,
                    "lines": lines,
                    "shipped_at": visible_at,
                    "updated_at": visible_at,
                }),
            });
            self.stats.shipments += 1;
        }
    }
}

/// `POST /oms/orders`.
pub(crate) async fn post_order(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let decision = {
        let mut oms = state.oms();
        oms.stats.requests += 1;
        oms.faults.decide(Instant::now())
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(failure) = decision.failure {
        state.oms().stats.faulted += 1;
        tracing::info!("Sandbox OMS order failed by an injected fault.");
        return Ok(failure.into_response());
    }
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key is not visible ASCII"))
        })
        .transpose()?
        .filter(|key| !key.is_empty())
        .map(str::to_owned);
    let Some(key) = key else {
        state.oms().stats.missing_idempotency_key += 1;
        return Err(ApiError::bad_request(
            "an Idempotency-Key header is required",
        ));
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            state.oms().stats.invalid_body += 1;
            return Err(ApiError::bad_request(format!(
                "body is not valid JSON: {err}"
            )));
        }
    };
    let Some(marketplace_order_id) = marketplace_order_id(&body) else {
        state.oms().stats.invalid_body += 1;
        return Err(ApiError::unprocessable(
            "body must be a JSON object with a `marketplace_order_id`",
        ));
    };
    Ok(state.oms().receive(key, marketplace_order_id, body))
}

/// `GET /oms/shipments?updated_since=&offset=&max=`.
pub(crate) async fn list_shipments(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let (since, offset, max) = super::marketplace::offset_page(&query)?;
    let (shipments, total_count) = state.oms().page(Timestamp::now(), since, offset, max);
    Ok(Json(json!({ "shipments": shipments, "total_count": total_count })).into_response())
}

/// `GET /_sandbox/oms/received`.
pub(crate) async fn received(State(state): State<Arc<SandboxState>>) -> Json<Value> {
    let oms = state.oms();
    Json(json!({ "orders": oms.received, "stats": oms.stats }))
}

fn created(status: StatusCode, oms_order_id: &str) -> Response {
    (status, Json(json!({ "oms_order_id": oms_order_id }))).into_response()
}

fn marketplace_order_id(body: &Value) -> Option<String> {
    match body.get("marketplace_order_id")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The received lines reduced to what a shipment names: the line's `order_line_id` and
/// `sku` as received (whichever it has) and its quantity (1 when absent).
fn received_lines(body: &Value) -> Vec<Value> {
    let lines = LINE_KEYS
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_array));
    let Some(lines) = lines else {
        return Vec::new();
    };
    lines
        .iter()
        .map(|line| {
            let mut shipped = Map::new();
            for key in ["order_line_id", "sku"] {
                if let Some(value) = line.get(key) {
                    shipped.insert(key.to_owned(), value.clone());
                }
            }
            shipped.insert("quantity".to_owned(), json!(quantity(line)));
            Value::Object(shipped)
        })
        .collect()
}

fn quantity(line: &Value) -> u64 {
    line.get("quantity").and_then(Value::as_u64).unwrap_or(1)
}

/// FNV-1a: a hash that, unlike `DefaultHasher`, is promised never to change between Rust
/// releases, so seeded shipments stay the same.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
