//! The SQLite state store: one embedded file, the default.
//!
//! The file is opened in WAL mode with `synchronous=FULL`: a committed batch survives
//! `kill -9` and power loss. Migrations are embedded and applied on open. rusqlite is
//! synchronous, so every operation runs under `spawn_blocking`, with the one connection
//! behind a mutex: SQLite serialises writers anyway, and one connection keeps its prepared
//! statement cache warm.

mod dead_letters;
mod inbox;
mod locks;
mod migrations;
mod outbox;
mod xrefs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::store::{
    AuditEntry, Checkpoint, CommitBatch, CrossReference, DeadLetter, DeadLetterFilter,
    DeadLetterStatus, InboxEvent, InboxInsert, LockHolder, NewDeadLetter, OutboxAlert,
    PendingAlert, RetryState, StateBackend, StoreError, now_rfc3339,
};

/// The SQLite backend of [`crate::store::Store`].
pub struct SqliteBackend {
    db: Arc<Db>,
}

/// The connection and the file it is on; the synchronous operations live on it.
struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteBackend {
    /// Opens the state file, creating it only where no file exists, and applies migrations.
    ///
    /// A file that exists is trusted only if it is a SQLite database that passes a quick
    /// integrity check and carries this program's schema: an empty or damaged state file
    /// silently replaced by a new one would send every record again and re-create every dead
    /// letter and alert. A new file is built aside and linked into place complete, so no
    /// crash or concurrent start can leave a half-initialised one behind.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match std::fs::metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(err) => return Err(io(err)),
            Ok(meta) if meta.len() == 0 => {
                return Err(unusable(
                    path,
                    "is empty (0 bytes)",
                    "If this is a new installation, delete the empty file and start again; \
                     otherwise restore the state file from a backup: starting from an empty \
                     state would send every record again and re-create every dead letter and \
                     alert.",
                ));
            }
            Ok(_) => check_header(path)?,
        }
        // A file cut short or overwritten past its header fails here, in SQLite's words
        // ("database disk image is malformed"): say what that means and how to recover.
        let sqlite = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                damaged(path, &sqlite_reason(&source))
            }
            _ => StoreError::Sqlite {
                path: path.to_owned(),
                source,
            },
        };
        let mut conn = connect_when_free(path).map_err(sqlite)?;
        check_integrity(&conn, path)?;
        migrations::apply(&mut conn).map_err(|err| match err {
            migrations::MigrationError::Sqlite(source) => sqlite(source),
            migrations::MigrationError::Foreign(version) => unusable(
                path,
                &format!("has schema version {version}, which this program does not know"),
                "It was written by a newer Switchyard or is not a Switchyard state file: run \
                 the version that wrote it, or point --state at the right file.",
            ),
        })?;
        Ok(Self::on(conn, path.to_owned()))
    }

    /// Opens a private in-memory store (flow tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(sqlite)?;
        migrations::apply(&mut conn).map_err(|err| match err {
            migrations::MigrationError::Sqlite(source) => sqlite(source),
            migrations::MigrationError::Foreign(version) => StoreError::Corrupt {
                path: path.clone(),
                message: format!("a new database has schema version {version}"),
            },
        })?;
        Ok(Self::on(conn, path))
    }

    fn on(conn: Connection, path: PathBuf) -> Self {
        Self {
            db: Arc::new(Db {
                conn: Mutex::new(conn),
                path,
            }),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Runs `work` on the connection on a blocking thread, never on a tokio worker.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await?
    }
}

