//! The file connector: JSONL and CSV input read in batches with a resumable byte offset, and
//! JSONL output that is truncated back to the last committed length after a crash, so a file
//! sink is written exactly once.

mod sink;
mod source;

pub use self::sink::FileSink;
pub use self::source::FileSource;
