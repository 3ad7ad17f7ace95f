//! The daemon behind `switchyard serve`: runs every flow of a workspace by its trigger,
//! takes webhook events into the durable inbox, serves the admin API, `/metrics`,
//! `/healthz` and `/readyz`, reloads the workspace on SIGHUP (or file changes with
//! `--watch`) and shuts down gracefully on SIGTERM/SIGINT.
//!
//! It owns scheduling and the HTTP surface only: flows run through [`crate::runtime`] and
//! every durable fact lives in [`crate::store`]; it never parses YAML itself.

pub mod admin;
pub mod events;
mod scheduler;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use indexmap::IndexMap;
use tokio::sync::{Notify, watch};

use self::admin::FlowView;
use crate::metrics::Metrics;
use crate::metrics::catalog::{
    AWAITING_ACK, DEAD_LETTERS_OPEN, DEADLINE_SECONDS_LEFT, FLOW_FRESHNESS, OFFER_REJECTION_RATIO,
    RATE_LIMIT_WAITED, RECONCILIATION_CYCLE_CLOSE, RECORDS_DEAD_LETTERED, RECORDS_RECEIVED,
};
use crate::runtime::{RunReport, alerts};
use crate::spec::model::Workspace;
use crate::spec::{EnvLookup, LoadOptions, diagnostic};
use crate::store::{Store, StoreError, StoreTarget};

pub use self::admin::admin_router;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The workspace folder.
    pub root: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Reload when a file under the workspace changes.
    pub watch: bool,
    /// State store (a SQLite path, `sqlite:PATH` or a `postgres://` URL); the workspace's
    /// file by default.
    pub state: Option<String>,
    /// How long in-flight runs get to finish their batch at shutdown.
    pub shutdown_timeout: Duration,
    /// The admin API token; `None` restricts the daemon to loopback.
    pub admin_token: Option<String>,
    /// Interval of the alert delivery loop.
    pub alert_interval: Duration,
    /// Where `${ENV}` references are read from (the process environment, plus the sandbox's
    /// URLs under `serve --sandbox`).
    pub env: EnvLookup,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The workspace has errors.
    #[error("{root} has errors ({summary}); fix them first (`switchyard validate {root}`)")]
    Invalid {
        /// The workspace folder.
        root: String,
        /// Error and warning counts.
        summary: String,
    },
    /// No admin token and a non-loopback address.
    #[error(
        "refusing to listen on {0} without SWITCHYARD_ADMIN_TOKEN: the admin API would be open \
         to the network; set the token or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// An admin token too weak to face the network.
    #[error(
        "refusing to listen on {listen} with this SWITCHYARD_ADMIN_TOKEN: {weakness}; beyond \
         loopback the token must be {rule}; generate one with `openssl rand -hex 32`",
        rule = admin::TOKEN_RULE
    )]
    WeakToken {
        /// The address asked for.
        listen: SocketAddr,
        /// What is wrong with the token.
        weakness: admin::TokenWeakness,
    },
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener or a signal handler could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Why a reload kept the running workspace.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The loading task did not finish (it panicked or was cancelled).
    #[error("loading the workspace failed: {0}")]
    Load(String),
    /// The workspace has errors.
    #[error("the workspace has errors ({summary}):\n{diagnostics}")]
    Invalid {
        /// Error and warning counts.
        summary: String,
        /// The rendered diagnostics.
        diagnostics: String,
    },
}

/// What the daemon shares between its tasks and HTTP handlers.
pub struct DaemonState {
    workspace: RwLock<Arc<Workspace>>,
    /// The state store.
    pub store: Store,
    /// The metrics registry; runs count into it as they go.
    pub metrics: Arc<Metrics>,
    /// Records open against a deadline.
    pub deadlines: crate::runtime::DeadlineBoard,
    flows: Mutex<IndexMap<String, FlowStatus>>,
    wakes: Mutex<HashMap<String, Arc<Notify>>>,
    shutting_down: AtomicBool,
    admin_token: Option<String>,
    /// The address the listener is bound to; the admin API checks `Host` against it.
    listen: OnceLock<SocketAddr>,
    webhook_replays: webhook::ReplayCache,
}

