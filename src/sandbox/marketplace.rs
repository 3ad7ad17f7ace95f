//! The simulated marketplace operator API (Mirakl-like): the offer store, its two list
//! endpoints (offset pagination and opaque page tokens), the control endpoints that append
//! offers and summarise what a correct flow must deliver, and its fault queue. It owns the
//! offers only; it never calls the other simulated systems.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::faults::FaultQueue;
use super::{ApiError, SandboxState, seed};

/// Default page size of both list endpoints.
const DEFAULT_PAGE: usize = 100;
/// Largest page size a client may ask for; larger requests are capped, not refused.
const MAX_PAGE: usize = 1000;
/// The currencies a valid offer may carry.
const KNOWN_CURRENCIES: &[&str] = &["EUR", "USD", "GBP"];
/// The only system allowed to update offers at the source.
const OWNER: &str = "marketplace";

/// What a correct flow must deliver out of the offers the marketplace holds, and why the
/// others must not be delivered. Each offer lands in exactly one bucket, checked in this
/// order: duplicate, missing price, negative quantity, unknown currency, ownership
/// violation, other, valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferSummary {
    /// Every offer entry, duplicates included.
    pub offers: usize,
    /// Offers a correct flow must deliver.
    pub valid: usize,
    /// Offers without a `price` (or with a null one).
    pub missing_price: usize,
    /// Offers with a `quantity` below zero.
    pub negative_quantity: usize,
    /// Offers whose `currency_iso_code` is not EUR, USD or GBP.
    pub unknown_currency: usize,
    /// Entries repeating an offer ID seen earlier in delivery order.
    pub duplicates: usize,
    /// Offers last updated by a system other than the marketplace.
    pub ownership_violations: usize,
    /// Offers invalid in some other way (only possible with posted offers, for example a
    /// non-integer `quantity`).
    pub other_invalid: usize,
    /// The IDs of the valid offers, in delivery order.
    pub valid_offer_ids: Vec<i64>,
}

/// The marketplace's in-memory state.
#[derive(Debug)]
pub(crate) struct Marketplace {
    /// Kept sorted by (`updated_at`, insertion sequence): the delivery order.
    offers: Vec<StoredOffer>,
    next_seq: u64,
    pub(crate) faults: FaultQueue,
}

#[derive(Debug, Clone)]
struct StoredOffer {
    seq: u64,
    offer_id: i64,
    updated_at: Timestamp,
    body: Value,
}

impl Marketplace {
    /// Seeds `count` offers from `seed`.
    pub(crate) fn seeded(seed: u64, count: usize) -> Self {
        let mut marketplace = Self {
            offers: Vec::with_capacity(count),
            next_seq: 0,
            faults: FaultQueue::default(),
        };
        for body in seed::offers(seed, count) {
            // Seeded offers always carry an integer ID and a valid timestamp; anything else
            // would be a bug in `seed`, so such an offer is skipped rather than panicking.
            if let Ok(offer) = parse_offer(body, Timestamp::UNIX_EPOCH) {
                marketplace.push(offer.0, offer.1, offer.2);
            }
        }
        marketplace.sort();
        marketplace
    }

