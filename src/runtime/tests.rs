//! Tests of the runtime against the connector interface: what a source is told, and when.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Clock, FlowRun, RunOptions, SinkOverride, SourceOverride};
use crate::connectors::recorder::{PlannedFault, RecorderSink};
use crate::connectors::{Batch, BatchRecords, ConnectorError, Source};
use crate::spec::model::Workspace;
use crate::spec::{EnvLookup, LoadOptions};
use crate::store::Store;

const FLOW: &str = "offers-to-storefront";

/// A source handing out the given batches, recording the positions it is told of.
struct RecordingSource {
    batches: std::vec::IntoIter<Batch>,
    committed: Arc<Mutex<Vec<Value>>>,
}

#[async_trait::async_trait]
impl Source for RecordingSource {
    async fn next_batch(&mut self, _max: usize) -> Result<Option<Batch>, ConnectorError> {
        Ok(self.batches.next())
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
    let committed = Arc::new(Mutex::new(Vec::new()));
    let source = RecordingSource {
        batches: batches.into_iter(),
        committed: committed.clone(),
    };
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