#[derive(Debug, Clone, Default)]
struct FlowStatus {
    trigger: String,
    paused: bool,
    last_run: Option<RunReport>,
    last_run_at: Option<jiff::Timestamp>,
    last_error: Option<String>,
    last_delivered_at: Option<jiff::Timestamp>,
}

impl DaemonState {
    /// State for `workspace`, with `store`; `admin_token` protects `/admin`.
    pub fn new(workspace: Workspace, store: Store, admin_token: Option<String>) -> Arc<Self> {
        let state = Arc::new(Self {
            workspace: RwLock::new(Arc::new(workspace)),
            store,
            metrics: Arc::default(),
            deadlines: crate::runtime::DeadlineBoard::default(),
            flows: Mutex::new(IndexMap::new()),
            wakes: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            admin_token,
            listen: OnceLock::new(),
            webhook_replays: webhook::ReplayCache::default(),
        });
        state.sync_flows();
        state
    }

    /// The current workspace.
    pub fn workspace(&self) -> Arc<Workspace> {
        Arc::clone(&self.workspace.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records the address the listener is bound to (with the port it was given). Until it
    /// is set, the admin API refuses every request: it cannot tell a request for this daemon
    /// from one a rebound DNS name sends its way.
    pub fn set_listen_addr(&self, addr: SocketAddr) {
        if self.listen.set(addr).is_err() {
            tracing::warn!(listen = %addr, "Listen address already set; keeping the first.");
        }
    }

    /// The address the listener is bound to, once known.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.get().copied()
    }

    /// Whether shutdown has begun (intake answers 503, `/readyz` fails).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether a flow's scheduled runs are paused.
    pub fn is_paused(&self, flow: &str) -> bool {
        self.lock_flows().get(flow).is_some_and(|s| s.paused)
    }

    /// Pauses or resumes a flow; `false` when there is no such flow.
    pub fn set_paused(&self, flow: &str, paused: bool) -> bool {
        match self.lock_flows().get_mut(flow) {
            Some(status) => {
                status.paused = paused;
                true
            }
            None => false,
        }
    }

    /// Wakes a webhook flow's runner (new inbox events or a resume).
    pub fn wake(&self, flow: &str) {
        self.wake_handle(flow).notify_one();
    }

    fn wake_handle(&self, flow: &str) -> Arc<Notify> {
        let mut wakes = self.wakes.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(wakes.entry(flow.to_owned()).or_default())
    }

    /// Loads and compiles the workspace at `root` again and swaps it in as one `Arc`: runs in
    /// flight keep the workspace (and compiled plans) they started with, runs started after
    /// get the new one. On errors the running workspace stays and the error says why.
    /// Returns the new workspace and the rendered warnings, if any.
    pub async fn reload(
        &self,
        root: &Path,
        env: &EnvLookup,
    ) -> Result<(Arc<Workspace>, Option<String>), ReloadError> {
        let root = root.to_path_buf();
        let env = env.clone();
        // Loading reads files and compiles contracts and templates: keep it off the workers.
        let loaded = tokio::task::spawn_blocking(move || {
            crate::spec::load_workspace(&root, &LoadOptions { strict: false, env })
        })
        .await
        .map_err(|err| ReloadError::Load(err.to_string()))?;
        let text = diagnostic::render_human(&loaded.diagnostics);
        let Some(workspace) = loaded.workspace else {
            return Err(ReloadError::Invalid {
                summary: diagnostic::summary(&loaded.diagnostics),
                diagnostics: text.trim_end().to_owned(),
            });
        };
        self.set_workspace(workspace);
        let warnings = (!text.is_empty()).then(|| text.trim_end().to_owned());
        Ok((self.workspace(), warnings))
    }

    fn set_workspace(&self, workspace: Workspace) {
        *self.workspace.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(workspace);
        self.sync_flows();
    }

    /// Makes the status table match the workspace, keeping pause flags and history by name.
    fn sync_flows(&self) {
        let workspace = self.workspace();
        let mut flows = self.lock_flows();
        let old = std::mem::take(&mut *flows);
        for (name, flow) in &workspace.flows {
            let mut status = old.get(name).cloned().unwrap_or_default();
            status.trigger = scheduler::describe(&flow.trigger);
            flows.insert(name.clone(), status);
        }
        for (name, reconciliation) in &workspace.reconciliations {
            let mut status = old.get(name).cloned().unwrap_or_default();
            status.trigger = scheduler::describe(&reconciliation.trigger);
            flows.insert(name.clone(), status);
        }
    }

    fn record_run(&self, flow: &str, result: Result<RunReport, String>) {
        let now = jiff::Timestamp::now();
        if let Some(status) = self.lock_flows().get_mut(flow) {
            status.last_run_at = Some(now);
            match result {
                Ok(report) => {
                    if report.delivered > 0 {
                        status.last_delivered_at = Some(now);
                    }
                    status.last_error = None;
                    status.last_run = Some(report);
                }
                Err(error) => status.last_error = Some(error),
            }
        }
    }

    fn flow_views(&self) -> Vec<FlowView> {
        self.lock_flows()
            .iter()
            .map(|(name, status)| FlowView {
                name: name.clone(),
                trigger: status.trigger.clone(),
                paused: status.paused,
                last_run: status.last_run.clone(),
                last_run_at: status.last_run_at.map(|t| t.to_string()),
                last_error: status.last_error.clone(),
                checkpoint: None,
            })
            .collect()
    }

    /// Sets the deadline gauges from the board: records awaiting acknowledgement and the time
    /// left to the soonest deadline, per flow.
    fn render_deadlines(&self, now_ms: i64) {
        let metrics = &self.metrics;
        metrics.clear_gauge(&AWAITING_ACK);
        metrics.clear_gauge(&DEADLINE_SECONDS_LEFT);
        let mut per_flow: IndexMap<String, (u64, i64)> = IndexMap::new();
        for open in self.deadlines.snapshot() {
            let entry = per_flow.entry(open.flow.clone()).or_insert((0, i64::MAX));
            entry.0 += 1;
            entry.1 = entry.1.min(open.due_ms);
        }
        for (flow, (count, soonest)) in per_flow {
            let labels = || vec![("flow", flow.clone())];
            metrics.set(&AWAITING_ACK, labels(), count as f64);
            let left = (soonest - now_ms) as f64 / 1e3;
            metrics.set(&DEADLINE_SECONDS_LEFT, labels(), left);
        }
    }

    /// Sets each reconcile flow's time to close its cycles from what its runs recorded in the
    /// store: an open cycle's age grows between runs, and a restart loses none of it.
    async fn render_cycles(&self, now: jiff::Timestamp) {
        self.metrics.clear_gauge(&RECONCILIATION_CYCLE_CLOSE);
        let flows: Vec<String> = self.workspace().reconciliations.keys().cloned().collect();
        for flow in flows {
            match self.store.checkpoint(&flow).await {
                Ok(Some(checkpoint)) => crate::reconcile::CycleBook::from_position(
                    &checkpoint.position,
                )
                .set_metrics(&self.metrics, &flow, now),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(flow = %flow, error = %err, "Could not read the reconciliation's cycles.");
                }
            }
        }
    }

