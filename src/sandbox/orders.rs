//! The simulated marketplace order API (Mirakl-like): orders split by seller leg, waiting for
//! acceptance under a deadline, auto-cancelled once it passes, accepted or refused line by
//! line, and shipped in one or several shipments. It owns the orders, the shipments posted
//! against them and the order counters; webhook delivery lives in `webhooks` and only reads
//! orders from here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::faults::FaultQueue;
use super::{ApiError, SandboxState, seed};

/// The 409 message of a late acceptance, as clients will match on it.
const DEADLINE_PASSED: &str = "deadline passed; order auto-cancelled";

/// The state of an order or of one of its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    /// Created; the seller must accept or refuse it before the acceptance deadline.
    WaitingAcceptance,
    /// Accepted (at least one line); waiting for shipments, possibly partly shipped.
    Shipping,
    /// Every accepted line fully shipped.
    Shipped,
    /// Confirmed received by the customer.
    Received,
    /// Every line refused by the seller.
    Refused,
    /// Cancelled, here always because the acceptance deadline passed.
    Canceled,
}

/// What a correct order flow must achieve, and what went wrong so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    /// Customer baskets (commercial orders).
    pub baskets: usize,
    /// Baskets split into two or more seller legs.
    pub split_baskets: usize,
    /// Orders, one per seller leg of a basket.
    pub legs: usize,
    /// Orders still waiting for acceptance.
    pub waiting_acceptance: usize,
    /// Orders accepted and not yet fully shipped.
    pub shipping: usize,
    /// Orders fully shipped.
    pub shipped: usize,
    /// Orders received by the customer.
    pub received: usize,
    /// Orders whose every line was refused.
    pub refused: usize,
    /// Orders cancelled.
    pub canceled: usize,
    /// Orders cancelled because their acceptance deadline passed.
    pub auto_cancelled: usize,
    /// Orders accepted or refused before their deadline (first decision only).
    pub accepted_before_deadline: usize,
    /// Acceptances refused with 409 because the deadline had passed.
    pub accepted_late_refused: usize,
    /// Webhook events delivered a second time with the same event ID.
    pub duplicate_events_sent: usize,
    /// Orders delivered again as a new event (new event ID, same `order_id`).
    pub duplicate_order_ids_sent: usize,
    /// Webhook deliveries answered 2xx, duplicates included.
    pub events_delivered: usize,
    /// Webhook events given up after every retry failed.
    pub events_failed: usize,
    /// Shipments recorded.
    pub shipments: usize,
    /// Orders in `SHIPPING` with some but not all quantities shipped.
    pub partially_shipped: usize,
    /// Calls refused because the order was in the wrong state for them: an acceptance of an
    /// order no longer waiting for one, a shipment of an order not in `SHIPPING` (not yet
    /// accepted, say). A client that respects the order lifecycle makes none.
    pub calls_out_of_order: usize,
}

/// One seeded order, one seller leg of a basket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Order {
    pub(crate) order_id: String,
    pub(crate) commercial_id: String,
    pub(crate) shop_id: i64,
    pub(crate) created_at: Timestamp,
    pub(crate) acceptance_deadline: Timestamp,
    pub(crate) order_state: OrderState,
    pub(crate) currency_iso_code: String,
    pub(crate) total_price: String,
    pub(crate) customer: Customer,
    pub(crate) order_lines: Vec<OrderLine>,
    pub(crate) updated_at: Timestamp,
}

/// The buyer of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Customer {
    pub(crate) customer_id: String,
    pub(crate) firstname: String,
    pub(crate) lastname: String,
    pub(crate) shipping_address: Address,
}

/// Where an order ships to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Address {
    pub(crate) city: String,
    pub(crate) country: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OrderLine {
    pub(crate) order_line_id: String,
    pub(crate) offer_sku: String,
    pub(crate) product_title: String,
    pub(crate) quantity: u32,
    /// The unit price as a decimal string.
    pub(crate) price: String,
    #[serde(skip)]
    pub(crate) unit_cents: i64,
    pub(crate) order_line_state: OrderState,
    pub(crate) shipped_quantity: u32,
}

