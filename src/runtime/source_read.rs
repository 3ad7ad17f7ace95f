//! Reading a source's next batch under the flow's `retry:` policy, on the runtime's clock.
//!
//! A source reports a failed read as a [`ConnectorError`] and leaves its state as it was, so
//! asking again reads the same page: nothing is skipped or read twice. Transient failures
//! (a 429, a 503, a dropped connection) are asked again after the policy's backoff, or after
//! the wait the system asked for (`Retry-After`, rate-limit reset headers) when that is
//! longer, until the retry window (from this read's first failure) would close; then the
//! failure is returned and the run stops as `source-unavailable`. Waits are taken on the
//! runtime's clock, so flow tests pass them in virtual time.

use std::time::Duration;

use super::clock::Clock;
use super::engine::EncodedPart;
use super::events::{FlowEvents, ListingCut, SourceRetried};
use super::retry::backoff;
use crate::connectors::{Batch, ConnectorError, Source};
use crate::spec::model::RetryPolicy;

/// How to retry a source read, and where it is reported.
pub(super) struct ReadRetry<'a> {
    /// The flow's retry policy.
    pub(super) policy: &'a RetryPolicy,
    /// The runtime's clock.
    pub(super) clock: &'a Clock,
    /// Where retries and notices are reported.
    pub(super) events: &'a FlowEvents,
    /// Daemon shutdown: a wait between attempts ends early and the run ends at its
    /// checkpoint.
    pub(super) stop: Option<&'a tokio::sync::watch::Receiver<bool>>,
}

/// The source's next batch, transient failures retried; `Ok(None)` when the listing ended
/// (or shutdown was requested while waiting to retry).
pub(super) async fn read_batch(
    source: &mut dyn Source,
    max_records: usize,
    retry: &ReadRetry<'_>,
) -> Result<Option<Batch>, ConnectorError> {
    let mut failures = 0u32;
    let mut first_failure_ms: Option<i64> = None;
    loop {
        let read = source.next_batch(max_records).await;
        for notice in source.take_notices() {
            retry.events.emit(ListingCut {
                reason: notice.reason,
                message: &notice.message,
            });
        }
        let error = match read {
            Ok(batch) => return Ok(batch),
            Err(error) if !error.retryable => return Err(error),
            Err(error) => error,
        };
        failures += 1;
        let now = retry.clock.now_ms();
        let started = *first_failure_ms.get_or_insert(now);
        let elapsed = Duration::from_millis(u64::try_from(now - started).unwrap_or(0));
        let delay = backoff(retry.policy, failures).max(error.retry_after.unwrap_or_default());
        if elapsed + delay > retry.policy.window {
            return Err(ConnectorError {
                message: format!(
                    "{} (failed {failures} times; the retry window of {}s closed)",
                    error.message,
                    retry.policy.window.as_secs()
                ),
                ..error
            });
        }
        retry.events.emit(SourceRetried {
            attempt: failures,
            delay,
            error: &error,
        });
        if wait_or_stop(retry, delay).await {
            tracing::info!(
                flow = %retry.events.flow(),
                "Shutdown requested while waiting to read the source again; the run ends at \
                 its checkpoint."
            );
            return Ok(None);
        }
    }
}

/// Waits `delay` on the clock; `true` when shutdown was requested first.
async fn wait_or_stop(retry: &ReadRetry<'_>, delay: Duration) -> bool {
    let Some(stop) = retry.stop else {
        retry.clock.sleep(delay).await;
        return false;
    };
    let mut stop = stop.clone();
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = retry.clock.sleep(delay) => false,
        changed = stop.wait_for(|stop| *stop) => changed.is_ok(),
    }
}

/// What a read ahead needs of [`ReadRetry`], owned: it runs on a task of its own.
pub(super) struct OwnedRetry {
    pub(super) policy: RetryPolicy,
    pub(super) clock: Clock,
    pub(super) events: FlowEvents,
    pub(super) stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The pure stage run on a batch read ahead (decode, contract, keys, mapping, encoding), when
/// it needs nothing the settling of the batch before may change.
pub(super) type Prepare = Box<dyn FnOnce(&Batch) -> Vec<EncodedPart> + Send>;

/// What a read of the source gave: a batch, the end of the listing, or why not.
pub(super) type Read = Result<Option<Batch>, ConnectorError>;

/// What a read ahead brings back: the source, what it read and, when asked, the batch's
/// records prepared.
pub(super) type ReadBack = (Box<dyn Source>, Read, Option<Vec<EncodedPart>>);

/// The source's next batch, read (and prepared) on a task of its own while the batch before
/// it is written: parsing a file, mapping its records and the sink's server writing the
/// batch before are then three stages at work at once, where one run used to take them in
/// turn and leave the others idle. The source travels with the task and comes back with the
/// batch.
pub(super) struct ReadAhead(tokio::task::JoinHandle<ReadBack>);

impl ReadAhead {
    /// Starts reading the next batch of `source`, then preparing it with `prepare` if given.
    pub(super) fn start(
        mut source: Box<dyn Source>,
        max_records: usize,
        retry: OwnedRetry,
        prepare: Option<Prepare>,
    ) -> Self {
        Self(tokio::spawn(async move {
            let borrowed = ReadRetry {
                policy: &retry.policy,
                clock: &retry.clock,
                events: &retry.events,
                stop: retry.stop.as_ref(),
            };
            let read = read_batch(source.as_mut(), max_records, &borrowed).await;
            match (read, prepare) {
                (Ok(Some(batch)), Some(prepare)) => {
                    // CPU work on threads of its own, off the runtime's workers.
                    let prepared = tokio::task::spawn_blocking(move || {
                        let parts = prepare(&batch);
                        (batch, parts)
                    })
                    .await;
                    match prepared {
                        Ok((batch, parts)) => (source, Ok(Some(batch)), Some(parts)),
                        // A bug in the pure stage: this task fails with it, and the run
                        // stops at its checkpoint (see `finish`).
                        Err(err) => std::panic::resume_unwind(err.into_panic()),
                    }
                }
                (read, _) => (source, read, None),
            }
        }))
    }

    /// The source back, with what it read; `None` when the task died (a panic in the source
    /// or the pure stage), which loses the source with it.
    pub(super) async fn finish(self) -> Option<ReadBack> {
        self.0.await.ok()
    }
}
