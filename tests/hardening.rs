//! Issue 6, data loss: situations an operator meets every day that must neither lose nor
//! double a record. Each test is named after the item it proves.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchyard::connectors::recorder::{PlannedFault, RecorderSink};
use switchyard::runtime::{Clock, FlowRun, RunOptions, SinkOverride, SourceOverride};
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};
use switchyard::store::{LockHolder, STALE_AFTER, Store, StoreError};

use crate::runtime::{
    FLOW, assert_each_valid_offer_once, delivered_offer_ids, load, run_flow, workspace_copy,
};
use crate::util::TestState;

/// Every offer of the marketplace's listing, in its order, through its own paged API.
async fn listing(sandbox: &Sandbox) -> Vec<Value> {
    let client = switchyard::connectors::http::client_builder()
        .build()
        .unwrap();
    let mut all = Vec::new();
    loop {
        let url = format!(
            "{}/api/offers?offset={}&max=100",
            sandbox.marketplace_url(),
            all.len()
        );
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let offers = page["offers"].as_array().cloned().unwrap_or_default();
        if offers.is_empty() {
            return all;
        }
        all.extend(offers);
    }
}

/// Item 1: offers re-posted at random moments while a run pages through the listing move to
/// its end; every offset after them shifts. Over 20 randomised trials, no valid offer may be
/// skipped by the run that was reading when it happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_no_record_skipped_when_the_source_changes_while_paging() {
    const TRIALS: u64 = 20;
    let (root, _state) = workspace_copy("paging", false);
    let mut skipped_total = 0;
    for trial in 0..TRIALS {
        let sandbox = Sandbox::start(SandboxConfig {
            offers: 500,
            seed: 1_000 + trial,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let early: Vec<Value> = listing(&sandbox).await.into_iter().take(200).collect();
        let workspace = load(&root, &sandbox);
        let state = TestState::new(
            &format!("paging_{trial}"),
            &root.join(format!("state-{trial}.db")),
        );
        let store = state.open().await;
        // Slow pages leave room for updates between two of them, as on a real API.
        sandbox.inject_marketplace_fault(Fault::latency(15));

        let run = tokio::spawn({
            let workspace = workspace.clone();
            let store = store.clone();
            async move { run_flow(&workspace, &store).await }
        });
        let mut rng = StdRng::seed_from_u64(trial);
        let mut updates = 0;
        while !run.is_finished() && updates < 60 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..30))).await;
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                let mut offer = early[rng.random_range(0..early.len())].clone();
                // Without `updated_at` the marketplace stamps it now: the offer moves to
                // the end of the listing.
                offer.as_object_mut().map(|o| o.remove("updated_at"));
                batch.push(offer);
            }
            sandbox.push_offers(batch).unwrap();
            updates += 1;
        }
        run.await.unwrap();
        let delivered: HashSet<i64> = delivered_offer_ids(&sandbox).into_iter().collect();
        let skipped: Vec<i64> = sandbox
            .summary()
            .valid_offer_ids
            .into_iter()
            .filter(|id| !delivered.contains(id))
            .collect();
        if !skipped.is_empty() {
            eprintln!("trial {trial}: {updates} updates, skipped offers {skipped:?}");
        }
        skipped_total += skipped.len();
        sandbox.shutdown().await;
    }
    assert_eq!(
        skipped_total, 0,
        "valid offers skipped over {TRIALS} trials"
    );
}

/// `switchyard run WORKSPACE offers-to-storefront --state STATE` against `sandbox`, started
/// (not waited for).
fn spawn_run(root: &Path, state: &str, sandbox: &Sandbox) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(["--log", "warn", "run"])
        .arg(root)
        .arg(FLOW)
        .arg("--state")
        .arg(state)
        .env("ORDERS_WEBHOOK_SECRET", "hardening")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in sandbox.env() {
        command.env(name, value);
    }
    command.spawn().expect("switchyard run starts")
}

