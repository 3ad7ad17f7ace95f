//! The marketplace's stock feed: per offer the quantity the seller last reported, when
//! (`stock_updated_at`), and the quantity already promised to open orders. It is seeded with
//! the last edge case of marketplace commerce: stale stock (not updated within the freshness
//! SLA) and oversold stock (less on hand than open orders need), which must be flagged to the
//! offer's owner before checkout. It owns the stock entries and their routes; ages count from
//! the sandbox's start, so the seeded flags hold for as long as a test runs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::faults::{self, FaultQueue};
use super::marketplace::{number, updated_since};
use super::{ApiError, SandboxState};

/// Stock older than this is stale.
pub(crate) const FRESHNESS_SLA: SignedDuration = SignedDuration::from_hours(24);
/// Who is told about a flagged offer: the seller, through seller support.
const OWNER: &str = "seller-support";
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
const TOKEN_TAG: &str = "st1:";

/// `(offer_id, shop_id, quantity, open_order_quantity, minutes since the stock update)`:
/// 18 healthy offers (two on the boundary: quantity equal to open orders, and zero of
/// both), 3 stale, 2 oversold, 1 both.
const SEEDED: [(i64, i64, i64, i64, i64); 24] = [
    (900_001, 2001, 40, 2, 5),
    (900_002, 2001, 12, 0, 9),
    (900_003, 2002, 7, 7, 14),
    (900_004, 2002, 0, 0, 20),
    (900_005, 2003, 250, 31, 26),
    (900_006, 2003, 3, 5, 31),
    (900_007, 2004, 18, 1, 35),
    (900_008, 2004, 60, 0, 3 * 24 * 60),
    (900_009, 2005, 9, 4, 42),
    (900_010, 2005, 1, 1, 47),
    (900_011, 2006, 33, 3, 2 * 24 * 60),
    (900_012, 2006, 0, 2, 52),
    (900_013, 2007, 15, 2, 58),
    (900_014, 2007, 80, 12, 61),
    (900_015, 2008, 5, 0, 66),
    (900_016, 2008, 1, 4, 10 * 24 * 60),
    (900_017, 2009, 44, 8, 70),
    (900_018, 2009, 21, 0, 75),
    (900_019, 2010, 9, 9, 10 * 24 * 60 + 7),
    (900_020, 2010, 100, 99, 84),
    (900_021, 2011, 6, 1, 90),
    (900_022, 2011, 2, 0, 95),
    (900_023, 2012, 70, 10, 101),
    (900_024, 2012, 13, 5, 110),
];

#[derive(Debug, Clone)]
struct Entry {
    offer_id: i64,
    shop_id: i64,
    quantity: i64,
    open_order_quantity: i64,
    stock_updated_at: Timestamp,
}

impl Entry {
    fn to_json(&self) -> Value {
        json!({
            "offer_id": self.offer_id,
            "shop_id": self.shop_id,
            "shop_sku": format!("STK-{}", self.offer_id),
            "quantity": self.quantity,
            "open_order_quantity": self.open_order_quantity,
            "stock_updated_at": self.stock_updated_at.to_string(),
        })
    }

    fn key(&self) -> (Timestamp, i64) {
        (self.stock_updated_at, self.offer_id)
    }
}

/// The stock feed's state.
#[derive(Debug)]
pub(crate) struct Stock {
    /// Sorted by (`stock_updated_at`, `offer_id`): the listing order.
    entries: Vec<Entry>,
    pub(crate) faults: FaultQueue,
}

impl Stock {
    /// The seeded entries, their ages counted back from `now` (whole seconds).
    pub(crate) fn seeded(now: Timestamp) -> Self {
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let mut entries: Vec<Entry> = SEEDED
            .iter()
            .map(|&(offer_id, shop_id, quantity, open, minutes)| Entry {
                offer_id,
                shop_id,
                quantity,
                open_order_quantity: open,
                stock_updated_at: now - SignedDuration::from_mins(minutes),
            })
            .collect();
        entries.sort_by_key(Entry::key);
        Self {
            entries,
            faults: FaultQueue::default(),
        }
    }

