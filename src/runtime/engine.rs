//! Running one flow: read batches, settle every record (delivered, duplicate or dead letter),
//! commit, repeat until the source is exhausted.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::clock::Clock;
use super::commit::{CommitError, Committer, Job};
use super::deadlines::warn_deadline;
use super::delivery::{AckTarget, Delivering, Outcome, Unit, lock, running_retry_clocks, units};
use super::enrich::{CannedEnrichment, Enricher, Verdict};
use super::events::{
    BatchRead, ContractNullsTolerated, DuplicateSkipped, FlowEvents, FlowLockRefused, Observer,
    RecordAcknowledged, RecordFiltered, RunFinished, RunStarted, SinkFailed, SinkOutageDeclared,
    SourceUnavailable,
};
use super::lease::FlowLease;
use super::plan::{FlowPlan, PlanError};
use super::record::{self, Admission, KeySet, Prepared, Rejected};
use super::retry::{self, Delivery, Outage, RetryClock};
use super::source_read::{OwnedRetry, Prepare, Read, ReadAhead};
use crate::connectors::recorder::RecorderSink;
use crate::connectors::{
    Batch, BatchOutcome, ConnectorError, Encoded, Fault, RawRecord, Setup, Sink, SinkStyle, Source,
};
use crate::spec::model::{FailureMode, Workspace};
use crate::store::{
    Checkpoint, CommitBatch, NewDeadLetter, Original, OutboxAlert, Resolution, Store, StoreError,
};

/// How to run a flow.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The clock (virtual in flow tests).
    pub clock: Clock,
    /// Records per batch for file sources (HTTP sources use their page size).
    pub batch_size: usize,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Deliveries in flight at once for per-record sinks.
    pub concurrency: usize,
    /// When this turns `true` (daemon shutdown), the run stops after committing its current
    /// batch; the checkpoint makes the next start resume from there.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where open deadlines are shown (the daemon's board), if anywhere.
    pub deadlines: Option<super::DeadlineBoard>,
    /// Where the run's events are counted as they happen (the daemon's or `run`'s metrics).
    pub observer: Observer,
    /// Read the flow's pending webhook events ([`crate::spec::model::Flow::intake`]) instead
    /// of its `from:` system: the daemon's drain of a webhook flow's inbox.
    pub intake: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: Clock::System,
            batch_size: 10_000,
            progress: true,
            concurrency: 8,
            stop: None,
            deadlines: None,
            observer: Observer::default(),
            intake: false,
        }
    }
}

/// Records instead of the flow's own source (flow tests).
#[derive(Debug, Clone)]
pub struct SourceOverride(pub Vec<Value>);

/// Recorders instead of the flow's own sink and acknowledgement target (flow tests).
#[derive(Debug, Clone)]
pub struct SinkOverride {
    /// Receives the mapped records.
    pub sink: RecorderSink,
    /// Receives the acknowledgements (`acknowledge`), when the flow sends any.
    pub acks: RecorderSink,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Records read.
    pub read: u64,
    /// Records acknowledged by the sink.
    pub delivered: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// Records filtered out by the flow's `where:` conditions (not delivered, not dead
    /// letters).
    #[serde(default)]
    pub filtered: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Dead letters by failure mode.
    pub by_failure: BTreeMap<String, u64>,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
    /// Owners warned of an approaching deadline.
    #[serde(default)]
    pub deadline_warnings: u64,
    /// Records left unsettled because the sink was declared down before their retry window
    /// closed; the checkpoint stays before them and the next run reads them again.
    #[serde(default)]
    pub unsettled: u64,
}

/// A run that could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No flow of that name.
    #[error("no flow named `{name}`{hint}")]
    UnknownFlow {
        /// The name asked for.
        name: String,
        /// A suggestion.
        hint: String,
    },
    /// The flow does not compile.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A connector could not be set up.
    #[error("flow `{flow}`: {message}")]
    Setup {
        /// The flow.
        flow: String,
        /// What failed.
        message: String,
    },
    /// The source failed.
    #[error("flow `{flow}`: {source}")]
    Source {
        /// The flow.
        flow: String,
        /// The failure.
        source: ConnectorError,
    },
    /// A batch sink could not write or prepare its commit.
    #[error("flow `{flow}`: sink: {source}")]
    Sink {
        /// The flow.
        flow: String,
        /// The failure.
        source: ConnectorError,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// One flow, ready to run against a store.
pub struct FlowRun {
    plan: Arc<FlowPlan>,
    store: Store,
    // In a mutex only to make the run `Sync` (its futures cross threads): the source is used
    // through `&mut self` alone, so the lock is never taken.
    source: std::sync::Mutex<Box<dyn Source>>,
    /// The next batch, being read while the current one settles (sources that allow it);
    /// the source is out with it, and [`Lent`] stands in until it comes back.
    ahead: Option<ReadAhead>,
    sink: Arc<dyn Sink>,
    ack: Option<AckTarget>,
    options: RunOptions,
    /// Held from before the checkpoint is read until the run ends.
    lease: FlowLease,
    /// The source position of the last batch settled in full (the checkpoint to commit).
    position: Value,
    events: FlowEvents,
    /// The flow's `enrich:` calls, with their clients and this run's cache.
    enricher: Enricher,
}

/// The records of a [`SourceOverride`], as one batch.
struct MemorySource(Option<Vec<Value>>);

#[async_trait::async_trait]
impl Source for MemorySource {
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        Ok(self.0.take().filter(|r| !r.is_empty()).map(|r| Batch {
            records: crate::connectors::BatchRecords::Values(r),
            position: Value::Null,
        }))
    }
}

/// Stands in for the source while a read ahead has it. Never asked: the run takes the source
/// back before reading again or reporting a commit, so an answer here is a bug, said loudly
/// rather than a commit reported to nobody.
struct Lent;

#[async_trait::async_trait]
impl Source for Lent {
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        Err(ConnectorError::internal(
            "the source was asked for a batch while out on a read ahead (a bug)",
        ))
    }

    async fn committed(&mut self, _position: &Value) -> Result<(), ConnectorError> {
        Err(ConnectorError::internal(
            "the source was told of a commit while out on a read ahead (a bug)",
        ))
    }
}

/// An outcome of one record, before commit.
struct Settled {
    key_hash: Option<u64>,
    // Boxed: most records have none, and a batch holds one `Settled` per record.
    dead_letter: Option<Box<(NewDeadLetter, Option<OutboxAlert>)>>,
}

/// How a batch sink's write of a batch's records ended (a failure no retry cures and that is
/// no record's fault stops the run instead).
enum BatchWrite {
    /// Written, but for the records the sink refused: index into the records, and why.
    Written(Vec<(usize, ConnectorError)>),
    /// The sink stayed unavailable past the retry window: the records from `from` on are not
    /// written and go back to the source; those before were, but for `rejected`.
    Unavailable {
        from: usize,
        rejected: Vec<(usize, ConnectorError)>,
        error: String,
    },
}

/// One write of a batch sink, retried while the failure is retryable.
enum Attempt {
    Written(BatchOutcome),
    /// Still failing when the retry window closed.
    Unavailable(String),
    /// Failed in a way retrying cannot cure.
    Refused(ConnectorError),
}

