//! A run's hold on its flow: the flow lock taken before the checkpoint is read, its heartbeat
//! while the run lasts, and its release when the run ends (or crashes: the store then sees the
//! process gone). The rules of the lock itself live in `store/locks.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::{HEARTBEAT_EVERY, LockHolder, Store, StoreError};

/// The flow lock of one run; released on drop.
pub(super) struct FlowLease {
    store: Store,
    flow: String,
    holder: LockHolder,
    lost: Arc<AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl FlowLease {
    /// Takes the lock of `flow`, or says who holds it.
    pub(super) fn acquire(store: &Store, flow: &str) -> Result<Self, StoreError> {
        let holder = LockHolder::this_process();
        store.acquire_flow_lock(flow, &holder)?;
        Ok(Self {
            store: store.clone(),
            flow: flow.to_owned(),
            holder,
            lost: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
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
    pub(super) fn keep_alive(&mut self) {
        let (store, flow, id, lost) = (
            self.store.clone(),
            self.flow.clone(),
            self.holder.id.clone(),
            self.lost.clone(),
        );
        self.heartbeat = Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let (store, flow2, id) = (store.clone(), flow.clone(), id.clone());
                let refreshed =
                    tokio::task::spawn_blocking(move || store.refresh_flow_lock(&flow2, &id)).await;
                match refreshed {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::error!(flow = %flow, "Another process took this flow's lock over; this run stops at its next commit.");
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(flow = %flow, error = %err, "Could not refresh the flow lock; will retry.");
                    }
                    Err(err) => {
                        tracing::warn!(flow = %flow, error = %err, "Flow lock heartbeat failed; will retry.");
                    }
                }
            }
        }));
    }
}

impl Drop for FlowLease {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        if let Err(err) = self.store.release_flow_lock(&self.flow, &self.holder.id) {
            tracing::warn!(flow = %self.flow, error = %err, "Could not release the flow lock; it is taken over once this process is gone.");
        }
    }
}
