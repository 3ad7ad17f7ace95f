//! Dead letters in SQLite. The original is kept byte for byte: `record` holds it as text,
//! which is exact whenever it is UTF-8; an original that is not UTF-8 is also kept whole in
//! `record_raw`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Db, audit};
use crate::store::dead_letters::DEAD_LETTER_COLUMNS as COLUMNS;
use crate::store::{
    DeadLetter, DeadLetterFilter, DeadLetterStatus, NewDeadLetter, Original, RecordTruncation,
    Resolution, StoreError, now_rfc3339,
};

/// Resolves an open dead letter of `flow` inside a batch's transaction, with its audit
/// entry; `false` (nothing changed) when it is not open.
pub(super) fn resolve_open(
    conn: &Connection,
    resolution: &Resolution,
    flow: &str,
    now: &str,
) -> rusqlite::Result<bool> {
    let resolved = conn
        .query_row(
            "UPDATE dead_letters SET status = ?2, resolved_by = ?3, note = ?4, updated_at = ?5
             WHERE id = ?1 AND flow = ?6 AND status = 'open'
             RETURNING failure, record_key",
            params![
                resolution.id,
                resolution.status.as_str(),
                resolution.actor,
                resolution.note,
                now,
                flow
            ],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
        )
        .optional()?;
    let Some((failure, record_key)) = resolved else {
        return Ok(false);
    };
    let detail = serde_json::json!({
        "dead_letter": resolution.id, "failure": failure,
        "record_key": record_key, "note": resolution.note,
    });
    audit(
        conn,
        Some(flow),
        resolution.status.audit_action(),
        &resolution.actor,
        &detail,
        now,
    )?;
    Ok(true)
}

pub(super) fn insert(
    conn: &Connection,
    letter: &NewDeadLetter,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (flow, object, record_key, idempotency_key, failure, reason,
           error, attempts, owner, action, record, created_at, updated_at, record_raw, line,
           record_original_bytes, record_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        letter.flow,
        letter.object,
        letter.record_key,
        letter.idempotency_key,
        letter.failure,
        letter.reason,
        letter.error,
        letter.attempts,
        letter.owner,
        letter.action,
        letter.record.to_text_lossy(),
        now,
        // The text column is exact for UTF-8; only other originals need their bytes apart.
        letter
            .record
            .as_str()
            .is_none()
            .then(|| letter.record.as_bytes()),
        letter.line.map(|line| line as i64),
        letter
            .record_truncated
            .as_ref()
            .map(RecordTruncation::stored_bytes),
        letter.record_truncated.as_ref().map(|t| &t.sha256),
    ])?;
    Ok(conn.last_insert_rowid())
}

impl Db {
    /// Lists dead letters, oldest first.
    pub(super) fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters
             WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR failure = ?2)
               AND (?3 IS NULL OR status = ?3)
             ORDER BY id LIMIT ?4"
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let rows = stmt
            .query_map(
                params![
                    filter.flow,
                    filter.failure,
                    filter.status.map(|s| s.as_str()),
                    limit
                ],
                read_row,
            )
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// One dead letter.
    pub(super) fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?1"),
            params![id],
            read_row,
        )
        .optional()
        .map_err(|e| self.sqlite(e))?
        .ok_or(StoreError::NoSuchDeadLetter(id))
    }

    /// Marks a dead letter resolved (replayed or suppressed) and audits who did it and why.
    pub(super) fn resolve_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        let letter = self.dead_letter(id)?;
        let now = now_rfc3339();
        let conn = self.conn();
        conn.execute(
            "UPDATE dead_letters SET status = ?2, resolved_by = ?3, note = ?4, updated_at = ?5
             WHERE id = ?1",
            params![id, status.as_str(), actor, note, now],
        )
        .map_err(|e| self.sqlite(e))?;
        let action = status.audit_action();
        let detail = serde_json::json!({
            "dead_letter": id, "failure": letter.letter.failure,
            "record_key": letter.letter.record_key, "note": note,
        });
        audit(
            &conn,
            Some(&letter.letter.flow),
            action,
            actor,
            &detail,
            &now,
        )
        .map_err(|e| self.sqlite(e))
    }

    /// Records a replay attempt that failed again, keeping the letter open.
    pub(super) fn note_failed_replay(
        &self,
        id: i64,
        actor: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let letter = self.dead_letter(id)?;
        let now = now_rfc3339();
        let conn = self.conn();
        conn.execute(
            "UPDATE dead_letters SET attempts = attempts + 1, note = ?2, updated_at = ?3
             WHERE id = ?1",
            params![id, format!("replay failed: {error}"), now],
        )
        .map_err(|e| self.sqlite(e))?;
        let detail = serde_json::json!({"dead_letter": id, "error": error});
        audit(
            &conn,
            Some(&letter.letter.flow),
            "dead-letter-replay-failed",
            actor,
            &detail,
            &now,
        )
        .map_err(|e| self.sqlite(e))
    }
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get(0)?,
        letter: NewDeadLetter {
            flow: row.get(1)?,
            object: row.get(2)?,
            record_key: row.get(3)?,
            idempotency_key: row.get(4)?,
            failure: row.get(5)?,
            reason: row.get(6)?,
            error: row.get(7)?,
            attempts: row.get(8)?,
            owner: row.get(9)?,
            action: row.get(10)?,
            record: match row.get::<_, Option<Vec<u8>>>(17)? {
                Some(bytes) => Original::new(bytes),
                None => Original::from(row.get::<_, String>(11)?),
            },
            line: row
                .get::<_, Option<i64>>(18)?
                .map(|line| line.max(0) as u64),
            record_truncated: RecordTruncation::from_columns(row.get(19)?, row.get(20)?),
        },
        status: DeadLetterStatus::parse(&row.get::<_, String>(12)?),
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        resolved_by: row.get(15)?,
        note: row.get(16)?,
    })
}
