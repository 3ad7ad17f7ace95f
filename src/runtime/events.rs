//! Named runtime events: each is a struct whose one `emit` logs once, in house style, and
//! updates its metrics, so a log line and its counter can never disagree. The runtime emits
//! them as things happen (a record delivered, a batch committed), not from a report at the
//! end, so `/metrics` shows a long run's progress while it lasts.
//!
//! Events go to the [`Observer`] a run is given in its options: the daemon and `switchyard
//! run` hand in their registry, flow tests a private one. A run resolves its per-flow
//! handles once ([`Observer::flow`]); per-record events are then an atomic add with no lock,
//! no allocation and no log line above `trace`. Metric definitions live in
//! [`crate::metrics::catalog`]; this module owns no names.
//!
//! It must not decide anything: events report what the runtime did, never steer it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::RunReport;
use crate::connectors::ConnectorError;
use crate::metrics::catalog::{
    BATCHES_COMMITTED, CONTRACT_NULL_WARNINGS, DEADLINE_WARNINGS, DELIVERY_LATENCY,
    ENRICHMENT_CALLS, FLOW_LEASE_LOST, FLOW_LOCK_REFUSED, LISTINGS_CUT, RECORDS_DEAD_LETTERED,
    RECORDS_DELIVERED, RECORDS_DUPLICATE, RECORDS_FILTERED, RECORDS_RECEIVED, RECORDS_RETRIED,
    RUN_DURATION, RUNS_FINISHED, SINK_OUTAGES, SOURCE_RETRIES, SOURCE_UNAVAILABLE,
};
use crate::metrics::{Counter, Histogram, Labels, Metrics};
use crate::spec::model::FailureMode;
use crate::store::{NewDeadLetter, StoreError};

/// Where a run's events are counted: a metric registry, shared. The default is a registry
/// of its own that nobody reads.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    metrics: Arc<Metrics>,
}

/// The events of one flow's run, with its metric handles resolved; cheap to clone.
#[derive(Debug, Clone)]
pub struct FlowEvents {
    inner: Arc<FlowHandles>,
}

#[derive(Debug)]
struct FlowHandles {
    flow: String,
    metrics: Arc<Metrics>,
    started: Instant,
    received: Counter,
    delivered: Counter,
    duplicates: Counter,
    filtered: Counter,
    retried: Counter,
    batches: Counter,
    deadline_warnings: Counter,
    contract_nulls: Counter,
    latency: Histogram,
}

/// An event the runtime emits.
pub trait RuntimeEvent {
    /// Logs the event once and updates its metrics.
    fn emit(self, events: &FlowEvents);
}

impl Observer {
    /// An observer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    /// The registry events are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The events of flow `flow`, its handles resolved once for the run.
    pub fn flow(&self, flow: &str) -> FlowEvents {
        let metrics = &self.metrics;
        let labels = || vec![("flow", flow.to_owned())];
        FlowEvents {
            inner: Arc::new(FlowHandles {
                flow: flow.to_owned(),
                metrics: Arc::clone(metrics),
                started: Instant::now(),
                received: metrics.counter_handle(&RECORDS_RECEIVED, labels()),
                delivered: metrics.counter_handle(&RECORDS_DELIVERED, labels()),
                duplicates: metrics.counter_handle(&RECORDS_DUPLICATE, labels()),
                filtered: metrics.counter_handle(&RECORDS_FILTERED, labels()),
                retried: metrics.counter_handle(&RECORDS_RETRIED, labels()),
                batches: metrics.counter_handle(&BATCHES_COMMITTED, labels()),
                deadline_warnings: metrics.counter_handle(&DEADLINE_WARNINGS, labels()),
                contract_nulls: metrics.counter_handle(&CONTRACT_NULL_WARNINGS, labels()),
                latency: metrics.histogram_handle(&DELIVERY_LATENCY, labels()),
            }),
        }
    }
}

impl FlowEvents {
    /// Emits `event`.
    pub fn emit(&self, event: impl RuntimeEvent) {
        event.emit(self);
    }

    /// The flow.
    pub fn flow(&self) -> &str {
        &self.inner.flow
    }

    fn labels(&self) -> Labels {
        vec![("flow", self.inner.flow.clone())]
    }
}

/// A run started reading its source.
#[derive(Debug)]
pub struct RunStarted;

