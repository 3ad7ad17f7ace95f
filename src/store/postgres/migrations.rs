//! Embedded schema migrations for PostgreSQL, applied on connect inside one transaction that
//! holds a transaction-level advisory lock (`pg_advisory_xact_lock`) keyed by the schema, so
//! processes starting together apply each migration exactly once. Append new migrations;
//! never edit one that has shipped.

/// The schema, one statement batch per version. Integers are `BIGINT` throughout (the driver
/// maps `u32` to `oid`); originals and inbox bodies are `BYTEA`, byte for byte.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite schema has after its migration 5.
    "CREATE TABLE checkpoints (
        flow TEXT PRIMARY KEY,
        position TEXT NOT NULL,
        sink_state TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     -- Processed idempotency keys, an append-only log of packed 64-bit hashes (one row per
     -- committed batch), as in SQLite.
     CREATE TABLE processed_keys (
        id BIGSERIAL PRIMARY KEY,
        flow TEXT NOT NULL,
        hashes BYTEA NOT NULL
     );
     CREATE INDEX processed_keys_by_flow ON processed_keys (flow, id);
     CREATE TABLE retry_state (
        flow TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        first_failure_ms BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (flow, idempotency_key)
     );
     CREATE TABLE dead_letters (
        id BIGSERIAL PRIMARY KEY,
        flow TEXT NOT NULL,
        object TEXT NOT NULL,
        record_key TEXT,
        idempotency_key TEXT,
        failure TEXT NOT NULL,
        reason TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        owner TEXT NOT NULL,
        action TEXT,
        record TEXT NOT NULL,
        record_raw BYTEA,
        line BIGINT,
        record_original_bytes BIGINT,
        record_sha256 TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_by TEXT,
        note TEXT
     );
     CREATE INDEX dead_letters_by_flow ON dead_letters (flow, failure, status);
     CREATE TABLE alert_outbox (
        id BIGSERIAL PRIMARY KEY,
        owner TEXT NOT NULL,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        dead_letter_id BIGINT,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL DEFAULT 0,
        delivered_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL
     );
     CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_ms) WHERE delivered_at IS NULL;
     CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at TEXT NOT NULL,
        flow TEXT,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE TABLE inbox (
        id BIGSERIAL PRIMARY KEY,
        flow TEXT NOT NULL,
        event_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body BYTEA NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts BIGINT NOT NULL DEFAULT 0,
        processed_at TEXT,
        last_error TEXT,
        UNIQUE (flow, event_id)
     );
     CREATE INDEX inbox_pending ON inbox (flow, status, id);
     CREATE TABLE xrefs (
        object TEXT NOT NULL,
        system TEXT NOT NULL,
        external_id TEXT NOT NULL,
        record_key TEXT NOT NULL,
        flow TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (object, system, external_id)
     );
     CREATE INDEX xrefs_by_key ON xrefs (object, record_key);
     -- Flow leases: `holder` is NULL once released; `token` counts acquisitions and never
     -- goes back, so it orders every holder the flow has had.
     CREATE TABLE flow_locks (
        flow TEXT PRIMARY KEY,
        holder TEXT,
        pid BIGINT NOT NULL DEFAULT 0,
        host TEXT NOT NULL DEFAULT '',
        since TEXT NOT NULL DEFAULT '',
        machine TEXT NOT NULL DEFAULT '',
        expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
        token BIGINT NOT NULL DEFAULT 0
     );",
];