/// The marketplace's order state.
#[derive(Debug, Default)]
pub(crate) struct Orders {
    /// In insertion order; listing sorts by (`updated_at`, insertion).
    orders: Vec<StoredOrder>,
    index: HashMap<String, usize>,
    shipments: Vec<Value>,
    redeliver: HashSet<String>,
    duplicate: HashSet<String>,
    pub(crate) summary: OrderSummary,
    pub(crate) faults: FaultQueue,
}

#[derive(Debug)]
struct StoredOrder {
    order: Order,
    /// The per-line decision (`true` accepted), in line order, once one was made.
    decision: Option<Vec<bool>>,
    auto_cancelled: bool,
}

/// What an accept request asked for, resolved to one decision per line.
#[derive(Debug, Deserialize)]
struct AcceptBody {
    #[serde(default)]
    order_lines: Option<Vec<AcceptLine>>,
    #[serde(default)]
    accepted: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct AcceptLine {
    id: String,
    accepted: bool,
}

#[derive(Debug, Deserialize)]
struct ShipmentBody {
    carrier: String,
    tracking_number: String,
    lines: Vec<ShipmentLine>,
}

#[derive(Debug, Deserialize)]
struct ShipmentLine {
    order_line_id: String,
    quantity: u32,
}

/// An order plus what its webhook emission must do with it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedEvent {
    pub(crate) order: Value,
    pub(crate) order_id: String,
    pub(crate) occurred_at: Timestamp,
    pub(crate) redeliver: bool,
    pub(crate) duplicate: bool,
}

/// Which kind of webhook delivery succeeded or failed, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    First,
    Redelivery,
    DuplicateOrder,
}

impl Orders {
    /// Seeds `baskets` baskets from `seed`, created at `now` with `deadline_secs` to accept.
    pub(crate) fn seeded(seed: u64, baskets: usize, now: Timestamp, deadline_secs: u64) -> Self {
        let deadline = SignedDuration::from_secs(i64::try_from(deadline_secs).unwrap_or(i64::MAX));
        let seeded = seed::orders(seed, baskets, now, deadline);
        let mut legs_per_basket: HashMap<&str, usize> = HashMap::new();
        for order in &seeded {
            *legs_per_basket.entry(&order.commercial_id).or_default() += 1;
        }
        let summary = OrderSummary {
            baskets,
            split_baskets: legs_per_basket.values().filter(|legs| **legs > 1).count(),
            legs: seeded.len(),
            ..OrderSummary::default()
        };
        let (redeliver, duplicate) = seed::duplicate_events(seed, seeded.len());
        let pick = |picks: Vec<usize>| -> HashSet<String> {
            picks
                .into_iter()
                .filter_map(|i| seeded.get(i).map(|o| o.order_id.clone()))
                .collect()
        };
        let redeliver = pick(redeliver);
        let duplicate = pick(duplicate);
        let index = seeded
            .iter()
            .enumerate()
            .map(|(i, o)| (o.order_id.clone(), i))
            .collect();
        let orders = seeded
            .into_iter()
            .map(|order| StoredOrder {
                order,
                decision: None,
                auto_cancelled: false,
            })
            .collect();
        Self {
            orders,
            index,
            redeliver,
            duplicate,
            summary,
            ..Self::default()
        }
    }

    /// Cancels every order still waiting for acceptance past its deadline, as real
    /// marketplaces do. Returns how many it cancelled.
    pub(crate) fn cancel_overdue(&mut self, now: Timestamp) -> usize {
        let mut cancelled = 0;
        for stored in &mut self.orders {
            let order = &mut stored.order;
            if order.order_state == OrderState::WaitingAcceptance && now > order.acceptance_deadline
            {
                order.order_state = OrderState::Canceled;
                for line in &mut order.order_lines {
                    line.order_line_state = OrderState::Canceled;
                }
                order.updated_at = now;
                stored.auto_cancelled = true;
                cancelled += 1;
            }
        }
        self.summary.auto_cancelled += cancelled;
        if cancelled > 0 {
            tracing::info!(
                orders = cancelled,
                "Sandbox marketplace auto-cancelled orders past their acceptance deadline."
            );
        }
        cancelled
    }

    /// Every order as JSON, in insertion order.
    pub(crate) fn all(&self) -> Vec<Value> {
        self.orders.iter().map(|s| to_json(&s.order)).collect()
    }

