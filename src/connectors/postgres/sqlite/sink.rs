//! Writing a batch of records into a SQLite table in one transaction, effectively once: the
//! same contract as the PostgreSQL sink (see its module doc). Each record is one `INSERT ...
//! ON CONFLICT (key) DO NOTHING`; a key already stored is compared with the record, column by
//! column, by SQLite's own `IS` (so `12` and `'12'` in an integer column are the same), and a
//! record whose content differs is refused. A record a constraint refuses fails alone: SQLite
//! undoes the failing statement, not the transaction.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use serde_json::{Map, Value};

use super::super::config::{PostgresToConfig, quote_ident};
use super::{Db, classify, shown, table_name};
use crate::connectors::api::{BatchOutcome, ConnectorError, Encoded, Fault, Sink, SinkStyle};

/// A sink into one table of a SQLite file.
pub(in crate::connectors::postgres) struct SqliteSink {
    db: Db,
    /// What the sink needs inside the blocking calls.
    table: std::sync::Arc<Table>,
}

/// The table written.
struct Table {
    /// Quoted.
    quoted: String,
    /// As named, for messages.
    name: String,
    /// The key column, as named.
    key_column: String,
    /// The columns the flow names, if it does; otherwise each record's fields.
    columns: Option<Vec<String>>,
    /// The table's columns: a record's field outside them is refused alone.
    table_columns: HashSet<String>,
}

impl SqliteSink {
    /// Opens the file, runs the schema, and checks the table, its columns and the unique
    /// constraint on the key column (by preparing the insert, as SQLite checks the `ON
    /// CONFLICT` target then).
    pub(in crate::connectors::postgres) async fn open(
        db: Db,
        to: &PostgresToConfig,
    ) -> Result<Self, ConnectorError> {
        let quoted = table_name(&to.table, "to.table")?;
        let name = to.table.clone();
        let key_column = to.key_column.clone();
        let columns = to.columns.clone();
        let table = db
            .with(move |conn, shown| {
                let table_columns = describe(conn, &quoted, &name, shown)?;
                let mut table = Table {
                    quoted,
                    name,
                    key_column,
                    columns,
                    table_columns,
                };
                for column in table.columns.iter().flatten().chain([&table.key_column]) {
                    if !table.table_columns.contains(column) {
                        return Err(ConnectorError::spec(format!(
                            "SQLite at {shown}: \"{column}\" is not a column of the table {}",
                            table.name
                        )));
                    }
                }
                let columns = table.columns.clone().unwrap_or_default();
                conn.prepare(&table.insert_sql(&columns)).map_err(|err| {
                    let mut err = classify(&err, shown);
                    if err.message.contains("ON CONFLICT") {
                        err.message = format!(
                            "{}: to.key_column \"{}\" needs a UNIQUE constraint (or the PRIMARY \
                             KEY) of its own in the table {}",
                            err.message, table.key_column, table.name
                        );
                    }
                    err
                })?;
                table.table_columns.shrink_to_fit();
                Ok(table)
            })
            .await?;
        Ok(Self {
            db,
            table: std::sync::Arc::new(table),
        })
    }
}

/// The columns of `table`, or a workspace error when there is no such table.
fn describe(
    conn: &Connection,
    quoted: &str,
    name: &str,
    shown: &str,
) -> Result<HashSet<String>, ConnectorError> {
    let sqlite = |err: rusqlite::Error| classify(&err, shown);
    let mut statement = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info({})",
            quote_text(quoted)
        ))
        .map_err(sqlite)?;
    let columns = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(sqlite)?
        .collect::<Result<HashSet<String>, _>>()
        .map_err(sqlite)?;
    if columns.is_empty() {
        return Err(ConnectorError::spec(format!(
            "SQLite at {shown}: there is no table {name}; create it in the file the system's \
             schema: names (CREATE TABLE IF NOT EXISTS {name} ...)"
        )));
    }
    Ok(columns)
}

/// The unquoted table name as a SQL string literal (`pragma_table_info` takes a name).
fn quote_text(quoted: &str) -> String {
    let name = &quoted[1..quoted.len() - 1];
    format!("'{}'", name.replace("\"\"", "\"").replace('\'', "''"))
}

impl Table {
    /// Inserts one row: `columns`, then the key column; a key already there is skipped.
    fn insert_sql(&self, columns: &[String]) -> String {
        let key = quote_ident(&self.key_column);
        let mut names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        names.push(key.clone());
        let marks = vec!["?"; names.len()].join(", ");
        format!(
            "INSERT INTO {} ({}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING",
            self.quoted,
            names.join(", ")
        )
    }

