//! The webhook inbox: each authenticated event is stored here, keyed by flow and the sender's
//! event ID, before the sender gets its 2xx; the flow's runner claims pending events in
//! arrival order and marks them processed only after the run that consumed them committed.
//! A redelivered event ID is recognised here and never stored twice. An event the flow cannot
//! read is dead-lettered in the transaction that marks it processed.

use rusqlite::params;
use rusqlite::types::ValueRef;

use super::{Db, audit, dead_letters};
use crate::store::{InboxEvent, InboxInsert, NewDeadLetter, OutboxAlert, StoreError, now_rfc3339};

impl Db {
    /// Stores an event durably (the file is opened with `synchronous=FULL`), unless the same
    /// event ID was already received for this flow.
    pub(super) fn inbox_insert(
        &self,
        flow: &str,
        event_id: &str,
        body: &str,
    ) -> Result<InboxInsert, StoreError> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO inbox (flow, event_id, received_at, body)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| stmt.execute(params![flow, event_id, now_rfc3339(), body]))
            .map_err(|e| self.sqlite(e))?;
        Ok(if changed == 0 {
            InboxInsert::Duplicate
        } else {
            InboxInsert::Stored(conn.last_insert_rowid())
        })
    }

    /// Up to `limit` pending events of a flow, oldest first.
    pub(super) fn inbox_pending(
        &self,
        flow: &str,
        limit: usize,
    ) -> Result<Vec<InboxEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, event_id, body, attempts FROM inbox
                 WHERE flow = ?1 AND status = 'pending' ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![flow, limit as i64], |row| {
                let body = match row.get_ref(2)? {
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.to_vec(),
                    _ => Vec::new(),
                };
                Ok(InboxEvent {
                    id: row.get(0)?,
                    event_id: row.get(1)?,
                    body,
                    attempts: row.get(3)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))
    }

    /// Marks events processed (after the run that consumed them committed).
    pub(super) fn inbox_processed(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let now = now_rfc3339();
        for id in ids {
            tx.execute(
                "UPDATE inbox SET status = 'processed', processed_at = ?2, attempts = attempts + 1
                 WHERE id = ?1",
                params![id, now],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))
    }

    /// Dead-letters events the flow cannot read, each `(inbox ID, dead letter, alert)`, and
    /// marks them processed, all in one transaction: an event is never marked processed
    /// without its dead letter. An event no longer pending is left alone, so it is never
    /// dead-lettered twice. Returns the ID of each new dead letter, in the order given
    /// (`None` for an event that was no longer pending).
    pub(super) fn inbox_dead_letter(
        &self,
        flow: &str,
        letters: &[(i64, NewDeadLetter, Option<OutboxAlert>)],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let now = now_rfc3339();
        let mut ids = Vec::with_capacity(letters.len());
        for (event, letter, alert) in letters {
            let claimed = tx
                .execute(
                    "UPDATE inbox SET status = 'processed', processed_at = ?2,
                       attempts = attempts + 1, last_error = ?3
                     WHERE id = ?1 AND status = 'pending'",
                    params![event, now, letter.error],
                )
                .map_err(|e| self.sqlite(e))?;
            if claimed == 0 {
                ids.push(None);
                continue;
            }
            let id = dead_letters::insert(&tx, letter, &now).map_err(|e| self.sqlite(e))?;
            if let Some(alert) = alert {
                super::outbox::insert(&tx, alert, Some(id), &now).map_err(|e| self.sqlite(e))?;
            }
            let detail = serde_json::json!({"inbox_id": event, "dead_letter": id});
            audit(
                &tx,
                Some(flow),
                "inbox-event-dead-lettered",
                "runtime",
                &detail,
                &now,
            )
            .map_err(|e| self.sqlite(e))?;
            ids.push(Some(id));
        }
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(ids)
    }

    /// Records a failed attempt at processing events; they stay pending for the next attempt.
    pub(super) fn inbox_failed(&self, ids: &[i64], error: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        for id in ids {
            tx.execute(
                "UPDATE inbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))
    }

    /// Number of inbox rows of a flow in each status, for tests and the admin API.
    pub(super) fn inbox_count(&self, flow: &str, status: &str) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM inbox WHERE flow = ?1 AND status = ?2",
                params![flow, status],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.sqlite(e))
    }

    /// Open dead letters counted by flow, failure mode and owner (a bounded set), for the
    /// `switchyard_dead_letters_open` gauge.
    pub(super) fn open_dead_letter_counts(
        &self,
    ) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT flow, failure, owner, COUNT(*) FROM dead_letters WHERE status = 'open'
                 GROUP BY flow, failure, owner ORDER BY flow, failure, owner",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get::<_, i64>(3)?.max(0) as u64,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))
    }
}