/// Item 4: two `run`s of one flow started together on a new state file. One runs; the other
/// is refused with a message naming the holder, and neither dies on the migration race.
/// Every valid offer reaches the storefront once, every dead letter and alert exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_04_two_runs_of_one_flow_deliver_each_record_once() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (root, _state) = workspace_copy("two-runs", false);
    let state = TestState::new("two_runs", &root.join("fresh-state.db"));
    // Long enough pages that the two runs overlap for certain.
    sandbox.inject_marketplace_fault(Fault::latency(40));
    let children = [
        spawn_run(&root, state.target(), &sandbox),
        spawn_run(&root, state.target(), &sandbox),
    ];
    let outputs: Vec<std::process::Output> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    })
    .await
    .unwrap();
    let stderr: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(succeeded, 1, "exactly one run goes ahead: {stderr:#?}");
    let refused = &stderr[outputs.iter().position(|o| !o.status.success()).unwrap()];
    assert!(
        refused.contains("is already running (pid ") && refused.contains(" since "),
        "the refusal names the holder: {refused}"
    );
    assert!(!refused.contains("already exists"), "{refused}");

    assert_each_valid_offer_once(&sandbox, "each valid offer exactly once");
    let store = state.open().await;
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(
        sandbox.alerts().len(),
        letters.len(),
        "one alert per dead letter"
    );
    assert_eq!(
        store.flow_lock_holder(FLOW).await.unwrap(),
        None,
        "lock released"
    );
    sandbox.shutdown().await;
}

/// Item 4: processes opening one new state file at once each get a working store; the
/// schema is created once.
///
/// SQLite only: about creating one state file from several processes (the PostgreSQL twin,
/// concurrent migrations, is in the store conformance suite).
#[test]
fn item_04_concurrent_opens_of_a_new_state_file_all_succeed() {
    let dir = std::env::temp_dir().join(format!("switchyard-opens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for trial in 0..20 {
        let path = dir.join(format!("state-{trial}.db"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opened: Vec<Result<(), String>> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&path).map(drop).map_err(|e| e.to_string())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(
            opened.iter().all(Result::is_ok),
            "trial {trial}: {opened:?}"
        );
    }
}

/// A holder on `host`: this very machine (boot and PID namespace) when it is this host's
/// name, another one otherwise.
fn holder(id: &str, pid: u32, host: &str) -> LockHolder {
    let here = LockHolder::this_process();
    LockHolder {
        id: id.into(),
        pid,
        host: host.into(),
        machine: if host == here.host {
            here.machine
        } else {
            "another-boot/another-namespace".into()
        },
        since: "2026-11-30T10:00:00Z".into(),
    }
}

/// Makes a lock's heartbeat look `age` old, as a holder that stopped would leave it.
fn age_heartbeat(state: &Path, flow: &str, age: Duration) {
    let conn = rusqlite::Connection::open(state).unwrap();
    let at = jiff::Timestamp::now().as_millisecond() - age.as_millis() as i64;
    conn.execute(
        "UPDATE flow_locks SET heartbeat_ms = ?1 WHERE flow = ?2",
        rusqlite::params![at, flow],
    )
    .unwrap();
}

/// Item 4: a crashed holder's lock is taken over (its process gone on this host, or its
/// heartbeat stale from anywhere); a live holder's is not.
///
/// SQLite only: it ages the heartbeat in the file directly (PostgreSQL's lease expiry is in
/// the store conformance suite and `tests/postgres_state.rs`).
#[tokio::test]
async fn item_04_lock_of_a_crashed_holder_is_taken_over_and_a_live_one_kept() {
    let dir = std::env::temp_dir().join(format!("switchyard-locks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state.db");
    let store = Store::open(&state).unwrap();
    let here = LockHolder::this_process().host;

    // A holder on this host whose process has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    store
        .acquire_flow_lock("f", &holder("crashed", dead_pid, &here))
        .await
        .unwrap();
    store
        .acquire_flow_lock("f", &holder("next", std::process::id(), &here))
        .await
        .expect("a dead process's lock is taken over");

    // A live holder (this very process, another run) keeps it.
    let refused = store
        .acquire_flow_lock("f", &holder("third", std::process::id(), &here))
        .await
        .unwrap_err();
    assert!(matches!(&refused, StoreError::FlowLocked { holder, .. } if holder.id == "next"));

    // Same host name, another PID namespace (a container): its pid means nothing here, so a
    // live holder is not taken for a dead one.
    store.release_flow_lock("f", "next").await.unwrap();
    let container = LockHolder {
        machine: "same-boot/other-namespace".into(),
        ..holder("container", dead_pid, &here)
    };
    store.acquire_flow_lock("f", &container).await.unwrap();
    assert!(
        store
            .acquire_flow_lock("f", &holder("local", std::process::id(), &here))
            .await
            .is_err(),
        "a pid from another namespace proves nothing"
    );
    store.release_flow_lock("f", "container").await.unwrap();
    store
        .acquire_flow_lock("f", &holder("next", std::process::id(), &here))
        .await
        .unwrap();

    // A holder on another host is judged by its heartbeat only.
    store.release_flow_lock("f", "next").await.unwrap();
    store
        .acquire_flow_lock("f", &holder("remote", 1, "other-host"))
        .await
        .unwrap();
    let refused = store
        .acquire_flow_lock("f", &holder("local", std::process::id(), &here))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("flow `f` is already running (pid 1 on other-host since "),
        "{refused}"
    );
    age_heartbeat(&state, "f", STALE_AFTER + Duration::from_secs(1));
    store
        .acquire_flow_lock("f", &holder("local", std::process::id(), &here))
        .await
        .expect("a stale heartbeat's lock is taken over");
    let trail = store.audit_trail(10).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "flow-lock-taken-over"));
}

