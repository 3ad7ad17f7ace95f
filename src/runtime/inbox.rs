//! Reading webhook inbox events as records, and dead-lettering the events that cannot be read.
//!
//! Intake refuses a body that is not a JSON object or an array of objects, but an event stored
//! by an older version, restored from a backup or repaired by hand may still be unreadable.
//! Such an event becomes a `contract-violation` dead letter holding its body byte for byte,
//! routed and alerted like any other, in the transaction that marks it processed: it is never
//! skipped, and it never blocks the events behind it.

use serde_json::Value;

use super::engine::{RunError, build_alert, build_dead_letter};
use super::record::{Rejected, Rejection};
use crate::spec::model::{FailureMode, Workspace};
use crate::store::{InboxEvent, NewDeadLetter, Original, Store};

/// Why an inbox event's body cannot be read as records.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableEvent {
    /// The body is not UTF-8.
    #[error("the body is not UTF-8 (bad byte at offset {0})")]
    NotUtf8(usize),
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body is JSON, but neither an object nor an array of objects.
    #[error("the body is JSON but neither an object nor an array of objects")]
    NotObjects,
}

/// The records of an event body: the object, or each object of an array.
pub fn event_records(body: &[u8]) -> Result<Vec<Value>, UnreadableEvent> {
    let text =
        std::str::from_utf8(body).map_err(|err| UnreadableEvent::NotUtf8(err.valid_up_to()))?;
    match serde_json::from_str::<Value>(text).map_err(UnreadableEvent::NotJson)? {
        object @ Value::Object(_) => Ok(vec![object]),
        Value::Array(items) if items.iter().all(Value::is_object) => Ok(items),
        _ => Err(UnreadableEvent::NotObjects),
    }
}

/// Dead-letters unreadable events of flow `flow`: one `contract-violation` dead letter each
/// (reason `malformed_json`, the body as its original), routed to that mode's owner with an
/// alert, stored in the transaction that marks the event processed. Returns the letters
/// stored (an event another runner settled meanwhile is skipped).
pub async fn dead_letter_unreadable(
    workspace: &Workspace,
    flow: &str,
    store: &Store,
    events: &[(&InboxEvent, UnreadableEvent)],
) -> Result<Vec<NewDeadLetter>, RunError> {
    let spec = workspace
        .flows
        .get(flow)
        .ok_or_else(|| RunError::UnknownFlow {
            name: flow.to_owned(),
            hint: String::new(),
        })?;
    let plan = &spec.plan;
    let letters: Vec<_> = events
        .iter()
        .map(|(event, why)| {
            let rejected = Rejected {
                record_key: None,
                idempotency_key: None,
                rejection: Rejection {
                    mode: FailureMode::ContractViolation,
                    reason: "malformed_json".into(),
                    error: format!("webhook event `{}` cannot be read: {why}", event.event_id),
                },
            };
            let original = Original::new(event.body.clone());
            let letter = build_dead_letter(plan, &rejected, 0, original, None);
            let alert = build_alert(plan, &letter);
            (event.id, letter, alert)
        })
        .collect();
    let ids = store.inbox_dead_letter(flow, &letters).await?;
    // The store skips events no longer pending; report only what it stored.
    Ok(letters
        .into_iter()
        .zip(ids)
        .filter_map(|((_, letter, _), id)| id.map(|_| letter))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_an_object_or_an_array_of_objects() {
        assert_eq!(event_records(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(event_records(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert!(matches!(
            event_records(b"[1]"),
            Err(UnreadableEvent::NotObjects)
        ));
        assert!(matches!(
            event_records(b"{nope"),
            Err(UnreadableEvent::NotJson(_))
        ));
        assert!(matches!(
            event_records(b"{\"a\":\"\xff\"}"),
            Err(UnreadableEvent::NotUtf8(6))
        ));
    }
}
