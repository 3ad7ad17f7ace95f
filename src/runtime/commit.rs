//! The committer thread: makes a batch's sink output durable, then commits its checkpoint.
//! Running it beside the pipeline lets the next batch be read and mapped while this one is
//! fsynced; the channel holds one batch, so the pipeline is never more than one batch ahead
//! of what is durable.

use std::fs::File;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::store::{CommitBatch, Store, StoreError};

/// A batch to commit, with the output file to fsync first (file sinks).
pub(super) struct Job {
    pub(super) batch: CommitBatch,
    pub(super) sync: Option<File>,
}

/// Handle on the committer thread.
pub(super) struct Committer {
    sender: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Result<(), CommitError>>>,
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
    /// The committer thread is gone.
    #[error("the committer thread stopped unexpectedly")]
    Gone,
}

impl Committer {
    pub(super) fn spawn(store: Store) -> Self {
        let (sender, receiver) = sync_channel::<Job>(1);
        let thread = std::thread::Builder::new()
            .name("switchyard-commit".into())
            .spawn(move || work(&store, &receiver))
            .ok();
        Self {
            sender: Some(sender),
            thread,
        }
    }

    /// Queues a batch; blocks while the previous one is still being committed.
    pub(super) fn submit(&mut self, job: Job) -> Result<(), CommitError> {
        let sent = self.sender.as_ref().map(|s| s.send(job).is_ok());
        match sent {
            Some(true) => Ok(()),
            // The thread stopped: its own error says why.
            _ => Err(self.join().err().unwrap_or(CommitError::Gone)),
        }
    }

    /// Waits for every queued batch to be committed.
    pub(super) fn finish(mut self) -> Result<(), CommitError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), CommitError> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| CommitError::Gone)?,
            None => Err(CommitError::Gone),
        }
    }
}

impl Drop for Committer {
    // A run that ends early (an error) still waits for its queued batch: the flow lock is
    // released after this, and a commit landing after the release would be refused.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

fn work(store: &Store, receiver: &Receiver<Job>) -> Result<(), CommitError> {
    while let Ok(job) = receiver.recv() {
        if let Some(file) = job.sync {
            file.sync_data().map_err(CommitError::Sync)?;
        }
        store.commit(&job.batch)?;
    }
    Ok(())
}
