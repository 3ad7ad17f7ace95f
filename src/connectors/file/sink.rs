//! Writing JSONL. The committed length of the file is part of the flow's checkpoint; on open,
//! anything past it (written before a crash, never committed) is cut off, so records are
//! neither lost nor written twice.
//!
//! Only bytes the committed state proves are this flow's are ever cut. The sink state holds
//! the committed length and a digest of the bytes just before it (`tail`); an output file
//! that has content no checkpoint covers, is shorter than committed, or does not end its
//! committed part with the bytes written there, is refused, and nothing is cut or written. A
//! new output file is claimed (its empty state committed, see [`FileWriter::needs_claim`])
//! before the first write, so a crash during the first batch leaves a tail that is provably
//! this flow's. The digest is of content, not of the inode, so restoring the file and the
//! state file together from a backup still works.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::connectors::{BatchOutcome, ConnectorError, Encoded, Sink, SinkCommit, SinkStyle};

/// How many bytes before the committed length the `tail` digest covers.
const TAIL_WINDOW: u64 = 4096;

/// A JSONL output file.
pub struct FileWriter {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    /// The file is new and no checkpoint covers it yet.
    needs_claim: bool,
}

/// Why an output file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    /// The file could not be opened, read or cut.
    #[error("{path}: {source}")]
    Io {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has content and no checkpoint says this flow wrote it.
    #[error(
        "{path} already holds {len} bytes that no checkpoint of this flow covers (a new or lost \
         state file?); nothing is cut, appended or sent: move the file away to start a new \
         output, or restore the state file that wrote it"
    )]
    Unclaimed {
        /// The output file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file is shorter than what was committed.
    #[error(
        "{path} holds {actual} bytes but {committed} were committed: it was truncated or \
         replaced outside Switchyard; nothing is cut, appended or sent: restore it, or move it \
         away to start a new output"
    )]
    Shorter {
        /// The output file.
        path: PathBuf,
        /// Its size.
        actual: u64,
        /// The committed length.
        committed: u64,
    },
    /// The committed part of the file does not end with the bytes this flow wrote.
    #[error(
        "{path}: the bytes before the committed length {committed} are not the ones this flow \
         wrote: the file was replaced or edited outside Switchyard; nothing is cut, appended or \
         sent: restore it, or move it away to start a new output"
    )]
    Replaced {
        /// The output file.
        path: PathBuf,
        /// The committed length.
        committed: u64,
    },
}

impl FileWriter {
    /// Opens `path` for appending, cut back to the length in `sink_state` (a checkpoint
    /// written by this sink). A missing file is created (and needs a claim); an existing one
    /// must be covered by `sink_state`.
    pub fn open(path: &Path, sink_state: &Value) -> Result<Self, FileSinkError> {
        let io = |source| FileSinkError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        // Created here means ours from the first byte; otherwise the state must say so.
        let (mut file, created) = match options.clone().create_new(true).open(path) {
            Ok(file) => (file, true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                (options.open(path).map_err(io)?, false)
            }
            Err(err) => return Err(io(err)),
        };
        let committed = sink_state.get("len").and_then(Value::as_u64);
        let actual = file.metadata().map_err(io)?.len();
        let len = match committed {
            // A file that was taken away (an import folder's consumer, or an operator
            // following the advice below) starts over; everything committed was written.
            _ if created => 0,
            None if actual > 0 => {
                return Err(FileSinkError::Unclaimed {
                    path: path.to_owned(),
                    len: actual,
                });
            }
            None => 0,
            Some(committed) => {
                if actual < committed {
                    return Err(FileSinkError::Shorter {
                        path: path.to_owned(),
                        actual,
                        committed,
                    });
                }
                // States written before the digest existed have none; they are trusted.
                if let Some(expected) = sink_state.get("tail").and_then(Value::as_str)
                    && tail_digest(&mut file, committed).map_err(io)? != expected
                {
                    return Err(FileSinkError::Replaced {
                        path: path.to_owned(),
                        committed,
                    });
                }
                if actual > committed {
                    tracing::warn!(
                        path = %path.display(),
                        committed,
                        actual,
                        "Output file has an uncommitted tail from an interrupted run; cutting it off."
                    );
                    file.set_len(committed).map_err(io)?;
                }
                committed
            }
        };
        file.seek(SeekFrom::Start(len)).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            writer: BufWriter::with_capacity(1 << 20, file),
            len,
            needs_claim: created || committed.is_none(),
        })
    }

    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether no checkpoint covers this output yet. The caller commits [`FileWriter::flush`]'s
    /// state before the first write: a crash before the first batch is committed then leaves
    /// a tail the state proves is this flow's, instead of an output it must refuse.
    pub fn needs_claim(&self) -> bool {
        self.needs_claim
    }

    /// Appends one record as a line.
    pub fn write(&mut self, record: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Appends one record already encoded as JSON (without its newline).
    pub fn write_line(&mut self, json: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(json)?;
        self.writer.write_all(b"\n")?;
        self.len += json.len() as u64 + 1;
        Ok(())
    }

    /// Hands buffered lines to the OS and returns the sink state to checkpoint: the length
    /// and a digest of the bytes before it. The caller makes them durable with
    /// [`FileWriter::sync_handle`] before committing that state.
    pub fn flush(&mut self) -> std::io::Result<Value> {
        self.writer.flush()?;
        if self.len == 0 {
            return Ok(json!({"len": 0}));
        }
        let file = self.writer.get_mut();
        let tail = tail_digest(file, self.len)?;
        file.seek(SeekFrom::Start(self.len))?;
        Ok(json!({"len": self.len, "tail": tail}))
    }

    /// A second handle on the file, to `fsync` it from the committer thread.
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.writer.get_ref().try_clone()
    }
}

