//! Reading one side into the matcher. A local JSONL or CSV file (the file connector with only
//! `path` and `format`) is streamed by a reader that extracts the declared fields and nothing
//! else, on a blocking thread; any other source (HTTP, PostgreSQL, a file-drop folder) is read
//! through its connector, batch by batch, the way a flow reads it.

use std::borrow::Cow;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::extract::{Fields, Slot, split_csv};
use super::matcher::{MatchError, Matcher, Side};
use crate::connectors::{BatchRecords, ConnectorError, Setup};
use crate::spec::model::Endpoint;
use crate::store::Store;

/// Records asked per batch of a connector source.
const BATCH: usize = 5000;
/// The longest line the fast readers accept (a longer one is unreadable, and skipped).
const MAX_LINE: usize = 1 << 20;

/// Why a side could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source failed (unreachable, refused, a file that cannot be opened).
    #[error("{side} ({system}): {source}")]
    Source {
        /// `statement` or `ledger`.
        side: &'static str,
        /// The system.
        system: String,
        /// The connector's error.
        source: ConnectorError,
    },
    /// A local file could not be read.
    #[error("{side} file {path}: {source}")]
    File {
        /// `statement` or `ledger`.
        side: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CSV file's header row does not name a declared column.
    #[error(
        "{side} file {path}: no column {column:?} in the header row ({header}); fix the pointer under `reconcile:` or the export"
    )]
    MissingColumn {
        /// `statement` or `ledger`.
        side: &'static str,
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The header row.
        header: String,
    },
    /// Matching failed.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// The reading thread stopped.
    #[error("the reading thread stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Statement => "statement",
        Side::Ledger => "ledger",
    }
}

/// A local file the fast readers can take: the file connector with only `path` and `format`.
fn local_file(endpoint: &Endpoint, root: &Path) -> Option<(PathBuf, bool)> {
    if endpoint.connector.name() != "file" {
        return None;
    }
    let settings = endpoint.settings.as_object()?;
    if settings.keys().any(|k| k != "path" && k != "format") {
        return None;
    }
    let dir = endpoint.system_settings.get("dir")?.as_str()?;
    let path = settings.get("path")?.as_str()?;
    let csv = match settings.get("format").and_then(Value::as_str) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => return None,
    };
    Some((root.join(dir).join(path), csv))
}

/// Reads `side` of `endpoint` into `matcher`, returning it.
pub(crate) async fn read_side(
    endpoint: &Endpoint,
    side: Side,
    root: &Path,
    store: &Store,
    flow: &str,
    mut matcher: Matcher,
) -> Result<Matcher, ReadError> {
    let fields = match side {
        Side::Statement => matcher.statement_fields().clone(),
        Side::Ledger => matcher.ledger_fields().clone(),
    };
    if let Some((path, csv)) = local_file(endpoint, root)
        && (csv || fields.names().is_some())
    {
        return tokio::task::spawn_blocking(move || {
            read_file(&path, csv, side, &fields, &mut matcher)?;
            Ok(matcher)
        })
        .await?;
    }
    let source_error = |source| ReadError::Source {
        side: side_name(side),
        system: endpoint.system.clone(),
        source,
    };
    let setup = Setup {
        flow,
        root,
        store,
        batch_size: BATCH,
    };
    let mut source = endpoint
        .connector
        .source(
            &setup,
            &endpoint.system_settings,
            &endpoint.settings,
            &Value::Null,
        )
        .await
        .map_err(source_error)?;
    let mut number = 0u64;
    while let Some(batch) = source.next_batch(BATCH).await.map_err(source_error)? {
        match &batch.records {
            BatchRecords::Lines {
                buf,
                spans,
                first_line,
            } => {
                for (i, &(start, end)) in spans.iter().enumerate() {
                    let line = &buf[start..end];
                    let at = first_line + i as u64;
                    let mut slots: Vec<Slot<'_>> = Vec::new();
                    let values = fields
                        .read_json(line, &mut slots)
                        .map(|()| slots.as_slice())
                        .map_err(|e| format!("not a JSON object: {}", e.0));
                    matcher.add(side, values, at, &|| {
                        String::from_utf8_lossy(line).into_owned()
                    })?;
                }
            }
            BatchRecords::Values(values) => {
                for value in values {
                    number += 1;
                    let mut slots: Vec<Slot<'_>> = Vec::with_capacity(fields.len());
                    fields.read_value(value, &mut slots);
                    matcher.add(side, Ok(&slots), number, &|| value.to_string())?;
                }
            }
            BatchRecords::Rows(rows) => {
                for row in rows {
                    number += 1;
                    let at = if row.line > 0 { row.line } else { number };
                    match &row.record {
                        Ok(value) => {
                            let mut slots: Vec<Slot<'_>> = Vec::with_capacity(fields.len());
                            fields.read_value(value, &mut slots);
                            matcher.add(side, Ok(&slots), at, &|| value.to_string())?;
                        }
                        Err(malformed) => {
                            matcher.add(side, Err(malformed.error.clone()), at, &|| {
                                String::from_utf8_lossy(&malformed.bytes).into_owned()
                            })?;
                        }
                    }
                }
            }
        }
    }
    Ok(matcher)
}