    /// One order as JSON.
    pub(crate) fn get(&self, order_id: &str) -> Option<Value> {
        self.find(order_id).map(|s| to_json(&s.order))
    }

    /// The orders updated at or after `since`, in delivery order, from `offset`, at most
    /// `max`; and how many match in total.
    pub(crate) fn page(
        &self,
        since: Option<Timestamp>,
        offset: usize,
        max: usize,
    ) -> (Vec<Value>, usize) {
        let mut matching: Vec<(Timestamp, usize)> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, s)| since.is_none_or(|since| s.order.updated_at >= since))
            .map(|(i, s)| (s.order.updated_at, i))
            .collect();
        matching.sort_unstable();
        let page = matching
            .iter()
            .skip(offset)
            .take(max)
            .map(|(_, i)| to_json(&self.orders[*i].order))
            .collect();
        (page, matching.len())
    }

    /// The shipments posted so far, in arrival order.
    pub(crate) fn shipments(&self) -> Vec<Value> {
        self.shipments.clone()
    }

    /// The summary, with the state counts taken now.
    pub(crate) fn summary(&self) -> OrderSummary {
        let mut summary = self.summary.clone();
        let count = |state: OrderState| {
            self.orders
                .iter()
                .filter(|s| s.order.order_state == state)
                .count()
        };
        summary.waiting_acceptance = count(OrderState::WaitingAcceptance);
        summary.shipping = count(OrderState::Shipping);
        summary.shipped = count(OrderState::Shipped);
        summary.received = count(OrderState::Received);
        summary.refused = count(OrderState::Refused);
        summary.canceled = count(OrderState::Canceled);
        summary.partially_shipped = self
            .orders
            .iter()
            .filter(|s| {
                s.order.order_state == OrderState::Shipping
                    && s.order.order_lines.iter().any(|l| l.shipped_quantity > 0)
            })
            .count();
        summary
    }

    /// Every order as a webhook emission plan, in insertion order.
    pub(crate) fn emission_plan(&self) -> Vec<PlannedEvent> {
        self.orders
            .iter()
            .map(|s| PlannedEvent {
                order: to_json(&s.order),
                order_id: s.order.order_id.clone(),
                occurred_at: s.order.created_at,
                redeliver: self.redeliver.contains(&s.order.order_id),
                duplicate: self.duplicate.contains(&s.order.order_id),
            })
            .collect()
    }

    /// Counts one webhook delivery's outcome.
    pub(crate) fn record_delivery(&mut self, kind: Delivery, delivered: bool) {
        if !delivered {
            self.summary.events_failed += 1;
            return;
        }
        self.summary.events_delivered += 1;
        match kind {
            Delivery::First => {}
            Delivery::Redelivery => self.summary.duplicate_events_sent += 1,
            Delivery::DuplicateOrder => self.summary.duplicate_order_ids_sent += 1,
        }
    }

    /// Accepts or refuses an order's lines. Deciding the same way twice is a no-op, so a
    /// client may retry an acceptance whose answer it lost.
    fn accept(&mut self, order_id: &str, body: AcceptBody, now: Timestamp) -> Result<(), ApiError> {
        let position = *self
            .index
            .get(order_id)
            .ok_or_else(|| ApiError::not_found(format!("no order {order_id:?}")))?;
        let stored = &mut self.orders[position];
        let decision = resolve_decision(&stored.order, body)?;
        let order = &mut stored.order;
        if order.order_state == OrderState::WaitingAcceptance && now > order.acceptance_deadline {
            // The background task has not got to it yet; the deadline rules, not the tick.
            order.order_state = OrderState::Canceled;
            for line in &mut order.order_lines {
                line.order_line_state = OrderState::Canceled;
            }
            order.updated_at = now;
            stored.auto_cancelled = true;
            self.summary.auto_cancelled += 1;
        }
        if stored.auto_cancelled {
            self.summary.accepted_late_refused += 1;
            tracing::info!(order_id = %order_id, "Sandbox marketplace refused a late acceptance.");
            return Err(ApiError::new(StatusCode::CONFLICT, DEADLINE_PASSED));
        }
        if let Some(previous) = &stored.decision {
            if *previous == decision {
                return Ok(());
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "order already accepted or refused with different lines",
            ));
        }
        let order = &mut stored.order;
        if order.order_state != OrderState::WaitingAcceptance {
            self.summary.calls_out_of_order += 1;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "order is {:?}, not waiting for acceptance",
                    order.order_state
                ),
            ));
        }
        for (line, accepted) in order.order_lines.iter_mut().zip(&decision) {
            line.order_line_state = if *accepted {
                OrderState::Shipping
            } else {
                OrderState::Refused
            };
        }
        order.order_state = if decision.iter().any(|accepted| *accepted) {
            OrderState::Shipping
        } else {
            OrderState::Refused
        };
        order.updated_at = now;
        stored.decision = Some(decision);
        self.summary.accepted_before_deadline += 1;
        tracing::info!(
            order_id = %order_id,
            state = ?stored.order.order_state,
            "Sandbox marketplace order decided before its deadline."
        );
        Ok(())
    }

    /// Records a shipment of some of an order's accepted quantities.
    fn ship(
        &mut self,
        order_id: &str,
        body: ShipmentBody,
        now: Timestamp,
    ) -> Result<Value, ApiError> {
        let position = *self
            .index
            .get(order_id)
            .ok_or_else(|| ApiError::not_found(format!("no order {order_id:?}")))?;
        let shipment_number = self.shipments.len() + 1;
        let order = &mut self.orders[position].order;
        if order.order_state != OrderState::Shipping {
            self.summary.calls_out_of_order += 1;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("order is {:?}, not SHIPPING", order.order_state),
            ));
        }
        if body.lines.is_empty() {
            return Err(ApiError::unprocessable(
                "a shipment needs at least one line",
            ));
        }
        // Sum per line first so a line listed twice cannot slip past the over-shipping check.
        let mut wanted: Vec<u32> = vec![0; order.order_lines.len()];
        for line in &body.lines {
            let position = order
                .order_lines
                .iter()
                .position(|l| l.order_line_id == line.order_line_id)
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "order {order_id} has no line {:?}",
                        line.order_line_id
                    ))
                })?;
            if line.quantity == 0 {
                return Err(ApiError::unprocessable(format!(
                    "line {} ships a quantity of 0",
                    line.order_line_id
                )));
            }
            wanted[position] = wanted[position].saturating_add(line.quantity);
        }
        for (line, quantity) in order.order_lines.iter().zip(&wanted) {
            if *quantity == 0 {
                continue;
            }
            if line.order_line_state == OrderState::Refused {
                return Err(ApiError::unprocessable(format!(
                    "line {} was refused and cannot ship",
                    line.order_line_id
                )));
            }
            let left = line.quantity - line.shipped_quantity;
            if *quantity > left {
                return Err(ApiError::unprocessable(format!(
                    "line {} has {left} left to ship, not {quantity}",
                    line.order_line_id
                )));
            }
        }
        for (line, quantity) in order.order_lines.iter_mut().zip(&wanted) {
            line.shipped_quantity += quantity;
            if line.order_line_state == OrderState::Shipping
                && line.shipped_quantity == line.quantity
            {
                line.order_line_state = OrderState::Shipped;
            }
        }
        let complete = order
            .order_lines
            .iter()
            .all(|l| l.order_line_state != OrderState::Shipping);
        if complete {
            order.order_state = OrderState::Shipped;
        }
        order.updated_at = now;
        let state = order.order_state;
        let shipment = json!({
            "shipment_id": format!("SHP-{shipment_number:06}"),
            "order_id": order_id,
            "carrier": body.carrier,
            "tracking_number": body.tracking_number,
            "lines": body.lines.iter().map(|l| json!({
                "order_line_id": l.order_line_id,
                "quantity": l.quantity,
            })).collect::<Vec<_>>(),
            "created_at": now,
        });
        self.shipments.push(shipment.clone());
        self.summary.shipments += 1;
        tracing::info!(order_id = %order_id, state = ?state, "Sandbox marketplace shipment recorded.");
        Ok(json!({
            "shipment_id": shipment["shipment_id"],
            "order_state": state,
        }))
    }

    fn find(&self, order_id: &str) -> Option<&StoredOrder> {
        self.index.get(order_id).and_then(|i| self.orders.get(*i))
    }
}

