//! Simulated marketplace systems on loopback, for local runs and tests: a marketplace
//! operator API seeded with realistic offers and orders and their edge cases (split baskets,
//! acceptance deadlines, partial shipments, signed webhooks with duplicates), a storefront
//! catalog API that records idempotent writes, an order management system (OMS) that
//! receives order legs idempotently and ships them, and an alert receiver — each with fault
//! injection. The marketplace also settles: a seller transaction log and invoices per billing
//! cycle, seeded with one clean cycle and one per money edge case, the ledger journal finance
//! posted from them, statement files dropped into a folder, and a stock feed with stale and
//! oversold offers.
//!
//! One axum server bound to 127.0.0.1 hosts all four under path prefixes (`/marketplace`,
//! `/storefront`, `/oms`, `/alerts`), with control endpoints under `/_sandbox`. State lives in memory
//! only. This module owns the server handle and the router; it must not depend on the spec,
//! runtime or store modules, so it stays usable as a fixture for any of them.
//!
//! Routes:
//!
//! | Route | Purpose |
//! |---|---|
//! | `GET /_sandbox/health` | 200 when up |
//! | `GET /marketplace/api/offers?updated_since=&offset=&max=` | offers, offset pages |
//! | `GET /marketplace/api/v2/offers?updated_since=&page_token=&limit=` | offers, token pages |
//! | `POST /_sandbox/marketplace/offers` | append or replace offers by `offer_id` |
//! | `GET /_sandbox/marketplace/summary` | what a correct flow must deliver |
//! | `POST, DELETE /_sandbox/marketplace/faults` | queue or clear faults on the list endpoints |
//! | `GET /marketplace/api/orders?updated_since=&offset=&max=` | orders, offset pages |
//! | `GET /marketplace/api/orders/{order_id}` | one order |
//! | `GET /marketplace/api/orders/{order_id}/items` | one order's lines, `{"items": [...]}` |
//! | `PUT /marketplace/api/orders/{order_id}/accept` | accept or refuse every line by ID (`order_lines: [{id, accepted}]`; a whole-order `accepted` is a 400) before the deadline |
//! | `POST /marketplace/api/orders/{order_id}/shipments` | ship some or all accepted quantities |
//! | `GET /marketplace/api/v2/orders?updated_since=&page_token=&limit=` | orders, token pages (token in the body and a `Link` header) |
//! | `POST /_sandbox/marketplace/orders/repeat-token` | `{"pages": n}`: the next n v2 order pages repeat the last token |
//! | `GET, POST /_sandbox/rate-limits` | per-operation rate limits (429 + `Retry-After`) and violations counted |
//! | `GET /_sandbox/marketplace/orders/summary` | order states and counters |
//! | `GET /_sandbox/marketplace/orders/shipments` | shipments posted to the marketplace |
//! | `POST /_sandbox/marketplace/orders/emit` | (re)start the signed order webhooks |
//! | `POST, DELETE /_sandbox/marketplace/orders/faults` | queue or clear faults on order routes |
//! | `PUT, POST, PATCH /storefront/catalog/offers/{sku}` | idempotent offer writes |
//! | `GET /_sandbox/storefront/received` | accepted writes and counters |
//! | `POST, DELETE /_sandbox/storefront/faults` | queue or clear faults on writes |
//! | `POST /oms/orders` | idempotent order receipt (`Idempotency-Key` required) |
//! | `GET /oms/shipments?updated_since=&offset=&max=` | what the OMS shipped, offset pages |
//! | `GET /_sandbox/oms/received` | received orders and counters |
//! | `POST, DELETE /_sandbox/oms/faults` | queue or clear faults on order receipts |
//! | `POST /marketplace/oauth/token` | OAuth2 tokens (`client_credentials`, `refresh_token`; form-encoded) |
//! | `GET /_sandbox/marketplace/oauth` | tokens issued, refreshed, refused; API calls rejected |
//! | `GET /marketplace/api/settlement/transactions?billing_cycle_id=&page_token=&after=&limit=` | seller transaction log, `{"data", "next_page_token"}` (opaque token; `after` = a transaction ID) |
//! | `GET /marketplace/api/settlement/invoices?billing_cycle_id=` | invoices per cycle, shop and currency |
//! | `POST /_sandbox/marketplace/settlement/transactions` | `{"lines": [...], "ledger": true}`: append lines (and post them) |
//! | `GET /_sandbox/marketplace/settlement/expected` | per seeded cycle: edge case, exact variances and owners, totals |
//! | `GET /_sandbox/marketplace/settlement/drops` | statement files dropped so far |
//! | `POST, DELETE /_sandbox/marketplace/settlement/faults` | queue or clear faults on the settlement routes |
//! | `GET /_sandbox/ledger/journal?format=&billing_cycle_id=` | the journal finance posted (the ledger side); `format` `csv` (default), `jsonl` or `json` |
//! | `GET /marketplace/api/stock?updated_since=&page_token=&limit=` | stock per offer with `open_order_quantity`, token pages |
//! | `POST /_sandbox/marketplace/stock` | a seller's stock updates by `offer_id` (`quantity`, `open_order_quantity`, `stock_updated_at` default now) |
//! | `GET /_sandbox/marketplace/stock/expected` | the stale and oversold offers to flag now, and to whom |
//! | `POST, DELETE /_sandbox/marketplace/stock/faults` | queue or clear faults on the stock feed |
//! | `POST /alerts/{owner}` | receive an alert (204) |
//! | `GET /_sandbox/alerts` | received alerts |
//! | `POST, DELETE /_sandbox/alerts/faults` | queue or clear faults on alerts |

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::MissedTickBehavior;

