//! Writing a batch of records into a table in one transaction, effectively once.
//!
//! Every record's idempotency key goes into the key column, under a unique constraint, and a
//! row whose key is already there is left alone (`ON CONFLICT DO NOTHING`): a batch written
//! again, after a crash between this transaction and the state store's commit, posts nothing
//! twice. A key already there is compared with the record, column by column: the same content
//! is that harmless repeat; different content means another writer (another flow) used the
//! key, and the record is rejected rather than counted as delivered. Values travel as JSON
//! text and are converted by PostgreSQL itself (`jsonb_populate_record`), so a decimal keeps
//! every digit.
//!
//! When the batch fails on a record's data (a type, a constraint, a trigger's `RAISE`, a
//! deferred constraint at `COMMIT`), it is written again record by record under savepoints,
//! in one transaction still, with every constraint checked at once so that a deferred one
//! fails at its record's savepoint; only the records PostgreSQL refuses come back rejected.
//! Without `columns:`, a record carrying a field the table lacks is rejected alone, naming it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use indexmap::IndexSet;
use serde::de::IgnoredAny;

use super::config::{PostgresConfig, PostgresToConfig, quote_ident, quote_literal, quote_table};
use super::{classify, connection, target};
use crate::connectors::api::{BatchOutcome, ConnectorError, Encoded, Fault, Sink, SinkStyle};

/// A sink into one table.
pub(super) struct PostgresSink {
    pool: Pool,
    target: String,
    /// The table, quoted.
    table: String,
    /// The key column, as named.
    key_column: String,
    /// The table, as named, for messages.
    table_name: String,
    /// The columns to fill, when the flow names them; otherwise the records' fields.
    columns: Option<Vec<String>>,
    /// The table's columns, read at open: a record's field outside them is refused alone.
    table_columns: HashSet<String>,
    /// The columns whose values `COPY` text input fills as the JSON path does (see
    /// [`super::copy`]): batches filling only these may take the fast path.
    copyable: HashSet<String>,
}

impl PostgresSink {
    /// Connects and checks the table, its columns, the privilege to insert and the unique
    /// constraint on the key column, by running the insert with no row.
    pub(super) async fn open(
        system: &PostgresConfig,
        to: &PostgresToConfig,
        schema: Option<&str>,
    ) -> Result<Self, ConnectorError> {
        let target = target(system);
        let pool = super::pool(system, false)?;
        let sink = Self {
            pool,
            target,
            table: quote_table(&to.table),
            key_column: to.key_column.clone(),
            table_name: to.table.clone(),
            columns: to.columns.clone(),
            table_columns: HashSet::new(),
            copyable: HashSet::new(),
        };
        let mut client = connection(&sink.pool, &sink.target).await?;
        let columns = sink.columns.clone().unwrap_or_default();
        let pg = |err: tokio_postgres::Error| classify(&err, &sink.target);
        if let Some(schema) = schema {
            run_schema(&mut client, schema, &sink.target).await?;
        }
        // Inserting no row, and rolling back: only running the statement makes PostgreSQL
        // look for the unique constraint ON CONFLICT needs, and check the privilege to insert.
        let tx = client.transaction().await.map_err(pg)?;
        let none: Vec<&str> = Vec::new();
        tx.execute(&sink.insert_sql(&columns), &[&none, &none])
            .await
            .map_err(pg)?;
        let described = tx
            .prepare(&format!("SELECT * FROM {} LIMIT 0", sink.table))
            .await
            .map_err(pg)?;
        tx.rollback().await.map_err(pg)?;
        let table_columns = described
            .columns()
            .iter()
            .map(|column| column.name().to_owned())
            .collect();
        let copyable = described
            .columns()
            .iter()
            .filter(|column| super::copy::copyable(column.type_()))
            .map(|column| column.name().to_owned())
            .collect();
        drop(client);
        Ok(Self {
            table_columns,
            copyable,
            ..sink
        })
    }

    /// Inserts one row per element of `$1` (the records' JSON) and `$2` (their keys), filling
    /// `columns` and the key column, skipping keys already there.
    fn insert_sql(&self, columns: &[String]) -> String {
        let key = quote_ident(&self.key_column);
        let mut names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        names.push(key.clone());
        let values: Vec<String> = names.iter().map(|name| format!("r.{name}")).collect();
        format!(
            "INSERT INTO {table} ({names}) \
             SELECT {values} \
               FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(body, ikey, n) \
              CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, \
                    u.body::jsonb || jsonb_build_object({key_literal}, u.ikey)) AS r \
              ORDER BY u.n \
             ON CONFLICT ({key}) DO NOTHING \
             RETURNING {key}::text",
            table = self.table,
            names = names.join(", "),
            values = values.join(", "),
            key_literal = quote_literal(&self.key_column),
        )
    }

