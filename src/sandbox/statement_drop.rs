//! The marketplace's statement file drop, as a real operator's SFTP delivery behaves: each
//! billing cycle's statement lines land in a folder as one CSV file, written under
//! `NAME.csv.part` over a while (an upload takes time) and renamed to `NAME.csv` only once
//! complete and synced, so a reader never sees a partial file under its final name. One cycle
//! after the first file, that file is delivered again byte for byte under another name — the
//! duplicate drop an intake must recognise by content and ignore.
//!
//! This module owns the drop task and its file I/O; the statement content comes from
//! `settlement`, which also keeps the record of what was dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::SandboxState;
use super::settlement::DroppedStatement;

/// Where and how fast the sandbox drops statement files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementDropConfig {
    /// The drop folder; created at start when missing.
    pub dir: PathBuf,
    /// Time between two cycles' files (the first is dropped at start).
    pub interval: Duration,
    /// How long a file stays `.part` while it is written (half of it is written at once,
    /// the rest after this pause).
    pub upload: Duration,
}

impl StatementDropConfig {
    /// Drops into `dir`, a cycle a second, each upload taking 200 ms.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            interval: Duration::from_secs(1),
            upload: Duration::from_millis(200),
        }
    }
}

/// The drop folder, created when missing; an error names the folder.
pub(crate) fn prepare(config: &StatementDropConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.dir)
}

/// Drops every cycle's statement, one per `interval`, then the duplicate of the first after
/// the second. Stops at the first I/O error, with a warning: a sandbox that cannot write its
/// drop folder has nothing better to do.
pub(crate) async fn run(state: Arc<SandboxState>, config: StatementDropConfig) {
    let cycles = state.settlement().cycles();
    let mut first: Option<(String, String)> = None;
    for (i, cycle) in cycles.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(config.interval).await;
        }
        let (content, lines) = state.settlement().statement_csv(cycle);
        let stamp = drop_stamp(&state, cycle);
        let name = file_name(cycle, stamp);
        if let Err(err) = write(&config, &name, &content).await {
            tracing::warn!(folder = %config.dir.display(), file = %name, error = %err,
                "Statement drop failed; no further files will be dropped.");
            return;
        }
        record(&state, &name, cycle, lines, &content, None);
        if i == 0 {
            first = Some((name.clone(), content));
        } else if i == 1
            && let Some((original, content)) = first.take()
        {
            // Delivered again with the second cycle's delivery, under that delivery's stamp.
            let again = file_name(&cycles[0], stamp + SignedDuration::from_mins(5));
            if let Err(err) = write(&config, &again, &content).await {
                tracing::warn!(folder = %config.dir.display(), file = %again, error = %err,
                    "Statement drop failed; no further files will be dropped.");
                return;
            }
            let lines = content.lines().count().saturating_sub(1);
            record(&state, &again, &cycles[0], lines, &content, Some(original));
        }
    }
    tracing::info!(folder = %config.dir.display(), files = cycles.len() + 1,
        "Statement drop finished.");
}

/// `seller-transactions_<cycle>_<YYYYMMDDTHHMMSSZ>.csv`, as operators name their deliveries.
fn file_name(cycle: &str, stamp: Timestamp) -> String {
    format!(
        "seller-transactions_{cycle}_{}.csv",
        stamp.strftime("%Y%m%dT%H%M%SZ")
    )
}

/// A cycle's delivery time: two hours after its last line, like a nightly export.
fn drop_stamp(state: &SandboxState, cycle: &str) -> Timestamp {
    let last = state
        .settlement()
        .lines
        .iter()
        .filter(|l| l.billing_cycle_id == cycle)
        .map(|l| l.date_created)
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    last + SignedDuration::from_secs(2 * 3600 + 1)
}

/// Writes `content` as `name.part` in two halves `upload` apart, syncs it and renames it to
/// `name`.
async fn write(config: &StatementDropConfig, name: &str, content: &str) -> std::io::Result<()> {
    let part = config.dir.join(format!("{name}.part"));
    let done = config.dir.join(name);
    let mut file = tokio::fs::File::create(&part).await?;
    let half = half_at_line(content);
    file.write_all(&content.as_bytes()[..half]).await?;
    file.flush().await?;
    tokio::time::sleep(config.upload).await;
    file.write_all(&content.as_bytes()[half..]).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&part, &done).await?;
    sync_dir(&config.dir).await;
    Ok(())
}

/// The byte offset of the first line break at or after the middle (a partial upload still
/// ends in a whole line, which is what makes reading one a silent error).
fn half_at_line(content: &str) -> usize {
    let middle = content.len() / 2;
    content[middle..]
        .find('\n')
        .map_or(content.len(), |at| middle + at + 1)
}

/// Makes the rename durable; not every platform can open a folder, hence best effort.
async fn sync_dir(dir: &Path) {
    if let Ok(folder) = tokio::fs::File::open(dir).await {
        let _ = folder.sync_all().await;
    }
}

fn record(
    state: &SandboxState,
    name: &str,
    cycle: &str,
    lines: usize,
    content: &str,
    duplicate_of: Option<String>,
) {
    state.settlement().drops.push(DroppedStatement {
        file: name.to_owned(),
        billing_cycle_id: cycle.to_owned(),
        lines,
        bytes: content.len(),
        sha256: hex::encode(Sha256::digest(content.as_bytes())),
        duplicate_of,
    });
}
