//! Tests of the runtime against the connector interface: what a source is told, and when.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Clock, FlowRun, Observer, RunOptions, SinkOverride, SourceOverride};
use crate::connectors::recorder::{PlannedFault, RecorderSink};
use crate::connectors::{
    Batch, BatchOutcome, BatchRecords, ConnectorError, Encoded, Sink, SinkCommit, SinkStyle, Source,
};
use crate::spec::model::Workspace;
use crate::spec::{EnvLookup, LoadOptions};
use crate::store::Store;

const FLOW: &str = "offers-to-storefront";

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A source handing out the given batches, recording the positions it is told of.
struct RecordingSource {
    batches: std::vec::IntoIter<Batch>,
    committed: Arc<Mutex<Vec<Value>>>,
    /// Whether it lets the runtime read ahead.
    ahead: bool,
    /// `read N` for each batch handed out (N its position's `n`).
    log: Arc<Mutex<Vec<String>>>,
}

impl RecordingSource {
    fn new(batches: Vec<Batch>) -> Self {
        Self {
            batches: batches.into_iter(),
            committed: Arc::new(Mutex::new(Vec::new())),
            ahead: false,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

#[async_trait::async_trait]
impl Source for RecordingSource {
    async fn next_batch(&mut self, _max: usize) -> Result<Option<Batch>, ConnectorError> {
        let batch = self.batches.next();
        if let Some(batch) = &batch {
            lock(&self.log).push(format!("read {}", batch.position["n"]));
        }
        Ok(batch)
    }

    fn reads_ahead(&self) -> bool {
        self.ahead
    }

    async fn committed(&mut self, position: &Value) -> Result<(), ConnectorError> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(position.clone());
        Ok(())
    }
}

fn workspace() -> Workspace {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let env = EnvLookup::empty()
        .with("MARKETPLACE_URL", "http://127.0.0.1:9/marketplace")
        .with("MARKETPLACE_CLIENT_ID", "test-client")
        .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
        .with("STOREFRONT_URL", "http://127.0.0.1:9/storefront")
        .with("ALERTS_URL", "http://127.0.0.1:9/alerts")
        .with("OMS_URL", "http://127.0.0.1:9/oms");
    let loaded = crate::spec::load_workspace(&root, &LoadOptions { strict: false, env });
    loaded.workspace.expect("the reference workspace is valid")
}

/// Offers `from..to`, as the marketplace lists them.
fn offers(from: i64, to: i64) -> Vec<Value> {
    (from..to)
        .map(|i| {
            json!({
                "offer_id": 5_000 + i, "shop_id": 2001, "shop_sku": format!("SKU-{i}"),
                "product_sku": format!("PRD-{i}"), "title": "Desk Lamp", "price": "19.90",
                "currency_iso_code": "EUR", "quantity": 3, "state_code": "11",
                "updated_at": "2025-03-04T10:00:00Z", "last_updated_by": "marketplace"
            })
        })
        .collect()
}

fn batch(records: Vec<Value>, n: u64) -> Batch {
    Batch {
        records: BatchRecords::Values(records),
        position: json!({ "n": n }),
    }
}

/// Runs the reference offers flow over `batches` into `recorder`; returns the positions the
/// source was told of, and the run's report.
async fn run(batches: Vec<Batch>, recorder: RecorderSink) -> (Vec<Value>, super::RunReport) {
    let source = RecordingSource::new(batches);
    let committed = source.committed.clone();
    let report = FlowRun::new(
        &workspace(),
        FLOW,
        Store::in_memory().expect("store"),
        RunOptions {
            clock: Clock::virtual_now(),
            progress: false,
            ..RunOptions::default()
        },
        Some(SourceOverride(Vec::new())),
        Some(SinkOverride {
            sink: recorder,
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .expect("flow opens")
    .with_source(Box::new(source))
    .run()
    .await
    .expect("run");
    let told = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (told, report)
}

#[tokio::test(start_paused = true)]
async fn the_source_hears_of_each_committed_position_in_order() {
    let recorder = RecorderSink::new(Vec::new());
    let batches = vec![
        batch(offers(0, 3), 1),
        batch(offers(3, 5), 2),
        batch(offers(5, 9), 3),
    ];
    let (told, report) = run(batches, recorder.clone()).await;
    assert_eq!(
        told,
        vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
    assert_eq!(report.delivered, 9);
    assert_eq!(recorder.received().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn the_source_never_hears_of_a_batch_left_unsettled() {
    // Down for a day: past the retry window, the sink is declared down and the records of
    // the batch not yet decided go back to the source.
    let down = RecorderSink::new(vec![PlannedFault {
        status: 503,
        times: 0,
        retry_after: None,
        lasts_ms: Some(24 * 3_600_000),
    }]);
    let batches = vec![batch(offers(0, 100), 1), batch(offers(100, 110), 2)];
    let (told, report) = run(batches, down).await;
    assert!(report.unsettled > 0, "{report:?}");
    assert!(report.stopped_early.is_some());
    assert_eq!(told, Vec::<Value>::new());
}

/// What a [`ScriptedSink`] answers to its `call`-th write (0-based) of `records`.
type Script = dyn Fn(u32, &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> + Send + Sync;

/// A batch sink failing as its script says; remembers the keys it wrote, in order.
struct ScriptedSink {
    script: Box<Script>,
    calls: AtomicU32,
    written: Mutex<Vec<String>>,
    /// How long making the first commit durable takes (a slow fsync).
    slow_first_sync: Option<Duration>,
    syncs: Arc<AtomicU32>,
    /// When set, each write first takes the flow's lock over, as a process finding this
    /// run stalled would: the batch's commit is then refused.
    thief: Option<Store>,
    /// When set, each write yields to the runtime once (as a write to a server would), then
    /// logs `write K` with the first key written.
    log: Option<Arc<Mutex<Vec<String>>>>,
}

impl ScriptedSink {
    fn new(
        script: impl Fn(u32, &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            script: Box::new(script),
            calls: AtomicU32::new(0),
            written: Mutex::new(Vec::new()),
            slow_first_sync: None,
            syncs: Arc::new(AtomicU32::new(0)),
            thief: None,
            log: None,
        }
    }

    fn written(&self) -> Vec<String> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl Sink for ScriptedSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::Batch
    }

    async fn write_batch(&self, records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(store) = &self.thief {
            let holder = store.flow_lock_holder(FLOW).await.expect("holder");
            if let Some(holder) = holder {
                store
                    .release_flow_lock(FLOW, &holder.id)
                    .await
                    .expect("release");
            }
            let thief = crate::store::LockHolder::this_process();
            store
                .acquire_flow_lock(FLOW, &thief)
                .await
                .expect("take over");
        }
        if let Some(log) = &self.log {
            tokio::task::yield_now().await;
            let first = records.first().map_or("", |r| r.idempotency_key);
            lock(log).push(format!("write {first}"));
        }
        let outcome = (self.script)(call, records)?;
        let refused: Vec<usize> = outcome.rejected.iter().map(|(at, _)| *at).collect();
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for (at, record) in records.iter().enumerate() {
            if !refused.contains(&at) {
                written.push(record.idempotency_key.to_owned());
            }
        }
        Ok(outcome)
    }

    async fn prepare_commit(&self) -> Result<SinkCommit, ConnectorError> {
        let slow = self.slow_first_sync;
        let syncs = self.syncs.clone();
        Ok(SinkCommit {
            state: Value::Null,
            durable: Some(Box::new(move || {
                if syncs.fetch_add(1, Ordering::SeqCst) == 0
                    && let Some(slow) = slow
                {
                    std::thread::sleep(slow);
                }
                Ok(())
            })),
        })
    }
}

/// Runs the reference offers flow over `batches` into a batch `sink`, on `store`.
async fn run_batch_sink(
    batches: Vec<Batch>,
    sink: Arc<ScriptedSink>,
    store: &Store,
) -> Result<super::RunReport, super::RunError> {
    run_observed(batches, sink, store, Observer::default()).await
}

/// [`run_batch_sink`], counting its events into `observer`.
async fn run_observed(
    batches: Vec<Batch>,
    sink: Arc<ScriptedSink>,
    store: &Store,
    observer: Observer,
) -> Result<super::RunReport, super::RunError> {
    run_source(RecordingSource::new(batches), sink, store, observer).await
}

/// [`run_observed`] from `source`.
async fn run_source(
    source: RecordingSource,
    sink: Arc<ScriptedSink>,
    store: &Store,
    observer: Observer,
) -> Result<super::RunReport, super::RunError> {
    FlowRun::new(
        &workspace(),
        FLOW,
        store.clone(),
        RunOptions {
            clock: Clock::virtual_now(),
            progress: false,
            observer,
            ..RunOptions::default()
        },
        Some(SourceOverride(Vec::new())),
        Some(SinkOverride {
            sink: RecorderSink::new(Vec::new()),
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .expect("flow opens")
    .with_source(Box::new(source))
    .with_sink(sink)
    .run()
    .await
}

/// The idempotency key of offer `i` of [`offers`].
fn key(i: i64) -> String {
    format!("{}:2025-03-04T10:00:00Z", 5_000 + i)
}

/// Fails unless the flow's checkpoint is still at the start.
async fn assert_checkpoint_not_moved(store: &Store) {
    let position = store
        .checkpoint(FLOW)
        .await
        .expect("read")
        .map(|c| c.position);
    assert!(
        position.as_ref().is_none_or(Value::is_null),
        "checkpoint moved: {position:?}"
    );
}

/// The alerts queued for `owner`, by failure mode.
async fn alerts_for(store: &Store, owner: &str) -> Vec<String> {
    let due = store.due_alerts(i64::MAX, 100).await.expect("outbox");
    due.into_iter()
        .filter(|a| a.alert.owner == owner)
        .map(|a| a.alert.payload["failure"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_sink_failing_transiently_is_retried_until_it_writes() {
    let store = Store::in_memory().expect("store");
    let sink = Arc::new(ScriptedSink::new(|call, _| {
        if call < 2 {
            Err(ConnectorError::from_status(503, None, "busy"))
        } else {
            Ok(BatchOutcome::default())
        }
    }));
    let report = run_batch_sink(vec![batch(offers(0, 3), 1)], sink.clone(), &store)
        .await
        .expect("run");
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(report.stopped_early, None);
    assert_eq!(sink.written(), vec![key(0), key(1), key(2)]);
    let checkpoint = store
        .checkpoint(FLOW)
        .await
        .expect("read")
        .expect("committed");
    assert_eq!(checkpoint.position, json!({"n": 1}));
    let clock = store
        .retry_state(FLOW, &format!("batch:{}", key(0)))
        .await
        .expect("read");
    assert_eq!(
        clock, None,
        "the batch's retry clock is cleared once written"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_sink_down_past_the_window_leaves_the_batch_unsettled_and_alerts() {
    let store = Store::in_memory().expect("store");
    let sink = Arc::new(ScriptedSink::new(|_, _| {
        Err(ConnectorError::from_status(503, None, "down"))
    }));
    let batches = vec![batch(offers(0, 3), 1), batch(offers(3, 5), 2)];
    let report = run_batch_sink(batches, sink.clone(), &store)
        .await
        .expect("an outage is a report, not an error");
    assert_eq!(report.unsettled, 3, "{report:?}");
    assert_eq!(report.delivered, 0);
    assert_eq!(
        report.dead_lettered, 0,
        "an outage is not the records' fault"
    );
    let reason = report.stopped_early.expect("stops early");
    assert!(reason.contains("retry window"), "{reason}");
    assert!(
        sink.calls.load(Ordering::SeqCst) > 2,
        "retried before giving up"
    );
    assert_checkpoint_not_moved(&store).await;
    assert_eq!(
        alerts_for(&store, "marketplace-ops").await,
        vec!["sink-unavailable"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_for_a_record_is_written_one_at_a_time_and_only_it_dead_lettered() {
    let store = Store::in_memory().expect("store");
    let guilty = key(1);
    let sink = Arc::new(ScriptedSink::new(move |_, records| {
        if records.iter().any(|r| r.idempotency_key == guilty) {
            Err(ConnectorError::rejected(
                "price violates a check constraint",
            ))
        } else {
            Ok(BatchOutcome::default())
        }
    }));
    let report = run_batch_sink(vec![batch(offers(0, 4), 1)], sink.clone(), &store)
        .await
        .expect("run");
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.by_failure.get("sink-rejected"), Some(&1));
    assert_eq!(sink.written(), vec![key(0), key(2), key(3)]);
    let letters = store
        .dead_letters(&crate::store::DeadLetterFilter::default())
        .await
        .expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.idempotency_key, Some(key(1)));
    let checkpoint = store
        .checkpoint(FLOW)
        .await
        .expect("read")
        .expect("committed");
    assert_eq!(checkpoint.position, json!({"n": 1}), "settled in full");
}

#[tokio::test(start_paused = true)]
async fn a_batch_sink_failing_for_good_stops_the_run_and_alerts_its_owner() {
    let store = Store::in_memory().expect("store");
    let sink = Arc::new(ScriptedSink::new(|_, _| {
        Err(ConnectorError::spec("table ledger.orders does not exist"))
    }));
    let err = run_batch_sink(vec![batch(offers(0, 2), 1)], sink.clone(), &store)
        .await
        .expect_err("the run stops");
    assert!(matches!(err, super::RunError::Sink { .. }), "{err}");
    assert_eq!(sink.calls.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(
        alerts_for(&store, "marketplace-ops").await,
        vec!["sink-unavailable"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_failing_on_a_write_waits_for_the_batch_being_committed() {
    let store = Store::in_memory().expect("store");
    let mut sink = ScriptedSink::new(|call, _| match call {
        0 => Ok(BatchOutcome::default()),
        _ => Err(ConnectorError::internal("disk full")),
    });
    // The first batch is still being made durable when the second one's write fails.
    sink.slow_first_sync = Some(Duration::from_millis(300));
    let batches = vec![batch(offers(0, 2), 1), batch(offers(2, 4), 2)];
    let err = run_batch_sink(batches, Arc::new(sink), &store)
        .await
        .expect_err("the run stops");
    assert!(matches!(err, super::RunError::Sink { .. }), "{err}");
    // The lease is released when the run returns: by then the first batch is committed.
    let checkpoint = store.checkpoint(FLOW).await.expect("read");
    assert_eq!(
        checkpoint.map(|c| c.position),
        Some(json!({"n": 1})),
        "the run returned (and let go of its lease) before its commit ended"
    );
}

/// The flow's count of `metric` (dead letters summed over their failure and owner).
fn counted(observer: &Observer, metric: &crate::metrics::Metric) -> f64 {
    let metrics = observer.metrics();
    if metric.name == crate::metrics::catalog::RECORDS_DEAD_LETTERED.name {
        let labels = [
            ("flow", FLOW),
            ("failure", "contract-violation"),
            ("owner", "seller-support"),
        ];
        return metrics.counter(metric, &labels);
    }
    metrics.counter(metric, &[("flow", FLOW)])
}

#[tokio::test(start_paused = true)]
async fn records_count_once_their_batch_is_committed() {
    use crate::metrics::catalog::{RECORDS_DEAD_LETTERED, RECORDS_DELIVERED};
    let mut records = offers(0, 3);
    // Breaks the offer contract: a dead letter.
    records[1]["price"] = json!(true);
    let store = Store::in_memory().expect("store");
    let written = || ScriptedSink::new(|_, _| Ok(BatchOutcome::default()));

    // The lock is lost while the batch is written: its commit is refused, nothing counts.
    let observer = Observer::default();
    let mut stolen = written();
    stolen.thief = Some(store.clone());
    let err = run_observed(
        vec![batch(records.clone(), 1)],
        Arc::new(stolen),
        &store,
        observer.clone(),
    )
    .await
    .expect_err("the commit is refused");
    assert!(err.to_string().contains("lost its lock"), "{err}");
    assert_eq!(counted(&observer, &RECORDS_DELIVERED), 0.0);
    assert_eq!(counted(&observer, &RECORDS_DEAD_LETTERED), 0.0);

    // The next run (the thief gone) delivers the batch again: counted once, on commit.
    let holder = store.flow_lock_holder(FLOW).await.expect("holder");
    if let Some(holder) = holder {
        store
            .release_flow_lock(FLOW, &holder.id)
            .await
            .expect("release");
    }
    let report = run_observed(
        vec![batch(records, 1)],
        Arc::new(written()),
        &store,
        observer.clone(),
    )
    .await
    .expect("run");
    assert_eq!(
        (report.delivered, report.dead_lettered),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(counted(&observer, &RECORDS_DELIVERED), 2.0);
    assert_eq!(counted(&observer, &RECORDS_DEAD_LETTERED), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_per_record_sink_counts_its_deliveries_on_commit() {
    use crate::metrics::catalog::RECORDS_DELIVERED;
    let observer = Observer::default();
    let recorder = RecorderSink::new(Vec::new());
    let report = FlowRun::new(
        &workspace(),
        FLOW,
        Store::in_memory().expect("store"),
        RunOptions {
            clock: Clock::virtual_now(),
            progress: false,
            observer: observer.clone(),
            ..RunOptions::default()
        },
        Some(SourceOverride(offers(0, 4))),
        Some(SinkOverride {
            sink: recorder,
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .expect("flow opens")
    .run()
    .await
    .expect("run");
    assert_eq!(report.delivered, 4);
    assert_eq!(counted(&observer, &RECORDS_DELIVERED), 4.0);
    let text = observer.metrics().render();
    let latency = "switchyard_delivery_latency_seconds_count{flow=\"offers-to-storefront\"} 4\n";
    assert!(text.contains(latency), "{text}");
}

/// The order in which a run reads batches and writes them, for a source that does or does
/// not let it read ahead.
async fn reads_and_writes(ahead: bool) -> (Vec<String>, Vec<Value>, super::RunReport) {
    let store = Store::in_memory().expect("store");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut sink = ScriptedSink::new(|_, _| Ok(BatchOutcome::default()));
    sink.log = Some(log.clone());
    let sink = Arc::new(sink);
    let mut source = RecordingSource::new(vec![
        batch(offers(0, 3), 1),
        batch(offers(3, 5), 2),
        batch(offers(5, 9), 3),
    ]);
    source.ahead = ahead;
    source.log = log.clone();
    let committed = source.committed.clone();
    let report = run_source(source, sink.clone(), &store, Observer::default())
        .await
        .expect("run");
    assert_eq!(sink.written(), (0..9).map(key).collect::<Vec<_>>());
    let told = lock(&committed).clone();
    let order = lock(&log).clone();
    (order, told, report)
}

#[tokio::test(start_paused = true)]
async fn a_source_reading_ahead_is_read_while_the_batch_before_is_written() {
    let (order, told, report) = reads_and_writes(true).await;
    let at = |entry: &str| order.iter().position(|e| e == entry);
    let (read_2, write_1) = (at("read 2"), at(&format!("write {}", key(0))));
    assert!(
        read_2.is_some() && write_1.is_some() && read_2 < write_1,
        "batch 2 is read while batch 1 is written: {order:?}"
    );
    assert_eq!(report.delivered, 9, "{report:?}");
    assert_eq!(
        told,
        vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        "each position is still told once, in order"
    );

    // And without it, batch after batch: the test tells the two apart.
    let (order, _, report) = reads_and_writes(false).await;
    assert_eq!(report.delivered, 9, "{report:?}");
    assert_eq!(
        order,
        vec![
            "read 1".to_owned(),
            format!("write {}", key(0)),
            "read 2".to_owned(),
            format!("write {}", key(3)),
            "read 3".to_owned(),
            format!("write {}", key(5)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_read_ahead_of_a_run_that_stops_is_left_unsettled() {
    // The sink is down past the retry window while batch 2 was read ahead: the run stops
    // with the source back in hand, nothing committed, and the next run reads from the start.
    let store = Store::in_memory().expect("store");
    let sink = Arc::new(ScriptedSink::new(|_, _| {
        Err(ConnectorError::from_status(503, None, "down"))
    }));
    let mut source = RecordingSource::new(vec![batch(offers(0, 3), 1), batch(offers(3, 5), 2)]);
    source.ahead = true;
    let (committed, log) = (source.committed.clone(), source.log.clone());
    let report = run_source(source, sink.clone(), &store, Observer::default())
        .await
        .expect("an outage is a report, not an error");
    assert!(report.stopped_early.is_some(), "{report:?}");
    assert_eq!(report.unsettled, 3, "{report:?}");
    assert_eq!(
        lock(&log).clone(),
        vec!["read 1", "read 2"],
        "batch 2 was read ahead"
    );
    assert_eq!(lock(&committed).clone(), Vec::<Value>::new());
    assert_checkpoint_not_moved(&store).await;
    assert!(sink.written().is_empty());
}