use crate::cli::output::outln;

mod alerts;
mod faults;
mod marketplace;
mod oauth;
mod oms;
mod orders;
mod paging;
mod seed;
mod settlement;
mod settlement_seed;
mod statement_drop;
mod stock;
mod storefront;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_orders;
#[cfg(test)]
mod tests_settlement;
mod webhooks;

pub use alerts::ReceivedAlert;
pub use faults::Fault;
pub use marketplace::OfferSummary;
pub use oauth::{OAuthConfig, OAuthStats};
pub use oms::{OmsStats, ReceivedOmsOrder};
pub use orders::{OrderState, OrderSummary};
pub use paging::RateLimit;
pub use settlement::DroppedStatement;
pub use statement_drop::StatementDropConfig;
pub use storefront::{ReceivedWrite, StorefrontStats};
pub use webhooks::{sign, sign_event, verify};

/// How long `shutdown` waits for open connections to finish before it stops the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often overdue orders are auto-cancelled.
const AUTO_CANCEL_EVERY: Duration = Duration::from_millis(200);

/// How to start a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// The seed of the generated marketplace data; the same seed gives the same offers.
    pub seed: u64,
    /// How many offer entries the marketplace starts with (bad ones and duplicates included).
    pub offers: usize,
    /// How many customer baskets the marketplace starts with; each becomes one order per
    /// seller leg, so there are somewhat more orders than baskets.
    pub orders: usize,
    /// Seconds from an order's creation to its acceptance deadline.
    pub ack_deadline_secs: u64,
    /// Where to POST signed `ORDER_CREATED` events at start-up; `None` sends none.
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 secret webhooks are signed with.
    pub webhook_secret: String,
    /// How long after receiving an order the OMS's (first) shipment appears, in ms.
    pub ship_after_ms: u64,
    /// The marketplace's OAuth2 token endpoint; when set, `/marketplace/api/...` routes
    /// require a valid bearer token from it. `None` leaves them open.
    pub oauth: Option<OAuthConfig>,
    /// Where to drop the settlement statement files (one CSV per billing cycle); `None`
    /// drops none.
    pub statement_drop: Option<StatementDropConfig>,
    /// Settlement lines to add after the eight seeded billing cycles, in clean cycles of at
    /// most 5,000 lines (`BC-2026-11-1`, ...), each posted to the journal and stated in
    /// `expected`: volume for a flow to page through. Rounded up to whole orders and their
    /// payouts; 0 adds none. At most [`MAX_SETTLEMENT_LINES`].
    pub settlement_lines: usize,
}

/// The most lines [`SandboxConfig::settlement_lines`] may ask for: the log is kept in memory.
pub const MAX_SETTLEMENT_LINES: usize = settlement_seed::MAX_VOLUME_LINES;

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            port: 0,
            seed: 42,
            offers: 1000,
            orders: 0,
            ack_deadline_secs: 60,
            webhook_url: None,
            webhook_secret: "sandbox-secret".to_owned(),
            ship_after_ms: 0,
            oauth: Some(OAuthConfig::default()),
            statement_drop: None,
            settlement_lines: 0,
        }
    }
}

