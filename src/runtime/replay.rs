//! Replaying a dead letter through the current spec: the stored original record, byte for
//! byte as it arrived, goes through decoding, contract, ownership and mapping again (the spec
//! may have been fixed since), then one delivery attempt. Duplicate detection is skipped: the letter's key was recorded as
//! processed when it was dead-lettered.

use super::engine::{FlowRun, RunError, RunOptions};
use super::record::{self, Admission, Output};
use crate::connectors::RawRecord;
use crate::spec::model::Workspace;
use crate::store::{DeadLetter, DeadLetterStatus, Resolution, Store};

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

/// Replays dead letter `id`, as `actor`. The letter is resolved with the delivery, under
/// the flow's lease (for a batch sink in the same store commit as the write), and its status
/// is checked again once the lease is held: a crash, or two replays at once, never deliver
/// the record twice.
pub async fn replay(
    workspace: &Workspace,
    store: &Store,
    id: i64,
    actor: &str,
) -> Result<ReplayOutcome, RunError> {
    let letter = store.dead_letter(id).await?;
    replay_letter(workspace, store, letter, actor).await
}

/// Replays `letter`, as read before the flow's lease is taken: by the time it is, another
/// replay may have delivered it.
async fn replay_letter(
    workspace: &Workspace,
    store: &Store,
    letter: DeadLetter,
    actor: &str,
) -> Result<ReplayOutcome, RunError> {
    let id = letter.id;
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
        // Again under the flow's lease: another replay may have delivered the letter since
        // the check above, and the lease now keeps any other from starting until this ends.
        match store.dead_letter(id).await {
            Ok(now) if now.status == DeadLetterStatus::Open => {}
            other => {
                run.close().await;
                return match other {
                    Ok(now) => Ok(ReplayOutcome::AlreadyResolved(now.status)),
                    Err(err) => Err(err.into()),
                };
            }
        }
        let resolves = Resolution {
            id,
            status: DeadLetterStatus::Replayed,
            actor: actor.to_owned(),
            note: "delivered on replay".into(),
        };
        let delivered = run
            .deliver_stored(letter.letter.record.as_bytes(), &resolves)
            .await;
        run.close().await;
        delivered?
    };
    match result {
        // Resolved by the delivery itself, under the lease.
        Ok(()) => Ok(ReplayOutcome::Delivered),
        Err(error) => {
            store.note_failed_replay(id, actor, &error).await?;
            Ok(ReplayOutcome::Failed(error))
        }
    }
}

/// Why the stored record still fails the current spec before delivery, if it does.
fn still_invalid(flow: &crate::spec::model::Flow, record: &[u8]) -> Option<String> {
    // What its `enrich:` calls add is not known before they are made: the run decides.
    if !flow.plan.enrichments.is_empty() {
        return None;
    }
    // A replay is judged by the wall clock, as the run that delivers it will be.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let prepared = record::prepare(&flow.plan, &RawRecord::Line(record), now_ms);
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
        Admission::Filtered(condition) => Some(format!(
            "filtered out: the `where:` condition {condition} does not hold"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::runtime::{FlowRun, RunOptions};
    use crate::spec::{EnvLookup, LoadOptions};

    const FLOW: &str = "items";

    /// A file-to-file workspace whose contract refuses an empty name (until `relaxed`).
    fn workspace(root: &Path, relaxed: bool) -> Workspace {
        for dir in ["flows", "contracts", "data"] {
            std::fs::create_dir_all(root.join(dir)).expect("folder");
        }
        let files = [
            (
                "switchyard.yaml",
                "version: 1\nname: replay-test\nmodel: operator\nsystems:\n  \
                 partner: { description: Drops., file: { dir: data } }\n  \
                 feed: { description: Import folder., file: { dir: out } }\n\
                 owners:\n  data-team: { contact: data@example.com }\n\
                 defaults: { failure_owner: data-team }\nobjects:\n  item:\n    \
                 key: [id]\n    contract: contracts/item.json\n    source_of_truth: partner\n    \
                 create: [partner]\n    update: [partner]\n    consume: [feed]\n",
            ),
            (
                "flows/items.yaml",
                "flow: items\ndescription: Items.\nobject: item\npattern: batch\n\
                 latency: next-cycle-enrichment\n\
                 from: { system: partner, path: items.jsonl, format: jsonl }\n\
                 to: { system: feed, path: items.jsonl, format: jsonl }\n\
                 map:\n  id: \"{{id}}\"\n  name: \"{{name}}\"\n",
            ),
            (
                "contracts/item.json",
                if relaxed {
                    r#"{"type": "object", "required": ["id", "name"],
                        "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}"#
                } else {
                    r#"{"type": "object", "required": ["id", "name"],
                        "properties": {"id": {"type": "string"},
                                       "name": {"type": "string", "minLength": 1}}}"#
                },
            ),
            (
                "data/items.jsonl",
                "{\"id\":\"1\",\"name\":\"lamp\"}\n{\"id\":\"2\",\"name\":\"\"}\n",
            ),
        ];
        for (path, text) in files {
            std::fs::write(root.join(path), text).expect("write");
        }
        let options = LoadOptions {
            strict: true,
            env: EnvLookup::empty(),
        };
        let loaded = crate::spec::load_workspace(root, &options);
        loaded
            .workspace
            .unwrap_or_else(|| panic!("workspace: {:?}", loaded.diagnostics))
    }

    fn output_ids(root: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(root.join("out/items.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("json line");
                value["id"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    fn fresh_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("switchyard-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    #[tokio::test]
    async fn a_replay_that_read_the_letter_before_another_delivered_it_writes_nothing() {
        let root = fresh_root("stale");
        let strict = workspace(&root, false);
        let store = Store::open_target(&strict.state).await.expect("store");
        let options = RunOptions {
            progress: false,
            ..RunOptions::default()
        };
        FlowRun::new(&strict, FLOW, store.clone(), options, None, None)
            .await
            .expect("opens")
            .run()
            .await
            .expect("runs");
        assert_eq!(output_ids(&root), ["1"]);
        let letters = store
            .dead_letters(&crate::store::DeadLetterFilter::default())
            .await
            .expect("letters");
        assert_eq!(letters.len(), 1, "{letters:#?}");
        let fixed = workspace(&root, true);
        // Replay B reads the letter (open), then replay A runs from start to end before B
        // takes the flow's lease.
        let stale = store.dead_letter(letters[0].id).await.expect("letter");
        let first = replay(&fixed, &store, stale.id, "alice").await.expect("A");
        assert_eq!(first, ReplayOutcome::Delivered);
        let second = replay_letter(&fixed, &store, stale, "bob")
            .await
            .expect("B");
        assert_eq!(
            second,
            ReplayOutcome::AlreadyResolved(DeadLetterStatus::Replayed)
        );
        assert_eq!(output_ids(&root), ["1", "2"], "the replayed line once");
        let _ = std::fs::remove_dir_all(&root);
    }
}
