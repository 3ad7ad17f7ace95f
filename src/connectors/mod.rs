//! Connectors: how records are read from and written to systems. One folder per connector,
//! each with its config handling, `source.rs` and/or `sink.rs`. The literal lists of
//! connectors are the [`Source`] and [`Sink`] enums: adding a connector is a folder and one
//! variant in each list it serves.
//!
//! Connectors know nothing of contracts, mappings or owners; the runtime does. They only read
//! batches with a resumable position, and write records with an acknowledgement.

pub mod file;
pub mod http;
pub mod recorder;

use serde_json::Value;

/// One record as read, before decoding.
#[derive(Debug)]
pub enum RawRecord<'a> {
    /// A line of a JSONL file, not decoded yet.
    Line(&'a [u8]),
    /// A value already decoded (HTTP pages, CSV rows, test inputs).
    Value(&'a Value),
}

impl RawRecord<'_> {
    /// The record as stored in a dead letter: the original text.
    pub fn original_text(&self) -> String {
        match self {
            RawRecord::Line(line) => String::from_utf8_lossy(line).into_owned(),
            RawRecord::Value(value) => value.to_string(),
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
    /// Lines in one buffer: `ends[i]` is the end of line `i` (exclusive, newline excluded).
    Lines {
        /// The bytes.
        buf: Vec<u8>,
        /// Line boundaries: (start, end).
        spans: Vec<(usize, usize)>,
    },
    /// Decoded values.
    Values(Vec<Value>),
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
        }
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index`.
    pub fn get(&self, index: usize) -> Option<RawRecord<'_>> {
        match &self.records {
            BatchRecords::Lines { buf, spans } => spans
                .get(index)
                .map(|(start, end)| RawRecord::Line(&buf[*start..*end])),
            BatchRecords::Values(values) => values.get(index).map(RawRecord::Value),
        }
    }
}

/// A source failure; the run stops and the owner of `source-unavailable` is told.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The system could not be reached or answered with an error.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The response or file is not what the flow declares.
    #[error("source returned unexpected data: {0}")]
    BadData(String),
}

/// A write the sink did not acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// Whether retrying can help (5xx, 408, 429, network errors) or not (other 4xx).
    pub transient: bool,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Seconds the sink asked to wait (`Retry-After`).
    pub retry_after: Option<u64>,
    /// What happened.
    pub message: String,
}

impl SendFailure {
    /// Classifies an HTTP status: 408, 429 and 5xx are transient, other 4xx permanent.
    pub fn from_status(status: u16, retry_after: Option<u64>, body: &str) -> Self {
        let transient = status == 408 || status == 429 || status >= 500;
        let mut snippet: String = body.chars().take(200).collect();
        if snippet.len() < body.len() {
            snippet.push_str("...");
        }
        Self {
            transient,
            status: Some(status),
            retry_after,
            message: if snippet.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {snippet}")
            },
        }
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