impl RuntimeEvent for RunStarted {
    fn emit(self, events: &FlowEvents) {
        tracing::info!(flow = %events.flow(), "Flow run started.");
    }
}

/// A run read its source to the end, or stopped early on purpose (shutdown, sink outage).
#[derive(Debug)]
pub struct RunFinished<'a> {
    /// What the run did.
    pub report: &'a RunReport,
}

impl RuntimeEvent for RunFinished<'_> {
    fn emit(self, events: &FlowEvents) {
        let report = self.report;
        tracing::info!(
            flow = %events.flow(), read = report.read, delivered = report.delivered,
            dead_lettered = report.dead_lettered, duplicates = report.duplicates,
            filtered = report.filtered,
            "Flow run finished."
        );
        let handles = &events.inner;
        handles.metrics.count(&RUNS_FINISHED, events.labels(), 1);
        let elapsed = handles.started.elapsed().as_secs_f64();
        handles
            .metrics
            .observe(&RUN_DURATION, events.labels(), elapsed);
    }
}

/// A batch was read from the source.
#[derive(Debug)]
pub struct BatchRead {
    /// Records in the batch.
    pub records: u64,
}

impl RuntimeEvent for BatchRead {
    fn emit(self, events: &FlowEvents) {
        tracing::trace!(flow = %events.flow(), records = self.records, "Batch read.");
        events.inner.received.add(self.records);
    }
}

/// A batch is durable: checkpoint, processed keys and dead letters committed together.
#[derive(Debug)]
pub struct BatchCommitted<'a> {
    /// Records the batch read.
    pub records: u64,
    /// The checkpoint committed.
    pub position: &'a Value,
}

impl RuntimeEvent for BatchCommitted<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::debug!(
            flow = %events.flow(), records = self.records, position = %self.position,
            "Batch committed."
        );
        events.inner.batches.add(1);
    }
}

/// A record (or one leg of a split record) was acknowledged by the sink, and at its source
/// when the flow acknowledges.
#[derive(Debug)]
pub struct RecordDelivered {
    /// From the record's batch being read to its acknowledgement; `None` for sinks that
    /// write a batch at once (files), where a per-record latency means nothing.
    pub latency: Option<Duration>,
}

impl RuntimeEvent for RecordDelivered {
    fn emit(self, events: &FlowEvents) {
        // Per record: an atomic add, and a log line only when tracing asks for it.
        tracing::trace!(flow = %events.flow(), "Record delivered.");
        events.inner.delivered.add(1);
        if let Some(latency) = self.latency {
            events.inner.latency.observe(latency.as_secs_f64());
        }
    }
}

/// A record was acknowledged by a per-record sink: its latency is observed as it happens;
/// it counts as delivered only once its batch is committed ([`RecordsWritten`]), so a batch
/// whose commit fails is not counted twice when the next run delivers it again.
#[derive(Debug)]
pub struct RecordAcknowledged {
    /// From the record's batch being read to its acknowledgement.
    pub latency: Duration,
}

impl RuntimeEvent for RecordAcknowledged {
    fn emit(self, events: &FlowEvents) {
        tracing::trace!(flow = %events.flow(), "Record acknowledged.");
        events.inner.latency.observe(self.latency.as_secs_f64());
    }
}

/// Records of a batch were delivered (acknowledged one by one, or written by a batch sink)
/// and the batch is committed: they count as delivered. Emitted once per batch, after its
/// commit.
#[derive(Debug)]
pub struct RecordsWritten {
    /// Records written.
    pub records: u64,
}

impl RuntimeEvent for RecordsWritten {
    fn emit(self, events: &FlowEvents) {
        tracing::trace!(flow = %events.flow(), records = self.records, "Records written.");
        events.inner.delivered.add(self.records);
    }
}

/// A record was dropped as a duplicate of one already processed.
#[derive(Debug)]
pub struct DuplicateSkipped;

impl RuntimeEvent for DuplicateSkipped {
    fn emit(self, events: &FlowEvents) {
        tracing::trace!(flow = %events.flow(), "Duplicate record skipped.");
        events.inner.duplicates.add(1);
    }
}