/// Errors of starting or driving a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listener could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Offers pushed through the handle were refused.
    #[error("invalid offers: {0}")]
    InvalidOffers(String),
    /// Settlement lines appended through the handle were refused.
    #[error("invalid settlement lines: {0}")]
    InvalidSettlementLines(String),
    /// More settlement volume was asked for than the sandbox holds.
    #[error(
        "{asked} settlement lines asked for; the sandbox makes at most {max} (it keeps the \
         whole transaction log in memory)"
    )]
    TooManySettlementLines {
        /// The lines asked for.
        asked: usize,
        /// [`MAX_SETTLEMENT_LINES`].
        max: usize,
    },
    /// The statement drop folder could not be created.
    #[error("cannot create the statement drop folder {}", dir.display())]
    StatementDrop {
        /// The folder asked for.
        dir: std::path::PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The in-memory state of the simulated systems, shared by the router and the handle.
/// Each system has its own lock, never held across an await.
#[derive(Debug)]
pub struct SandboxState {
    marketplace: Mutex<marketplace::Marketplace>,
    orders: Mutex<orders::Orders>,
    storefront: Mutex<storefront::Storefront>,
    oms: Mutex<oms::Oms>,
    alerts: Mutex<alerts::Alerts>,
    webhook_url: Option<String>,
    webhook_secret: String,
    /// The webhook emission under way, so a restart can stop it first.
    emission: Mutex<Option<AbortHandle>>,
    /// The OAuth2 token issuer, when the marketplace API requires tokens.
    oauth: Option<Mutex<oauth::Issuer>>,
    /// Per-operation rate limits and listing faults.
    paging: paging::Paging,
    /// Transaction log, invoices, ledger journal and statement drops.
    settlement: Mutex<settlement::Settlement>,
    /// The stock feed.
    stock: Mutex<stock::Stock>,
}

impl SandboxState {
    /// Builds fresh state, seeding the marketplace from `config`; orders are created now.
    pub fn new(config: &SandboxConfig) -> Self {
        Self::at(config, jiff::Timestamp::now())
    }

    /// Builds fresh state whose seeded orders were created at `now` (whole milliseconds).
    pub(crate) fn at(config: &SandboxConfig, now: jiff::Timestamp) -> Self {
        let now = jiff::Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        Self {
            marketplace: Mutex::new(marketplace::Marketplace::seeded(config.seed, config.offers)),
            orders: Mutex::new(orders::Orders::seeded(
                config.seed,
                config.orders,
                now,
                config.ack_deadline_secs,
            )),
            storefront: Mutex::new(storefront::Storefront::default()),
            oms: Mutex::new(oms::Oms::new(config.seed, config.ship_after_ms)),
            alerts: Mutex::new(alerts::Alerts::default()),
            webhook_url: config.webhook_url.clone(),
            webhook_secret: config.webhook_secret.clone(),
            emission: Mutex::new(None),
            oauth: config
                .oauth
                .clone()
                .map(|c| Mutex::new(oauth::Issuer::new(c))),
            paging: paging::Paging::default(),
            settlement: Mutex::new(settlement::Settlement::seeded(config.settlement_lines)),
            stock: Mutex::new(stock::Stock::seeded(now)),
        }
    }

    fn settlement(&self) -> MutexGuard<'_, settlement::Settlement> {
        lock(&self.settlement)
    }

    fn stock(&self) -> MutexGuard<'_, stock::Stock> {
        lock(&self.stock)
    }

    fn orders(&self) -> MutexGuard<'_, orders::Orders> {
        lock(&self.orders)
    }

    fn oms(&self) -> MutexGuard<'_, oms::Oms> {
        lock(&self.oms)
    }

    fn stop_emission(&self) {
        if let Some(emission) = lock(&self.emission).take() {
            emission.abort();
        }
    }

    fn marketplace(&self) -> MutexGuard<'_, marketplace::Marketplace> {
        lock(&self.marketplace)
    }

    fn storefront(&self) -> MutexGuard<'_, storefront::Storefront> {
        lock(&self.storefront)
    }

    fn alerts(&self) -> MutexGuard<'_, alerts::Alerts> {
        lock(&self.alerts)
    }
}