    /// Sets the gauges computed from the store and the run history, then renders.
    pub async fn render_metrics(&self) -> String {
        let metrics = &self.metrics;
        metrics.clear_gauge(&DEAD_LETTERS_OPEN);
        match self.store.open_dead_letter_counts().await {
            Ok(rows) => {
                for (flow, failure, owner, count) in rows {
                    let labels = vec![("flow", flow), ("failure", failure), ("owner", owner)];
                    metrics.set(&DEAD_LETTERS_OPEN, labels, count as f64);
                }
            }
            Err(err) => tracing::warn!(error = %err, "Could not count open dead letters."),
        }
        for (limit, waited, _) in crate::connectors::http::rate_limit::waited() {
            let labels = vec![("limit", limit)];
            metrics.set(&RATE_LIMIT_WAITED, labels, waited.as_secs_f64());
        }
        let now = jiff::Timestamp::now();
        self.render_deadlines(now.as_millisecond());
        self.render_cycles(now).await;
        let flows = self.lock_flows().clone();
        for (name, status) in &flows {
            if let Some(at) = status.last_delivered_at {
                let age = now.duration_since(at).as_secs_f64().max(0.0);
                metrics.set(&FLOW_FRESHNESS, vec![("flow", name.clone())], age);
            }
            let received = metrics.counter(&RECORDS_RECEIVED, &[("flow", name)]);
            if received > 0.0 {
                let rejected: f64 = metrics
                    .counter_series(&RECORDS_DEAD_LETTERED)
                    .iter()
                    .filter(|(labels, _)| labels.iter().any(|(k, v)| *k == "flow" && v == name))
                    .map(|(_, v)| v)
                    .sum();
                let labels = vec![("flow", name.clone())];
                metrics.set(&OFFER_REJECTION_RATIO, labels, rejected / received);
            }
        }
        metrics.render()
    }