/// A lenient contract accepted a record with `null`s in typed fields (vendor payloads that
/// break their own schema); each is counted as a warning instead of dead-lettering the record.
#[derive(Debug)]
pub struct ContractNullsTolerated<'a> {
    /// The record, when its key could be read (a log field only, never a label).
    pub record_key: Option<&'a str>,
    /// How many `null`s were tolerated.
    pub count: usize,
}

impl RuntimeEvent for ContractNullsTolerated<'_> {
    fn emit(self, events: &FlowEvents) {
        // Per record, so below `info`: a vendor that sends nulls sends them in every record;
        // the counter is what operators watch.
        tracing::debug!(
            flow = %events.flow(), record_key = self.record_key.unwrap_or("-"),
            nulls = self.count, "Contract nulls tolerated; record accepted."
        );
        events.inner.contract_nulls.add(self.count as u64);
    }
}

/// A record failed one of its flow's `where:` conditions: not delivered, not a dead letter,
/// not marked processed; only counted.
#[derive(Debug)]
pub struct RecordFiltered<'a> {
    /// The condition it failed, described.
    pub condition: &'a str,
}

impl RuntimeEvent for RecordFiltered<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::trace!(
            flow = %events.flow(), condition = self.condition,
            "Record filtered out."
        );
        events.inner.filtered.add(1);
    }
}

/// What became of one enrichment request (see [`crate::runtime::enrich`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichmentOutcome {
    /// A request was sent.
    Called,
    /// A record was answered from the run's cache, no request sent.
    CacheHit,
    /// A request failed transiently and is retried after a delay.
    Retried,
    /// A request failed for good (a 4xx, or past its retry window).
    Failed,
}

impl EnrichmentOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentOutcome::Called => "called",
            EnrichmentOutcome::CacheHit => "cache_hit",
            EnrichmentOutcome::Retried => "retried",
            EnrichmentOutcome::Failed => "failed",
        }
    }
}

/// An enrichment request was sent, answered from the cache, retried, or failed for good.
#[derive(Debug)]
pub struct EnrichmentCalled<'a> {
    /// The enrichment (its field name in `enrich:`; bounded by the spec).
    pub enrichment: &'a str,
    /// What happened.
    pub outcome: EnrichmentOutcome,
    /// The URL (a log field only, never a label).
    pub url: &'a str,
    /// The failure, when the outcome is `Retried` or `Failed`.
    pub error: Option<&'a str>,
}

impl RuntimeEvent for EnrichmentCalled<'_> {
    fn emit(self, events: &FlowEvents) {
        let error = self.error.unwrap_or("-");
        match self.outcome {
            EnrichmentOutcome::Called | EnrichmentOutcome::CacheHit => tracing::trace!(
                flow = %events.flow(), enrichment = self.enrichment, url = self.url,
                outcome = self.outcome.as_str(), "Enrichment call."
            ),
            EnrichmentOutcome::Retried => tracing::debug!(
                flow = %events.flow(), enrichment = self.enrichment, url = self.url,
                error = error, "Enrichment call failed; will retry."
            ),
            EnrichmentOutcome::Failed => tracing::warn!(
                flow = %events.flow(), enrichment = self.enrichment, url = self.url,
                error = error, "Enrichment call failed."
            ),
        }
        let labels = vec![
            ("flow", events.inner.flow.clone()),
            ("enrichment", self.enrichment.to_owned()),
            ("outcome", self.outcome.as_str().to_owned()),
        ];
        events.inner.metrics.count(&ENRICHMENT_CALLS, labels, 1);
    }
}

/// A delivery attempt failed transiently; the record is retried after `delay`.
#[derive(Debug)]
pub struct RecordRetried<'a> {
    /// The record's idempotency key (a log field only, never a label).
    pub key: &'a str,
    /// Failures so far, across restarts.
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// The failure.
    pub error: &'a str,
}

impl RuntimeEvent for RecordRetried<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::debug!(
            flow = %events.flow(), key = self.key, attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64, error = %self.error,
            "Delivery failed; will retry."
        );
        events.inner.retried.add(1);
    }
}

/// A record became a dead letter, routed to its failure mode's owner.
#[derive(Debug)]
pub struct RecordDeadLettered<'a> {
    /// The dead letter, as it is committed.
    pub letter: &'a NewDeadLetter,
}