/// Builds the sandbox router over `state`: the three systems and the `/_sandbox` control
/// endpoints. Usable with `tower::ServiceExt::oneshot` without binding a port.
pub fn router(state: Arc<SandboxState>) -> Router {
    Router::new()
        .route("/_sandbox/health", get(health))
        .route("/marketplace/api/offers", get(marketplace::list_offers))
        .route(
            "/marketplace/api/v2/offers",
            get(marketplace::list_offers_v2),
        )
        .route(
            "/_sandbox/marketplace/offers",
            post(marketplace::post_offers),
        )
        .route("/_sandbox/marketplace/summary", get(marketplace::summary))
        .route(
            "/_sandbox/marketplace/faults",
            faults::endpoints(faults::Faulty::Marketplace),
        )
        .route(
            "/storefront/catalog/offers/{sku}",
            post(storefront::write_offer)
                .put(storefront::write_offer)
                .patch(storefront::write_offer),
        )
        .route("/_sandbox/storefront/received", get(storefront::received))
        .route(
            "/_sandbox/storefront/faults",
            faults::endpoints(faults::Faulty::Storefront),
        )
        .route("/marketplace/api/orders", get(orders::list_orders))
        .route("/marketplace/api/orders/{order_id}", get(orders::get_order))
        .route(
            "/marketplace/api/orders/{order_id}/items",
            get(orders::get_order_items),
        )
        .route(
            "/marketplace/api/orders/{order_id}/accept",
            put(orders::accept_order),
        )
        .route(
            "/marketplace/api/orders/{order_id}/shipments",
            post(orders::post_shipment),
        )
        .route("/_sandbox/marketplace/orders/summary", get(orders::summary))
        .route(
            "/_sandbox/marketplace/orders/shipments",
            get(orders::shipments),
        )
        .route("/_sandbox/marketplace/orders/emit", post(emit_orders))
        .route(
            "/_sandbox/marketplace/orders/faults",
            faults::endpoints(faults::Faulty::Orders),
        )
        .route("/oms/orders", post(oms::post_order))
        .route("/oms/shipments", get(oms::list_shipments))
        .route("/_sandbox/oms/received", get(oms::received))
        .route(
            "/_sandbox/oms/faults",
            faults::endpoints(faults::Faulty::Oms),
        )
        .route("/alerts/{owner}", post(alerts::post_alert))
        .route("/_sandbox/alerts", get(alerts::list))
        .route(
            "/_sandbox/alerts/faults",
            faults::endpoints(faults::Faulty::Alerts),
        )
        .route("/marketplace/oauth/token", post(oauth::token))
        .route("/_sandbox/marketplace/oauth", get(oauth::stats))
        .route("/marketplace/api/v2/orders", get(paging::list_orders_v2))
        .route(
            "/_sandbox/marketplace/orders/repeat-token",
            post(paging::set_repeat_token),
        )
        .route(
            "/_sandbox/rate-limits",
            get(paging::rate_limits).post(paging::set_rate_limit),
        )
        .route(
            "/marketplace/api/settlement/transactions",
            get(settlement::list_transactions),
        )
        .route(
            "/marketplace/api/settlement/invoices",
            get(settlement::list_invoices),
        )
        .route(
            "/_sandbox/marketplace/settlement/transactions",
            post(settlement::append_lines),
        )
        .route(
            "/_sandbox/marketplace/settlement/expected",
            get(settlement::expected),
        )
        .route(
            "/_sandbox/marketplace/settlement/drops",
            get(settlement::drops),
        )
        .route(
            "/_sandbox/marketplace/settlement/faults",
            faults::endpoints(faults::Faulty::Settlement),
        )
        .route("/_sandbox/ledger/journal", get(settlement::journal))
        .route("/marketplace/api/stock", get(stock::list_stock))
        .route("/_sandbox/marketplace/stock", post(stock::post_stock))
        .route("/_sandbox/marketplace/stock/expected", get(stock::expected))
        .route(
            "/_sandbox/marketplace/stock/faults",
            faults::endpoints(faults::Faulty::Stock),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            paging::enforce_rate_limits,
        ))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            oauth::require_token,
        ))
        .with_state(state)
}

