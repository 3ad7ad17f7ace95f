//! The PostgreSQL state store, for several processes sharing state.
//!
//! One state is one schema (`postgres://HOST/DB?schema=NAME`, default `switchyard`): the
//! connection's `search_path` is set to it at start-up, so every statement here is
//! unqualified. Migrations are embedded and applied on connect under an advisory lock.
//! Connections come from a small `deadpool` pool; the driver is async, so nothing here blocks
//! a tokio worker.
//!
//! Flow locks are leases: a row with the holder, an expiry on the server's clock (no clock
//! skew between hosts) and a token counting acquisitions. A lease is taken over once it
//! expired, or at once when its holder was on this host and its process is gone; every batch
//! commit extends the lease of its holder in its own transaction and is refused when another
//! holder took it over, so a stalled process cannot commit after losing its lease.

mod migrations;

use std::collections::HashMap;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::locks::takeover;
use crate::store::dead_letters::DEAD_LETTER_COLUMNS as COLUMNS;
use crate::store::{
    ALERT_CLAIM, AuditEntry, Checkpoint, CommitBatch, CrossReference, DeadLetter, DeadLetterFilter,
    DeadLetterStatus, InboxEvent, InboxInsert, LockHolder, NewDeadLetter, Original, OutboxAlert,
    PendingAlert, RecordTruncation, RetryState, StateBackend, StoreError, now_rfc3339,
};

/// The schema used when the URL names none.
const DEFAULT_SCHEMA: &str = "switchyard";

/// Connections per process: the runtime's store traffic is one commit per batch, the
/// heartbeat, the alert sender and the admin API.
const POOL_SIZE: usize = 8;

/// The PostgreSQL backend of [`crate::store::Store`].
pub struct PostgresBackend {
    pool: Pool,
    /// The server, database and schema, without credentials.
    target: String,
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl PostgresBackend {
    /// Connects to `url` (`postgres://[USER@]HOST[:PORT]/DB[?schema=NAME&...]`), creating
    /// the schema and applying migrations as needed. The user defaults to `$PGUSER`, then
    /// `$USER`, then `postgres`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, schema) = split_schema(url)?;
        let target = format!("{}?schema={schema}", crate::redact::redact(&url));
        let bad = |message: String| StoreError::BadTarget {
            target: target.clone(),
            message,
        };
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|err| bad(format!("{err}")))?;
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "postgres".into());
            config.user(user);
        }
        config.options(format!("-c search_path={schema}"));
        config.application_name("switchyard");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|err| bad(err.to_string()))?;
        let backend = Self { pool, target };
        backend.migrate(&schema).await?;
        Ok(backend)
    }

    async fn migrate(&self, schema: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        // Keyed by schema: states in other schemas of the database migrate independently.
        let key = crate::store::key_hash(&format!("switchyard-migrations/{schema}")) as i64;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await
            .map_err(|e| self.pg(e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             SET LOCAL search_path TO \"{schema}\";
             CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)"
        ))
        .await
        .map_err(|e| self.pg(e))?;
        let applied: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| self.pg(e))?
            .get(0);
        if applied > migrations::MIGRATIONS.len() as i64 {
            return Err(StoreError::Unusable {
                path: self.target.clone().into(),
                problem: format!("has schema version {applied}, which this program does not know"),
                fix: "It was written by a newer Switchyard: run the version that wrote it, or \
                      point --state at another schema."
                    .into(),
            });
        }
        for (index, sql) in migrations::MIGRATIONS
            .iter()
            .enumerate()
            .skip(applied as usize)
        {
            tx.batch_execute(sql).await.map_err(|e| self.pg(e))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&(index as i64 + 1), &now_rfc3339()],
            )
            .await
            .map_err(|e| self.pg(e))?;
        }
        tx.commit().await.map_err(|e| self.pg(e))
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|err| StoreError::Pool {
            target: self.target.clone(),
            message: crate::error_text::with_causes(&err),
        })
    }

    fn pg(&self, source: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            source,
        }
    }

    fn json(&self, text: &str) -> Result<Value, StoreError> {
        super::parse_stored_json(text, &self.target)
    }

    /// Runs one statement on a pooled connection; returns the rows it changed.
    async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.pg(e))
    }

    /// Runs one query on a pooled connection.
    async fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.pg(e))
    }
}

