//! Reading a flow's pending inbox events as batches, and marking them processed once
//! committed.
//!
//! Intake refuses a body that is not a JSON object or an array of objects, but an event stored
//! by an older version, restored from a backup or repaired by hand may still be unreadable.
//! Such an event is handed to the runtime as a malformed record holding its body byte for
//! byte, so it becomes a `contract-violation` dead letter routed and alerted like any other:
//! it is never skipped, and it never blocks the events behind it.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::connectors::{
    Batch, BatchRecords, ConnectorError, Malformed, Row, Source, source_unavailable,
};
use crate::store::Store;

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

/// A flow's pending inbox events, oldest first.
pub(super) struct WebhookSource {
    store: Store,
    flow: String,
    /// JSON Pointer to the record(s) inside an event; empty: the event itself.
    records: String,
    /// Events handed out in this run and not committed yet: still pending in the store, so
    /// later reads skip them (a batch left unsettled is read again by the next run).
    outstanding: BTreeSet<i64>,
}

impl WebhookSource {
    pub(super) fn new(store: Store, flow: &str, records: String) -> Self {
        Self {
            store,
            flow: flow.to_owned(),
            records,
            outstanding: BTreeSet::new(),
        }
    }

    /// The rows of one event: its records, or the event itself as a malformed row.
    fn rows(&self, event_id: &str, body: &[u8], rows: &mut Vec<Row>) {
        match event_records(body) {
            Ok(items) => {
                for item in items {
                    // An event may wrap its record (`{"event_id": .., "order": {..}}`): the
                    // `records` pointer picks it out, as in an HTTP listing.
                    let picked = match item.pointer(&self.records) {
                        Some(Value::Array(items)) => items.clone(),
                        Some(record) => vec![record.clone()],
                        None => vec![item],
                    };
                    rows.extend(picked.into_iter().map(|record| Row {
                        line: 0,
                        record: Ok(record),
                    }));
                }
            }
            Err(why) => rows.push(Row {
                line: 0,
                record: Err(Malformed {
                    bytes: body.to_vec(),
                    error: format!("webhook event `{event_id}` cannot be read: {why}"),
                    reason: "malformed_json",
                }),
            }),
        }
    }
}

#[async_trait]
impl Source for WebhookSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        let wanted = max_records.max(1);
        let events = self
            .store
            .inbox_pending(&self.flow, self.outstanding.len() + wanted)
            .await
            .map_err(source_unavailable)?;
        let events: Vec<_> = events
            .into_iter()
            .filter(|event| !self.outstanding.contains(&event.id))
            .take(wanted)
            .collect();
        if events.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for event in &events {
            self.rows(&event.event_id, &event.body, &mut rows);
            ids.push(event.id);
        }
        self.outstanding.extend(ids.iter().copied());
        Ok(Some(Batch {
            records: BatchRecords::Rows(rows),
            // The events of this batch: marked processed once it is committed.
            position: json!({ "inbox": ids }),
        }))
    }

    async fn committed(&mut self, position: &Value) -> Result<(), ConnectorError> {
        let ids: Vec<i64> = position
            .get("inbox")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(());
        }
        // The batch is committed: were this to fail, its events are read again and their
        // records found processed (duplicates, not deliveries).
        self.store.inbox_processed(&ids).await.map_err(|err| {
            ConnectorError::internal(format!("marking inbox events processed: {err}"))
        })?;
        for id in &ids {
            self.outstanding.remove(id);
        }
        Ok(())
    }
}
