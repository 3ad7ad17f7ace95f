//! The SQL connector's embedded backend: the same sink and source on a SQLite file, for a
//! workspace that must run on a machine without PostgreSQL (the `fallback:` of a system, or a
//! `sqlite:` URL).
//!
//! Same semantics as on PostgreSQL: a sink writes each batch in one transaction with
//! `INSERT ... ON CONFLICT (key) DO NOTHING`, refuses a record whose key is stored with other
//! content, and rejects alone a record a constraint refuses; a source reads in `(cursor, key)`
//! order after its position. Amounts stay exact because they are stored as `TEXT` (see
//! [`dialect`]). It owns its connection (one per sink or source, used under `spawn_blocking`:
//! rusqlite is synchronous) and the classification of SQLite's errors; it must not touch the
//! state store's database, even when both are files of the same folder.

mod dialect;
mod sink;
mod source;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use serde_json::Value;

pub(super) use self::sink::SqliteSink;
pub(super) use self::source::SqliteSource;
use crate::connectors::api::ConnectorError;
use crate::error_text::with_causes;

/// How long a statement waits for another connection's write lock (a source reading while a
/// sink posts, two flows posting) before the attempt counts as an outage.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to a SQLite file, shared by the calls of one sink or source.
#[derive(Clone)]
pub(super) struct Db {
    conn: Arc<Mutex<Connection>>,
    /// The file, for messages.
    pub(super) shown: String,
}

impl Db {
    /// Opens (creating it and its folder when missing) the file at `path` and runs the
    /// system's `schema` SQL, if any, in one transaction.
    pub(super) async fn open(path: PathBuf, schema: Option<String>) -> Result<Db, ConnectorError> {
        let shown = path.display().to_string();
        let opened = {
            let shown = shown.clone();
            tokio::task::spawn_blocking(move || open_file(&path, schema.as_deref(), &shown))
        };
        let conn = opened
            .await
            .map_err(|err| ConnectorError::internal(format!("SQLite at {shown}: {err}")))??;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            shown,
        })
    }

    /// Runs `work` on the connection, off the async workers.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &str) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let conn = Arc::clone(&self.conn);
        let shown = self.shown.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier call left the connection as SQLite left it: a transaction
            // open at that point was rolled back when its guard dropped.
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn, &shown)
        })
        .await
        .map_err(|err| ConnectorError::internal(format!("SQLite at {}: {err}", self.shown)))?
    }
}

fn open_file(path: &Path, schema: Option<&str>, shown: &str) -> Result<Connection, ConnectorError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|err| {
            ConnectorError::spec(format!(
                "SQLite at {shown}: cannot create the folder {}: {err}",
                parent.display()
            ))
        })?;
    }
    let mut conn = Connection::open(path).map_err(|err| classify(&err, shown))?;
    let sqlite = |err: rusqlite::Error| classify(&err, shown);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    // WAL lets a source read while a sink writes; FULL makes each committed batch durable
    // before the runner checkpoints it, which is what a rerun after a crash relies on.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        .map_err(sqlite)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite)?;
    if let Some(schema) = schema {
        let sql = dialect::for_sqlite(schema);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        tx.execute_batch(&sql).map_err(|err| {
            let mut err = classify(&err, shown);
            err.message = format!(
                "{}, running the system's schema file (as translated for SQLite: numeric and \
                 decimal columns become TEXT); write it in SQL both databases take, with \
                 CREATE ... IF NOT EXISTS",
                err.message
            );
            err
        })?;
        tx.commit().map_err(sqlite)?;
    }
    Ok(conn)
}

/// Classifies a SQLite error: a constraint, a type or a size the record breaks is the
/// record's fault; a busy or locked file, a full disk or an I/O failure is an outage worth
/// retrying; anything else (no such table or column, SQL the file cannot run) is the
/// workspace's.
pub(super) fn classify(err: &rusqlite::Error, shown: &str) -> ConnectorError {
    let message = format!("SQLite at {shown}: {}", with_causes(err));
    if matches!(err, rusqlite::Error::SqlInputError { .. }) {
        // SQL SQLite cannot parse: a query or a schema file of the workspace.
        return ConnectorError::spec(message);
    }
    let Some(code) = err.sqlite_error_code() else {
        return ConnectorError::internal(message);
    };
    match code {
        ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig => {
            ConnectorError::rejected(message)
        }
        ErrorCode::DatabaseBusy
        | ErrorCode::DatabaseLocked
        | ErrorCode::DiskFull
        | ErrorCode::SystemIoFailure
        | ErrorCode::CannotOpen
        | ErrorCode::FileLockingProtocolFailed
        | ErrorCode::OutOfMemory
        | ErrorCode::SchemaChanged => ConnectorError::unavailable(message),
        _ => ConnectorError::spec(message),
    }
}

/// A table name for SQLite: one identifier. `schema.table` would name an attached database
/// there, not a schema, so it is refused rather than read another way.
pub(super) fn table_name(name: &str, setting: &str) -> Result<String, ConnectorError> {
    if name.contains('.') {
        return Err(ConnectorError::spec(format!(
            "{setting}: \"{name}\" names a schema, which SQLite does not have; name the table \
             alone (the same name in PostgreSQL's search_path, such as public)"
        )));
    }
    Ok(super::config::quote_ident(name))
}

/// A JSON value as SQLite stores it. Integers stay integers; any other number is bound as its
/// text, so a decimal is never rounded through a float on the way; objects and arrays are
/// stored as their JSON text.
pub(super) fn to_sql(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        Value::Null => Sql::Null,
        Value::Bool(flag) => Sql::Integer(i64::from(*flag)),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Sql::Integer(integer),
            None => Sql::Text(number.to_string()),
        },
        Value::String(text) => Sql::Text(text.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// A stored value as JSON: text as a string (amounts, stored as text, keep every digit),
/// integers and floats as numbers, a blob as its text (UTF-8, invalid bytes replaced).
pub(super) fn to_json(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(integer) => Value::from(integer),
        ValueRef::Real(real) => {
            serde_json::Number::from_f64(real).map_or(Value::Null, Value::Number)
        }
        ValueRef::Text(text) | ValueRef::Blob(text) => {
            Value::String(String::from_utf8_lossy(text).into_owned())
        }
    }
}

/// A stored value as text, for messages.
pub(super) fn shown(value: rusqlite::types::ValueRef<'_>) -> String {
    match to_json(value) {
        Value::Null => "NULL".to_owned(),
        Value::String(text) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