#[async_trait::async_trait]
impl StateBackend for PostgresBackend {
    fn describe(&self) -> String {
        self.target.clone()
    }

    async fn checkpoint(&self, flow: &str) -> Result<Option<Checkpoint>, StoreError> {
        let rows = self
            .query(
                "SELECT position, sink_state FROM checkpoints WHERE flow = $1",
                &[&flow],
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(Checkpoint {
                    position: self.json(row.get(0))?,
                    sink_state: self.json(row.get(1))?,
                })
            })
            .transpose()
    }

    async fn processed_keys(&self, flow: &str) -> Result<Vec<u64>, StoreError> {
        let rows = self
            .query(
                "SELECT hashes FROM processed_keys WHERE flow = $1 ORDER BY id",
                &[&flow],
            )
            .await?;
        let mut keys = Vec::new();
        for row in rows {
            let blob: &[u8] = row.get(0);
            let Some(hashes) = crate::store::unpack_keys(blob) else {
                return Err(StoreError::Corrupt {
                    path: self.target.clone().into(),
                    message: format!("processed key log of `{flow}` has a partial entry"),
                });
            };
            keys.extend(hashes);
        }
        Ok(keys)
    }

    async fn commit(&self, batch: CommitBatch) -> Result<Vec<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        let pg = |e| self.pg(e);
        let now = now_rfc3339();
        if let Some(holder) = &batch.lock
            && !extend_lease(&tx, &batch.flow, holder).await.map_err(pg)?
        {
            return Err(StoreError::LockLost {
                flow: batch.flow.clone(),
            });
        }
        let upsert = tx
            .prepare_cached(
                "INSERT INTO checkpoints (flow, position, sink_state, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (flow) DO UPDATE SET position = excluded.position,
                   sink_state = excluded.sink_state, updated_at = excluded.updated_at",
            )
            .await
            .map_err(pg)?;
        tx.execute(
            &upsert,
            &[
                &batch.flow,
                &batch.checkpoint.position.to_string(),
                &batch.checkpoint.sink_state.to_string(),
                &now,
            ],
        )
        .await
        .map_err(pg)?;
        if !batch.processed_keys.is_empty() {
            let packed = batch.packed_keys();
            let append = tx
                .prepare_cached("INSERT INTO processed_keys (flow, hashes) VALUES ($1, $2)")
                .await
                .map_err(pg)?;
            tx.execute(&append, &[&batch.flow, &packed])
                .await
                .map_err(pg)?;
        }
        let ids = insert_dead_letters(&tx, &batch.dead_letters, &now)
            .await
            .map_err(pg)?;
        if let Some(resolution) = &batch.resolves {
            let resolved = tx
                .query_opt(
                    "UPDATE dead_letters SET status = $2, resolved_by = $3, note = $4,
                       updated_at = $5
                     WHERE id = $1 AND flow = $6 AND status = 'open'
                     RETURNING failure, record_key",
                    &[
                        &resolution.id,
                        &resolution.status.as_str(),
                        &resolution.actor,
                        &text(&resolution.note),
                        &now,
                        &batch.flow,
                    ],
                )
                .await
                .map_err(pg)?;
            // Dropping the transaction rolls it back: nothing of the batch is kept.
            let Some(row) = resolved else {
                return Err(StoreError::DeadLetterResolved(resolution.id));
            };
            let detail = serde_json::json!({
                "dead_letter": resolution.id, "failure": row.get::<_, String>(0),
                "record_key": row.get::<_, Option<String>>(1), "note": resolution.note,
            });
            let action = resolution.status.audit_action();
            audit(
                &tx,
                Some(&batch.flow),
                action,
                &resolution.actor,
                &detail,
                &now,
            )
            .await
            .map_err(pg)?;
        }
        let detail = batch.audit_detail();
        audit(
            &tx,
            Some(&batch.flow),
            "batch-committed",
            "runtime",
            &detail,
            &now,
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(ids)
    }

    async fn retry_states(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, RetryState>, StoreError> {
        let rows = self
            .query(
                "SELECT idempotency_key, first_failure_ms, attempts FROM retry_state
                 WHERE flow = $1 AND idempotency_key = ANY($2)",
                &[&flow, &keys],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), retry_state(row.get(1), row.get(2))))
            .collect())
    }

    async fn record_failure(
        &self,
        flow: &str,
        key: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<RetryState, StoreError> {
        let rows = self
            .query(
                "INSERT INTO retry_state (flow, idempotency_key, first_failure_ms, attempts,
                   last_error) VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (flow, idempotency_key) DO UPDATE
                   SET attempts = retry_state.attempts + 1, last_error = excluded.last_error
                 RETURNING first_failure_ms, attempts",
                &[&flow, &key, &at_ms, &text(error)],
            )
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt {
            path: self.target.clone().into(),
            message: format!("retry state of `{key}` vanished after it was written"),
        })?;
        Ok(retry_state(row.get(0), row.get(1)))
    }

    async fn clear_retry(&self, flow: &str, key: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM retry_state WHERE flow = $1 AND idempotency_key = $2",
            &[&flow, &key],
        )
        .await
        .map(drop)
    }

    async fn audit(
        &self,
        flow: Option<&str>,
        action: &str,
        actor: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        audit(&client, flow, action, actor, detail, &now_rfc3339())
            .await
            .map_err(|e| self.pg(e))
    }

    async fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT id, at, flow, action, actor, detail FROM audit ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.get(0),
                    at: row.get(1),
                    flow: row.get(2),
                    action: row.get(3),
                    actor: row.get(4),
                    detail: self.json(row.get(5))?,
                })
            })
            .collect()
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters
             WHERE ($1::TEXT IS NULL OR flow = $1) AND ($2::TEXT IS NULL OR failure = $2)
               AND ($3::TEXT IS NULL OR status = $3)
             ORDER BY id LIMIT $4"
        );
        let limit = filter.limit.map(|l| l as i64);
        let rows = self
            .query(
                &sql,
                &[
                    &filter.flow,
                    &filter.failure,
                    &filter.status.map(DeadLetterStatus::as_str),
                    &limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(read_dead_letter).collect())
    }

    async fn dead_letter(&self, id: i64) -> Result<DeadLetter, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first()
            .map(read_dead_letter)
            .ok_or(StoreError::NoSuchDeadLetter(id))
    }

    async fn resolve_dead_letter(
        &self,
        id: i64,
        status: DeadLetterStatus,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        let letter = self.dead_letter(id).await?;
        let now = now_rfc3339();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        tx.execute(
            "UPDATE dead_letters SET status = $2, resolved_by = $3, note = $4, updated_at = $5
             WHERE id = $1",
            &[&id, &status.as_str(), &actor, &text(note), &now],
        )
        .await
        .map_err(|e| self.pg(e))?;
        let action = status.audit_action();
        let detail = serde_json::json!({
            "dead_letter": id, "failure": letter.letter.failure,
            "record_key": letter.letter.record_key, "note": note,
        });
        audit(&tx, Some(&letter.letter.flow), action, actor, &detail, &now)
            .await
            .map_err(|e| self.pg(e))?;
        tx.commit().await.map_err(|e| self.pg(e))
    }

    async fn note_failed_replay(
        &self,
        id: i64,
        actor: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let letter = self.dead_letter(id).await?;
        let now = now_rfc3339();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        tx.execute(
            "UPDATE dead_letters SET attempts = attempts + 1, note = $2, updated_at = $3
             WHERE id = $1",
            &[&id, &text(&format!("replay failed: {error}")), &now],
        )
        .await
        .map_err(|e| self.pg(e))?;
        let detail = serde_json::json!({"dead_letter": id, "error": error});
        audit(
            &tx,
            Some(&letter.letter.flow),
            "dead-letter-replay-failed",
            actor,
            &detail,
            &now,
        )
        .await
        .map_err(|e| self.pg(e))?;
        tx.commit().await.map_err(|e| self.pg(e))
    }

    async fn open_dead_letter_counts(
        &self,
    ) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let rows = self
            .query(
                "SELECT flow, failure, owner, COUNT(*) FROM dead_letters WHERE status = 'open'
                 GROUP BY flow, failure, owner ORDER BY flow, failure, owner",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get::<_, i64>(3).max(0) as u64,
                )
            })
            .collect())
    }

    async fn inbox_insert(
        &self,
        flow: &str,
        event_id: &str,
        body: &str,
    ) -> Result<InboxInsert, StoreError> {
        let rows = self
            .query(
                "INSERT INTO inbox (flow, event_id, received_at, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (flow, event_id) DO NOTHING RETURNING id",
                &[&flow, &event_id, &now_rfc3339(), &body.as_bytes()],
            )
            .await?;
        Ok(match rows.first() {
            Some(row) => InboxInsert::Stored(row.get(0)),
            None => InboxInsert::Duplicate,
        })
    }

    async fn inbox_pending(&self, flow: &str, limit: usize) -> Result<Vec<InboxEvent>, StoreError> {
        let rows = self
            .query(
                "SELECT id, event_id, body, attempts FROM inbox
                 WHERE flow = $1 AND status = 'pending' ORDER BY id LIMIT $2",
                &[&flow, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| InboxEvent {
                id: row.get(0),
                event_id: row.get(1),
                body: row.get(2),
                attempts: count(row.get(3)),
            })
            .collect())
    }

    async fn inbox_processed(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.execute(
            "UPDATE inbox SET status = 'processed', processed_at = $2, attempts = attempts + 1
             WHERE id = ANY($1)",
            &[&ids, &now_rfc3339()],
        )
        .await
        .map(drop)
    }

    async fn inbox_dead_letter(
        &self,
        flow: &str,
        letters: &[(i64, NewDeadLetter, Option<OutboxAlert>)],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        let pg = |e| self.pg(e);
        let now = now_rfc3339();
        let mut ids = Vec::with_capacity(letters.len());
        for (event, letter, alert) in letters {
            // Claims the event: a concurrent claimer waits on the row, then finds it no
            // longer pending.
            let claimed = tx
                .execute(
                    "UPDATE inbox SET status = 'processed', processed_at = $2,
                       attempts = attempts + 1, last_error = $3
                     WHERE id = $1 AND status = 'pending'",
                    &[event, &now, &text(&letter.error)],
                )
                .await
                .map_err(pg)?;
            if claimed == 0 {
                ids.push(None);
                continue;
            }
            let id = insert_dead_letter(&tx, letter, &now).await.map_err(pg)?;
            if let Some(alert) = alert {
                insert_alert(&tx, alert, Some(id), &now).await.map_err(pg)?;
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
            .await
            .map_err(pg)?;
            ids.push(Some(id));
        }
        tx.commit().await.map_err(pg)?;
        Ok(ids)
    }

    async fn inbox_failed(&self, ids: &[i64], error: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE inbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            &[&ids, &text(error)],
        )
        .await
        .map(drop)
    }

    async fn inbox_count(&self, flow: &str, status: &str) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM inbox WHERE flow = $1 AND status = $2",
                &[&flow, &status],
            )
            .await?;
        Ok(rows
            .first()
            .map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
    }

    async fn enqueue_alert(&self, alert: &OutboxAlert) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_alert(&client, alert, None, &now_rfc3339())
            .await
            .map_err(|e| self.pg(e))
    }

    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingAlert>, StoreError> {
        let rows = self
            .query(
                "SELECT id, owner, url, payload, attempts FROM alert_outbox
                 WHERE delivered_at IS NULL AND next_attempt_ms <= $1 ORDER BY id LIMIT $2",
                &[&now_ms, &(limit as i64)],
            )
            .await?;
        self.pending(&rows)
    }

    async fn claim_due_alerts(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingAlert>, StoreError> {
        // One statement: rows another sender is claiming right now are skipped, not waited
        // for, and each claimed row is due again for anyone only after the claim.
        let rows = self
            .query(
                "UPDATE alert_outbox SET next_attempt_ms = $3
                 WHERE id IN (
                   SELECT id FROM alert_outbox
                   WHERE delivered_at IS NULL AND next_attempt_ms <= $1
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, owner, url, payload, attempts",
                &[
                    &now_ms,
                    &(limit as i64),
                    &(now_ms + ALERT_CLAIM.as_millis() as i64),
                ],
            )
            .await?;
        let mut alerts = self.pending(&rows)?;
        alerts.sort_by_key(|alert| alert.id);
        Ok(alerts)
    }

    async fn undelivered_alerts(&self) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM alert_outbox WHERE delivered_at IS NULL",
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
    }

    async fn alert_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE alert_outbox SET delivered_at = $2, attempts = attempts + 1 WHERE id = $1",
            &[&id, &now_rfc3339()],
        )
        .await
        .map(drop)
    }

    async fn alert_failed(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_ms = $2,
               last_error = $3 WHERE id = $1",
            &[&id, &next_attempt_ms, &text(error)],
        )
        .await
        .map(drop)
    }

    async fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO xrefs (object, system, external_id, record_key, flow, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &xref.object,
                &xref.system,
                &xref.external_id,
                &xref.record_key,
                &flow,
                &now_rfc3339(),
            ],
        )
        .await
        .map(drop)
    }

    async fn xref_key(
        &self,
        object: &str,
        system: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "SELECT record_key FROM xrefs WHERE object = $1 AND system = $2
                 AND external_id = $3",
                &[&object, &system, &external_id],
            )
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn xrefs_of(
        &self,
        object: &str,
        record_key: &str,
    ) -> Result<Vec<CrossReference>, StoreError> {
        let rows = self
            .query(
                "SELECT system, external_id FROM xrefs WHERE object = $1 AND record_key = $2
                 ORDER BY system",
                &[&object, &record_key],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| CrossReference {
                object: object.to_owned(),
                system: row.get(0),
                external_id: row.get(1),
                record_key: record_key.to_owned(),
            })
            .collect())
    }

    async fn acquire_flow_lock(&self, flow: &str, holder: &LockHolder) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        let pg = |e| self.pg(e);
        tx.execute(
            "INSERT INTO flow_locks (flow) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&flow],
        )
        .await
        .map_err(pg)?;
        // The row lock orders this acquisition against commits and other acquisitions.
        let row = tx
            .query_one(
                "SELECT holder, pid, host, since, expires_at < now(), machine FROM flow_locks
                 WHERE flow = $1 FOR UPDATE",
                &[&flow],
            )
            .await
            .map_err(pg)?;
        let current: Option<String> = row.get(0);
        if let Some(id) = current
            && id != holder.id
        {
            let other = LockHolder {
                id,
                pid: u32::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                host: row.get(2),
                since: row.get(3),
                machine: row.get(5),
            };
            let expired: bool = row.get(4);
            let detail = takeover(flow, &other, holder, expired, "its lease expired")?;
            audit(
                &tx,
                Some(flow),
                "flow-lock-taken-over",
                "runtime",
                &detail,
                &now_rfc3339(),
            )
            .await
            .map_err(pg)?;
        }
        tx.execute(
            "UPDATE flow_locks SET holder = $2, pid = $3, host = $4, since = $5,
               expires_at = now() + make_interval(secs => $6), token = token + 1, machine = $7
             WHERE flow = $1",
            &[
                &flow,
                &holder.id,
                &i64::from(holder.pid),
                &holder.host,
                &holder.since,
                &lease_secs(),
                &holder.machine,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn refresh_flow_lock(&self, flow: &str, holder_id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        extend_lease(&client, flow, holder_id)
            .await
            .map_err(|e| self.pg(e))
    }

    async fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError> {
        // The row stays, so the token keeps counting.
        self.execute(
            "UPDATE flow_locks SET holder = NULL, expires_at = '-infinity'
             WHERE flow = $1 AND holder = $2",
            &[&flow, &holder_id],
        )
        .await
        .map(drop)
    }

    async fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError> {
        let rows = self
            .query(
                "SELECT holder, pid, host, since, machine FROM flow_locks
                 WHERE flow = $1 AND holder IS NOT NULL",
                &[&flow],
            )
            .await?;
        Ok(rows.first().map(|row| LockHolder {
            id: row.get(0),
            pid: u32::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            host: row.get(2),
            since: row.get(3),
            machine: row.get(4),
        }))
    }
}

impl PostgresBackend {
    fn pending(&self, rows: &[tokio_postgres::Row]) -> Result<Vec<PendingAlert>, StoreError> {
        rows.iter()
            .map(|row| {
                Ok(PendingAlert {
                    id: row.get(0),
                    alert: OutboxAlert {
                        owner: row.get(1),
                        url: row.get(2),
                        payload: self.json(row.get(3))?,
                    },
                    attempts: count(row.get(4)),
                })
            })
            .collect()
    }
}

/// Extends `holder_id`'s lease on `flow`; `false` when another holder has it. In a commit's
/// transaction this is the fence: the row lock it takes orders the commit against a takeover.
async fn extend_lease(
    client: &impl deadpool_postgres::GenericClient,
    flow: &str,
    holder_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "UPDATE flow_locks SET expires_at = now() + make_interval(secs => $3)
             WHERE flow = $1 AND holder = $2",
        )
        .await?;
    let updated = client
        .execute(&statement, &[&flow, &holder_id, &lease_secs()])
        .await?;
    Ok(updated == 1)
}

