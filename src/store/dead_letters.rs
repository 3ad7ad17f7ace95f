//! Dead letters: records that could not be delivered, with their failure mode, owner and the
//! original record, and what operators did about them.
//!
//! The original is kept byte for byte: `record` holds it as text, which is exact whenever it
//! is UTF-8; an original that is not UTF-8 is also kept whole in `record_raw`, and `record`
//! then holds a readable copy with U+FFFD in place of the bad bytes. Replay and export read
//! the exact bytes (each backend keeps them so).

use std::borrow::Cow;

use base64::Engine as _;
use serde::Serialize;
use serde::ser::SerializeMap;

/// A dead letter about to be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDeadLetter {
    /// The flow.
    pub flow: String,
    /// The business object.
    pub object: String,
    /// The record's identity key (`shop_id:offer_id`), when it could be read.
    pub record_key: Option<String>,
    /// The record's idempotency key, when it could be rendered.
    pub idempotency_key: Option<String>,
    /// The failure mode (`contract-violation`, ...).
    pub failure: String,
    /// A short machine reason (`missing_price`).
    pub reason: String,
    /// The error, for people.
    pub error: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The owner it is routed to.
    pub owner: String,
    /// The owner's action.
    pub action: Option<String>,
    /// The original record as received (JSON text, or the raw line or row when it could not
    /// be decoded), byte for byte; only its start when `record_truncated` says so.
    #[serde(flatten)]
    pub record: Original,
    /// The line of the source file the record starts on, when it came from a file.
    pub line: Option<u64>,
    /// Set when `record` keeps only the start of an original longer than the workspace's
    /// `max_dead_letter_record_size`.
    pub record_truncated: Option<RecordTruncation>,
}

/// A dead letter's original record, exactly as it arrived.
///
/// Serialised as `record` (the text; with U+FFFD for bytes that are not UTF-8) and, only when
/// the original is not UTF-8, `record_base64` (the exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Original(Vec<u8>);

impl Original {
    /// The original from its bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The original as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The original as text for display: exact when it is UTF-8, else with U+FFFD in place
    /// of the bytes that are not.
    pub fn to_text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The exact bytes in base64, the form JSON output carries an original that is not UTF-8.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Original {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Original {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Original {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl Serialize for Original {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self.as_str() {
            Some(text) => map.serialize_entry("record", text)?,
            None => {
                map.serialize_entry("record", &self.to_text_lossy())?;
                map.serialize_entry("record_base64", &self.to_base64())?;
            }
        }
        map.end()
    }
}

/// What a dead letter knows of an original record it kept only the start of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordTruncation {
    /// The original's full length in bytes.
    pub original_bytes: u64,
    /// SHA-256 of the full original, hex: identifies it for whoever still has it.
    pub sha256: String,
}

/// What has become of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatus {
    /// Waiting for its owner.
    Open,
    /// Replayed and delivered.
    Replayed,
    /// Accepted as undeliverable, with a reason.
    Suppressed,
    /// Settled where it arose, nothing left to deliver: a reconciliation variance a later
    /// reconciliation no longer finds (finance corrected the ledger or the marketplace its
    /// statement).
    Resolved,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its ID.
    pub id: i64,
    /// Everything stored with it.
    #[serde(flatten)]
    pub letter: NewDeadLetter,
    /// Its status.
    pub status: DeadLetterStatus,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// Why (suppression reason or replay outcome).
    pub note: Option<String>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this failure mode.
    pub failure: Option<String>,
    /// Only this status (default: all).
    pub status: Option<DeadLetterStatus>,
    /// At most this many (default: all).
    pub limit: Option<usize>,
}

/// The dead-letter columns both stores select, in the order their row readers expect.
pub(crate) const DEAD_LETTER_COLUMNS: &str = "id, flow, object, record_key, idempotency_key, \
     failure, reason, error, attempts, owner, action, record, status, created_at, updated_at, \
     resolved_by, note, record_raw, line, record_original_bytes, record_sha256";

impl RecordTruncation {
    /// Read back from the two columns that store it (both NULL for an original kept whole).
    pub(crate) fn from_columns(bytes: Option<i64>, sha256: Option<String>) -> Option<Self> {
        match (bytes, sha256) {
            (Some(bytes), Some(sha256)) => Some(Self {
                original_bytes: u64::try_from(bytes).unwrap_or_default(),
                sha256,
            }),
            _ => None,
        }
    }

    /// The original's length as the column stores it.
    pub(crate) fn stored_bytes(&self) -> i64 {
        i64::try_from(self.original_bytes).unwrap_or(i64::MAX)
    }
}

impl DeadLetterStatus {
    /// The audit action recording a dead letter moved to this status.
    pub(crate) fn audit_action(self) -> &'static str {
        match self {
            DeadLetterStatus::Replayed => "dead-letter-replayed",
            DeadLetterStatus::Suppressed => "dead-letter-suppressed",
            DeadLetterStatus::Resolved => "dead-letter-resolved",
            DeadLetterStatus::Open => "dead-letter-reopened",
        }
    }

    /// Every status, in the order people are told of them.
    pub const ALL: [DeadLetterStatus; 4] = [
        DeadLetterStatus::Open,
        DeadLetterStatus::Replayed,
        DeadLetterStatus::Suppressed,
        DeadLetterStatus::Resolved,
    ];

    /// Its name, as stored and as given on a command line or in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Suppressed => "suppressed",
            DeadLetterStatus::Resolved => "resolved",
        }
    }

    /// The status named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    pub(crate) fn parse(text: &str) -> Self {
        Self::from_name(text).unwrap_or(DeadLetterStatus::Open)
    }
}
