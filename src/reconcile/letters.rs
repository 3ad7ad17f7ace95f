//! Variances as dead letters: each one a `reconciliation-variance` (a breached rule: an
//! `ownership-violation`) routed to its owner with the runbook, and an alert in the outbox
//! when the owner has a webhook — built by the runtime's own alert builder and committed
//! through the store's batch commit, so a reconciliation alerts exactly as a flow does.
//!
//! Rerunning must not repeat a letter: each variance has an idempotency key (flow, cycle,
//! kind, reference) whose hash goes into the flow's processed keys in the same transaction
//! as the letter. A later run that no longer finds a variance (the ledger was corrected)
//! resolves its open letter, audited, with a note saying so.

use std::collections::HashSet;

use super::matcher::{Matched, Variance};
use super::plan::Reconciliation;
use crate::spec::model::{FailureMode, FailureRoute};
use crate::store::{
    Checkpoint, CommitBatch, DeadLetterFilter, DeadLetterStatus, NewDeadLetter, Original, Store,
    StoreError, key_hash,
};

/// Dead letters per commit (one transaction each).
const CHUNK: usize = 500;

/// The actor named in the audit trail for letters the reconciliation resolves.
const ACTOR: &str = "reconcile";

/// What a run did to the dead letters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LetterCounts {
    /// New dead letters.
    pub created: u64,
    /// Variances that already had a dead letter from an earlier run.
    pub already: u64,
    /// Open letters resolved because their variance is gone.
    pub resolved: u64,
}

/// The idempotency key of a variance's dead letter.
pub fn idempotency_key(flow: &str, variance: &Variance) -> String {
    format!(
        "{flow}:{}:{}:{}",
        variance.billing_cycle_id,
        variance.kind.as_str(),
        variance.reference()
    )
}

fn route(reconciliation: &Reconciliation, mode: FailureMode) -> FailureRoute {
    reconciliation
        .failures
        .get(&mode)
        .cloned()
        .unwrap_or(FailureRoute {
            owner: "unowned".into(),
            action: None,
            runbook: None,
            escalate: None,
        })
}

/// Records `matched`'s variances as dead letters (those not recorded before) and resolves
/// open ones whose variance is gone (only of `cycle`, when the run was limited to it).
pub(crate) async fn record(
    store: &Store,
    reconciliation: &Reconciliation,
    matched: &Matched,
    cycle: Option<&str>,
    position: &serde_json::Value,
) -> Result<LetterCounts, StoreError> {
    let flow = &reconciliation.name;
    let mut counts = LetterCounts::default();
    let mut processed: HashSet<u64> = HashSet::new();
    store.load_processed_keys(flow, &mut processed).await?;
    let mut current = HashSet::new();
    let mut pending = Vec::new();
    for variance in &matched.variances {
        let key = idempotency_key(flow, variance);
        let hash = key_hash(&key);
        current.insert(key.clone());
        if !processed.insert(hash) {
            counts.already += 1;
            continue;
        }
        let mode = variance.kind.failure();
        let route = route(reconciliation, mode);
        let letter = NewDeadLetter {
            flow: flow.clone(),
            object: reconciliation.object.clone(),
            record_key: Some(variance.reference().to_owned()),
            idempotency_key: Some(key),
            failure: mode.as_str().to_owned(),
            reason: variance.kind.as_str().to_owned(),
            error: format!(
                "{} {} {}: {}",
                variance.billing_cycle_id,
                variance.currency,
                variance.kind.as_str(),
                variance.detail
            ),
            attempts: 0,
            owner: route.owner.clone(),
            action: route
                .action
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            record: Original::from(serde_json::to_string(variance).unwrap_or_default()),
            line: Some(variance.line),
            record_truncated: None,
        };
        let alert =
            crate::runtime::engine::alert_for(&reconciliation.alert_urls, Some(route), &letter);
        pending.push((hash, letter, alert));
    }
    for chunk in pending.chunks(CHUNK) {
        let batch = CommitBatch {
            flow: flow.clone(),
            checkpoint: Checkpoint {
                position: position.clone(),
                sink_state: serde_json::Value::Null,
            },
            processed_keys: chunk.iter().map(|(hash, _, _)| *hash).collect(),
            dead_letters: chunk
                .iter()
                .map(|(_, letter, alert)| (letter.clone(), alert.clone()))
                .collect(),
            ..CommitBatch::default()
        };
        store.commit(batch).await?;
        counts.created += chunk.len() as u64;
    }
    let open = store
        .dead_letters(&DeadLetterFilter {
            flow: Some(flow.clone()),
            status: Some(DeadLetterStatus::Open),
            ..DeadLetterFilter::default()
        })
        .await?;
    for letter in open {
        let Some(key) = &letter.letter.idempotency_key else {
            continue;
        };
        if current.contains(key) || letter.letter.reason == "unreadable" {
            continue;
        }
        let letter_cycle = letter
            .letter
            .record
            .as_str()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|v| v.get("billing_cycle_id")?.as_str().map(str::to_owned));
        if cycle.is_some_and(|c| letter_cycle.as_deref() != Some(c)) {
            continue;
        }
        store
            .resolve_dead_letter(
                letter.id,
                DeadLetterStatus::Resolved,
                ACTOR,
                "variance gone: a later reconciliation found the statement and the ledger in agreement",
            )
            .await?;
        counts.resolved += 1;
    }
    Ok(counts)
}