/// A lease lasts as long as a SQLite heartbeat stays fresh.
fn lease_secs() -> f64 {
    crate::store::stale_after().as_secs_f64()
}

/// Inserts a batch's dead letters, their alerts, and forgets their retry clocks, in three
/// statements whatever the number of letters. Returns the new IDs in the order given.
async fn insert_dead_letters(
    client: &impl deadpool_postgres::GenericClient,
    letters: &[(NewDeadLetter, Option<OutboxAlert>)],
    now: &str,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let column = |get: fn(&NewDeadLetter) -> Option<String>| -> Vec<Option<String>> {
        letters.iter().map(|(letter, _)| get(letter)).collect()
    };
    let flows = column(|l| Some(l.flow.clone()));
    let objects = column(|l| Some(l.object.clone()));
    let record_keys = column(|l| l.record_key.clone());
    let idempotency_keys = column(|l| l.idempotency_key.clone());
    let failures = column(|l| Some(l.failure.clone()));
    let reasons = column(|l| Some(l.reason.clone()));
    let errors = column(|l| Some(text(&l.error)));
    let owners = column(|l| Some(l.owner.clone()));
    let actions = column(|l| l.action.clone());
    let records = column(|l| Some(text(&l.record.to_text_lossy())));
    let attempts: Vec<i64> = letters.iter().map(|(l, _)| i64::from(l.attempts)).collect();
    let raws: Vec<Option<&[u8]>> = letters.iter().map(|(l, _)| raw_original(l)).collect();
    let lines: Vec<Option<i64>> = letters
        .iter()
        .map(|(l, _)| l.line.map(|line| line as i64))
        .collect();
    let original_bytes: Vec<Option<i64>> =
        letters.iter().map(|(l, _)| truncated_bytes(l)).collect();
    let digests: Vec<Option<String>> =
        column(|l| l.record_truncated.as_ref().map(|t| t.sha256.clone()));
    let insert = client
        .prepare_cached(
            "INSERT INTO dead_letters (flow, object, record_key, idempotency_key, failure,
               reason, error, attempts, owner, action, record, created_at, updated_at,
               record_raw, line, record_original_bytes, record_sha256)
             SELECT flow, object, record_key, idempotency_key, failure, reason, error,
               attempts, owner, action, record, $12, $12, record_raw, line,
               record_original_bytes, record_sha256
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
               $6::TEXT[], $7::TEXT[], $8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::TEXT[],
               $13::BYTEA[], $14::BIGINT[], $15::BIGINT[], $16::TEXT[]) WITH ORDINALITY
               AS l(flow, object, record_key, idempotency_key, failure, reason, error,
                    attempts, owner, action, record, record_raw, line,
                    record_original_bytes, record_sha256, n)
             ORDER BY n
             RETURNING id",
        )
        .await?;
    let rows = client
        .query(
            &insert,
            &[
                &flows,
                &objects,
                &record_keys,
                &idempotency_keys,
                &failures,
                &reasons,
                &errors,
                &attempts,
                &owners,
                &actions,
                &records,
                &now,
                &raws,
                &lines,
                &original_bytes,
                &digests,
            ],
        )
        .await?;
    // IDs come from one sequence, drawn in the order the rows are inserted (by `n`).
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    let forget = client
        .prepare_cached(
            "DELETE FROM retry_state r USING UNNEST($1::TEXT[], $2::TEXT[]) AS d(flow, key)
             WHERE r.flow = d.flow AND r.idempotency_key = d.key",
        )
        .await?;
    client
        .execute(&forget, &[&flows, &idempotency_keys])
        .await?;
    let mut alerts: (Vec<&str>, Vec<&str>, Vec<String>, Vec<i64>) = Default::default();
    for ((_, alert), id) in letters.iter().zip(&ids) {
        let Some(alert) = alert else { continue };
        alerts.0.push(&alert.owner);
        alerts.1.push(&alert.url);
        alerts.2.push(alert.payload_text(Some(*id)));
        alerts.3.push(*id);
    }
    if !alerts.3.is_empty() {
        let queue = client
            .prepare_cached(
                "INSERT INTO alert_outbox (owner, url, payload, dead_letter_id, created_at)
                 SELECT owner, url, payload, dead_letter_id, $5
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[]) WITH ORDINALITY
                   AS a(owner, url, payload, dead_letter_id, n)
                 ORDER BY n",
            )
            .await?;
        client
            .execute(&queue, &[&alerts.0, &alerts.1, &alerts.2, &alerts.3, &now])
            .await?;
    }
    Ok(ids)
}

