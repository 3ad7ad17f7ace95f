//! The offer flow end to end over real HTTP against the sandbox: every valid offer reaches
//! the storefront once, every bad one is a dead letter with the right owner and an alert;
//! retries; an outage past the window and its replay; `kill -9` in the middle of a run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchyard::runtime::replay::{ReplayOutcome, replay};
use switchyard::runtime::{FlowRun, RunOptions, alerts};
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};
use switchyard::spec::model::Workspace;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::{DeadLetterFilter, DeadLetterStatus, Store};

use crate::util::{TestState, copy_dir};

pub(crate) const FLOW: &str = "offers-to-storefront";

/// A private copy of the reference workspace, with its retry policy optionally shortened, on
/// a fresh state store (held by the returned guard).
pub(crate) fn workspace_copy(name: &str, short_retry: bool) -> (PathBuf, TestState) {
    let dir =
        std::env::temp_dir().join(format!("switchyard-runtime-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    if short_retry {
        for file in [
            dir.join("switchyard.yaml"),
            dir.join("flows").join(format!("{FLOW}.yaml")),
        ] {
            let text = std::fs::read_to_string(&file).unwrap();
            let text = text.replace(
                "initial: 1s, max_delay: 2m, window: 30m",
                "initial: 100ms, max_delay: 400ms, window: 2s",
            );
            std::fs::write(&file, text).unwrap();
        }
    }
    let state = TestState::attach(&format!("runtime_{name}"), &dir);
    (dir, state)
}

pub(crate) fn load(root: &Path, sandbox: &Sandbox) -> Workspace {
    let mut env = EnvLookup::empty().with("ORDERS_WEBHOOK_SECRET", "runtime-tests");
    for (name, value) in sandbox.env() {
        env = env.with(name, value);
    }
    let loaded = load_workspace(root, &LoadOptions { strict: true, env });
    loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics))
}

pub(crate) async fn run_flow(
    workspace: &Workspace,
    store: &Store,
) -> switchyard::runtime::RunReport {
    let options = RunOptions {
        progress: false,
        concurrency: 16,
        ..RunOptions::default()
    };
    FlowRun::new(workspace, FLOW, store.clone(), options, None, None)
        .await
        .expect("flow")
        .run()
        .await
        .expect("run")
}

/// Asserts the storefront received every valid offer of the sandbox exactly once, and nothing
/// else.
pub(crate) fn assert_each_valid_offer_once(sandbox: &Sandbox, context: &str) {
    let mut ids = delivered_offer_ids(sandbox);
    ids.sort_unstable();
    let mut expected = sandbox.summary().valid_offer_ids;
    expected.sort_unstable();
    assert_eq!(ids, expected, "{context}");
}

