//! The file connector: JSONL and CSV input read in batches with a resumable byte offset (a row
//! that cannot be read is handed on as malformed, for a dead letter, and the rest of the file
//! flows), and JSONL output that is truncated back to the last committed length after a crash,
//! so a file sink is written exactly once; an output the committed state does not cover is
//! refused, never cut.

pub mod config;
mod sink;
mod source;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use self::config::FileFormat;
pub use self::config::{FileFromConfig, FileSystemConfig, FileToConfig};
pub use self::sink::{FileSink, FileSinkError, FileWriter};
pub use self::source::{FileSource, MAX_CSV_ROW_BYTES};
use super::{Connector, ConnectorError, Roles, Setup, Sink, Source};

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

    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &FileSystemConfig,
        from: &FileFromConfig,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let path = file_path(setup, system, from.path.as_deref())?;
        let format = from.format.unwrap_or(FileFormat::Jsonl);
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
