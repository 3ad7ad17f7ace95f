//! The file connector: JSONL and CSV input read in batches with a resumable byte offset (a row
//! that cannot be read is handed on as malformed, for a dead letter, and the rest of the file
//! flows), from one named file or from a drop folder whose files are each read once and
//! archived (`drop.rs`); and JSONL output that is truncated back to the last committed length
//! after a crash, so a file sink is written exactly once; an output the committed state does
//! not cover is refused, never cut.

pub mod config;
mod drop;
mod pattern;
mod sink;
mod source;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use self::config::FileFormat;
pub use self::config::{FileFromConfig, FileSystemConfig, FileToConfig};
pub use self::drop::{DEFAULT_SETTLE, DropFolder, DropSource};
pub use self::sink::{FileSink, FileSinkError, FileWriter};
pub use self::source::{FileSource, MAX_CSV_ROW_BYTES};
use super::{Connector, ConnectorError, Problem, Roles, Setup, Sink, Source};
use crate::spec::diagnostic::Code;

/// The file connector (`file:` under a system).
#[derive(Debug, Clone, Copy)]
pub struct File;

#[async_trait]
impl Connector for File {
    const NAME: &'static str = "file";
    const ROLES: Roles = Roles {
        source: true,
        sink: true,
    };
    type System = FileSystemConfig;
    type From = FileFromConfig;
    type To = FileToConfig;

    fn check_from(system: &FileSystemConfig, from: &FileFromConfig) -> Vec<Problem> {
        let mut problems = Vec::new();
        match (&from.path, &from.files) {
            (Some(_), Some(_)) => problems.push(
                Problem::new(
                    "",
                    Code::InvalidValue,
                    "`from:` gives both `path` and `files`",
                )
                .with_hint(
                    "`path` reads one file; `files` takes every file dropped in a folder \
                         once. Keep one",
                ),
            ),
            (None, None) => problems.push(
                Problem::new(
                    "",
                    Code::InvalidValue,
                    "`from:` on a file system needs `path` or `files`",
                )
                .with_hint(
                    "`path: orders.jsonl` reads one file; `files: statements/*.csv` with \
                         `archive: archive` takes each file dropped in a folder once",
                ),
            ),
            _ => {}
        }
        if from.files.is_none() {
            for (key, given) in [
                ("archive", from.archive.is_some()),
                ("settle", from.settle.is_some()),
            ] {
                if given {
                    problems.push(
                        Problem::new(
                            format!("/{key}"),
                            Code::InvalidValue,
                            format!("`{key}` applies to a drop folder (`files`) only"),
                        )
                        .with_hint(format!(
                            "remove `{key}`, or read a drop folder with `files`"
                        )),
                    );
                }
            }
            return problems;
        }
        if let Some(settle) = &from.settle
            && let Err(message) = crate::spec::parse_duration(settle)
        {
            problems.push(
                Problem::new("/settle", Code::InvalidDuration, message)
                    .with_hint("durations look like 10s, 1m or 500ms"),
            );
        }
        let Some(archive) = &from.archive else {
            problems.push(
                Problem::new(
                    "/files",
                    Code::InvalidValue,
                    "a drop folder (`files`) needs `archive`, the folder read files are moved to",
                )
                .with_hint("add `archive: archive` (a folder relative to the system's folder)"),
            );
            return problems;
        };
        if let Some(pattern) = &from.files
            && let Err(message) = DropFolder::new(
                system.dir.clone().into(),
                pattern,
                archive,
                FileFormat::Jsonl,
                DEFAULT_SETTLE,
            )
        {
            let pointer = if message.starts_with("archive") {
                "/archive"
            } else {
                "/files"
            };
            problems.push(Problem::new(pointer, Code::InvalidValue, message));
        }
        problems
    }

    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &FileSystemConfig,
        from: &FileFromConfig,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let format = from.format.unwrap_or(FileFormat::Jsonl);
        if let Some(pattern) = &from.files {
            let archive = from
                .archive
                .as_deref()
                .ok_or_else(|| ConnectorError::spec("a drop folder (`files`) needs `archive`"))?;
            let settle = match &from.settle {
                Some(text) => crate::spec::parse_duration(text)
                    .map_err(|err| ConnectorError::spec(format!("settle: {err}")))?,
                None => DEFAULT_SETTLE,
            };
            let root = setup.root.join(&system.dir);
            let folder = DropFolder::new(root, pattern, archive, format, settle)
                .map_err(ConnectorError::spec)?;
            let source = DropSource::open(setup.flow, setup.store, folder, position).await?;
            return Ok(Box::new(source));
        }
        let path = file_path(setup, system, from.path.as_deref())?;
        Ok(Box::new(FileSource::open(&path, format, position)?))
    }

    async fn sink(
        &self,
        setup: &Setup<'_>,
        system: &FileSystemConfig,
        to: &FileToConfig,
        sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError> {
        let path = file_path(setup, system, to.path.as_deref())?;
        // An output the checkpoint does not cover is the workspace's to sort out: nothing
        // is cut or appended until someone does.
        let writer =
            FileWriter::open(&path, sink_state).map_err(|e| ConnectorError::spec(e.to_string()))?;
        Ok(Arc::new(FileSink::new(writer)))
    }
}

fn file_path(
    setup: &Setup<'_>,
    system: &FileSystemConfig,
    path: Option<&str>,
) -> Result<PathBuf, ConnectorError> {
    let path = path.ok_or_else(|| ConnectorError::spec("a file endpoint needs `path`"))?;
    Ok(setup.root.join(&system.dir).join(path))
}