/// The full length of an original kept only in part, as stored.
fn truncated_bytes(letter: &NewDeadLetter) -> Option<i64> {
    letter
        .record_truncated
        .as_ref()
        .map(RecordTruncation::stored_bytes)
}

/// The exact bytes of an original that TEXT cannot hold (not UTF-8, or with NUL): such an
/// original also goes whole into `record_raw`, and `record` keeps a readable copy.
fn raw_original(letter: &NewDeadLetter) -> Option<&[u8]> {
    let exact = letter.record.as_str().filter(|text| !text.contains('\0'));
    exact.is_none().then(|| letter.record.as_bytes())
}

async fn insert_dead_letter(
    client: &impl deadpool_postgres::GenericClient,
    letter: &NewDeadLetter,
    now: &str,
) -> Result<i64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO dead_letters (flow, object, record_key, idempotency_key, failure,
               reason, error, attempts, owner, action, record, created_at, updated_at,
               record_raw, line, record_original_bytes, record_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15,
               $16)
             RETURNING id",
        )
        .await?;
    let raw = raw_original(letter);
    let row = client
        .query_one(
            &statement,
            &[
                &letter.flow,
                &letter.object,
                &letter.record_key,
                &letter.idempotency_key,
                &letter.failure,
                &letter.reason,
                &text(&letter.error),
                &i64::from(letter.attempts),
                &letter.owner,
                &letter.action,
                &text(&letter.record.to_text_lossy()),
                &now,
                &raw,
                &letter.line.map(|line| line as i64),
                &truncated_bytes(letter),
                &letter.record_truncated.as_ref().map(|t| &t.sha256),
            ],
        )
        .await?;
    Ok(row.get(0))
}

