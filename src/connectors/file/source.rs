//! Reading JSONL and CSV files in batches. Lines are split on bytes and decoded whole, so a
//! multi-byte UTF-8 character is never cut in two.
//!
//! CSV rows are delimited here, line by line, rather than by the `csv` crate: a row that
//! cannot be read must cost that row only. The crate reads an unterminated quote to the end
//! of the file as one field (silently swallowing every row after it) and stops at the first
//! ragged or non-UTF-8 row (blocking the whole file). Here a row that cannot be read becomes a
//! [`Malformed`] record with its bytes and line, which the runtime dead-letters, and the rest
//! of the file flows. An unterminated quote costs the line it opens on: the lines after it
//! are read again as rows of their own. Quoting is read as the `csv` crate reads it (RFC 4180,
//! leniently): a quote opens a quoted field only at the start of a field, `""` inside one is a
//! quote, text after a closing quote is kept, blank lines are skipped.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::config::FileFormat;
use crate::connectors::{
    Batch, BatchRecords, ConnectorError, Malformed, Row, source_bad_data, source_unavailable,
};

/// The most bytes one CSV row may span. A quoted field may hold line breaks, so only the end
/// of the file would otherwise tell an unterminated quote from a long field; past this bound
/// the quote is taken as unterminated, which keeps memory bounded whatever the file holds.
pub const MAX_CSV_ROW_BYTES: usize = 1 << 20;

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// A file being read.
pub struct FileSource {
    /// How messages name the file: its path, or its name in a drop folder.
    label: String,
    /// Whether a malformed row's error names the file (a drop folder's rows come from many
    /// files; a flow's one `path` needs no naming).
    name_rows: bool,
    format: FileFormat,
    /// Bounded to the bytes a drop folder hashed, so what is read is what was identified.
    reader: BufReader<Take<File>>,
    /// The most bytes read from the file (from its start).
    limit: u64,
    /// CSV: the header's field names.
    headers: Vec<String>,
    /// CSV: lines read but not settled yet, in file order: the lines after an unterminated
    /// quote, to be read again as rows of their own.
    pending: VecDeque<PhysicalLine>,
    /// Byte offset just after the last settled line: where a resumed run starts.
    offset: u64,
    /// Number of the last settled line (1-based; 0 before the first).
    line: u64,
    /// Lines taken from the file so far, settled or pending.
    lines_read: u64,
    /// Bytes of the last JSONL batch: the next buffer starts that big, so it is not copied
    /// over while it grows.
    last_batch_bytes: usize,
}

/// One line of a CSV file, terminator (`\n`, `\r\n` or `\r`) included.
#[derive(Debug)]
struct PhysicalLine {
    number: u64,
    bytes: Vec<u8>,
}

/// A CSV row delimited on its lines.
enum Split {
    /// A row whose quotes all close: its lines and fields.
    Row {
        lines: Vec<PhysicalLine>,
        fields: Fields,
    },
    /// A quote opened on `line` closes neither before the end of the file (`at_eof`) nor
    /// within [`MAX_CSV_ROW_BYTES`].
    Unterminated { line: PhysicalLine, at_eof: bool },
}

/// The fields of a CSV row in one buffer.
#[derive(Debug, Default)]
struct Fields {
    buf: Vec<u8>,
    /// End of each field in `buf`.
    ends: Vec<usize>,
    state: Quoting,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it closes the field, unless another quote follows.
    QuoteInQuoted,
}

impl FileSource {
    /// Opens `path` and moves to `position` (a checkpoint written by this source).
    pub fn open(path: &Path, format: FileFormat, position: &Value) -> Result<Self, ConnectorError> {
        let offset = position.get("offset").and_then(Value::as_u64).unwrap_or(0);
        let line = position.get("line").and_then(Value::as_u64).unwrap_or(0);
        let label = path.display().to_string();
        Self::open_at(path, &label, format, (offset, line), u64::MAX)
    }

