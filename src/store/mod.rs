//! The state store: checkpoints (source position and sink state), processed idempotency keys,
//! dead letters, retry clocks, the alert outbox, the webhook inbox and the audit trail, in one
//! SQLite file.
//!
//! Every change a flow makes to its state for one batch lands in one transaction
//! ([`Store::commit`]), so a crash leaves either the whole batch or none of it. The file is
//! opened in WAL mode with `synchronous=FULL`: a committed batch survives `kill -9` and power
//! loss. Migrations are embedded and applied on open.
//!
//! The store is synchronous; callers on tokio use `spawn_blocking` for large commits. Only
//! SQLite exists so far; a PostgreSQL store for several daemons is planned behind the same
//! methods.

mod dead_letters;
mod inbox;
mod locks;
mod migrations;
mod outbox;
mod xrefs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

pub use self::dead_letters::{
    DeadLetter, DeadLetterFilter, DeadLetterStatus, NewDeadLetter, Original, RecordTruncation,
};
pub use self::inbox::{InboxEvent, InboxInsert};
pub use self::locks::{HEARTBEAT_EVERY, LockHolder, STALE_AFTER};
pub use self::outbox::{ALERT_CLAIM, OutboxAlert, PendingAlert};
pub use self::xrefs::CrossReference;

/// A handle on the state store; cheap to clone, shared between tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// The state file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The state folder could not be created.
    #[error("state store {path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored value is not what this version expects.
    #[error("state store {path}: {message}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No dead letter has this ID.
    #[error("no dead letter #{0}")]
    NoSuchDeadLetter(i64),
    /// The state file exists but cannot be trusted; nothing was read or sent.
    #[error("state store {path} {problem}; nothing was sent. {fix}")]
    Unusable {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What the operator can do.
        fix: String,
    },
    /// Another live process runs the flow.
    #[error(
        "flow `{flow}` is already running ({holder}); a flow runs in one process at a time. \
         Wait for that run to end or stop it; a crashed holder's lock is taken over \
         automatically once its process is gone or {stale}s after its last heartbeat",
        stale = STALE_AFTER.as_secs()
    )]
    FlowLocked {
        /// The flow.
        flow: String,
        /// Who has it (boxed: the error travels in every store result).
        holder: Box<LockHolder>,
    },
    /// The run lost its flow lock (it stalled past the stale limit and another run took
    /// over); its batch was not committed.
    #[error(
        "flow `{flow}`: this run lost its lock to another process; its last batch was not \
         committed and that process resumes from the checkpoint"
    )]
    LockLost {
        /// The flow.
        flow: String,
    },
}

/// Where a flow stands: the source position after the last committed batch and the sink's
/// own state at that point (for example the length of an output file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Source position (connector-specific JSON).
    pub position: Value,
    /// Sink state (connector-specific JSON).
    pub sink_state: Value,
}

/// Everything one batch changes, committed atomically.
#[derive(Debug, Default)]
pub struct CommitBatch {
    /// The flow.
    pub flow: String,
    /// The new checkpoint.
    pub checkpoint: Checkpoint,
    /// Hashes of the idempotency keys processed in this batch (delivered or dead-lettered).
    pub processed_keys: Vec<u64>,
    /// Dead letters created in this batch, each with the alert to send for it (none when
    /// its owner has no alert webhook).
    pub dead_letters: Vec<(NewDeadLetter, Option<OutboxAlert>)>,
    /// Counts for the audit entry.
    pub delivered: u64,
    /// Records dropped as duplicates.
    pub duplicates: u64,
    /// The holder ID of the run's flow lock: the commit is refused unless it still holds it.
    pub lock: Option<String>,
}

/// The retry clock of one record: when it first failed and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryState {
    /// Unix milliseconds of the first failure.
    pub first_failure_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// Entry ID.
    pub id: i64,
    /// RFC 3339 time.
    pub at: String,
    /// The flow, if the entry concerns one.
    pub flow: Option<String>,
    /// What happened (`batch-committed`, `dead-letter-replayed`, ...).
    pub action: String,
    /// Who did it (`runtime` or the operator's name).
    pub actor: String,
    /// Details.
    pub detail: Value,
}

impl Store {
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
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = connect(path).map_err(sqlite)?;
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
        Ok(Self {
            inner: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
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
        Ok(Self {
            inner: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last committed checkpoint of a flow.
    pub fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError> {
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

    /// Adds every processed key hash of a flow to `into`.
    pub fn load_processed_keys(
        &self,
        flow: &str,
        into: &mut impl Extend<u64>,
    ) -> Result<(), StoreError> {
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
            if blob.len() % 8 != 0 {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    message: format!("processed key log of `{flow}` has a partial entry"),
                });
            }
            into.extend(
                blob.chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
            );
        }
        Ok(())
    }

    /// Commits one batch atomically: checkpoint, processed keys, dead letters, alerts, audit.
    /// Returns the IDs of the new dead letters, in order.
    pub fn commit(&self, batch: &CommitBatch) -> Result<Vec<i64>, StoreError> {
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
        let ids = (|| -> rusqlite::Result<Vec<i64>> {
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
                let packed: Vec<u8> = batch
                    .processed_keys
                    .iter()
                    .flat_map(|h| h.to_le_bytes())
                    .collect();
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
            let detail = serde_json::json!({
                "delivered": batch.delivered,
                "dead_lettered": batch.dead_letters.len(),
                "duplicates": batch.duplicates,
                "position": batch.checkpoint.position,
            });
            audit(
                &tx,
                Some(&batch.flow),
                "batch-committed",
                "runtime",
                &detail,
                &now,
            )?;
            Ok(ids)
        })()
        .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(ids)
    }

    /// The retry clock of a record, if it has failed before.
    pub fn retry_state(&self, flow: &str, key: &str) -> Result<Option<RetryState>, StoreError> {
        self.conn()
            .query_row(
                "SELECT first_failure_ms, attempts FROM retry_state
                 WHERE flow = ?1 AND idempotency_key = ?2",
                params![flow, key],
                |row| {
                    Ok(RetryState {
                        first_failure_ms: row.get(0)?,
                        attempts: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Records a failed attempt; the first failure's time is kept.
    pub fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO retry_state (flow, idempotency_key, first_failure_ms, attempts, last_error)
             VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (flow, idempotency_key) DO UPDATE SET attempts = attempts + 1,
               last_error = excluded.last_error",
            params![flow, key, at_ms, error],
        )
        .map_err(|e| self.sqlite(e))?;
        drop(conn);
        self.retry_state(flow, key)?
            .ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("retry state of `{key}` vanished after it was written"),
            })
    }

    /// Forgets a record's retry clock (it was delivered).
    pub fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM retry_state WHERE flow = ?1 AND idempotency_key = ?2",
                params![flow, key],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// Appends an audit entry.
    pub fn audit(
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
    pub fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
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
        self.inner
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
        serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("stored JSON does not parse: {err}"),
        })
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

fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| {
        unusable(
            path,
            &format!("is damaged ({detail})"),
            "Restore the state file from a backup, or salvage it with \
             `sqlite3 BROKEN.db .recover | sqlite3 RECOVERED.db` and point --state at the \
             result after checking it.",
        )
    };
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

/// A stable 64-bit hash of an idempotency key (FNV-1a); stable across builds and platforms,
/// because stored hashes must match after an upgrade.
pub fn key_hash(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
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

#[cfg(test)]
mod tests;
