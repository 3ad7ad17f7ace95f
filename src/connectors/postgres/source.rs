//! Reading a table or a query in `(cursor, key)` order, batch by batch, without skipping a row
//! committed late.
//!
//! The hole every keyset reader has: a transaction takes its cursor value (`now()`, a
//! sequence) when it writes, but its rows become visible only when it commits. A reader that
//! saw a younger row commit first and moved its position past it would never see the older
//! one. So each batch is read in two passes:
//!
//! 1. the bound: the `(cursor, key)` of the last row of the next batch, as visible now;
//! 2. the horizon: the largest cursor value visible now, and whether the clock has passed it;
//! 3. then the transactions open at that moment (`pg_stat_activity`, and prepared
//!    transactions) are waited for: whatever they commit is visible after they end, and any
//!    transaction starting later takes a cursor value at or above the horizon;
//! 4. the batch is read again up to the bound, keeping only rows strictly below the horizon,
//!    or on it when the clock has passed it; its position is its last row.
//!
//! Why the horizon: a later transaction takes a value *at or above* the horizon, not above it.
//! With a coarse cursor (`date DEFAULT current_date`, `timestamp(0)`) it can take the very
//! value of the last row read, with a smaller key, and commit after the position moved past:
//! that row would be lost. So rows on the horizon wait until `now()`, cast to the cursor's own
//! type (its precision and rounding), is above it: a `timestamp(0)` cursor's last second is
//! read a second later, a `date` cursor's rows of today tomorrow. A full-precision `now()` or
//! `clock_timestamp()` cursor is past its horizon at once, and a cursor that is not a date or
//! timestamp is taken to be a sequence, which never hands a value out twice, so it never waits.
//!
//! What is guaranteed, then, for cursor values the database assigns when the row is written,
//! by a default or a trigger: `now()`, `clock_timestamp()`, `current_date`, at the column's
//! precision, or a sequence (without a per-session `CACHE`): no committed row is skipped and
//! none is read twice (unless updated, when it is read again with its new cursor). Not
//! covered: a value the client computes (its own clock), a clock coarser than the column's
//! type (`date_trunc('minute', now())` in a `timestamptz`), a non-unique integer (epoch
//! seconds), and a `date` or `timestamp` (without time zone) written in a time zone behind
//! UTC, the zone the horizon is taken in. Nothing here can make up for those.
//!
//! A row whose cursor or key is NULL has no place in the order: a table's cursor and key
//! columns must be NOT NULL (refused at open otherwise), and a query or view holding such a
//! row fails the read with an error naming it, once the read has caught up.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::config::{
    self, PostgresConfig, PostgresFromConfig, quote_ident, quote_literal, quote_table,
};
use super::{classify, connection, target};
use crate::connectors::api::{ConnectorError, Fault, Source};
use crate::connectors::{Batch, BatchRecords};

/// First pause while waiting for open transactions; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
/// Longest pause between two looks at open transactions.
const MAX_POLL: Duration = Duration::from_millis(500);

/// Transactions that may still commit rows: open ones of client sessions and background
/// workers of this database (ours excluded), and prepared ones. Each is named with the moment
/// it started, so a session that ended its transaction and began another counts as done.
const OPEN_TRANSACTIONS: &str = "\
    SELECT 'session ' || pid || coalesce(' (' || nullif(application_name, '') || ')', ''), \
           xact_start::text \
      FROM pg_stat_activity \
     WHERE datname = current_database() AND pid <> pg_backend_pid() \
       AND xact_start IS NOT NULL \
       AND backend_type IN ('client backend', 'background worker') \
    UNION ALL \
    SELECT 'prepared transaction ' || quote_literal(gid), prepared::text \
      FROM pg_prepared_xacts WHERE database = current_database()";

/// Whether this session may see other roles' transactions in `pg_stat_activity`.
const SEES_ALL_SESSIONS: &str = "\
    SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) \
        OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')";

/// A source over one table or query.
pub(super) struct PostgresSource {
    pool: Pool,
    target: String,
    /// Selects the `(cursor, key)` text of the next rows: `$1, $2` the position (when there
    /// is one), then the limit.
    bound_sql: [String; 2],
    /// Selects the records up to a bound: `$1, $2` the position (when there is one), then the
    /// bound's cursor and key, then the horizon and whether it is passed, then the limit.
    rows_sql: [String; 2],
    /// Selects the horizon (the largest cursor value, as text), whether the clock has passed
    /// it, and whether the bound `$1` is within it.
    horizon_sql: String,
    /// Selects the cursor and key of a row where either is NULL, for a source whose columns
    /// may hold NULL (a query, a view).
    nulls_sql: Option<String>,
    /// The cursor column, for messages.
    cursor: String,
    /// The key column, for messages.
    key: String,
    batch_size: usize,
    settle_timeout: Duration,
    /// The `(cursor, key)` of the last row handed out, as text.
    position: Option<(String, String)>,
}

