//! The two places a SQL system's data can live, behind one small trait: PostgreSQL, and an
//! embedded SQLite file (a `sqlite:` URL, or the system's `fallback:` when its URL's variable
//! is not set). The connector picks one per system ([`open`]); the sinks and sources of both
//! keep the same contract (see the module docs of each).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::config::{Backend as Where, PostgresConfig, PostgresFromConfig, PostgresToConfig};
use super::sqlite::{Db, SqliteSink, SqliteSource};
use super::{sink, source};
use crate::connectors::api::{BatchOutcome, ConnectorError, Encoded, Sink, SinkCommit, SinkStyle};

/// The most a schema file may hold: it is read whole and run as one batch.
const MAX_SCHEMA_BYTES: u64 = 1024 * 1024;

/// Where a SQL system's rows are read and written.
#[async_trait]
pub(super) trait Backend: Send + Sync {
    /// A source reading `from` after `position`.
    async fn source(
        &self,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Box<dyn crate::connectors::Source>, ConnectorError>;

    /// A sink writing `to`.
    async fn sink(&self, to: &PostgresToConfig) -> Result<Arc<dyn Sink>, ConnectorError>;
}

/// The backend of `system`, whose relative paths are relative to `root`.
pub(super) fn open(
    system: &PostgresConfig,
    root: &Path,
) -> Result<Box<dyn Backend>, ConnectorError> {
    let schema = read_schema(system, root)?;
    Ok(match system.backend() {
        Where::Postgres(_) => Box::new(Postgres {
            system: system.clone(),
            schema,
        }),
        Where::Sqlite { path, .. } => Box::new(Sqlite {
            path: root.join(path),
            schema,
        }),
    })
}

/// What `run` and `serve` say at start when the fallback takes over: which variable is not
/// set, where the rows go instead, and how to reach PostgreSQL.
pub(super) fn fallback_notice(name: &str, system: &PostgresConfig, root: &Path) -> Option<String> {
    let Where::Sqlite {
        path,
        fallback_for: Some(unset),
    } = system.backend()
    else {
        return None;
    };
    let file = root.join(path);
    let file = std::path::absolute(&file).unwrap_or(file);
    let (missing, set) = if unset.is_empty() {
        ("its url is empty".to_owned(), "set its url".to_owned())
    } else {
        let names = unset.join(", ");
        let verb = if unset.len() == 1 { "is" } else { "are" };
        (
            format!("{names} {verb} not set"),
            format!("set {}", unset[0]),
        )
    };
    Some(format!(
        "{name}: {missing}; posting into the embedded SQLite ledger at {}; {set}=postgres://... \
         for PostgreSQL",
        file.display()
    ))
}

/// The system's schema file, read.
fn read_schema(system: &PostgresConfig, root: &Path) -> Result<Option<String>, ConnectorError> {
    let Some(schema) = &system.schema else {
        return Ok(None);
    };
    let path = root.join(schema);
    let unreadable = |err: &dyn std::fmt::Display| {
        ConnectorError::spec(format!("schema: cannot read {}: {err}", path.display()))
    };
    let size = std::fs::metadata(&path)
        .map_err(|err| unreadable(&err))?
        .len();
    if size > MAX_SCHEMA_BYTES {
        return Err(ConnectorError::spec(format!(
            "schema: {} is {size} bytes, more than the {MAX_SCHEMA_BYTES} a schema file may hold; \
             split the data out of it",
            path.display()
        )));
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|err| unreadable(&err))
}

struct Postgres {
    system: PostgresConfig,
    schema: Option<String>,
}

#[async_trait]
impl Backend for Postgres {
    async fn source(
        &self,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Box<dyn crate::connectors::Source>, ConnectorError> {
        Ok(Box::new(
            source::PostgresSource::open(&self.system, from, position).await?,
        ))
    }

    async fn sink(&self, to: &PostgresToConfig) -> Result<Arc<dyn Sink>, ConnectorError> {
        let sink = sink::PostgresSink::open(&self.system, to, self.schema.as_deref()).await?;
        Ok(Arc::new(sink))
    }
}

struct Sqlite {
    path: PathBuf,
    schema: Option<String>,
}

#[async_trait]
impl Backend for Sqlite {
    async fn source(
        &self,
        from: &PostgresFromConfig,
        position: &Value,
    ) -> Result<Box<dyn crate::connectors::Source>, ConnectorError> {
        let db = Db::open(self.path.clone(), self.schema.clone()).await?;
        Ok(Box::new(SqliteSource::open(db, from, position).await?))
    }

    async fn sink(&self, to: &PostgresToConfig) -> Result<Arc<dyn Sink>, ConnectorError> {
        let db = Db::open(self.path.clone(), self.schema.clone()).await?;
        Ok(Arc::new(SqliteSink::open(db, to).await?))
    }
}

/// A sink that remembers, in the flow's checkpoint, which backend it posted into, and refuses
/// to go on into the other: lines checkpointed as posted into the embedded SQLite ledger are
/// not in PostgreSQL, and a run continuing from that checkpoint would never post them there.
pub(super) struct Remembered {
    inner: Arc<dyn Sink>,
    backend: &'static str,
}

impl Remembered {
    /// Refuses to go on posting into `backend` (`postgres` or `sqlite`, at `shown`) when the
    /// flow's last checkpoint (its `sink_state`) was posted into the other.
    pub(super) fn check(
        backend: &str,
        sink_state: &Value,
        shown: &str,
    ) -> Result<(), ConnectorError> {
        match sink_state.get("backend").and_then(Value::as_str) {
            Some(before) if before != backend => Err(ConnectorError::spec(format!(
                "this flow's checkpoint was posted into {before}, and the system now points at \
                 {backend} ({shown}): the lines already checkpointed would never reach it. To \
                 post everything into {backend}, start the flow from a fresh state store (move \
                 .switchyard/state.db away; posting is effectively once, so nothing is posted \
                 twice); to go on into {before}, point the system back at it"
            ))),
            _ => Ok(()),
        }
    }

    /// Wraps `inner`, which posts into `backend`.
    pub(super) fn wrap(inner: Arc<dyn Sink>, backend: &'static str) -> Arc<dyn Sink> {
        Arc::new(Remembered { inner, backend })
    }
}

#[async_trait]
impl Sink for Remembered {
    fn style(&self) -> SinkStyle {
        self.inner.style()
    }

    async fn write_batch(&self, records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        self.inner.write_batch(records).await
    }

    async fn prepare_commit(&self) -> Result<SinkCommit, ConnectorError> {
        let mut commit = self.inner.prepare_commit().await?;
        commit.state = json!({ "backend": self.backend });
        Ok(commit)
    }
}
