//! Reading a SQLite table or query in `(cursor, key)` order, batch by batch.
//!
//! The hole of keyset reading (see the PostgreSQL source) is narrower here, since SQLite has
//! one writer at a time: each read holds the write lock (`BEGIN IMMEDIATE`), so no posting
//! transaction is half done while it reads, and any later one commits after it. What is left
//! is a tie: a later transaction can take the very cursor value of the last row read (a
//! `CURRENT_TIMESTAMP` cursor has whole seconds) with a smaller key. So rows on the horizon
//! (the largest cursor value) are read only once `CURRENT_TIMESTAMP` has passed it; a number
//! cursor (an `INTEGER PRIMARY KEY`, never handed out twice) never waits. A cursor written in
//! another text form than `YYYY-MM-DD HH:MM:SS` is compared as text, so rows on the horizon
//! may wait longer, never less. A row whose cursor or key is NULL fails the read, naming it.

use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use serde_json::{Map, Value, json};

use super::super::config::{self, PostgresFromConfig, quote_ident};
use super::{Db, classify, shown, table_name, to_json, to_sql};
use crate::connectors::api::{ConnectorError, Source};
use crate::connectors::{Batch, BatchRecords};

/// A source over one table or query of a SQLite file.
pub(in crate::connectors::postgres) struct SqliteSource {
    db: Db,
    read: std::sync::Arc<Read>,
    batch_size: usize,
    /// The `(cursor, key)` of the last row handed out.
    position: Option<(Value, Value)>,
}

/// The records of a batch, and the `(cursor, key)` of its last.
type Rows = (Vec<Value>, (Value, Value));

/// The statements of a read.
struct Read {
    /// The largest cursor value, and whether the clock has passed it.
    horizon_sql: String,
    /// The rows after `?1, ?2` (the position) up to the horizon `?3` (`?4`: passed), at most
    /// `?5`; `[0]` is the first read, without a position (`?1`: horizon, `?2`: passed, `?3`:
    /// limit).
    rows_sql: [String; 2],
    /// A row whose cursor or key is NULL.
    nulls_sql: String,
    cursor: String,
    key: String,
}

impl SqliteSource {
    /// Opens the file, runs the schema, and checks that the table or query has the cursor
    /// and key columns.
    pub(in crate::connectors::postgres) async fn open(
        db: Db,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Self, ConnectorError> {
        let position = parse_position(position)?;
        let relation = match (&from.table, &from.query) {
            (Some(table), _) => format!("SELECT * FROM {}", table_name(table, "from.table")?),
            (None, Some(query)) => config::query_body(query).to_owned(),
            (None, None) => return Err(ConnectorError::spec("from: give table or query")),
        };
        // On a line of its own: a query ending in a `--` comment must not swallow the alias.
        let wrapped = format!("({relation}\n) AS src");
        let (cursor, key) = (from.cursor.clone(), from.key.clone());
        let is_table = from.table.is_some();
        let read = db
            .with(move |conn, shown| {
                let columns = describe(conn, &wrapped, shown)?;
                for (setting, name) in [("cursor", &cursor), ("key", &key)] {
                    if !columns.contains(name) {
                        return Err(ConnectorError::spec(format!(
                            "from.{setting}: \"{name}\" is not a column of the {} (its columns: \
                             {})",
                            if is_table { "table" } else { "query" },
                            columns.join(", ")
                        )));
                    }
                }
                Ok(Read::new(&wrapped, cursor, key))
            })
            .await?;
        Ok(Self {
            db,
            read: std::sync::Arc::new(read),
            batch_size: from.batch_size(),
            position,
        })
    }
}

/// The column names of `wrapped`, described without reading a row.
fn describe(conn: &Connection, wrapped: &str, shown: &str) -> Result<Vec<String>, ConnectorError> {
    let statement = conn
        .prepare(&format!("SELECT * FROM {wrapped}"))
        .map_err(|err| classify(&err, shown))?;
    Ok(statement.column_names().map(str::to_owned).collect())
}

impl Read {
    fn new(wrapped: &str, cursor: String, key: String) -> Read {
        let c = format!("src.{}", quote_ident(&cursor));
        let k = format!("src.{}", quote_ident(&key));
        let rows = |after: &str, first: usize| {
            format!(
                "SELECT *, {c}, {k} FROM {wrapped} \
                 WHERE {c} IS NOT NULL AND {k} IS NOT NULL {after} \
                   AND ({c} < ?{first} OR (?{} AND {c} = ?{first})) \
                 ORDER BY {c}, {k} LIMIT ?{}",
                first + 1,
                first + 2
            )
        };
        Read {
            // A number is below any text in SQLite's order, so a number cursor has always
            // passed the clock; a text cursor has once the clock's text is above it.
            horizon_sql: format!(
                "SELECT max({c}), coalesce(max({c}) < CURRENT_TIMESTAMP, 0) FROM {wrapped}"
            ),
            rows_sql: [rows("", 1), rows(&format!("AND ({c}, {k}) > (?1, ?2)"), 3)],
            nulls_sql: format!(
                "SELECT {c}, {k} FROM {wrapped} WHERE {c} IS NULL OR {k} IS NULL LIMIT 1"
            ),
            cursor,
            key,
        }
    }