    /// Applies a seller's stock updates: each names an `offer_id` and sets `quantity`
    /// and/or `open_order_quantity`, stamped `stock_updated_at` (default `now`); an unknown
    /// offer is added and then needs `shop_id`, `quantity` and `open_order_quantity`. All or
    /// nothing. Returns how many entries changed.
    pub(crate) fn update(&mut self, updates: &[Value], now: Timestamp) -> Result<usize, String> {
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let mut entries = self.entries.clone();
        for (i, update) in updates.iter().enumerate() {
            let fail = |message: String| format!("update [{i}]: {message}");
            let Value::Object(fields) = update else {
                return Err(fail("expected a JSON object".to_owned()));
            };
            const KNOWN: [&str; 5] = [
                "offer_id",
                "shop_id",
                "quantity",
                "open_order_quantity",
                "stock_updated_at",
            ];
            if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                return Err(fail(format!(
                    "unknown field `{unknown}`; the fields are {}",
                    KNOWN.join(", ")
                )));
            }
            let integer = |name: &str| -> Result<Option<i64>, String> {
                match fields.get(name) {
                    None => Ok(None),
                    Some(value) => value
                        .as_i64()
                        .filter(|n| *n >= 0 || name == "offer_id")
                        .map(Some)
                        .ok_or_else(|| fail(format!("`{name}` must be a whole number ≥ 0"))),
                }
            };
            let offer_id =
                integer("offer_id")?.ok_or_else(|| fail("`offer_id` is required".into()))?;
            let at = match fields.get("stock_updated_at") {
                None => now,
                Some(value) => value
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .ok_or_else(|| {
                        fail("`stock_updated_at` must be an RFC 3339 timestamp".into())
                    })?,
            };
            let (quantity, open) = (integer("quantity")?, integer("open_order_quantity")?);
            match entries.iter_mut().find(|e| e.offer_id == offer_id) {
                Some(entry) => {
                    if let Some(shop) = integer("shop_id")? {
                        entry.shop_id = shop;
                    }
                    entry.quantity = quantity.unwrap_or(entry.quantity);
                    entry.open_order_quantity = open.unwrap_or(entry.open_order_quantity);
                    entry.stock_updated_at = at;
                }
                None => {
                    let (Some(shop_id), Some(quantity), Some(open)) =
                        (integer("shop_id")?, quantity, open)
                    else {
                        return Err(fail(format!(
                            "offer {offer_id} is new: it needs `shop_id`, `quantity` and \
                             `open_order_quantity`"
                        )));
                    };
                    entries.push(Entry {
                        offer_id,
                        shop_id,
                        quantity,
                        open_order_quantity: open,
                        stock_updated_at: at,
                    });
                }
            }
        }
        entries.sort_by_key(Entry::key);
        self.entries = entries;
        Ok(updates.len())
    }

    /// The offers to flag at `now`, with why.
    fn flagged(&self, now: Timestamp) -> Vec<Value> {
        let mut flagged: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| stale(e, now) || e.quantity < e.open_order_quantity)
            .collect();
        flagged.sort_by_key(|e| e.offer_id);
        flagged
            .into_iter()
            .map(|e| {
                let mut flags = Vec::new();
                if stale(e, now) {
                    flags.push("stale");
                }
                if e.quantity < e.open_order_quantity {
                    flags.push("oversold");
                }
                json!({
                    "offer_id": e.offer_id,
                    "shop_id": e.shop_id,
                    "flags": flags,
                    "owner": OWNER,
                    "quantity": e.quantity,
                    "open_order_quantity": e.open_order_quantity,
                    "shortfall": (e.open_order_quantity - e.quantity).max(0),
                    "stock_updated_at": e.stock_updated_at.to_string(),
                    "stock_age_secs": now.duration_since(e.stock_updated_at).as_secs(),
                })
            })
            .collect()
    }
}

fn stale(entry: &Entry, now: Timestamp) -> bool {
    now.duration_since(entry.stock_updated_at) > FRESHNESS_SLA
}

