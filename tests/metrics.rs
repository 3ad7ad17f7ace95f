//! Live metrics: counters move while a run lasts, in `serve`'s `/metrics` and in
//! `run --metrics-listen`, and `run`'s summary is printed from the same counters.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};

use crate::daemon::Daemon;
use crate::runtime::{FLOW, workspace_copy};

const DELIVERED: &str = "switchyard_records_delivered_total{flow=\"offers-to-storefront\"} ";
const FINISHED: &str = "switchyard_run_duration_seconds_count{flow=\"offers-to-storefront\"}";

/// The value of the series line starting with `series` (name and labels, then a space).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// A sandbox whose storefront answers each write after 15 ms, so a run of its 1,000 offers
/// lasts seconds.
async fn slow_sandbox() -> Sandbox {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.inject_storefront_fault(Fault::latency(15));
    sandbox
}

async fn get(url: &str) -> String {
    let client = switchyard::connectors::http::client_builder()
        .build()
        .expect("client");
    match client.get(url).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shows_deliveries_in_metrics_before_the_run_finishes() {
    let sandbox = slow_sandbox().await;
    let (root, _state) = workspace_copy("metrics-serve", false);
    let daemon = Daemon::start_with(&root, &sandbox, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = daemon.get("/metrics").await;
        let delivered = value(&text, DELIVERED).unwrap_or(0.0);
        if delivered > 0.0 {
            // One scrape: records counted, and no run of the flow finished yet.
            assert!(!text.contains(FINISHED), "run already finished:\n{text}");
            assert!(
                delivered < sandbox.summary().valid as f64,
                "all delivered already: {delivered}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline && !text.contains(FINISHED),
            "no delivery counted while the run lasted:\n{text}\nlogs:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.kill();
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_live_metrics_and_sums_up_from_them() {
    let sandbox = slow_sandbox().await;
    let (root, _state) = workspace_copy("metrics-run", false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", root.to_str().unwrap(), FLOW, "--concurrency", "4"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .envs(sandbox.env())
        .env("SWITCHYARD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Metrics on ") {
                let _ = tx.send(url.to_owned());
            }
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no metrics address: {}", lines.lock().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let text = get(&url).await;
        let delivered = value(&text, DELIVERED).unwrap_or(0.0);
        if delivered > 0.0 {
            break delivered;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no delivery counted while the run lasted:\n{text}\n{}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run was still going when {live} deliveries showed"
    );
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = lines.lock().unwrap().clone();
    assert!(status.success(), "{stderr}");
    let summary = sandbox.summary();
    let delivered = sandbox.storefront_stats().records;
    assert_eq!(delivered, summary.valid, "{stderr}");
    assert!(live < delivered as f64, "live {live}, final {delivered}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with(&format!("{FLOW}: read ")))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(
        line.contains(&format!(", delivered {delivered}, ")),
        "{line}"
    );
    sandbox.shutdown().await;
}

/// A run's events agree with its report: the counters a flaky storefront leaves behind are
/// the report's numbers, retries included (the report does not carry those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_agree_with_the_run_report_retries_included() {
    use switchyard::metrics::Metrics;
    use switchyard::metrics::catalog::{
        BATCHES_COMMITTED, RECORDS_DEAD_LETTERED, RECORDS_DELIVERED, RECORDS_DUPLICATE,
        RECORDS_RECEIVED, RECORDS_RETRIED, RUNS_FINISHED,
    };
    use switchyard::runtime::{FlowRun, Observer, RunOptions};

    // The default catalogue has bad offers and duplicates among its thousand.
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.inject_storefront_fault(Fault::fail(503, 3));
    let (root, state) = workspace_copy("metrics-report", true);
    let workspace = crate::runtime::load(&root, &sandbox);
    let store = state.open().await;
    let metrics = Arc::new(Metrics::default());
    let options = RunOptions {
        progress: false,
        observer: Observer::new(Arc::clone(&metrics)),
        ..RunOptions::default()
    };
    let report = FlowRun::new(&workspace, FLOW, store, options, None, None)
        .await
        .unwrap()
        .run()
        .await
        .unwrap();
    let flow = [("flow", FLOW)];
    let count = |metric| metrics.counter(metric, &flow) as u64;
    assert_eq!(count(&RECORDS_RECEIVED), report.read);
    assert_eq!(count(&RECORDS_DELIVERED), report.delivered);
    assert_eq!(count(&RECORDS_DUPLICATE), report.duplicates);
    assert_eq!(count(&RECORDS_RETRIED), 3, "one retry per injected 503");
    assert_eq!(count(&RUNS_FINISHED), 1);
    assert!(count(&BATCHES_COMMITTED) >= 1);
    let dead: f64 = metrics
        .counter_series(&RECORDS_DEAD_LETTERED)
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dead as u64, report.dead_lettered);
    assert!(
        report.dead_lettered > 0 && report.duplicates > 0,
        "{report:?}"
    );
    sandbox.shutdown().await;
}