impl FlowRun {
    /// Prepares flow `name` of `workspace`, reading its checkpoint from `store`.
    pub async fn new(
        workspace: &Workspace,
        name: &str,
        store: Store,
        options: RunOptions,
        source: Option<SourceOverride>,
        sink: Option<SinkOverride>,
    ) -> Result<Self, RunError> {
        let flow = workspace
            .flows
            .get(name)
            .ok_or_else(|| RunError::UnknownFlow {
                name: name.to_owned(),
                hint: suggest(name, workspace.flows.keys()),
            })?;
        // Compiled once per workspace load; every run of that load shares it.
        let plan = Arc::clone(&flow.plan);
        // Before the checkpoint is read: another process's run could otherwise commit after
        // the read, and this run would resume from (or cut a file sink back to) a stale one.
        let events = options.observer.flow(name);
        let lease = FlowLease::acquire(&store, name)
            .await
            .inspect_err(|error| {
                if let StoreError::FlowLocked { .. } = error {
                    events.emit(FlowLockRefused { error });
                }
            })?;
        let checkpoint = store.checkpoint(name).await?.unwrap_or_default();
        let setup = |message: String| RunError::Setup {
            flow: name.to_owned(),
            message,
        };
        let opening = |err: ConnectorError| setup(err.message);
        let connector_setup = Setup {
            flow: name,
            root: &workspace.root,
            store: &store,
            batch_size: options.batch_size,
        };
        let source: Box<dyn Source> = match source {
            Some(SourceOverride(records)) => Box::new(MemorySource(Some(records))),
            None => {
                let from = if options.intake {
                    &flow.intake
                } else {
                    &flow.from
                };
                from.connector
                    .source(
                        &connector_setup,
                        &from.system_settings,
                        &from.settings,
                        &checkpoint.position,
                    )
                    .await
                    .map_err(opening)?
            }
        };
        let clock = options.clock;
        // Flow tests (recorders for sinks) answer enrichments themselves: never the network.
        let enricher = match sink {
            Some(_) => Enricher::canned(&plan.enrichments, &CannedEnrichment::default()),
            None => Enricher::open(workspace, &plan.enrichments)
                .map_err(|err| setup(err.to_string()))?,
        };
        let ack_recorder = sink.as_ref().map(|s| s.acks.clone());
        let sink: Arc<dyn Sink> = match sink {
            Some(SinkOverride { sink, .. }) => sink.sink(move || clock.now_ms()),
            None => {
                let to = &flow.to;
                let sink = to
                    .connector
                    .sink(
                        &connector_setup,
                        &to.system_settings,
                        &to.settings,
                        &checkpoint.sink_state,
                    )
                    .await
                    .map_err(opening)?;
                claim_output(&store, name, &checkpoint, sink.as_ref(), lease.holder_id()).await?;
                sink
            }
        };
        let ack = match &flow.acknowledge {
            None => None,
            Some(ack) => {
                let body = ack.body.clone();
                let sink = match ack_recorder {
                    Some(recorder) => recorder.sink(move || clock.now_ms()),
                    None => {
                        let target = &ack.endpoint;
                        let sink = target
                            .connector
                            .sink(
                                &connector_setup,
                                &target.system_settings,
                                &target.settings,
                                &Value::Null,
                            )
                            .await
                            .map_err(opening)?;
                        // An acknowledgement is an answer per record; a batch sink has none.
                        if sink.style() != SinkStyle::PerRecord {
                            return Err(setup(format!(
                                "acknowledge: system `{}` takes records in batches, with no \
                                 answer per record to acknowledge with",
                                target.system
                            )));
                        }
                        sink
                    }
                };
                Some(AckTarget { sink, body })
            }
        };
        // Guards are checked, and outcomes recorded, per record, beside each write: a sink
        // that takes records in batches has no such moment.
        if sink.style() != SinkStyle::PerRecord
            && (plan.guard.is_some() || !plan.outcomes_required.is_empty())
        {
            return Err(setup(format!(
                "system `{}` takes records in batches: a `requires:` guard, or a flow another                  flow's guard requires, needs a sink that takes records one by one (HTTP)",
                flow.to.system
            )));
        }
        Ok(Self {
            plan,
            store,
            source: std::sync::Mutex::new(source),
            ahead: None,
            sink,
            ack,
            options,
            lease,
            position: checkpoint.position,
            events,
            enricher,
        })
    }

    /// Answers the flow's enrichment calls from `canned` (flow tests).
    pub fn with_enrichment(mut self, canned: &CannedEnrichment) -> Self {
        self.enricher = Enricher::canned(&self.plan.enrichments, canned);
        self
    }

    /// A delivery of this run's units to its sink and acknowledgement target, one unit at a
    /// time (no shared outage); callers set what differs.
    fn delivering(&self, failed_before: Arc<HashSet<String>>) -> Delivering {
        Delivering {
            sink: self.sink.clone(),
            ack: self.ack.clone(),
            store: self.store.clone(),
            plan: self.plan.clone(),
            clock: self.options.clock,
            outage: None,
            failed_before,
            events: Some(self.events.clone()),
        }
    }

    /// Reads from `source` instead (tests of the source interface).
    #[cfg(test)]
    pub(crate) fn with_source(mut self, source: Box<dyn Source>) -> Self {
        self.source = std::sync::Mutex::new(source);
        self
    }

