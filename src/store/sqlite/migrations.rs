//! Embedded schema migrations, applied in order on open; `PRAGMA user_version` records how
//! many have run. Append new migrations; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

const MIGRATIONS: &[&str] = &[
    // 1: the offer flow's state.
    "CREATE TABLE checkpoints (
        flow TEXT PRIMARY KEY,
        position TEXT NOT NULL,
        sink_state TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     -- Processed idempotency keys, as an append-only log of packed 64-bit hashes (one row per
     -- committed batch): appending is sequential I/O whatever the key order, and the runtime
     -- keeps the set in memory anyway.
     CREATE TABLE processed_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow TEXT NOT NULL,
        hashes BLOB NOT NULL
     );
     CREATE INDEX processed_keys_by_flow ON processed_keys (flow);
     CREATE TABLE retry_state (
        flow TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        first_failure_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (flow, idempotency_key)
     );
     CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow TEXT NOT NULL,
        object TEXT NOT NULL,
        record_key TEXT,
        idempotency_key TEXT,
        failure TEXT NOT NULL,
        reason TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        owner TEXT NOT NULL,
        action TEXT,
        record TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_by TEXT,
        note TEXT
     );
     CREATE INDEX dead_letters_by_flow ON dead_letters (flow, failure, status);
     CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        dead_letter_id INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        delivered_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL
     );
     CREATE INDEX alert_outbox_due ON alert_outbox (delivered_at, next_attempt_ms);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        flow TEXT,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL
     );",
    // 2: the webhook inbox; an event is durable here before the sender gets its 2xx.
    "CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow TEXT NOT NULL,
        event_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        processed_at TEXT,
        last_error TEXT,
        UNIQUE (flow, event_id)
     );
     CREATE INDEX inbox_pending ON inbox (flow, status, id);",
    // 3: ID cross-references between systems (marketplace order ID <-> OMS order ID).
    "CREATE TABLE xrefs (
        object TEXT NOT NULL,
        system TEXT NOT NULL,
        external_id TEXT NOT NULL,
        record_key TEXT NOT NULL,
        flow TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (object, system, external_id)
     );
     CREATE INDEX xrefs_by_key ON xrefs (object, record_key);",
    // 4: flow locks: a flow runs in one process at a time (see `locks.rs`).
    "CREATE TABLE flow_locks (
        flow TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        since TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        machine TEXT NOT NULL DEFAULT ''
     );",
    // 5: dead letters keep an original that is not UTF-8 byte for byte (`record` keeps a
    // readable copy), and the line of the source file a record came from.
    "ALTER TABLE dead_letters ADD COLUMN record_raw BLOB;
     ALTER TABLE dead_letters ADD COLUMN line INTEGER;",
    // 6: a dead letter whose original was cut at `max_dead_letter_record_size` records the
    // original's length and SHA-256 (both NULL when the whole original is kept).
    "ALTER TABLE dead_letters ADD COLUMN record_original_bytes INTEGER;
     ALTER TABLE dead_letters ADD COLUMN record_sha256 TEXT;",
];

/// Why migrations could not be applied.
#[derive(Debug)]
pub(super) enum MigrationError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The file carries a schema version this program does not know (0 for a database that
    /// is not a Switchyard state, higher for a newer Switchyard).
    Foreign(i64),
}

impl From<rusqlite::Error> for MigrationError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

/// Applies the migrations this file has not seen yet. Each runs in an immediate (write-locked)
/// transaction that reads the version again, so processes opening one file at once apply
/// each migration exactly once.
pub(super) fn apply(conn: &mut Connection) -> Result<(), MigrationError> {
    let fresh = {
        let tables: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        tables == 0
    };
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if applied < 0 || applied > MIGRATIONS.len() as i64 || (applied == 0 && !fresh) {
            return Err(MigrationError::Foreign(applied));
        }
        let Some(sql) = MIGRATIONS.get(applied as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", applied + 1)?;
        tx.commit()?;
    }
}