    fn lock_flows(&self) -> std::sync::MutexGuard<'_, IndexMap<String, FlowStatus>> {
        self.flows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The whole HTTP surface: health, readiness, metrics, the admin API and webhook intake.
pub fn router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .merge(ops_router(Arc::clone(&state)))
        .merge(admin_router(Arc::clone(&state)))
        .merge(intake_router(state))
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn ops_router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

/// Webhook intake: every other path, matched against the workspace's webhook triggers.
pub fn intake_router(state: Arc<DaemonState>) -> Router {
    Router::new().fallback(webhook::intake).with_state(state)
}

async fn readyz(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    if state.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match state.store.checkpoint("").await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable\n"),
    }
}

async fn metrics_handler(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    crate::metrics::exposition(state.render_metrics().await)
}

/// Loads and validates the workspace; on errors, logs the rendered diagnostics.
pub fn load(root: &Path, env: &EnvLookup) -> Result<Workspace, DaemonError> {
    let loaded = crate::spec::load_workspace(
        root,
        &LoadOptions {
            strict: false,
            env: env.clone(),
        },
    );
    let text = diagnostic::render_human(&loaded.diagnostics);
    match loaded.workspace {
        Some(workspace) => {
            if !text.is_empty() {
                tracing::warn!(diagnostics = %text.trim_end(), "Workspace loaded with warnings.");
            }
            Ok(workspace)
        }
        None => {
            tracing::error!(diagnostics = %text.trim_end(), "Workspace has errors.");
            Err(DaemonError::Invalid {
                root: root.display().to_string(),
                summary: diagnostic::summary(&loaded.diagnostics),
            })
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: ServeConfig) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    match &config.admin_token {
        None if !config.listen.ip().is_loopback() => {
            return Err(DaemonError::TokenRequired(config.listen));
        }
        None => tracing::warn!(
            listen = %config.listen,
            "SWITCHYARD_ADMIN_TOKEN is not set; the admin API is unauthenticated, so the daemon only listens on loopback."
        ),
        Some(token) => {
            if let Err(weakness) = admin::check_token_strength(token) {
                if !config.listen.ip().is_loopback() {
                    return Err(DaemonError::WeakToken {
                        listen: config.listen,
                        weakness,
                    });
                }
                tracing::warn!(
                    listen = %config.listen, weakness = %weakness,
                    "SWITCHYARD_ADMIN_TOKEN is weak; accepted on loopback only."
                );
            }
        }
    }
    let workspace = load(&config.root, &config.env)?;
    let state_target = StoreTarget::choose(config.state.as_deref(), Some(&workspace.state))?;
    let store = Store::open_target(&state_target).await?;
    // Left out of the file watch (a PostgreSQL URL names no file, and excludes nothing).
    let state_path = state_target.sqlite_path().map(Path::to_path_buf);
    let state = DaemonState::new(workspace, store.clone(), config.admin_token.clone());
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| DaemonError::Io { what, source }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(io(&format!("cannot listen on {}", config.listen)))?;
    let local = listener.local_addr().map_err(io("listener address"))?;
    state.set_listen_addr(local);
    let mut term = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let alerts = tokio::spawn(alerts::run(
        store.clone(),
        config.alert_interval,
        shutdown_rx.clone(),
    ));
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(
        axum::serve(listener, router(Arc::clone(&state)))
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .into_future(),
    );
    let mut scheduler = scheduler::Scheduler::default();
    scheduler.sync(&state, &state.workspace());
    tracing::info!(listen = %local, flows = state.workspace().flows.len(), "Daemon listening.");

    let mut files = if config.watch {
        fingerprint(&config.root, state_path.as_deref())
    } else {
        Vec::new()
    };
    let mut watch_tick = tokio::time::interval(Duration::from_secs(1));
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received."); break; }
            _ = int.recv() => { tracing::info!("SIGINT received."); break; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received; reloading the workspace.");
                reload(&state, &mut scheduler, &config.root, &config.env).await;
            }
            _ = watch_tick.tick(), if config.watch => {
                let root = config.root.clone();
                let path = state_path.clone();
                let now = tokio::task::spawn_blocking(move || fingerprint(&root, path.as_deref()))
                    .await
                    .unwrap_or_default();
                if now != files {
                    files = now;
                    tracing::info!("Workspace files changed; reloading.");
                    reload(&state, &mut scheduler, &config.root, &config.env).await;
                }
            }
        }
    }

    state.shutting_down.store(true, Ordering::SeqCst);
    tracing::info!(
        timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "Shutting down: intake stopped, in-flight runs finish their current batch."
    );
    let started = Instant::now();
    let handles = scheduler.stop_all();
    let all = futures_join(handles);
    if tokio::time::timeout(config.shutdown_timeout, all)
        .await
        .is_err()
    {
        tracing::warn!(
            "Runs still in flight after the shutdown timeout; exiting anyway. Uncommitted batches are replayed at the next start."
        );
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), alerts).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Daemon stopped."
    );
    Ok(())
}

