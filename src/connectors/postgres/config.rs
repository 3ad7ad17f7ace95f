//! The PostgreSQL connector's settings, as written in a workspace, and the checks types alone
//! cannot make. Names of tables and columns are identifiers, validated here and always quoted
//! when put into SQL ([`quote_ident`]), so no name can carry SQL.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::connectors::api::Problem;
use crate::spec::Code;
use crate::spec::duration::parse_duration;

/// Connections per system when `pool` is not set: a source reads on one, a sink writes on one.
pub(super) const DEFAULT_POOL: usize = 4;
/// The most connections `pool` may ask for.
const MAX_POOL: usize = 64;
/// `statement_timeout` when not set.
pub(super) const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per batch when `batch_size` is not set.
pub(super) const DEFAULT_BATCH_SIZE: usize = 500;
/// The most rows one batch may ask for: a batch is held in memory.
const MAX_BATCH_SIZE: usize = 10_000;
/// How long a read waits for older transactions to end when `settle_timeout` is not set.
pub(super) const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// PostgreSQL truncates identifiers longer than this; a longer name would silently name
/// another object.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A SQL database (`systems.NAME.postgres:`): PostgreSQL, or an embedded SQLite file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; write secrets as
    /// `${ENV}` references. The user defaults to `$PGUSER`, then `$USER`, then `postgres`.
    /// TLS is not used: reach remote servers through a local tunnel or proxy. Sessions are
    /// named `switchyard` in `pg_stat_activity` unless the URL sets `?application_name=`.
    /// `sqlite:PATH` (relative to the workspace) uses an embedded SQLite file instead.
    pub url: String,
    /// The embedded database used when `url` names a variable that is not set (or is
    /// empty), such as `{ sqlite: .switchyard/ledger.db }`: the workspace then runs on a
    /// machine without PostgreSQL, and says so at start. Validation does not report the
    /// unset variable of `url`.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    /// A SQL file (relative to the workspace) creating what the flows use, run when a sink
    /// opens (and, on SQLite, a source): write it idempotent (`CREATE TABLE IF NOT EXISTS`).
    /// On SQLite it is what makes the embedded fallback work with nothing set up, and its
    /// `numeric`/`decimal` column types are created as `TEXT` (see the connector docs).
    #[serde(default)]
    pub schema: Option<String>,
    /// Connections kept open to this database by each flow (default 4, at most 64).
    #[serde(default)]
    pub pool: Option<usize>,
    /// The longest a statement may run before the server cancels it, such as `30s` (the
    /// default). A cancelled statement is retried like an outage.
    #[serde(default)]
    pub statement_timeout: Option<String>,
}

/// The embedded database a SQL system falls back to (`fallback:`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// The SQLite file, relative to the workspace, such as `.switchyard/ledger.db`; created
    /// (with its folder) when missing.
    pub sqlite: String,
}

/// Where a SQL system's data lives, once its settings are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Backend {
    /// A PostgreSQL server at this URL.
    Postgres(String),
    /// A SQLite file.
    Sqlite {
        /// The file, as written (relative to the workspace unless absolute).
        path: String,
        /// Why the fallback took over (the unset variables of `url`), when it did.
        fallback_for: Option<Vec<String>>,
    },
}

/// Reading a table or a query incrementally (a flow's `from:` on a PostgreSQL system).
///
/// Rows are read in `(cursor, key)` order after the last position committed, each as a JSON
/// object of its columns (`numeric` values as strings, so no digit is lost). Before a batch is
/// handed on, the read waits for transactions that were open when it started to end, and
/// reads again: a row committed late with an older cursor value is not skipped, provided the
/// database assigns cursor values (a `now()`/`clock_timestamp()` default or trigger, or a
/// sequence without a per-session cache), not the client.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresFromConfig {
    /// The table (or view) to read, `name` or `schema.name`. Give this or `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// A single `SELECT` (or `WITH ... SELECT`) to read, without a trailing `ORDER BY` or
    /// `LIMIT`: the connector wraps it and pages through it. Give this or `table`.
    #[serde(default)]
    pub query: Option<String>,
    /// The column whose value grows when a row is written, such as `updated_at`: rows are
    /// read in its order and the position remembers its last value.
    pub cursor: String,
    /// A column unique among rows, such as `id`: orders rows sharing a cursor value, so ties
    /// are neither skipped nor read twice.
    pub key: String,
    /// Rows per batch (default 500, at most 10000).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// How long a read waits for transactions open when it started to end, such as `10s`
    /// (the default). Past it the read fails as an outage naming the transaction, and is
    /// retried; it never skips ahead of an open transaction.
    #[serde(default)]
    pub settle_timeout: Option<String>,
}