/// A running sandbox server. Dropping it stops the server too, without waiting.
#[derive(Debug)]
pub struct Sandbox {
    state: Arc<SandboxState>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    auto_cancel: JoinHandle<()>,
    /// The statement drop under way, if one was asked for.
    statement_drop: Option<JoinHandle<()>>,
    /// The statement drop folder (an empty one when the sandbox drops nothing).
    statement_dir: std::path::PathBuf,
}

impl Sandbox {
    /// Seeds the systems and starts serving them on 127.0.0.1.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if config.settlement_lines > MAX_SETTLEMENT_LINES {
            return Err(SandboxError::TooManySettlementLines {
                asked: config.settlement_lines,
                max: MAX_SETTLEMENT_LINES,
            });
        }
        let bind_error = |source| SandboxError::Bind {
            port: config.port,
            source,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        if let Some(drop) = &config.statement_drop {
            statement_drop::prepare(drop).map_err(|source| SandboxError::StatementDrop {
                dir: drop.dir.clone(),
                source,
            })?;
        }
        let state = Arc::new(SandboxState::new(&config));
        let app = router(Arc::clone(&state));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let auto_cancel = tokio::spawn(auto_cancel(Arc::clone(&state)));
        if let Some(url) = config.webhook_url.clone() {
            webhooks::start(&state, url);
        }
        let statement_drop = config
            .statement_drop
            .clone()
            .map(|drop| tokio::spawn(statement_drop::run(Arc::clone(&state), drop)));
        tracing::info!(
            url = %format!("http://{addr}"),
            seed = config.seed,
            offers = config.offers,
            orders = config.orders,
            "Sandbox started."
        );
        Ok(Sandbox {
            state,
            addr,
            shutdown: Some(shutdown),
            task,
            auto_cancel,
            statement_drop,
            statement_dir: match config.statement_drop {
                Some(drop) => drop.dir,
                // A workspace with a drop-folder flow needs a folder to list even when this
                // sandbox drops nothing: an empty one of its own.
                None => {
                    let empty = std::env::temp_dir()
                        .join(format!("switchyard-sandbox-{}-no-drops", addr.port()));
                    std::fs::create_dir_all(&empty).map_err(|source| {
                        SandboxError::StatementDrop {
                            dir: empty.clone(),
                            source,
                        }
                    })?;
                    empty
                }
            },
        })
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The marketplace operator API's base URL.
    pub fn marketplace_url(&self) -> String {
        format!("{}/marketplace", self.base_url())
    }

    /// The storefront catalog API's base URL.
    pub fn storefront_url(&self) -> String {
        format!("{}/storefront", self.base_url())
    }

    /// The order management system's base URL.
    pub fn oms_url(&self) -> String {
        format!("{}/oms", self.base_url())
    }

    /// The alert receiver's base URL; alerts go to `{alerts_url}/{owner}`.
    pub fn alerts_url(&self) -> String {
        format!("{}/alerts", self.base_url())
    }

    /// The environment a workspace needs to reach the sandbox: `MARKETPLACE_URL`,
    /// `STOREFRONT_URL`, `ALERTS_URL` and `OMS_URL`, and with OAuth on
    /// `MARKETPLACE_CLIENT_ID` and `MARKETPLACE_CLIENT_SECRET`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("MARKETPLACE_URL".to_owned(), self.marketplace_url()),
            ("STOREFRONT_URL".to_owned(), self.storefront_url()),
            ("ALERTS_URL".to_owned(), self.alerts_url()),
            ("OMS_URL".to_owned(), self.oms_url()),
            ("SANDBOX_URL".to_owned(), self.base_url()),
            // The operator's finance system: the journal it posted, the ledger side of the
            // settlement a reconciliation joins against.
            (
                "FINANCE_URL".to_owned(),
                format!("{}/_sandbox/ledger", self.base_url()),
            ),
        ];
        env.push((
            "STATEMENT_DROP_DIR".to_owned(),
            self.statement_dir.display().to_string(),
        ));
        if let Some(issuer) = &self.state.oauth {
            let issuer = lock(issuer);
            let config = issuer.config();
            env.push(("MARKETPLACE_CLIENT_ID".to_owned(), config.client_id.clone()));
            env.push((
                "MARKETPLACE_CLIENT_SECRET".to_owned(),
                config.client_secret.clone(),
            ));
        }
        env
    }

    /// What the OAuth2 token endpoint did (all zero when it is off).
    pub fn oauth_stats(&self) -> OAuthStats {
        self.state
            .oauth
            .as_ref()
            .map(|issuer| lock(issuer).stats())
            .unwrap_or_default()
    }

    /// The shared state, for embedding the router elsewhere.
    pub fn state(&self) -> Arc<SandboxState> {
        Arc::clone(&self.state)
    }

    /// What a correct flow must deliver out of the marketplace's current offers.
    pub fn summary(&self) -> OfferSummary {
        self.state.marketplace().summary()
    }

    /// Appends offers to the marketplace, replacing entries with the same `offer_id`; an
    /// offer without `updated_at` gets the current time. Returns how many were stored.
    pub fn push_offers(&self, offers: Vec<Value>) -> Result<usize, SandboxError> {
        self.state
            .marketplace()
            .upsert(Value::Array(offers), jiff::Timestamp::now())
            .map_err(SandboxError::InvalidOffers)
    }

    /// Injects a fault into the marketplace list endpoints.
    pub fn inject_marketplace_fault(&self, fault: Fault) {
        self.state.marketplace().faults.push(fault, Instant::now());
    }

    /// Limits `operation` (`METHOD /route`) to `limit` requests per `per_secs` seconds;
    /// requests over it get 429 with `Retry-After` and are counted as violations.
    pub fn set_rate_limit(&self, operation: &str, limit: u32, per_secs: u64) {
        self.state.paging.set_limit(RateLimit {
            operation: operation.to_owned(),
            limit,
            per_secs,
        });
    }

    /// Rate-limit violations per operation so far.
    pub fn rate_limit_violations(&self) -> std::collections::BTreeMap<String, u64> {
        self.state.paging.violations()
    }

    /// Makes the next `pages` pages of the v2 orders listing repeat the previous token.
    pub fn repeat_order_token(&self, pages: u32) {
        self.state.paging.repeat_token(pages);
    }

    /// Clears the marketplace's queued faults.
    pub fn clear_marketplace_faults(&self) {
        self.state.marketplace().faults.clear();
    }

    /// The writes the storefront accepted, in arrival order.
    pub fn received(&self) -> Vec<ReceivedWrite> {
        self.state.storefront().records.clone()
    }

    /// The storefront's write counters.
    pub fn storefront_stats(&self) -> StorefrontStats {
        self.state.storefront().stats
    }

    /// Injects a fault into storefront writes.
    pub fn inject_storefront_fault(&self, fault: Fault) {
        self.state.storefront().faults.push(fault, Instant::now());
    }

    /// Clears the storefront's queued faults.
    pub fn clear_storefront_faults(&self) {
        self.state.storefront().faults.clear();
    }

    /// How many storefront faults are still active.
    pub fn pending_storefront_faults(&self) -> usize {
        self.state.storefront().faults.len(Instant::now())
    }

    /// The alerts received, in arrival order.
    pub fn alerts(&self) -> Vec<ReceivedAlert> {
        self.state.alerts().received.clone()
    }

    /// Injects a fault into the alert receiver.
    pub fn inject_alert_fault(&self, fault: Fault) {
        self.state.alerts().faults.push(fault, Instant::now());
    }

    /// Clears the alert receiver's queued faults.
    pub fn clear_alert_faults(&self) {
        self.state.alerts().faults.clear();
    }

    /// The marketplace's order states and counters; see [`OrderSummary`].
    pub fn orders_summary(&self) -> OrderSummary {
        self.state.orders().summary()
    }

    /// Every marketplace order as JSON, in insertion order (basket, then leg).
    pub fn marketplace_orders(&self) -> Vec<Value> {
        self.state.orders().all()
    }

    /// The shipments posted to the marketplace, in arrival order.
    pub fn marketplace_shipments(&self) -> Vec<Value> {
        self.state.orders().shipments()
    }

    /// (Re)starts POSTing every order as a signed `ORDER_CREATED` event to `url`, in the
    /// background; an emission already under way is stopped first. Progress shows in
    /// [`OrderSummary::events_delivered`] and [`OrderSummary::events_failed`].
    pub fn emit_orders(&self, url: &str) {
        webhooks::start(&self.state, url.to_owned());
    }

    /// Injects a fault into every marketplace order route (list, get, accept, shipments).
    pub fn inject_orders_fault(&self, fault: Fault) {
        self.state.orders().faults.push(fault, Instant::now());
    }

    /// Clears the marketplace order routes' queued faults.
    pub fn clear_orders_faults(&self) {
        self.state.orders().faults.clear();
    }

    /// The orders the OMS accepted, in arrival order.
    pub fn oms_received(&self) -> Vec<ReceivedOmsOrder> {
        self.state.oms().received.clone()
    }

    /// The OMS's order counters.
    pub fn oms_stats(&self) -> OmsStats {
        self.state.oms().stats
    }

    /// Injects a fault into OMS order receipts.
    pub fn inject_oms_fault(&self, fault: Fault) {
        self.state.oms().faults.push(fault, Instant::now());
    }

    /// Clears the OMS's queued faults.
    pub fn clear_oms_faults(&self) {
        self.state.oms().faults.clear();
    }

    /// What a correct reconciliation reports for each seeded billing cycle, as
    /// `GET /_sandbox/marketplace/settlement/expected` serves it.
    pub fn settlement_expected(&self) -> Value {
        self.state.settlement().expected_json()
    }

    /// The whole seller transaction log, in append order, each line as
    /// `GET /marketplace/api/settlement/transactions` serves it.
    pub fn settlement_log(&self) -> Vec<Value> {
        self.state
            .settlement()
            .lines
            .iter()
            .map(settlement::Line::to_json)
            .collect()
    }

    /// The journal finance posted, each line as `GET /_sandbox/ledger/journal?format=json`
    /// serves it.
    pub fn settlement_journal(&self) -> Vec<Value> {
        self.state.settlement().journal_json(None)
    }

    /// Appends statement lines (JSON objects, see `POST
    /// /_sandbox/marketplace/settlement/transactions`), posting each to the ledger too when
    /// `post_to_ledger` is set. Returns the assigned transaction IDs.
    pub fn append_settlement_lines(
        &self,
        lines: &[Value],
        post_to_ledger: bool,
    ) -> Result<Vec<String>, SandboxError> {
        self.state
            .settlement()
            .append(lines, post_to_ledger, jiff::Timestamp::now())
            .map_err(SandboxError::InvalidSettlementLines)
    }

    /// The statement files dropped so far, in order.
    pub fn statement_drops(&self) -> Vec<DroppedStatement> {
        self.state.settlement().drops.clone()
    }

    /// Injects a fault into the settlement routes (transactions, invoices).
    pub fn inject_settlement_fault(&self, fault: Fault) {
        self.state.settlement().faults.push(fault, Instant::now());
    }

    /// Injects a fault into the stock feed.
    pub fn inject_stock_fault(&self, fault: Fault) {
        self.state.stock().faults.push(fault, Instant::now());
    }

    /// Stops the server, letting in-flight requests finish for a few seconds.
    pub async fn shutdown(mut self) {
        if let Some(drop) = self.statement_drop.take() {
            drop.abort();
        }
        self.auto_cancel.abort();
        self.state.stop_emission();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "Sandbox server failed."),
            Ok(Err(err)) => tracing::warn!(error = %err, "Sandbox server task failed."),
            Err(_) => {
                // Idle keep-alive connections can hold a graceful shutdown open; stop anyway.
                self.task.abort();
            }
        }
        tracing::info!(url = %self.base_url(), "Sandbox stopped.");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(drop) = self.statement_drop.take() {
            drop.abort();
        }
        self.auto_cancel.abort();
        self.state.stop_emission();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
            self.task.abort();
        }
    }
}

