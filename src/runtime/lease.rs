//! A run's hold on its flow: the flow lock taken before the checkpoint is read, its heartbeat
//! while the run lasts, and its release when the run ends (or crashes: the store then sees the
//! process gone, or the lease expire). The rules of the lock itself live in the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::task::JoinHandle;

use super::events::{FlowEvents, LeaseLost};
use crate::store::{LockHolder, Store, StoreError, heartbeat_every};

/// Releases started by dropped leases, by store and flow: a run that could not start (an error path
/// drops its lease) must not leave the next run in this process to find the flow locked.
static RELEASING: LazyLock<Mutex<HashMap<String, Vec<JoinHandle<()>>>>> =
    LazyLock::new(Mutex::default);

/// The flow lock of one run. Release it with [`FlowLease::release`]; a lease dropped without
/// that (an error path) is released by a background task, which the next acquisition of the
/// flow in this process waits for.
pub(super) struct FlowLease {
    store: Store,
    flow: String,
    holder: LockHolder,
    lost: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    released: bool,
}

impl FlowLease {
    /// Takes the lock of `flow`, or says who holds it.
    pub(super) async fn acquire(store: &Store, flow: &str) -> Result<Self, StoreError> {
        let releasing = releasing()
            .remove(&release_key(store, flow))
            .unwrap_or_default();
        for release in releasing {
            // A release on a runtime that is gone ends as cancelled: nothing to wait for.
            let _ = release.await;
        }
        let holder = LockHolder::this_process();
        store.acquire_flow_lock(flow, &holder).await?;
        Ok(Self {
            store: store.clone(),
            flow: flow.to_owned(),
            holder,
            lost: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
            released: false,
        })
    }

    /// The holder ID every commit of the run is fenced with.
    pub(super) fn holder_id(&self) -> &str {
        &self.holder.id
    }

    /// Whether another process took the lock over (this run stalled past the stale limit).
    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Keeps the heartbeat going while the run lasts, so a long batch (a retry window of
    /// half an hour) is not mistaken for a crash.
    pub(super) fn keep_alive(&mut self, events: FlowEvents) {
        let (store, flow, id, lost) = (
            self.store.clone(),
            self.flow.clone(),
            self.holder.id.clone(),
            self.lost.clone(),
        );
        self.heartbeat = Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(heartbeat_every());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match store.refresh_flow_lock(&flow, &id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        events.emit(LeaseLost);
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(flow = %flow, error = %err, "Could not refresh the flow lock; will retry.");
                    }
                }
            }
        }));
    }

    /// Stops the heartbeat and releases the lock (if this run still holds it).
    pub(super) async fn release(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if let Err(err) = self
            .store
            .release_flow_lock(&self.flow, &self.holder.id)
            .await
        {
            warn_unreleased(&self.flow, &err);
        }
    }
}

impl Drop for FlowLease {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        if self.released {
            return;
        }
        let (store, flow, id) = (
            self.store.clone(),
            self.flow.clone(),
            self.holder.id.clone(),
        );
        // Drop cannot wait for the store; without a runtime the lock is taken over once this
        // process is gone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let key = release_key(&store, &flow);
            let release = runtime.spawn(async move {
                if let Err(err) = store.release_flow_lock(&flow, &id).await {
                    warn_unreleased(&flow, &err);
                }
            });
            releasing().entry(key).or_default().push(release);
        }
    }
}

/// Releases are awaited per store and flow: another store's flow of the same name is
/// another lock.
fn release_key(store: &Store, flow: &str) -> String {
    format!("{}\n{flow}", store.describe())
}

fn releasing() -> std::sync::MutexGuard<'static, HashMap<String, Vec<JoinHandle<()>>>> {
    RELEASING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn warn_unreleased(flow: &str, err: &StoreError) {
    tracing::warn!(flow = %flow, error = %err, "Could not release the flow lock; it is taken over once this process is gone.");
}
