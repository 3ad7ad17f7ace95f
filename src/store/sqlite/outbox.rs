//! The alert outbox: alerts are written in the same transaction as the dead letter they
//! announce, then delivered by a background task with retries. A slow or broken alert
//! webhook therefore never blocks a flow, and an alert is never lost to a crash.

use rusqlite::{Connection, params};

use super::Db;
use crate::store::{ALERT_CLAIM, OutboxAlert, PendingAlert, StoreError, now_rfc3339};

pub(super) fn insert(
    conn: &Connection,
    alert: &OutboxAlert,
    dead_letter_id: Option<i64>,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO alert_outbox (owner, url, payload, dead_letter_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        alert.owner,
        alert.url,
        alert.payload_text(dead_letter_id),
        dead_letter_id,
        now
    ])
    .map(drop)
}

impl Db {
    /// Queues an alert outside a batch (for example a deadline warning).
    pub(super) fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError> {
        let conn = self.conn();
        insert(&conn, alert, None, &now_rfc3339()).map_err(|e| self.sqlite(e))
    }

    /// Alerts due for an attempt at `now_ms`, oldest first.
    pub(super) fn due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        let conn = self.conn();
        let rows = select_due(&conn, now_ms, limit).map_err(|e| self.sqlite(e))?;
        self.pending(rows)
    }

    /// Claims the alerts due at `now_ms` for one sender: they are not due again for anyone
    /// until [`ALERT_CLAIM`] has passed, so two processes sharing a state file (a `run`
    /// beside the daemon) do not both post the same alert. A sender that dies with a claim
    /// only delays its alerts by the claim.
    pub(super) fn claim_due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        let mut conn = self.conn();
        let claimed = (|| -> rusqlite::Result<Vec<Row>> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows = select_due(&tx, now_ms, limit)?;
            for row in &rows {
                tx.prepare_cached("UPDATE alert_outbox SET next_attempt_ms = ?2 WHERE id = ?1")?
                    .execute(params![row.0, now_ms + ALERT_CLAIM.as_millis() as i64])?;
            }
            tx.commit()?;
            Ok(rows)
        })()
        .map_err(|e| self.sqlite(e))?;
        self.pending(claimed)
    }

    fn pending(&self, rows: Vec<Row>) -> Result<Vec<PendingAlert>, StoreError> {
        rows.into_iter()
            .map(|(id, owner, url, payload, attempts)| {
                Ok(PendingAlert {
                    id,
                    alert: OutboxAlert {
                        owner,
                        url,
                        payload: self.json(&payload)?,
                    },
                    attempts,
                })
            })
            .collect()
    }

    /// Number of alerts not delivered yet.
    pub(super) fn undelivered_alerts(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM alert_outbox WHERE delivered_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.sqlite(e))
    }

    /// Marks an alert delivered.
    pub(super) fn alert_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE alert_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, now_rfc3339()],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Records a failed delivery and when to try again.
    pub(super) fn alert_failed(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_ms = ?2,
                   last_error = ?3 WHERE id = ?1",
                params![id, next_attempt_ms, error],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }
}

/// An outbox row: id, owner, url, payload, attempts.
type Row = (i64, String, String, String, u32);

fn select_due(conn: &Connection, now_ms: i64, limit: usize) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, owner, url, payload, attempts FROM alert_outbox
         WHERE delivered_at IS NULL AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2",
    )?;
    stmt.query_map(params![now_ms, limit as i64], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    })?
    .collect()
}
