//! Running one flow: read batches, settle every record (delivered, duplicate or dead letter),
//! commit, repeat until the source is exhausted.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::clock::Clock;
use super::commit::{CommitError, Committer, Job};
use super::plan::{FlowPlan, PlanError};
use super::record::{self, Admission, KeySet, Prepared, Ready, Rejected, Rejection};
use super::retry::{self, Delivery};
use crate::connectors::file::{FileSink, FileSource};
use crate::connectors::http::{HttpSink, HttpSource, HttpSystem};
use crate::connectors::recorder::RecorderSink;
use crate::connectors::{Batch, Outgoing, RawRecord, SourceError};
use crate::spec::model::{FailureMode, Workspace};
use crate::spec::raw::{FileFormat, SystemConfig};
use crate::store::{Checkpoint, CommitBatch, NewDeadLetter, OutboxAlert, Store, StoreError};

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
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: Clock::System,
            batch_size: 10_000,
            progress: true,
            concurrency: 8,
            stop: None,
        }
    }
}

/// Records instead of the flow's own source (flow tests).
#[derive(Debug, Clone)]
pub struct SourceOverride(pub Vec<Value>);

/// A recorder instead of the flow's own sink (flow tests).
#[derive(Debug, Clone)]
pub struct SinkOverride(pub RecorderSink);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Records read.
    pub read: u64,
    /// Records acknowledged by the sink.
    pub delivered: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Dead letters by failure mode.
    pub by_failure: BTreeMap<String, u64>,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
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
        source: SourceError,
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
    source: SourceKind,
    sink: SinkKind,
    options: RunOptions,
}

enum SourceKind {
    Http(Box<HttpSource>),
    File(FileSource),
    Memory(Option<Vec<Value>>),
}

#[derive(Clone)]
enum SinkKind {
    Http(HttpSink),
    Recorder(RecorderSink),
    File(Arc<std::sync::Mutex<FileSink>>),
}

/// An outcome of one record, before commit.
struct Settled {
    key_hash: Option<u64>,
    // Boxed: most records have none, and a batch holds one `Settled` per record.
    dead_letter: Option<Box<(NewDeadLetter, Option<OutboxAlert>)>>,
}

impl FlowRun {
    /// Prepares flow `name` of `workspace`, reading its checkpoint from `store`.
    pub fn new(
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
        let plan = FlowPlan::compile(workspace, flow)?;
        let checkpoint = store.checkpoint(name)?.unwrap_or_default();
        let setup = |message: String| RunError::Setup {
            flow: name.to_owned(),
            message,
        };
        let system = |system: &str| {
            workspace
                .spec
                .systems
                .get(system)
                .ok_or_else(|| setup(format!("system `{system}` is not declared")))
        };
        let source = match source {
            Some(SourceOverride(records)) => SourceKind::Memory(Some(records)),
            None => {
                let from = &flow.spec.from;
                match system(&from.system)? {
                    SystemConfig {
                        http: Some(http), ..
                    } => {
                        let client = http_system(http)?;
                        SourceKind::Http(Box::new(
                            HttpSource::new(client, from, &checkpoint.position).map_err(setup)?,
                        ))
                    }
                    SystemConfig {
                        file: Some(file), ..
                    } => {
                        let path =
                            file_path(workspace, &file.dir, from.path.as_deref()).map_err(setup)?;
                        let format = from.format.unwrap_or(FileFormat::Jsonl);
                        SourceKind::File(
                            FileSource::open(&path, format, &checkpoint.position)
                                .map_err(|e| setup(e.to_string()))?,
                        )
                    }
                    _ => return Err(setup(format!("system `{}` has no connector", from.system))),
                }
            }
        };
        let sink = match sink {
            Some(SinkOverride(recorder)) => SinkKind::Recorder(recorder),
            None => {
                let to = &flow.spec.to;
                match system(&to.system)? {
                    SystemConfig {
                        http: Some(http), ..
                    } => SinkKind::Http(HttpSink::new(http_system(http)?, to).map_err(setup)?),
                    SystemConfig {
                        file: Some(file), ..
                    } => {
                        let path =
                            file_path(workspace, &file.dir, to.path.as_deref()).map_err(setup)?;
                        let sink = FileSink::open(&path, &checkpoint.sink_state)
                            .map_err(|e| setup(e.to_string()))?;
                        SinkKind::File(Arc::new(std::sync::Mutex::new(sink)))
                    }
                    _ => return Err(setup(format!("system `{}` has no connector", to.system))),
                }
            }
        };
        Ok(Self {
            plan: Arc::new(plan),
            store,
            source,
            sink,
            options,
        })
    }

