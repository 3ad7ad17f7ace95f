//! `switchyard run`: runs one flow once, against its systems or the built-in sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::output::{errln, outln};
use crate::metrics::Metrics;
use crate::metrics::catalog::{
    RECORDS_DEAD_LETTERED, RECORDS_DELIVERED, RECORDS_DUPLICATE, RECORDS_FILTERED, RECORDS_RECEIVED,
};
use crate::runtime::{FlowRun, Observer, RunOptions, alerts};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::spec::EnvLookup;
use crate::spec::model::Workspace;
use crate::store::{Store, StoreTarget};

/// Arguments of `switchyard run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// `[WORKSPACE] FLOW`: the workspace folder (default `.`) and the flow to run.
    #[arg(num_args = 1..=2, required = true, value_names = ["WORKSPACE", "FLOW"])]
    target: Vec<String>,
    /// Start the simulated marketplace systems on loopback and point the workspace's
    /// `${MARKETPLACE_URL}`, `${STOREFRONT_URL}`, `${ALERTS_URL}` and `${OMS_URL}` at them.
    #[arg(long)]
    sandbox: bool,
    /// Offers seeded in the sandbox.
    #[arg(long, default_value_t = 1000)]
    sandbox_offers: usize,
    /// State store: a SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL schema
    /// (`postgres://HOST/DB?schema=NAME`). Default: the workspace's `state:`, else
    /// `.switchyard/state.db`.
    #[arg(long)]
    state: Option<String>,
    /// Records per batch for file sources.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Deliveries in flight at once for per-record sinks.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Serve `GET /metrics` (Prometheus text) on this address while the run lasts, counted
    /// as the run goes (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    super::tokio_runtime()?.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (root, flow_name) = match args.target.as_slice() {
        [flow] => (PathBuf::from("."), flow.clone()),
        [root, flow] => (PathBuf::from(root), flow.clone()),
        _ => anyhow::bail!("usage: switchyard run [WORKSPACE] FLOW"),
    };
    let sandbox = if args.sandbox {
        let config = SandboxConfig {
            offers: args.sandbox_offers,
            oauth: Some(super::realistic_oauth()),
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::start(config)
            .await
            .context("starting the sandbox")?;
        errln!("Sandbox listening on {}", sandbox.base_url());
        Some(sandbox)
    } else {
        None
    };
    let mut env = EnvLookup::process();
    for (name, value) in sandbox.iter().flat_map(Sandbox::env) {
        env = env.with(name, value);
    }
    let workspace = super::load_for_run(&root, env)?;
    if let Some(flow) = workspace.flows.get(&flow_name) {
        let used = [flow.from.system.as_str(), flow.to.system.as_str()];
        say_start_notices(&workspace, |system| used.contains(&system));
    }
    let state = StoreTarget::choose(args.state.as_deref(), Some(&workspace.state))?;
    let store = Store::open_target(&state).await?;
    let metrics = Arc::new(Metrics::default());
    let server = match args.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, Arc::clone(&metrics)).await?),
        None => None,
    };
    let options = RunOptions {
        batch_size: args.batch_size.max(1),
        concurrency: args.concurrency.max(1),
        observer: Observer::new(Arc::clone(&metrics)),
        ..RunOptions::default()
    };
    let started = std::time::Instant::now();
    let flow = FlowRun::new(&workspace, &flow_name, store.clone(), options, None, None).await?;
    let result = flow.run().await;
    let elapsed = started.elapsed();
    // Alerts go out after the run; any still undelivered stay queued for the next run.
    let undelivered = alerts::drain(&store, Duration::from_secs(10)).await;
    let report = result?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        // From the same counters `/metrics` served while the run lasted.
        let flow = [("flow", flow_name.as_str())];
        let read = metrics.counter(&RECORDS_RECEIVED, &flow);
        let rate = read / elapsed.as_secs_f64().max(1e-9);
        let by_failure: Vec<(String, f64)> = metrics
            .counter_series(&RECORDS_DEAD_LETTERED)
            .into_iter()
            .filter(|(labels, _)| labels.iter().any(|(k, v)| *k == "flow" && *v == flow_name))
            .filter_map(|(labels, count)| {
                let failure = labels.into_iter().find(|(k, _)| *k == "failure")?.1;
                Some((failure, count))
            })
            .collect();
        errln!(
            "{}: read {}, delivered {}, duplicates {}, dead letters {} in {:.2}s ({:.0} records/s)",
            flow_name,
            read,
            metrics.counter(&RECORDS_DELIVERED, &flow),
            metrics.counter(&RECORDS_DUPLICATE, &flow),
            // Counts are whole numbers; summed as integers, an empty list prints 0, not -0.
            by_failure
                .iter()
                .map(|(_, count)| *count as u64)
                .sum::<u64>(),
            elapsed.as_secs_f64(),
            rate
        );
        // Only when the flow filters: the summary line stays as scripts know it.
        let filtered = metrics.counter(&RECORDS_FILTERED, &flow);
        if filtered > 0.0 {
            errln!("  filtered out (where): {}", filtered as u64);
        }
        // A failure mode can have several owners over a flow's history; one line per mode.
        let mut merged: std::collections::BTreeMap<String, f64> = Default::default();
        for (failure, count) in by_failure {
            *merged.entry(failure).or_default() += count;
        }
        for (failure, count) in merged {
            errln!("  {failure}: {count}");
        }
        if undelivered > 0 {
            errln!("  {undelivered} alert(s) not delivered yet; they stay queued");
        }
    }
    if let Some(sandbox) = sandbox {
        super::report_sandbox(&sandbox);
        sandbox.shutdown().await;
    }
    if let Some(server) = server {
        server.abort();
    }
    if let Some(reason) = &report.stopped_early {
        errln!("Stopped early: {reason}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Says once per system what operators must know before flows on the systems `used` picks
/// run (a SQL system posting into its embedded fallback): as a `WARN` log line when the log
/// shows warnings, else as a plain line on stderr. The log is on stderr too, so saying it both
/// ways showed it twice.
pub(super) fn say_start_notices(workspace: &Workspace, used: impl Fn(&str) -> bool) {
    let systems = workspace
        .systems
        .iter()
        .filter(|(name, _)| used(name))
        .map(|(name, system)| (name.as_str(), system));
    for notice in crate::connectors::start_notices(systems, &workspace.root) {
        if tracing::enabled!(tracing::Level::WARN) {
            tracing::warn!(notice = %notice, "A system runs on its embedded fallback.");
        } else {
            errln!("{notice}");
        }
    }
}

/// Serves the run's metrics on `addr` until the returned task is aborted.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for --metrics-listen"))?;
    let bound = listener.local_addr()?;
    errln!("Metrics on http://{bound}/metrics");
    let app = crate::metrics::router(metrics);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!(error = %err, "Metrics listener stopped.");
        }
    }))
}
