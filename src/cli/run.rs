//! `switchyard run`: runs one flow once, against its systems or the built-in sandbox.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::output::{errln, outln};
use crate::runtime::{FlowRun, RunOptions, alerts};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::spec::EnvLookup;
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
    let state = StoreTarget::choose(args.state.as_deref(), Some(&workspace.state))?;
    let store = Store::open_target(&state).await?;
    let options = RunOptions {
        batch_size: args.batch_size.max(1),
        concurrency: args.concurrency.max(1),
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
        let rate = report.read as f64 / elapsed.as_secs_f64().max(1e-9);
        errln!(
            "{}: read {}, delivered {}, duplicates {}, dead letters {} in {:.2}s ({:.0} records/s)",
            flow_name,
            report.read,
            report.delivered,
            report.duplicates,
            report.dead_lettered,
            elapsed.as_secs_f64(),
            rate
        );
        for (failure, count) in &report.by_failure {
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
    if let Some(reason) = &report.stopped_early {
        errln!("Stopped early: {reason}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