impl Db {
    /// The last committed checkpoint of a flow.
    fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT position, sink_state FROM checkpoints WHERE flow = ?1",
                params![flow],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|(position, sink_state)| {
            Ok(Checkpoint {
                position: self.json(&position)?,
                sink_state: self.json(&sink_state)?,
            })
        })
        .transpose()
    }

    /// Every processed key hash of a flow.
    fn processed_keys(&self, flow: &str) -> Result<Vec<u64>, StoreError> {
        let mut keys = Vec::new();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT hashes FROM processed_keys WHERE flow = ?1 ORDER BY id")
            .map_err(|e| self.sqlite(e))?;
        let mut rows = stmt.query(params![flow]).map_err(|e| self.sqlite(e))?;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let blob = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(|e| self.sqlite(e))?;
            let Some(hashes) = crate::store::unpack_keys(blob) else {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    message: format!("processed key log of `{flow}` has a partial entry"),
                });
            };
            keys.extend(hashes);
        }
        Ok(keys)
    }

    /// Commits one batch atomically: checkpoint, processed keys, dead letters, alerts, audit.
    /// Returns the IDs of the new dead letters, in order.
    fn commit(&self, batch: &CommitBatch) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let now = now_rfc3339();
        if let Some(holder) = &batch.lock
            && !locks::refresh(&tx, &batch.flow, holder).map_err(|e| self.sqlite(e))?
        {
            return Err(StoreError::LockLost {
                flow: batch.flow.clone(),
            });
        }
        // `None`: the dead letter the batch resolves is no longer open.
        let ids = (|| -> rusqlite::Result<Option<Vec<i64>>> {
            tx.execute(
                "INSERT INTO checkpoints (flow, position, sink_state, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (flow) DO UPDATE SET position = excluded.position,
                   sink_state = excluded.sink_state, updated_at = excluded.updated_at",
                params![
                    batch.flow,
                    batch.checkpoint.position.to_string(),
                    batch.checkpoint.sink_state.to_string(),
                    now
                ],
            )?;
            if !batch.processed_keys.is_empty() {
                let packed = batch.packed_keys();
                tx.prepare_cached("INSERT INTO processed_keys (flow, hashes) VALUES (?1, ?2)")?
                    .execute(params![batch.flow, packed])?;
            }
            let mut ids = Vec::with_capacity(batch.dead_letters.len());
            for (letter, alert) in &batch.dead_letters {
                let id = dead_letters::insert(&tx, letter, &now)?;
                // Cached: a batch can hold thousands of dead letters.
                tx.prepare_cached(
                    "DELETE FROM retry_state WHERE flow = ?1 AND idempotency_key = ?2",
                )?
                .execute(params![letter.flow, letter.idempotency_key])?;
                if let Some(alert) = alert {
                    outbox::insert(&tx, alert, Some(id), &now)?;
                }
                ids.push(id);
            }
            if let Some(resolution) = &batch.resolves
                && !dead_letters::resolve_open(&tx, resolution, &batch.flow, &now)?
            {
                return Ok(None);
            }
            let detail = batch.audit_detail();
            audit(
                &tx,
                Some(&batch.flow),
                "batch-committed",
                "runtime",
                &detail,
                &now,
            )?;
            Ok(Some(ids))
        })()
        .map_err(|e| self.sqlite(e))?;
        let Some(ids) = ids else {
            // Dropping the transaction rolls it back: nothing of the batch is kept.
            return Err(StoreError::DeadLetterResolved(
                batch.resolves.as_ref().map_or(0, |r| r.id),
            ));
        };
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(ids)
    }

    /// The retry clocks of those of `keys` that have failed before, in one query.
    fn retry_states(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, RetryState>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT idempotency_key, first_failure_ms, attempts FROM retry_state
                 WHERE flow = ?1 AND idempotency_key IN (SELECT value FROM json_each(?2))",
            )
            .map_err(|e| self.sqlite(e))?;
        let keys = serde_json::to_string(keys).map_err(|err| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("retry keys do not encode: {err}"),
        })?;
        let rows = stmt
            .query_map(params![flow, keys], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    RetryState {
                        first_failure_ms: row.get(1)?,
                        attempts: row.get(2)?,
                    },
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Records a failed attempt; the first failure's time is kept.
    fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError> {
        // One statement: the clock read back is the one just written, whatever another task
        // does to the row meanwhile.
        self.conn()
            .query_row(
                "INSERT INTO retry_state (flow, idempotency_key, first_failure_ms, attempts,
                   last_error)
                 VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT (flow, idempotency_key) DO UPDATE SET attempts = attempts + 1,
                   last_error = excluded.last_error
                 RETURNING first_failure_ms, attempts",
                params![flow, key, at_ms, error],
                |row| {
                    Ok(RetryState {
                        first_failure_ms: row.get(0)?,
                        attempts: row.get(1)?,
                    })
                },
            )
            .map_err(|e| self.sqlite(e))
    }

    /// Forgets a record's retry clock (it was delivered).
    fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM retry_state WHERE flow = ?1 AND idempotency_key = ?2",
                params![flow, key],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Appends an audit entry.
    fn audit(
        &self,
        flow: Option<&str>,
        action: &str,
        actor: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        audit(&conn, flow, action, actor, detail, &now_rfc3339()).map_err(|e| self.sqlite(e))
    }

    /// The most recent audit entries, newest first.
    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, at, flow, action, actor, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut entries = Vec::new();
        for row in rows {
            let (id, at, flow, action, actor, detail) = row.map_err(|e| self.sqlite(e))?;
            entries.push(AuditEntry {
                id,
                at,
                flow,
                action,
                actor,
                detail: self.json(&detail)?,
            });
        }
        Ok(entries)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to keep using.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn json(&self, text: &str) -> Result<Value, StoreError> {
        crate::store::parse_stored_json(text, &self.path)
    }
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