    /// Appends offers, replacing any entries with the same `offer_id`. An offer without an
    /// `updated_at` gets `now` (whole seconds). All or nothing: one bad offer rejects the
    /// batch. Returns how many offers were stored.
    pub(crate) fn upsert(&mut self, batch: Value, now: Timestamp) -> Result<usize, String> {
        let Value::Array(items) = batch else {
            return Err("expected a JSON array of offers".to_owned());
        };
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let parsed = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| parse_offer(item, now).map_err(|err| format!("offer [{i}]: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let replaced: HashSet<i64> = parsed.iter().map(|(id, _, _)| *id).collect();
        self.offers.retain(|o| !replaced.contains(&o.offer_id));
        let stored = parsed.len();
        for (offer_id, updated_at, body) in parsed {
            self.push(offer_id, updated_at, body);
        }
        self.sort();
        Ok(stored)
    }

    /// The offers updated at or after `since`, in delivery order, from `offset`, at most
    /// `max`; and how many match in total.
    pub(crate) fn page(
        &self,
        since: Option<Timestamp>,
        offset: usize,
        max: usize,
    ) -> (Vec<Value>, usize) {
        let start = since.map_or(0, |since| {
            self.offers.partition_point(|o| o.updated_at < since)
        });
        let matching = &self.offers[start..];
        let page = matching
            .iter()
            .skip(offset)
            .take(max)
            .map(|o| o.body.clone())
            .collect();
        (page, matching.len())
    }

    /// Classifies every offer; see [`OfferSummary`].
    pub(crate) fn summary(&self) -> OfferSummary {
        let mut summary = OfferSummary {
            offers: self.offers.len(),
            valid: 0,
            missing_price: 0,
            negative_quantity: 0,
            unknown_currency: 0,
            duplicates: 0,
            ownership_violations: 0,
            other_invalid: 0,
            valid_offer_ids: Vec::new(),
        };
        let mut seen = HashSet::new();
        for offer in &self.offers {
            let body = &offer.body;
            let quantity = body.get("quantity").and_then(Value::as_i64);
            let currency = body.get("currency_iso_code").and_then(Value::as_str);
            if !seen.insert(offer.offer_id) {
                summary.duplicates += 1;
            } else if body.get("price").is_none_or(Value::is_null) {
                summary.missing_price += 1;
            } else if quantity.is_some_and(|q| q < 0) {
                summary.negative_quantity += 1;
            } else if currency.is_some_and(|c| !KNOWN_CURRENCIES.contains(&c)) {
                summary.unknown_currency += 1;
            } else if body.get("last_updated_by").and_then(Value::as_str) != Some(OWNER) {
                summary.ownership_violations += 1;
            } else if quantity.is_none() || currency.is_none() {
                summary.other_invalid += 1;
            } else {
                summary.valid += 1;
                summary.valid_offer_ids.push(offer.offer_id);
            }
        }
        summary
    }

    fn push(&mut self, offer_id: i64, updated_at: Timestamp, body: Value) {
        self.offers.push(StoredOffer {
            seq: self.next_seq,
            offer_id,
            updated_at,
            body,
        });
        self.next_seq += 1;
    }

    fn sort(&mut self) {
        self.offers.sort_by_key(|o| (o.updated_at, o.seq));
    }
}

/// `GET /marketplace/api/offers?updated_since=&offset=&max=`.
pub(crate) async fn list_offers(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let (since, offset, max) = offset_page(&query)?;
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Marketplace).await {
        return Ok(failure);
    }
    let (offers, total_count) = state.marketplace().page(since, offset, max);
    Ok(Json(json!({ "offers": offers, "total_count": total_count })).into_response())
}

/// `GET /marketplace/api/v2/offers?updated_since=&page_token=&limit=`.
pub(crate) async fn list_offers_v2(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let since = updated_since(&query)?;
    // The token is documented as opaque; it happens to be the offset in base 10.
    let offset = match query.get("page_token").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid page_token {token:?}")))?,
    };
    let limit = number(&query, "limit")?
        .unwrap_or(DEFAULT_PAGE)
        .min(MAX_PAGE);
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Marketplace).await {
        return Ok(failure);
    }
    let (data, total) = state.marketplace().page(since, offset, limit);
    let next = offset.saturating_add(data.len());
    let next_page_token = (!data.is_empty() && next < total).then(|| next.to_string());
    Ok(Json(json!({ "data": data, "next_page_token": next_page_token })).into_response())
}

/// `POST /_sandbox/marketplace/offers` with a JSON array of offers.
pub(crate) async fn post_offers(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let batch: Value = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("body is not valid JSON: {err}")))?;
    let stored = state
        .marketplace()
        .upsert(batch, Timestamp::now())
        .map_err(ApiError::bad_request)?;
    tracing::info!(offers = stored, "Sandbox marketplace offers upserted.");
    Ok((StatusCode::OK, Json(json!({ "stored": stored }))).into_response())
}

/// The `updated_since`, `offset` and `max` (page size, capped) of an offset-paged listing;
/// the offers, orders and OMS shipment lists all read them this way.
pub(crate) fn offset_page(
    query: &HashMap<String, String>,
) -> Result<(Option<Timestamp>, usize, usize), ApiError> {
    let since = updated_since(query)?;
    let offset = number(query, "offset")?.unwrap_or(0);
    let max = number(query, "max")?.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    Ok((since, offset, max))
}

/// `GET /_sandbox/marketplace/summary`.
pub(crate) async fn summary(State(state): State<Arc<SandboxState>>) -> Json<OfferSummary> {
    Json(state.marketplace().summary())
}

fn parse_offer(body: Value, now: Timestamp) -> Result<(i64, Timestamp, Value), String> {
    let Value::Object(mut map) = body else {
        return Err("an offer must be a JSON object".to_owned());
    };
    let offer_id = map
        .get("offer_id")
        .and_then(Value::as_i64)
        .ok_or("`offer_id` must be an integer")?;
    let updated_at = match map.get("updated_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(text)) => text
            .parse::<Timestamp>()
            .map_err(|err| format!("`updated_at` {text:?} is not RFC 3339: {err}"))?,
        Some(_) => return Err("`updated_at` must be an RFC 3339 string".to_owned()),
    };
    // Stored in UTC so every offer renders its timestamp the same way.
    map.insert("updated_at".into(), json!(updated_at.to_string()));
    Ok((offer_id, updated_at, Value::Object(map)))
}

pub(crate) fn updated_since(
    query: &HashMap<String, String>,
) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = query.get("updated_since").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    // An unencoded `+` in an offset arrives as a space; accept it, as lenient APIs do.
    let repaired = text.replace(' ', "+");
    repaired.parse::<Timestamp>().map(Some).map_err(|err| {
        ApiError::bad_request(format!("updated_since {text:?} is not RFC 3339: {err}"))
    })
}

pub(crate) fn number(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<usize>, ApiError> {
    query
        .get(name)
        .map(|text| {
            text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "{name} must be a non-negative integer, got {text:?}"
                ))
            })
        })
        .transpose()
}