impl RuntimeEvent for RecordDeadLettered<'_> {
    fn emit(self, events: &FlowEvents) {
        let letter = self.letter;
        tracing::warn!(
            flow = %events.flow(), failure = %letter.failure, owner = %letter.owner,
            record_key = letter.record_key.as_deref().unwrap_or("-"), line = letter.line,
            error = %letter.error, "Record dead-lettered."
        );
        let labels = vec![
            ("flow", events.inner.flow.clone()),
            ("failure", letter.failure.clone()),
            ("owner", letter.owner.clone()),
        ];
        events
            .inner
            .metrics
            .count(&RECORDS_DEAD_LETTERED, labels, 1);
        if letter.failure == FailureMode::DeadlineMissed.as_str() {
            events.emit(DeadlineMissed { letter });
        }
    }
}

/// A record was still open at its deadline. Emitted by [`RecordDeadLettered`] (the miss is
/// counted as a `deadline-missed` dead letter); it adds the debug line a deadline
/// investigation greps for.
#[derive(Debug)]
pub struct DeadlineMissed<'a> {
    /// The dead letter the miss became.
    pub letter: &'a NewDeadLetter,
}

impl RuntimeEvent for DeadlineMissed<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::debug!(
            flow = %events.flow(), owner = %self.letter.owner,
            record_key = self.letter.record_key.as_deref().unwrap_or("-"),
            "Deadline missed."
        );
    }
}

/// A record's owner was warned that its deadline is approaching.
#[derive(Debug)]
pub struct DeadlineWarned<'a> {
    /// The record.
    pub record_key: &'a str,
    /// The owner of `deadline-missed`.
    pub owner: &'a str,
    /// Whole seconds left.
    pub seconds_left: i64,
}

impl RuntimeEvent for DeadlineWarned<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::warn!(
            flow = %events.flow(), record_key = self.record_key, owner = %self.owner,
            seconds_left = self.seconds_left, "Deadline approaching; record still open."
        );
        events.inner.deadline_warnings.add(1);
    }
}

/// The source could not be read; the run stops and the owner is alerted.
#[derive(Debug)]
pub struct SourceUnavailable<'a> {
    /// The owner of `source-unavailable`.
    pub owner: &'a str,
    /// The failure.
    pub error: &'a ConnectorError,
}

impl RuntimeEvent for SourceUnavailable<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::error!(
            flow = %events.flow(), owner = %self.owner, error = %self.error,
            "Source unavailable."
        );
        let metrics = &events.inner.metrics;
        metrics.count(&SOURCE_UNAVAILABLE, events.labels(), 1);
    }
}

/// A source page failed transiently; the same page is asked again after `delay`.
#[derive(Debug)]
pub struct SourceRetried<'a> {
    /// Failures of this page so far.
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// The failure.
    pub error: &'a ConnectorError,
}

impl RuntimeEvent for SourceRetried<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::warn!(
            flow = %events.flow(), attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64, error = %self.error,
            "Source read failed; will retry the same page."
        );
        let metrics = &events.inner.metrics;
        metrics.count(&SOURCE_RETRIES, events.labels(), 1);
    }
}

/// A source ended its listing early so that it ends (see
/// [`crate::connectors::SourceNotice`]); the run ends cleanly at what was read.
#[derive(Debug)]
pub struct ListingCut<'a> {
    /// Why, as a bounded name.
    pub reason: &'a str,
    /// What happened.
    pub message: &'a str,
}

impl RuntimeEvent for ListingCut<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::warn!(
            flow = %events.flow(), reason = self.reason, "Listing cut short: {}.", self.message
        );
        let labels = vec![
            ("flow", events.inner.flow.clone()),
            ("reason", self.reason.to_owned()),
        ];
        events.inner.metrics.count(&LISTINGS_CUT, labels, 1);
    }
}

/// A record stayed undeliverable past its retry window: the sink is declared down and the
/// batch's other deliveries stop waiting on it.
#[derive(Debug)]
pub struct SinkOutageDeclared<'a> {
    /// The failure that outlived the window.
    pub error: &'a str,
}

impl RuntimeEvent for SinkOutageDeclared<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::warn!(
            flow = %events.flow(), failure = FailureMode::SinkUnavailable.as_str(),
            error = %self.error,
            "Sink unavailable past the retry window; outage declared."
        );
        let metrics = &events.inner.metrics;
        metrics.count(&SINK_OUTAGES, events.labels(), 1);
    }
}

