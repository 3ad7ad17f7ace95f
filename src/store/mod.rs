//! The state store: checkpoints (source position and sink state), processed idempotency keys,
//! dead letters, retry clocks, the alert outbox, the webhook inbox, cross-references, flow
//! locks and the audit trail.
//!
//! The store is an interface: [`Store`] is the cheap-to-clone handle the runtime uses, backed
//! by a [`StateBackend`]. Two backends exist: SQLite (`sqlite/`, one embedded file, the
//! default) and PostgreSQL (`postgres/`, for several processes sharing state). Every change a
//! flow makes to its state for one batch lands in one transaction ([`Store::commit`]), so a
//! crash leaves either the whole batch or none of it.
//!
//! This module owns the types and the contract; it must not name a database. Backends do no
//! blocking I/O on tokio worker threads (SQLite runs under `spawn_blocking`, PostgreSQL has
//! an async driver).

mod dead_letters;
mod inbox;
mod locks;
mod outbox;
pub mod postgres;
pub mod sqlite;
mod target;
#[doc(hidden)]
pub mod testing;
mod xrefs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use self::dead_letters::{
    DeadLetter, DeadLetterFilter, DeadLetterStatus, NewDeadLetter, Original, RecordTruncation,
};
pub use self::inbox::{InboxEvent, InboxInsert};
pub use self::locks::{HEARTBEAT_EVERY, LockHolder, STALE_AFTER, heartbeat_every, stale_after};
pub use self::outbox::{ALERT_CLAIM, OutboxAlert, PendingAlert};
pub use self::target::{ACCEPTED_FORMS, StoreTarget};
pub use self::xrefs::CrossReference;

/// A handle on the state store; cheap to clone, shared between tasks.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn StateBackend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("at", &self.backend.describe())
            .finish()
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
    /// PostgreSQL refused an operation or could not be reached.
    #[error("state store {target}: {source}")]
    Postgres {
        /// The server, database and schema (credentials redacted).
        target: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had from the pool.
    #[error("state store {target}: {message}")]
    Pool {
        /// The server, database and schema (credentials redacted).
        target: String,
        /// Why.
        message: String,
    },
    /// `--state` or the workspace's `state:` names no store this program can open.
    #[error("state store `{target}`: {message}")]
    BadTarget {
        /// What was given (credentials redacted).
        target: String,
        /// What is wrong.
        message: String,
    },
    /// A state store worker thread stopped (it panicked); the operation may not have run.
    #[error("state store worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
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
    /// A commit was to resolve a dead letter that is no longer open (another replay or an
    /// operator resolved it first); nothing of the commit was kept.
    #[error("dead letter #{0} is no longer open; nothing was committed")]
    DeadLetterResolved(i64),
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
        stale = stale_after().as_secs()
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
    /// A dead letter this batch resolves (a replay to a batch sink): resolved in the same
    /// transaction as the write it proves, so a crash or a second replay can never find the
    /// record written and the letter still open. The commit is refused with
    /// [`StoreError::DeadLetterResolved`] unless the letter is still open.
    pub resolves: Option<Resolution>,
}

/// A dead letter resolved by a [`CommitBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The dead letter.
    pub id: i64,
    /// Its new status.
    pub status: DeadLetterStatus,
    /// Who resolved it (for the audit trail).
    pub actor: String,
    /// Why.
    pub note: String,
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

