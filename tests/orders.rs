//! Orders under deadlines, end to end: the real `serve` binary against the in-process
//! sandbox (marketplace with signed order webhooks and auto-cancel, OMS, alert receiver).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard::sandbox::{Fault, Sandbox, SandboxConfig, sign};

use crate::daemon::Daemon;
use crate::util::{TestState, copy_dir};

const SECRET: &str = "orders-secret";

/// A private copy of the reference workspace on a fresh state store (held by the guard).
fn workspace(name: &str) -> (PathBuf, TestState) {
    let dir = std::env::temp_dir().join(format!("switchyard-orders-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let state = TestState::attach(&format!("orders_{name}"), &dir);
    (dir, state)
}

async fn sandbox(baskets: usize, deadline_secs: u64) -> Sandbox {
    Sandbox::start(SandboxConfig {
        offers: 0,
        orders: baskets,
        ack_deadline_secs: deadline_secs,
        webhook_secret: SECRET.into(),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox")
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_baskets_are_acknowledged_in_time_split_deduplicated_and_shipped() {
    // The strict marketplace: tokens required and living 3 s (renewed many times during the
    // run), and 429 beyond 100 calls a second on acceptances and shipments.
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 0,
        orders: 1000,
        ack_deadline_secs: 120,
        webhook_secret: SECRET.into(),
        oauth: Some(switchyard::sandbox::OAuthConfig {
            token_lifetime: Duration::from_secs(3),
            required: true,
            ..Default::default()
        }),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    for operation in [
        "PUT /marketplace/api/orders/{order_id}/accept",
        "POST /marketplace/api/orders/{order_id}/shipments",
    ] {
        sandbox.set_rate_limit(operation, 100, 1);
    }
    let (root, _state) = workspace("thousand");
    let daemon = Daemon::start_with(&root, &sandbox, &[("ORDERS_WEBHOOK_SECRET", SECRET)]);
    sandbox.emit_orders(&format!("{}/hooks/orders", daemon.base));
    let legs = sandbox.orders_summary().legs;
    assert!(
        legs > 1000,
        "split baskets give more legs than baskets ({legs})"
    );
    wait_until("every leg accepted", Duration::from_secs(110), || {
        sandbox.orders_summary().accepted_before_deadline == legs
    })
    .await;
    let summary = sandbox.orders_summary();
    assert_eq!(summary.auto_cancelled, 0, "no order auto-cancelled");
    assert!(summary.split_baskets > 0);
    assert!(summary.duplicate_order_ids_sent > 0 && summary.duplicate_events_sent > 0);
    let oms = sandbox.oms_stats();
    assert_eq!(
        oms.received, legs,
        "every leg of every basket at the OMS, once"
    );
    assert_eq!(
        oms.duplicate_orders, 0,
        "a duplicate marketplace order ID is delivered once"
    );
    // Shipments (some partial) come back with the marketplace's order IDs.
    wait_until("shipments confirmed", Duration::from_secs(60), || {
        sandbox.orders_summary().shipments == sandbox.oms_stats().shipments
    })
    .await;
    let shipments = sandbox.marketplace_shipments();
    assert!(!shipments.is_empty());
    assert!(shipments.iter().all(|s| {
        s["order_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("MKP-"))
    }));
    assert!(sandbox.orders_summary().partially_shipped > 0 || sandbox.orders_summary().shipped > 0);
    assert_eq!(
        sandbox.orders_summary().calls_out_of_order,
        0,
        "no shipment before its order's acceptance (the shipments flow's guard)"
    );
    assert_eq!(
        sandbox.rate_limit_violations().values().sum::<u64>(),
        0,
        "the workspace's client-side rate limit keeps every call under the marketplace's: {:?}",
        sandbox.rate_limit_violations()
    );
    let oauth = sandbox.oauth_stats();
    assert!(
        oauth.issued >= 3,
        "tokens renewed mid-run without a failed record: {oauth:?}"
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains("switchyard_delivery_latency_seconds_bucket{flow=\"orders-to-oms\""),
        "end-to-end latency histogram: {metrics}"
    );
    let (code, elapsed) = daemon.terminate();
    assert_eq!(code, 0);
    assert!(elapsed < Duration::from_secs(10));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_oms_warns_the_owner_before_the_deadline_and_dead_letters_the_miss() {
    let sandbox = sandbox(12, 4).await;
    // Each OMS write outlasts the 4 s acceptance deadline, so every leg misses it however
    // the events are batched and however many go out at once: the warning comes while the
    // write is open, and the acknowledgement after it finds the deadline passed.
    sandbox.inject_oms_fault(Fault::latency(5_000));
    let (root, _state) = workspace("slow-oms");
    let daemon = Daemon::start_with(&root, &sandbox, &[("ORDERS_WEBHOOK_SECRET", SECRET)]);
    sandbox.emit_orders(&format!("{}/hooks/orders", daemon.base));
    daemon
        .wait_for_metric("switchyard_records_dead_lettered_total{flow=\"orders-to-oms\",failure=\"deadline-missed\"")
        .await;
    let warnings = sandbox
        .alerts()
        .into_iter()
        .filter(|a| a.body["stage"] == "warning")
        .collect::<Vec<_>>();
    assert!(!warnings.is_empty(), "owner warned before the deadline");
    let warning = &warnings[0];
    assert_eq!(warning.owner, "order-desk");
    assert_eq!(warning.body["failure"], "deadline-missed");
    assert!(
        warning.body["runbook"]
            .as_str()
            .is_some_and(|r| r.contains("acceptance deadline"))
    );
    assert!(warning.body["seconds_left"].as_i64().is_some_and(|s| s > 0));
    // The metrics show the warnings as well as the misses.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = daemon.get("/metrics").await;
        let warned = metrics
            .lines()
            .find(|l| l.starts_with("switchyard_deadline_warnings_total{flow=\"orders-to-oms\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if warned > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no deadline warnings in /metrics:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_acknowledged_before_kill_dash_nine_is_processed_after_restart() {
    let sandbox = sandbox(1, 300).await;
    let (root, _state) = workspace("kill9");
    let extra = [("ORDERS_WEBHOOK_SECRET", SECRET)];
    let daemon = Daemon::start_with(&root, &sandbox, &extra);
    // Pause the flow so the event is only in the inbox when the process dies.
    let client = switchyard::connectors::http::client_builder()
        .build()
        .unwrap();
    let paused = client
        .post(format!("{}/admin/flows/orders-to-oms/pause", daemon.base))
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_success());
    let order = sandbox.marketplace_orders().remove(0);
    let body =
        serde_json::json!({"event_id": "evt-kill9", "type": "ORDER_CREATED", "order": order})
            .to_string();
    let timestamp = jiff::Timestamp::now().as_second();
    let response = client
        .post(format!("{}/hooks/orders", daemon.base))
        .header("X-Event-Id", "evt-kill9")
        .header("X-Timestamp", timestamp.to_string())
        .header("X-Signature", sign(SECRET, timestamp, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    daemon.kill();
    assert_eq!(sandbox.oms_stats().received, 0);

    let daemon = Daemon::start_with(&root, &sandbox, &extra);
    wait_until(
        "the event processed after restart",
        Duration::from_secs(20),
        || sandbox.oms_stats().received == 1,
    )
    .await;
    wait_until("the order accepted", Duration::from_secs(10), || {
        sandbox.orders_summary().accepted_before_deadline == 1
    })
    .await;
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_in_time_and_loses_or_duplicates_nothing() {
    let sandbox = sandbox(400, 300).await;
    sandbox.inject_oms_fault(Fault::latency(20));
    let (root, _state) = workspace("sigterm");
    let extra = [("ORDERS_WEBHOOK_SECRET", SECRET)];
    let daemon = Daemon::start_with(&root, &sandbox, &extra);
    sandbox.emit_orders(&format!("{}/hooks/orders", daemon.base));
    wait_until("some legs delivered", Duration::from_secs(30), || {
        sandbox.oms_stats().received >= 50
    })
    .await;
    let (code, elapsed) = daemon.terminate();
    assert_eq!(code, 0, "exit 0 on SIGTERM");
    assert!(elapsed < Duration::from_secs(10), "exited in {elapsed:?}");
    let legs = sandbox.orders_summary().legs;
    assert!(sandbox.oms_stats().received < legs, "stopped under load");

    // The sandbox keeps redelivering what was not acknowledged; a restart drains the rest.
    sandbox.clear_oms_faults();
    let daemon = Daemon::start_with(&root, &sandbox, &extra);
    sandbox.emit_orders(&format!("{}/hooks/orders", daemon.base));
    wait_until("every leg at the OMS", Duration::from_secs(90), || {
        sandbox.oms_stats().received == legs
    })
    .await;
    // The acceptance follows the OMS write: wait for it rather than race it.
    wait_until("every leg accepted", Duration::from_secs(30), || {
        sandbox.orders_summary().accepted_before_deadline == legs
    })
    .await;
    let oms = sandbox.oms_stats();
    assert_eq!(
        oms.duplicate_orders, 0,
        "no leg delivered twice under two keys"
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
    sandbox.shutdown().await;
}
