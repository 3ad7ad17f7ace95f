//! The alert outbox: alerts are written in the same transaction as the dead letter they
//! announce, then delivered by a background task with retries. A slow or broken alert
//! webhook therefore never blocks a flow, and an alert is never lost to a crash.

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{Store, StoreError, now_rfc3339};

/// An alert to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxAlert {
    /// The owner alerted.
    pub owner: String,
    /// The owner's alert webhook.
    pub url: String,
    /// The JSON body.
    pub payload: Value,
}

/// An alert waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAlert {
    /// Outbox ID.
    pub id: i64,
    /// The alert.
    pub alert: OutboxAlert,
    /// Attempts made so far.
    pub attempts: u32,
}

pub(super) fn insert(
    conn: &Connection,
    alert: &OutboxAlert,
    dead_letter_id: Option<i64>,
    now: &str,
) -> rusqlite::Result<()> {
    let mut payload = alert.payload.clone();
    if let (Some(id), Some(object)) = (dead_letter_id, payload.as_object_mut()) {
        object.insert("dead_letter_id".into(), Value::from(id));
    }
    conn.prepare_cached(
        "INSERT INTO alert_outbox (owner, url, payload, dead_letter_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        alert.owner,
        alert.url,
        payload.to_string(),
        dead_letter_id,
        now
    ])
    .map(drop)
}

impl Store {
    /// Queues an alert outside a batch (for example a deadline warning).
    pub fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError> {
        let conn = self.conn();
        insert(&conn, alert, None, &now_rfc3339()).map_err(|e| self.sqlite(e))
    }

    /// Alerts due for an attempt at `now_ms`, oldest first.
    pub fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingAlert>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, owner, url, payload, attempts FROM alert_outbox
                 WHERE delivered_at IS NULL AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![now_ms, limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, u32>(4)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut alerts = Vec::new();
        for row in rows {
            let (id, owner, url, payload, attempts) = row.map_err(|e| self.sqlite(e))?;
            alerts.push(PendingAlert {
                id,
                alert: OutboxAlert {
                    owner,
                    url,
                    payload: self.json(&payload)?,
                },
                attempts,
            });
        }
        Ok(alerts)
    }

    /// Number of alerts not delivered yet.
    pub fn undelivered_alerts(&self) -> Result<u64, StoreError> {
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
    pub fn alert_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE alert_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, now_rfc3339()],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Records a failed delivery and when to try again.
    pub fn alert_failed(
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