/// Writing records into a table, one transaction per batch (a flow's `to:` on a PostgreSQL
/// system).
///
/// Each record becomes a row; its idempotency key goes into `key_column`, under a unique
/// constraint, and a row whose key is already there is left as it is: a batch written again
/// after a crash posts nothing twice.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresToConfig {
    /// The table to insert into, `name` or `schema.name`.
    pub table: String,
    /// The column receiving each record's idempotency key; it must have a unique constraint
    /// (or be the primary key) of its own.
    pub key_column: String,
    /// The columns to fill from the mapped record's fields of the same names. Default: every
    /// field of the mapped records. Columns left out keep their defaults.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

impl PostgresConfig {
    /// Where the data lives: a `sqlite:` URL, the fallback when `url` is empty or still names
    /// a variable that is not set (validation leaves such a `url` unexpanded when a fallback
    /// covers it, so the variable can be named), else PostgreSQL.
    pub(super) fn backend(&self) -> Backend {
        if let Some(path) = self.url.strip_prefix("sqlite:") {
            return Backend::Sqlite {
                path: path.to_owned(),
                fallback_for: None,
            };
        }
        if let Some(fallback) = &self.fallback
            && (self.url.trim().is_empty() || self.url.contains("${"))
        {
            return Backend::Sqlite {
                path: fallback.sqlite.clone(),
                fallback_for: Some(unset_vars(&self.url)),
            };
        }
        Backend::Postgres(self.url.clone())
    }

    /// Connections in the pool.
    pub(super) fn pool_size(&self) -> usize {
        self.pool.unwrap_or(DEFAULT_POOL)
    }

    /// The statement timeout; an unparsable one was reported by the check.
    pub(super) fn statement_timeout(&self) -> Duration {
        self.statement_timeout
            .as_deref()
            .and_then(|text| parse_duration(text).ok())
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT)
    }
}

impl PostgresFromConfig {
    /// Rows per batch.
    pub(super) fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// How long to wait for older transactions.
    pub(super) fn settle_timeout(&self) -> Duration {
        self.settle_timeout
            .as_deref()
            .and_then(|text| parse_duration(text).ok())
            .unwrap_or(DEFAULT_SETTLE_TIMEOUT)
    }
}

/// The `${NAME}`s still in a text.
fn unset_vars(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        names.push(rest[start + 2..start + 2 + len].to_owned());
        rest = &rest[start + 2 + len + 1..];
    }
    names
}

/// The hint of a duration that does not parse.
const DURATION_HINT: &str = "durations look like 30s, 15m, 1h30m, 250ms or PT15M";

/// Problems of a system's settings (pointers relative to `postgres:`).
pub(super) fn check_system(system: &PostgresConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_files(system, &mut problems);
    if let Some(path) = system.url.strip_prefix("sqlite:") {
        if path.trim().is_empty() {
            problems.push(
                Problem::new("/url", Code::InvalidValue, "url names no SQLite file")
                    .with_hint("write sqlite:PATH, such as sqlite:.switchyard/ledger.db"),
            );
        }
    } else if system.url.is_empty() || system.url.contains("${") {
        // An unset `${VAR}` leaves the URL empty, and the spec reports that variable itself
        // (an error with --strict): a workspace checked without the database's address, as
        // flow tests are, stays valid, and opening the connector refuses it. A `${VAR}` still
        // in the text means the settings were checked before expansion (the spec does so for
        // systems today); the expanded URL is checked again when the connector opens.
    } else if let Err(err) = system.url.parse::<tokio_postgres::Config>() {
        // The URL may hold a password: name the problem, not the value.
        problems.push(
            Problem::new(
                "/url",
                Code::InvalidValue,
                format!("url is not a PostgreSQL URL ({err})"),
            )
            .with_hint("write postgres://USER@HOST:PORT/DATABASE"),
        );
    } else if !system.url.starts_with("postgres://") && !system.url.starts_with("postgresql://") {
        problems.push(
            Problem::new(
                "/url",
                Code::InvalidValue,
                "url must be a URL, not key=value settings",
            )
            .with_hint("write postgres://USER@HOST:PORT/DATABASE"),
        );
    }
    if let Some(pool) = system.pool
        && !(1..=MAX_POOL).contains(&pool)
    {
        problems.push(Problem::new(
            "/pool",
            Code::InvalidValue,
            format!("pool is {pool}; write a number of connections from 1 to {MAX_POOL}"),
        ));
    }
    if let Some(timeout) = &system.statement_timeout {
        match parse_duration(timeout) {
            Ok(duration) if duration.is_zero() => problems.push(Problem::new(
                "/statement_timeout",
                Code::InvalidDuration,
                "statement_timeout is zero; write how long a statement may run, such as 30s",
            )),
            Ok(_) => {}
            Err(err) => problems.push(
                Problem::new(
                    "/statement_timeout",
                    Code::InvalidDuration,
                    format!("statement_timeout: {err}"),
                )
                .with_hint(DURATION_HINT),
            ),
        }
    }
    problems
}

