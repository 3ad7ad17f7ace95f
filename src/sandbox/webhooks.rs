//! Signed order webhooks: the marketplace POSTs each order as an `ORDER_CREATED` event to a
//! receiver, signed with HMAC-SHA256 over the timestamp, the event ID and the body, retried with exponential backoff until a 2xx, with the
//! seeded share of redelivered events (same event ID) and duplicate orders (new event ID,
//! same `order_id`). It owns the emission task only; orders and counters live in `orders`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::SandboxState;
use super::orders::{Delivery, PlannedEvent};

/// Attempts per event before it is given up.
const MAX_ATTEMPTS: u32 = 10;
/// The first retry delay; each later one doubles.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How many events are in flight at once; a real marketplace does not serialise its
/// webhooks, nor does it open a connection per order.
const CONCURRENCY: usize = 4;
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header value of a webhook: `sha256=<hex HMAC-SHA256>` over
/// `"<timestamp>.<raw body>"` with `secret`. Receivers recompute it to authenticate a request,
/// and tests use it to sign genuine or forged requests.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The signature header value a sender that binds the event ID sends (what the sandbox's
/// marketplace does): `sha256=<hex HMAC-SHA256>` over `"<timestamp>.<event id>.<raw body>"`.
/// A captured request cannot be replayed under another event ID.
pub fn sign_event(secret: &str, timestamp: i64, event_id: &str, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(event_id.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` (an `X-Signature` header value) is the signature of `body` at
/// `timestamp` with `secret`, compared in constant time.
pub fn verify(secret: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(digest) = signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

/// Starts emitting every order to `url`, stopping an emission already under way so a restart
/// does not interleave two runs.
pub(crate) fn start(state: &Arc<SandboxState>, url: String) {
    let plan = state.orders().emission_plan();
    let secret = state.webhook_secret.clone();
    tracing::info!(url = %url, orders = plan.len(), "Sandbox order webhook emission started.");
    let task = tokio::spawn(emit(Arc::clone(state), url, secret, plan));
    if let Some(previous) = super::lock(&state.emission).replace(task.abort_handle()) {
        previous.abort();
    }
}

async fn emit(state: Arc<SandboxState>, url: String, secret: String, plan: Vec<PlannedEvent>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "Sandbox webhook client could not be built.");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    // Dropping the set (when this task is aborted) aborts every delivery in flight.
    let mut deliveries = JoinSet::new();
    for planned in plan {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let target = Target {
            state: Arc::clone(&state),
            client: client.clone(),
            url: url.clone(),
            secret: secret.clone(),
        };
        deliveries.spawn(async move {
            target.order(planned).await;
            drop(permit);
        });
    }
    while deliveries.join_next().await.is_some() {}
    tracing::info!(url = %url, "Sandbox order webhook emission finished.");
}

/// Where and how to deliver events.
struct Target {
    state: Arc<SandboxState>,
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl Target {
    /// Delivers one order's event, then its redelivery or duplicate when the seed says so.
    async fn order(&self, planned: PlannedEvent) {
        let body = event_body(&planned);
        let event_id = new_event_id();
        let delivered = self.deliver(&event_id, &body, &planned.order_id).await;
        self.state
            .orders()
            .record_delivery(Delivery::First, delivered);
        if !delivered {
            return;
        }
        if planned.redeliver {
            // A lost acknowledgement: the very same event again.
            let again = self.deliver(&event_id, &body, &planned.order_id).await;
            self.state
                .orders()
                .record_delivery(Delivery::Redelivery, again);
        }
        if planned.duplicate {
            // A marketplace-side duplicate: a new event carrying the same order.
            let again = self
                .deliver(&new_event_id(), &event_body(&planned), &planned.order_id)
                .await;
            self.state
                .orders()
                .record_delivery(Delivery::DuplicateOrder, again);
        }
    }

    /// POSTs one event until a 2xx answer or `MAX_ATTEMPTS`; the event ID is inserted into
    /// `body` here so a redelivery carries the same one.
    async fn deliver(&self, event_id: &str, body: &serde_json::Value, order_id: &str) -> bool {
        let mut body = body.clone();
        body["event_id"] = json!(event_id);
        let Ok(raw) = serde_json::to_vec(&body) else {
            return false;
        };
        let mut delay = FIRST_RETRY;
        for attempt in 1..=MAX_ATTEMPTS {
            let timestamp = Timestamp::now().as_second();
            let result = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-event-id", event_id)
                .header("x-timestamp", timestamp.to_string())
                .header(
                    "x-signature",
                    sign_event(&self.secret, timestamp, event_id, &raw),
                )
                .body(raw.clone())
                .send()
                .await;
            match result {
                Ok(response) if response.status().is_success() => return true,
                Ok(response) => tracing::info!(
                    order_id = %order_id,
                    status = response.status().as_u16(),
                    attempt,
                    "Sandbox webhook refused; will retry."
                ),
                Err(err) => tracing::info!(
                    order_id = %order_id,
                    error = %err,
                    attempt,
                    "Sandbox webhook failed; will retry."
                ),
            }
            if attempt < MAX_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::warn!(order_id = %order_id, "Sandbox webhook given up after every retry.");
        false
    }
}

fn event_body(planned: &PlannedEvent) -> serde_json::Value {
    json!({
        "event_id": null,
        "type": "ORDER_CREATED",
        "occurred_at": planned.occurred_at,
        "order": planned.order,
    })
}

/// A random UUID-v4-shaped ID; unique enough that a collision would be a bug elsewhere.
fn new_event_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long ones are hashed), so this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes a key of any length")
}
