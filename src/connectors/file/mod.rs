//! The file connector: JSONL and CSV input read in batches with a resumable byte offset (a row
//! that cannot be read is handed on as malformed, for a dead letter, and the rest of the file
//! flows), and JSONL output that is truncated back to the last committed length after a crash,
//! so a file sink is written exactly once; an output the committed state does not cover is
//! refused, never cut.

mod sink;
mod source;

pub use self::sink::{FileSink, FileSinkError};
pub use self::source::{FileSource, MAX_CSV_ROW_BYTES};