/// A batch sink failed in a way no retry can cure and that is not one record's fault (a
/// table or path that does not exist, a local disk full): the run stops and the owner of
/// `sink-unavailable` is alerted. Counted by the failed run itself (`RUNS_FAILED` where the
/// run's error is handled), so only logged here.
#[derive(Debug)]
pub struct SinkFailed<'a> {
    /// The owner alerted.
    pub owner: &'a str,
    /// The failure.
    pub error: &'a ConnectorError,
}

impl RuntimeEvent for SinkFailed<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::error!(
            flow = %events.flow(), owner = %self.owner, error = %self.error,
            "Sink failed; the run stops."
        );
    }
}

/// The run could not take its flow's lock: another process holds it.
#[derive(Debug)]
pub struct FlowLockRefused<'a> {
    /// Why (names the holder).
    pub error: &'a StoreError,
}

impl RuntimeEvent for FlowLockRefused<'_> {
    fn emit(self, events: &FlowEvents) {
        tracing::warn!(flow = %events.flow(), error = %self.error, "Flow lock refused.");
        let metrics = &events.inner.metrics;
        metrics.count(&FLOW_LOCK_REFUSED, events.labels(), 1);
    }
}

/// Another process took this run's flow lock over; the run stops at its next commit.
#[derive(Debug)]
pub struct LeaseLost;

impl RuntimeEvent for LeaseLost {
    fn emit(self, events: &FlowEvents) {
        tracing::error!(
            flow = %events.flow(),
            "Another process took this flow's lock over; this run stops at its next commit."
        );
        let metrics = &events.inner.metrics;
        metrics.count(&FLOW_LEASE_LOST, events.labels(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, metric: &crate::metrics::Metric) -> f64 {
        metrics.counter(metric, &[("flow", "offers")])
    }

    #[test]
    fn events_count_into_the_observers_registry_as_they_happen() {
        let observer = Observer::default();
        let events = observer.flow("offers");
        events.emit(BatchRead { records: 3 });
        events.emit(RecordDelivered {
            latency: Some(Duration::from_millis(20)),
        });
        events.emit(RecordDelivered { latency: None });
        events.emit(DuplicateSkipped);
        events.emit(RecordRetried {
            key: "k",
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "503",
        });
        events.emit(ContractNullsTolerated {
            record_key: Some("k"),
            count: 2,
        });
        let metrics = observer.metrics();
        assert_eq!(count(metrics, &CONTRACT_NULL_WARNINGS), 2.0);
        assert_eq!(count(metrics, &RECORDS_RECEIVED), 3.0);
        assert_eq!(count(metrics, &RECORDS_DELIVERED), 2.0);
        assert_eq!(count(metrics, &RECORDS_DUPLICATE), 1.0);
        assert_eq!(count(metrics, &RECORDS_RETRIED), 1.0);
        let text = metrics.render();
        let latency = "switchyard_delivery_latency_seconds_count{flow=\"offers\"} 1\n";
        assert!(text.contains(latency), "{text}");
    }

    #[test]
    fn a_dead_letter_counts_under_its_failure_and_owner() {
        let observer = Observer::default();
        let events = observer.flow("offers");
        let letter = NewDeadLetter {
            flow: "offers".into(),
            object: "order".into(),
            record_key: Some("o-1".into()),
            idempotency_key: None,
            failure: FailureMode::DeadlineMissed.as_str().into(),
            reason: "deadline_missed".into(),
            error: "too late".into(),
            attempts: 1,
            owner: "ops".into(),
            action: None,
            record: crate::store::Original::new(b"{}".to_vec()),
            line: None,
            record_truncated: None,
        };
        events.emit(RecordDeadLettered { letter: &letter });
        let labels = [
            ("flow", "offers"),
            ("failure", "deadline-missed"),
            ("owner", "ops"),
        ];
        let dead = observer.metrics().counter(&RECORDS_DEAD_LETTERED, &labels);
        assert_eq!(dead, 1.0);
    }

    #[test]
    fn two_runs_of_a_flow_share_its_series() {
        let observer = Observer::default();
        observer.flow("offers").emit(BatchRead { records: 2 });
        observer.flow("offers").emit(BatchRead { records: 5 });
        assert_eq!(count(observer.metrics(), &RECORDS_RECEIVED), 7.0);
    }
}