    /// Compares the records of `$1` (JSON) and `$2` (keys) with the rows already holding
    /// their keys, on `columns`: one row per differing column, with the key, the column, the
    /// stored value and the record's, as text. `None` when there is nothing but the key.
    fn compare_sql(&self, columns: &[String]) -> Option<String> {
        if columns.is_empty() {
            return None;
        }
        let key = quote_ident(&self.key_column);
        let pairs: Vec<String> = columns
            .iter()
            .map(|column| {
                let name = quote_ident(column);
                format!(
                    "({}, t.{name}::text, r.{name}::text)",
                    quote_literal(column)
                )
            })
            .collect();
        Some(format!(
            "SELECT u.ikey, d.col, d.stored, d.given \
               FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(body, ikey, n) \
              CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, \
                    u.body::jsonb || jsonb_build_object({key_literal}, u.ikey)) AS r \
               JOIN {table} AS t ON t.{key} = r.{key} \
              CROSS JOIN LATERAL (VALUES {pairs}) AS d(col, stored, given) \
              WHERE d.stored IS DISTINCT FROM d.given \
              ORDER BY u.n",
            table = self.table,
            key_literal = quote_literal(&self.key_column),
            pairs = pairs.join(", "),
        ))
    }

    /// The columns to fill for `records`: the configured ones, or every top-level field in
    /// the order first seen. A record that is not a JSON object is refused here.
    fn columns_of(
        &self,
        records: &[Encoded<'_>],
        rejected: &mut Vec<(usize, ConnectorError)>,
    ) -> Vec<String> {
        let mut seen = IndexSet::new();
        for (index, record) in records.iter().enumerate() {
            // Only the names are read: numbers are not parsed, so none is rounded on the way.
            match serde_json::from_slice::<indexmap::IndexMap<String, IgnoredAny>>(record.json) {
                Ok(fields) if self.columns.is_none() => {
                    // A field the table lacks refuses its record alone: ignoring it could drop
                    // data a mistyped mapping meant to write; adding it to the statement would
                    // fail every record of the batch.
                    let unknown: Vec<&str> = fields
                        .keys()
                        .filter(|name| !self.table_columns.contains(name.as_str()))
                        .map(String::as_str)
                        .collect();
                    if unknown.is_empty() {
                        seen.extend(fields.into_keys());
                    } else {
                        rejected.push((
                            index,
                            ConnectorError::rejected(format!(
                                "record {}: field(s) {} are not columns of the table {}; \
                                 map them to columns of the table, or drop them in the mapping",
                                record.idempotency_key,
                                unknown.join(", "),
                                self.table_name
                            )),
                        ));
                    }
                }
                Ok(_) => {}
                Err(err) => rejected.push((
                    index,
                    ConnectorError::rejected(format!(
                        "record {}: not a JSON object, which a row needs: {err}",
                        record.idempotency_key
                    )),
                )),
            }
        }
        match &self.columns {
            Some(columns) => columns.clone(),
            // The key column is filled from the idempotency key, whatever the record says.
            None => seen
                .into_iter()
                .filter(|name| name != &self.key_column)
                .collect(),
        }
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::Batch
    }

    async fn write_batch(&self, records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        // With the columns named, the fast path needs no look at the records first: `rows`
        // takes objects only and leaves anything else to the regular path, which looks at
        // each record. That look is a whole JSON parse of the batch, on the write stage.
        let tried_copy = match &self.columns {
            Some(columns) if self.copies(columns) => {
                let bodies = utf8_bodies(records.iter())?;
                let keys: Vec<&str> = records.iter().map(|r| r.idempotency_key).collect();
                if self.try_copy(columns, &bodies, &keys).await? {
                    return Ok(BatchOutcome::default());
                }
                true
            }
            _ => false,
        };
        let mut rejected = Vec::new();
        let columns = self.columns_of(records, &mut rejected);
        let sendable: Vec<usize> = (0..records.len())
            .filter(|index| !rejected.iter().any(|(refused, _)| refused == index))
            .collect();
        if sendable.is_empty() {
            return Ok(BatchOutcome { rejected });
        }
        let bodies = utf8_bodies(sendable.iter().map(|&index| &records[index]))?;
        let keys: Vec<&str> = sendable
            .iter()
            .map(|&index| records[index].idempotency_key)
            .collect();

        if !tried_copy && self.copies(&columns) && self.try_copy(&columns, &bodies, &keys).await? {
            rejected.sort_by_key(|(index, _)| *index);
            return Ok(BatchOutcome { rejected });
        }
        let mut client = connection(&self.pool, &self.target).await?;
        let statements = Statements {
            insert: self.insert_sql(&columns),
            compare: self.compare_sql(&columns),
        };
        let written = self
            .insert(
                &mut client,
                &statements,
                &sendable,
                &bodies,
                &keys,
                &mut rejected,
            )
            .await;
        if let Err(err) = &written
            && err.fault == Fault::External
        {
            // The session may be broken (the server cut it): never hand it out again.
            drop(Object::take(client));
        }
        written?;
        rejected.sort_by_key(|(index, _)| *index);
        Ok(BatchOutcome { rejected })
    }
}

/// Runs the system's schema file in one transaction, under a lock of its own: two flows
/// opening at once would otherwise race on `CREATE ... IF NOT EXISTS`, which PostgreSQL does
/// not make atomic (the loser fails on a unique index of the catalog).
async fn run_schema(client: &mut Object, schema: &str, target: &str) -> Result<(), ConnectorError> {
    let failed = |err: tokio_postgres::Error| {
        let mut err = classify(&err, target);
        err.message = format!(
            "{}, running the system's schema file; write it idempotent (CREATE ... IF NOT              EXISTS) and without BEGIN or COMMIT",
            err.message
        );
        err
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
        .await
        .map_err(failed)?;
    tx.batch_execute(schema).await.map_err(failed)?;
    tx.commit().await.map_err(failed)
}

/// The records' JSON as text (the runtime encodes records with serde_json: always UTF-8).
fn utf8_bodies<'a>(
    records: impl Iterator<Item = &'a Encoded<'a>>,
) -> Result<Vec<&'a str>, ConnectorError> {
    records
        .map(|record| {
            std::str::from_utf8(record.json).map_err(|err| {
                ConnectorError::internal(format!("a record's JSON is not UTF-8: {err}"))
            })
        })
        .collect()
}

