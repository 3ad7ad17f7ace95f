//! Writing JSONL. The committed length of the file is part of the flow's checkpoint; on open,
//! anything past it (written before a crash, never committed) is cut off, so records are
//! neither lost nor written twice.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// A JSONL output file.
pub struct FileSink {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
}

impl FileSink {
    /// Opens `path` for appending, cut back to the length in `sink_state` (a checkpoint
    /// written by this sink); a fresh flow starts from an empty file.
    pub fn open(path: &Path, sink_state: &Value) -> std::io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let committed = sink_state.get("len").and_then(Value::as_u64).unwrap_or(0);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let actual = file.metadata()?.len();
        if actual < committed {
            return Err(std::io::Error::other(format!(
                "{} holds {actual} bytes but {committed} were committed: the file was \
                 truncated or replaced outside Switchyard; move it away to start over",
                path.display()
            )));
        }
        if actual > committed {
            tracing::warn!(
                path = %path.display(),
                committed,
                actual,
                "Output file has an uncommitted tail from an interrupted run; cutting it off."
            );
            file.set_len(committed)?;
        }
        file.seek(SeekFrom::Start(committed))?;
        Ok(Self {
            path: path.to_owned(),
            writer: BufWriter::with_capacity(1 << 20, file),
            len: committed,
        })
    }

    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Hands buffered lines to the OS and returns the sink state to checkpoint. The caller
    /// makes them durable with [`FileSink::sync_handle`] before committing that state.
    pub fn flush(&mut self) -> std::io::Result<Value> {
        self.writer.flush()?;
        Ok(json!({"len": self.len}))
    }

    /// A second handle on the file, to `fsync` it from the committer thread.
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.writer.get_ref().try_clone()
    }
}
