//! Reading JSONL and CSV files in batches. Lines are split on bytes and decoded whole, so a
//! multi-byte UTF-8 character is never cut in two.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::connectors::{Batch, BatchRecords, SourceError};
use crate::spec::raw::FileFormat;

/// A file being read.
pub struct FileSource {
    path: PathBuf,
    reader: Reader,
    offset: u64,
    line: u64,
    /// Bytes of the last JSONL batch: the next buffer starts that big, so it is not copied
    /// over while it grows.
    last_batch_bytes: usize,
}

enum Reader {
    Jsonl(BufReader<File>),
    Csv {
        reader: csv::Reader<File>,
        headers: Vec<String>,
    },
}

impl FileSource {
    /// Opens `path` and moves to `position` (a checkpoint written by this source).
    pub fn open(path: &Path, format: FileFormat, position: &Value) -> Result<Self, SourceError> {
        let unavailable =
            |err: std::io::Error| SourceError::Unavailable(format!("{}: {err}", path.display()));
        let offset = position.get("offset").and_then(Value::as_u64).unwrap_or(0);
        let line = position.get("line").and_then(Value::as_u64).unwrap_or(0);
        let mut file = File::open(path).map_err(unavailable)?;
        let reader = match format {
            FileFormat::Jsonl => {
                file.seek(SeekFrom::Start(offset)).map_err(unavailable)?;
                Reader::Jsonl(BufReader::with_capacity(1 << 20, file))
            }
            FileFormat::Csv => {
                let mut reader = csv::Reader::from_reader(file);
                let headers = reader
                    .headers()
                    .map_err(|e| SourceError::BadData(format!("{}: {e}", path.display())))?
                    .iter()
                    .map(str::to_owned)
                    .collect();
                if offset > 0 {
                    let mut pos = csv::Position::new();
                    pos.set_byte(offset).set_line(line + 1).set_record(line);
                    reader.seek(pos).map_err(|e| {
                        SourceError::Unavailable(format!("{}: {e}", path.display()))
                    })?;
                }
                Reader::Csv { reader, headers }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            reader,
            offset,
            line,
            last_batch_bytes: 0,
        })
    }

    /// Reads up to `max` records; `None` at the end of the file.
    pub fn next_batch(&mut self, max: usize) -> Result<Option<Batch>, SourceError> {
        let records = match &mut self.reader {
            Reader::Jsonl(reader) => {
                let estimate = match self.last_batch_bytes {
                    0 => max * 512,
                    last => last + last / 8,
                };
                let mut buf = Vec::with_capacity(estimate);
                let mut spans = Vec::with_capacity(max);
                while spans.len() < max {
                    let start = buf.len();
                    let read = reader.read_until(b'\n', &mut buf).map_err(|e| {
                        SourceError::Unavailable(format!("{}: {e}", self.path.display()))
                    })?;
                    if read == 0 {
                        break;
                    }
                    self.offset += read as u64;
                    self.line += 1;
                    let mut end = buf.len();
                    while end > start && matches!(buf[end - 1], b'\n' | b'\r') {
                        end -= 1;
                    }
                    spans.push((start, end));
                }
                if spans.is_empty() {
                    return Ok(None);
                }
                self.last_batch_bytes = buf.len();
                BatchRecords::Lines { buf, spans }
            }
            Reader::Csv { reader, headers } => {
                let mut values = Vec::with_capacity(max);
                let mut row = csv::StringRecord::new();
                while values.len() < max {
                    let more = reader.read_record(&mut row).map_err(|e| {
                        SourceError::BadData(format!("{}: {e}", self.path.display()))
                    })?;
                    if !more {
                        break;
                    }
                    let object: Map<String, Value> = headers
                        .iter()
                        .zip(row.iter())
                        .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                        .collect();
                    values.push(Value::Object(object));
                    self.line += 1;
                }
                self.offset = reader.position().byte();
                if values.is_empty() {
                    return Ok(None);
                }
                BatchRecords::Values(values)
            }
        };
        Ok(Some(Batch {
            records,
            position: json!({"offset": self.offset, "line": self.line}),
        }))
    }
}