    /// The compiled flow.
    pub fn plan(&self) -> &FlowPlan {
        &self.plan
    }

    /// Runs the flow until its source is exhausted (or the sink stays unavailable).
    pub async fn run(mut self) -> Result<RunReport, RunError> {
        let flow = self.plan.name.clone();
        let mut processed = KeySet::default();
        self.store.load_processed_keys(&flow, &mut processed)?;
        let progress = self.progress_bar();
        let mut committer = Committer::spawn(self.store.clone());
        let mut report = RunReport::default();
        tracing::info!(flow = %flow, "Flow run started.");
        loop {
            let batch = match self.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(source) => {
                    self.alert_source_unavailable(&source);
                    committer.finish()?;
                    return Err(RunError::Source {
                        flow: flow.clone(),
                        source,
                    });
                }
            };
            report.read += batch.len() as u64;
            let (settled, stop) = self.settle(&batch, &mut processed, &mut report).await?;
            let mut commit = CommitBatch {
                flow: flow.clone(),
                checkpoint: Checkpoint {
                    position: batch.position.clone(),
                    sink_state: Value::Null,
                },
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
            let sync = match &self.sink {
                SinkKind::File(file) => {
                    let mut file = lock(file);
                    commit.checkpoint.sink_state = file.flush().map_err(commit_io)?;
                    Some(file.sync_handle().map_err(commit_io)?)
                }
                _ => None,
            };
            committer.submit(Job {
                batch: commit,
                sync,
            })?;
            if let Some(bar) = &progress {
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
        committer.finish()?;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        tracing::info!(
            flow = %flow, read = report.read, delivered = report.delivered,
            dead_lettered = report.dead_lettered, duplicates = report.duplicates,
            "Flow run finished."
        );
        Ok(report)
    }

    async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        match &mut self.source {
            SourceKind::Http(source) => source.next_batch().await,
            SourceKind::File(source) => source.next_batch(self.options.batch_size),
            SourceKind::Memory(records) => {
                Ok(records.take().filter(|r| !r.is_empty()).map(|r| Batch {
                    records: crate::connectors::BatchRecords::Values(r),
                    position: Value::Null,
                }))
            }
        }
    }

    /// Settles every record of a batch; returns what to commit and whether to stop.
    async fn settle(
        &self,
        batch: &Batch,
        processed: &mut KeySet,
        report: &mut RunReport,
    ) -> Result<(Vec<Settled>, Option<String>), RunError> {
        if let SinkKind::File(file) = &self.sink {
            return self.settle_lines(batch, file, processed, report);
        }
        let prepared = prepare_all(&self.plan, batch);
        let mut settled = Vec::with_capacity(prepared.len());
        let mut pending: Vec<(usize, Ready)> = Vec::new();
        for (index, item) in prepared.into_iter().enumerate() {
            match record::admit(item, processed) {
                Admission::Duplicate => report.duplicates += 1,
                Admission::Reject(rejected) => {
                    let original = batch
                        .get(index)
                        .map(|r| r.original_text())
                        .unwrap_or_default();
                    settled.push(self.dead_letter(rejected, 0, original, report));
                }
                Admission::Deliver(ready) => match &self.sink {
                    SinkKind::File(file) => {
                        lock(file).write(&ready.body).map_err(commit_io)?;
                        report.delivered += 1;
                        settled.push(Settled {
                            key_hash: Some(ready.key_hash),
                            dead_letter: None,
                        });
                    }
                    _ => pending.push((index, ready)),
                },
            }
        }
        let mut stop = None;
        for (index, ready, delivery) in self.deliver_all(pending).await? {
            match delivery {
                Delivery::Delivered { .. } => {
                    report.delivered += 1;
                    settled.push(Settled {
                        key_hash: Some(ready.key_hash),
                        dead_letter: None,
                    });
                }
                Delivery::Rejected {
                    attempts,
                    ref error,
                }
                | Delivery::Unavailable {
                    attempts,
                    ref error,
                } => {
                    let error = error.clone();
                    let mode = if matches!(delivery, Delivery::Rejected { .. }) {
                        FailureMode::SinkRejected
                    } else {
                        FailureMode::SinkUnavailable
                    };
                    if mode == FailureMode::SinkUnavailable {
                        stop = Some(format!(
                            "the sink stayed unavailable past the retry window ({error}); the \
                             checkpoint stays before the records not yet read"
                        ));
                    }
                    let original = batch
                        .get(index)
                        .map(|r| r.original_text())
                        .unwrap_or_default();
                    let rejected = Rejected {
                        record_key: Some(ready.record_key.clone()),
                        idempotency_key: Some(ready.idempotency_key.clone()),
                        rejection: Rejection {
                            mode,
                            reason: if mode == FailureMode::SinkRejected {
                                "sink_rejected".into()
                            } else {
                                "sink_unavailable".into()
                            },
                            error,
                        },
                    };
                    let mut item = self.dead_letter(rejected, attempts, original, report);
                    item.key_hash = Some(ready.key_hash);
                    settled.push(item);
                }
            }
        }
        Ok((settled, stop))
    }

    /// [`FlowRun::settle`] for file sinks. Records are encoded to JSON lines on the parallel
    /// stage, so the ordered stage only checks duplicates and copies bytes; a file write
    /// cannot be refused, so nothing stops the run here.
    fn settle_lines(
        &self,
        batch: &Batch,
        file: &std::sync::Mutex<FileSink>,
        processed: &mut KeySet,
        report: &mut RunReport,
    ) -> Result<(Vec<Settled>, Option<String>), RunError> {
        let mut settled = Vec::with_capacity(batch.len());
        let mut sink = lock(file);
        let mut index = 0;
        for (lines, prepared) in prepare_all_encoded(&self.plan, batch) {
            for item in prepared {
                match record::admit(item, processed) {
                    Admission::Duplicate => report.duplicates += 1,
                    Admission::Reject(rejected) => {
                        let original = batch
                            .get(index)
                            .map(|r| r.original_text())
                            .unwrap_or_default();
                        settled.push(self.dead_letter(rejected, 0, original, report));
                    }
                    Admission::Deliver(ready) => {
                        let Some(line) = lines.get(ready.body) else {
                            return Err(RunError::Setup {
                                flow: self.plan.name.clone(),
                                message: "an encoded record lies outside its buffer (a bug)".into(),
                            });
                        };
                        sink.write_line(line).map_err(commit_io)?;
                        report.delivered += 1;
                        settled.push(Settled {
                            key_hash: Some(ready.key_hash),
                            dead_letter: None,
                        });
                    }
                }
                index += 1;
            }
        }
        Ok((settled, None))
    }

    /// Delivers records to a per-record sink, `concurrency` at a time; records of the same
    /// object go in order, one after the other, so a later change never overtakes an earlier.
    async fn deliver_all(
        &self,
        pending: Vec<(usize, Ready)>,
    ) -> Result<Vec<(usize, Ready, Delivery)>, RunError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: IndexMap<String, Vec<(usize, Ready)>> = IndexMap::new();
        for (index, ready) in pending {
            groups
                .entry(ready.record_key.clone())
                .or_default()
                .push((index, ready));
        }
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (_, group) in groups {
            let permits = permits.clone();
            let sink = self.sink.clone();
            let store = self.store.clone();
            let plan = self.plan.clone();
            let clock = self.options.clock;
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let mut results = Vec::with_capacity(group.len());
                for (index, ready) in group {
                    let outgoing = Outgoing {
                        idempotency_key: ready.idempotency_key.clone(),
                        body: ready.body.clone(),
                    };
                    let delivery = retry::deliver(
                        &plan.retry,
                        &clock,
                        &store,
                        &plan.name,
                        &ready.idempotency_key,
                        || send(&sink, &outgoing, &clock),
                    )
                    .await?;
                    results.push((index, ready, delivery));
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
        all.sort_by_key(|(index, _, _)| *index);
        Ok(all)
    }

    fn dead_letter(
        &self,
        rejected: Rejected,
        attempts: u32,
        original: String,
        report: &mut RunReport,
    ) -> Settled {
        let letter = build_dead_letter(&self.plan, &rejected, attempts, original);
        report.dead_lettered += 1;
        *report.by_failure.entry(letter.failure.clone()).or_default() += 1;
        tracing::warn!(
            flow = %self.plan.name, failure = %letter.failure, owner = %letter.owner,
            record_key = letter.record_key.as_deref().unwrap_or("-"), error = %letter.error,
            "Record dead-lettered."
        );
        let alert = build_alert(&self.plan, &letter);
        Settled {
            key_hash: rejected
                .idempotency_key
                .as_deref()
                .map(crate::store::key_hash),
            dead_letter: Some(Box::new((letter, alert))),
        }
    }

    fn alert_source_unavailable(&self, error: &SourceError) {
        let route = self.plan.route(FailureMode::SourceUnavailable);
        tracing::error!(flow = %self.plan.name, owner = %route.owner, error = %error, "Source unavailable.");
        let Some(url) = self.plan.alert_urls.get(&route.owner) else {
            return;
        };
        let payload = json!({
            "flow": self.plan.name, "object": self.plan.object, "record_key": null,
            "failure": FailureMode::SourceUnavailable.as_str(), "owner": route.owner,
            "action": route.action, "runbook": route.runbook, "escalation": route.escalate,
            "error": error.to_string(), "at": crate::store::now_rfc3339(),
        });
        let alert = OutboxAlert {
            owner: route.owner,
            url: url.clone(),
            payload,
        };
        if let Err(err) = self.store.enqueue_alert(&alert) {
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
    original: String,
) -> NewDeadLetter {
    let route = plan.route(rejected.rejection.mode);
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
        record: original,
    }
}

/// The alert for a dead letter, if its owner has an alert webhook.
pub(crate) fn build_alert(plan: &FlowPlan, letter: &NewDeadLetter) -> Option<OutboxAlert> {
    let url = plan.alert_urls.get(&letter.owner)?;
    let route = FailureMode::parse(&letter.failure).map(|m| plan.route(m));
    Some(OutboxAlert {
        owner: letter.owner.clone(),
        url: url.clone(),
        payload: json!({
            "flow": letter.flow,
            "object": letter.object,
            "record_key": letter.record_key,
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

/// Sends one record through a per-record sink.
async fn send(
    sink: &SinkKind,
    outgoing: &Outgoing,
    clock: &Clock,
) -> Result<(), crate::connectors::SendFailure> {
    match sink {
        SinkKind::Http(http) => http.send(outgoing).await,
        SinkKind::Recorder(recorder) => recorder.send(outgoing, clock.now_ms()),
        SinkKind::File(_) => Ok(()),
    }
}

/// Runs the pure stage over a batch, on two threads when the batch is large.
fn prepare_all(plan: &FlowPlan, batch: &Batch) -> Vec<Prepared> {
    let halves = in_two(batch.len(), |range| {
        range
            .filter_map(|i| batch.get(i))
            .map(|raw: RawRecord<'_>| record::prepare(plan, &raw))
            .collect::<Vec<_>>()
    });
    halves.into_iter().flatten().collect()
}

/// Part of a batch after the pure stage: the buffer its records were encoded into, and the
/// records, whose bodies are ranges of that buffer.
type EncodedPart = (Vec<u8>, Vec<Prepared<std::ops::Range<usize>>>);

/// [`prepare_all`] for file sinks: the parts of the batch, in record order.
fn prepare_all_encoded(plan: &FlowPlan, batch: &Batch) -> Vec<EncodedPart> {
    in_two(batch.len(), |range| {
        // A mapped record is usually smaller than its input line; start from that.
        let mut lines = Vec::with_capacity(range.len() * 384);
        let prepared = range
            .filter_map(|i| batch.get(i))
            .map(|raw: RawRecord<'_>| record::prepare_encoded(plan, &raw, &mut lines))
            .collect();
        (lines, prepared)
    })
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

fn http_system(config: &crate::spec::raw::HttpSystemConfig) -> Result<HttpSystem, RunError> {
    HttpSystem::new(config, Duration::from_secs(30), |name| {
        std::env::var(name).ok()
    })
    .map_err(|err| RunError::Setup {
        flow: String::new(),
        message: err.to_string(),
    })
}

fn file_path(workspace: &Workspace, dir: &str, path: Option<&str>) -> Result<PathBuf, String> {
    let path = path.ok_or("a file endpoint needs `path`")?;
    Ok(workspace.root.join(dir).join(path))
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