/// Item 4: a run that stalled past the stale limit and lost its lock cannot commit over the
/// run that took it over.
///
/// SQLite only: it ages the heartbeat in the file directly (the PostgreSQL fence is in the
/// store conformance suite).
#[tokio::test]
async fn item_04_a_run_that_lost_its_lock_cannot_commit() {
    let dir = std::env::temp_dir().join(format!("switchyard-fence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state.db");
    let store = Store::open(&state).unwrap();
    store
        .acquire_flow_lock("f", &holder("stalled", 1, "host-a"))
        .await
        .unwrap();
    age_heartbeat(&state, "f", STALE_AFTER * 2);
    store
        .acquire_flow_lock("f", &holder("successor", 2, "host-b"))
        .await
        .unwrap();
    let batch = switchyard::store::CommitBatch {
        flow: "f".into(),
        checkpoint: switchyard::store::Checkpoint {
            position: json!({"cursor": "late"}),
            sink_state: Value::Null,
        },
        lock: Some("stalled".into()),
        ..Default::default()
    };
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(err, StoreError::LockLost { .. }), "{err}");
    assert_eq!(
        store.checkpoint("f").await.unwrap(),
        None,
        "nothing committed"
    );
}

/// Item 5: an empty state file is refused, not silently re-initialised: nothing is sent and
/// the file is left as it was.
///
/// SQLite only: about a state file (`--state` overrides the suite's store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_empty_state_file_is_refused_and_nothing_sent() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let (root, _state) = workspace_copy("empty-state", false);
    let state = root.join("empty.db");
    std::fs::write(&state, b"").unwrap();
    let output = tokio::task::spawn_blocking({
        let (root, state) = (root.clone(), state.clone());
        let child = spawn_run(&root, &format!("sqlite:{}", state.display()), &sandbox);
        move || child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("empty.db is empty (0 bytes); nothing was sent.")
            && stderr.contains("restore the state file from a backup"),
        "{stderr}"
    );
    assert!(sandbox.received().is_empty(), "nothing may be sent");
    assert!(sandbox.alerts().is_empty());
    assert_eq!(std::fs::metadata(&state).unwrap().len(), 0);
    sandbox.shutdown().await;
}

/// Item 5: a state file damaged in the middle, or not a database at all, is refused with what
/// is wrong and how to recover.
///
/// SQLite only: about a state file.
#[tokio::test]
async fn item_05_corrupted_state_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("switchyard-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state.db");
    {
        let store = Store::open(&state).unwrap();
        for i in 0..200 {
            store
                .audit(
                    Some("f"),
                    "note",
                    "test",
                    &json!({"i": i, "pad": "x".repeat(300)}),
                )
                .await
                .unwrap();
        }
    }
    let mut bytes = std::fs::read(&state).unwrap();
    assert!(bytes.len() > 8 * 4096, "several pages: {}", bytes.len());
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 4096].fill(0xA5);
    std::fs::write(&state, &bytes).unwrap();
    let err = Store::open(&state).unwrap_err().to_string();
    assert!(
        err.contains("is damaged (")
            && err.contains("nothing was sent")
            && err.contains(".recover"),
        "{err}"
    );

    // Cut short after its first pages (a copy or a disk that filled up): the header is
    // right, the rest is missing.
    std::fs::write(&state, &bytes[..2 * 4096]).unwrap();
    let err = Store::open(&state).unwrap_err().to_string();
    assert!(
        err.contains("is damaged (") && err.contains(".recover"),
        "a truncated file names the damage and the fix: {err}"
    );
    assert_eq!(
        err.matches("malformed").count() + err.matches("not a database").count(),
        1,
        "SQLite's reason is quoted once: {err}"
    );

    std::fs::write(&state, b"this is not a database, just some text").unwrap();
    let err = Store::open(&state).unwrap_err().to_string();
    assert!(err.contains("is not a SQLite database"), "{err}");
}

