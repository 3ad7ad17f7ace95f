//! Connectors: how records are read from and written to systems. One folder per connector,
//! each with its settings (`config.rs`), `source.rs` and/or `sink.rs`, implementing the
//! interface of [`api`]. The literal list of connectors is [`registry`]: adding a connector is
//! a folder and one line there; the runtime never names a connector.
//!
//! Connectors know nothing of contracts, mappings or owners; the runtime does. They only read
//! batches with a resumable position, and write records with an acknowledgement.

pub mod api;
pub mod file;
pub mod http;
pub mod postgres;
pub mod recorder;
pub mod webhook;

use serde_json::Value;

pub use self::api::{
    BatchOutcome, Connector, ConnectorError, DynConnector, Encoded, Fault, Problem, Roles, Setup,
    Sink, SinkCommit, SinkStyle, Source, SourceNotice,
};

/// Every connector, by the key that names it under a system. Adding a connector is one line
/// here (and its folder).
pub fn registry() -> &'static [&'static dyn DynConnector] {
    &[&http::Http, &file::File, &postgres::Postgres]
}

/// The connector named `name` under a system.
pub fn connector(name: &str) -> Option<&'static dyn DynConnector> {
    registry().iter().copied().find(|c| c.name() == name)
}

/// What operators must know before flows on `systems` run (an embedded fallback taking over),
/// one line per system that has something to say: `run` and `serve` print these once at
/// start. `systems` are `(name, settings)` with `${ENV}` expanded, as the workspace holds them.
pub fn start_notices<'a>(
    systems: impl IntoIterator<Item = (&'a str, &'a crate::spec::raw::SystemConfig)>,
    root: &std::path::Path,
) -> Vec<String> {
    systems
        .into_iter()
        .filter_map(|(name, system)| {
            let (key, settings) = system.connector()?;
            connector(key)?.start_notice(name, settings, root)
        })
        .collect()
}

/// One record as read, before decoding.
#[derive(Debug)]
pub enum RawRecord<'a> {
    /// A line of a JSONL file, not decoded yet.
    Line(&'a [u8]),
    /// A value already decoded (HTTP pages, CSV rows, test inputs).
    Value(&'a Value),
    /// A record the source could delimit but not decode (a ragged or non-UTF-8 CSV row, an
    /// unterminated quote): the bytes as they are in the source, and why.
    Malformed {
        /// The record's bytes, line terminator excluded.
        bytes: &'a [u8],
        /// What is wrong with it, for people.
        error: &'a str,
        /// The dead letter's reason code (`malformed`, `malformed_json`).
        reason: &'a str,
    },
}

impl RawRecord<'_> {
    /// The record as stored in a dead letter: the original bytes, exactly as read. A decoded
    /// value has no other original than its JSON text.
    pub fn original(&self) -> Vec<u8> {
        match self {
            RawRecord::Line(line) => line.to_vec(),
            RawRecord::Value(value) => value.to_string().into_bytes(),
            RawRecord::Malformed { bytes, .. } => bytes.to_vec(),
        }
    }
}

/// Records read in one go, and the source position just after them.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records.
    pub records: BatchRecords,
    /// The position to checkpoint once every record of the batch is settled.
    pub position: Value,
}

/// The records of a batch.
#[derive(Debug)]
pub enum BatchRecords {
    /// Lines in one buffer, one record per line.
    Lines {
        /// The bytes.
        buf: Vec<u8>,
        /// Line boundaries: (start, end), newline excluded.
        spans: Vec<(usize, usize)>,
        /// The 1-based line number of the first span in the file.
        first_line: u64,
    },
    /// Decoded values.
    Values(Vec<Value>),
    /// Rows of a CSV file, each decoded or kept as the bytes it could not be decoded from.
    Rows(Vec<Row>),
}

/// One row of a delimited file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The 1-based line the row starts on; 0 when it was not read from a file.
    pub line: u64,
    /// The row's fields by header name, or why it could not be read.
    pub record: Result<Value, Malformed>,
}