    /// Writes to `sink` instead (tests of the sink interface).
    #[cfg(test)]
    pub(crate) fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = sink;
        self
    }

    /// The compiled flow.
    pub fn plan(&self) -> &FlowPlan {
        &self.plan
    }

    /// Runs the flow until its source is exhausted (or the sink stays unavailable), then
    /// releases its flow lock.
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let result = self.run_batches().await;
        self.lease.release().await;
        result
    }

    /// Releases the flow lock of a run that is not [`FlowRun::run`] (a replay).
    pub async fn close(mut self) {
        self.lease.release().await;
    }

    async fn run_batches(&mut self) -> Result<RunReport, RunError> {
        let flow = self.plan.name.clone();
        let mut processed = KeySet::default();
        self.store
            .load_processed_keys(&flow, &mut processed)
            .await?;
        let progress = self.progress_bar();
        let mut committer = Committer::spawn(self.store.clone(), self.events.clone());
        if matches!(self.options.clock, super::clock::Clock::System) {
            self.lease.keep_alive(self.events.clone());
        }
        self.events.emit(RunStarted);
        let looped = self
            .run_loop(&mut committer, &mut processed, progress.as_ref())
            .await;
        // Every way out waits for the committer, errors included: the lease is released
        // after this returns, and must not be while a batch may still be committing.
        let finished = self.finish(committer).await;
        let report = match (looped, finished) {
            (Ok(report), Ok(())) => report,
            (Err(err), Ok(())) | (Ok(_), Err(err)) => return Err(err),
            (Err(err), Err(also)) => {
                // A failed commit stops the loop and the committer alike: said once.
                if !matches!(err, RunError::Commit(_)) {
                    tracing::error!(flow = %flow, error = %also, "Commit also failed while the run stopped.");
                }
                return Err(err);
            }
        };
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        self.events.emit(RunFinished { report: &report });
        Ok(report)
    }

    /// The batches of a run; the caller finishes the committer whatever this returns.
    async fn run_loop(
        &mut self,
        committer: &mut Committer,
        processed: &mut KeySet,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<RunReport, RunError> {
        let flow = self.plan.name.clone();
        let mut report = RunReport::default();
        loop {
            if self.lease.lost() {
                return Err(RunError::Store(StoreError::LockLost { flow: flow.clone() }));
            }
            let batch_size = self.options.batch_size;
            // A batch read ahead is taken first: the source comes back with it, and only
            // then hears of what was committed meanwhile.
            let read_ahead = self.take_back_source().await?;
            self.report_committed(committer.committed()).await?;
            let (read, prepared) = match read_ahead {
                Some(read) => read,
                None => (self.read_now(batch_size).await, None),
            };
            let batch = match read {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(source) => {
                    self.alert_source_unavailable(&source).await;
                    return Err(RunError::Source {
                        flow: flow.clone(),
                        source,
                    });
                }
            };
            report.read += batch.len() as u64;
            self.events.emit(BatchRead {
                records: batch.len() as u64,
            });
            if self.source().reads_ahead() {
                self.read_ahead(batch_size);
            }
            let mut batch = batch;
            self.look_up(&mut batch).await?;
            let verdicts = self.enrich(&mut batch).await?;
            let unsettled_before = report.unsettled;
            let delivered_before = report.delivered;
            let (settled, stop) = self
                .settle(&batch, &verdicts, prepared, processed, &mut report)
                .await?;
            // The cursor never passes a record that is not settled: with any left, the
            // checkpoint stays where the batch started and the next run reads it again.
            let settled_in_full = report.unsettled == unsettled_before;
            if settled_in_full {
                self.position = batch.position.clone();
            }
            let mut commit = CommitBatch {
                flow: flow.clone(),
                checkpoint: Checkpoint {
                    position: self.position.clone(),
                    sink_state: Value::Null,
                },
                lock: Some(self.lease.holder_id().to_owned()),
                ..CommitBatch::default()
            };
            for item in settled {
                commit.processed_keys.extend(item.key_hash);
                commit
                    .dead_letters
                    .extend(item.dead_letter.map(|letter| *letter));
            }
            commit.delivered = report.delivered;
            commit.duplicates = report.duplicates;
            let sink_commit =
                self.sink
                    .prepare_commit()
                    .await
                    .map_err(|source| RunError::Sink {
                        flow: flow.clone(),
                        source,
                    })?;
            commit.checkpoint.sink_state = sink_commit.state;
            committer
                .submit(Job {
                    batch: commit,
                    sync: sink_commit.durable,
                    settled: settled_in_full.then(|| self.position.clone()),
                    records: batch.len() as u64,
                    delivered: report.delivered - delivered_before,
                })
                .await?;
            if let Some(bar) = progress {
                bar.set_position(report.read);
                bar.set_message(format!(
                    "delivered {} · dead letters {} · duplicates {}",
                    report.delivered, report.dead_lettered, report.duplicates
                ));
            }
            if let Some(reason) = stop {
                report.stopped_early = Some(reason);
                break;
            }
            if self
                .options
                .stop
                .as_ref()
                .is_some_and(|stop| *stop.borrow())
            {
                report.stopped_early =
                    Some("shutdown requested; resumes from the checkpoint".into());
                break;
            }
        }
        Ok(report)
    }

    fn source(&mut self) -> &mut Box<dyn Source> {
        self.source.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the source's next batch here and now.
    async fn read_now(&mut self, batch_size: usize) -> Read {
        let retry = super::source_read::ReadRetry {
            policy: &self.plan.retry,
            clock: &self.options.clock,
            events: &self.events,
            stop: self.options.stop.as_ref(),
        };
        let source = self.source.get_mut().unwrap_or_else(|p| p.into_inner());
        super::source_read::read_batch(source.as_mut(), batch_size, &retry).await
    }

    /// Whether a batch's records are encoded to JSON lines for the sink in one pure stage
    /// ([`prepare_all_encoded`]): a batch sink, records that do not split into legs.
    fn encodes_lines(&self) -> bool {
        self.sink.style() == SinkStyle::Batch && self.plan.split.is_none()
    }

    /// Starts reading the source's next batch on a task of its own; when its records are
    /// encoded in one pure stage with nothing to look up or call per record first, the task
    /// prepares them too.
    fn read_ahead(&mut self, batch_size: usize) {
        let source = std::mem::replace(self.source(), Box::new(Lent));
        let retry = OwnedRetry {
            policy: self.plan.retry,
            clock: self.options.clock,
            events: self.events.clone(),
            stop: self.options.stop.clone(),
        };
        let pure = self.encodes_lines()
            && self.plan.lookups.is_empty()
            && self.plan.enrichments.is_empty();
        let prepare = pure.then(|| {
            let plan = self.plan.clone();
            let clock = self.options.clock;
            let prepare: Prepare =
                Box::new(move |batch| prepare_all_encoded(&plan, batch, &[], clock.now_ms()));
            prepare
        });
        self.ahead = Some(ReadAhead::start(source, batch_size, retry, prepare));
    }

    /// Takes the source back from a read ahead, if one is out, with what it read (and
    /// prepared).
    async fn take_back_source(
        &mut self,
    ) -> Result<Option<(Read, Option<Vec<EncodedPart>>)>, RunError> {
        let Some(ahead) = self.ahead.take() else {
            return Ok(None);
        };
        let Some((source, read, prepared)) = ahead.finish().await else {
            return Err(RunError::Setup {
                flow: self.plan.name.clone(),
                message: "the source's reading task panicked; the run stops at its checkpoint \
                          (a bug: please report it with the log)"
                    .into(),
            });
        };
        *self.source() = source;
        Ok(Some((read, prepared)))
    }

    /// Waits for the committer, then tells the source what it committed. A batch still
    /// being read ahead is dropped unsettled: the checkpoint is before it, the next run
    /// reads it again.
    async fn finish(&mut self, committer: Committer) -> Result<(), RunError> {
        let taken_back = self.take_back_source().await;
        let (positions, committed) = committer.finish().await;
        taken_back?;
        self.report_committed(positions).await?;
        Ok(committed?)
    }

    /// Tells the source of positions now durably committed, in order.
    async fn report_committed(&mut self, positions: Vec<Value>) -> Result<(), RunError> {
        for position in positions {
            if let Err(source) = self.source().committed(&position).await {
                return Err(RunError::Source {
                    flow: self.plan.name.clone(),
                    source,
                });
            }
        }
        Ok(())
    }

    /// Runs one stored record (a dead letter's original) through the current spec and
    /// delivers it with one attempt per request, skipping duplicate detection. Returns
    /// `Ok(())` when every unit was delivered, or the first error. Once delivered, `resolves`
    /// is applied while this run still holds the flow's lease: for a batch sink in the very
    /// commit of the write, so the record can never be written with its letter still open.
    pub async fn deliver_stored(
        &self,
        original: &[u8],
        resolves: &Resolution,
    ) -> Result<Result<(), String>, RunError> {
        let mut prepared = record::prepare(
            &self.plan,
            &RawRecord::Line(original),
            self.options.clock.now_ms(),
        );
        // A replayed record is enriched again, as a record read is.
        if !self.enricher.is_empty()
            && let Ok(value) = serde_json::from_slice::<Value>(original)
        {
            let mut batch = Batch {
                records: crate::connectors::BatchRecords::Values(vec![value]),
                position: Value::Null,
            };
            let verdicts = self.enrich(&mut batch).await?;
            if let Some(raw) = batch.get(0) {
                prepared = record::prepare(&self.plan, &raw, self.options.clock.now_ms());
                apply_verdict(&mut prepared, verdicts.first());
            }
        }
        let ready = match record::admit(prepared, &mut KeySet::default()) {
            Admission::Deliver(ready) => ready,
            Admission::Reject(rejected) => {
                let r = rejected.rejection;
                return Ok(Err(format!("{}: {}", r.mode, r.error)));
            }
            Admission::Duplicate => return Ok(Err("taken for a duplicate".into())),
            Admission::Filtered(condition) => {
                return Ok(Err(format!(
                    "filtered out: the `where:` condition {condition} does not hold"
                )));
            }
        };
        if self.sink.style() == SinkStyle::Batch {
            return self.append_stored(ready, resolves).await;
        }
        let mut plan = (*self.plan).clone();
        // One attempt: an operator replaying wants an answer now, not a 30-minute wait.
        plan.retry.window = Duration::ZERO;
        let units = units(ready);
        let failed_before = running_retry_clocks(
            &self.store,
            &self.plan.name,
            units.iter().filter_map(|unit| unit.as_ref().ok()),
            self.ack.is_some(),
        )
        .await?;
        let delivery = Delivering {
            plan: Arc::new(plan),
            events: None,
            ..self.delivering(failed_before)
        };
        for unit in units {
            let unit = match unit {
                Ok(unit) => unit,
                Err(rejected) => {
                    let r = rejected.rejection;
                    return Ok(Err(format!("{}: {}", r.mode, r.error)));
                }
            };
            match delivery.deliver(&unit).await? {
                Outcome::Delivered => {}
                Outcome::Failed { mode, error, .. } => {
                    return Ok(Err(format!("{mode}: {error}")));
                }
                // Not sent: the letter stays open.
                Outcome::Skipped(error) => return Ok(Err(error)),
                Outcome::Abandoned => return Ok(Err("the sink was declared down".into())),
            }
        }
        // Under the lease: a second replay waits for it, then finds the letter resolved.
        // (The write itself is idempotent by key at a per-record sink.)
        self.store
            .resolve_dead_letter(
                resolves.id,
                resolves.status,
                &resolves.actor,
                &resolves.note,
            )
            .await?;
        Ok(Ok(()))
    }

    /// Replays one record to a batch sink: a batch of one, committed with the checkpoint
    /// where it stands (the flow's lease is held, so no run writes beside it).
    async fn append_stored(
        &self,
        ready: record::Ready,
        resolves: &Resolution,
    ) -> Result<Result<(), String>, RunError> {
        let record::Output::One(body) = ready.body else {
            return Ok(Err("split records are not replayed to files yet".into()));
        };
        let json = match serde_json::to_vec(&body) {
            Ok(json) => json,
            Err(err) => return Ok(Err(err.to_string())),
        };
        let written = [Encoded {
            idempotency_key: &ready.idempotency_key,
            json: &json,
        }];
        let outcome = match self.sink.write_batch(&written).await {
            Ok(outcome) => outcome,
            Err(err) => return Ok(Err(err.message)),
        };
        if let Some((_, error)) = outcome.rejected.into_iter().next() {
            return Ok(Err(format!(
                "{}: {}",
                FailureMode::SinkRejected,
                error.message
            )));
        }
        let commit = match self.sink.prepare_commit().await {
            Ok(commit) => commit,
            Err(err) => return Ok(Err(err.message)),
        };
        if let Some(durable) = commit.durable {
            let synced = tokio::task::spawn_blocking(durable)
                .await
                .map_err(|_| RunError::Commit(CommitError::Gone))?;
            if let Err(err) = synced {
                return Ok(Err(err.to_string()));
            }
        }
        self.store
            .commit(CommitBatch {
                flow: self.plan.name.clone(),
                checkpoint: Checkpoint {
                    position: self.position.clone(),
                    sink_state: commit.state,
                },
                delivered: 1,
                lock: Some(self.lease.holder_id().to_owned()),
                resolves: Some(resolves.clone()),
                ..CommitBatch::default()
            })
            .await?;
        Ok(Ok(()))
    }

    /// Adds the flow's `lookup` fields to each record from the stored cross-references. A
    /// reference not found leaves the field absent, so the mapping reports it by name.
    async fn look_up(&self, batch: &mut Batch) -> Result<(), RunError> {
        if self.plan.lookups.is_empty() {
            return Ok(());
        }
        let Some(values) = batch.values_mut() else {
            tracing::warn!(flow = %self.plan.name, "Lookups apply to decoded records only; JSONL file sources skip them.");
            return Ok(());
        };
        for value in values {
            for lookup in &self.plan.lookups {
                let Ok(id) = lookup.id.evaluate(value) else {
                    continue;
                };
                let id = crate::mapping::helpers::render(&id);
                if let Some(key) = self
                    .store
                    .xref_key(&lookup.object, &lookup.system, &id)
                    .await?
                    && let Value::Object(fields) = value
                {
                    fields.insert(lookup.field.clone(), Value::String(key));
                }
            }
        }
        Ok(())
    }

    /// Runs the flow's `enrich:` calls over a batch (after lookups); returns each record's
    /// verdict, applied where records are admitted.
    async fn enrich(&self, batch: &mut Batch) -> Result<Vec<Option<Verdict>>, RunError> {
        self.enricher
            .apply(
                batch,
                self.options.clock,
                &self.events,
                self.options.concurrency,
            )
            .await
            .map_err(|err| RunError::Setup {
                flow: self.plan.name.clone(),
                message: err.to_string(),
            })
    }

    /// Settles every record of a batch; returns what to commit and whether to stop. A record
    /// with a unit abandoned in an outage is left out entirely (no processed key, no dead
    /// letter for its other legs): it is read again, and decided whole, on the next run.
    async fn settle(
        &self,
        batch: &Batch,
        verdicts: &[Option<Verdict>],
        prepared: Option<Vec<EncodedPart>>,
        processed: &mut KeySet,
        report: &mut RunReport,
    ) -> Result<(Vec<Settled>, Option<String>), RunError> {
        // File sinks take pre-encoded lines; a split record has several, so it goes the
        // general way.
        let batch_sink = self.sink.style() == SinkStyle::Batch;
        if self.encodes_lines() {
            let parts = match prepared {
                Some(parts) => parts,
                None => {
                    prepare_all_encoded(&self.plan, batch, verdicts, self.options.clock.now_ms())
                }
            };
            return self.settle_lines(batch, parts, processed, report).await;
        }
        let prepared = prepare_all(&self.plan, batch, verdicts, self.options.clock.now_ms());
        let original = |index: usize| original_of(batch, index);
        let mut settled = Vec::with_capacity(prepared.len());
        // Records admitted for delivery: their processed key, committed once every unit is
        // settled, whatever became of each leg.
        let mut admitted: Vec<(usize, u64)> = Vec::new();
        // Failures decided after delivery (or for legs that failed mapping), by record.
        let mut failed: Vec<(usize, Rejected, u32)> = Vec::new();
        let mut pending: Vec<(usize, Unit)> = Vec::new();
        // Units for a batch sink, encoded: written in one call once the batch is admitted.
        let mut lines: Vec<(usize, Unit, Vec<u8>)> = Vec::new();
        for (index, item) in prepared.into_iter().enumerate() {
            self.note_contract_nulls(&item);
            let ready = match record::admit(item, processed) {
                Admission::Duplicate => {
                    report.duplicates += 1;
                    self.events.emit(DuplicateSkipped);
                    continue;
                }
                Admission::Filtered(condition) => {
                    report.filtered += 1;
                    self.events.emit(RecordFiltered {
                        condition: &condition,
                    });
                    continue;
                }
                Admission::Reject(rejected) => {
                    settled.push(self.dead_letter(rejected, 0, original(index), report));
                    continue;
                }
                Admission::Deliver(ready) => ready,
            };
            admitted.push((index, ready.key_hash));
            for unit in units(ready) {
                match unit {
                    Err(rejected) => failed.push((index, rejected, 0)),
                    Ok(unit) if batch_sink => {
                        let json = serde_json::to_vec(&unit.body).map_err(|err| {
                            self.sink_error(ConnectorError::internal(err.to_string()))
                        })?;
                        lines.push((index, unit, json));
                    }
                    Ok(unit) => pending.push((index, unit)),
                }
            }
        }
        let mut stop = None;
        let mut abandoned_units: Vec<(usize, Unit)> = Vec::new();
        if !lines.is_empty() {
            let encoded: Vec<Encoded<'_>> = lines
                .iter()
                .map(|(_, unit, json)| Encoded {
                    idempotency_key: &unit.idempotency_key,
                    json,
                })
                .collect();
            let (written_up_to, rejected) = match self.write_records(&encoded).await? {
                BatchWrite::Written(rejected) => (lines.len(), rejected),
                BatchWrite::Unavailable {
                    from,
                    rejected,
                    error,
                } => {
                    stop = Some(outage_reason(&error));
                    // Not written: their records go back to the source whole, as a
                    // per-record sink's abandoned units do.
                    for (index, unit, _) in lines.drain(from..) {
                        abandoned_units.push((index, unit));
                    }
                    (from, rejected)
                }
            };
            let mut to_ack = Vec::new();
            for (at, (index, unit, _)) in lines.iter().enumerate().take(written_up_to) {
                if !rejected.iter().any(|(refused, _)| *refused == at) {
                    to_ack.push((*index, unit.clone()));
                }
            }
            for (at, error) in rejected {
                if let Some((index, unit, _)) = lines.get(at) {
                    failed.push((*index, sink_rejected(unit, error), 1));
                }
            }
            for (index, unit, outcome) in self.acknowledge_written(to_ack).await? {
                match ack_failure(unit, outcome) {
                    None => report.delivered += 1,
                    Some((rejected, attempts)) => failed.push((index, rejected, attempts)),
                }
            }
        }
        let mut unavailable = std::collections::HashSet::new();
        for (index, unit, outcome) in self.deliver_all(pending, report).await? {
            let (mode, attempts, error) = match outcome {
                Outcome::Delivered => {
                    report.delivered += 1;
                    continue;
                }
                Outcome::Abandoned => {
                    abandoned_units.push((index, unit));
                    continue;
                }
                Outcome::Skipped(reason) => {
                    report.filtered += 1;
                    self.events.emit(RecordFiltered { condition: &reason });
                    continue;
                }
                Outcome::Failed {
                    mode,
                    attempts,
                    error,
                } => (mode, attempts, error),
            };
            if mode == FailureMode::SinkUnavailable {
                unavailable.insert(index);
                stop = Some(outage_reason(&error));
            }
            let reason = match mode {
                FailureMode::SinkRejected => "sink_rejected",
                FailureMode::DeadlineMissed => "deadline_missed",
                FailureMode::GuardUnmet => "guard_unmet",
                _ => "sink_unavailable",
            };
            failed.push((index, unit.rejected(mode, reason, error), attempts));
        }
        // A leg abandoned beside a leg that outlived its window shares its fate: the record
        // is settled now, its dead letters and alert go out, instead of being read again
        // (and abandoned again) run after run while the sink stays down.
        let mut abandoned = std::collections::HashSet::new();
        for (index, unit) in abandoned_units {
            if !unavailable.contains(&index) {
                abandoned.insert(index);
                continue;
            }
            let rejected = unit.rejected(
                FailureMode::SinkUnavailable,
                "sink_unavailable",
                "not sent: the sink was declared down when another leg of this record outlived \
                 its retry window"
                    .into(),
            );
            failed.push((index, rejected, 0));
        }
        failed.sort_by_key(|(index, _, _)| *index);
        for (index, rejected, attempts) in failed {
            if abandoned.contains(&index) {
                continue;
            }
            let mut item = self.dead_letter(rejected, attempts, original(index), report);
            // A leg's failure does not make its record processed; the record's key does.
            item.key_hash = None;
            settled.push(item);
        }
        for (index, key_hash) in admitted {
            if !abandoned.contains(&index) {
                settled.push(Settled {
                    key_hash: Some(key_hash),
                    dead_letter: None,
                });
            }
        }
        report.unsettled += abandoned.len() as u64;
        Ok((settled, stop))
    }

    /// [`FlowRun::settle`] for batch sinks. Records are encoded to JSON lines on the parallel
    /// stage, so the ordered stage only checks duplicates and hands the sink byte slices.
    async fn settle_lines(
        &self,
        batch: &Batch,
        parts: Vec<EncodedPart>,
        processed: &mut KeySet,
        report: &mut RunReport,
    ) -> Result<(Vec<Settled>, Option<String>), RunError> {
        let mut settled = Vec::with_capacity(batch.len());
        let mut index = 0;
        let mut stop = None;
        for (lines, prepared) in parts {
            // (batch index, index into `settled`, idempotency key, line range) of each record
            // to write.
            let mut written = Vec::with_capacity(prepared.len());
            for item in prepared {
                self.note_contract_nulls(&item);
                match record::admit(item, processed) {
                    Admission::Duplicate => {
                        report.duplicates += 1;
                        self.events.emit(DuplicateSkipped);
                    }
                    Admission::Filtered(condition) => {
                        report.filtered += 1;
                        self.events.emit(RecordFiltered {
                            condition: &condition,
                        });
                    }
                    Admission::Reject(rejected) => {
                        let original = original_of(batch, index);
                        settled.push(self.dead_letter(rejected, 0, original, report));
                    }
                    Admission::Deliver(ready) => {
                        if lines.get(ready.body.clone()).is_none() {
                            return Err(RunError::Setup {
                                flow: self.plan.name.clone(),
                                message: "an encoded record lies outside its buffer (a bug)".into(),
                            });
                        }
                        written.push((
                            index,
                            settled.len(),
                            ready.record_key,
                            ready.idempotency_key,
                            ready.body,
                            (ready.ack, ready.deadline),
                        ));
                        settled.push(Settled {
                            key_hash: Some(ready.key_hash),
                            dead_letter: None,
                        });
                    }
                }
                index += 1;
            }
            let encoded: Vec<Encoded<'_>> = written
                .iter()
                .map(|(_, _, _, key, range, _)| Encoded {
                    idempotency_key: key,
                    json: &lines[range.clone()],
                })
                .collect();
            // Once the sink is declared down, later records are not written either: the
            // output keeps the source's order.
            let outcome = match stop {
                Some(_) => None,
                None => Some(self.write_records(&encoded).await?),
            };
            let (written_up_to, rejected) = match outcome {
                Some(BatchWrite::Written(rejected)) => (written.len(), rejected),
                Some(BatchWrite::Unavailable {
                    from,
                    rejected,
                    error,
                }) => {
                    stop = Some(outage_reason(&error));
                    (from, rejected)
                }
                None => (0, Vec::new()),
            };
            for (_, slot, _, _, _, _) in written.get(written_up_to..).unwrap_or_default() {
                // Unsettled: no processed key, so the next run reads and writes it again.
                settled[*slot].key_hash = None;
                report.unsettled += 1;
            }
            // The records written and not refused are acknowledged at their source, once
            // durable; an acknowledgement that fails dead-letters its record.
            let mut to_ack = Vec::new();
            for (at, (index, slot, record_key, key, range, (ack, deadline))) in
                written.iter().enumerate().take(written_up_to)
            {
                if self.ack.is_none() || rejected.iter().any(|(refused, _)| *refused == at) {
                    continue;
                }
                let body = lines
                    .get(range.clone())
                    .and_then(|line| serde_json::from_slice(line).ok())
                    .unwrap_or(Value::Null);
                let unit = Unit {
                    record_key: record_key.clone(),
                    idempotency_key: key.clone(),
                    body,
                    deadline: *deadline,
                    ack: ack.clone(),
                };
                to_ack.push(((*index, *slot), unit));
            }
            let mut ack_failed = 0;
            for ((index, slot), unit, outcome) in self.acknowledge_written(to_ack).await? {
                if let Some(rejected) = ack_failure(unit, outcome) {
                    let (rejected, attempts) = rejected;
                    let letter =
                        self.dead_letter(rejected, attempts, original_of(batch, index), report);
                    // The record was written: its key stays processed, with the dead letter
                    // of its acknowledgement beside it.
                    settled[slot].dead_letter = letter.dead_letter;
                    ack_failed += 1;
                }
            }
            let delivered = (written_up_to - rejected.len() - ack_failed) as u64;
            report.delivered += delivered;
            for (at, error) in rejected {
                let Some((index, slot, record_key, key, _, _)) = written.get(at) else {
                    continue;
                };
                let unit = Unit {
                    record_key: record_key.clone(),
                    idempotency_key: key.clone(),
                    body: Value::Null,
                    deadline: None,
                    ack: None,
                };
                let letter = self.dead_letter(
                    sink_rejected(&unit, error),
                    1,
                    original_of(batch, *index),
                    report,
                );
                // Settled for good: its key stays processed, with its dead letter beside it.
                settled[*slot].dead_letter = letter.dead_letter;
            }
        }
        Ok((settled, stop))
    }

    /// Acknowledges records a batch sink has written: the batch is made durable first (a
    /// source must never hear "accepted" of a record a crash could still take back), then
    /// each record is acknowledged with the flow's retry policy. Without `acknowledge` every
    /// record counts as delivered as it is.
    async fn acknowledge_written<T>(
        &self,
        written: Vec<(T, Unit)>,
    ) -> Result<Vec<(T, Unit, Outcome)>, RunError> {
        if self.ack.is_none() || written.is_empty() {
            return Ok(written
                .into_iter()
                .map(|(at, unit)| (at, unit, Outcome::Delivered))
                .collect());
        }
        let commit = self
            .sink
            .prepare_commit()
            .await
            .map_err(|err| self.sink_error(err))?;
        if let Some(durable) = commit.durable {
            tokio::task::spawn_blocking(durable)
                .await
                .map_err(|_| RunError::Commit(CommitError::Gone))?
                .map_err(commit_io)?;
        }
        let failed_before = running_retry_clocks(
            &self.store,
            &self.plan.name,
            written.iter().map(|(_, unit)| unit),
            true,
        )
        .await?;
        let delivery = self.delivering(failed_before);
        let mut outcomes = Vec::with_capacity(written.len());
        for (at, unit) in written {
            let outcome = delivery.acknowledge(&unit).await?;
            outcomes.push((at, unit, outcome));
        }
        Ok(outcomes)
    }

    /// Writes records to a batch sink, classified as a per-record sink's deliveries are: a
    /// retryable failure is retried under the flow's retry policy; past the window the
    /// records go back to the source and the owner of `sink-unavailable` is alerted; a
    /// record's fault makes the records go one at a time, so only the guilty ones are refused;
    /// any other failure stops the run and alerts that owner too (the sink takes no record
    /// until someone fixes the workspace or the host, which is an outage to whoever runs the
    /// flow, not a record to correct).
    async fn write_records(&self, records: &[Encoded<'_>]) -> Result<BatchWrite, RunError> {
        let Some(first) = records.first() else {
            return Ok(BatchWrite::Written(Vec::new()));
        };
        let error = match self.write_retrying(records, first.idempotency_key).await? {
            Attempt::Written(outcome) => return Ok(BatchWrite::Written(outcome.rejected)),
            Attempt::Unavailable(error) => {
                return Ok(self.declare_outage(0, Vec::new(), error).await);
            }
            Attempt::Refused(error) if error.fault == Fault::Record => error,
            Attempt::Refused(error) => return Err(self.sink_failed(error).await),
        };
        tracing::warn!(
            flow = %self.plan.name, records = records.len(), error = %error,
            "Batch refused for a record's data; writing its records one at a time."
        );
        let mut rejected = Vec::new();
        for (at, record) in records.iter().enumerate() {
            let one = std::slice::from_ref(record);
            match self.write_retrying(one, record.idempotency_key).await? {
                Attempt::Written(outcome) => {
                    rejected.extend(outcome.rejected.into_iter().map(|(_, error)| (at, error)));
                }
                Attempt::Refused(error) if error.fault == Fault::Record => {
                    rejected.push((at, error));
                }
                Attempt::Refused(error) => return Err(self.sink_failed(error).await),
                Attempt::Unavailable(error) => {
                    return Ok(self.declare_outage(at, rejected, error).await);
                }
            }
        }
        Ok(BatchWrite::Written(rejected))
    }

    /// One `write_batch`, retried under the flow's policy while retryable. Its retry clock is
    /// keyed `batch:` and the idempotency key of the first record written: a batch left
    /// unsettled is read again from the same checkpoint, so its retry starts with the same
    /// record and its window keeps running across runs and restarts, as a record's does; the
    /// prefix keeps it apart from that record's own clock.
    async fn write_retrying(
        &self,
        records: &[Encoded<'_>],
        first_key: &str,
    ) -> Result<Attempt, RunError> {
        let flow = &self.plan.name;
        let key = format!("batch:{first_key}");
        // One read per batch (not per record): a clock left by an earlier run continues.
        let failed_before = self.store.retry_state(flow, &key).await?.is_some();
        let written = std::sync::Mutex::new(None);
        let last = std::sync::Mutex::new(None);
        let delivery = retry::deliver(
            &self.plan.retry,
            &self.options.clock,
            &self.store,
            RetryClock {
                flow,
                key: &key,
                failed_before,
                events: Some(&self.events),
            },
            None,
            || async {
                match self.sink.write_batch(records).await {
                    Ok(outcome) => {
                        *lock(&written) = Some(outcome);
                        Ok(())
                    }
                    Err(error) => {
                        *lock(&last) = Some(error.clone());
                        Err(error)
                    }
                }
            },
        )
        .await?;
        let attempt = match delivery {
            Delivery::Delivered { .. } => {
                return Ok(Attempt::Written(lock(&written).take().unwrap_or_default()));
            }
            Delivery::Rejected { error, .. } => Attempt::Refused(
                lock(&last)
                    .take()
                    .unwrap_or_else(|| ConnectorError::internal(error)),
            ),
            Delivery::Unavailable { error, .. } => Attempt::Unavailable(error),
            Delivery::Abandoned { .. } => Attempt::Unavailable("abandoned".into()),
        };
        // The clock has done its work either way. Past the window the records go back to
        // the source; a fresh clock gives the next run a whole window before the owner is
        // alerted again, rather than one failed attempt and an alert on every tick.
        self.store.clear_retry(flow, &key).await?;
        Ok(attempt)
    }

    /// The sink stayed unavailable past the retry window: reported once, its owner alerted.
    async fn declare_outage(
        &self,
        from: usize,
        rejected: Vec<(usize, ConnectorError)>,
        error: String,
    ) -> BatchWrite {
        self.events.emit(SinkOutageDeclared { error: &error });
        self.alert_owner(FailureMode::SinkUnavailable, &error).await;
        BatchWrite::Unavailable {
            from,
            rejected,
            error,
        }
    }

    /// A batch sink failed for good, not for a record: the owner of `sink-unavailable` is
    /// alerted and the run stops with the error.
    async fn sink_failed(&self, error: ConnectorError) -> RunError {
        let route = self.plan.route(FailureMode::SinkUnavailable);
        self.events.emit(SinkFailed {
            owner: &route.owner,
            error: &error,
        });
        self.alert_owner(FailureMode::SinkUnavailable, &error.message)
            .await;
        self.sink_error(error)
    }

    fn sink_error(&self, source: ConnectorError) -> RunError {
        RunError::Sink {
            flow: self.plan.name.clone(),
            source,
        }
    }

    /// Delivers units to a per-record sink, `concurrency` at a time; units of the same
    /// object go in order, one after the other, so a later change never overtakes an earlier.
    /// Units with a deadline are watched: their owner is warned when the warning share of the
    /// window has passed, and a unit still open at its deadline is dead-lettered.
    async fn deliver_all(
        &self,
        pending: Vec<(usize, Unit)>,
        report: &mut RunReport,
    ) -> Result<Vec<(usize, Unit, Outcome)>, RunError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let open = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let watcher = self.watch_deadlines(&pending, &open);
        let mut groups: IndexMap<String, Vec<(usize, Unit)>> = IndexMap::new();
        for (index, unit) in pending {
            groups
                .entry(unit.record_key.clone())
                .or_default()
                .push((index, unit));
        }
        let failed_before = running_retry_clocks(
            &self.store,
            &self.plan.name,
            groups.values().flatten().map(|(_, unit)| unit),
            self.ack.is_some(),
        )
        .await?;
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let outage = Outage::default();
        let mut tasks = tokio::task::JoinSet::new();
        let read_at = tokio::time::Instant::now();
        for (_, group) in groups {
            let events = self.events.clone();
            let permits = permits.clone();
            let delivery = Delivering {
                outage: Some(outage.clone()),
                ..self.delivering(failed_before.clone())
            };
            let outage = outage.clone();
            let open = open.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let mut results = Vec::with_capacity(group.len());
                for (index, unit) in group {
                    // Once the sink is declared down, later units of the object are not sent
                    // either: a later change must never overtake an earlier one.
                    let outcome = if outage.declared() {
                        Outcome::Abandoned
                    } else {
                        delivery.deliver(&unit).await?
                    };
                    if let Outcome::Failed {
                        mode: FailureMode::SinkUnavailable,
                        error,
                        ..
                    } = &outcome
                        && outage.declare()
                    {
                        events.emit(SinkOutageDeclared { error });
                    }
                    lock(&open).remove(&unit.record_key);
                    if let Outcome::Delivered = &outcome {
                        // Observed now (a latency is not a count of records); the record
                        // counts as delivered with its batch's commit.
                        let latency = read_at.elapsed();
                        events.emit(RecordAcknowledged { latency });
                    }
                    results.push((index, unit, outcome));
                }
                Ok::<_, StoreError>(results)
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let results = joined.map_err(|err| RunError::Setup {
                flow: self.plan.name.clone(),
                message: format!("delivery task failed: {err}"),
            })??;
            all.extend(results);
        }
        if let Some(watcher) = watcher {
            watcher.abort();
            report.deadline_warnings += watcher.await.unwrap_or(0);
        }
        if let Some(board) = &self.options.deadlines {
            board.close_flow(&self.plan.name);
        }
        all.sort_by_key(|(index, _, _)| *index);
        Ok(all)
    }

    /// Starts the deadline watcher of a batch: warnings at the warning share of each window.
    fn watch_deadlines(
        &self,
        pending: &[(usize, Unit)],
        open: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    ) -> Option<tokio::task::JoinHandle<u64>> {
        let spec = self.plan.deadline.as_ref()?;
        let now = self.options.clock.now_ms();
        let mut warnings: Vec<(i64, String, i64)> = Vec::new();
        for (_, unit) in pending {
            let Some(deadline) = unit.deadline else {
                continue;
            };
            lock(open).insert(unit.record_key.clone());
            // A deadline already past needs no warning: the miss itself is reported.
            if deadline.due_ms <= now {
                continue;
            }
            if let Some(board) = &self.options.deadlines {
                board.open(&self.plan.name, &unit.record_key, deadline.due_ms);
            }
            let start = deadline.start_ms.unwrap_or(now).min(deadline.due_ms);
            let warn_ms = start + ((deadline.due_ms - start) as f64 * spec.warn_at) as i64;
            warnings.push((warn_ms, unit.record_key.clone(), deadline.due_ms));
        }
        warnings.sort();
        let clock = self.options.clock;
        let plan = self.plan.clone();
        let store = self.store.clone();
        let open = open.clone();
        let board = self.options.deadlines.clone();
        let events = self.events.clone();
        Some(tokio::spawn(async move {
            let mut sent = 0;
            for (warn_ms, key, due_ms) in warnings {
                let wait = (warn_ms - clock.now_ms()).max(0) as u64;
                clock.sleep(Duration::from_millis(wait)).await;
                if !lock(&open).contains(&key) {
                    continue;
                }
                sent += 1;
                if let Some(board) = &board {
                    board.warned(&plan.name, &key);
                }
                warn_deadline(&plan, &store, &events, &key, due_ms, clock.now_ms()).await;
            }
            sent
        }))
    }
    fn dead_letter(
        &self,
        rejected: Rejected,
        attempts: u32,
        (original, line): (Original, Option<u64>),
        report: &mut RunReport,
    ) -> Settled {
        let letter = build_dead_letter(&self.plan, &rejected, attempts, original, line);
        report.dead_lettered += 1;
        *report.by_failure.entry(letter.failure.clone()).or_default() += 1;
        // Counted (and logged) once the batch carrying it is committed.
        let alert = build_alert(&self.plan, &letter);
        Settled {
            key_hash: rejected
                .idempotency_key
                .as_deref()
                .map(crate::store::key_hash),
            dead_letter: Some(Box::new((letter, alert))),
        }
    }

    async fn alert_source_unavailable(&self, error: &ConnectorError) {
        let route = self.plan.route(FailureMode::SourceUnavailable);
        self.events.emit(SourceUnavailable {
            owner: &route.owner,
            error,
        });
        self.alert_owner(FailureMode::SourceUnavailable, &error.to_string())
            .await;
    }

    /// Queues an alert of a failure of the flow as a whole (no record's) to its mode's owner,
    /// when the owner has an alert webhook.
    async fn alert_owner(&self, mode: FailureMode, error: &str) {
        let route = self.plan.route(mode);
        let Some(url) = self.plan.alert_urls.get(&route.owner) else {
            return;
        };
        let payload = json!({
            "flow": self.plan.name, "object": self.plan.object, "record_key": null,
            "failure": mode.as_str(), "owner": route.owner,
            "action": route.action, "runbook": route.runbook, "escalation": route.escalate,
            "error": error, "at": crate::store::now_rfc3339(),
        });
        let alert = OutboxAlert {
            owner: route.owner,
            url: url.clone(),
            payload,
        };
        if let Err(err) = self.store.enqueue_alert(&alert).await {
            tracing::error!(error = %err, "Could not queue the alert.");
        }
    }

    fn progress_bar(&self) -> Option<indicatif::ProgressBar> {
        if !self.options.progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {prefix} {pos} records read ({per_sec}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(self.plan.name.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    }
}

/// Builds a dead letter for a rejected record, routed by its failure mode.
pub(crate) fn build_dead_letter(
    plan: &FlowPlan,
    rejected: &Rejected,
    attempts: u32,
    original: Original,
    line: Option<u64>,
) -> NewDeadLetter {
    let route = plan.route(rejected.rejection.mode);
    let (record, record_truncated) =
        super::original::keep_original(original, plan.max_dead_letter_record);
    NewDeadLetter {
        flow: plan.name.clone(),
        object: plan.object.clone(),
        record_key: rejected.record_key.clone(),
        idempotency_key: rejected.idempotency_key.clone(),
        failure: rejected.rejection.mode.as_str().to_owned(),
        reason: rejected.rejection.reason.clone(),
        error: rejected.rejection.error.clone(),
        attempts,
        owner: route.owner,
        action: route
            .action
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        record,
        line,
        record_truncated,
    }
}

/// The alert for a dead letter, if its owner has an alert webhook.
pub(crate) fn build_alert(plan: &FlowPlan, letter: &NewDeadLetter) -> Option<OutboxAlert> {
    let route = FailureMode::parse(&letter.failure).map(|m| plan.route(m));
    alert_for(&plan.alert_urls, route, letter)
}

/// The alert for a dead letter routed by `route`, if its owner has an alert webhook (shared
/// with the reconciliation's dead letters, so every alert has one shape).
pub(crate) fn alert_for(
    alert_urls: &IndexMap<String, String>,
    route: Option<crate::spec::model::FailureRoute>,
    letter: &NewDeadLetter,
) -> Option<OutboxAlert> {
    let url = alert_urls.get(&letter.owner)?;
    Some(OutboxAlert {
        owner: letter.owner.clone(),
        url: url.clone(),
        payload: json!({
            "flow": letter.flow,
            "object": letter.object,
            "record_key": letter.record_key,
            "line": letter.line,
            "failure": letter.failure,
            "reason": letter.reason,
            "error": letter.error,
            "owner": letter.owner,
            "action": letter.action,
            "runbook": route.as_ref().and_then(|r| r.runbook.clone()),
            "escalation": route.as_ref().and_then(|r| r.escalate.clone()),
            "at": crate::store::now_rfc3339(),
        }),
    })
}

impl FlowRun {
    /// Reports the `null`s a lenient contract accepted in one record as warnings.
    fn note_contract_nulls<B>(&self, item: &Prepared<B>) {
        if item.contract_nulls > 0 {
            self.events.emit(ContractNullsTolerated {
                record_key: item.record_key.as_deref(),
                count: item.contract_nulls,
            });
        }
    }
}

/// Runs the pure stage over a batch, on two threads when the batch is large.
/// `now_ms` is read once per batch: every record of a batch is judged at the same time.
fn prepare_all(
    plan: &FlowPlan,
    batch: &Batch,
    verdicts: &[Option<Verdict>],
    now_ms: i64,
) -> Vec<Prepared> {
    let halves = in_two(batch.len(), |range| {
        range
            .filter_map(|i| Some((i, batch.get(i)?)))
            .map(|(i, raw)| {
                let mut prepared = record::prepare(plan, &raw, now_ms);
                apply_verdict(&mut prepared, verdicts.get(i));
                prepared
            })
            .collect::<Vec<_>>()
    });
    halves.into_iter().flatten().collect()
}

/// Part of a batch after the pure stage: the buffer its records were encoded into, and the
/// records, whose bodies are ranges of that buffer.
pub(super) type EncodedPart = (Vec<u8>, Vec<Prepared<std::ops::Range<usize>>>);

/// [`prepare_all`] for file sinks: the parts of the batch, in record order.
fn prepare_all_encoded(
    plan: &FlowPlan,
    batch: &Batch,
    verdicts: &[Option<Verdict>],
    now_ms: i64,
) -> Vec<EncodedPart> {
    in_two(batch.len(), |range| {
        // A mapped record is usually smaller than its input line; start from that.
        let mut lines = Vec::with_capacity(range.len() * 384);
        let prepared = range
            .filter_map(|i| Some((i, batch.get(i)?)))
            .map(|(i, raw)| {
                let mut prepared = record::prepare_encoded(plan, &raw, now_ms, &mut lines);
                apply_verdict(&mut prepared, verdicts.get(i));
                prepared
            })
            .collect();
        (lines, prepared)
    })
}

/// Applies an enrichment verdict to a prepared record. A record the flow's `where:` filters
/// out stays filtered: the flow does not act on it, so its failed call does not matter.
fn apply_verdict<B>(prepared: &mut Prepared<B>, verdict: Option<&Option<Verdict>>) {
    if prepared.filtered.is_some() {
        return;
    }
    match verdict {
        Some(Some(Verdict::Skip(reason))) => prepared.filtered = Some(reason.clone()),
        Some(Some(Verdict::DeadLetter(error))) => {
            prepared.result = Err(Verdict::rejection(error));
        }
        _ => {}
    }
}

/// Runs `work` over `0..len`, split in two halves on two threads when there is enough work
/// to pay for a thread; results come back in order.
fn in_two<T: Send>(len: usize, work: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    if len < 2_048 {
        return vec![work(0..len)];
    }
    let middle = len / 2;
    std::thread::scope(|scope| {
        let second = scope.spawn(|| work(middle..len));
        let first = work(0..middle);
        let second = match second.join() {
            Ok(rest) => rest,
            // A panic in the pure stage is a bug; redo the half here rather than lose records.
            Err(_) => work(middle..len),
        };
        vec![first, second]
    })
}

/// Commits a sink's state at open when it is not the checkpoint's (a new output file), before
/// anything is written: after a crash in the first batch, the output's tail is then one the
/// checkpoint proves is this flow's to cut.
pub(crate) async fn claim_output(
    store: &Store,
    flow: &str,
    checkpoint: &Checkpoint,
    sink: &dyn Sink,
    lock: &str,
) -> Result<(), RunError> {
    let sink_error = |source| RunError::Sink {
        flow: flow.to_owned(),
        source,
    };
    let opened = sink.prepare_commit().await.map_err(sink_error)?;
    if opened.state == checkpoint.sink_state {
        return Ok(());
    }
    if let Some(durable) = opened.durable {
        tokio::task::spawn_blocking(durable)
            .await
            .map_err(|_| RunError::Commit(CommitError::Gone))?
            .map_err(commit_io)?;
    }
    store
        .commit(CommitBatch {
            flow: flow.to_owned(),
            checkpoint: Checkpoint {
                position: checkpoint.position.clone(),
                sink_state: opened.state,
            },
            lock: Some(lock.to_owned()),
            ..CommitBatch::default()
        })
        .await?;
    Ok(())
}

/// Why a run stopped when its sink stayed unavailable past the retry window.
fn outage_reason(error: &str) -> String {
    format!(
        "the sink stayed unavailable past the retry window ({error}); the checkpoint stays \
         before the records not yet settled"
    )
}

/// The dead letter of a written record whose acknowledgement failed, with its attempts;
/// `None` when it was acknowledged. (A batch sink's acknowledgements are never abandoned: the
/// record is written and durable, so only its acknowledgement is left to settle.)
fn ack_failure(unit: Unit, outcome: Outcome) -> Option<(Rejected, u32)> {
    let (mode, attempts, error) = match outcome {
        // Guards (the only source of `Skipped`) are refused on batch sinks at run start.
        Outcome::Delivered | Outcome::Abandoned | Outcome::Skipped(_) => return None,
        Outcome::Failed {
            mode,
            attempts,
            error,
        } => (mode, attempts, error),
    };
    let reason = match mode {
        FailureMode::DeadlineMissed => "deadline_missed",
        FailureMode::SinkUnavailable => "ack_unavailable",
        _ => "ack_rejected",
    };
    let error = format!("written, but the acknowledgement failed: {error}");
    Some((unit.rejected(mode, reason, error), attempts))
}

/// A record a batch sink refused: dead-lettered as rejected by the sink.
fn sink_rejected(unit: &Unit, error: ConnectorError) -> Rejected {
    unit.rejected(FailureMode::SinkRejected, "sink_rejected", error.message)
}

/// What a dead letter keeps of record `index` of a batch: its original bytes and, for files,
/// the line it starts on.
fn original_of(batch: &Batch, index: usize) -> (Original, Option<u64>) {
    let bytes = batch.get(index).map(|r| r.original()).unwrap_or_default();
    (Original::new(bytes), batch.line(index))
}

fn commit_io(err: std::io::Error) -> RunError {
    RunError::Commit(CommitError::Sync(err))
}

fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}
