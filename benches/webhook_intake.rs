//! Durable webhook intake: signed order events POSTed to `switchyard serve` (in process, on
//! loopback, SQLite state with `synchronous=FULL`), each answered 2xx only once it is in the
//! inbox. Reports events/s and latency percentiles per concurrency level.
//!
//! Run: `cargo bench --bench webhook_intake` (env `EVENTS`, default 3000).
//! The flow is paused so that only intake is measured, not the OMS round trips.

// A benchmark run by hand reports on stdout; the crate's ban on `println!` is for commands.
#![allow(clippy::print_stdout)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::daemon::{self, ServeConfig};
use switchyard::sandbox::{Sandbox, SandboxConfig, sign};
use switchyard::spec::EnvLookup;
use tokio::sync::Semaphore;

const SECRET: &str = "bench-secret";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let root =
        std::env::temp_dir().join(format!("switchyard-webhook-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &root)?;
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 0,
        orders: 1,
        ..SandboxConfig::default()
    })
    .await?;
    let mut env = EnvLookup::process().with("ORDERS_WEBHOOK_SECRET", SECRET);
    for (name, value) in sandbox.env() {
        env = env.with(name, value);
    }
    let listen: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let config = ServeConfig {
        root: root.clone(),
        listen,
        watch: false,
        state: None,
        shutdown_timeout: Duration::from_secs(5),
        admin_token: None,
        alert_interval: Duration::from_secs(2),
        env,
    };
    let server = tokio::spawn(daemon::serve(config));
    let client = switchyard::connectors::http::client_builder().build()?;
    let base = format!("http://{listen}");
    wait_ready(&client, &base).await?;
    client
        .post(format!("{base}/admin/flows/orders-to-oms/pause"))
        .send()
        .await?
        .error_for_status()?;
    let template = sandbox.marketplace_orders().remove(0);

    println!("durable webhook intake, {events} signed events per run, SQLite synchronous=FULL");
    println!(
        "{:>11} {:>10} {:>9} {:>9} {:>9}",
        "concurrency", "events/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut offset = 0;
    for concurrency in [1usize, 8, 32] {
        let mut latencies = send(&client, &base, &template, offset, events, concurrency).await?;
        offset += events;
        latencies.sort_unstable();
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "{:>11} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            concurrency,
            events as f64 / RUN.with(|r| r.get()),
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
    }
    server.abort();
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

thread_local! {
    /// Wall time of the last run, seconds (set by `send`).
    static RUN: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    template: &serde_json::Value,
    offset: usize,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in offset..offset + events {
        let permit = permits.clone().acquire_owned().await?;
        let mut order = template.clone();
        order["order_id"] = serde_json::Value::from(format!("BENCH-{i}-A"));
        let event_id = format!("bench-{i}");
        let body =
            serde_json::json!({"event_id": event_id, "type": "ORDER_CREATED", "order": order})
                .to_string();
        let client = client.clone();
        let url = format!("{base}/hooks/orders");
        tasks.spawn(async move {
            let _permit = permit;
            let timestamp = jiff::Timestamp::now().as_second();
            let begin = Instant::now();
            let response = client
                .post(url)
                .header("X-Event-Id", event_id)
                .header("X-Timestamp", timestamp.to_string())
                .header("X-Signature", sign(SECRET, timestamp, body.as_bytes()))
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "intake answered {}",
                response.status()
            );
            Ok(begin.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(events);
    while let Some(joined) = tasks.join_next().await {
        latencies.push(joined??);
    }
    RUN.with(|r| r.set(started.elapsed().as_secs_f64()));
    Ok(latencies)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the daemon did not become ready")
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