/// A workspace of this repository loaded with its systems pointed at a closed port (flows run
/// against recorders here, never against them).
fn offline_workspace(dir: &str, systems: &[&str]) -> switchyard::spec::model::Workspace {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut env = switchyard::spec::EnvLookup::empty()
        .with("ORDERS_WEBHOOK_SECRET", "x")
        .with("MARKETPLACE_CLIENT_ID", "x")
        .with("MARKETPLACE_CLIENT_SECRET", "x");
    for name in systems {
        env = env.with(*name, "http://127.0.0.1:1");
    }
    let loaded = switchyard::spec::load_workspace(
        &root,
        &switchyard::spec::LoadOptions { strict: false, env },
    );
    loaded
        .workspace
        .unwrap_or_else(|| panic!("{dir} does not load: {:?}", loaded.diagnostics))
}

/// A recorder sink answering 503 to everything for `hours`.
fn down_for_hours(hours: i64) -> RecorderSink {
    RecorderSink::new(vec![PlannedFault {
        status: 503,
        times: 0,
        retry_after: None,
        lasts_ms: Some(hours * 3_600_000),
    }])
}

/// `count` paid baskets, each with one line from each of two sellers.
fn two_seller_baskets(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"basket_id": format!("B-{i}"), "paid_at": "2025-03-04T10:00:00Z", "lines": [
            { "seller_id": "S-ACME", "sku": "A-1", "quantity": 1, "price": "10.00" },
            { "seller_id": "S-GLOBEX", "sku": "G-1", "quantity": 1, "price": "4.50" }]})
        })
        .collect()
}

/// `count` valid offers, as the marketplace lists them.
fn offers(count: i64) -> Vec<Value> {
    (0..count)
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

/// Item 11: with the sink down, the first record whose retry window ends is dead-lettered,
/// and its owner's alert queued, within a small bound of that end, however many records the
/// batch still holds; the records not settled stay before the checkpoint and flow on the
/// next run, none lost and none twice.
#[tokio::test(start_paused = true)]
async fn item_11_outage_dead_letter_and_alert_come_at_the_end_of_the_window() {
    let workspace = offline_workspace(
        "flows",
        &["MARKETPLACE_URL", "STOREFRONT_URL", "ALERTS_URL", "OMS_URL"],
    );
    let window = Duration::from_secs(30 * 60);
    let store = Store::in_memory().unwrap();
    let run = |recorder: RecorderSink| async {
        FlowRun::new(
            &workspace,
            FLOW,
            store.clone(),
            RunOptions {
                clock: Clock::virtual_now(),
                progress: false,
                concurrency: 8,
                ..RunOptions::default()
            },
            Some(SourceOverride(offers(100))),
            Some(SinkOverride {
                sink: recorder,
                acks: RecorderSink::new(Vec::new()),
            }),
        )
        .await
        .unwrap()
        .run()
        .await
    };
    let down = down_for_hours(24);
    let started = tokio::time::Instant::now();
    let report = run(down.clone()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took <= window + Duration::from_secs(60),
        "the first dead letter was committed {took:?} after the outage began (window {window:?})"
    );
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(!letters.is_empty(), "{report:?}");
    assert!(
        letters
            .iter()
            .all(|l| l.letter.failure == "sink-unavailable")
    );
    let alerts = store.due_alerts(i64::MAX, 1_000).await.unwrap();
    assert_eq!(
        alerts.len(),
        letters.len(),
        "each dead letter's owner is alerted"
    );
    assert_eq!(report.dead_lettered + report.unsettled, 100, "{report:?}");
    assert!(report.stopped_early.is_some());

    // The sink is back: the records left unsettled flow, each once; none dead-lettered flows.
    let up = RecorderSink::new(Vec::new());
    let again = run(up.clone()).await.unwrap();
    assert_eq!(again.delivered, report.unsettled, "{again:?}");
    assert_eq!(again.duplicates, report.dead_lettered);
    let keys: HashSet<String> = up
        .received()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len() as u64, report.unsettled, "none twice");
}