/// Loads the workspace again; on errors keeps the running one and logs why.
async fn reload(
    state: &Arc<DaemonState>,
    scheduler: &mut scheduler::Scheduler,
    root: &Path,
    env: &EnvLookup,
) {
    let workspace = match state.reload(root, env).await {
        Ok((workspace, warnings)) => {
            if let Some(text) = warnings {
                tracing::warn!(diagnostics = %text, "Workspace reloaded with warnings.");
            }
            workspace
        }
        Err(ReloadError::Invalid { diagnostics, .. }) => {
            tracing::error!(
                diagnostics = %diagnostics,
                "Workspace has errors; keeping the running configuration."
            );
            return;
        }
        Err(err) => {
            tracing::error!(error = %err, "Reload failed; keeping the running configuration.");
            return;
        }
    };
    // Stopped tasks finish their current batch on their own; nothing waits for them here.
    drop(scheduler.sync(state, &workspace));
    tracing::info!(flows = workspace.flows.len(), "Workspace reloaded.");
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// Path, modification time and length of every workspace file (hidden folders and the
/// state file excluded: they change on every commit).
/// The workspace's files with their times and sizes; the SQLite state file (and its `-wal`,
/// `-shm` companions) left out, since every commit changes it.
fn fingerprint(root: &Path, state_path: Option<&Path>) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // An empty path is a prefix of every path: only a real state file excludes.
            if name.starts_with('.') || state_path.is_some_and(|state| path.starts_with(state)) {
                continue;
            }
            let state_name = state_path
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            if state_name.is_some_and(|s| name.starts_with(&s)) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.modified().ok(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod compiled_tests;
#[cfg(test)]
mod tests;