/// The advisory lock the schema files of all flows take ("swyd" "schm" in ASCII).
const SCHEMA_LOCK: i64 = 0x7377_7964_7363_686d;

/// The statements of one batch.
struct Statements {
    /// Inserts records, returning the keys written.
    insert: String,
    /// Compares records with the rows holding their keys already.
    compare: Option<String>,
}

impl PostgresSink {
    /// Whether a batch filling `columns` may take the `COPY` fast path: every column, the key
    /// column included, takes text input as the JSON path fills it.
    fn copies(&self, columns: &[String]) -> bool {
        columns.iter().all(|column| self.copyable.contains(column))
            && self.copyable.contains(&self.key_column)
    }

    /// Writes the records with `COPY` when the text format carries them exactly; `false`
    /// when they must take the regular path (nothing was written).
    async fn try_copy(
        &self,
        columns: &[String],
        bodies: &[&str],
        keys: &[&str],
    ) -> Result<bool, ConnectorError> {
        let Some(rows) = super::copy::rows(columns, bodies, keys) else {
            return Ok(false);
        };
        let mut client = connection(&self.pool, &self.target).await?;
        let copied = super::copy::copy(
            &mut client,
            &self.target,
            &self.table,
            columns,
            &self.key_column,
            rows,
        )
        .await;
        if !matches!(copied, Ok(true)) {
            // Refused, the regular path finds out by whom on a fresh session (a COPY cut short
            // can leave the protocol's state behind on this one); failed, the session may be
            // broken (the server cut it). Either way, never hand it out again.
            drop(Object::take(client));
        }
        copied
    }

