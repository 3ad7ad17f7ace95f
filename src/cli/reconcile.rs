//! `switchyard reconcile`: runs a reconcile flow once, prints per cycle and currency whether
//! it ties out and the variances by kind, and with `--out` writes the report files. Variances
//! are findings, not failures: the exit code is 0 unless `--fail-on-variance` is given.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::output::{errln, outln};
use crate::reconcile::{RunOptions, report};
use crate::runtime::alerts;
use crate::spec::EnvLookup;
use crate::store::{Store, StoreTarget};

/// Arguments of `switchyard reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// `[WORKSPACE] FLOW`: the workspace folder (default `.`) and the reconcile flow.
    #[arg(num_args = 1..=2, required = true, value_names = ["WORKSPACE", "FLOW"])]
    target: Vec<String>,
    /// Reconcile this billing cycle only (default: every cycle found).
    #[arg(long, value_name = "ID")]
    cycle: Option<String>,
    /// Write `variances.jsonl`, `totals.jsonl`, `report.csv` and `report.md` into this folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Exit with 1 when a cycle does not tie out (for CI); by default variances are reported,
    /// dead-lettered and the exit code is 0.
    #[arg(long)]
    fail_on_variance: bool,
    /// State store: a SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL schema. Default:
    /// the workspace's `state:`, else `.switchyard/state.db`.
    #[arg(long)]
    state: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A summary for people.
    Human,
    /// The whole result as JSON.
    Json,
}

pub(crate) fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    super::tokio_runtime()?.block_on(run_async(args))
}

async fn run_async(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let (root, flow) = match args.target.as_slice() {
        [flow] => (PathBuf::from("."), flow.clone()),
        [root, flow] => (PathBuf::from(root), flow.clone()),
        _ => anyhow::bail!("usage: switchyard reconcile [WORKSPACE] FLOW"),
    };
    let workspace = super::load_for_run(&root, EnvLookup::process())?;
    let state = StoreTarget::choose(args.state.as_deref(), Some(&workspace.state))?;
    let store = Store::open_target(&state).await?;
    let options = RunOptions {
        cycle: args.cycle.clone(),
        metrics: None,
    };
    let outcome = crate::reconcile::run(&workspace, &flow, &store, &options).await?;
    let reconciliation = workspace
        .reconciliations
        .get(&flow)
        .context("the reconcile flow vanished")?;
    if let Some(dir) = &args.out {
        report::write_files(dir, reconciliation, &outcome)?;
        errln!("Report written to {}", dir.display());
    }
    // Alerts go out now; any still undelivered stay queued for the next run or the daemon.
    let undelivered = alerts::drain(&store, Duration::from_secs(10)).await;
    if undelivered > 0 {
        errln!("{undelivered} alert(s) could not be delivered yet; they stay queued");
    }
    match args.format {
        Format::Human => outln!(
            "{}",
            report::render_human(reconciliation, &outcome).trim_end()
        )?,
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&report::render_json(reconciliation, &outcome))?
        )?,
    }
    if args.fail_on_variance && !report::ties_out(&outcome.matched) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
