//! The SQL connector (`postgres:`): reads a table or a query incrementally, and writes records
//! into a table in one transaction per batch, effectively once through the idempotency key —
//! on PostgreSQL, or on an embedded SQLite file ([`sqlite`]) when the system says so (a
//! `sqlite:` URL, or its `fallback:` when the URL's variable is not set). The two are behind
//! one small trait ([`backend::Backend`]).
//!
//! It owns its settings ([`config`]), its connections (a small pool per source or sink, never
//! the state store's) and the classification of PostgreSQL's errors by SQLSTATE
//! ([`classify`]) and SQLite's by code. It must not reach into the runtime or the state
//! store: everything it needs comes through [`crate::connectors::api`].

mod backend;
pub mod config;
mod copy;
mod sink;
mod source;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

pub use self::config::{FallbackConfig, PostgresConfig, PostgresFromConfig, PostgresToConfig};
use super::api::{Connector, ConnectorError, Problem, Roles, Setup, Sink, Source};
use crate::error_text::with_causes;

/// How long connecting may take before the attempt counts as an outage.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL connector (`connector: postgres`).
pub struct Postgres;

#[async_trait]
impl Connector for Postgres {
    const NAME: &'static str = "postgres";
    const ROLES: Roles = Roles {
        source: true,
        sink: true,
    };
    type System = PostgresConfig;
    type From = PostgresFromConfig;
    type To = PostgresToConfig;

    fn check_system(system: &PostgresConfig) -> Vec<Problem> {
        config::check_system(system)
    }

    fn optional_settings(system: &PostgresConfig) -> Vec<String> {
        // With a fallback, an unset variable in the URL is how the fallback is chosen.
        if system.fallback.is_some() {
            vec!["/url".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn start_notice(name: &str, system: &PostgresConfig, root: &Path) -> Option<String> {
        backend::fallback_notice(name, system, root)
    }

    fn check_from(_system: &PostgresConfig, from: &PostgresFromConfig) -> Vec<Problem> {
        config::check_from(from)
    }

    fn check_to(_system: &PostgresConfig, to: &PostgresToConfig) -> Vec<Problem> {
        config::check_to(to)
    }

    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &PostgresConfig,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        refuse_unchecked("postgres", config::check_system(system))?;
        refuse_unchecked("from", config::check_from(from))?;
        backend::open(system, setup.root)?
            .source(from, position)
            .await
    }

    async fn sink(
        &self,
        setup: &Setup<'_>,
        system: &PostgresConfig,
        to: &PostgresToConfig,
        sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError> {
        refuse_unchecked("postgres", config::check_system(system))?;
        refuse_unchecked("to", config::check_to(to))?;
        let (kind, shown) = match system.backend() {
            config::Backend::Postgres(_) => ("postgres", target(system)),
            config::Backend::Sqlite { path, .. } => {
                ("sqlite", setup.root.join(path).display().to_string())
            }
        };
        // Before connecting: a run that must not go on needs no database to say so.
        backend::Remembered::check(kind, sink_state, &shown)?;
        let sink = backend::open(system, setup.root)?.sink(to).await?;
        Ok(backend::Remembered::wrap(sink, kind))
    }
}

/// Settings that failed their check never reach SQL, even when validation was skipped: the
/// checks are what keeps names from carrying SQL. Messages name their setting; `section`
/// says where it sits, since no file position comes with a run-time error.
fn refuse_unchecked(section: &str, problems: Vec<Problem>) -> Result<(), ConnectorError> {
    if problems.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = problems
        .iter()
        .map(|problem| format!("{section}: {}", problem.message))
        .collect();
    Err(ConnectorError::spec(messages.join("; ")))
}

/// A pool of connections for one source or sink. Nothing connects until the first use.
fn pool(system: &PostgresConfig, read_only: bool) -> Result<Pool, ConnectorError> {
    if system.url.is_empty() {
        // An empty string parses as a URL with no setting at all, which would reach whatever
        // server the defaults point at.
        return Err(ConnectorError::spec(
            "postgres.url is empty; set it (a ${VAR} that is not set expands to nothing)",
        ));
    }
    let mut config: tokio_postgres::Config = system
        .url
        .parse()
        .map_err(|err| ConnectorError::spec(format!("postgres.url does not parse: {err}")))?;
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(user);
    }
    // UTC, ISO dates, the standard interval style and every float digit make the text of a
    // cursor independent of the server's and the role's settings, so a position read back
    // parses to the same value (a float8 rounded by `extra_float_digits=0` could fall below
    // a row and skip it). A source's session is read-only: a query, however written, cannot
    // change the data it reads.
    let mut options = format!(
        "-c statement_timeout={} -c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres \
         -c extra_float_digits=3",
        system.statement_timeout().as_millis().max(1)
    );
    if read_only {
        options.push_str(" -c default_transaction_read_only=on");
    }
    config.options(options);
    if config.get_application_name().is_none() {
        config.application_name("switchyard");
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(system.pool_size())
        .build()
        .map_err(|err| ConnectorError::internal(format!("PostgreSQL pool: {err}")))
}

/// A connection from `pool`, or why there is none.
async fn connection(pool: &Pool, target: &str) -> Result<Object, ConnectorError> {
    pool.get().await.map_err(|err| match err {
        PoolError::Backend(err) => classify(&err, target),
        other => {
            ConnectorError::unavailable(format!("PostgreSQL at {target}: no connection: {other}"))
        }
    })
}

/// Where a system points, for messages: host, port and database, never credentials.
fn target(system: &PostgresConfig) -> String {
    crate::redact::redact(&system.url).into_owned()
}

/// Classifies a PostgreSQL error by its SQLSTATE class: data that breaks a type or a
/// constraint, or that a trigger refuses (`RAISE EXCEPTION`), is the record's fault; connection loss, serialization failures, deadlocks,
/// exhausted resources, shutdowns and cancelled statements are outages worth retrying; a
/// missing table, column or privilege is the workspace's. An error without SQLSTATE never
/// reached the server's logic (refused connection, broken socket, timeout): an outage.
fn classify(err: &tokio_postgres::Error, target: &str) -> ConnectorError {
    let Some(code) = err.code() else {
        return ConnectorError::unavailable(format!(
            "PostgreSQL at {target}: {}",
            with_causes(err)
        ));
    };
    let state = code.code();
    let message = match err.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "PostgreSQL at {target}: {} (SQLSTATE {state})",
                db.message()
            );
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => format!(
            "PostgreSQL at {target}: {} (SQLSTATE {state})",
            with_causes(err)
        ),
    };
    let class = &state[..state.len().min(2)];
    // P0: PL/pgSQL's own errors, above all a trigger's `RAISE EXCEPTION` refusing a row.
    if class == "22" || class == "23" || class == "P0" {
        ConnectorError::rejected(message)
    } else if class == "08"
        || class == "53"
        || class == "58"
        || state.starts_with("57P")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::LOCK_NOT_AVAILABLE
    {
        ConnectorError::unavailable(message)
    } else if ["42", "28", "3D", "3F", "25", "0A"].contains(&class) {
        // 25: a read-only transaction asked to write; 0A: a query using what PostgreSQL does
        // not support there. Both are settings to change.
        ConnectorError::spec(message)
    } else {
        // Anything else (an internal error of the server, an unusual state): the server's
        // fault, but nothing says a retry would help.
        ConnectorError {
            retryable: false,
            ..ConnectorError::unavailable(message)
        }
    }
}

#[cfg(test)]
mod tests;
