//! Reconciliation: a flow's `reconcile:` step joins an operator statement (the flow's
//! `from:`) to a ledger (`reconcile.ledger`) on financial references, per billing cycle and
//! currency, and reports each variance: as report files (`report`), as dead letters routed
//! to their owners (`letters`) and as metrics.
//!
//! Amounts are exact decimals end to end ([`amount`]); the ledger is held compactly
//! ([`ledger`]) and the statement streamed past it ([`matcher`]), so a million lines take a
//! few seconds and well under 256 MiB. This module owns none of the connectors: sides are
//! read through them ([`read`]), except local JSONL/CSV files, which a field-extracting
//! reader streams directly.

pub mod amount;
mod config;
pub mod cycles;
mod extract;
mod ledger;
pub mod letters;
pub mod matcher;
pub mod plan;
mod rates;
mod read;
pub mod report;

use std::sync::Arc;

pub use self::config::{
    DateMatch, FieldPair, LineDate, RateConfig, RateSign, ReconcileConfig, RuleCondition,
    RuleConfig, Strategy,
};
pub use self::cycles::CycleBook;
pub use self::letters::LetterCounts;
pub use self::matcher::{Kind, Matched, Totals, Variance};
use self::matcher::{Matcher, Side};
pub use self::plan::Reconciliation;
pub use self::read::ReadError;
use crate::metrics::Metrics;
use crate::spec::model::Workspace;
use crate::store::{Checkpoint, CommitBatch, Store, StoreError};

/// A reconciliation run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// No reconcile flow of that name.
    #[error("no reconcile flow \"{flow}\" in the workspace{hint}")]
    UnknownFlow {
        /// The name asked for.
        flow: String,
        /// What to do instead.
        hint: String,
    },
    /// A side could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The state store failed while recording dead letters or the cycles' progress.
    #[error("recording the reconciliation in the state store: {0}")]
    Store(#[from] StoreError),
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only this billing cycle.
    pub cycle: Option<String>,
    /// Where to set the reconciliation gauges, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
}

/// What a run found and did.
#[derive(Debug)]
pub struct Outcome {
    /// The flow.
    pub flow: String,
    /// The cycle reconciled, when one was asked for.
    pub cycle: Option<String>,
    /// Totals and variances.
    pub matched: Matched,
    /// Dead letters created and resolved.
    pub letters: LetterCounts,
}

/// Runs the reconcile flow `flow` once: reads both sides, matches, records the variances as
/// dead letters (idempotently) and sets the metrics.
pub async fn run(
    workspace: &Workspace,
    flow: &str,
    store: &Store,
    options: &RunOptions,
) -> Result<Outcome, ReconcileError> {
    let Some(reconciliation) = workspace.reconciliations.get(flow) else {
        let hint = if workspace.flows.contains_key(flow) {
            format!("; \"{flow}\" is a flow without `reconcile:`, run it with `switchyard run`")
        } else if workspace.reconciliations.is_empty() {
            "; no flow declares `reconcile:`".to_owned()
        } else {
            let names: Vec<&str> = workspace
                .reconciliations
                .keys()
                .map(String::as_str)
                .collect();
            format!("; reconcile flows: {}", names.join(", "))
        };
        return Err(ReconcileError::UnknownFlow {
            flow: flow.to_owned(),
            hint,
        });
    };
    let started = std::time::Instant::now();
    let matcher = Matcher::new(reconciliation.plan.clone(), options.cycle.clone());
    let mut matcher = read::read_side(
        &reconciliation.ledger,
        Side::Ledger,
        &workspace.root,
        store,
        flow,
        matcher,
    )
    .await?;
    matcher.ledger_done();
    let matcher = read::read_side(
        &reconciliation.statement,
        Side::Statement,
        &workspace.root,
        store,
        flow,
        matcher,
    )
    .await?;
    let matched = tokio::task::spawn_blocking(move || matcher.finish())
        .await
        .map_err(ReadError::from)?
        .map_err(ReadError::from)?;
    conclude(reconciliation, flow, store, options, matched, started).await
}

/// Runs a reconcile flow on records given in memory instead of its sources: what a flow
/// test does (`input` the statement, `ledger` the ledger lines).
pub async fn run_records(
    workspace: &Workspace,
    flow: &str,
    store: &Store,
    statement: &[serde_json::Value],
    ledger: &[serde_json::Value],
    options: &RunOptions,
) -> Result<Outcome, ReconcileError> {
    let Some(reconciliation) = workspace.reconciliations.get(flow) else {
        return Err(ReconcileError::UnknownFlow {
            flow: flow.to_owned(),
            hint: String::new(),
        });
    };
    let started = std::time::Instant::now();
    let mut matcher = Matcher::new(reconciliation.plan.clone(), options.cycle.clone());
    read::add_values(&mut matcher, Side::Ledger, ledger)?;
    matcher.ledger_done();
    read::add_values(&mut matcher, Side::Statement, statement)?;
    let matched = matcher.finish().map_err(ReadError::from)?;
    conclude(reconciliation, flow, store, options, matched, started).await
}

/// Records a run's variances as dead letters and its cycles' progress towards closing (in
/// the flow's checkpoint), and sets the metrics.
async fn conclude(
    reconciliation: &Reconciliation,
    flow: &str,
    store: &Store,
    options: &RunOptions,
    matched: Matched,
    started: std::time::Instant,
) -> Result<Outcome, ReconcileError> {
    let now = jiff::Timestamp::now();
    let mut book = store
        .checkpoint(flow)
        .await?
        .map(|checkpoint| CycleBook::from_position(&checkpoint.position))
        .unwrap_or_default();
    let ends = matched
        .cycle_dates
        .iter()
        .map(|(cycle, &(_, end))| (cycle.clone(), end))
        .collect();
    let changed = book.update(&report::cycles_tied(&matched), &ends, now);
    let position = book.to_position(now);
    let letters = letters::record(
        store,
        reconciliation,
        &matched,
        options.cycle.as_deref(),
        &position,
    )
    .await?;
    if changed && letters.created == 0 {
        store
            .commit(CommitBatch {
                flow: flow.to_owned(),
                checkpoint: Checkpoint {
                    position,
                    sink_state: serde_json::Value::Null,
                },
                ..CommitBatch::default()
            })
            .await?;
    }
    if let Some(metrics) = &options.metrics {
        report::set_metrics(metrics, flow, &matched, options.cycle.is_none(), now);
        book.set_metrics(metrics, flow, now);
    }
    tracing::info!(
        flow = %flow, statement_lines = matched.statement_lines,
        ledger_lines = matched.ledger_lines, variances = matched.variances.len(),
        dead_letters_new = letters.created, dead_letters_resolved = letters.resolved,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Reconciliation finished."
    );
    Ok(Outcome {
        flow: flow.to_owned(),
        cycle: options.cycle.clone(),
        matched,
        letters,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rates;