/// Adds records held in memory to one side (flow tests).
pub(crate) fn add_values(
    matcher: &mut Matcher,
    side: Side,
    values: &[Value],
) -> Result<(), ReadError> {
    let fields = match side {
        Side::Statement => matcher.statement_fields().clone(),
        Side::Ledger => matcher.ledger_fields().clone(),
    };
    for (index, value) in values.iter().enumerate() {
        let mut slots: Vec<Slot<'_>> = Vec::with_capacity(fields.len());
        fields.read_value(value, &mut slots);
        matcher.add(side, Ok(&slots), index as u64 + 1, &|| value.to_string())?;
    }
    Ok(())
}

/// Streams a local JSONL or CSV file.
fn read_file(
    path: &Path,
    csv: bool,
    side: Side,
    fields: &Fields,
    matcher: &mut Matcher,
) -> Result<(), ReadError> {
    let file_error = |source| ReadError::File {
        side: side_name(side),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(4096);
    let mut number = 0u64;
    let mut columns: Option<Vec<Option<usize>>> = None;
    loop {
        buf.clear();
        let start = number + 1;
        let read = if csv {
            read_csv_record(&mut reader, &mut buf, &mut number).map_err(file_error)?
        } else {
            number += 1;
            reader.read_until(b'\n', &mut buf).map_err(file_error)?
        };
        if read == 0 {
            return Ok(());
        }
        let line = trim_eol(&buf);
        if line.is_empty() || line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let original = || String::from_utf8_lossy(line).into_owned();
        if line.len() > MAX_LINE {
            matcher.add(
                side,
                Err(format!("longer than {MAX_LINE} bytes")),
                start,
                &original,
            )?;
            continue;
        }
        if !csv {
            let mut slots: Vec<Slot<'_>> = Vec::with_capacity(fields.len());
            let values = fields
                .read_json(line, &mut slots)
                .map(|()| slots.as_slice())
                .map_err(|e| format!("not a JSON object: {}", e.0));
            matcher.add(side, values, start, &original)?;
            continue;
        }
        let Some(columns) = &columns else {
            columns = Some(header_columns(line, fields, side, path)?);
            continue;
        };
        let mut split: Vec<Cow<'_, [u8]>> = Vec::with_capacity(columns.len() * 2);
        if let Err(err) = split_csv(line, &mut split) {
            matcher.add(side, Err(err.0), start, &original)?;
            continue;
        }
        let mut row: Vec<Slot<'_>> = Vec::with_capacity(columns.len());
        let mut bad = None;
        for column in columns {
            let value = match column.and_then(|c| split.get(c)) {
                Some(Cow::Borrowed(bytes)) => match std::str::from_utf8(bytes) {
                    Ok(text) => Some(Cow::Borrowed(text)),
                    Err(_) => {
                        bad = Some("a field is not UTF-8".to_owned());
                        None
                    }
                },
                Some(Cow::Owned(bytes)) => match String::from_utf8(bytes.clone()) {
                    Ok(text) => Some(Cow::Owned(text)),
                    Err(_) => {
                        bad = Some("a field is not UTF-8".to_owned());
                        None
                    }
                },
                None => None,
            };
            row.push(value.filter(|v: &Cow<'_, str>| !v.is_empty()));
        }
        match bad {
            Some(error) => matcher.add(side, Err(error), start, &original)?,
            None => matcher.add(side, Ok(&row), start, &original)?,
        }
    }
}

/// Maps each declared field to its column; a column missing from the header stops the run.
fn header_columns(
    line: &[u8],
    fields: &Fields,
    side: Side,
    path: &Path,
) -> Result<Vec<Option<usize>>, ReadError> {
    let mut split = Vec::new();
    let header_text = String::from_utf8_lossy(line).into_owned();
    let _ = split_csv(line, &mut split);
    let header: Vec<String> = split
        .iter()
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let names = fields.names().unwrap_or_default();
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        match header.iter().position(|h| h == name) {
            Some(at) => columns.push(Some(at)),
            None => {
                return Err(ReadError::MissingColumn {
                    side: side_name(side),
                    path: path.to_path_buf(),
                    column: name.clone(),
                    header: header_text,
                });
            }
        }
    }
    if fields.names().is_none() {
        // Nested pointers cannot name a CSV column.
        return Err(ReadError::MissingColumn {
            side: side_name(side),
            path: path.to_path_buf(),
            column: "(a nested pointer)".into(),
            header: header_text,
        });
    }
    Ok(columns)
}

/// Reads one CSV record: a line, plus the following ones while a quote is open.
fn read_csv_record(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    number: &mut u64,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let read = reader.read_until(b'\n', buf)?;
        if read == 0 {
            return Ok(total);
        }
        *number += 1;
        total += read;
        let quotes = memchr::memchr_iter(b'"', buf).count();
        if quotes.is_multiple_of(2) || buf.len() > MAX_LINE {
            return Ok(total);
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
