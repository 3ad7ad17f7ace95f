//! The JSONL and CSV readers over arbitrary file contents: every batch is read, then the file
//! is read again from each checkpointed position, as a restarted run would. Errors are fine,
//! panics are not.
//!
//! Input: one byte choosing the format (even: JSONL, odd: CSV), then the file's bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchyard::connectors::file::FileSource;
use switchyard::connectors::file::config::FileFormat;

/// One file per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("switchyard-fuzz-file-{}", std::process::id()))
    })
}

/// Reads every batch from `position`; returns the positions checkpointed after each.
fn read_all(format: FileFormat, position: &Value) -> Vec<Value> {
    let mut positions = Vec::new();
    let Ok(mut source) = FileSource::open(scratch(), format, position) else {
        return positions;
    };
    // A batch always holds at least one record, so this ends within the file's length.
    while let Ok(Some(batch)) = source.next_batch(3) {
        for index in 0..batch.len() {
            if let Some(record) = batch.get(index) {
                let _ = record.original();
            }
        }
        positions.push(batch.position);
    }
    positions
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, contents)) = data.split_first() else {
        return;
    };
    let format = if choice % 2 == 0 {
        FileFormat::Jsonl
    } else {
        FileFormat::Csv
    };
    if std::fs::write(scratch(), contents).is_err() {
        return;
    }
    let positions = read_all(format, &json!({}));
    for position in positions.iter().take(4) {
        let _ = read_all(format, position);
    }
});