fn orders(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({
                "order_id": format!("MKP-{i:06}-A"), "commercial_id": format!("MKP-{i:06}"),
                "shop_id": 2001, "created_at": "2025-03-04T10:00:00Z",
                "acceptance_deadline": "2099-03-04T10:01:00Z", "order_state": "WAITING_ACCEPTANCE",
                "currency_iso_code": "EUR", "total_price": "10.00",
                "order_lines": [{ "order_line_id": format!("MKP-{i:06}-A-1"), "offer_sku": "SKU-1", "quantity": 1, "price": "10.00" }]
            })
        })
        .collect()
}

/// Item 11: the acknowledgement target (not the sink) is down. An order already written to
/// the OMS finishes its acknowledgement instead of being abandoned, so no run writes it to
/// the OMS a second time.
#[tokio::test(start_paused = true)]
async fn item_11_an_acknowledgement_outage_never_writes_a_record_to_the_sink_twice() {
    let workspace = offline_workspace(
        "flows",
        &["MARKETPLACE_URL", "STOREFRONT_URL", "ALERTS_URL", "OMS_URL"],
    );
    let store = Store::in_memory().unwrap();
    let oms = RecorderSink::new(Vec::new());
    let run = |acks: RecorderSink| async {
        FlowRun::new(
            &workspace,
            "orders-to-oms",
            store.clone(),
            RunOptions {
                clock: Clock::virtual_now(),
                progress: false,
                concurrency: 8,
                ..RunOptions::default()
            },
            Some(SourceOverride(orders(40))),
            Some(SinkOverride {
                sink: oms.clone(),
                acks,
            }),
        )
        .await
        .unwrap()
        .run()
        .await
    };
    let acks_down = down_for_hours(24);
    let first = run(acks_down).await.unwrap();
    assert!(first.stopped_early.is_some(), "{first:?}");
    let second = run(RecorderSink::new(Vec::new())).await.unwrap();
    assert_eq!(
        first.delivered + second.delivered + second.duplicates,
        40,
        "{second:?}"
    );
    assert_eq!(oms.replays(), 0, "orders written to the OMS twice");
}

/// Item 11, split records: the leg past its window declares the outage; its sibling legs
/// share its fate, so the run ends with dead letters and their alerts, not with nothing.
#[tokio::test(start_paused = true)]
async fn item_11_a_split_record_in_an_outage_is_dead_lettered_and_alerted() {
    let workspace = offline_workspace(
        "examples/basket-split",
        &["CHECKOUT_URL", "OMS_URL", "ALERTS_URL"],
    );
    let store = Store::in_memory().unwrap();
    let baskets = two_seller_baskets(20);
    let down = down_for_hours(24);
    let report = FlowRun::new(
        &workspace,
        "baskets-to-oms",
        store.clone(),
        RunOptions {
            clock: Clock::virtual_now(),
            progress: false,
            concurrency: 8,
            ..RunOptions::default()
        },
        Some(SourceOverride(baskets)),
        Some(SinkOverride {
            sink: down,
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .unwrap()
    .run()
    .await
    .unwrap();
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(report.stopped_early.is_some());
    assert!(
        !letters.is_empty(),
        "outage with no dead letter: {report:?}"
    );
}

/// Item 11, split records one leg at a time (or a basket with more legs than the
/// concurrency): the first run already ends with a dead letter and an alert.
#[tokio::test(start_paused = true)]
async fn item_11_a_split_outage_alerts_on_the_first_run_even_one_leg_at_a_time() {
    let workspace = offline_workspace(
        "examples/basket-split",
        &["CHECKOUT_URL", "OMS_URL", "ALERTS_URL"],
    );
    let store = Store::in_memory().unwrap();
    let baskets = two_seller_baskets(5);
    let down = down_for_hours(240);
    let clock = Clock::virtual_now();
    for run in 1..=5 {
        let report = FlowRun::new(
            &workspace,
            "baskets-to-oms",
            store.clone(),
            RunOptions {
                clock,
                progress: false,
                concurrency: 1,
                ..RunOptions::default()
            },
            Some(SourceOverride(baskets.clone())),
            Some(SinkOverride {
                sink: down.clone(),
                acks: RecorderSink::new(Vec::new()),
            }),
        )
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
        // The next poll, a minute later.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let letters = store
            .dead_letters(&switchyard::store::DeadLetterFilter::default())
            .await
            .unwrap();
        assert!(
            !letters.is_empty(),
            "run {run}: no dead letter ({report:?})"
        );
    }
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(
        !letters.is_empty(),
        "five runs through an outage and no dead letter, no alert"
    );
}
