//! The committer task: makes a batch's sink output durable, then commits its checkpoint.
//! Running it beside the pipeline lets the next batch be read and mapped while this one is
//! fsynced and committed; the channel holds one batch, so the pipeline is never more than one
//! batch ahead of what is durable.

use std::fs::File;

use tokio::sync::mpsc::{Receiver, Sender, channel};
use tokio::task::JoinHandle;

use super::events::{BatchCommitted, FlowEvents};
use crate::store::{CommitBatch, Store, StoreError};

/// A batch to commit, with the output file to fsync first (file sinks).
pub(super) struct Job {
    pub(super) batch: CommitBatch,
    pub(super) sync: Option<File>,
    /// Records the batch read (for its event).
    pub(super) records: u64,
}

/// Handle on the committer task.
pub(super) struct Committer {
    sender: Option<Sender<Job>>,
    task: Option<JoinHandle<Result<(), CommitError>>>,
}

/// A commit failed; the run stops (nothing after the last good commit is acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output file could not be made durable.
    #[error("output file fsync failed: {0}")]
    Sync(std::io::Error),
    /// The committer task is gone.
    #[error("the committer task stopped unexpectedly")]
    Gone,
}

impl Committer {
    pub(super) fn spawn(store: Store, events: FlowEvents) -> Self {
        let (sender, receiver) = channel::<Job>(1);
        Self {
            sender: Some(sender),
            task: Some(tokio::spawn(work(store, events, receiver))),
        }
    }

    /// Queues a batch; waits while the previous one is still being committed.
    pub(super) async fn submit(&mut self, job: Job) -> Result<(), CommitError> {
        let sent = match &self.sender {
            Some(sender) => sender.send(job).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The task stopped: its own error says why.
        Err(self.join().await.err().unwrap_or(CommitError::Gone))
    }

    /// Waits for every queued batch to be committed.
    pub(super) async fn finish(mut self) -> Result<(), CommitError> {
        self.join().await
    }

    async fn join(&mut self) -> Result<(), CommitError> {
        self.sender = None;
        match self.task.take() {
            Some(task) => task.await.map_err(|_| CommitError::Gone)?,
            None => Err(CommitError::Gone),
        }
    }
}

async fn work(
    store: Store,
    events: FlowEvents,
    mut receiver: Receiver<Job>,
) -> Result<(), CommitError> {
    while let Some(job) = receiver.recv().await {
        if let Some(file) = job.sync {
            // fsync blocks for milliseconds: never on a tokio worker.
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|_| CommitError::Gone)?
                .map_err(CommitError::Sync)?;
        }
        let records = job.records;
        let position = job.batch.checkpoint.position.clone();
        store.commit(job.batch).await?;
        events.emit(BatchCommitted {
            records,
            position: &position,
        });
    }
    Ok(())
}