fn unusable(path: &Path, problem: &str, fix: &str) -> StoreError {
    StoreError::Unusable {
        path: path.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    }
}

/// [`connect`], waiting while another process holds the file: switching to WAL or recovering
/// a WAL can answer "database is locked" at once, without the busy handler, when several
/// processes open one new state file together. Bounded: after [`OPEN_BUSY_FOR`] the error is
/// returned.
fn connect_when_free(path: &Path) -> rusqlite::Result<Connection> {
    let started = std::time::Instant::now();
    loop {
        match connect(path) {
            Err(err)
                if matches!(
                    err.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && started.elapsed() < OPEN_BUSY_FOR =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// How long opening a state file waits for other processes opening it at the same time.
const OPEN_BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    // No `SQLITE_OPEN_CREATE`: a file that vanished since it was checked is an error here,
    // never a new empty state.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Creates a new state file: built and migrated under a private name, then linked into place
/// in one step. When another process created the file meanwhile, its file is kept.
fn create(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.new-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    for leftover in ["-wal", "-journal"] {
        let companion = PathBuf::from(format!("{}{leftover}", path.display()));
        if companion.exists() {
            return Err(unusable(
                path,
                &format!("is missing but {} is still there", companion.display()),
                "The state file was deleted or moved while its journal stayed: restore the \
                 state file beside it, or remove the journal if the state is really to start \
                 afresh (every record would be sent again).",
            ));
        }
    }
    let build = || -> rusqlite::Result<()> {
        // A rollback journal while it is private: closing leaves one complete file to link
        // into place, with nothing in a WAL to lose. `connect` turns WAL on afterwards.
        let mut conn = Connection::open(&temp)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrations::apply(&mut conn).map_err(|err| match err {
            migrations::MigrationError::Sqlite(e) => e,
            migrations::MigrationError::Foreign(_) => rusqlite::Error::InvalidQuery,
        })?;
        // Closing the only connection checkpoints the WAL into the file.
        conn.close().map_err(|(_, e)| e)
    };
    let built = build().map_err(|source| StoreError::Sqlite {
        path: temp.clone(),
        source,
    });
    let linked = built.and_then(|()| match std::fs::hard_link(&temp, path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io(err)),
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", temp.display()));
    }
    linked?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // The new name must survive a power loss like the data behind it.
        let _ = dir.sync_all();
    }
    Ok(())
}

fn check_header(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut file| file.read(&mut header))
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
    if read < header.len() || &header != SQLITE_HEADER {
        return Err(unusable(
            path,
            "is not a SQLite database (its first bytes are wrong)",
            "Point --state at the right file, or restore the state file from a backup.",
        ));
    }
    Ok(())
}

/// A state file SQLite cannot read past its header, with how to recover it.
fn damaged(path: &Path, detail: &str) -> StoreError {
    unusable(
        path,
        &format!("is damaged ({detail})"),
        "Restore the state file from a backup, or salvage it with \
         `sqlite3 BROKEN.db .recover | sqlite3 RECOVERED.db` and point --state at the \
         result after checking it.",
    )
}

/// SQLite's own words for a failure, once (its error and that error's source repeat them).
fn sqlite_reason(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(_, Some(message)) if !message.is_empty() => message.clone(),
        other => other.to_string(),
    }
}

fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| damaged(path, &detail);
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|err| damaged(err.to_string()))?;
    if problems != ["ok"] {
        return Err(damaged(problems.join("; ")));
    }
    Ok(())
}

