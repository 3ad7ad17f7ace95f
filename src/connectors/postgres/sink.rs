//! Writing a batch of records into a table in one transaction, effectively once.
//!
//! Every record's idempotency key goes into the key column, under a unique constraint, and a
//! row whose key is already there is left alone (`ON CONFLICT DO NOTHING`): a batch written
//! again, after a crash between this transaction and the state store's commit, posts nothing
//! twice. Values travel as JSON text and are converted by PostgreSQL itself
//! (`jsonb_populate_record`), so a decimal keeps every digit. When the batch fails on a
//! record's data, it is written again record by record under savepoints, in one transaction
//! still, and only the records PostgreSQL refuses come back rejected.

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
    /// The columns to fill, when the flow names them; otherwise the records' fields.
    columns: Option<Vec<String>>,
}

impl PostgresSink {
    /// Connects and checks the table, its columns, the privilege to insert and the unique
    /// constraint on the key column, by running the insert with no row.
    pub(super) async fn open(
        system: &PostgresConfig,
        to: &PostgresToConfig,
    ) -> Result<Self, ConnectorError> {
        let target = target(system);
        let pool = super::pool(system, false)?;
        let sink = Self {
            pool,
            target,
            table: quote_table(&to.table),
            key_column: to.key_column.clone(),
            columns: to.columns.clone(),
        };
        let mut client = connection(&sink.pool, &sink.target).await?;
        let columns = sink.columns.clone().unwrap_or_default();
        let pg = |err: tokio_postgres::Error| classify(&err, &sink.target);
        // Inserting no row, and rolling back: only running the statement makes PostgreSQL
        // look for the unique constraint ON CONFLICT needs, and check the privilege to insert.
        let tx = client.transaction().await.map_err(pg)?;
        let none: Vec<&str> = Vec::new();
        tx.execute(&sink.insert_sql(&columns), &[&none, &none])
            .await
            .map_err(pg)?;
        tx.rollback().await.map_err(pg)?;
        Ok(sink)
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
             ON CONFLICT ({key}) DO NOTHING",
            table = self.table,
            names = names.join(", "),
            values = values.join(", "),
            key_literal = quote_literal(&self.key_column),
        )
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
                Ok(fields) => {
                    if self.columns.is_none() {
                        seen.extend(fields.into_keys());
                    }
                }
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
        let mut rejected = Vec::new();
        let columns = self.columns_of(records, &mut rejected);
        let sendable: Vec<usize> = (0..records.len())
            .filter(|index| !rejected.iter().any(|(refused, _)| refused == index))
            .collect();
        if sendable.is_empty() {
            return Ok(BatchOutcome { rejected });
        }
        let mut bodies = Vec::with_capacity(sendable.len());
        for &index in &sendable {
            // The runtime encodes records with serde_json: always UTF-8.
            let body = std::str::from_utf8(records[index].json).map_err(|err| {
                ConnectorError::internal(format!("a record's JSON is not UTF-8: {err}"))
            })?;
            bodies.push(body);
        }
        let keys: Vec<&str> = sendable
            .iter()
            .map(|&index| records[index].idempotency_key)
            .collect();

        let mut client = connection(&self.pool, &self.target).await?;
        let sql = self.insert_sql(&columns);
        let written = self
            .insert(&mut client, &sql, &sendable, &bodies, &keys, &mut rejected)
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

impl PostgresSink {
    /// Inserts the records `sendable` (with their `bodies` and `keys`) in one transaction:
    /// all at once, or, when a record's data breaks the statement, one by one under
    /// savepoints, adding those refused to `rejected`.
    async fn insert(
        &self,
        client: &mut Object,
        sql: &str,
        sendable: &[usize],
        bodies: &[&str],
        keys: &[&str],
        rejected: &mut Vec<(usize, ConnectorError)>,
    ) -> Result<(), ConnectorError> {
        let pg = |err: tokio_postgres::Error| classify(&err, &self.target);
        let statement = client.prepare_cached(sql).await.map_err(pg)?;

        let tx = client.transaction().await.map_err(pg)?;
        let whole = tx.execute(&statement, &[&bodies, &keys]).await;
        match whole {
            Ok(_) => {
                return tx.commit().await.map_err(pg);
            }
            Err(err) => {
                let err = pg(err);
                if err.fault != Fault::Record {
                    return Err(err);
                }
                // Some record's data broke a type or a constraint: find which, below.
                tx.rollback().await.map_err(pg)?;
            }
        }

        let mut tx = client.transaction().await.map_err(pg)?;
        for (position, &index) in sendable.iter().enumerate() {
            let savepoint = tx.savepoint("record").await.map_err(pg)?;
            let (body, key) = (&bodies[position..=position], &keys[position..=position]);
            let one = savepoint.execute(&statement, &[&body, &key]).await;
            match one {
                Ok(_) => savepoint.commit().await.map_err(pg)?,
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
}