/// Problems of the file settings: a path that names no file.
fn check_files(system: &PostgresConfig, problems: &mut Vec<Problem>) {
    if let Some(fallback) = &system.fallback
        && fallback.sqlite.trim().is_empty()
    {
        problems.push(
            Problem::new(
                "/fallback/sqlite",
                Code::InvalidValue,
                "sqlite names no file",
            )
            .with_hint("write a path relative to the workspace, such as .switchyard/ledger.db"),
        );
    }
    if let Some(schema) = &system.schema
        && schema.trim().is_empty()
    {
        problems.push(
            Problem::new("/schema", Code::InvalidValue, "schema names no file")
                .with_hint("write a path relative to the workspace, such as sql/ledger.sql"),
        );
    }
}

/// Problems of a flow's `from:` (pointers relative to it).
pub(super) fn check_from(from: &PostgresFromConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    match (&from.table, &from.query) {
        (Some(_), Some(_)) => problems.push(Problem::new(
            "/query",
            Code::InvalidValue,
            "give either table or query, not both",
        )),
        (None, None) => problems.push(
            Problem::new(
                "",
                Code::InvalidValue,
                "give the table or the query to read",
            )
            .with_hint("write table: orders, or query: SELECT ..."),
        ),
        (Some(table), None) => {
            if let Err(err) = check_table_name(table) {
                problems.push(Problem::new(
                    "/table",
                    Code::InvalidValue,
                    format!("table: {err}"),
                ));
            }
        }
        (None, Some(query)) => {
            if let Err(err) = check_query(query) {
                problems.push(Problem::new(
                    "/query",
                    Code::InvalidValue,
                    format!("query: {err}"),
                ));
            }
        }
    }
    for (setting, name) in [("cursor", &from.cursor), ("key", &from.key)] {
        if let Err(err) = check_identifier(name) {
            problems.push(Problem::new(
                format!("/{setting}"),
                Code::InvalidValue,
                format!("{setting}: {err}"),
            ));
        }
    }
    if from.cursor == from.key {
        problems.push(Problem::new(
            "/key",
            Code::InvalidValue,
            "key names the cursor column; name a column unique among rows, such as id",
        ));
    }
    if let Some(size) = from.batch_size
        && !(1..=MAX_BATCH_SIZE).contains(&size)
    {
        problems.push(Problem::new(
            "/batch_size",
            Code::InvalidValue,
            format!("batch_size is {size}; write a number of rows from 1 to {MAX_BATCH_SIZE}"),
        ));
    }
    if let Some(timeout) = &from.settle_timeout
        && let Err(err) = parse_duration(timeout)
    {
        problems.push(
            Problem::new(
                "/settle_timeout",
                Code::InvalidDuration,
                format!("settle_timeout: {err}"),
            )
            .with_hint(DURATION_HINT),
        );
    }
    problems
}

