//! State guards end to end: the real `serve` binary runs orders-to-oms and
//! shipments-to-marketplace at once against the sandbox, and no shipment is ever posted for
//! an order the marketplace has not accepted (the sandbox counts every call out of order).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};

use crate::daemon::Daemon;
use crate::util::{TestState, copy_dir};

const SECRET: &str = "guards-secret";
const UNMET: &str = "switchyard_records_dead_lettered_total{flow=\"shipments-to-marketplace\",failure=\"guard-unmet\"";

/// The reference workspace with the shipments flow polling every second and a short retry
/// window, so a held shipment gives up within the test's time.
fn workspace(name: &str) -> (PathBuf, TestState) {
    let dir = std::env::temp_dir().join(format!("switchyard-guards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let flow = dir.join("flows").join("shipments-to-marketplace.yaml");
    let text = std::fs::read_to_string(&flow).expect("shipments flow");
    let text = text
        .replace("trigger: { poll: 10s }", "trigger: { poll: 1s }")
        .replace(
            "retry: { backoff: exponential, initial: 1s, max_delay: 30s, window: 30m }",
            "retry: { backoff: exponential, initial: 200ms, max_delay: 1s, window: 4s }",
        );
    assert!(
        text.contains("poll: 1s") && text.contains("window: 4s"),
        "{text}"
    );
    std::fs::write(&flow, text).expect("write flow");
    let state = TestState::attach(&format!("guards_{name}"), &dir);
    (dir, state)
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of every series of `metrics` whose line starts with `prefix`.
fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_are_never_posted_before_their_order_is_accepted_under_serve() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 0,
        orders: 12,
        ack_deadline_secs: 120,
        webhook_secret: SECRET.into(),
        // The OMS ships the moment it has an order: a shipment exists before the acceptance.
        ship_after_ms: 0,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    // The first three acceptances are refused: those orders reach the OMS, which ships them,
    // but are never accepted, so the marketplace would refuse their shipments as out of order.
    sandbox.inject_orders_fault(Fault::fail(400, 3));
    let (root, _state) = workspace("serve");
    let daemon = Daemon::start_with(&root, &sandbox, &[("ORDERS_WEBHOOK_SECRET", SECRET)]);
    sandbox.emit_orders(&format!("{}/hooks/orders", daemon.base));
    let legs = sandbox.orders_summary().legs;
    wait_until("every other leg accepted", Duration::from_secs(60), || {
        sandbox.orders_summary().accepted_before_deadline == legs - 3
    })
    .await;
    assert_eq!(sandbox.oms_stats().received, legs, "every leg at the OMS");
    // The shipments of the unaccepted orders are held, then dead-lettered as guard-unmet;
    // every other shipment is confirmed.
    daemon.wait_for_metric(UNMET).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = daemon.get("/metrics").await;
        let held = metric_sum(&metrics, UNMET) as usize;
        let confirmed = sandbox.orders_summary().shipments;
        if held + confirmed == sandbox.oms_stats().shipments {
            assert!(
                held >= 3,
                "at least one shipment per unaccepted order held ({held})"
            );
            assert!(
                confirmed > 0,
                "the accepted orders' shipments are confirmed"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "held {held} + confirmed {confirmed} != {} OMS shipments\n{metrics}",
            sandbox.oms_stats().shipments
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let summary = sandbox.orders_summary();
    assert_eq!(
        summary.calls_out_of_order, 0,
        "no call out of order: {summary:?}"
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert_eq!(
        metric_sum(
            &metrics,
            "switchyard_records_dead_lettered_total{flow=\"shipments-to-marketplace\",failure=\"sink-rejected\""
        ),
        0.0,
        "no shipment refused by the marketplace"
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
    sandbox.shutdown().await;
}