fn audit(
    conn: &Connection,
    flow: Option<&str>,
    action: &str,
    actor: &str,
    detail: &Value,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, flow, action, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, flow, action, actor, detail.to_string()])
    .map(drop)
}

#[async_trait::async_trait]
impl StateBackend for SqliteBackend {
    fn describe(&self) -> String {
        self.db.path.display().to_string()
    }

    async fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError> {
        let flow = flow.to_owned();
        self.blocking(move |db| db.checkpoint(&flow)).await
    }

    async fn processed_keys(&self, flow: &str) -> Result<Vec<u64>, StoreError> {
        let flow = flow.to_owned();
        self.blocking(move |db| db.processed_keys(&flow)).await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<Vec<i64>, StoreError> {
        self.blocking(move |db| db.commit(&batch)).await
    }

    async fn retry_states(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, RetryState>, StoreError> {
        let (flow, keys) = (flow.to_owned(), keys.to_vec());
        self.blocking(move |db| db.retry_states(&flow, &keys)).await
    }

    async fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError> {
        let (flow, key, error) = (flow.to_owned(), key.to_owned(), error.to_owned());
        self.blocking(move |db| db.record_failure(&flow, &key, at_ms, &error))
            .await
    }

    async fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError> {
        let (flow, key) = (flow.to_owned(), key.to_owned());
        self.blocking(move |db| db.clear_retry(&flow, &key)).await
    }

    async fn audit(
        &self,
        flow: Option<&str>,
        action: &str,
        actor: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        let (flow, action, actor, detail) = (
            flow.map(str::to_owned),
            action.to_owned(),
            actor.to_owned(),
            detail.clone(),
        );
        self.blocking(move |db| db.audit(flow.as_deref(), &action, &actor, &detail))
            .await
    }

    async fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(move |db| db.audit_trail(limit)).await
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, StoreError> {
        let filter = filter.clone();
        self.blocking(move |db| db.dead_letters(&filter)).await
    }

    async fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError> {
        self.blocking(move |db| db.dead_letter(id)).await
    }

    async fn resolve_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        let (actor, note) = (actor.to_owned(), note.to_owned());
        self.blocking(move |db| db.resolve_dead_letter(id, status, &actor, &note))
            .await
    }

    async fn note_failed_replay(
        &self,
        id: i64,
        actor: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let (actor, error) = (actor.to_owned(), error.to_owned());
        self.blocking(move |db| db.note_failed_replay(id, &actor, &error))
            .await
    }

    async fn open_dead_letter_counts(
        &self,
    ) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        self.blocking(|db| db.open_dead_letter_counts()).await
    }