/// A record a source could delimit but not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Its bytes as they are in the source, line terminator excluded.
    pub bytes: Vec<u8>,
    /// What is wrong with it, for people.
    pub error: String,
    /// The dead letter's reason code: `malformed` (a row that cannot be delimited or
    /// decoded), `malformed_json` (a body that is not the JSON it should be).
    pub reason: &'static str,
}

impl Default for BatchRecords {
    fn default() -> Self {
        BatchRecords::Values(Vec::new())
    }
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        match &self.records {
            BatchRecords::Lines { spans, .. } => spans.len(),
            BatchRecords::Values(values) => values.len(),
            BatchRecords::Rows(rows) => rows.len(),
        }
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index`.
    pub fn get(&self, index: usize) -> Option<RawRecord<'_>> {
        match &self.records {
            BatchRecords::Lines { buf, spans, .. } => spans
                .get(index)
                .map(|(start, end)| RawRecord::Line(&buf[*start..*end])),
            BatchRecords::Values(values) => values.get(index).map(RawRecord::Value),
            BatchRecords::Rows(rows) => rows.get(index).map(|row| match &row.record {
                Ok(value) => RawRecord::Value(value),
                Err(malformed) => RawRecord::Malformed {
                    bytes: &malformed.bytes,
                    error: &malformed.error,
                    reason: malformed.reason,
                },
            }),
        }
    }

    /// The line of the source file record `index` starts on, when the source is a file.
    pub fn line(&self, index: usize) -> Option<u64> {
        match &self.records {
            BatchRecords::Lines {
                spans, first_line, ..
            } => (index < spans.len()).then(|| first_line + index as u64),
            BatchRecords::Values(_) => None,
            // Line 0: a row not read from a file (a webhook event).
            BatchRecords::Rows(rows) => rows.get(index).map(|row| row.line).filter(|l| *l > 0),
        }
    }

    /// The decoded records, to enrich them in place; `None` when the records are still
    /// undecoded lines.
    pub fn values_mut(&mut self) -> Option<Vec<&mut Value>> {
        match &mut self.records {
            BatchRecords::Lines { .. } => None,
            BatchRecords::Values(values) => Some(values.iter_mut().collect()),
            BatchRecords::Rows(rows) => Some(
                rows.iter_mut()
                    .filter_map(|row| row.record.as_mut().ok())
                    .collect(),
            ),
        }
    }
}

/// A source that could not be read: the system is down or refused the read. Retrying later
/// can help; the run stops and the owner of `source-unavailable` is told.
pub(crate) fn source_unavailable(message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::unavailable(format!("source unavailable: {message}"))
}

/// A source that answered with something the flow does not declare (no records array, a
/// file that is not what its format says): reading it again gives the same answer.
pub(crate) fn source_bad_data(message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError {
        fault: Fault::External,
        retryable: false,
        retry_after: None,
        status: None,
        message: format!("source returned unexpected data: {message}"),
    }
}

/// One record to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The idempotency key.
    pub idempotency_key: String,
    /// The mapped record.
    pub body: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_connector_once() {
        let names: Vec<_> = registry().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["http", "file", "postgres"]);
        assert!(connector("file").is_some());
        assert!(connector("ftp").is_none());
    }

    #[test]
    fn http_statuses_keep_their_classification() {
        for status in [408, 429, 500, 502, 503, 504] {
            let err = ConnectorError::from_status(status, None, "");
            assert!(err.retryable, "{status}");
            assert_eq!(err.fault, Fault::External, "{status}");
        }
        for status in [400, 401, 403, 404, 409, 422] {
            let err = ConnectorError::from_status(status, None, "bad sku");
            assert!(!err.retryable, "{status}");
            assert_eq!(err.fault, Fault::Record, "{status}");
            assert_eq!(err.message, format!("HTTP {status}: bad sku"));
        }
    }
}