/// A state store implementation. Object safe: [`Store`] holds one as `Arc<dyn StateBackend>`.
///
/// Futures are boxed by `async_trait`: one allocation per store call, which is per batch or
/// per operator action on every path that matters, and buys `dyn` dispatch with `Send`
/// futures (native `async fn` in traits is not object safe).
///
/// Each method's contract is the one documented on the [`Store`] method of the same name;
/// `store/conformance.rs` checks it for every backend.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync + 'static {
    /// Where the state lives, for messages (a path, or a URL without credentials).
    fn describe(&self) -> String;
    /// See [`Store::checkpoint`].
    async fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError>;
    /// Every processed key hash of a flow.
    async fn processed_keys(&self, flow: &str) -> Result<Vec<u64>, StoreError>;
    /// See [`Store::commit`].
    async fn commit(&self, batch: CommitBatch) -> Result<Vec<i64>, StoreError>;
    /// See [`Store::retry_states`].
    async fn retry_states(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, RetryState>, StoreError>;
    /// See [`Store::record_failure`].
    async fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError>;
    /// See [`Store::clear_retry`].
    async fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError>;
    /// See [`Store::audit`].
    async fn audit(
        &self,
        flow: Option<&str>,
        action: &str,
        actor: &str,
        detail: &Value,
    ) -> Result<(), StoreError>;
    /// See [`Store::audit_trail`].
    async fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// See [`Store::dead_letters`].
    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, StoreError>;
    /// See [`Store::dead_letter`].
    async fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError>;
    /// See [`Store::resolve_dead_letter`].
    async fn resolve_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError>;
    /// See [`Store::note_failed_replay`].
    async fn note_failed_replay(&self, id: i64, actor: &str, error: &str)
    -> Result<(), StoreError>;
    /// See [`Store::open_dead_letter_counts`].
    async fn open_dead_letter_counts(
        &self,
    ) -> Result<Vec<(String, String, String, u64)>, StoreError>;
    /// See [`Store::inbox_insert`].
    async fn inbox_insert(
        &self,
        flow: &str,
        event_id: &str,
        body: &str,
    ) -> Result<InboxInsert, StoreError>;
    /// See [`Store::inbox_pending`].
    async fn inbox_pending(&self, flow: &str, limit: usize) -> Result<Vec<InboxEvent>, StoreError>;
    /// See [`Store::inbox_processed`].
    async fn inbox_processed(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// See [`Store::inbox_dead_letter`].
    async fn inbox_dead_letter(
        &self,
        flow: &str,
        letters: &[(i64, NewDeadLetter, Option<OutboxAlert>)],
    ) -> Result<Vec<Option<i64>>, StoreError>;
    /// See [`Store::inbox_failed`].
    async fn inbox_failed(&self, ids: &[i64], error: &str) -> Result<(), StoreError>;
    /// See [`Store::inbox_count`].
    async fn inbox_count(&self, flow: &str, status: &str) -> Result<u64, StoreError>;
    /// See [`Store::enqueue_alert`].
    async fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError>;
    /// See [`Store::due_alerts`].
    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingAlert>, StoreError>;
    /// See [`Store::claim_due_alerts`].
    async fn claim_due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError>;
    /// See [`Store::undelivered_alerts`].
    async fn undelivered_alerts(&self) -> Result<u64, StoreError>;
    /// See [`Store::alert_delivered`].
    async fn alert_delivered(&self, id: i64) -> Result<(), StoreError>;
    /// See [`Store::alert_failed`].
    async fn alert_failed(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError>;
    /// See [`Store::put_xref`].
    async fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError>;
    /// See [`Store::xref_key`].
    async fn xref_key(
        &self,
        object: &str,
        system: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// See [`Store::xrefs_of`].
    async fn xrefs_of(
        &self,
        object: &str,
        record_key: &str,
    ) -> Result<Vec<CrossReference>, StoreError>;
    /// See [`Store::acquire_flow_lock`].
    async fn acquire_flow_lock(&self, flow: &str, holder: &LockHolder) -> Result<(), StoreError>;
    /// See [`Store::refresh_flow_lock`].
    async fn refresh_flow_lock(&self, flow: &str, holder_id: &str) -> Result<bool, StoreError>;
    /// See [`Store::release_flow_lock`].
    async fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError>;
    /// See [`Store::flow_lock_holder`].
    async fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError>;
}

impl Store {
    /// A store on `backend`.
    pub fn new(backend: impl StateBackend) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }

    /// Opens the store `target` names: `postgres://...` or `postgresql://...` is a
    /// PostgreSQL database (`?schema=NAME` picks the schema, default `switchyard`);
    /// `sqlite:PATH` or a plain path is a SQLite file.
    pub async fn connect(target: &str) -> Result<Self, StoreError> {
        Self::open_target(&StoreTarget::parse(target, Path::new(""), true)?).await
    }

    /// Opens the store `target` names (see [`Store::connect`]), saying which in the log
    /// (password redacted): an operator reading a run's log knows where its state went.
    pub async fn open_target(target: &StoreTarget) -> Result<Self, StoreError> {
        tracing::info!(state = %target, "Opening the state store.");
        match target {
            StoreTarget::Postgres(url) => {
                Ok(Self::new(postgres::PostgresBackend::connect(url).await?))
            }
            StoreTarget::Sqlite(path) => {
                let path = path.clone();
                let backend =
                    tokio::task::spawn_blocking(move || sqlite::SqliteBackend::open(&path))
                        .await??;
                Ok(Self::new(backend))
            }
        }
    }

    /// Opens (or creates) a SQLite state file. Blocking: for tools and tests; the runtime
    /// uses [`Store::connect`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(sqlite::SqliteBackend::open(path)?))
    }

    /// Opens a private in-memory store (flow tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self::new(sqlite::SqliteBackend::in_memory()?))
    }

    /// Where the state lives, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The last committed checkpoint of a flow.
    pub async fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.backend.checkpoint(flow).await
    }

    /// Adds every processed key hash of a flow to `into`.
    pub async fn load_processed_keys(
        &self,
        flow: &str,
        into: &mut impl Extend<u64>,
    ) -> Result<(), StoreError> {
        into.extend(self.backend.processed_keys(flow).await?);
        Ok(())
    }

    /// Commits one batch atomically: checkpoint, processed keys, dead letters (clearing
    /// their retry clocks), alerts, audit; refused with [`StoreError::LockLost`] when the
    /// batch names a flow lock its run no longer holds. Returns the IDs of the new dead
    /// letters, in order.
    pub async fn commit(&self, batch: CommitBatch) -> Result<Vec<i64>, StoreError> {
        self.backend.commit(batch).await
    }

    /// The retry clocks of those of `keys` that have failed before, in one query: a batch
    /// loads them before its deliveries instead of one read per record.
    pub async fn retry_states(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, RetryState>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.backend.retry_states(flow, keys).await
    }

    /// The retry clock of one record, if it has failed before.
    pub async fn retry_state(
        &self,
        flow: &str,
        key: &str,
    ) -> Result<Option<RetryState>, StoreError> {
        let mut states = self.retry_states(flow, &[key.to_owned()]).await?;
        Ok(states.remove(key))
    }

    /// Records a failed attempt; the first failure's time is kept.
    pub async fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError> {
        self.backend.record_failure(flow, key, at_ms, error).await
    }

    /// Forgets a record's retry clock (it was delivered).
    pub async fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError> {
        self.backend.clear_retry(flow, key).await
    }

    /// Appends an audit entry.
    pub async fn audit(
        &self,
        flow: Option<&str>,
        action: &str,
        actor: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        self.backend.audit(flow, action, actor, detail).await
    }

    /// The most recent audit entries, newest first.
    pub async fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.backend.audit_trail(limit).await
    }

    /// Lists dead letters, oldest first.
    pub async fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.backend.dead_letters(filter).await
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError> {
        self.backend.dead_letter(id).await
    }

    /// Marks a dead letter resolved (replayed or suppressed) and audits who did it and why.
    pub async fn resolve_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        self.backend
            .resolve_dead_letter(id, status, actor, note)
            .await
    }

    /// Records a replay attempt that failed again, keeping the letter open.
    pub async fn note_failed_replay(
        &self,
        id: i64,
        actor: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.backend.note_failed_replay(id, actor, error).await
    }

    /// Open dead letters counted by flow, failure mode and owner (a bounded set), for the
    /// `switchyard_dead_letters_open` gauge.
    pub async fn open_dead_letter_counts(
        &self,
    ) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        self.backend.open_dead_letter_counts().await
    }

    /// Stores an event durably, unless the same event ID was already received for this flow.
    pub async fn inbox_insert(
        &self,
        flow: &str,
        event_id: &str,
        body: &str,
    ) -> Result<InboxInsert, StoreError> {
        self.backend.inbox_insert(flow, event_id, body).await
    }

    /// Up to `limit` pending events of a flow, oldest first.
    pub async fn inbox_pending(
        &self,
        flow: &str,
        limit: usize,
    ) -> Result<Vec<InboxEvent>, StoreError> {
        self.backend.inbox_pending(flow, limit).await
    }

    /// Marks events processed (after the run that consumed them committed).
    pub async fn inbox_processed(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.backend.inbox_processed(ids).await
    }

    /// Dead-letters events the flow cannot read, marking them processed in the same
    /// transaction. An event no longer pending is left alone, so it is never dead-lettered
    /// twice. Returns the ID of each new dead letter, in the order given (`None` for an
    /// event that was no longer pending).
    pub async fn inbox_dead_letter(
        &self,
        flow: &str,
        letters: &[(i64, NewDeadLetter, Option<OutboxAlert>)],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        self.backend.inbox_dead_letter(flow, letters).await
    }

    /// Records a failed attempt at processing events; they stay pending for the next attempt.
    pub async fn inbox_failed(&self, ids: &[i64], error: &str) -> Result<(), StoreError> {
        self.backend.inbox_failed(ids, error).await
    }

    /// Number of inbox rows of a flow in a status, for tests and the admin API.
    pub async fn inbox_count(&self, flow: &str, status: &str) -> Result<u64, StoreError> {
        self.backend.inbox_count(flow, status).await
    }

    /// Queues an alert outside a batch (for example a deadline warning).
    pub async fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError> {
        self.backend.enqueue_alert(alert).await
    }

    /// Alerts due for an attempt at `now_ms`, oldest first.
    pub async fn due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        self.backend.due_alerts(now_ms, limit).await
    }

    /// Claims the alerts due at `now_ms` for one sender: they are not due again for anyone
    /// until [`ALERT_CLAIM`] has passed, so two processes sharing state do not both post
    /// the same alert. A sender that dies with a claim only delays its alerts by the claim.
    pub async fn claim_due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        self.backend.claim_due_alerts(now_ms, limit).await
    }

    /// Number of alerts not delivered yet.
    pub async fn undelivered_alerts(&self) -> Result<u64, StoreError> {
        self.backend.undelivered_alerts().await
    }

    /// Marks an alert delivered.
    pub async fn alert_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.backend.alert_delivered(id).await
    }

    /// Records a failed delivery and when to try again.
    pub async fn alert_failed(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.backend.alert_failed(id, next_attempt_ms, error).await
    }

    /// Stores (or confirms) a cross-reference; the first mapping of an external ID wins.
    pub async fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError> {
        self.backend.put_xref(xref, flow).await
    }

    /// The identity key of the object a system knows under `external_id`.
    pub async fn xref_key(
        &self,
        object: &str,
        system: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.backend.xref_key(object, system, external_id).await
    }

    /// Every ID other systems gave one object, by system.
    pub async fn xrefs_of(
        &self,
        object: &str,
        record_key: &str,
    ) -> Result<Vec<CrossReference>, StoreError> {
        self.backend.xrefs_of(object, record_key).await
    }

    /// Takes the lock of `flow` for `holder`, taking over a lock whose holder is gone.
    /// Fails with [`StoreError::FlowLocked`] while another live holder has it.
    pub async fn acquire_flow_lock(
        &self,
        flow: &str,
        holder: &LockHolder,
    ) -> Result<(), StoreError> {
        self.backend.acquire_flow_lock(flow, holder).await
    }

    /// Refreshes the heartbeat; `false` when `holder` no longer has the lock.
    pub async fn refresh_flow_lock(&self, flow: &str, holder_id: &str) -> Result<bool, StoreError> {
        self.backend.refresh_flow_lock(flow, holder_id).await
    }

    /// Releases the lock if `holder` still has it.
    pub async fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError> {
        self.backend.release_flow_lock(flow, holder_id).await
    }

    /// The holder of a flow's lock, if any (live or not).
    pub async fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError> {
        self.backend.flow_lock_holder(flow).await
    }
}

/// Whether a `--state` value names a PostgreSQL store rather than a SQLite file.
pub fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
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

impl CommitBatch {
    /// The processed key hashes as both stores log them: 8 little-endian bytes each.
    pub(crate) fn packed_keys(&self) -> Vec<u8> {
        self.processed_keys
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect()
    }

    /// The detail of the batch's `batch-committed` audit entry.
    pub(crate) fn audit_detail(&self) -> Value {
        serde_json::json!({
            "delivered": self.delivered,
            "dead_lettered": self.dead_letters.len(),
            "duplicates": self.duplicates,
            "position": self.checkpoint.position,
        })
    }
}

/// One entry of a flow's processed-key log, unpacked; `None` when it ends in a partial hash.
pub(crate) fn unpack_keys(blob: &[u8]) -> Option<impl Iterator<Item = u64> + '_> {
    blob.len().is_multiple_of(8).then(|| {
        blob.chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
    })
}

/// A JSON column read back; a value that does not parse is a damaged store at `at`.
pub(crate) fn parse_stored_json(
    text: &str,
    at: impl AsRef<std::ffi::OsStr>,
) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        path: PathBuf::from(at.as_ref()),
        message: format!("stored JSON does not parse: {err}"),
    })
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