/// A JSONL output file as a batch [`Sink`]: a batch's lines are appended as they are
/// written, and its commit hands them to the OS and fsyncs them before the checkpoint with
/// the new length is written.
pub struct FileSink {
    writer: Mutex<FileWriter>,
}

impl FileSink {
    /// A sink over an opened output file.
    pub fn new(writer: FileWriter) -> Self {
        Self {
            writer: Mutex::new(writer),
        }
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, FileWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Sink for FileSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::Batch
    }

    async fn write_batch(&self, records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        let mut writer = self.writer();
        for record in records {
            writer
                .write_line(record.json)
                .map_err(|err| write_failed(&writer, &err))?;
        }
        Ok(BatchOutcome::default())
    }

    async fn prepare_commit(&self) -> Result<SinkCommit, ConnectorError> {
        let mut writer = self.writer();
        let state = writer.flush().map_err(|err| write_failed(&writer, &err))?;
        let file = writer
            .sync_handle()
            .map_err(|err| write_failed(&writer, &err))?;
        Ok(SinkCommit {
            state,
            durable: Some(Box::new(move || file.sync_data())),
        })
    }
}

/// A local write that failed: Switchyard's side (a full disk, a lost mount), not the data's.
fn write_failed(writer: &FileWriter, err: &std::io::Error) -> ConnectorError {
    ConnectorError::internal(format!("{}: {err}", writer.path().display()))
}

/// SHA-256 (hex) of the up to [`TAIL_WINDOW`] bytes before `len`; empty for `len` 0.
fn tail_digest(file: &mut File, len: u64) -> std::io::Result<String> {
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut window = vec![0; (len - start) as usize];
    file.read_exact(&mut window)?;
    Ok(hex::encode(Sha256::digest(&window)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchyard-sink-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `lines`, flushes and returns the state a commit would record.
    fn write_committed(sink: &mut FileWriter, lines: &[&str]) -> Value {
        for line in lines {
            sink.write_line(line.as_bytes()).unwrap();
        }
        sink.flush().unwrap()
    }

    #[test]
    fn an_uncommitted_tail_is_cut_back_to_the_committed_length() {
        let path = temp_dir().join("out.jsonl");
        let mut sink = FileWriter::open(&path, &Value::Null).unwrap();
        assert!(sink.needs_claim());
        let state = write_committed(&mut sink, &["{\"a\":1}"]);
        // Written but never committed (a crash before the commit).
        write_committed(&mut sink, &["{\"b\":2}"]);
        drop(sink);
        let mut sink = FileWriter::open(&path, &state).unwrap();
        assert!(!sink.needs_claim());
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n");
        write_committed(&mut sink, &["{\"c\":3}"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"c\":3}\n");
    }

    #[test]
    fn a_claimed_output_is_recovered_after_a_crash_in_its_first_batch() {
        let path = temp_dir().join("out.jsonl");
        let mut sink = FileWriter::open(&path, &Value::Null).unwrap();
        let claim = sink.flush().unwrap();
        assert_eq!(claim, json!({"len": 0}));
        write_committed(&mut sink, &["{\"a\":1}"]);
        drop(sink);
        FileWriter::open(&path, &claim).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn an_output_no_checkpoint_covers_is_refused_and_left_alone() {
        let path = temp_dir().join("out.jsonl");
        std::fs::write(&path, b"someone else's line\n").unwrap();
        let err = FileWriter::open(&path, &Value::Null).err().unwrap();
        assert!(
            matches!(err, FileSinkError::Unclaimed { len: 20, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("move the file away"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's line\n");
        // An empty file holds nothing to lose.
        std::fs::write(&path, b"").unwrap();
        assert!(FileWriter::open(&path, &Value::Null).unwrap().needs_claim());
    }

    #[test]
    fn a_shorter_or_replaced_output_is_refused_and_a_missing_one_starts_over() {
        let dir = temp_dir();
        let path = dir.join("out.jsonl");
        let mut sink = FileWriter::open(&path, &Value::Null).unwrap();
        let state = write_committed(&mut sink, &["{\"a\":1}", "{\"b\":2}"]);
        drop(sink);

        std::fs::write(&path, b"{\"a\":1}\n").unwrap();
        let err = FileWriter::open(&path, &state).err().unwrap();
        assert!(
            matches!(
                err,
                FileSinkError::Shorter {
                    actual: 8,
                    committed: 16,
                    ..
                }
            ),
            "{err}"
        );

        // Same length and more, other bytes: cutting would destroy someone else's data.
        std::fs::write(&path, b"{\"x\":9}\n{\"y\":8}\n{\"z\":7}\n").unwrap();
        let err = FileWriter::open(&path, &state).err().unwrap();
        assert!(
            matches!(err, FileSinkError::Replaced { committed: 16, .. }),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap().len(), 24);

        std::fs::remove_file(&path).unwrap();
        let sink = FileWriter::open(&path, &state).unwrap();
        assert!(sink.needs_claim());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
