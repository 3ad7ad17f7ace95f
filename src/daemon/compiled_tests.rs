//! The daemon runs flows on the workspace compiled once per load: ticks share the plan built
//! at load, and a reload swaps the whole compiled workspace at once — a run that started on
//! the old one finishes on it, and a bad reload keeps the old one and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::{DaemonState, ReloadError};
use crate::connectors::recorder::RecorderSink;
use crate::runtime::{Clock, FlowRun, RunOptions, SinkOverride, SourceOverride};
use crate::spec::model::{Trigger, Workspace};
use crate::spec::{EnvLookup, LoadOptions};
use crate::store::Store;

const FLOW: &str = "offers-to-storefront";

fn env() -> EnvLookup {
    EnvLookup::empty()
        .with("MARKETPLACE_URL", "http://127.0.0.1:9/marketplace")
        .with("MARKETPLACE_CLIENT_ID", "test-client")
        .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
        .with("STOREFRONT_URL", "http://127.0.0.1:9/storefront")
        .with("ALERTS_URL", "http://127.0.0.1:9/alerts")
}

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

fn load(root: &Path) -> Workspace {
    let loaded = crate::spec::load_workspace(
        root,
        &LoadOptions {
            strict: false,
            env: env(),
        },
    );
    loaded.workspace.expect("the reference workspace is valid")
}

/// A private copy of the reference workspace, so a test can edit its files.
fn copy_of_reference(test: &str) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("switchyard-compiled-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_dir(&reference(), &root);
    root
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn offer(offer_id: u64, updated_at: &str) -> Value {
    json!({
        "offer_id": offer_id, "shop_id": 2001, "shop_sku": "SKU-1", "product_sku": "PRD-1",
        "title": "  Espresso Machine Pro ", "price": "129.95", "currency_iso_code": "EUR",
        "quantity": 4, "state_code": "11", "updated_at": updated_at,
        "last_updated_by": "marketplace"
    })
}

/// A run of the flow on `workspace` as a scheduler tick starts one, with the records given
/// and a recorder for a sink.
async fn start_run(
    workspace: &Workspace,
    store: &Store,
    records: Vec<Value>,
) -> (FlowRun, RecorderSink) {
    let recorder = RecorderSink::new(Vec::new());
    let options = RunOptions {
        clock: Clock::virtual_now(),
        progress: false,
        concurrency: 1,
        ..RunOptions::default()
    };
    let run = FlowRun::new(
        workspace,
        FLOW,
        store.clone(),
        options,
        Some(SourceOverride(records)),
        Some(SinkOverride {
            sink: recorder.clone(),
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .unwrap();
    (run, recorder)
}

fn titles(recorder: &RecorderSink) -> Vec<Value> {
    recorder
        .received()
        .into_iter()
        .map(|r| r.body["title"].clone())
        .collect()
}

#[tokio::test]
async fn poll_ticks_run_on_the_plan_compiled_at_load() {
    let state = DaemonState::new(load(&reference()), Store::in_memory().unwrap(), None);
    let loaded = state.workspace();
    let flow = &loaded.flows[FLOW];
    assert!(matches!(flow.trigger, Trigger::Poll(_)));
    let compiled = Arc::clone(&flow.plan);

    // Two ticks, each taking the current workspace as the scheduler does.
    for (tick, updated_at) in ["2025-03-04T10:00:00Z", "2025-03-04T10:00:30Z"]
        .into_iter()
        .enumerate()
    {
        let workspace = state.workspace();
        let (run, recorder) =
            start_run(&workspace, &state.store, vec![offer(1001, updated_at)]).await;
        assert!(
            std::ptr::eq(run.plan(), &*compiled),
            "tick {tick} compiled its own plan instead of using the one built at load"
        );
        let report = run.run().await.unwrap();
        assert_eq!(report.delivered, 1, "tick {tick}");
        assert_eq!(titles(&recorder), [json!("Espresso Machine Pro")]);
    }
    // Nothing else holds a plan once the runs are over: none was compiled beside it.
    assert_eq!(
        Arc::strong_count(&compiled),
        2,
        "the workspace's and this test's"
    );
}

#[tokio::test]
async fn a_reload_swaps_the_compiled_workspace_at_once() {
    let root = copy_of_reference("reload");
    let state = DaemonState::new(load(&root), Store::in_memory().unwrap(), None);
    let before = state.workspace();

    // A run in flight: started on the workspace as loaded, finished after the reload.
    let (in_flight, old_sink) = start_run(
        &before,
        &state.store,
        vec![offer(1001, "2025-03-04T10:00:00Z")],
    )
    .await;

    let flow_file = root.join("flows").join(format!("{FLOW}.yaml"));
    let text = std::fs::read_to_string(&flow_file).unwrap();
    let changed = text.replace(r#"title: "{{trim title}}""#, r#"title: "{{lower title}}""#);
    assert_ne!(
        text, changed,
        "the reference mapping changed; update this test"
    );
    std::fs::write(&flow_file, &changed).unwrap();
    // The reference workspace leaves some variables unset: warnings, not errors.
    let (after, _warnings) = state.reload(&root, &env()).await.unwrap();
    assert!(Arc::ptr_eq(&after, &state.workspace()));
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(!Arc::ptr_eq(
        &before.flows[FLOW].plan,
        &after.flows[FLOW].plan
    ));

    let report = in_flight.run().await.unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(
        titles(&old_sink),
        [json!("Espresso Machine Pro")],
        "the run in flight finishes on the plan it started with"
    );
    let (next, new_sink) = start_run(
        &state.workspace(),
        &state.store,
        vec![offer(1002, "2025-03-04T10:01:00Z")],
    )
    .await;
    assert_eq!(next.run().await.unwrap().delivered, 1);
    assert_eq!(titles(&new_sink), [json!("  espresso machine pro ")]);

    // A bad reload keeps the running workspace and says why.
    std::fs::write(
        &flow_file,
        changed.replace("object: offer", "object: offre"),
    )
    .unwrap();
    let err = state.reload(&root, &env()).await.unwrap_err();
    match &err {
        ReloadError::Invalid { diagnostics, .. } => {
            assert!(
                diagnostics.contains("unknown object \"offre\""),
                "{diagnostics}"
            );
            assert!(
                diagnostics.contains(&format!("{FLOW}.yaml")),
                "{diagnostics}"
            );
        }
        other => panic!("expected the diagnostics, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("the workspace has errors (1 error"),
        "{err}"
    );
    assert!(Arc::ptr_eq(&after, &state.workspace()));
    let _ = std::fs::remove_dir_all(&root);
}