/// `GET /marketplace/api/orders?updated_since=&offset=&max=`.
pub(crate) async fn list_orders(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let (since, offset, max) = super::marketplace::offset_page(&query)?;
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let mut orders = state.orders();
    orders.cancel_overdue(Timestamp::now());
    let (page, total_count) = orders.page(since, offset, max);
    drop(orders);
    Ok(Json(json!({ "orders": page, "total_count": total_count })).into_response())
}

/// `GET /marketplace/api/orders/{order_id}`.
pub(crate) async fn get_order(
    State(state): State<Arc<SandboxState>>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let mut orders = state.orders();
    orders.cancel_overdue(Timestamp::now());
    let order = orders
        .get(&order_id)
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id:?}")))?;
    drop(orders);
    Ok(Json(order).into_response())
}

/// `GET /marketplace/api/orders/{order_id}/items`: the order's lines, as an enrichment call
/// fetches them (`{"items": [...]}`).
pub(crate) async fn get_order_items(
    State(state): State<Arc<SandboxState>>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let order = state
        .orders()
        .get(&order_id)
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id:?}")))?;
    let items = order.get("order_lines").cloned().unwrap_or(Value::Null);
    Ok(Json(json!({ "order_id": order_id, "items": items })).into_response())
}

/// `PUT /marketplace/api/orders/{order_id}/accept`.
pub(crate) async fn accept_order(
    State(state): State<Arc<SandboxState>>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let body: AcceptBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid acceptance: {err}")))?;
    state.orders().accept(&order_id, body, Timestamp::now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /marketplace/api/orders/{order_id}/shipments`.
pub(crate) async fn post_shipment(
    State(state): State<Arc<SandboxState>>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(failure) = super::faults::apply(&state, super::faults::Faulty::Orders).await {
        return Ok(failure);
    }
    let body: ShipmentBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid shipment: {err}")))?;
    let mut orders = state.orders();
    orders.cancel_overdue(Timestamp::now());
    let created = orders.ship(&order_id, body, Timestamp::now())?;
    drop(orders);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /_sandbox/marketplace/orders/summary`.
pub(crate) async fn summary(State(state): State<Arc<SandboxState>>) -> Json<OrderSummary> {
    Json(state.orders().summary())
}

/// `GET /_sandbox/marketplace/orders/shipments`.
pub(crate) async fn shipments(State(state): State<Arc<SandboxState>>) -> Json<Value> {
    Json(json!({ "shipments": state.orders().shipments() }))
}

/// Turns an accept body into one decision per line, in line order. Every line must be
/// decided by its ID, as on real marketplaces: a whole-order `accepted` is refused like a
/// real acceptance API refuses it (400, `order_lines` required), and a partial answer is
/// refused, not guessed.
fn resolve_decision(order: &Order, body: AcceptBody) -> Result<Vec<bool>, ApiError> {
    match (body.order_lines, body.accepted) {
        (None, Some(_)) => Err(ApiError::bad_request(format!(
            "order_lines is required: give every line of order {} as \
             {{\"id\": <order_line_id>, \"accepted\": true|false}} (a whole-order \
             `accepted` is not supported)",
            order.order_id
        ))),
        (Some(lines), None) => {
            let mut decision: Vec<Option<bool>> = vec![None; order.order_lines.len()];
            for line in lines {
                let position = order
                    .order_lines
                    .iter()
                    .position(|l| l.order_line_id == line.id)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "order {} has no line {:?}",
                            order.order_id, line.id
                        ))
                    })?;
                decision[position] = Some(line.accepted);
            }
            decision
                .into_iter()
                .zip(&order.order_lines)
                .map(|(accepted, line)| {
                    accepted.ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "line {} is neither accepted nor refused",
                            line.order_line_id
                        ))
                    })
                })
                .collect()
        }
        _ => Err(ApiError::bad_request(
            "order_lines is required: give every line as {\"id\": <order_line_id>, \
             \"accepted\": true|false}",
        )),
    }
}

fn to_json(order: &Order) -> Value {
    // Serialising plain strings, numbers and timestamps cannot fail; `Null` keeps the
    // handler total anyway.
    serde_json::to_value(order).unwrap_or(Value::Null)
}