/// Problems of a flow's `to:` (pointers relative to it).
pub(super) fn check_to(to: &PostgresToConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(err) = check_table_name(&to.table) {
        problems.push(Problem::new(
            "/table",
            Code::InvalidValue,
            format!("table: {err}"),
        ));
    }
    if let Err(err) = check_identifier(&to.key_column) {
        problems.push(Problem::new(
            "/key_column",
            Code::InvalidValue,
            format!("key_column: {err}"),
        ));
    }
    if let Some(columns) = &to.columns {
        if columns.is_empty() {
            problems.push(
                Problem::new("/columns", Code::InvalidValue, "columns is empty").with_hint(
                    "list the columns to fill, or leave columns out to fill every field of the \
                     mapped record",
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (index, column) in columns.iter().enumerate() {
            let pointer = format!("/columns/{index}");
            if let Err(err) = check_identifier(column) {
                problems.push(Problem::new(
                    pointer,
                    Code::InvalidValue,
                    format!("columns: {err}"),
                ));
            } else if column == &to.key_column {
                problems.push(Problem::new(
                    pointer,
                    Code::InvalidValue,
                    format!(
                        "columns lists \"{column}\", the key_column, which is filled from the \
                         idempotency key; remove it"
                    ),
                ));
            } else if !seen.insert(column) {
                problems.push(Problem::new(
                    pointer,
                    Code::InvalidValue,
                    format!("columns lists \"{column}\" twice"),
                ));
            }
        }
    }
    problems
}

/// A table name: `name` or `schema.name`, each part an identifier.
pub(super) fn check_table_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err(format!(
            "\"{name}\" has more than one dot; write table or schema.table"
        ));
    }
    parts.into_iter().try_for_each(check_identifier)
}

/// An identifier: letters, digits, `_` and `$`, not starting with a digit, at most 63 bytes.
/// It is used as written (quoted), so its case matters: `Orders` is not `orders`.
pub(super) fn check_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_');
    if !starts_well || !chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        return Err(format!(
            "\"{name}\" is not a plain identifier; use letters, digits, _ and $, starting with \
             a letter or _"
        ));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "\"{name}\" is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes for a name"
        ));
    }
    Ok(())
}

/// A query: one `SELECT` (or `WITH`), no second statement after a `;`. This is a lint with
/// a clear message; the guard is the server's: the connector runs the query as a subquery of
/// a prepared statement in a read-only session, which holds one statement and writes nothing.
pub(super) fn check_query(query: &str) -> Result<(), String> {
    let code = blank_sql(query);
    let first_word: String = code
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    if first_word != "select" && first_word != "with" {
        return Err("write one SELECT (or WITH ... SELECT) statement".to_owned());
    }
    let end = statement_end(query);
    if !code[end..].trim_start_matches(';').trim().is_empty() {
        return Err("holds more than one statement; write one SELECT".to_owned());
    }
    Ok(())
}

/// The query without its closing `;` and what follows it (a trailing comment), ready to be
/// wrapped as a subquery.
pub(super) fn query_body(query: &str) -> &str {
    query[..statement_end(query)].trim()
}

/// Where the first statement of `query` ends: its first `;` outside literals, quoted names
/// and comments, or the end.
fn statement_end(query: &str) -> usize {
    blank_sql(query).find(';').unwrap_or(query.len())
}