/// Starts a sandbox, prints its URLs and the `export` lines a workspace needs, and serves
/// until Ctrl-C.
pub async fn serve_until_ctrl_c(config: SandboxConfig) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(config.clone()).await?;
    let summary = sandbox.summary();
    outln!("Switchyard sandbox listening on {}", sandbox.base_url())?;
    outln!("  marketplace: {}", sandbox.marketplace_url())?;
    outln!("  storefront:  {}", sandbox.storefront_url())?;
    outln!("  oms:         {}", sandbox.oms_url())?;
    outln!("  alerts:      {}", sandbox.alerts_url())?;
    outln!(
        "Seeded {} offers (seed {}): {} valid, {} missing price, {} negative quantity, \
         {} unknown currency, {} duplicates, {} ownership violations.",
        summary.offers,
        config.seed,
        summary.valid,
        summary.missing_price,
        summary.negative_quantity,
        summary.unknown_currency,
        summary.duplicates,
        summary.ownership_violations,
    )?;
    let orders = sandbox.orders_summary();
    outln!(
        "Seeded {} baskets as {} orders ({} split across sellers), {} s to accept each{}.",
        orders.baskets,
        orders.legs,
        orders.split_baskets,
        config.ack_deadline_secs,
        match &config.webhook_url {
            Some(url) => format!("; sending signed webhooks to {url}"),
            None => String::new(),
        },
    )?;
    let (cycles, volume) = {
        let settlement = sandbox.state.settlement();
        let volume: Vec<_> = settlement
            .expected
            .iter()
            .filter(|c| c.edge_case == settlement_seed::VOLUME)
            .collect();
        let lines: usize = volume.iter().map(|c| c.statement_lines).sum();
        (
            settlement.expected.len() - volume.len(),
            (volume.len(), lines),
        )
    };
    outln!(
        "Seeded {cycles} settlement billing cycles (one clean, one per money edge case){} with \
         their ledger journal at {}/_sandbox/ledger/journal, and a stock feed with stale and \
         oversold offers.",
        match volume {
            (0, _) => String::new(),
            (n, lines) => format!(" and {n} clean volume cycle(s) of {lines} lines"),
        },
        sandbox.base_url(),
    )?;
    if let Some(drop) = &config.statement_drop {
        outln!(
            "Dropping one statement CSV per cycle into {} every {} ms.",
            drop.dir.display(),
            drop.interval.as_millis()
        )?;
    }
    outln!("Run a workspace against it with:")?;
    for (name, value) in sandbox.env() {
        outln!("export {name}={value}")?;
    }
    outln!("Press Ctrl-C to stop.")?;
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(())
}