    /// Names the file in the error of each malformed row.
    pub(super) fn naming_rows(mut self) -> Self {
        self.name_rows = true;
        self
    }

    /// Opens `path` (named `label` in messages), reading no further than `limit` bytes from
    /// its start, and moves to byte `offset`, just after line `line`.
    pub(super) fn open_at(
        path: &Path,
        label: &str,
        format: FileFormat,
        (offset, line): (u64, u64),
        limit: u64,
    ) -> Result<Self, ConnectorError> {
        let unavailable = |err: std::io::Error| source_unavailable(format!("{label}: {err}"));
        let file = File::open(path).map_err(unavailable)?;
        let mut source = Self {
            label: label.to_owned(),
            name_rows: false,
            format,
            reader: BufReader::with_capacity(1 << 20, file.take(limit)),
            limit,
            headers: Vec::new(),
            pending: VecDeque::new(),
            offset: 0,
            line: 0,
            lines_read: 0,
            last_batch_bytes: 0,
        };
        if format == FileFormat::Csv {
            source.read_headers()?;
        }
        if offset > source.offset {
            // Rebuilt rather than seeked: the bound counts from the new place.
            let mut file = std::mem::replace(
                &mut source.reader,
                BufReader::new(File::open(path).map_err(unavailable)?.take(0)),
            )
            .into_inner()
            .into_inner();
            file.seek(SeekFrom::Start(offset)).map_err(unavailable)?;
            source.reader =
                BufReader::with_capacity(1 << 20, file.take(limit.saturating_sub(offset)));
            source.offset = offset;
            source.line = line;
            source.lines_read = line;
        }
        Ok(source)
    }