fn encode_token(key: (Timestamp, i64)) -> String {
    let text = format!("{TOKEN_TAG}{}:{}", key.0.as_millisecond(), key.1);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_token(token: &str) -> Option<(Timestamp, i64)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (millis, offer) = text.strip_prefix(TOKEN_TAG)?.split_once(':')?;
    let at = Timestamp::from_millisecond(millis.parse().ok()?).ok()?;
    Some((at, offer.parse().ok()?))
}

/// `GET /marketplace/api/stock?updated_since=&page_token=&limit=`: stock by
/// `stock_updated_at` (then `offer_id`), `{"stock": [...], "next_page_token": ...}`;
/// `updated_since` is inclusive; the token names the last entry handed out.
pub(crate) async fn list_stock(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let since = updated_since(&query)?;
    let after = match query.get("page_token").map(String::as_str) {
        None | Some("") => None,
        Some(token) => Some(decode_token(token).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid page_token {token:?}: pass the previous page's next_page_token as given"
            ))
        })?),
    };
    let limit = number(&query, "limit")?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    if let Some(failure) = faults::apply(&state, faults::Faulty::Stock).await {
        return Ok(failure);
    }
    let stock = state.stock();
    let mut matching = stock
        .entries
        .iter()
        .filter(|e| since.is_none_or(|s| e.stock_updated_at >= s))
        .filter(|e| after.is_none_or(|a| e.key() > a));
    let page: Vec<&Entry> = matching.by_ref().take(limit).collect();
    let token = match (matching.next(), page.last()) {
        (Some(_), Some(last)) => Some(encode_token(last.key())),
        _ => None,
    };
    let records: Vec<Value> = page.iter().map(|e| e.to_json()).collect();
    Ok(Json(json!({ "stock": records, "next_page_token": token })).into_response())
}

/// `POST /_sandbox/marketplace/stock` with a JSON array of updates (see `Stock::update`):
/// a seller reports stock. Answers `{"updated": n}`.
pub(crate) async fn post_stock(
    State(state): State<Arc<SandboxState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let updates: Vec<Value> = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!("expected a JSON array of stock updates: {err}"))
    })?;
    let updated = state
        .stock()
        .update(&updates, Timestamp::now())
        .map_err(ApiError::unprocessable)?;
    Ok(Json(json!({ "updated": updated })).into_response())
}

/// `GET /_sandbox/marketplace/stock/expected`: the offers a stock-freshness flow must flag
/// now, and to whom.
pub(crate) async fn expected(State(state): State<Arc<SandboxState>>) -> Response {
    let now = Timestamp::now();
    let stock = state.stock();
    let flagged = stock.flagged(now);
    Json(json!({
        "as_of": Timestamp::from_second(now.as_second()).unwrap_or(now).to_string(),
        "freshness_sla_secs": FRESHNESS_SLA.as_secs(),
        "offers": stock.entries.len(),
        "healthy": stock.entries.len() - flagged.len(),
        "flagged": flagged,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_flags_three_stale_two_oversold_and_one_both() {
        let now = Timestamp::constant(1_800_000_000, 0);
        let stock = Stock::seeded(now);
        let flagged = stock.flagged(now);
        let flags = |id: i64| -> Vec<String> {
            flagged
                .iter()
                .find(|f| f["offer_id"] == id)
                .map(|f| serde_json::from_value(f["flags"].clone()).unwrap_or_default())
                .unwrap_or_default()
        };
        assert_eq!(flagged.len(), 6);
        assert_eq!(flags(900_008), ["stale"]);
        assert_eq!(flags(900_011), ["stale"]);
        assert_eq!(flags(900_019), ["stale"]);
        assert_eq!(flags(900_006), ["oversold"]);
        assert_eq!(flags(900_012), ["oversold"]);
        assert_eq!(flags(900_016), ["stale", "oversold"]);
        // On the boundary, not flagged: quantity equal to open orders, nothing of either.
        assert!(flags(900_003).is_empty());
        assert!(flags(900_004).is_empty());
    }

    #[test]
    fn page_tokens_round_trip() {
        let key = (Timestamp::constant(1_800_000_000, 0), 900_001);
        assert_eq!(decode_token(&encode_token(key)), Some(key));
        assert_eq!(decode_token("bm9wZQ"), None);
    }
}