    /// For the row holding key `?1`: per column, whether the stored value `IS` the record's
    /// (`?2`...), and the stored value.
    fn compare_sql(&self, columns: &[String]) -> String {
        let tests: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(index, column)| {
                let name = quote_ident(column);
                format!("{name} IS ?{}, {name}", index + 2)
            })
            .collect();
        format!(
            "SELECT {} FROM {} WHERE {} = ?1",
            tests.join(", "),
            self.quoted,
            quote_ident(&self.key_column)
        )
    }

    /// The fields of a record to write, in column order, or why the record is refused.
    fn row(&self, record: &Encoded<'_>) -> Result<(Vec<String>, Vec<Value>), ConnectorError> {
        let fields: Map<String, Value> = serde_json::from_slice(record.json).map_err(|err| {
            ConnectorError::rejected(format!(
                "record {}: not a JSON object, which a row needs: {err}",
                record.idempotency_key
            ))
        })?;
        if let Some(columns) = &self.columns {
            // A field the record lacks is NULL, as PostgreSQL's jsonb_populate_record has it.
            let values = columns
                .iter()
                .map(|column| fields.get(column).cloned().unwrap_or(Value::Null))
                .collect();
            return Ok((columns.clone(), values));
        }
        let unknown: Vec<&str> = fields
            .keys()
            .filter(|name| !self.table_columns.contains(name.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ConnectorError::rejected(format!(
                "record {}: field(s) {} are not columns of the table {}; map them to columns \
                 of the table, or drop them in the mapping",
                record.idempotency_key,
                unknown.join(", "),
                self.name
            )));
        }
        // The key column is filled from the idempotency key, whatever the record says.
        Ok(fields
            .into_iter()
            .filter(|(name, _)| name != &self.key_column)
            .unzip())
    }

    /// Writes `rows` (index in the batch, key, columns, values) in one transaction; returns
    /// the records refused.
    fn write(
        &self,
        conn: &mut Connection,
        shown_at: &str,
        rows: &[(usize, String, Vec<String>, Vec<Value>)],
    ) -> Result<Vec<(usize, ConnectorError)>, ConnectorError> {
        let sqlite = |err: rusqlite::Error| classify(&err, shown_at);
        let mut rejected = Vec::new();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut statements: HashMap<&[String], (String, String)> = HashMap::new();
        for (index, key, columns, values) in rows {
            let (insert, compare) = statements
                .entry(columns.as_slice())
                .or_insert_with(|| (self.insert_sql(columns), self.compare_sql(columns)));
            let mut params: Vec<rusqlite::types::Value> =
                values.iter().map(super::to_sql).collect();
            params.push(rusqlite::types::Value::Text(key.clone()));
            let inserted = tx
                .prepare_cached(insert)
                .and_then(|mut statement| statement.execute(params_from_iter(params.iter())));
            match inserted {
                Ok(0) if !columns.is_empty() => {
                    let refusal = self.differs(&tx, shown_at, compare, key, columns, &params)?;
                    if let Some(refusal) = refusal {
                        rejected.push((*index, refusal));
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let err = sqlite(err);
                    if err.fault != Fault::Record {
                        // Dropping the transaction rolls the batch back: nothing is known
                        // written, and the whole batch may be tried again.
                        return Err(err);
                    }
                    let message = format!("record {key}: {}", err.message);
                    rejected.push((*index, ConnectorError { message, ..err }));
                }
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(rejected)
    }

    /// Whether the row stored under `key` differs from the record (`params`: its values,
    /// then the key): the refusal naming the first differing column, if it does.
    fn differs(
        &self,
        tx: &rusqlite::Transaction<'_>,
        shown_at: &str,
        compare: &str,
        key: &str,
        columns: &[String],
        params: &[rusqlite::types::Value],
    ) -> Result<Option<ConnectorError>, ConnectorError> {
        let sqlite = |err: rusqlite::Error| classify(&err, shown_at);
        let mut statement = tx.prepare_cached(compare).map_err(sqlite)?;
        // The key first (?1), then the values (?2...).
        let mut ordered = Vec::with_capacity(params.len());
        ordered.push(&params[params.len() - 1]);
        ordered.extend(&params[..params.len() - 1]);
        let mut rows = statement.query(params_from_iter(ordered)).map_err(sqlite)?;
        let Some(row) = rows.next().map_err(sqlite)? else {
            return Ok(None);
        };
        for (index, column) in columns.iter().enumerate() {
            let same: bool = row.get(index * 2).map_err(sqlite)?;
            if same {
                continue;
            }
            let stored = shown(row.get_ref(index * 2 + 1).map_err(sqlite)?);
            let given = shown((&params[index]).into());
            return Ok(Some(ConnectorError::rejected(format!(
                "record {key}: idempotency key {key} is already posted in {} with different \
                 content (column {column}: stored {stored}, this record {given}); another flow \
                 or writer uses the same keys: make the keys unique to this flow (a prefix in \
                 the mapping), or remove the stored row if it is wrong",
                self.name
            ))));
        }
        Ok(None)
    }
}

#[async_trait]
impl Sink for SqliteSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::Batch
    }

    async fn write_batch(&self, records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        let mut rejected = Vec::new();
        let mut rows = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match self.table.row(record) {
                Ok((columns, values)) => {
                    rows.push((index, record.idempotency_key.to_owned(), columns, values))
                }
                Err(err) => rejected.push((index, err)),
            }
        }
        if !rows.is_empty() {
            let table = std::sync::Arc::clone(&self.table);
            let refused = self
                .db
                .with(move |conn, shown| table.write(conn, shown, &rows))
                .await?;
            rejected.extend(refused);
        }
        rejected.sort_by_key(|(index, _)| *index);
        Ok(BatchOutcome { rejected })
    }
}