    /// Reads up to `max` records; `None` at the end of the file.
    pub fn next_batch(&mut self, max: usize) -> Result<Option<Batch>, ConnectorError> {
        let records = match self.format {
            FileFormat::Jsonl => {
                let estimate = match self.last_batch_bytes {
                    0 => max * 512,
                    last => last + last / 8,
                };
                let mut buf = Vec::with_capacity(estimate);
                let mut spans = Vec::with_capacity(max);
                let first_line = self.line + 1;
                while spans.len() < max {
                    let start = buf.len();
                    let read = self
                        .reader
                        .read_until(b'\n', &mut buf)
                        .map_err(|e| self.unavailable(e))?;
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
                BatchRecords::Lines {
                    buf,
                    spans,
                    first_line,
                }
            }
            FileFormat::Csv => {
                let mut rows = Vec::with_capacity(max.min(1 << 16));
                while rows.len() < max {
                    match self.next_row()? {
                        Some(row) => rows.push(row),
                        None => break,
                    }
                }
                if rows.is_empty() {
                    return Ok(None);
                }
                BatchRecords::Rows(rows)
            }
        };
        Ok(Some(Batch {
            records,
            position: json!({"offset": self.offset, "line": self.line}),
        }))
    }

    /// Whether every byte up to the limit is read and settled: the file's last batch has
    /// been handed out.
    pub(super) fn at_end(&mut self) -> Result<bool, ConnectorError> {
        if !self.pending.is_empty() {
            return Ok(false);
        }
        let empty = match self.reader.fill_buf() {
            Ok(buffered) => buffered.is_empty(),
            Err(err) => return Err(self.unavailable(err)),
        };
        Ok(empty || self.offset >= self.limit)
    }

    /// Byte offset just after the last settled line, and that line's number.
    pub(super) fn resume_point(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    /// Reads the header row; a header that cannot be read leaves nothing to name the fields
    /// by, so the whole file is refused.
    fn read_headers(&mut self) -> Result<(), ConnectorError> {
        // A BOM is not part of the first field's name; it is settled like a line would be.
        let path = self.label.clone();
        let bom = match self.reader.fill_buf() {
            Ok(buffered) => buffered.starts_with(UTF8_BOM),
            Err(err) => return Err(source_unavailable(format!("{path}: {err}"))),
        };
        if bom {
            self.reader.consume(UTF8_BOM.len());
            self.offset = UTF8_BOM.len() as u64;
        }
        let bad = |line: u64, what: String| source_bad_data(format!("{path}: line {line}: {what}"));
        match self.next_split()? {
            None => Ok(()),
            Some(Split::Unterminated { line, .. }) => Err(bad(
                line.number,
                "the header row opens a quote that is never closed".into(),
            )),
            Some(Split::Row { lines, fields }) => {
                let line = lines.first().map_or(1, |l| l.number);
                self.headers = fields
                    .iter()
                    .enumerate()
                    .map(|(index, name)| {
                        std::str::from_utf8(name).map(str::to_owned).map_err(|_| {
                            bad(
                                line,
                                format!("header field {} is not valid UTF-8", index + 1),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(())
            }
        }
    }

    /// The next CSV row, decoded or malformed; `None` at the end of the file.
    fn next_row(&mut self) -> Result<Option<Row>, ConnectorError> {
        let row = match self.next_split()? {
            None => return Ok(None),
            Some(Split::Unterminated { line, at_eof }) => {
                let bound = if at_eof {
                    "before the end of the file".to_owned()
                } else {
                    format!("within {MAX_CSV_ROW_BYTES} bytes (the largest row read)")
                };
                let error = format!(
                    "unterminated quote: the quoted field opened on line {} does not close \
                     {bound}; this line is set aside and the lines after it are read as rows \
                     of their own",
                    line.number
                );
                Row {
                    line: line.number,
                    record: Err(Malformed {
                        bytes: content(&line.bytes).to_vec(),
                        error: self.row_error(line.number, error),
                        reason: "malformed",
                    }),
                }
            }
            Some(Split::Row { lines, fields }) => {
                let line = lines.first().map_or(0, |l| l.number);
                let record = decode_row(&self.headers, &fields).map_err(|error| {
                    let error = self.row_error(line, error);
                    let mut bytes: Vec<u8> = lines.iter().flat_map(|l| &l.bytes).copied().collect();
                    let end = content(&bytes).len();
                    bytes.truncate(end);
                    Malformed {
                        bytes,
                        error,
                        reason: "malformed",
                    }
                });
                Row { line, record }
            }
        };
        Ok(Some(row))
    }

    /// Delimits the next row: its first line, then more lines while a quoted field is open.
    /// Settles the lines it consumes; blank lines are skipped.
    fn next_split(&mut self) -> Result<Option<Split>, ConnectorError> {
        loop {
            let Some(first) = self.next_line()? else {
                return Ok(None);
            };
            if content(&first.bytes).is_empty() {
                self.settle(&first);
                continue;
            }
            let mut fields = Fields::default();
            let mut open = fields.feed(&first.bytes);
            let mut size = first.bytes.len();
            let mut lines = vec![first];
            let mut at_eof = false;
            while open && size <= MAX_CSV_ROW_BYTES {
                let Some(next) = self.next_line()? else {
                    at_eof = true;
                    break;
                };
                size += next.bytes.len();
                open = fields.feed(&next.bytes);
                lines.push(next);
            }
            if open {
                // Only the line that opened the quote is set aside: the others go back to be
                // read as rows, so an unclosed quote cannot swallow the rest of the file.
                let rest = lines.split_off(1);
                for line in rest.into_iter().rev() {
                    self.pending.push_front(line);
                }
                let Some(line) = lines.pop() else {
                    continue;
                };
                self.settle(&line);
                return Ok(Some(Split::Unterminated { line, at_eof }));
            }
            for line in &lines {
                self.settle(line);
            }
            fields.end_field();
            return Ok(Some(Split::Row { lines, fields }));
        }
    }

    /// The next line: one set aside earlier, or the next in the file.
    fn next_line(&mut self) -> Result<Option<PhysicalLine>, ConnectorError> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        let mut bytes = Vec::new();
        let read = read_csv_line(&mut self.reader, &mut bytes).map_err(|e| self.unavailable(e))?;
        if read == 0 {
            return Ok(None);
        }
        self.lines_read += 1;
        Ok(Some(PhysicalLine {
            number: self.lines_read,
            bytes,
        }))
    }

    /// Moves the position past a line whose row is about to be handed on.
    fn settle(&mut self, line: &PhysicalLine) {
        self.offset += line.bytes.len() as u64;
        self.line = line.number;
    }

    /// The error of a malformed row, naming the file and line when rows come from many files.
    fn row_error(&self, line: u64, error: String) -> String {
        if self.name_rows {
            format!("{} line {line}: {error}", self.label)
        } else {
            error
        }
    }

    fn unavailable(&self, err: std::io::Error) -> ConnectorError {
        source_unavailable(format!("{}: {err}", self.label))
    }
}

#[async_trait::async_trait]
impl crate::connectors::Source for FileSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        FileSource::next_batch(self, max_records)
    }

    /// A file read by offset: what comes next is there whatever became of the batch before.
    fn reads_ahead(&self) -> bool {
        true
    }
}

impl Fields {
    /// Splits one line (terminator included) into fields; `true` when a quoted field is still
    /// open at its end, so the row continues on the next line.
    fn feed(&mut self, line: &[u8]) -> bool {
        let text = content(line);
        for &byte in text {
            self.state = match (self.state, byte) {
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => {
                    self.buf.push(byte);
                    Quoting::Quoted
                }
                (Quoting::QuoteInQuoted, b'"') => {
                    self.buf.push(b'"');
                    Quoting::Quoted
                }
                (Quoting::FieldStart, b'"') => Quoting::Quoted,
                (_, b',') => {
                    self.end_field();
                    Quoting::FieldStart
                }
                (_, _) => {
                    self.buf.push(byte);
                    Quoting::Unquoted
                }
            };
        }
        if self.state == Quoting::Quoted {
            // The line break belongs to the quoted field.
            self.buf.extend_from_slice(&line[text.len()..]);
            true
        } else {
            false
        }
    }

    fn end_field(&mut self) {
        self.ends.push(self.buf.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.buf[start..end])
    }
}

/// A row's fields as a JSON object by header name, or what is wrong with the row.
fn decode_row(headers: &[String], fields: &Fields) -> Result<Value, String> {
    if fields.len() != headers.len() {
        return Err(format!(
            "ragged row: {} fields where the header has {}",
            fields.len(),
            headers.len()
        ));
    }
    let mut object = Map::with_capacity(headers.len());
    for (index, (name, bytes)) in headers.iter().zip(fields.iter()).enumerate() {
        let text = std::str::from_utf8(bytes).map_err(|err| {
            format!(
                "field `{name}` (column {}) is not valid UTF-8 (bad byte at offset {})",
                index + 1,
                err.valid_up_to()
            )
        })?;
        object.insert(name.clone(), Value::String(text.to_owned()));
    }
    Ok(Value::Object(object))
}

/// A line without its terminator.
fn content(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Reads one line ending in `\n`, `\r\n` or a lone `\r` (the terminators CSV writers use),
/// terminator included; returns the bytes read, 0 at the end of the file.
fn read_csv_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let start = buf.len();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            break;
        }
        let Some(at) = memchr::memchr2(b'\n', b'\r', available) else {
            let taken = available.len();
            buf.extend_from_slice(available);
            reader.consume(taken);
            continue;
        };
        let carriage_return = available[at] == b'\r';
        buf.extend_from_slice(&available[..=at]);
        reader.consume(at + 1);
        if carriage_return && reader.fill_buf()?.first() == Some(&b'\n') {
            buf.push(b'\n');
            reader.consume(1);
        }
        break;
    }
    Ok(buf.len() - start)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchyard-csv-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rows(text: &[u8]) -> Vec<Row> {
        let dir = temp_dir();
        let path = dir.join("in.csv");
        std::fs::write(&path, text).unwrap();
        let mut source = FileSource::open(&path, FileFormat::Csv, &Value::Null).unwrap();
        let mut all = Vec::new();
        while let Some(batch) = source.next_batch(2).unwrap() {
            let BatchRecords::Rows(rows) = batch.records else {
                panic!("CSV batches hold rows");
            };
            all.extend(rows);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        all
    }

    fn ok(line: u64, fields: &[(&str, &str)]) -> Row {
        let object = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        Row {
            line,
            record: Ok(Value::Object(object)),
        }
    }

    #[test]
    fn quoted_fields_may_hold_delimiters_quotes_and_line_breaks() {
        let got =
            rows(b"\xef\xbb\xbfid,name\r\n1,\"a, \"\"b\"\"\"\r\n\r\n2,\"two\nlines\"\n3,x\"y\r4,z");
        assert_eq!(
            got,
            [
                ok(2, &[("id", "1"), ("name", "a, \"b\"")]),
                ok(4, &[("id", "2"), ("name", "two\nlines")]),
                ok(6, &[("id", "3"), ("name", "x\"y")]),
                ok(7, &[("id", "4"), ("name", "z")]),
            ]
        );
    }

    #[test]
    fn an_unterminated_quote_costs_its_own_line_only() {
        let got = rows(b"id,name\n1,a\n2,\"broken\n3,c\n4,d\n");
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0], ok(2, &[("id", "1"), ("name", "a")]));
        assert_eq!(got[1].line, 3);
        let bad = got[1].record.as_ref().unwrap_err();
        assert_eq!(bad.bytes, b"2,\"broken");
        assert!(bad.error.contains("unterminated quote"), "{}", bad.error);
        assert_eq!(got[2], ok(4, &[("id", "3"), ("name", "c")]));
        assert_eq!(got[3], ok(5, &[("id", "4"), ("name", "d")]));
    }

    #[test]
    fn ragged_and_non_utf8_rows_are_malformed_and_the_rest_flows() {
        let got = rows(b"id,name\n1,a,extra\n2,caf\xe9\n3,c\n");
        assert_eq!(got.len(), 3);
        let ragged = got[0].record.as_ref().unwrap_err();
        assert_eq!(
            (got[0].line, ragged.bytes.as_slice()),
            (2, &b"1,a,extra"[..])
        );
        assert!(ragged.error.contains("3 fields where the header has 2"));
        let latin1 = got[1].record.as_ref().unwrap_err();
        assert_eq!(
            (got[1].line, latin1.bytes.as_slice()),
            (3, &b"2,caf\xe9"[..])
        );
        assert!(latin1.error.contains("`name`"), "{}", latin1.error);
        assert_eq!(got[2], ok(4, &[("id", "3"), ("name", "c")]));
    }

    #[test]
    fn a_resumed_source_reads_on_from_its_position() {
        let dir = temp_dir();
        let path = dir.join("in.csv");
        std::fs::write(&path, b"id,name\n1,\"x\n2,b\n3,c\n").unwrap();
        let mut source = FileSource::open(&path, FileFormat::Csv, &Value::Null).unwrap();
        // The first batch ends after the set-aside line; the lines read past it are pending.
        let first = source.next_batch(1).unwrap().unwrap();
        assert_eq!(first.position, json!({"offset": 13, "line": 2}));
        let mut resumed = FileSource::open(&path, FileFormat::Csv, &first.position).unwrap();
        let next = resumed.next_batch(10).unwrap().unwrap();
        let BatchRecords::Rows(rest) = next.records else {
            panic!("rows");
        };
        assert_eq!(
            rest,
            [
                ok(3, &[("id", "2"), ("name", "b")]),
                ok(4, &[("id", "3"), ("name", "c")])
            ]
        );
        assert_eq!(next.position, json!({"offset": 21, "line": 4}));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