impl PostgresSource {
    /// Connects, checks that the table or query has the cursor and key columns, and builds
    /// the statements of the read.
    pub(super) async fn open(
        system: &PostgresConfig,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Self, ConnectorError> {
        let position = parse_position(position)?;
        let target = target(system);
        let pool = super::pool(system, true)?;
        let client = connection(&pool, &target).await?;
        let sees_all: bool = client
            .query_one(SEES_ALL_SESSIONS, &[])
            .await
            .map_err(|err| classify(&err, &target))?
            .get(0);
        if !sees_all {
            return Err(ConnectorError::spec(format!(
                "PostgreSQL at {target}: the role cannot see other sessions' open transactions, \
                 which the read must wait for so as not to skip rows committed late; run \
                 GRANT pg_read_all_stats TO <the role in postgres.url>"
            )));
        }

        let relation = match (&from.table, &from.query) {
            (Some(table), _) => format!("SELECT * FROM {}", quote_table(table)),
            (None, Some(query)) => config::query_body(query).to_owned(),
            (None, None) => return Err(ConnectorError::spec("from: give table or query")),
        };
        // On a line of its own: a query ending in a `--` comment must not swallow the alias.
        let wrapped = format!("({relation}\n) AS src");
        // Describing the statement checks the table, the query and the privileges at once,
        // with PostgreSQL's own words; a second statement hidden in the query fails here too,
        // since a prepared statement holds exactly one.
        let described = client
            .prepare(&format!("SELECT * FROM {wrapped}"))
            .await
            .map_err(|err| classify(&err, &target))?;
        let columns = described.columns();
        let find =
            |setting: &str, name: &str| {
                columns
                .iter()
                .find(|column| column.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
                    ConnectorError::spec(format!(
                        "from.{setting}: \"{name}\" is not a column of the {} (its columns: {})",
                        if from.table.is_some() { "table" } else { "query" },
                        names.join(", ")
                    ))
                })
            };
        let cursor_column = find("cursor", &from.cursor)?;
        let key_column = find("key", &from.key)?;
        // The full type, with its modifier: without it `char(5)` reads as `character`, which
        // is `char(1)`, and a position cast back through it would be truncated.
        let types = client
            .query_one(
                "SELECT format_type($1::oid, $2), format_type($3::oid, $4)",
                &[
                    &cursor_column.type_().oid(),
                    &cursor_column.type_modifier(),
                    &key_column.type_().oid(),
                    &key_column.type_modifier(),
                ],
            )
            .await
            .map_err(|err| classify(&err, &target))?;
        let (cursor_type, key_type): (String, String) = (types.get(0), types.get(1));
        // A table's NOT NULL columns are refused at open when nullable; a view's or a
        // query's rows are checked for NULLs whenever the read has caught up.
        let not_null = from.table.is_some()
            && refuse_nullable(&client, &target, "cursor", cursor_column).await?
            && refuse_nullable(&client, &target, "key", key_column).await?;

        // `to_jsonb` maps every type; numeric is then replaced by its text, because a JSON
        // number becomes a binary float on the way and money must keep every digit.
        let mut record = "to_jsonb(src)".to_owned();
        for column in columns {
            let text_type = match *column.type_() {
                Type::NUMERIC => "text",
                Type::NUMERIC_ARRAY => "text[]",
                _ => continue,
            };
            record.push_str(&format!(
                " || jsonb_build_object({}, src.{}::{text_type})",
                quote_literal(column.name()),
                quote_ident(column.name())
            ));
        }

        let c = format!("src.{}", quote_ident(&from.cursor));
        let k = format!("src.{}", quote_ident(&from.key));
        let after = |first: usize| {
            format!(
                "({c}, {k}) > (CAST(${first}::text AS {cursor_type}), CAST(${}::text AS \
                 {key_type}))",
                first + 1
            )
        };
        let select = |what: &str, conditions: &[String], limit: usize| {
            format!(
                "SELECT {what}, {c}::text, {k}::text FROM {wrapped} \
                 WHERE {c} IS NOT NULL AND {k} IS NOT NULL AND {} \
                 ORDER BY {c}, {k} LIMIT ${limit}",
                conditions.join(" AND ")
            )
        };
        let up_to = |first: usize| {
            format!(
                "({c}, {k}) <= (CAST(${first}::text AS {cursor_type}), CAST(${}::text AS \
                 {key_type}))",
                first + 1
            )
        };
        // Below the horizon, or on it once the clock has passed it (see the module doc).
        let within = |first: usize| {
            format!(
                "({c} < CAST(${first}::text AS {cursor_type}) \
                  OR (${}::bool AND {c} = CAST(${first}::text AS {cursor_type})))",
                first + 1
            )
        };
        let bound_sql = [
            select("1", &["true".to_owned()], 1),
            select("1", &[after(1)], 3),
        ];
        let rows_sql = [
            select(&record, &[up_to(1), within(3)], 5),
            select(&record, &[after(1), up_to(3), within(5)], 7),
        ];
        // Whether a later transaction may still take the horizon's own value: only a cursor
        // from a clock can tie (a sequence never hands a value out twice), and the clock has
        // moved past the horizon when `now()` in the cursor's own type (its precision, its
        // rounding) is above it.
        let clock_passed = match *cursor_column.type_() {
            Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                format!("CAST(now() AS {cursor_type}) > m.h")
            }
            _ => "true".to_owned(),
        };
        let horizon_sql = format!(
            "SELECT x.h::text, x.ok, coalesce(CAST($1::text AS {cursor_type}) < x.h \
                    OR (x.ok AND CAST($1::text AS {cursor_type}) = x.h), false) \
               FROM (SELECT m.h, coalesce({clock_passed}, false) AS ok \
                       FROM (SELECT max({c}) AS h FROM {wrapped}) AS m) AS x"
        );
        let nulls_sql = (!not_null).then(|| {
            format!(
                "SELECT {c}::text, {k}::text FROM {wrapped} \
                 WHERE {c} IS NULL OR {k} IS NULL LIMIT 1"
            )
        });
        Ok(Self {
            pool,
            target,
            bound_sql,
            horizon_sql,
            rows_sql,
            nulls_sql,
            cursor: from.cursor.clone(),
            key: from.key.clone(),
            batch_size: from.batch_size(),
            settle_timeout: from.settle_timeout(),
            position,
        })
    }

    /// Waits until every transaction in `open` has ended.
    async fn settle(
        &self,
        client: &tokio_postgres::Client,
        open: Vec<(String, String)>,
    ) -> Result<(), ConnectorError> {
        let mut waiting = open;
        let deadline = Instant::now() + self.settle_timeout;
        let mut pause = FIRST_POLL;
        while !waiting.is_empty() {
            if Instant::now() >= deadline {
                let (who, since) = &waiting[0];
                return Err(ConnectorError::unavailable(format!(
                    "PostgreSQL at {}: {who}, in a transaction since {since}, has not ended \
                     within from.settle_timeout ({:?}); the read waits for it so as not to \
                     skip rows it may still commit ({} transaction(s) open)",
                    self.target,
                    self.settle_timeout,
                    waiting.len()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            let now = open_transactions(client, &self.target).await?;
            waiting.retain(|transaction| now.contains(transaction));
        }
        Ok(())
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        let limit = self.batch_size.min(max_records.max(1)) as i64;
        let client = connection(&self.pool, &self.target).await?;
        let read = self.read(&client, limit).await;
        if let Err(err) = &read
            && err.fault == Fault::External
        {
            // The session may be broken (the server cut it): never hand it out again.
            drop(Object::take(client));
        }
        read
    }
}

impl PostgresSource {
    /// Reads the next batch of at most `limit` rows on `client`.
    async fn read(&mut self, client: &Object, limit: i64) -> Result<Option<Batch>, ConnectorError> {
        let target = self.target.clone();
        let pg = |err: tokio_postgres::Error| classify(&err, &target);
        let bound_sql = [
            client
                .prepare_cached(&self.bound_sql[0])
                .await
                .map_err(pg)?,
            client
                .prepare_cached(&self.bound_sql[1])
                .await
                .map_err(pg)?,
        ];
        let rows_sql = [
            client.prepare_cached(&self.rows_sql[0]).await.map_err(pg)?,
            client.prepare_cached(&self.rows_sql[1]).await.map_err(pg)?,
        ];
        loop {
            // Pass 1: how far this batch may go, as visible now.
            let bounds = match &self.position {
                None => client.query(&bound_sql[0], &[&limit]).await,
                Some((cursor, key)) => client.query(&bound_sql[1], &[cursor, key, &limit]).await,
            }
            .map_err(pg)?;
            let Some(last) = bounds.last() else {
                self.refuse_nulls(client).await?;
                return Ok(None);
            };
            let bound: (String, String) = (last.get(1), last.get(2));

            // The horizon, taken before the open transactions are listed: any transaction
            // not in that list starts later and takes a cursor value at or above it.
            let horizon = client
                .query_one(&self.horizon_sql, &[&bound.0])
                .await
                .map_err(pg)?;
            let (horizon, passed, bound_within): (Option<String>, bool, bool) =
                (horizon.get(0), horizon.get(1), horizon.get(2));

            // Rows up to the bound that are not visible yet belong to transactions open now.
            let open = open_transactions(client, &self.target).await?;
            self.settle(client, open).await?;

            // Pass 2: the same stretch again, now complete, up to the horizon.
            let rows = match &self.position {
                None => {
                    client
                        .query(
                            &rows_sql[0],
                            &[&bound.0, &bound.1, &horizon, &passed, &limit],
                        )
                        .await
                }
                Some((cursor, key)) => {
                    client
                        .query(
                            &rows_sql[1],
                            &[cursor, key, &bound.0, &bound.1, &horizon, &passed, &limit],
                        )
                        .await
                }
            }
            .map_err(pg)?;
            let Some(last) = rows.last() else {
                if !bound_within {
                    // What is left ties the horizon, and a transaction may still add to it:
                    // read it once the clock has moved on.
                    return Ok(None);
                }
                // Every row of the stretch moved on (updated past the bound) or went: nothing
                // can appear up to the bound any more, so the next read starts after it.
                self.position = Some(bound);
                continue;
            };
            let position: (String, String) = (last.get(1), last.get(2));
            let mut records = Vec::with_capacity(rows.len());
            for row in &rows {
                records.push(row.try_get::<_, Value>(0).map_err(pg)?);
            }
            let batch = Batch {
                records: BatchRecords::Values(records),
                position: json!({ "cursor": position.0, "key": position.1 }),
            };
            self.position = Some(position);
            return Ok(Some(batch));
        }
    }

    /// Fails when the source holds a row whose cursor or key is NULL: such a row has no
    /// place in the read's order and would be skipped without a word.
    async fn refuse_nulls(&self, client: &Object) -> Result<(), ConnectorError> {
        let Some(sql) = &self.nulls_sql else {
            return Ok(());
        };
        let found = client
            .query_opt(sql.as_str(), &[])
            .await
            .map_err(|err| classify(&err, &self.target))?;
        let Some(row) = found else {
            return Ok(());
        };
        let (cursor, key): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        let shown = |value: Option<String>| value.unwrap_or_else(|| "NULL".to_owned());
        Err(ConnectorError::spec(format!(
            "PostgreSQL at {}: a row has {} = {} and {} = {}: a row whose cursor or key is \
             NULL has no place in the read's order and would never be read; filter such rows \
             out of from.query (or the view), or give them a value (coalesce)",
            self.target,
            self.cursor,
            shown(cursor),
            self.key,
            shown(key)
        )))
    }
}

/// For a column of a table: refuses it when it may hold NULL, and says whether NOT NULL is
/// enforced. A column of a view or a computed column (no NOT NULL to rely on): `false`.
async fn refuse_nullable(
    client: &Object,
    target: &str,
    setting: &str,
    column: &tokio_postgres::Column,
) -> Result<bool, ConnectorError> {
    let (Some(table), Some(number)) = (column.table_oid(), column.column_id()) else {
        return Ok(false);
    };
    let row = client
        .query_opt(
            "SELECT a.attnotnull, c.relkind IN ('r', 'p') \
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
              WHERE a.attrelid = $1 AND a.attnum = $2",
            &[&table, &number],
        )
        .await
        .map_err(|err| classify(&err, target))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (not_null, is_table): (bool, bool) = (row.get(0), row.get(1));
    if !is_table {
        return Ok(false);
    }
    if !not_null {
        return Err(ConnectorError::spec(format!(
            "from.{setting}: the column \"{}\" may hold NULL, and a row whose {setting} is \
             NULL has no place in the read's order, so it would never be read; make the \
             column NOT NULL (ALTER TABLE ... ALTER COLUMN ... SET NOT NULL)",
            column.name()
        )));
    }
    Ok(true)
}

/// The transactions that may still commit rows, each named, with when it started.
async fn open_transactions(
    client: &tokio_postgres::Client,
    target: &str,
) -> Result<Vec<(String, String)>, ConnectorError> {
    let rows = client
        .query(OPEN_TRANSACTIONS, &[])
        .await
        .map_err(|err| classify(&err, target))?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

/// A position as this source writes it: `{"cursor": TEXT, "key": TEXT}`, or `null`.
fn parse_position(position: &Value) -> Result<Option<(String, String)>, ConnectorError> {
    if position.is_null() {
        return Ok(None);
    }
    let text = |name: &str| {
        position
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (text("cursor"), text("key")) {
        (Some(cursor), Some(key)) => Ok(Some((cursor, key))),
        _ => Err(ConnectorError::internal(format!(
            "the stored position {position} is not a PostgreSQL source's \
             {{\"cursor\": ..., \"key\": ...}}"
        ))),
    }
}
