//! Replaying a dead letter through the current spec: the stored original record, byte for
//! byte as it arrived, goes through decoding, contract, ownership and mapping again (the spec
//! may have been fixed since), then one delivery attempt. Duplicate detection is skipped: the letter's key was recorded as
//! processed when it was dead-lettered.

use super::engine::{FlowRun, RunError, RunOptions};
use super::record::{self, Admission, Output};
use crate::connectors::RawRecord;
use crate::spec::model::Workspace;
use crate::store::{DeadLetterStatus, Store};

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Delivered; the letter is marked replayed.
    Delivered,
    /// Still failing; the letter stays open with the new error.
    Failed(String),
    /// The letter was already resolved.
    AlreadyResolved(DeadLetterStatus),
}

/// Replays dead letter `id`, as `actor`.
pub async fn replay(
    workspace: &Workspace,
    store: &Store,
    id: i64,
    actor: &str,
) -> Result<ReplayOutcome, RunError> {
    let letter = store.dead_letter(id).await?;
    if letter.status != DeadLetterStatus::Open {
        return Ok(ReplayOutcome::AlreadyResolved(letter.status));
    }
    if let Some(truncation) = &letter.letter.record_truncated {
        // Replaying the start of a record would deliver a different record.
        let error = format!(
            "the dead letter keeps only the first {} of the original's {} bytes \
             (max_dead_letter_record_size); send the record again from its source \
             (SHA-256 {})",
            crate::spec::describe_size(letter.letter.record.len() as u64),
            truncation.original_bytes,
            truncation.sha256
        );
        store.note_failed_replay(id, actor, &error).await?;
        return Ok(ReplayOutcome::Failed(error));
    }
    let flow_name = letter.letter.flow.clone();
    let flow = workspace
        .flows
        .get(&flow_name)
        .ok_or_else(|| RunError::UnknownFlow {
            name: flow_name.clone(),
            hint: " (the flow of this dead letter is no longer in the workspace)".into(),
        })?;
    let result = if let Some(error) = still_invalid(flow, letter.letter.record.as_bytes()) {
        // The record fails the current spec again: no need to reach any system to say so.
        Err(error)
    } else {
        let options = RunOptions {
            progress: false,
            ..RunOptions::default()
        };
        // The source is not read on replay (and a webhook flow has none to open).
        let source = Some(super::engine::SourceOverride(Vec::new()));
        let run = FlowRun::new(workspace, &flow_name, store.clone(), options, source, None).await?;
        let delivered = run.deliver_stored(letter.letter.record.as_bytes()).await;
        run.close().await;
        delivered?
    };
    match result {
        Ok(()) => {
            store
                .resolve_dead_letter(id, DeadLetterStatus::Replayed, actor, "delivered on replay")
                .await?;
            Ok(ReplayOutcome::Delivered)
        }
        Err(error) => {
            store.note_failed_replay(id, actor, &error).await?;
            Ok(ReplayOutcome::Failed(error))
        }
    }
}

/// Why the stored record still fails the current spec before delivery, if it does.
fn still_invalid(flow: &crate::spec::model::Flow, record: &[u8]) -> Option<String> {
    let prepared = record::prepare(&flow.plan, &RawRecord::Line(record));
    match record::admit(prepared, &mut record::KeySet::default()) {
        Admission::Reject(rejected) => Some(format!(
            "{}: {}",
            rejected.rejection.mode, rejected.rejection.error
        )),
        Admission::Deliver(ready) => match ready.body {
            Output::Legs(legs) => legs.into_iter().find_map(|leg| {
                leg.result
                    .err()
                    .map(|r| format!("{} (leg {}): {}", r.mode, leg.key, r.error))
            }),
            Output::One(_) => None,
        },
        Admission::Duplicate => None,
    }
}