pub(crate) fn delivered_offer_ids(sandbox: &Sandbox) -> Vec<i64> {
    sandbox
        .received()
        .iter()
        .filter_map(|w| w.body["offer_id"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_valid_offer_once_every_bad_one_dead_lettered_with_owner_and_alert() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (root, _state) = workspace_copy("clean", false);
    let workspace = load(&root, &sandbox);
    let store = Store::open_target(&workspace.state).await.unwrap();
    let report = run_flow(&workspace, &store).await;
    let summary = sandbox.summary();

    assert_each_valid_offer_once(&sandbox, "each valid offer exactly once, nothing else");
    assert_eq!(report.delivered as usize, summary.valid);
    assert_eq!(report.duplicates as usize, summary.duplicates);

    let letters = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    let count = |failure: &str, owner: &str| {
        letters
            .iter()
            .filter(|l| l.letter.failure == failure && l.letter.owner == owner)
            .count()
    };
    let contract = summary.missing_price + summary.negative_quantity + summary.unknown_currency;
    assert_eq!(count("contract-violation", "seller-support"), contract);
    assert_eq!(
        count("ownership-violation", "marketplace-ops"),
        summary.ownership_violations
    );
    assert_eq!(letters.len(), contract + summary.ownership_violations);
    let reasons: HashSet<&str> = letters.iter().map(|l| l.letter.reason.as_str()).collect();
    for reason in [
        "missing_price",
        "negative_quantity",
        "unknown_currency",
        "unauthorised_writer",
    ] {
        assert!(
            reasons.contains(reason),
            "no dead letter with reason {reason}: {reasons:?}"
        );
    }

    assert_eq!(alerts::drain(&store, Duration::from_secs(10)).await, 0);
    let received = sandbox.alerts();
    assert_eq!(received.len(), letters.len(), "one alert per dead letter");
    let alert = received
        .iter()
        .find(|a| a.owner == "seller-support")
        .expect("seller alert");
    assert_eq!(alert.body["failure"], "contract-violation");
    assert_eq!(alert.body["action"], "request-correction");
    assert!(
        alert.body["runbook"]
            .as_str()
            .is_some_and(|r| r.contains("seller portal"))
    );
    assert_eq!(alert.body["escalation"]["to"], "marketplace-ops");
    assert!(alert.body["record_key"].is_string());

    // A second run reads only from the cursor on and delivers nothing again.
    let again = run_flow(&workspace, &store).await;
    assert_eq!(again.delivered, 0);
    assert!(
        again.read < 50,
        "incremental cursor: re-read {} offers",
        again.read
    );
    assert_eq!(sandbox.storefront_stats().records, summary.valid);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_failing_three_times_still_gets_every_offer_once() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 40,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.inject_storefront_fault(Fault::fail(503, 3));
    let (root, _state) = workspace_copy("three-503", true);
    let workspace = load(&root, &sandbox);
    let store = Store::open_target(&workspace.state).await.unwrap();
    let report = run_flow(&workspace, &store).await;
    let summary = sandbox.summary();
    assert_eq!(report.delivered as usize, summary.valid);
    assert_eq!(sandbox.storefront_stats().records, summary.valid);
    assert!(sandbox.storefront_stats().faulted >= 3);
    let sink_letters = store
        .dead_letters(&DeadLetterFilter {
            failure: Some("sink-unavailable".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(sink_letters.is_empty(), "{sink_letters:?}");
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_window_dead_letters_and_replay_delivers_after_recovery() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 30,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.inject_storefront_fault(Fault::fail_for(500, 3600));
    let (root, _state) = workspace_copy("outage", true);
    let workspace = load(&root, &sandbox);
    let store = Store::open_target(&workspace.state).await.unwrap();
    let report = run_flow(&workspace, &store).await;
    assert!(
        report.stopped_early.is_some(),
        "the run stops while the sink is down"
    );
    let down = store
        .dead_letters(&DeadLetterFilter {
            failure: Some("sink-unavailable".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!down.is_empty());
    assert!(
        down.iter()
            .all(|l| l.letter.owner == "marketplace-ops" && l.letter.attempts > 1)
    );
    assert_eq!(sandbox.storefront_stats().records, 0);

    sandbox.clear_storefront_faults();
    for letter in &down {
        let outcome = replay(&workspace, &store, letter.id, "test-operator")
            .await
            .unwrap();
        assert_eq!(outcome, ReplayOutcome::Delivered, "letter #{}", letter.id);
    }
    assert_eq!(sandbox.storefront_stats().records, down.len());
    let replayed = store
        .dead_letters(&DeadLetterFilter {
            status: Some(DeadLetterStatus::Replayed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(replayed.len(), down.len());
    assert!(
        replayed
            .iter()
            .all(|l| l.resolved_by.as_deref() == Some("test-operator"))
    );
    let trail = store.audit_trail(1).await.unwrap();
    assert_eq!(trail[0].action, "dead-letter-replayed");

    // The rest of the listing follows on the next run, each offer once.
    run_flow(&workspace, &store).await;
    let ids = delivered_offer_ids(&sandbox);
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no offer delivered twice");
    assert_eq!(unique.len(), sandbox.summary().valid);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_run_then_rerun_delivers_each_offer_exactly_once() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    // Slow writes so the kill lands mid-run.
    sandbox.inject_storefront_fault(Fault::latency(15));
    let (root, _state) = workspace_copy("kill9", false);
    let run = |root: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["run", root.to_str().unwrap(), FLOW, "--concurrency", "4"])
            .envs(sandbox.env())
            .env("SWITCHYARD_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut child = run(&root).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sandbox.storefront_stats().records < 150 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = sandbox.storefront_stats().records;
    assert!(
        before > 0 && before < sandbox.summary().valid,
        "killed mid-run ({before} delivered)"
    );

    sandbox.clear_storefront_faults();
    let status = run(&root).status().unwrap();
    assert!(status.success() || status.code() == Some(1), "{status:?}");
    assert_each_valid_offer_once(
        &sandbox,
        "after kill -9 and a rerun: each valid offer exactly once",
    );
    sandbox.shutdown().await;
}