    async fn inbox_insert(
        &self,
        flow: &str,
        event_id: &str,
        body: &str,
    ) -> Result<InboxInsert, StoreError> {
        let (flow, event_id, body) = (flow.to_owned(), event_id.to_owned(), body.to_owned());
        self.blocking(move |db| db.inbox_insert(&flow, &event_id, &body))
            .await
    }

    async fn inbox_pending(&self, flow: &str, limit: usize) -> Result<Vec<InboxEvent>, StoreError> {
        let flow = flow.to_owned();
        self.blocking(move |db| db.inbox_pending(&flow, limit))
            .await
    }

    async fn inbox_processed(&self, ids: &[i64]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |db| db.inbox_processed(&ids)).await
    }

    async fn inbox_dead_letter(
        &self,
        flow: &str,
        letters: &[(i64, NewDeadLetter, Option<OutboxAlert>)],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let (flow, letters) = (flow.to_owned(), letters.to_vec());
        self.blocking(move |db| db.inbox_dead_letter(&flow, &letters))
            .await
    }

    async fn inbox_failed(&self, ids: &[i64], error: &str) -> Result<(), StoreError> {
        let (ids, error) = (ids.to_vec(), error.to_owned());
        self.blocking(move |db| db.inbox_failed(&ids, &error)).await
    }

    async fn inbox_count(&self, flow: &str, status: &str) -> Result<u64, StoreError> {
        let (flow, status) = (flow.to_owned(), status.to_owned());
        self.blocking(move |db| db.inbox_count(&flow, &status))
            .await
    }

    async fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError> {
        let alert = alert.clone();
        self.blocking(move |db| db.enqueue_alert(&alert)).await
    }

    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingAlert>, StoreError> {
        self.blocking(move |db| db.due_alerts(now_ms, limit)).await
    }

    async fn claim_due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        self.blocking(move |db| db.claim_due_alerts(now_ms, limit))
            .await
    }

    async fn undelivered_alerts(&self) -> Result<u64, StoreError> {
        self.blocking(|db| db.undelivered_alerts()).await
    }

    async fn alert_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.blocking(move |db| db.alert_delivered(id)).await
    }

    async fn alert_failed(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.blocking(move |db| db.alert_failed(id, next_attempt_ms, &error))
            .await
    }

    async fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError> {
        let (xref, flow) = (xref.clone(), flow.to_owned());
        self.blocking(move |db| db.put_xref(&xref, &flow)).await
    }

    async fn xref_key(
        &self,
        object: &str,
        system: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (object, system, external_id) =
            (object.to_owned(), system.to_owned(), external_id.to_owned());
        self.blocking(move |db| db.xref_key(&object, &system, &external_id))
            .await
    }

    async fn xrefs_of(
        &self,
        object: &str,
        record_key: &str,
    ) -> Result<Vec<CrossReference>, StoreError> {
        let (object, record_key) = (object.to_owned(), record_key.to_owned());
        self.blocking(move |db| db.xrefs_of(&object, &record_key))
            .await
    }

    async fn acquire_flow_lock(&self, flow: &str, holder: &LockHolder) -> Result<(), StoreError> {
        let (flow, holder) = (flow.to_owned(), holder.clone());
        self.blocking(move |db| db.acquire_flow_lock(&flow, &holder))
            .await
    }

    async fn refresh_flow_lock(&self, flow: &str, holder_id: &str) -> Result<bool, StoreError> {
        let (flow, holder_id) = (flow.to_owned(), holder_id.to_owned());
        self.blocking(move |db| db.refresh_flow_lock(&flow, &holder_id))
            .await
    }

    async fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError> {
        let (flow, holder_id) = (flow.to_owned(), holder_id.to_owned());
        self.blocking(move |db| db.release_flow_lock(&flow, &holder_id))
            .await
    }

    async fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError> {
        let flow = flow.to_owned();
        self.blocking(move |db| db.flow_lock_holder(&flow)).await
    }
}