/// A JSON error answer: `{"error": "..."}` with a 4xx status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Parses and validates a fault from a control request body.
/// The fault queue of one simulated system, for the shared fault endpoints.
fn with_faults<R>(
    state: &SandboxState,
    target: faults::Faulty,
    f: impl FnOnce(&mut faults::FaultQueue) -> R,
) -> R {
    match target {
        faults::Faulty::Marketplace => f(&mut state.marketplace().faults),
        faults::Faulty::Orders => f(&mut state.orders().faults),
        faults::Faulty::Storefront => f(&mut state.storefront().faults),
        faults::Faulty::Oms => f(&mut state.oms().faults),
        faults::Faulty::Alerts => f(&mut state.alerts().faults),
        faults::Faulty::Settlement => f(&mut state.settlement().faults),
        faults::Faulty::Stock => f(&mut state.stock().faults),
    }
}

fn parse_fault(body: &[u8]) -> Result<Fault, ApiError> {
    let fault: Fault = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("invalid fault: {err}")))?;
    fault.validate().map_err(ApiError::bad_request)?;
    Ok(fault)
}

/// Cancels overdue orders every `AUTO_CANCEL_EVERY` until aborted.
async fn auto_cancel(state: Arc<SandboxState>) {
    let mut interval = tokio::time::interval(AUTO_CANCEL_EVERY);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        state.orders().cancel_overdue(jiff::Timestamp::now());
    }
}

/// `POST /_sandbox/marketplace/orders/emit`, with an optional `{"url": "..."}` body; without
/// one the configured webhook URL is used.
async fn emit_orders(
    axum::extract::State(state): axum::extract::State<Arc<SandboxState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let requested = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body: Value = serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("body is not valid JSON: {err}")))?;
        match body.get("url") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => Some(url.clone()),
            Some(_) => return Err(ApiError::bad_request("`url` must be a string")),
        }
    };
    let url = requested
        .or_else(|| state.webhook_url.clone())
        .ok_or_else(|| {
            ApiError::bad_request("no webhook URL: pass {\"url\": ...} or start with one")
        })?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::bad_request(format!(
            "{url:?} is not an http(s) URL"
        )));
    }
    let orders = state.orders().summary().legs;
    webhooks::start(&state, url.clone());
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "url": url, "orders": orders })),
    )
        .into_response())
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such sandbox route".to_owned(),
    }
}

/// A poisoned lock only means a handler panicked mid-update; the sandbox's data is still the
/// best evidence a test has, so keep serving it rather than cascading the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
