//! Dead letters: records that could not be delivered, with their failure mode, owner and the
//! original record, and what operators did about them.
//!
//! The original is kept byte for byte: `record` holds it as text, which is exact whenever it
//! is UTF-8; an original that is not UTF-8 is also kept whole in `record_raw`, and `record`
//! then holds a readable copy with U+FFFD in place of the bad bytes. Replay and export read
//! the exact bytes.

use std::borrow::Cow;

use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::{Store, StoreError, audit, now_rfc3339};

/// A dead letter about to be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDeadLetter {
    /// The flow.
    pub flow: String,
    /// The business object.
    pub object: String,
    /// The record's identity key (`shop_id:offer_id`), when it could be read.
    pub record_key: Option<String>,
    /// The record's idempotency key, when it could be rendered.
    pub idempotency_key: Option<String>,
    /// The failure mode (`contract-violation`, ...).
    pub failure: String,
    /// A short machine reason (`missing_price`).
    pub reason: String,
    /// The error, for people.
    pub error: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The owner it is routed to.
    pub owner: String,
    /// The owner's action.
    pub action: Option<String>,
    /// The original record as received (JSON text, or the raw line or row when it could not
    /// be decoded), byte for byte; only its start when `record_truncated` says so.
    #[serde(flatten)]
    pub record: Original,
    /// The line of the source file the record starts on, when it came from a file.
    pub line: Option<u64>,
    /// Set when `record` keeps only the start of an original longer than the workspace's
    /// `max_dead_letter_record_size`.
    pub record_truncated: Option<RecordTruncation>,
}

/// A dead letter's original record, exactly as it arrived.
///
/// Serialised as `record` (the text; with U+FFFD for bytes that are not UTF-8) and, only when
/// the original is not UTF-8, `record_base64` (the exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Original(Vec<u8>);

impl Original {
    /// The original from its bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The original as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The original as text for display: exact when it is UTF-8, else with U+FFFD in place
    /// of the bytes that are not.
    pub fn to_text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The exact bytes in base64, the form JSON output carries an original that is not UTF-8.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Original {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Original {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Original {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl Serialize for Original {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self.as_str() {
            Some(text) => map.serialize_entry("record", text)?,
            None => {
                map.serialize_entry("record", &self.to_text_lossy())?;
                map.serialize_entry("record_base64", &self.to_base64())?;
            }
        }
        map.end()
    }
}

/// What a dead letter knows of an original record it kept only the start of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordTruncation {
    /// The original's full length in bytes.
    pub original_bytes: u64,
    /// SHA-256 of the full original, hex: identifies it for whoever still has it.
    pub sha256: String,
}

/// What has become of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatus {
    /// Waiting for its owner.
    Open,
    /// Replayed and delivered.
    Replayed,
    /// Accepted as undeliverable, with a reason.
    Suppressed,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its ID.
    pub id: i64,
    /// Everything stored with it.
    #[serde(flatten)]
    pub letter: NewDeadLetter,
    /// Its status.
    pub status: DeadLetterStatus,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// Why (suppression reason or replay outcome).
    pub note: Option<String>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this failure mode.
    pub failure: Option<String>,
    /// Only this status (default: all).
    pub status: Option<DeadLetterStatus>,
    /// At most this many (default: all).
    pub limit: Option<usize>,
}

const COLUMNS: &str = "id, flow, object, record_key, idempotency_key, failure, reason, error, \
                       attempts, owner, action, record, status, created_at, updated_at, \
                       resolved_by, note, record_raw, line, record_original_bytes,
                       record_sha256";

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
            .map(|t| i64::try_from(t.original_bytes).unwrap_or(i64::MAX)),
        letter.record_truncated.as_ref().map(|t| &t.sha256),
    ])?;
    Ok(conn.last_insert_rowid())
}

impl DeadLetterStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Suppressed => "suppressed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "replayed" => DeadLetterStatus::Replayed,
            "suppressed" => DeadLetterStatus::Suppressed,
            _ => DeadLetterStatus::Open,
        }
    }
}

impl Store {
    /// Lists dead letters, oldest first.
    pub fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, StoreError> {
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
    pub fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError> {
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
    pub fn resolve_dead_letter(
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
        let action = match status {
            DeadLetterStatus::Replayed => "dead-letter-replayed",
            DeadLetterStatus::Suppressed => "dead-letter-suppressed",
            DeadLetterStatus::Open => "dead-letter-reopened",
        };
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
    pub fn note_failed_replay(&self, id: i64, actor: &str, error: &str) -> Result<(), StoreError> {
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
            record_truncated: match (row.get::<_, Option<i64>>(19)?, row.get(20)?) {
                (Some(bytes), Some(sha256)) => Some(RecordTruncation {
                    original_bytes: u64::try_from(bytes).unwrap_or_default(),
                    sha256,
                }),
                _ => None,
            },
        },
        status: DeadLetterStatus::parse(&row.get::<_, String>(12)?),
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        resolved_by: row.get(15)?,
        note: row.get(16)?,
    })
}