    /// Reads at most `limit` rows after `position`, holding the write lock while it reads.
    fn batch(
        &self,
        conn: &mut Connection,
        shown_at: &str,
        position: Option<&(Value, Value)>,
        limit: usize,
    ) -> Result<Option<Rows>, ConnectorError> {
        let sqlite = |err: rusqlite::Error| classify(&err, shown_at);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let (horizon, passed): (Sql, bool) = tx
            .query_row(&self.horizon_sql, [], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sqlite)?;
        if horizon == Sql::Null {
            self.refuse_nulls(&tx, shown_at)?;
            return Ok(None);
        }
        let limit = Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        let passed = Sql::Integer(i64::from(passed));
        let mut params: Vec<Sql> = Vec::with_capacity(5);
        let sql = match position {
            None => &self.rows_sql[0],
            Some((cursor, key)) => {
                params.push(to_sql(cursor));
                params.push(to_sql(key));
                &self.rows_sql[1]
            }
        };
        params.extend([horizon, passed, limit]);
        let mut statement = tx.prepare_cached(sql).map_err(sqlite)?;
        let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
        // The record's columns, then the cursor and key selected again at the end.
        let fields = names.len() - 2;
        let mut rows = statement.query(params_from_iter(params)).map_err(sqlite)?;
        let mut records = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let mut record = Map::with_capacity(fields);
            for (index, name) in names.iter().take(fields).enumerate() {
                record.insert(name.clone(), to_json(row.get_ref(index).map_err(sqlite)?));
            }
            records.push(Value::Object(record));
            last = Some((
                to_json(row.get_ref(fields).map_err(sqlite)?),
                to_json(row.get_ref(fields + 1).map_err(sqlite)?),
            ));
        }
        drop(rows);
        drop(statement);
        let Some(last) = last else {
            self.refuse_nulls(&tx, shown_at)?;
            return Ok(None);
        };
        Ok(Some((records, last)))
    }

    /// Fails when the source holds a row whose cursor or key is NULL: such a row has no place
    /// in the read's order and would be skipped without a word.
    fn refuse_nulls(&self, conn: &Connection, shown_at: &str) -> Result<(), ConnectorError> {
        let sqlite = |err: rusqlite::Error| classify(&err, shown_at);
        let mut statement = conn.prepare_cached(&self.nulls_sql).map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        let Some(row) = rows.next().map_err(sqlite)? else {
            return Ok(());
        };
        Err(ConnectorError::spec(format!(
            "SQLite at {shown_at}: a row has {} = {} and {} = {}: a row whose cursor or key is \
             NULL has no place in the read's order and would never be read; give it a value, \
             or filter such rows out of from.query",
            self.cursor,
            shown(row.get_ref(0).map_err(sqlite)?),
            self.key,
            shown(row.get_ref(1).map_err(sqlite)?)
        )))
    }
}

#[async_trait]
impl Source for SqliteSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        let limit = self.batch_size.min(max_records.max(1));
        let read = std::sync::Arc::clone(&self.read);
        let position = self.position.clone();
        let found = self
            .db
            .with(move |conn, shown| read.batch(conn, shown, position.as_ref(), limit))
            .await?;
        let Some((records, last)) = found else {
            return Ok(None);
        };
        let batch = Batch {
            records: BatchRecords::Values(records),
            position: json!({ "cursor": last.0, "key": last.1 }),
        };
        self.position = Some(last);
        Ok(Some(batch))
    }
}

/// A position as this source writes it: `{"cursor": VALUE, "key": VALUE}`, or `null`.
fn parse_position(position: &Value) -> Result<Option<(Value, Value)>, ConnectorError> {
    if position.is_null() {
        return Ok(None);
    }
    match (position.get("cursor"), position.get("key")) {
        (Some(cursor), Some(key)) if !cursor.is_null() && !key.is_null() => {
            Ok(Some((cursor.clone(), key.clone())))
        }
        _ => Err(ConnectorError::internal(format!(
            "the stored position {position} is not a SQL source's {{\"cursor\": ..., \"key\": \
             ...}}"
        ))),
    }
}
