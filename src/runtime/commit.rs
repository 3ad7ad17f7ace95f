//! The committer task: makes a batch's sink output durable, then commits its checkpoint.
//! Running it beside the pipeline lets the next batch be read and mapped while this one is
//! fsynced and committed; the channel holds one batch, so the pipeline is never more than one
//! batch ahead of what is durable. Each source position it commits is reported back, so the
//! engine can tell the source ([`crate::connectors::Source::committed`]) once it is durable.

use serde_json::Value;
use tokio::sync::mpsc::{Receiver, Sender, UnboundedReceiver, UnboundedSender, channel};
use tokio::task::JoinHandle;

use super::events::{BatchCommitted, FlowEvents, RecordDeadLettered, RecordsWritten};
use crate::store::{CommitBatch, NewDeadLetter, Original, OutboxAlert, Store, StoreError};

/// What a sink makes durable before the checkpoint is written (an fsync).
pub(super) type Durable = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// A batch to commit, with the sink's output to make durable first (batch sinks).
pub(super) struct Job {
    pub(super) batch: CommitBatch,
    pub(super) sync: Option<Durable>,
    /// The position to report once committed: set only when the batch settled in full and
    /// moved the checkpoint, so the source never hears of a batch left unsettled.
    pub(super) settled: Option<Value>,
    /// Records the batch read (for its event).
    pub(super) records: u64,
    /// Records the batch delivered: counted once it is committed, as are its dead letters, so
    /// a batch whose commit fails (and is read again by the next run) is counted once.
    pub(super) delivered: u64,
}

/// Handle on the committer task.
pub(super) struct Committer {
    sender: Option<Sender<Job>>,
    task: Option<JoinHandle<Result<(), CommitError>>>,
    committed: UnboundedReceiver<Value>,
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
        let (reporter, committed) = tokio::sync::mpsc::unbounded_channel();
        Self {
            sender: Some(sender),
            task: Some(tokio::spawn(work(store, events, receiver, reporter))),
            committed,
        }
    }

    /// The positions committed since the last call, in commit order.
    pub(super) fn committed(&mut self) -> Vec<Value> {
        let mut positions = Vec::new();
        while let Ok(position) = self.committed.try_recv() {
            positions.push(position);
        }
        positions
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

    /// Waits for every queued batch to be committed; returns the positions committed since
    /// the last [`Committer::committed`] (those before a failure, when one failed).
    pub(super) async fn finish(mut self) -> (Vec<Value>, Result<(), CommitError>) {
        let result = self.join().await;
        (self.committed(), result)
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
    reporter: UnboundedSender<Value>,
) -> Result<(), CommitError> {
    while let Some(job) = receiver.recv().await {
        if let Some(durable) = job.sync {
            // fsync blocks for milliseconds: never on a tokio worker.
            tokio::task::spawn_blocking(durable)
                .await
                .map_err(|_| CommitError::Gone)?
                .map_err(CommitError::Sync)?;
        }
        let records = job.records;
        let position = job.batch.checkpoint.position.clone();
        let letters: Vec<NewDeadLetter> = job.batch.dead_letters.iter().map(told).collect();
        store.commit(job.batch).await?;
        events.emit(BatchCommitted {
            records,
            position: &position,
        });
        if job.delivered > 0 {
            events.emit(RecordsWritten {
                records: job.delivered,
            });
        }
        for letter in &letters {
            events.emit(RecordDeadLettered { letter });
        }
        if let Some(position) = job.settled {
            // The engine may have stopped listening (a failed run): nothing to tell then.
            let _ = reporter.send(position);
        }
    }
    Ok(())
}

/// What the event of a dead letter tells of it: everything but the original record, which may
/// be large and is not logged.
fn told((letter, _): &(NewDeadLetter, Option<OutboxAlert>)) -> NewDeadLetter {
    NewDeadLetter {
        flow: letter.flow.clone(),
        object: letter.object.clone(),
        record_key: letter.record_key.clone(),
        idempotency_key: letter.idempotency_key.clone(),
        failure: letter.failure.clone(),
        reason: letter.reason.clone(),
        error: letter.error.clone(),
        attempts: letter.attempts,
        owner: letter.owner.clone(),
        action: letter.action.clone(),
        record: Original::new(Vec::new()),
        line: letter.line,
        record_truncated: None,
    }
}