async fn insert_alert(
    client: &impl deadpool_postgres::GenericClient,
    alert: &OutboxAlert,
    dead_letter_id: Option<i64>,
    now: &str,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO alert_outbox (owner, url, payload, dead_letter_id, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &alert.owner,
                &alert.url,
                &alert.payload_text(dead_letter_id),
                &dead_letter_id,
                &now,
            ],
        )
        .await
        .map(drop)
}

async fn audit(
    client: &impl deadpool_postgres::GenericClient,
    flow: Option<&str>,
    action: &str,
    actor: &str,
    detail: &Value,
    now: &str,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO audit (at, flow, action, actor, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[&now, &flow, &action, &actor, &detail.to_string()],
        )
        .await
        .map(drop)
}

fn read_dead_letter(row: &tokio_postgres::Row) -> DeadLetter {
    let raw: Option<Vec<u8>> = row.get(17);
    DeadLetter {
        id: row.get(0),
        letter: NewDeadLetter {
            flow: row.get(1),
            object: row.get(2),
            record_key: row.get(3),
            idempotency_key: row.get(4),
            failure: row.get(5),
            reason: row.get(6),
            error: row.get(7),
            attempts: count(row.get(8)),
            owner: row.get(9),
            action: row.get(10),
            record: match raw {
                Some(bytes) => Original::new(bytes),
                None => Original::from(row.get::<_, String>(11)),
            },
            line: row.get::<_, Option<i64>>(18).map(|line| line.max(0) as u64),
            record_truncated: RecordTruncation::from_columns(row.get(19), row.get(20)),
        },
        status: DeadLetterStatus::parse(row.get(12)),
        created_at: row.get(13),
        updated_at: row.get(14),
        resolved_by: row.get(15),
        note: row.get(16),
    }
}