    /// Inserts the records `sendable` (with their `bodies` and `keys`) in one transaction:
    /// all at once, or, when a record's data breaks the statement or the commit, one by one
    /// under savepoints, adding those refused to `rejected`.
    async fn insert(
        &self,
        client: &mut Object,
        statements: &Statements,
        sendable: &[usize],
        bodies: &[&str],
        keys: &[&str],
        rejected: &mut Vec<(usize, ConnectorError)>,
    ) -> Result<(), ConnectorError> {
        let pg = |err: tokio_postgres::Error| classify(&err, &self.target);
        let statement = client
            .prepare_cached(&statements.insert)
            .await
            .map_err(pg)?;

        // The transaction ends with this block, whichever way it went.
        let failed = {
            let tx = client.transaction().await.map_err(pg)?;
            let whole = tx.query(&statement, &[&bodies, &keys]).await;
            match whole {
                Ok(rows) => {
                    let written: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
                    let mut repeated = Vec::new();
                    for (position, key) in keys.iter().enumerate() {
                        if !written.contains(*key) {
                            repeated.push(position);
                        }
                    }
                    self.refuse_different(
                        &tx, statements, &repeated, sendable, bodies, keys, rejected,
                    )
                    .await?;
                    // A deferred constraint speaks only now: for the batch as a whole.
                    match tx.commit().await.map_err(pg) {
                        Ok(()) => return Ok(()),
                        Err(err) => err,
                    }
                }
                Err(err) => {
                    let err = pg(err);
                    if err.fault == Fault::Record {
                        tx.rollback().await.map_err(pg)?;
                    }
                    err
                }
            }
        };
        if failed.fault != Fault::Record {
            return Err(failed);
        }
        // Some record's data broke a type, a constraint or a trigger: find which, below.
        rejected.retain(|(index, _)| !sendable.contains(index));

        let mut tx = client.transaction().await.map_err(pg)?;
        // Every constraint at once: a deferred one then fails at its record's savepoint, not
        // at COMMIT for the whole batch.
        tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .await
            .map_err(pg)?;
        for (position, &index) in sendable.iter().enumerate() {
            let savepoint = tx.savepoint("record").await.map_err(pg)?;
            let (body, key) = (&bodies[position..=position], &keys[position..=position]);
            let one = savepoint.query(&statement, &[&body, &key]).await;
            match one {
                Ok(rows) => {
                    if rows.is_empty() {
                        self.refuse_different(
                            &savepoint,
                            statements,
                            &[0],
                            &sendable[position..=position],
                            body,
                            key,
                            rejected,
                        )
                        .await?;
                    }
                    savepoint.commit().await.map_err(pg)?
                }
                Err(err) => {
                    let err = pg(err);
                    if err.fault != Fault::Record {
                        return Err(err);
                    }
                    savepoint.rollback().await.map_err(pg)?;
                    let message = format!("record {}: {}", keys[position], err.message);
                    rejected.push((index, ConnectorError { message, ..err }));
                }
            }
        }
        tx.commit().await.map_err(pg)
    }

    /// Of the records at `repeated` (positions in `bodies` and `keys`), whose keys were
    /// already in the table, rejects those whose stored row differs: another writer used the
    /// key for something else, and counting the record as delivered would lose it.
    #[allow(clippy::too_many_arguments)]
    async fn refuse_different(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        statements: &Statements,
        repeated: &[usize],
        sendable: &[usize],
        bodies: &[&str],
        keys: &[&str],
        rejected: &mut Vec<(usize, ConnectorError)>,
    ) -> Result<(), ConnectorError> {
        let Some(compare) = &statements.compare else {
            return Ok(());
        };
        if repeated.is_empty() {
            return Ok(());
        }
        let pg = |err: tokio_postgres::Error| classify(&err, &self.target);
        let their_bodies: Vec<&str> = repeated.iter().map(|&at| bodies[at]).collect();
        let their_keys: Vec<&str> = repeated.iter().map(|&at| keys[at]).collect();
        let statement = tx.prepare_cached(compare).await.map_err(pg)?;
        let differing = tx
            .query(&statement, &[&their_bodies, &their_keys])
            .await
            .map_err(pg)?;
        let position_of: HashMap<&str, usize> = repeated.iter().map(|&at| (keys[at], at)).collect();
        let mut refused = HashSet::new();
        for row in &differing {
            let key: String = row.get(0);
            let Some(&at) = position_of.get(key.as_str()) else {
                continue;
            };
            if !refused.insert(at) {
                continue;
            }
            let (column, stored, given): (String, Option<String>, Option<String>) =
                (row.get(1), row.get(2), row.get(3));
            let shown = |value: Option<String>| value.unwrap_or_else(|| "NULL".to_owned());
            rejected.push((
                sendable[at],
                ConnectorError::rejected(format!(
                    "record {key}: idempotency key {key} is already posted in {} with different \
                     content (column {column}: stored {}, this record {}); another flow or \
                     writer uses the same keys: make the keys unique to this flow (a prefix in \
                     the mapping), or remove the stored row if it is wrong",
                    self.table_name,
                    shown(stored),
                    shown(given)
                )),
            ));
        }
        Ok(())
    }
}