/// The query with comments and the contents of literals and quoted identifiers blanked
/// (byte for byte, so offsets stay those of the query), so that a `;` or a keyword inside
/// them is not taken for code.
pub(super) fn blank_sql(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let blank = |out: &mut String, from: usize, to: usize| {
        out.extend(std::iter::repeat_n(' ', to.min(bytes.len()) - from));
    };
    let mut i = 0;
    while i < bytes.len() {
        let rest = &query[i..];
        let end = if rest.starts_with("--") {
            i + rest.find('\n').unwrap_or(rest.len())
        } else if rest.starts_with("/*") {
            // PostgreSQL block comments nest.
            let mut depth = 0usize;
            let mut j = i;
            while j < bytes.len() {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if bytes[i] == b'\'' || bytes[i] == b'"' {
            let quote = bytes[i];
            let mut j = i + 1;
            // A doubled quote is an escaped one; an unterminated literal runs to the end.
            while j < bytes.len() {
                if bytes[j] == quote {
                    if bytes.get(j + 1) == Some(&quote) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            j + 1
        } else if let Some(tag) = dollar_tag(rest) {
            let body = &rest[tag.len()..];
            i + tag.len() + body.find(tag).map_or(body.len(), |end| end + tag.len())
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let end = end.min(bytes.len());
        blank(&mut out, i, end);
        i = end;
    }
    out
}

/// The opening tag of a dollar-quoted string (`$$` or `$name$`) at the start of `text`.
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let name_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if rest[name_len..].starts_with('$') && !rest.starts_with(|c: char| c.is_ascii_digit()) {
        Some(&text[..name_len + 2])
    } else {
        None
    }
}

/// An identifier quoted for SQL: doubled inner quotes make any name safe, checked or not.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name (`name` or `schema.name`) quoted for SQL.
pub(super) fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// A string literal for SQL.
pub(super) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_names() {
        assert!(check_identifier("updated_at").is_ok());
        assert!(check_identifier("Orders$2").is_ok());
        for bad in ["", "1st", "a b", "x\"; DROP TABLE t; --", "a.b", "a-b"] {
            assert!(check_identifier(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_identifier(&"a".repeat(64)).is_err());
        assert!(check_table_name("ledger.entries").is_ok());
        assert!(check_table_name("a.b.c").is_err());
        assert_eq!(quote_table("ledger.entries"), "\"ledger\".\"entries\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn a_query_is_one_select() {
        assert!(check_query("SELECT * FROM orders WHERE note <> ';'").is_ok());
        assert!(check_query("  with x as (select 1) select * from x;").is_ok());
        assert!(check_query("SELECT $q$;$q$ AS s -- trailing; comment").is_ok());
        assert!(check_query("SELECT \"a;b\" FROM t /* ; /* nested ; */ */").is_ok());
        assert_eq!(
            check_query("SELECT 1; DELETE FROM orders"),
            Err("holds more than one statement; write one SELECT".to_owned())
        );
        assert!(check_query("DELETE FROM orders").is_err());
        assert!(check_query("-- SELECT\nDELETE FROM orders").is_err());
        assert!(check_query("SELECT ';' ; DROP TABLE t").is_err());
        assert_eq!(
            query_body("SELECT 1 AS \"a;\" ; -- the end; really\n"),
            "SELECT 1 AS \"a;\""
        );
        assert_eq!(query_body("SELECT 'é' -- note"), "SELECT 'é' -- note");
    }

    #[test]
    fn the_backend_is_sqlite_when_asked_or_when_the_fallback_covers_an_unset_url() {
        let system = |url: &str, fallback: Option<&str>| PostgresConfig {
            url: url.into(),
            fallback: fallback.map(|path| FallbackConfig {
                sqlite: path.into(),
            }),
            schema: None,
            pool: None,
            statement_timeout: None,
        };
        let sqlite = |path: &str, unset: Option<&[&str]>| Backend::Sqlite {
            path: path.into(),
            fallback_for: unset.map(|names| names.iter().map(|n| n.to_string()).collect()),
        };
        let pg = "postgres://app@db/ledger";
        assert_eq!(
            system(pg, Some("l.db")).backend(),
            Backend::Postgres(pg.into())
        );
        assert_eq!(
            system("${LEDGER_URL}", Some("l.db")).backend(),
            sqlite("l.db", Some(&["LEDGER_URL"]))
        );
        assert_eq!(
            system("", Some("l.db")).backend(),
            sqlite("l.db", Some(&[]))
        );
        assert_eq!(
            system("sqlite:x/l.db", None).backend(),
            sqlite("x/l.db", None)
        );
        // Without a fallback an empty URL stays PostgreSQL's, and opening refuses it.
        assert_eq!(system("", None).backend(), Backend::Postgres(String::new()));
        assert_eq!(
            check_system(&system("sqlite:", Some(" "))),
            [
                Problem::new(
                    "/fallback/sqlite",
                    Code::InvalidValue,
                    "sqlite names no file"
                )
                .with_hint("write a path relative to the workspace, such as .switchyard/ledger.db"),
                Problem::new("/url", Code::InvalidValue, "url names no SQLite file")
                    .with_hint("write sqlite:PATH, such as sqlite:.switchyard/ledger.db"),
            ]
        );
    }

    #[test]
    fn settings_are_checked() {
        let system = PostgresConfig {
            url: "postgres://app@127.0.0.1:5432/ledger".into(),
            fallback: None,
            schema: None,
            pool: Some(0),
            statement_timeout: Some("soon".into()),
        };
        let problems = check_system(&system);
        let at: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(at, ["/pool", "/statement_timeout"], "{problems:?}");
        assert!(problems[0].message.starts_with("pool is 0"));
        assert_eq!(problems[1].code, Code::InvalidDuration);
        assert!(
            problems[1]
                .message
                .starts_with("statement_timeout: invalid duration")
        );

        let from = PostgresFromConfig {
            table: Some("orders".into()),
            query: Some("SELECT 1".into()),
            cursor: "updated at".into(),
            key: "id".into(),
            batch_size: Some(0),
            settle_timeout: None,
        };
        let problems = check_from(&from);
        let at: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(at, ["/query", "/cursor", "/batch_size"], "{problems:?}");

        let to = PostgresToConfig {
            table: "ledger".into(),
            key_column: "idempotency_key".into(),
            columns: Some(vec![
                "amount".into(),
                "amount".into(),
                "idempotency_key".into(),
            ]),
        };
        let problems = check_to(&to);
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.pointer.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("/columns/1", "columns lists \"amount\" twice"),
                (
                    "/columns/2",
                    "columns lists \"idempotency_key\", the key_column, which is filled from \
                     the idempotency key; remove it"
                ),
            ]
        );
    }
}