fn retry_state(first_failure_ms: i64, attempts: i64) -> RetryState {
    RetryState {
        first_failure_ms,
        attempts: count(attempts),
    }
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// Free text for a TEXT column, which cannot hold NUL.
fn text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// Takes `schema=NAME` out of the URL's query (the driver rejects options it does not know)
/// and checks the name: it is spliced into SQL, so only plain identifiers are accepted.
pub(crate) fn split_schema(url: &str) -> Result<(String, String), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_owned();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = name.to_owned(),
            None => kept.push(pair),
        }
    }
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(StoreError::BadTarget {
            target: crate::redact::redact(url).into_owned(),
            message: format!(
                "schema `{schema}` is not a plain name (lower-case letters, digits and `_`, \
                 at most 63)"
            ),
        });
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_comes_out_of_the_url_and_must_be_plain() {
        let (url, schema) = split_schema("postgres://127.0.0.1/test?schema=s_1").unwrap();
        assert_eq!(
            (url.as_str(), schema.as_str()),
            ("postgres://127.0.0.1/test", "s_1")
        );
        let (url, schema) = split_schema("postgresql://u@h/db?sslmode=disable&schema=abc").unwrap();
        assert_eq!(url, "postgresql://u@h/db?sslmode=disable");
        assert_eq!(schema, "abc");
        let (_, schema) = split_schema("postgres://h/db").unwrap();
        assert_eq!(schema, DEFAULT_SCHEMA);
        assert!(split_schema("postgres://h/db?schema=a\";drop").is_err());
    }
}
